#include "example.h"

#include <cmath>

#include "point_in_time.h"

namespace tessera {

example_deriver::example_deriver(const definitions& defs, const label_def& label,
                                 std::vector<const view_def*> views)
    : label_(&label), views_(views.empty() ? label.views : std::move(views)) {
  for (const view_def* v : views_) {
    plans_.push_back(defs.find_plan(v->stream, v->entity));
    own_.push_back(v->stream == label.stream && v->entity == label.entity);
  }
}

std::optional<int64_t> example_deriver::prediction_time(const std::vector<value>& fields) const {
  double t;
  if (!as_number(label_->time->eval(fields), t) || !std::isfinite(t)) return std::nullopt;
  return static_cast<int64_t>(std::llround(t));
}

int64_t example_deriver::feature_time(int64_t prediction_time) const {
  return tessera::feature_time(*label_, prediction_time);
}

std::string example_deriver::key(size_t view, const std::vector<value>& fields,
                                 event_error& err) const {
  return entity_key(fields, *plans_[view], err);
}

value example_deriver::on_demand(size_t k, const std::vector<value>& fields) const {
  return label_->on_demand[k].e->eval(fields);
}

}  // namespace tessera
