// Conversions between the wire schema (schemas/tessera.capnp), in-memory values and the
// bytes kept in RocksDB. One place, so the gateway and the shards validate identically.
#pragma once
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <capnp/serialize.h>

#include "aggregate.h"
#include "definitions.h"
#include "schemas/tessera.capnp.h"
#include "tessera/result.h"

namespace tessera {

// Limits every entry point enforces.
constexpr size_t kMaxKeyBytes = 256;
constexpr size_t kMaxTextBytes = 64 * 1024;
constexpr int64_t kMaxFutureUs = 24LL * 3600 * 1000000;  // events > 1 day ahead of now are absurd

value read_value(wire::Value::Reader v);
void write_value(wire::Value::Builder b, const value& v);
// Converts a wire value to a declared type; text is parsed (CSV producers send text).
result<value> convert_value(wire::Value::Reader v, field_type t);
result<value> parse_text_as(std::string_view s, field_type t);
// The same for an in-memory value (serving examples).
result<value> coerce_value(value v, field_type t);

// An event checked against its stream: typed fields in stream order (null when absent).
struct normalized_event {
  int64_t time = 0;
  std::vector<value> fields;
};
struct event_error {
  std::string field;  // empty when about the event as a whole
  std::string reason;
  bool outlier = false;  // the event time is past the stream's max_future (counted as refused)
};
// The event encodings this build reads, advertised in the cluster heartbeat: 1, fields by name
// (Event.fields); 2, also values by position (Event.values with EventBatch.fieldNames). A
// gateway writes positions only once every member of the cluster reads them (a rolling upgrade
// from a build before them keeps older nodes able to apply what is published meanwhile).
constexpr uint32_t kEventWireVersion = 2;
// The stream field index of each of a batch's positional field names (EventBatch.fieldNames),
// -1 for names the stream does not have or derives itself. Computed once per batch.
std::vector<int> positional_fields(wire::EventBatch::Reader b, const stream_def& s);
// Checks types, the time field and text sizes. `err` is filled when it returns false. An event
// of an EventBatch may carry its fields by position (Event.values): `positional` is then the
// batch's positional_fields (without it they are not read).
bool normalize_event(wire::Event::Reader e, const stream_def& s, normalized_event& out,
                     event_error& err, const std::vector<int>* positional = nullptr);
// Writes an accepted event's fields into `e`: by position, the stream fields at `columns` (the
// batch's fieldNames name them in that order); or by name, every present field, as builds before
// kEventWireVersion 2 read them.
void write_event_values(wire::Event::Builder e, const normalized_event& ne,
                        const std::vector<size_t>& columns);
void write_event_fields(wire::Event::Builder e, const normalized_event& ne, const stream_def& s);
// Computes the stream's derived fields from the others (null when an input is missing).
void derive_fields(const stream_def& s, std::vector<value>& fields);
// The fields of a serving example (schemas/inference.capnp Example), in the stream's layout:
// each converted to its declared type (text parsed, as CSV ingest does), derived fields
// computed when their inputs are present, missing ones null. Errors (errc::invalid) name the
// field: not a field of the stream, a derived field sent, a value of the wrong type.
result<std::vector<value>> example_fields(const stream_def& s,
                                          const std::vector<std::pair<std::string, value>>& fields);
// Key of an entity kind from the event's fields ("LAX-SFO"); empty + err if a part is missing.
std::string entity_key(const normalized_event& e, const kind_plan& p, event_error& err);
std::string entity_key(const std::vector<value>& fields, const kind_plan& p,
                       event_error& err);  // the same from fields
bool key_is_valid(std::string_view key);

// Stored per-entity event records (binary, little-endian, versioned by a leading byte).
std::string encode_record(const record& r);
void append_record(std::string& out, const record& r);  // the same, appended to `out`
void append_record(std::string& out, int64_t time, uint64_t seq, uint32_t idx,
                   const std::vector<value>& fields);
bool decode_record(std::string_view bytes, record& out);
// The same with only some fields: field i goes to out.fields[slot_of[i]], fields whose slot is
// -1 (or past slot_of) are skipped unread; out.fields has `slots` values (monostate if absent).
bool decode_record(std::string_view bytes, const std::vector<int>& slot_of, size_t slots,
                   record& out);

// Runs `fn(reader)` over a Cap'n Proto message (single segment, as messageToFlatArray writes
// it) held in a byte string; false if it is malformed.
template <typename T, typename F>
bool with_message(const std::string& data, F&& fn) {
  if (data.empty() || data.size() % sizeof(capnp::word) != 0) return false;
  auto words = kj::heapArray<capnp::word>(data.size() / sizeof(capnp::word));
  std::memcpy(words.begin(), data.data(), data.size());
  try {
    capnp::FlatArrayMessageReader reader(words);
    fn(reader.getRoot<T>());
    return true;
  } catch (const kj::Exception&) {
    return false;
  }
}

void write_vector(wire::FeatureVector::Builder b, const feature_vector& v);
feature_vector read_vector(wire::FeatureVector::Reader r);
std::string encode_vector(const feature_vector& v);

}  // namespace tessera
