// What the leader concludes from a model's live quality (quality_service.h), once a second:
//   - canary_worse.<model>.v<N> (page): the canary N is significantly worse than production
//     (quality.h compare() at the model's alpha, both arms with min_pairs pairs). With
//     `rollback = true` the canary goes back to candidate (model_registry::demote_canary: once)
//     and the alert says so; its pairs are then forgotten, and the alert resolves.
//   - quality_slo.<model>.v<N> (page): production N's live AUC is significantly below min_auc
//     (its interval's upper end under it) or its log loss above max_log_loss (the interval's
//     lower end over it). With `rollback = true` and N promoted within rollback_within, it goes
//     back to the previous production version (model_registry::rollback_from: once).
//   - drift.<model>.v<N> (ticket): inputs or the score of production or canary N alarming in the
//     drift monitor (drift_monitor.h: persistent over k of n windows), ranked by contribution.
// An alert of the model whose condition is known to be over resolves (alert_store.h), also one
// raised by an earlier leader: its version lost the stage it was about, or there is data enough
// to judge (the canary compared again, production with min_pairs pairs, 5 drift windows tested).
// A monitor that has just (re)started and knows nothing yet leaves it firing: one problem is one
// alert, across restarts and leader changes.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "definitions.h"
#include "quality_service.h"

namespace tessera::monitoring {

// The arms whose pairs are to be forgotten: (stage, version) of a canary just demoted or a
// production version just rolled back.
std::vector<std::pair<std::string, uint32_t>> judge(const model_def& model,
                                                    const quality_service::model_status& st,
                                                    model_registry& registry, alert_store& alerts,
                                                    int64_t now_us);

}  // namespace tessera::monitoring
