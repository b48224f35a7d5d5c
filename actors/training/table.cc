#include "table.h"

#include <cmath>
#include <cstdlib>
#include <fstream>

#include "csv.h"

namespace tessera {
namespace {

bool parse_number(const std::string& s, double& out) {
  if (s.empty()) return false;
  char* end = nullptr;
  out = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size();
}

}  // namespace

result<table> read_dataset_csv(const std::string& path, const std::vector<std::string>& features) {
  std::ifstream in(path);
  if (!in) return make_error("cannot read dataset '" + path + "'");
  std::string line;
  if (!std::getline(in, line)) return make_error(path + ": empty file (no header)");
  std::vector<std::string> header, cells;
  if (auto st = split_csv_line(line, 1, header); !st)
    return make_error(path + ": " + st.error_message(), st.error_code());
  auto find = [&](const std::string& n) -> int {
    for (size_t i = 0; i < header.size(); ++i)
      if (header[i] == n) return static_cast<int>(i);
    return -1;
  };
  const int c_label = find("label"), c_time = find("prediction_time");
  if (c_label < 0 || c_time < 0)
    return make_error(path + ": not a Tessera dataset (needs prediction_time and label columns)");
  table t;
  std::vector<int> idx;
  if (features.empty()) {
    for (size_t i = static_cast<size_t>(c_label) + 1; i < header.size(); ++i)
      idx.push_back(static_cast<int>(i));
  } else {
    for (auto& f : features) {
      int i = find(f);
      if (i < 0) return make_error(path + ": no column '" + f + "'");
      idx.push_back(i);
    }
  }
  for (int i : idx) t.columns.push_back(header[static_cast<size_t>(i)]);
  size_t lineno = 1;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty()) continue;
    if (auto st = split_csv_line(line, 0, cells); !st)
      return make_error(path + ":" + std::to_string(lineno) + ": " + st.error_message(),
                        st.error_code());
    auto where = [&](int col) {
      return path + ":" + std::to_string(lineno) + ": column " + header[static_cast<size_t>(col)] +
             ": ";
    };
    if (cells.size() != header.size())
      return make_error(path + ":" + std::to_string(lineno) + ": " + std::to_string(cells.size()) +
                        " cells, the header has " + std::to_string(header.size()));
    double v;
    if (!parse_number(cells[static_cast<size_t>(c_label)], v) || !std::isfinite(v))
      return make_error(where(c_label) + "label is not a number");
    t.y.push_back(static_cast<float>(v));
    if (!parse_number(cells[static_cast<size_t>(c_time)], v))
      return make_error(where(c_time) + "not a time in microseconds");
    t.time.push_back(static_cast<int64_t>(v));
    for (int i : idx) {
      const std::string& c = cells[static_cast<size_t>(i)];
      if (c.empty()) {
        t.x.push_back(NAN);
        continue;
      }
      if (!parse_number(c, v))
        return make_error(where(i) + "'" + c +
                          "' is not a number (only numeric features can train a model)");
      t.x.push_back(std::isfinite(v) ? static_cast<float>(v) : NAN);
    }
    ++t.rows;
  }
  return t;
}

}  // namespace tessera
