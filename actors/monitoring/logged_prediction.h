// One line of the prediction log (schemas/SUBJECTS.md "prediction log"), read for monitoring:
// only what the label join and the drift windows use — version, stage, score, prediction time,
// the vector and the example's fields as text — with nlohmann's SAX parser, building no JSON
// document (the vector's column names and the view keys are skipped as they are read).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tessera::monitoring {

struct logged_prediction {
  uint32_t version = 0;
  std::string stage;
  double score = 0;
  int64_t prediction_time = 0;
  std::vector<double> vector;                               // null: NaN
  std::vector<std::pair<std::string, std::string>> fields;  // text; numbers as JSON writes them
  bool has_fields = false;
};

// False when the line is not a JSON object with a `fields` object.
bool parse_logged(std::string_view line, logged_prediction& out);

}  // namespace tessera::monitoring
