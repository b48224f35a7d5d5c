#include "storage_plan.h"

#include <algorithm>

#include "definitions.h"

namespace tessera {
namespace {

template <typename T>
const T* by_name(const std::vector<T>& all, const std::string& name) {
  for (auto& x : all)
    if (x.name == name) return &x;
  return nullptr;
}

kind_plan* plan_of(std::vector<kind_plan>& plans, const view_def& v) {
  kind_plan* plan = nullptr;
  for (auto& p : plans)
    if (p.stream == v.stream && p.entity == v.entity) plan = &p;
  return plan;
}

}  // namespace

std::vector<int> stored_slot_of(const kind_plan& p) {
  std::vector<int> slot_of;
  for (size_t slot = 0; slot < p.stored_field_index.size(); ++slot) {
    const auto fi = static_cast<size_t>(p.stored_field_index[slot]);
    if (slot_of.size() <= fi) slot_of.resize(fi + 1, -1);
    slot_of[fi] = static_cast<int>(slot);
  }
  return slot_of;
}

status plan_storage(const std::vector<stream_def>& streams, const std::vector<entity_def>& entities,
                    std::vector<view_def>& views, std::vector<kind_plan>& plans) {
  if (streams.empty()) return make_error("no stream defined");
  for (auto& v : views) {
    const stream_def* s = by_name(streams, v.stream);
    const entity_def* e = by_name(entities, v.entity);
    for (auto& k : e->key_fields)
      if (s->field_index(k) < 0)
        return make_error("entity " + e->name + " keys on '" + k + "', which stream " + s->name +
                          " (read by view " + v.name + ") lacks");
    kind_plan* plan = plan_of(plans, v);
    if (!plan) {
      plans.push_back({v.stream, v.entity, e->key_fields, {}, {}, {}, {}, 0});
      plan = &plans.back();
      for (auto& k : e->key_fields) plan->key_field_index.push_back(s->field_index(k));
    }
    plan->retention_us = std::max(plan->retention_us, v.max_window_us() + v.as_of_horizon_us);
  }
  // Second pass, now that plans no longer grows: stored fields and compiled filters.
  for (auto& v : views) {
    kind_plan* plan = plan_of(plans, v);
    const stream_def* s = by_name(streams, v.stream);
    plan->views.push_back(&v);
    auto slot_of = [&](const std::string& name) {
      for (size_t i = 0; i < plan->stored_field_names.size(); ++i)
        if (plan->stored_field_names[i] == name) return static_cast<int>(i);
      int fi = s->field_index(name);
      if (fi < 0) return -1;
      plan->stored_field_names.push_back(name);
      plan->stored_field_index.push_back(fi);
      return static_cast<int>(plan->stored_field_names.size() - 1);
    };
    for (auto& f : v.features) {
      if (!f.field.empty()) f.slot = slot_of(f.field);
      if (!f.filter_src.empty()) {
        auto c = compile_expr(f.filter_src, slot_of);
        if (!c)
          return make_error("view " + v.name + ", feature " + f.name + ": " + c.error_message());
        f.filter = *c;
      }
    }
  }
  return ok_status();
}

}  // namespace tessera
