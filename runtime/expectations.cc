#include "expectations.h"

#include <lua.hpp>

#include <algorithm>
#include <climits>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "definitions.h"
#include "lua_host.h"
#include "time_util.h"

namespace tessera {

const char* action_name(expectation::action a) {
  switch (a) {
    case expectation::action::count:
      return "count";
    case expectation::action::reject:
      return "reject";
    case expectation::action::dead_letter:
      return "dead_letter";
  }
  return "count";
}

namespace {

std::string number_text(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", v);
  return b;
}

struct pop_guard {
  lua_State* L;
  int n;
  ~pop_guard() { lua_pop(L, n); }
};

// One field's table: `e` gets its checks. The table is at the top of the stack.
status read_one(lua_State* L, const stream_def& s, const std::string& w, expectation& e) {
  const int t = lua_gettop(L);
  const std::string shape =
      " (e.g. " + e.field +
      " = { not_null = true, min = 0, max = 100, values = { \"A\", \"B\" }, pattern = "
      "\"^[A-Z]+$\", "
      "max_null_share = 0.05, max_lag = \"1d\", on_fail = \"count\" | \"reject\" | "
      "\"dead_letter\" })";
  if (auto bad = lua::unknown_keys(
          L, t,
          {"not_null", "min", "max", "values", "pattern", "max_null_share", "max_lag", "on_fail"});
      !bad.empty())
    return make_error(w + "expect." + e.field + ": unknown key(s) " + bad + shape);
  const field_def& f = s.fields[static_cast<size_t>(e.index)];
  const bool numeric = f.type == field_type::int64 || f.type == field_type::float64;
  lua_getfield(L, t, "not_null");
  if (!lua_isnil(L, -1) && !lua_isboolean(L, -1)) {
    lua_pop(L, 1);
    return make_error(w + "expect." + e.field + ".not_null must be true or false");
  }
  e.not_null = lua_toboolean(L, -1);
  lua_pop(L, 1);
  for (auto [key, has, out] :
       {std::tuple{"min", &e.has_min, &e.min}, std::tuple{"max", &e.has_max, &e.max}}) {
    if (!lua::has_field(L, t, key)) continue;
    lua_getfield(L, t, key);
    const bool is_number = lua_type(L, -1) == LUA_TNUMBER;
    *out = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (!is_number) return make_error(w + "expect." + e.field + "." + key + " must be a number");
    if (!numeric)
      return make_error(w + "expect." + e.field + "." + key + ": field " + e.field + " is " +
                        type_name(f.type) + ", min and max are for numbers");
    *has = true;
  }
  if (e.has_min && e.has_max && e.min > e.max)
    return make_error(w + "expect." + e.field + ": min " + number_text(e.min) + " is above max " +
                      number_text(e.max));
  lua_getfield(L, t, "values");
  if (lua_istable(L, -1)) {
    for (lua_Integer i = 1, n = luaL_len(L, -1); i <= n; ++i) {
      lua_geti(L, -1, i);
      if (lua_type(L, -1) == LUA_TSTRING) {
        e.values.emplace_back(lua_tostring(L, -1));
      } else if (lua_type(L, -1) == LUA_TNUMBER) {
        const double d = lua_tonumber(L, -1);
        e.values.push_back(f.type == field_type::int64 ? std::to_string(static_cast<int64_t>(d))
                                                       : to_text(value{d}));
      } else {
        lua_pop(L, 2);
        return make_error(w + "expect." + e.field + ".values must list texts or numbers");
      }
      lua_pop(L, 1);
    }
    if (e.values.empty()) {
      lua_pop(L, 1);
      return make_error(w + "expect." + e.field + ".values is empty: list the allowed values");
    }
  } else if (!lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return make_error(w + "expect." + e.field + ".values must be a list" + shape);
  }
  lua_pop(L, 1);
  if (lua::has_field(L, t, "pattern")) {
    if (f.type != field_type::text)
      return make_error(w + "expect." + e.field + ".pattern: field " + e.field + " is " +
                        type_name(f.type) + ", a pattern is for text");
    e.pattern = lua::str_field(L, t, "pattern");
    try {
      e.re = std::make_shared<const std::regex>(e.pattern, std::regex::ECMAScript);
    } catch (const std::regex_error& x) {
      return make_error(w + "expect." + e.field + ".pattern '" + e.pattern +
                        "' is not a regular expression: " + x.what());
    }
  }
  if (lua::has_field(L, t, "max_null_share")) {
    e.max_null_share = lua::num_field(L, t, "max_null_share", -1);
    if (!(e.max_null_share >= 0 && e.max_null_share < 1))
      return make_error(w + "expect." + e.field + ".max_null_share must be in [0, 1)");
  }
  if (lua::has_field(L, t, "max_lag")) {
    if (e.field != s.time_field)
      return make_error(w + "expect." + e.field + ".max_lag is for the time field (" +
                        s.time_field + ")");
    auto d = parse_duration(lua::str_field(L, t, "max_lag"));
    if (!d || *d <= 0)
      return make_error(w + "expect." + e.field + ".max_lag must be a positive duration");
    e.max_lag_us = *d;
  }
  if (lua::has_field(L, t, "on_fail")) {
    const std::string a = lua::str_field(L, t, "on_fail");
    if (a == "count")
      e.on_fail = expectation::action::count;
    else if (a == "reject")
      e.on_fail = expectation::action::reject;
    else if (a == "dead_letter")
      e.on_fail = expectation::action::dead_letter;
    else
      return make_error(w + "expect." + e.field + ".on_fail must be \"count\", \"reject\" or " +
                        "\"dead_letter\", not '" + a + "'");
  }
  if (!e.not_null && !e.has_min && !e.has_max && e.values.empty() && !e.re &&
      e.max_null_share < 0 && e.max_lag_us == 0)
    return make_error(w + "expect." + e.field + " declares no check" + shape);
  return ok_status();
}

}  // namespace

std::string expectation::describe() const {
  std::string d;
  auto add = [&](const std::string& x) { d += (d.empty() ? "" : ", ") + x; };
  if (not_null) add("not null");
  if (has_min) add("min " + number_text(min));
  if (has_max) add("max " + number_text(max));
  if (!values.empty()) {
    std::string v;
    for (auto& x : values) v += (v.empty() ? "" : "|") + x;
    add("one of " + v);
  }
  if (re) add("pattern " + pattern);
  if (max_null_share >= 0) add("null share at most " + number_text(max_null_share));
  if (max_lag_us) add("lag at most " + format_duration(max_lag_us));
  return d;
}

result<std::shared_ptr<const expectation_set>> expectation_set::read(lua_State* L, int st,
                                                                     const stream_def& s,
                                                                     const std::string& where) {
  lua_getfield(L, st, "expect");
  pop_guard pop{L, 1};
  const std::string w = where + "stream " + s.name + ": ";
  if (lua_isnil(L, -1)) {
    if (lua::has_field(L, st, "expect_slice") || lua::has_field(L, st, "expect_window"))
      return make_error(w + "expect_slice and expect_window need expect = { ... }");
    return std::shared_ptr<const expectation_set>();
  }
  if (!lua_istable(L, -1))
    return make_error(w + "expect must be a table of fields: expect = { distance = { min = 0 } }");
  auto set = std::make_shared<expectation_set>();
  const int t = lua_gettop(L);
  std::vector<std::string> names;
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      lua_pop(L, 2);
      return make_error(w + "expect must be keyed by field names");
    }
    names.emplace_back(lua_tostring(L, -2));
    lua_pop(L, 1);
  }
  std::sort(names.begin(), names.end());  // a stable order, whatever Lua's
  for (auto& name : names) {
    expectation e;
    e.field = name;
    e.index = s.field_index(name);
    if (e.index < 0) return make_error(w + "expect." + name + ": the stream has no field " + name);
    lua_getfield(L, t, name.c_str());
    pop_guard inner{L, 1};
    if (!lua_istable(L, -1)) return make_error(w + "expect." + name + " must be a table of checks");
    if (auto r = read_one(L, s, w, e); !r) return r.failure();
    set->all_.push_back(std::move(e));
  }
  if (lua::has_field(L, st, "expect_slice")) {
    set->slice_ = lua::str_field(L, st, "expect_slice");
    set->slice_index_ = s.field_index(set->slice_);
    if (set->slice_index_ < 0)
      return make_error(w + "expect_slice: the stream has no field " + set->slice_);
  }
  if (lua::has_field(L, st, "expect_window")) {
    auto d = parse_duration(lua::str_field(L, st, "expect_window"));
    if (!d || *d <= 0) return make_error(w + "expect_window must be a positive duration");
    set->window_us_ = *d;
  }
  return std::shared_ptr<const expectation_set>(std::move(set));
}

std::string expectation_set::failure(const expectation& e, const std::vector<value>& fields,
                                     int64_t event_time, int64_t clock_us) {
  const value& v = fields[static_cast<size_t>(e.index)];
  if (e.max_lag_us && clock_us > 0 && clock_us - event_time > e.max_lag_us)
    return "event time " + format_timestamp(event_time) + " lags the stream's clock by " +
           format_duration(clock_us - event_time) + ", more than max_lag " +
           format_duration(e.max_lag_us);
  if (is_null(v)) return e.not_null ? "is null (expected not null)" : "";
  double x = 0;
  if ((e.has_min || e.has_max) && as_number(v, x)) {
    if (e.has_min && x < e.min) return to_text(v) + " is below min " + number_text(e.min);
    if (e.has_max && x > e.max) return to_text(v) + " is above max " + number_text(e.max);
  }
  if (!e.values.empty() || e.re) {
    const std::string text = to_text(v);
    if (!e.values.empty() && std::find(e.values.begin(), e.values.end(), text) == e.values.end())
      return "'" + text + "' is not an allowed value";
    if (e.re && !std::regex_match(text, *e.re))
      return "'" + text + "' does not match pattern " + e.pattern;
  }
  return "";
}

validation_ledger::verdict validation_ledger::record(const stream_def& s,
                                                     const std::vector<value>& fields,
                                                     int64_t event_time, int64_t clock_us) {
  verdict out;
  const auto& set = *s.expect;
  const std::string slice =
      set.slice_index() >= 0 ? to_text(fields[static_cast<size_t>(set.slice_index())]) : "";
  const int64_t window = event_time / set.window_us();
  std::lock_guard<std::mutex> l(mu_);
  auto& per = streams_[s.name];
  per.resize(set.all().size());
  for (size_t i = 0; i < set.all().size(); ++i) {
    const expectation& e = set.all()[i];
    auto& slices = per[i];
    auto it = slices.find(slice);
    if (it == slices.end())
      it = slices.emplace(slices.size() < kMaxSlices ? slice : "(other)", slice_counts{}).first;
    slice_counts& c = it->second;
    ++c.checked;
    if (e.max_null_share >= 0) {
      if (window > c.window) {
        if (c.window_events >= 20) {
          c.last_share = static_cast<double>(c.window_nulls) / static_cast<double>(c.window_events);
          if (c.last_share > e.max_null_share) ++c.windows_failed;
        }
        c.window = window;
        c.window_events = c.window_nulls = 0;
      }
      if (window == c.window) {
        ++c.window_events;
        c.window_nulls += is_null(fields[static_cast<size_t>(e.index)]);
      }
    }
    std::string why = expectation_set::failure(e, fields, event_time, clock_us);
    if (why.empty()) continue;
    ++c.failed;
    ++failed_total_;
    nlohmann::json ev = nlohmann::json::object();
    for (size_t f = 0; f < s.fields.size(); ++f)
      if (!is_null(fields[f])) ev[s.fields[f].name] = to_text(fields[f]);
    c.last.push_back(nlohmann::json{{"reason", why}, {"event", ev}}.dump());
    while (c.last.size() > kLastKept) c.last.pop_front();
    if (e.on_fail != expectation::action::count && out.action == expectation::action::count) {
      out.action = e.on_fail;
      out.field = e.field;
      out.reason = "expectation failed: " + e.field + " " + why;
    }
  }
  return out;
}

nlohmann::json validation_ledger::report(const stream_def& s, size_t top) const {
  nlohmann::json out{{"stream", s.name}};
  if (!s.expect) {
    out["expectations"] = nlohmann::json::array();
    return out;
  }
  out["slice_field"] = s.expect->slice_field();
  out["window"] = format_duration(s.expect->window_us());
  auto& list = out["expectations"] = nlohmann::json::array();
  std::lock_guard<std::mutex> l(mu_);
  auto it = streams_.find(s.name);
  for (size_t i = 0; i < s.expect->all().size(); ++i) {
    const expectation& e = s.expect->all()[i];
    nlohmann::json x{
        {"field", e.field}, {"checks", e.describe()}, {"on_fail", action_name(e.on_fail)}};
    uint64_t checked = 0, failed = 0, windows_failed = 0;
    std::vector<std::pair<std::string, const slice_counts*>> slices;
    if (it != streams_.end() && i < it->second.size())
      for (auto& [name, c] : it->second[i]) {
        checked += c.checked;
        failed += c.failed;
        windows_failed += c.windows_failed;
        slices.emplace_back(name, &c);
      }
    std::sort(slices.begin(), slices.end(), [](auto& a, auto& b) {
      const uint64_t fa = a.second->failed + a.second->windows_failed,
                     fb = b.second->failed + b.second->windows_failed;
      return fa != fb ? fa > fb : a.first < b.first;
    });
    x["checked"] = checked;
    x["failed"] = failed;
    x["null_windows_failed"] = windows_failed;
    auto& sl = x["slices"] = nlohmann::json::array();
    for (size_t k = 0; k < slices.size() && k < top; ++k) {
      const slice_counts& c = *slices[k].second;
      if (c.failed == 0 && c.windows_failed == 0) break;
      nlohmann::json last = nlohmann::json::array();
      for (auto& t : c.last) last.push_back(nlohmann::json::parse(t));
      sl.push_back({{"slice", slices[k].first},
                    {"checked", c.checked},
                    {"failed", c.failed},
                    {"null_windows_failed", c.windows_failed},
                    {"last_null_share", c.last_share},
                    {"last", last}});
    }
    list.push_back(std::move(x));
  }
  return out;
}

uint64_t validation_ledger::failed_total() const {
  std::lock_guard<std::mutex> l(mu_);
  return failed_total_;
}

}  // namespace tessera
