#include "definitions.h"

#include <algorithm>

#include "storage_plan.h"

namespace tessera {

const char* clock_mode_name(clock_mode m) {
  return m == clock_mode::live ? "live" : "replay";
}

const char* agg_name(agg_kind k) {
  switch (k) {
    case agg_kind::count:
      return "count";
    case agg_kind::sum:
      return "sum";
    case agg_kind::mean:
      return "mean";
    case agg_kind::min:
      return "min";
    case agg_kind::max:
      return "max";
    case agg_kind::stddev:
      return "stddev";
    case agg_kind::last:
      return "last";
    case agg_kind::last_n_distinct:
      return "last_n_distinct";
    case agg_kind::time_since_last:
      return "time_since_last";
  }
  return "?";
}

const char* type_name(field_type t) {
  switch (t) {
    case field_type::int64:
      return "int";
    case field_type::float64:
      return "float";
    case field_type::text:
      return "text";
    case field_type::boolean:
      return "bool";
    case field_type::timestamp:
      return "timestamp";
  }
  return "?";
}

int stream_def::field_index(const std::string& n) const {
  for (size_t i = 0; i < fields.size(); ++i)
    if (fields[i].name == n) return static_cast<int>(i);
  return -1;
}

int64_t view_def::max_window_us() const {
  int64_t m = 0;
  for (auto& f : features) m = std::max(m, f.window_us);
  return m;
}

const stream_def* definitions::find_stream(const std::string& n) const {
  for (auto& s : streams_)
    if (s.name == n) return &s;
  return nullptr;
}
const entity_def* definitions::find_entity(const std::string& n) const {
  for (auto& e : entities_)
    if (e.name == n) return &e;
  return nullptr;
}
const view_def* definitions::find_view(const std::string& n) const {
  auto at = n.find('@');
  const view_def* best = nullptr;
  for (auto& v : views_) {
    if (at == std::string::npos) {
      if (v.name == n && (!best || v.version > best->version)) best = &v;
    } else if (v.qualified() == n) {
      return &v;
    }
  }
  return best;
}
const label_def* definitions::find_label(const std::string& n) const {
  for (auto& l : labels_)
    if (l.name == n) return &l;
  return nullptr;
}
std::string chained_model(const std::string& feature) {
  return feature.rfind("model:", 0) == 0 ? feature.substr(6) : std::string();
}
const model_def* definitions::find_model(const std::string& n) const {
  for (auto& m : models_)
    if (m.name == n) return &m;
  return nullptr;
}
std::vector<std::string> label_def::feature_columns() const {
  std::vector<std::string> out;
  for (auto& o : on_demand) out.push_back(o.name);
  for (const view_def* v : views)
    for (auto& f : v->features) out.push_back(v->name + "." + f.name);
  return out;
}
const kind_plan* definitions::find_plan(const std::string& s, const std::string& e) const {
  for (auto& p : plans_)
    if (p.stream == s && p.entity == e) return &p;
  return nullptr;
}
std::vector<const kind_plan*> definitions::plans_for_stream(const std::string& s) const {
  std::vector<const kind_plan*> out;
  for (auto& p : plans_)
    if (p.stream == s) out.push_back(&p);
  return out;
}
status definitions::finish() {
  return plan_storage(streams_, entities_, views_, plans_);
}

}  // namespace tessera
