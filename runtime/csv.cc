#include "csv.h"

namespace tessera {

status split_csv_line(std::string_view line, uint64_t line_no, std::vector<std::string>& fields) {
  fields.clear();
  std::string cur;
  // `was_quoted`: the field had a quoted part, so a later '"' in it is an ordinary character.
  bool quoted = false, was_quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"') {
        if (i + 1 < line.size() && line[i + 1] == '"') {
          cur.push_back('"');
          ++i;
        } else {
          quoted = false;
        }
      } else {
        cur.push_back(c);
      }
    } else if (c == '"' && cur.empty() && !was_quoted) {
      quoted = was_quoted = true;
    } else if (c == ',') {
      fields.push_back(std::move(cur));
      cur.clear();
      was_quoted = false;
    } else if (c != '\r') {
      cur.push_back(c);
    }
  }
  fields.push_back(std::move(cur));
  if (quoted)
    return make_error(
        line_no ? "line " + std::to_string(line_no) + ": unterminated quote" : "unterminated quote",
        errc::invalid);
  return ok_status();
}

}  // namespace tessera
