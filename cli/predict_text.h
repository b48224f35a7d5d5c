// The text of the inference commands (`tessera predict`, `predictions tail`, `skew`), apart from
// their calls so that it is tested without a node (tests/unit/predict_text_test.cc): the
// FIELD=VALUE arguments, --as-of, a prediction as JSON or as lines for a person, and the skew
// report as a table. Pure functions: any thread.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tessera/client.h"
#include "tessera/result.h"

namespace tessera::cli {

using assignments = std::vector<std::pair<std::string, std::string>>;

// "origin=LAX" → {"origin", "LAX"}, in the order given: split at the first '=' (the value may
// hold more, or be empty: the node then reads an empty text). Invalid: an argument without '=',
// an empty field name, a field given twice; the message names the argument.
result<assignments> parse_assignments(const std::vector<std::string>& args);

// The prediction time of `tessera predict --as-of`: "" → 0 (the node takes the label's
// prediction time from the fields, else the stream's clock); ISO-8601 or epoch as
// parse_timestamp reads them. A duration before the clock ("-6h", as `features --as-of` takes)
// is invalid here: the contract has no relative prediction time, and the message says so.
result<int64_t> parse_prediction_time(const std::string& text);

// "not_found": the code's name in JSON output (stable, snake_case).
std::string code_name(errc c);

// µs → "850 µs", "12.3 ms", "4.2 s", "7.5 min", "3.1 h", "2.0 d"; negative → "-".
std::string format_age(int64_t micros);

// One prediction as a JSON object, keys in this order: request_id, score (null when the example
// failed), version, stage, path, node, latency_us, prediction_time (ISO-8601, null when 0),
// error and code (only when it failed), features (only when returned: name, value (null for
// NaN), event_time, age_us (null when not applicable), status).
nlohmann::ordered_json prediction_json(const client::prediction& p);

// A prediction for a person: score, version and stage, path, node, latency, prediction time,
// and with `vector` a table of the features (name, value, age, status). For a failed example
// only its error and code.
std::string format_prediction(const client::prediction& p, bool vector);

// The skew report (README.md "Skew"; shape in cli/README.md) as a table: the counts, the
// features by mismatches (most first) with their largest difference, up to three example
// mismatches per feature, and why examples were skipped. Invalid when `json` is not such a
// report (the message says what was wrong).
result<std::string> format_skew_report(const std::string& json);

}  // namespace tessera::cli
