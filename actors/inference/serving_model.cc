#include "serving_model.h"

#include <algorithm>
#include <cmath>
#include <thread>

#include "actors/training/trainer.h"
#include "time_util.h"

namespace tessera {

serving_model::~serving_model() {
  batch.reset();  // joins the worker before the module goes
}

void serving_model::record(double latency_us, bool ok) const {
  requests.fetch_add(1, std::memory_order_relaxed);
  if (!ok) errors.fetch_add(1, std::memory_order_relaxed);
  latency.record_us(latency_us);
  const int64_t s = now_micros() / 1000000;
  const size_t i = static_cast<size_t>(s) % second.size();
  if (second[i].load(std::memory_order_relaxed) != s) {
    second[i].store(s, std::memory_order_relaxed);
    per_second[i].store(0, std::memory_order_relaxed);
  }
  per_second[i].fetch_add(1, std::memory_order_relaxed);
}

double serving_model::requests_per_second() const {
  const int64_t now = now_micros() / 1000000;
  uint64_t n = 0;
  for (size_t i = 0; i < second.size(); ++i) {
    const int64_t s = second[i].load(std::memory_order_relaxed);
    if (s > now - 10 && s <= now - 1) n += per_second[i].load(std::memory_order_relaxed);
  }
  return static_cast<double>(n) / 9.0;  // the 9 complete seconds before this one
}

void serving_model::record_score(double score) const {
  if (!std::isfinite(score)) return;
  scores.fetch_add(1, std::memory_order_relaxed);
  score_sum_nano.fetch_add(std::llround(std::clamp(score, -1e6, 1e6) * 1e9),
                           std::memory_order_relaxed);
}

double serving_model::mean_score() const {
  const uint64_t n = scores.load(std::memory_order_relaxed);
  return n ? static_cast<double>(score_sum_nano.load(std::memory_order_relaxed)) / 1e9 /
                 static_cast<double>(n)
           : 0;
}

namespace {

// The last request holding a version may finish on the version's own batcher thread, which
// cannot join itself: the version is then destroyed on a thread of its own.
void destroy(serving_model* m) {
  if (m->batch && m->batch->on_worker_thread())
    std::thread([m] { delete m; }).detach();
  else
    delete m;
}

}  // namespace

result<std::shared_ptr<serving_model>> load_serving_model(std::shared_ptr<const definitions> defs,
                                                          const nlohmann::json& record,
                                                          const std::string& artifact,
                                                          const batcher::options& batching) {
  std::shared_ptr<serving_model> m(new serving_model(), destroy);
  try {
    m->name = record.at("name").get<std::string>();
    m->version = record.at("version").get<uint32_t>();
    const auto& lineage = record.at("lineage");
    const std::string label = lineage.at("label").get<std::string>();
    m->label = defs->find_label(label);
    if (!m->label)
      return make_error("its label '" + label + "' is not in the node's definitions",
                        errc::invalid);
    std::vector<const view_def*> views;
    for (auto& q : lineage.at("views")) {
      const std::string name = q.get<std::string>();
      const view_def* v = defs->find_view(name);
      if (!v || v->qualified() != name)
        return make_error("it reads view " + name + ", which the node's definitions do not have",
                          errc::invalid);
      views.push_back(v);
    }
    m->label_plan = defs->find_plan(m->label->stream, m->label->entity);
    if (!m->label_plan)
      return make_error(
          "label " + label + ": no storage plan for its entity kind " + m->label->entity,
          errc::invalid);
    m->derive = std::make_unique<example_deriver>(*defs, *m->label, views);
    for (auto& c : record.at("inputs")) {
      serving_model::input in;
      in.name = c.get<std::string>();
      if (auto up = chained_model(in.name); !up.empty()) {
        if (!defs->find_model(up))
          return make_error("input " + in.name + ": model " + up + " is not in the definitions",
                            errc::invalid);
        auto at = std::find(m->upstream.begin(), m->upstream.end(), up);
        in.upstream = static_cast<int>(at - m->upstream.begin());
        if (at == m->upstream.end()) m->upstream.push_back(up);
        m->inputs.push_back(std::move(in));
        continue;
      }
      for (size_t k = 0; k < m->label->on_demand.size(); ++k)
        if (m->label->on_demand[k].name == in.name) in.on_demand = static_cast<int>(k);
      for (size_t v = 0; v < views.size() && in.on_demand < 0 && in.view < 0; ++v)
        for (size_t f = 0; f < views[v]->features.size(); ++f)
          if (views[v]->name + "." + views[v]->features[f].name == in.name) {
            in.view = static_cast<int>(v);
            in.feature = static_cast<int>(f);
          }
      if (in.on_demand < 0 && in.view < 0)
        return make_error("input " + in.name + " is no column of label " + label, errc::invalid);
      m->inputs.push_back(std::move(in));
    }
  } catch (const std::exception& e) {
    return make_error(std::string("its registry record is incomplete: ") + e.what(), errc::invalid);
  }
  if (m->inputs.empty()) return make_error("it has no inputs", errc::invalid);
  auto names = std::make_shared<std::vector<std::string>>();
  for (auto& in : m->inputs) names->push_back(in.name);
  m->input_names = std::move(names);
  for (const view_def* v : m->derive->views()) m->view_names.push_back(v->qualified());
  if (const model_def* md = defs->find_model(m->name))
    m->log_sample = md->log_sample, m->shadow_sample = md->shadow_sample,
    m->max_feature_age_us = md->max_feature_age_us, m->fallback = md->fallback,
    m->rules = md->rules;
  m->defs = std::move(defs);
  auto t = torchscript_model::load(artifact, m->inputs.size());
  if (!t) return make_error("its artifact does not load: " + t.error_message(), errc::invalid);
  m->torch = std::move(t.value());
  // Warm-up: the first passes allocate and optimise; a module that fails here never serves.
  const size_t d = m->inputs.size();
  for (size_t rows : {size_t(1), batching.max_batch}) {
    std::vector<float> x(rows * d, 0.0f), out(rows);
    for (int pass = 0; pass < 3; ++pass) {
      if (auto st = m->torch->forward(x.data(), rows, out.data()); !st)
        return make_error("its warm-up forward pass failed: " + st.error_message(), errc::invalid);
      for (float p : out)
        if (!std::isfinite(p) || p < 0 || p > 1)
          return make_error("its warm-up gave " + std::to_string(p) + ", not a probability",
                            errc::invalid);
    }
  }
  m->batch = std::make_unique<batcher>(*m->torch, batching);
  m->loaded_at = now_micros();
  return m;
}

}  // namespace tessera
