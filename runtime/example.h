// What a label definition makes of one example: the prediction time, the time its features are
// read at, each view's entity key and the on-demand features. The one place where this is
// computed: the dataset build (actors/training/dataset_part.cc) derives every training row
// with it and serving (actors/inference) every request, so training and serving cannot drift
// apart (DESIGN.md, "Training data without leakage or skew").
// Immutable after construction; thread-safe. Borrows `defs`' label, views and plans: the
// definitions must outlive it.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "codec.h"
#include "definitions.h"

namespace tessera {

class example_deriver {
 public:
  // `views`: the views the model reads, at the versions it was trained on (empty: the label's).
  // Every view must have a kind plan in `defs` (a view of the definitions always has one).
  example_deriver(const definitions& defs, const label_def& label,
                  std::vector<const view_def*> views = {});

  const label_def& label() const { return *label_; }
  const std::vector<const view_def*>& views() const { return views_; }
  const kind_plan& plan(size_t view) const { return *plans_[view]; }
  // Whether view `i` is of the label's own stream and entity kind (its entity is the example's).
  bool own(size_t view) const { return own_[view]; }

  // The prediction time from the example's fields (stream layout), or nullopt when the label's
  // prediction_time has no finite value for them (a field it needs is missing).
  std::optional<int64_t> prediction_time(const std::vector<value>& fields) const;
  // The time the features of an example predicted at `prediction_time` are read at.
  int64_t feature_time(int64_t prediction_time) const;
  // View `i`'s entity key; empty with `err` naming the field when a key field is missing.
  std::string key(size_t view, const std::vector<value>& fields, event_error& err) const;
  // On-demand feature `k` of the label.
  value on_demand(size_t k, const std::vector<value>& fields) const;

 private:
  const label_def* label_;
  std::vector<const view_def*> views_;
  std::vector<const kind_plan*> plans_;
  std::vector<bool> own_;
};

}  // namespace tessera
