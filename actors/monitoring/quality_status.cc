// What the quality service reports (quality_service.h): each model's figures and NodeStatus.
#include <nats/nats.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "alert_store.h"
#include "quality_monitored.h"
#include "quality_service.h"
#include "time_util.h"

namespace tessera {

quality_service::model_status quality_service::status_of(const monitored& m) const {
  model_status ms;
  ms.model = m.model->name;
  std::lock_guard<std::mutex> l(m.mu);
  ms.counts = m.join.figures();
  ms.waiting = m.join.waiting_predictions();
  ms.verdicts = m.verdicts;
  ms.saved_at_us = m.saved_at;
  ms.restored_at_us = m.restored_at;
  ms.saved_predictions = m.saved_predictions;
  ms.owner = m.owner;
  ms.owned = m.owned;
  ms.skew_at_us = m.skew_at;
  ms.skew_compared = m.skew_compared;
  ms.skew_mismatched = m.skew_mismatched;
  ms.skew_worst = m.skew_worst;
  const int64_t wall = now_micros();
  for (auto& t : m.slos) {
    model_status::slo_state x;
    x.sli = t.sli;
    x.budget = t.rates.budget();
    x.burn5m = t.rates.burn(wall, 300 * kMicrosPerSecond);
    x.burn30m = t.rates.burn(wall, 1800 * kMicrosPerSecond);
    x.burn1h = t.rates.burn(wall, 3600 * kMicrosPerSecond);
    x.burn6h = t.rates.burn(wall, 6 * 3600 * kMicrosPerSecond);
    x.events1h = t.rates.events(wall, 3600 * kMicrosPerSecond);
    x.level = monitoring::level_name(t.rates.judge(wall));
    ms.slos.push_back(std::move(x));
  }
  for (auto& d : m.drifts) {
    for (auto& v : d->status()) ms.drift.push_back(std::move(v));
    ms.drift_mismatched = d->mismatched();
  }
  const arm* production = nullptr;
  const arm* canary = nullptr;
  for (auto& [k, w] : m.windows) {
    arm a;
    a.stage = k.first;
    a.version = k.second;
    a.pairs = w.size();
    std::vector<float> p, y;
    std::vector<int64_t> lags;
    for (auto& r : w) {
      p.push_back(static_cast<float>(r.score));
      y.push_back(static_cast<float>(r.label));
      lags.push_back(r.lag_us);
    }
    a.q = monitoring::assess(p, y);
    if (!lags.empty()) {
      std::sort(lags.begin(), lags.end());
      a.lag_p50_ms = static_cast<double>(lags[lags.size() / 2]) / 1e3;
      a.lag_p99_ms =
          static_cast<double>(lags[std::min(lags.size() - 1, lags.size() * 99 / 100)]) / 1e3;
    }
    ms.arms.push_back(std::move(a));
  }
  for (auto& a : ms.arms) {
    if (a.stage == "production" && (!production || a.pairs > production->pairs)) production = &a;
    if (a.stage == "canary" && (!canary || a.pairs > canary->pairs)) canary = &a;
  }
  const auto min_pairs = static_cast<uint64_t>(m.model->monitor.min_pairs);
  if (production && canary && production->pairs >= min_pairs && canary->pairs >= min_pairs) {
    ms.compared = true;
    ms.canary = monitoring::compare(canary->q, production->q, m.model->monitor.alpha);
  }
  return ms;
}

void quality_service::fill_status(wire::NodeStatus::Builder st) const {
  auto all = status();
  auto ql = st.initQuality(static_cast<unsigned>(all.size()));
  for (size_t i = 0; i < all.size(); ++i) {
    auto b = ql[static_cast<unsigned>(i)];
    const auto& m = all[i];
    b.setModel(m.model);
    b.setPredictions(m.counts.predictions);
    b.setLabels(m.counts.labels);
    b.setJoined(m.counts.joined);
    b.setUnlabelled(m.counts.unlabelled);
    b.setLate(m.counts.late);
    b.setUnmatched(m.counts.unmatched);
    b.setDuplicateLabels(m.counts.duplicate_labels);
    b.setDuplicatePredictions(m.counts.duplicate_predictions);
    b.setWaiting(m.waiting);
    b.setCompared(m.compared);
    b.setCanaryWorse(m.canary.worse);
    b.setCanaryLogLossP(m.canary.log_loss_p);
    b.setCanaryAucP(m.canary.auc_p);
    b.setVerdicts(m.verdicts);
    b.setSavedAt(m.saved_at_us);
    b.setRestoredAt(m.restored_at_us);
    b.setSavedPredictions(m.saved_predictions);
    b.setOwner(m.owner);
    b.setOwned(m.owned);
    b.setDriftMismatched(m.drift_mismatched);
    b.setSkewAt(m.skew_at_us);
    b.setSkewCompared(m.skew_compared);
    b.setSkewMismatched(m.skew_mismatched);
    b.setSkewWorst(m.skew_worst);
    auto sl = b.initSlos(static_cast<unsigned>(m.slos.size()));
    for (size_t k = 0; k < m.slos.size(); ++k) {
      auto x = sl[static_cast<unsigned>(k)];
      const auto& y = m.slos[k];
      x.setSli(y.sli);
      x.setBudget(y.budget);
      x.setBurn5m(y.burn5m);
      x.setBurn30m(y.burn30m);
      x.setBurn1h(y.burn1h);
      x.setBurn6h(y.burn6h);
      x.setEvents1h(y.events1h);
      x.setLevel(y.level);
    }
    auto dl = b.initDrift(static_cast<unsigned>(m.drift.size()));
    for (size_t k = 0; k < m.drift.size(); ++k) {
      auto d = dl[static_cast<unsigned>(k)];
      const auto& x = m.drift[k];
      d.setVersion(x.version);
      d.setReference(x.has_reference);
      d.setWhy(x.why);
      d.setAt(x.at_us);
      d.setPredictions(x.n);
      d.setTests(x.tests);
      d.setWindow(x.window_us);
      auto vl = d.initValues(static_cast<unsigned>(x.values.size()));
      for (size_t i = 0; i < x.values.size(); ++i) {
        auto v = vl[static_cast<unsigned>(i)];
        const auto& r = x.values[i].result;
        v.setName(r.name);
        v.setTested(r.tested);
        v.setPsi(r.psi);
        v.setThreshold(r.threshold);
        v.setPValue(r.p_value);
        v.setJs(r.js);
        v.setMeanShiftSd(r.mean_shift_sd);
        v.setDrifted(r.drifted);
        v.setAlarming(std::find(x.alarming.begin(), x.alarming.end(), r.name) != x.alarming.end());
        v.setContribution(x.values[i].contribution);
      }
    }
    auto al = b.initArms(static_cast<unsigned>(m.arms.size()));
    for (size_t k = 0; k < m.arms.size(); ++k) {
      auto a = al[static_cast<unsigned>(k)];
      const arm& x = m.arms[k];
      a.setStage(x.stage);
      a.setVersion(x.version);
      a.setPairs(x.pairs);
      a.setPositives(x.q.positives);
      a.setAuc(x.q.point.auc);
      a.setAucLow(x.q.auc.low);
      a.setAucHigh(x.q.auc.high);
      a.setLogLoss(x.q.point.log_loss);
      a.setLogLossLow(x.q.log_loss.low);
      a.setLogLossHigh(x.q.log_loss.high);
      a.setAccuracy(x.q.point.accuracy);
      a.setAccuracyLow(x.q.accuracy.low);
      a.setAccuracyHigh(x.q.accuracy.high);
      a.setEce(x.q.point.ece);
      a.setLabelLagP50Ms(x.lag_p50_ms);
      a.setLabelLagP99Ms(x.lag_p99_ms);
    }
  }
}

}  // namespace tessera
