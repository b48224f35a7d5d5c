#include "codec.h"

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <charconv>
#include <cmath>
#include <cstring>

#include "time_util.h"

namespace tessera {

value read_value(wire::Value::Reader v) {
  switch (v.which()) {
    case wire::Value::NULL_:
      return std::monostate{};
    case wire::Value::INT:
      return v.getInt();
    case wire::Value::FLOAT:
      return v.getFloat();
    case wire::Value::TEXT:
      return std::string(v.getText().cStr(), v.getText().size());
    case wire::Value::BOOL:
      return v.getBool();
    case wire::Value::TIMESTAMP:
      return timestamp_value{v.getTimestamp()};
    case wire::Value::TEXT_LIST: {
      std::vector<std::string> out;
      for (auto t : v.getTextList()) out.emplace_back(t.cStr(), t.size());
      return out;
    }
  }
  return std::monostate{};
}

void write_value(wire::Value::Builder b, const value& v) {
  switch (v.index()) {
    case 0:
      b.setNull();
      break;
    case 1:
      b.setInt(std::get<int64_t>(v));
      break;
    case 2:
      b.setFloat(std::get<double>(v));
      break;
    case 3:
      b.setText(std::get<std::string>(v));
      break;
    case 4:
      b.setBool(std::get<bool>(v));
      break;
    case 5:
      b.setTimestamp(std::get<timestamp_value>(v).micros);
      break;
    case 6: {
      auto& l = std::get<std::vector<std::string>>(v);
      auto lb = b.initTextList(static_cast<unsigned>(l.size()));
      for (size_t i = 0; i < l.size(); ++i) lb.set(static_cast<unsigned>(i), l[i]);
      break;
    }
  }
}

void write_event_values(wire::Event::Builder e, const normalized_event& ne,
                        const std::vector<size_t>& columns) {
  auto vl = e.initValues(static_cast<unsigned>(columns.size()));
  for (size_t c = 0; c < columns.size(); ++c)
    if (!is_null(ne.fields[columns[c]]))
      write_value(vl[static_cast<unsigned>(c)], ne.fields[columns[c]]);
}

void write_event_fields(wire::Event::Builder e, const normalized_event& ne, const stream_def& s) {
  size_t present = 0;
  for (auto& v : ne.fields) present += !is_null(v);
  auto fl = e.initFields(static_cast<unsigned>(present));
  unsigned fi = 0;
  for (size_t f = 0; f < ne.fields.size(); ++f) {
    if (is_null(ne.fields[f])) continue;
    fl[fi].setName(s.fields[f].name);
    write_value(fl[fi].initValue(), ne.fields[f]);
    ++fi;
  }
}

result<value> parse_text_as(std::string_view s, field_type t) {
  auto bad = [&](const char* what) {
    std::string shown(s.substr(0, 40));
    return make_error(std::string("expected ") + what + ", got '" + shown +
                      (s.size() > 40 ? "…" : "") + "'");
  };
  switch (t) {
    case field_type::text:
      if (s.size() > kMaxTextBytes) return make_error("text longer than 64 KiB");
      return value(std::string(s));
    case field_type::int64: {
      int64_t x;
      auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), x);
      if (ec != std::errc() || p != s.data() + s.size()) return bad("int");
      return value(x);
    }
    case field_type::float64: {
      std::string tmp(s);
      char* endp = nullptr;
      double x = std::strtod(tmp.c_str(), &endp);
      if (tmp.empty() || endp != tmp.c_str() + tmp.size() || !std::isfinite(x)) return bad("float");
      return value(x);
    }
    case field_type::boolean:
      if (s == "true" || s == "1") return value(true);
      if (s == "false" || s == "0") return value(false);
      return bad("bool");
    case field_type::timestamp: {
      auto ts = parse_timestamp(s);
      if (!ts) return make_error(ts.error_message());
      return value(timestamp_value{*ts});
    }
  }
  return bad("a known type");
}

result<value> convert_value(wire::Value::Reader v, field_type t) {
  if (v.isText()) {  // parsed without a copy: CSV producers send every field as text
    auto txt = v.getText();
    if (txt.size() == 0 && t != field_type::text) return value(std::monostate{});  // empty CSV cell
    return parse_text_as(std::string_view(txt.cStr(), txt.size()), t);
  }
  return coerce_value(read_value(v), t);
}

result<value> coerce_value(value v, field_type t) {
  switch (v.index()) {
    case 0:
      return v;
    case 1:
      if (t == field_type::int64) return v;
      if (t == field_type::float64) return value(static_cast<double>(std::get<int64_t>(v)));
      if (t == field_type::timestamp) return value(timestamp_value{std::get<int64_t>(v)});
      break;
    case 2: {
      const double x = std::get<double>(v);
      if (t == field_type::float64) {
        if (!std::isfinite(x)) return make_error("expected a finite float");
        return v;
      }
      if (t == field_type::int64 && std::trunc(x) == x && std::fabs(x) < 9e15)
        return value(static_cast<int64_t>(x));
      break;
    }
    case 3: {
      const std::string& txt = std::get<std::string>(v);
      if (txt.empty() && t != field_type::text) return value(std::monostate{});
      return parse_text_as(txt, t);
    }
    case 4:
      if (t == field_type::boolean) return v;
      break;
    case 5:
      if (t == field_type::timestamp) return v;
      break;
    default:
      break;
  }
  static const char* names[] = {"null", "int", "float", "text", "bool", "timestamp", "textList"};
  return make_error(std::string("expected ") + type_name(t) + ", got " + names[v.index()]);
}

void derive_fields(const stream_def& s, std::vector<value>& fields) {
  // Derived fields read sent fields only, so their order does not matter.
  for (size_t i = 0; i < s.fields.size(); ++i) {
    const field_def& f = s.fields[i];
    if (!f.derive) continue;
    double x;
    if (!as_number(f.derive->eval(fields), x) || !std::isfinite(x)) continue;  // stays null
    switch (f.type) {
      case field_type::int64:
        fields[i] = static_cast<int64_t>(std::llround(x));
        break;
      case field_type::timestamp:
        fields[i] = timestamp_value{static_cast<int64_t>(std::llround(x))};
        break;
      case field_type::boolean:
        fields[i] = x != 0;
        break;
      default:
        fields[i] = x;
        break;
    }
  }
}

result<std::vector<value>> example_fields(const stream_def& s,
                                          const std::vector<std::pair<std::string, value>>& in) {
  std::vector<value> out(s.fields.size(), std::monostate{});
  for (auto& [name, given] : in) {
    const int i = s.field_index(name);
    if (i < 0)
      return make_error("field " + name + ": not a field of stream " + s.name, errc::invalid);
    if (s.fields[i].derive)
      return make_error(
          "field " + name + ": derived (" + s.fields[i].derive_src + "), not given by the caller",
          errc::invalid);
    auto v = coerce_value(given, s.fields[i].type);
    if (!v) return make_error("field " + name + ": " + v.error_message(), errc::invalid);
    out[i] = std::move(v.value());
  }
  derive_fields(s, out);
  return out;
}

std::vector<int> positional_fields(wire::EventBatch::Reader b, const stream_def& s) {
  std::vector<int> out;
  for (auto n : b.getFieldNames()) {
    const int i = s.field_index(std::string(n.cStr(), n.size()));
    out.push_back(i >= 0 && !s.fields[i].derive ? i : -1);
  }
  return out;
}

bool normalize_event(wire::Event::Reader e, const stream_def& s, normalized_event& out,
                     event_error& err, const std::vector<int>* positional) {
  out.fields.assign(s.fields.size(), std::monostate{});
  if (positional && e.hasValues()) {
    auto values = e.getValues();
    const size_t n = std::min<size_t>(values.size(), positional->size());
    for (size_t k = 0; k < n; ++k) {
      const int i = (*positional)[k];
      if (i < 0 || values[k].isNull()) continue;  // a name the stream does not read
      auto v = convert_value(values[k], s.fields[i].type);
      if (!v) {
        err = {s.fields[i].name, v.error_message()};
        return false;
      }
      out.fields[i] = std::move(v.value());
    }
  }
  size_t next = 0;  // producers mostly send named fields in the stream's order
  for (auto f : e.getFields()) {
    const std::string_view name(f.getName().cStr(), f.getName().size());
    const int i = next < s.fields.size() && s.fields[next].name == name
                      ? static_cast<int>(next)
                      : s.field_index(std::string(name));
    if (i < 0 || s.fields[i].derive)
      continue;  // unknown fields are ignored: producers may send more than we read
    next = static_cast<size_t>(i) + 1;
    auto v = convert_value(f.getValue(), s.fields[i].type);
    if (!v) {
      err = {std::string(name), v.error_message()};
      return false;
    }
    out.fields[i] = std::move(v.value());
  }
  derive_fields(s, out.fields);
  int ti = s.field_index(s.time_field);
  if (e.getEventTime() != 0) {
    out.time = e.getEventTime();
    out.fields[ti] = timestamp_value{out.time};
  } else if (auto* ts = std::get_if<timestamp_value>(&out.fields[ti])) {
    out.time = ts->micros;
  } else {
    err = {s.time_field, s.fields[ti].derive
                             ? "missing event time (derived from " + s.fields[ti].derive_src + ")"
                             : "missing event time"};
    return false;
  }
  if (out.time < 0) {
    err = {s.time_field, "absurd event time " + std::to_string(out.time) + " µs (before 1970)"};
    return false;
  }
  if (const int64_t now = now_micros(); out.time > now + s.max_future_us) {
    err = {s.time_field, "event time " + format_timestamp(out.time) + " is more than max_future (" +
                             format_duration(s.max_future_us) + ") past the wall clock (" +
                             format_timestamp(now) + "); refused"};
    err.outlier = true;
    return false;
  }
  return true;
}

bool key_is_valid(std::string_view key) {
  return !key.empty() && key.size() <= kMaxKeyBytes && key.find('\0') == std::string_view::npos;
}

std::string entity_key(const normalized_event& e, const kind_plan& p, event_error& err) {
  return entity_key(e.fields, p, err);
}

std::string entity_key(const std::vector<value>& fields, const kind_plan& p, event_error& err) {
  std::string key;
  for (size_t i = 0; i < p.key_field_index.size(); ++i) {
    const value& v = fields[p.key_field_index[i]];
    std::string part = is_null(v) ? std::string() : to_text(v);
    if (part.empty()) {
      err = {p.key_fields[i], "missing entity key field for " + p.entity};
      return {};
    }
    if (i) key += '-';
    key += part;
  }
  if (!key_is_valid(key)) {
    err = {p.key_fields[0], "entity key longer than 256 bytes or containing NUL"};
    return {};
  }
  return key;
}

namespace {

void put_u64(std::string& s, uint64_t x) {
  s.append(reinterpret_cast<const char*>(&x), 8);
}
void put_u32(std::string& s, uint32_t x) {
  s.append(reinterpret_cast<const char*>(&x), 4);
}
bool get_u64(std::string_view& s, uint64_t& x) {
  if (s.size() < 8) return false;
  std::memcpy(&x, s.data(), 8);
  s.remove_prefix(8);
  return true;
}
bool get_u32(std::string_view& s, uint32_t& x) {
  if (s.size() < 4) return false;
  std::memcpy(&x, s.data(), 4);
  s.remove_prefix(4);
  return true;
}

}  // namespace

std::string encode_record(const record& r) {
  std::string s;
  s.reserve(24 + r.fields.size() * 9);
  append_record(s, r);
  return s;
}

void append_record(std::string& s, const record& r) {
  append_record(s, r.time, r.seq, r.idx, r.fields);
}

void append_record(std::string& s, int64_t time, uint64_t seq, uint32_t idx,
                   const std::vector<value>& fields) {
  s.push_back(1);  // format version
  put_u64(s, static_cast<uint64_t>(time));
  put_u64(s, seq);
  put_u32(s, idx);
  put_u32(s, static_cast<uint32_t>(fields.size()));
  for (auto& v : fields) {
    s.push_back(static_cast<char>(v.index()));
    switch (v.index()) {
      case 1:
        put_u64(s, static_cast<uint64_t>(std::get<int64_t>(v)));
        break;
      case 2: {
        uint64_t b;
        double d = std::get<double>(v);
        std::memcpy(&b, &d, 8);
        put_u64(s, b);
        break;
      }
      case 3: {
        auto& t = std::get<std::string>(v);
        put_u32(s, static_cast<uint32_t>(t.size()));
        s += t;
        break;
      }
      case 4:
        s.push_back(std::get<bool>(v) ? 1 : 0);
        break;
      case 5:
        put_u64(s, static_cast<uint64_t>(std::get<timestamp_value>(v).micros));
        break;
      default:
        break;
    }
  }
}

namespace {
// A record's format version, time, sequence, index and field count; `s` moves past them.
bool decode_record_head(std::string_view& s, record& r, uint32_t& n) {
  if (s.empty() || s[0] != 1) return false;
  s.remove_prefix(1);
  uint64_t t, seq;
  uint32_t idx;
  if (!get_u64(s, t) || !get_u64(s, seq) || !get_u32(s, idx) || !get_u32(s, n) || n > 4096)
    return false;
  r.time = static_cast<int64_t>(t);
  r.seq = seq;
  r.idx = idx;
  return true;
}
}  // namespace

bool decode_record(std::string_view s, const std::vector<int>& slot_of, size_t slots, record& r) {
  uint32_t n = 0;
  if (!decode_record_head(s, r, n)) return false;
  r.fields.assign(slots, std::monostate{});
  for (uint32_t i = 0; i < n; ++i) {
    if (s.empty()) return false;
    const char tag = s[0];
    s.remove_prefix(1);
    const int slot = i < slot_of.size() ? slot_of[i] : -1;
    uint64_t x;
    uint32_t len;
    switch (tag) {
      case 0:
        break;
      case 1:
      case 2:
      case 5:
        if (!get_u64(s, x)) return false;
        if (slot < 0) break;
        if (tag == 1)
          r.fields[static_cast<size_t>(slot)] = static_cast<int64_t>(x);
        else if (tag == 5)
          r.fields[static_cast<size_t>(slot)] = timestamp_value{static_cast<int64_t>(x)};
        else {
          double d;
          std::memcpy(&d, &x, 8);
          r.fields[static_cast<size_t>(slot)] = d;
        }
        break;
      case 3:
        if (!get_u32(s, len) || s.size() < len) return false;
        if (slot >= 0) r.fields[static_cast<size_t>(slot)] = std::string(s.substr(0, len));
        s.remove_prefix(len);
        break;
      case 4:
        if (s.empty()) return false;
        if (slot >= 0) r.fields[static_cast<size_t>(slot)] = s[0] != 0;
        s.remove_prefix(1);
        break;
      default:
        return false;
    }
  }
  return s.empty();
}

bool decode_record(std::string_view s, record& r) {
  uint32_t n = 0;
  if (!decode_record_head(s, r, n)) return false;
  r.fields.clear();
  r.fields.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    if (s.empty()) return false;
    char tag = s[0];
    s.remove_prefix(1);
    uint64_t x;
    switch (tag) {
      case 0:
        r.fields.emplace_back(std::monostate{});
        break;
      case 1:
        if (!get_u64(s, x)) return false;
        r.fields.emplace_back(static_cast<int64_t>(x));
        break;
      case 2: {
        if (!get_u64(s, x)) return false;
        double d;
        std::memcpy(&d, &x, 8);
        r.fields.emplace_back(d);
        break;
      }
      case 3: {
        uint32_t len;
        if (!get_u32(s, len) || s.size() < len) return false;
        r.fields.emplace_back(std::string(s.substr(0, len)));
        s.remove_prefix(len);
        break;
      }
      case 4:
        if (s.empty()) return false;
        r.fields.emplace_back(s[0] != 0);
        s.remove_prefix(1);
        break;
      case 5:
        if (!get_u64(s, x)) return false;
        r.fields.emplace_back(timestamp_value{static_cast<int64_t>(x)});
        break;
      default:
        return false;
    }
  }
  return s.empty();
}

void write_vector(wire::FeatureVector::Builder b, const feature_vector& v) {
  b.setView(v.view);
  b.setVersion(v.version);
  b.setEntity(v.entity);
  b.setAsOf(v.as_of);
  b.setEventTime(v.event_time);
  b.setStatus(static_cast<wire::Status>(v.status));
  auto vals = b.initValues(static_cast<unsigned>(v.values.size()));
  for (size_t i = 0; i < v.values.size(); ++i) {
    auto fb = vals[static_cast<unsigned>(i)];
    fb.setName(v.values[i].name);
    write_value(fb.initValue(), v.values[i].v);
    fb.setEventTime(v.values[i].event_time);
  }
}

feature_vector read_vector(wire::FeatureVector::Reader r) {
  feature_vector v;
  v.view = r.getView();
  v.version = r.getVersion();
  v.entity = r.getEntity();
  v.as_of = r.getAsOf();
  v.event_time = r.getEventTime();
  v.status = static_cast<vector_status>(r.getStatus());
  for (auto f : r.getValues())
    v.values.push_back({f.getName(), read_value(f.getValue()), f.getEventTime()});
  return v;
}

std::string encode_vector(const feature_vector& v) {
  capnp::MallocMessageBuilder mb;
  write_vector(mb.initRoot<wire::FeatureVector>(), v);
  auto words = capnp::messageToFlatArray(mb);
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

}  // namespace tessera
