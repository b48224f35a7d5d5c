// The inference calls of the client (schemas/inference.capnp).
#include "client_impl.h"

namespace tessera::client {

namespace {

void write_example(wire::Example::Builder b, const example& e) {
  b.setAsOf(e.as_of);
  b.setRequestId(e.request_id);
  write_fields(b.initFields(static_cast<unsigned>(e.fields.size())), e.fields);
}

void write_examples(capnp::List<wire::Example>::Builder out, const std::vector<example>& ex) {
  for (size_t i = 0; i < ex.size(); ++i) write_example(out[static_cast<unsigned>(i)], ex[i]);
}

void write_options(wire::PredictOptions::Builder b, const predict_options& o) {
  b.setVersion(o.version);
  b.setDeadlineMs(static_cast<uint32_t>(o.deadline.count()));
  b.setMaxFeatureAge(o.max_feature_age_us);
  b.setReturnVector(o.return_vector);
  b.setNoBatch(o.no_batch);
  b.setSettled(o.settled);
}

std::vector<prediction> read_predictions(capnp::List<wire::Prediction>::Reader l) {
  std::vector<prediction> out;
  out.reserve(l.size());
  for (auto p : l) {
    prediction x;
    x.score = p.getScore();
    x.version = p.getVersion();
    x.stage = p.getStage();
    x.path = p.getPath();
    x.node = p.getNode();
    x.request_id = p.getRequestId();
    x.prediction_time = p.getPredictionTime();
    x.latency_us = p.getLatencyUs();
    x.error = p.getError();
    x.code = static_cast<errc>(p.getCode());
    x.decision = p.getDecision();
    x.rule = p.getRule();
    for (auto f : p.getFeatures())
      x.features.push_back(
          {f.getName(), f.getValue(), f.getEventTime(), f.getAge(), read_status(f.getStatus())});
    out.push_back(std::move(x));
  }
  return out;
}

}  // namespace

std::future<result<std::vector<prediction>>> connection::predict_async(
    const std::string& model, std::vector<example> examples, const predict_options& o) {
  auto ex = std::make_shared<std::vector<example>>(std::move(examples));
  return impl_->start<std::vector<prediction>>(
      [model, ex, o](session& s) {
        auto req = s.inference.predictRequest();
        req.setModel(model);
        write_options(req.initOptions(), o);
        write_examples(req.initExamples(static_cast<unsigned>(ex->size())), *ex);
        return req.send().then([](capnp::Response<wire::Inference::PredictResults> r) {
          return read_predictions(r.getPredictions());
        });
      },
      true);
}

result<std::vector<prediction>> connection::predict(const std::string& model,
                                                    const std::vector<example>& examples,
                                                    const predict_options& o) {
  return wait(predict_async(model, examples, o));
}

result<std::vector<model_predictions>> connection::predict_models(
    const std::vector<model_request>& models, const std::vector<example>& examples) {
  return wait(impl_->start<std::vector<model_predictions>>(
      [models, examples](session& s) {
        auto req = s.inference.predictModelsRequest();
        auto ml = req.initModels(static_cast<unsigned>(models.size()));
        for (size_t i = 0; i < models.size(); ++i) {
          ml[static_cast<unsigned>(i)].setModel(models[i].model);
          write_options(ml[static_cast<unsigned>(i)].initOptions(), models[i].options);
        }
        write_examples(req.initExamples(static_cast<unsigned>(examples.size())), examples);
        return req.send().then([](capnp::Response<wire::Inference::PredictModelsResults> r) {
          std::vector<model_predictions> out;
          for (auto m : r.getResults())
            out.push_back({m.getModel(), read_predictions(m.getPredictions()), m.getError(),
                           static_cast<errc>(m.getCode())});
          return out;
        });
      },
      true));
}

result<prediction_log_page> connection::tail_predictions(const std::string& model, uint32_t limit,
                                                         uint64_t after_seq) {
  return impl_
      ->start<prediction_log_page>(
          [model, limit, after_seq](session& s) {
            auto req = s.inference.tailPredictionsRequest();
            req.setModel(model);
            req.setLimit(limit);
            req.setAfterSeq(after_seq);
            return req.send().then([](capnp::Response<wire::Inference::TailPredictionsResults> r) {
              prediction_log_page page;
              for (auto t : r.getRecords()) page.records.emplace_back(t.cStr(), t.size());
              page.last_seq = r.getLastSeq();
              return page;
            });
          },
          true)
      .get();
}

result<std::string> connection::skew(const std::string& model, uint32_t sample) {
  return impl_
      ->start<std::string>(
          [model, sample](session& s) {
            auto req = s.inference.skewRequest();
            req.setModel(model);
            req.setSample(sample);
            return req.send().then([](capnp::Response<wire::Inference::SkewResults> r) {
              return std::string(r.getJson().cStr(), r.getJson().size());
            });
          },
          true)
      .get();
}

}  // namespace tessera::client
