#include "inference_wire.h"

#include "codec.h"

namespace tessera {

example_in read_example(wire::Example::Reader r) {
  example_in e;
  e.as_of = r.getAsOf();
  e.request_id = r.getRequestId();
  e.fields.reserve(r.getFields().size());
  for (auto f : r.getFields()) e.fields.emplace_back(f.getName(), read_value(f.getValue()));
  return e;
}

void write_example(wire::Example::Builder b, const example_in& e) {
  b.setAsOf(e.as_of);
  b.setRequestId(e.request_id);
  auto fl = b.initFields(static_cast<unsigned>(e.fields.size()));
  for (size_t i = 0; i < e.fields.size(); ++i) {
    fl[static_cast<unsigned>(i)].setName(e.fields[i].first);
    write_value(fl[static_cast<unsigned>(i)].initValue(), e.fields[i].second);
  }
}

predict_options read_options(wire::PredictOptions::Reader r) {
  predict_options o;
  o.version = r.getVersion();
  o.deadline_ms = r.getDeadlineMs();
  o.max_feature_age = r.getMaxFeatureAge();
  o.return_vector = r.getReturnVector();
  o.no_batch = r.getNoBatch();
  o.settled = r.getSettled();
  return o;
}

void write_options(wire::PredictOptions::Builder b, const predict_options& o) {
  b.setVersion(o.version);
  b.setDeadlineMs(o.deadline_ms);
  b.setMaxFeatureAge(o.max_feature_age);
  b.setReturnVector(o.return_vector);
  b.setNoBatch(o.no_batch);
  b.setSettled(o.settled);
}

prediction_out read_prediction(wire::Prediction::Reader r) {
  prediction_out p;
  p.score = r.getScore();
  p.version = r.getVersion();
  p.stage = r.getStage();
  p.path = r.getPath();
  p.node = r.getNode();
  p.request_id = r.getRequestId();
  p.prediction_time = r.getPredictionTime();
  p.latency_us = r.getLatencyUs();
  p.error = r.getError();
  p.code = static_cast<errc>(r.getCode());
  p.decision = r.getDecision();
  p.rule = r.getRule();
  for (auto f : r.getFeatures())
    p.features.push_back({f.getName(), f.getValue(), f.getEventTime(), f.getAge(),
                          static_cast<vector_status>(f.getStatus())});
  return p;
}

void write_prediction(wire::Prediction::Builder b, const prediction_out& p) {
  b.setScore(p.score);
  b.setVersion(p.version);
  b.setStage(p.stage);
  b.setPath(p.path);
  b.setNode(p.node);
  b.setRequestId(p.request_id);
  b.setPredictionTime(p.prediction_time);
  b.setLatencyUs(p.latency_us);
  b.setError(p.error);
  b.setCode(static_cast<uint8_t>(p.code));
  if (!p.decision.empty()) b.setDecision(p.decision);
  if (!p.rule.empty()) b.setRule(p.rule);
  if (p.features.empty()) return;
  auto fl = b.initFeatures(static_cast<unsigned>(p.features.size()));
  for (size_t i = 0; i < p.features.size(); ++i) {
    auto f = fl[static_cast<unsigned>(i)];
    const feature_out& x = p.features[i];
    f.setName(x.name);
    f.setValue(x.value);
    f.setEventTime(x.event_time);
    f.setAge(x.age);
    f.setStatus(static_cast<wire::Status>(x.status));
  }
}

}  // namespace tessera
