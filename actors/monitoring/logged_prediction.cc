#include "logged_prediction.h"

#include <cmath>

#include <nlohmann/json.hpp>

namespace tessera::monitoring {

namespace {

// Depth 1 is the record; `fields` (depth 2) and `vector` (an array at depth 1) are read; any
// other nested value is skipped.
struct handler : nlohmann::json_sax<nlohmann::json> {
  logged_prediction& out;
  int depth = 0;
  std::string top;    // the current key at depth 1
  std::string field;  // the current key inside fields
  bool in_vector = false;
  explicit handler(logged_prediction& o) : out(o) {}

  void scalar(const std::string& text, double number, bool is_number, bool is_null) {
    if (in_vector && depth == 1) {
      out.vector.push_back(is_number ? number : std::nan(""));
      return;
    }
    if (depth == 2 && top == "fields") {
      if (!is_null) out.fields.emplace_back(field, text);
      return;
    }
    if (depth != 1) return;
    if (top == "version" && is_number)
      out.version = static_cast<uint32_t>(number);
    else if (top == "score" && is_number)
      out.score = number;
    else if (top == "stage")
      out.stage = text;
  }
  bool null() override {
    scalar("", 0, false, true);
    return true;
  }
  bool boolean(bool v) override {
    scalar(v ? "true" : "false", v ? 1 : 0, false, false);
    return true;
  }
  bool number_integer(number_integer_t v) override {
    if (depth == 1 && !in_vector && top == "prediction_time") out.prediction_time = v;
    scalar(std::to_string(v), static_cast<double>(v), true, false);
    return true;
  }
  bool number_unsigned(number_unsigned_t v) override {
    if (depth == 1 && !in_vector && top == "prediction_time")
      out.prediction_time = static_cast<int64_t>(v);
    scalar(std::to_string(v), static_cast<double>(v), true, false);
    return true;
  }
  bool number_float(number_float_t v, const string_t& s) override {
    scalar(s, v, true, false);
    return true;
  }
  bool string(string_t& v) override {
    scalar(v, 0, false, false);
    return true;
  }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override {
    ++depth;
    if (depth == 2 && top == "fields") out.has_fields = true;
    return true;
  }
  bool key(string_t& k) override {
    if (depth == 1)
      top = k;
    else if (depth == 2)
      field = k;
    return true;
  }
  bool end_object() override {
    --depth;
    return true;
  }
  bool start_array(std::size_t) override {
    if (depth == 1 && top == "vector")
      in_vector = true;
    else
      ++depth;  // a nested array: its values are skipped
    return true;
  }
  bool end_array() override {
    if (in_vector && depth == 1)
      in_vector = false;
    else
      --depth;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }
};

}  // namespace

bool parse_logged(std::string_view line, logged_prediction& out) {
  out = logged_prediction{};
  handler h(out);
  const bool ok = nlohmann::json::sax_parse(line.begin(), line.end(), &h,
                                            nlohmann::json::input_format_t::json, false);
  return ok && out.has_fields;
}

}  // namespace tessera::monitoring
