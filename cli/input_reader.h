// Reads events from CSV (with a header row) or JSON lines, plain or gzip-compressed, for
// `tessera ingest`. Each row becomes a list of (field, text-or-typed value) pairs plus its
// line number, so errors can name the line. CSV fields are read by runtime/csv.h.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tessera/result.h"

namespace tessera::cli {

struct input_field {
  std::string name;
  enum kind { text, number_int, number_float, boolean, null } k = text;
  std::string text_value;
  int64_t i = 0;
  double f = 0;
  bool b = false;
};

struct input_row {
  uint64_t line = 0;
  std::vector<input_field> fields;
  std::string error;  // non-empty: the row could not be parsed
};

class input_reader {
 public:
  // format: "csv", "jsonl" or "" (from the file name: .csv, .jsonl, .json, optionally .gz).
  static result<std::unique_ptr<input_reader>> open(const std::string& path,
                                                    const std::string& format);
  virtual ~input_reader() = default;
  // False at end of input.
  virtual bool next(input_row& row) = 0;
  // Fraction of the file consumed (compressed bytes for .gz), for progress.
  virtual double progress() const = 0;
};

}  // namespace tessera::cli
