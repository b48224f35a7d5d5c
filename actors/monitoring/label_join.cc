#include "label_join.h"

#include <algorithm>

namespace tessera::monitoring {

void label_join::join(key_state& k, const pending& p, std::vector<labelled_pair>& out) {
  if (p.time > k.label_time || k.label_time - p.time > o_.max_label_delay_us) {
    ++c_.late;  // labelled too long after it (or made after its outcome was known)
    return;
  }
  out.push_back({p.model, p.stage, p.version, p.score, k.y, p.time, k.label_time});
  ++c_.joined;
  k.joined = true;
}

void label_join::prediction(const std::string& key, const std::string& model, uint32_t version,
                            const std::string& stage, double score, int64_t prediction_time,
                            std::vector<labelled_pair>& out) {
  key_state& k = keys_[key];
  const std::pair<std::string, std::string> ms{model, stage};
  if (std::find(k.seen.begin(), k.seen.end(), ms) != k.seen.end()) {
    ++c_.duplicate_predictions;
    return;
  }
  k.seen.push_back(ms);
  ++c_.predictions;
  pending p{model, stage, version, score, prediction_time};
  if (k.labelled && k.orphan_counted) {
    ++c_.late;  // its label waited past the grace and was counted unmatched
    return;
  }
  if (k.labelled) {
    const bool was_orphan = !k.joined && !k.orphan_counted;
    join(k, p, out);
    if (was_orphan && k.joined) --orphans_;
    return;
  }
  k.preds.push_back(std::move(p));
  ++pending_count_;
  expiry_.emplace(prediction_time + o_.max_label_delay_us, key);
  while (pending_count_ > o_.max_pending && !expiry_.empty()) {
    // Full: the key that expires first loses its waiting predictions now.
    auto it = expiry_.begin();
    const std::string victim = it->second;
    expiry_.erase(it);
    auto v = keys_.find(victim);
    if (v == keys_.end()) continue;
    c_.dropped += v->second.preds.size();
    pending_count_ -= v->second.preds.size();
    v->second.preds.clear();
  }
}

void label_join::label(const std::string& key, double y, int64_t label_time,
                       std::vector<labelled_pair>& out) {
  ++c_.labels;
  key_state& k = keys_[key];
  if (k.labelled) {
    ++c_.duplicate_labels;
    return;
  }
  k.labelled = true;
  k.label_time = label_time;
  k.y = y;
  for (const pending& p : k.preds) join(k, p, out);
  pending_count_ -= k.preds.size();
  k.preds.clear();
  if (!k.joined) ++orphans_;  // waits for a prediction still on its way
  expiry_.emplace(label_time + std::max(o_.max_label_delay_us, o_.label_grace_us), key);
  if (!k.joined) expiry_.emplace(label_time + o_.label_grace_us, key);
}

void label_join::expire(const std::string& key, int64_t now) {
  auto it = keys_.find(key);
  if (it == keys_.end()) return;
  key_state& k = it->second;
  const size_t before = k.preds.size();
  k.preds.erase(
      std::remove_if(k.preds.begin(), k.preds.end(),
                     [&](const pending& p) { return p.time + o_.max_label_delay_us <= now; }),
      k.preds.end());
  c_.unlabelled += before - k.preds.size();
  pending_count_ -= before - k.preds.size();
  if (k.labelled && !k.joined && !k.orphan_counted && k.label_time + o_.label_grace_us <= now) {
    ++c_.unmatched;
    k.orphan_counted = true;
    --orphans_;
  }
  const int64_t keep_until =
      k.labelled ? k.label_time + std::max(o_.max_label_delay_us, o_.label_grace_us) : 0;
  if (k.preds.empty() && keep_until <= now) {
    if (k.labelled && !k.joined && !k.orphan_counted) {
      ++c_.unmatched;
      --orphans_;
    }
    keys_.erase(it);
  }
}

void label_join::advance(int64_t now) {
  while (!expiry_.empty() && expiry_.begin()->first <= now) {
    const std::string key = expiry_.begin()->second;
    expiry_.erase(expiry_.begin());
    expire(key, now);
  }
}

}  // namespace tessera::monitoring
