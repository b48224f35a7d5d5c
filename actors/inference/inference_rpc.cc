#include "inference_rpc.h"

#include "inference_service.h"
#include "inference_wire.h"
#include "rpc_edge.h"
#include "rules.h"

namespace tessera {
namespace {

constexpr size_t kMaxExamples = 10000;

using predictions = std::vector<prediction_out>;

std::vector<example_in> read_examples(capnp::List<wire::Example>::Reader l) {
  if (l.size() == 0) throw_rpc_error("no examples", errc::invalid);
  if (l.size() > kMaxExamples)
    throw_rpc_error(
        std::to_string(l.size()) + " examples in one call; at most " + std::to_string(kMaxExamples),
        errc::invalid);
  std::vector<example_in> out;
  out.reserve(l.size());
  for (auto e : l) out.push_back(read_example(e));
  return out;
}

kj::Promise<result<predictions>> predict_on(inference_service* s, const std::string& model,
                                            const predict_options& o,
                                            std::vector<example_in> examples) {
  auto paf = kj::newPromiseAndCrossThreadFulfiller<result<predictions>>();
  auto f = std::make_shared<xthread<result<predictions>>>();
  f->f = kj::mv(paf.fulfiller);
  s->predict(model, o, std::move(examples),
             [f](result<predictions> r) { f->f->fulfill(std::move(r)); });
  return kj::mv(paf.promise);
}

template <typename T>
kj::Promise<result<T>> off_thread(inference_service* s, std::function<result<T>()> fn) {
  auto paf = kj::newPromiseAndCrossThreadFulfiller<result<T>>();
  auto f = std::make_shared<xthread<result<T>>>();
  f->f = kj::mv(paf.fulfiller);
  if (!s->run([f, fn = std::move(fn)] { f->f->fulfill(fn()); }))
    f->f->fulfill(make_error("the node is stopping; retry", errc::unavailable));
  return kj::mv(paf.promise);
}

void write_predictions(capnp::List<wire::Prediction>::Builder l, const predictions& p) {
  for (size_t i = 0; i < p.size(); ++i) write_prediction(l[static_cast<unsigned>(i)], p[i]);
}

}  // namespace

inference_service* inference_rpc::service() const {
  inference_service* s = service_ ? service_->load() : nullptr;
  if (!s)
    throw_rpc_error("inference is not ready on this node yet (it is still joining); retry",
                    errc::retryable);
  return s;
}

kj::Promise<void> inference_rpc::predict(PredictContext call) {
  auto p = call.getParams();
  inference_service* s = service();
  auto examples = read_examples(p.getExamples());
  return predict_on(s, p.getModel(), read_options(p.getOptions()), std::move(examples))
      .then([call](result<predictions> r) mutable {
        auto out = value_or_throw(std::move(r));
        write_predictions(call.getResults().initPredictions(static_cast<unsigned>(out.size())),
                          out);
      });
}

kj::Promise<void> inference_rpc::predictModels(PredictModelsContext call) {
  auto p = call.getParams();
  inference_service* s = service();
  auto examples = read_examples(p.getExamples());
  auto models = p.getModels();
  if (models.size() == 0) throw_rpc_error("no models", errc::invalid);
  if (models.size() > 16) throw_rpc_error("at most 16 models per call", errc::invalid);
  auto names = std::make_shared<std::vector<std::string>>();
  kj::Vector<kj::Promise<result<predictions>>> each;
  for (auto m : models) {
    names->push_back(m.getModel());
    each.add(predict_on(s, m.getModel(), read_options(m.getOptions()), examples));
  }
  return kj::joinPromises(each.releaseAsArray())
      .then([call, names](kj::Array<result<predictions>> all) mutable {
        auto rl = call.getResults().initResults(static_cast<unsigned>(all.size()));
        for (size_t i = 0; i < all.size(); ++i) {
          auto b = rl[static_cast<unsigned>(i)];
          b.setModel((*names)[i]);
          if (!all[i]) {
            b.setError(all[i].error_message());
            b.setCode(static_cast<uint8_t>(all[i].error_code()));
            continue;
          }
          write_predictions(b.initPredictions(static_cast<unsigned>(all[i]->size())), *all[i]);
        }
      });
}

kj::Promise<void> inference_rpc::tailPredictions(TailPredictionsContext call) {
  auto p = call.getParams();
  inference_service* s = service();
  std::string model = p.getModel();
  const size_t limit = std::min<size_t>(p.getLimit() ? p.getLimit() : 10, 10000);
  const uint64_t after = p.getAfterSeq();
  return off_thread<prediction_log::page>(
             s, [s, model, limit, after] { return s->tail(model, limit, after); })
      .then([call](result<prediction_log::page> r) mutable {
        auto page = value_or_throw(std::move(r));
        auto res = call.getResults();
        auto l = res.initRecords(static_cast<unsigned>(page.records.size()));
        for (size_t i = 0; i < page.records.size(); ++i)
          l.set(static_cast<unsigned>(i), page.records[i]);
        res.setLastSeq(page.last_seq);
      });
}

kj::Promise<void> inference_rpc::skew(SkewContext call) {
  auto p = call.getParams();
  inference_service* s = service();
  std::string model = p.getModel();
  const size_t sample = std::min<uint32_t>(p.getSample() ? p.getSample() : 1000, 100000);
  return off_thread<std::string>(s, [s, model, sample] { return s->skew(model, sample); })
      .then([call](result<std::string> r) mutable {
        call.getResults().setJson(value_or_throw(std::move(r)));
      });
}

void inference_rpc::fill_status(wire::NodeStatus::Builder st) const {
  inference_service* s = service_ ? service_->load() : nullptr;
  if (!s) return;
  auto entries = s->serving();
  const uint64_t drops = s->log_drops();
  auto ml = st.initModels(static_cast<unsigned>(entries.size()));
  for (size_t i = 0; i < entries.size(); ++i) {
    auto b = ml[static_cast<unsigned>(i)];
    const auto& e = entries[i];
    b.setModel(e.name);
    b.setStage(e.stage);
    b.setShare(e.share);
    b.setArm(e.arm);
    b.setLoadError(e.load_error);
    b.setLogDrops(drops);
    if (!e.model) {
      b.setVersion(e.failed_version);
      continue;
    }
    const serving_model& m = *e.model;
    b.setVersion(m.version);
    b.setLoadedAt(m.loaded_at);
    b.setRequests(m.requests.load());
    b.setErrors(m.errors.load());
    b.setShadowSkipped(m.shadow_skipped.load());
    b.setFallbacks(m.fallbacks.load());
    b.setRuleFailures(m.rule_failures.load());
    if (m.rules) b.setRules(m.rules->describe());
    b.setMeanScore(m.mean_score());
    b.setScores(m.scores.load());
    b.setRequestsPerSecond(m.requests_per_second());
    b.setP50Micros(m.latency.quantile_us(0.5));
    b.setP99Micros(m.latency.quantile_us(0.99));
    const uint64_t fw = m.batch->forwards();
    b.setMeanBatch(fw ? static_cast<double>(m.batch->rows()) / static_cast<double>(fw) : 0);
  }
  auto follows = s->follows();
  auto fl = st.initFollows(static_cast<unsigned>(follows.size()));
  for (size_t i = 0; i < follows.size(); ++i) {
    auto b = fl[static_cast<unsigned>(i)];
    const auto& f = follows[i];
    b.setModel(f.model);
    b.setStream(f.stream);
    b.setPredicted(f.predicted);
    b.setSkipped(f.skipped);
    b.setDeadLettered(f.dead_lettered);
    b.setRetried(f.retried);
    b.setDuplicates(f.duplicates);
    b.setPending(f.pending);
    b.setLagP50Ms(f.lag_p50_ms);
    b.setLagP99Ms(f.lag_p99_ms);
  }
}

}  // namespace tessera
