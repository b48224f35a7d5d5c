// CSV fields, RFC 4180 style, one line at a time: the one CSV reader of the tree (events for
// `tessera ingest`, dataset tables for training).
// A field is either plain text (up to the next comma; a '"' inside it is an ordinary character)
// or opens with '"' and runs to the matching '"', in which commas are text and '""' stands for
// one '"'; text after the closing quote joins the field. Carriage returns outside quotes are
// dropped, so CRLF files read like LF files. Newlines inside quotes are not supported: callers
// read line by line, so a quote still open at the end of its line is an error.
// Thread safety: no state; safe from any thread.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/result.h"

namespace tessera {

// Splits `line` into `fields` (cleared first; an empty line is one empty field). `line_no`
// (1-based) names the line in the error; 0 leaves it out, for callers that name it themselves.
// Error (errc::invalid): "line N: unterminated quote" when a quoted field is not closed by the
// end of the line; `fields` is then unspecified.
[[nodiscard]] status split_csv_line(std::string_view line, uint64_t line_no,
                                    std::vector<std::string>& fields);

}  // namespace tessera
