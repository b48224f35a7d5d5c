#include "training_rpc.h"

#include <capnp/compat/json.h>
#include <capnp/message.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <cctype>
#include <cmath>

#include "cluster/registry.h"
#include "dataset.h"
#include "definitions.h"
#include "model_overview.h"
#include "rpc_edge.h"
#include "trainer.h"
#include "training_service.h"

namespace tessera {

namespace {

// The registry's records are nlohmann JSON, whose non-finite numbers were written as null;
// capnp's JSON codec wants a value of the field's type, so nulls go (a missing field reads as
// its default) and a null inside a number list becomes NaN.
void prepare_for_codec(nlohmann::json& j) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end();) {
      if (it->is_null()) {
        it = j.erase(it);
      } else {
        prepare_for_codec(*it);
        ++it;
      }
    }
  } else if (j.is_array()) {
    for (auto& e : j) {
      if (e.is_null())
        e = "NaN";
      else
        prepare_for_codec(e);
    }
  }
}

// Decodes a registry JSON record into its Cap'n Proto struct (schemas/training.capnp names the
// records' fields with $Json.name). Unknown fields are skipped, so records of newer nodes read.
template <typename T>
void decode_record(nlohmann::json j, typename T::Builder out) {
  prepare_for_codec(j);
  capnp::JsonCodec codec;
  codec.handleByAnnotation<T>();
  const std::string text = j.dump();
  codec.decode(kj::StringPtr(text.c_str()), out);
}

}  // namespace

void write_job(wire::JobStatus::Builder b, const job_info& j) {
  b.setId(j.id);
  b.setModel(j.model);
  b.setState(j.state);
  b.setNode(j.node);
  b.setAttempt(j.attempt);
  b.setPhase(j.phase);
  b.setEpoch(j.epoch);
  b.setEpochs(j.epochs);
  b.setFraction(j.fraction);
  b.setLoss(j.loss);
  b.setError(j.error);
  b.setVersion(j.version);
  b.setTestAuc(j.test_auc);
}

training_rpc::training_rpc(deps d) : d_(std::move(d)) {}
training_rpc::~training_rpc() = default;

training_service* training_rpc::training() const {
  training_service* t = (d_.training ? d_.training->load() : nullptr);
  if (!t)
    throw_rpc_error(
        "training and the registry are not ready on this node yet (it is still joining); retry",
        errc::retryable);
  return t;
}

template <typename T>
kj::Promise<result<T>> training_rpc::off_thread(std::function<result<T>()> fn) {
  auto paf = kj::newPromiseAndCrossThreadFulfiller<result<T>>();
  auto f = std::make_shared<xthread<result<T>>>();
  f->f = kj::mv(paf.fulfiller);
  training()->run([f, fn = std::move(fn)] { f->f->fulfill(fn()); });
  return kj::mv(paf.promise);
}

std::string training_rpc::known_labels() const {
  std::string s;
  for (auto& x : d_.defs->labels()) s += (s.empty() ? "" : ", ") + x.name;
  return " (known: " + (s.empty() ? std::string("none; define one with label { ... }") : s) + ")";
}

void training_rpc::fill_status(wire::NodeStatus::Builder st) const {
  training_service* t = (d_.training ? d_.training->load() : nullptr);
  if (!t) return;
  auto jobs = t->jobs();
  auto jl = st.initJobs(static_cast<unsigned>(jobs.size()));
  for (size_t i = 0; i < jobs.size(); ++i) write_job(jl[static_cast<unsigned>(i)], jobs[i]);
}

template <typename Call>
kj::Promise<void> training_rpc::dataset_shard(Call call) {
  auto p = call.getParams();
  std::string name = p.getLabel();
  const label_def* l = d_.defs->find_label(name);
  if (!l) throw_rpc_error("unknown label '" + name + "'" + known_labels(), errc::not_found);
  const uint32_t shard = p.getShard();
  if (shard >= d_.shard_count)
    throw_rpc_error("shard " + std::to_string(shard) + " does not exist (the cluster has " +
                        std::to_string(d_.shard_count) + ")",
                    errc::invalid);
  const int64_t from = p.getFrom(), to = p.getTo();
  if (from >= to) throw_rpc_error("empty time range: from must be before to", errc::invalid);
  if (!d_.datasets) throw_rpc_error("this node builds no datasets", errc::not_found);
  auto paf = kj::newPromiseAndCrossThreadFulfiller<result<dataset_part>>();
  auto f = std::make_shared<xthread<result<dataset_part>>>();
  f->f = kj::mv(paf.fulfiller);
  d_.datasets->shard_part(*l, shard, from, to, [f](result<dataset_part> r, bool retryable) {
    if (!r && retryable && !is_retryable(r.error_code()))
      r = make_error(r.error_message(), errc::retryable);
    f->f->fulfill(std::move(r));
  });
  return paf.promise.then([call](result<dataset_part> r) mutable {
    auto part = value_or_throw(std::move(r));
    auto out = call.getResults().initPart();
    auto cl = out.initColumns(static_cast<unsigned>(part.columns.size()));
    for (size_t i = 0; i < part.columns.size(); ++i)
      cl.set(static_cast<unsigned>(i), part.columns[i]);
    out.setCsv(kj::arrayPtr(reinterpret_cast<const kj::byte*>(part.csv.data()), part.csv.size()));
    out.setRows(part.rows);
    out.setExamples(part.examples);
    out.setOutsideRetention(part.outside_retention);
    out.setUnlabelled(part.unlabelled);
    out.setNonFinite(part.non_finite);
  });
}

template <typename Call>
kj::Promise<void> training_rpc::train_call(Call call) {
  std::string model = call.getParams().getModel();
  return off_thread<std::string>([t = training(), model] { return t->submit(model); })
      .then([call](result<std::string> r) mutable {
        call.getResults().setJobId(value_or_throw(std::move(r)));
      });
}

template <typename Call>
kj::Promise<void> training_rpc::job_call(Call call) {
  std::string id = call.getParams().getJobId();
  return off_thread<job_info>([t = training(), id] { return t->job(id); })
      .then([call](result<job_info> r) mutable {
        write_job(call.getResults().initJob(), value_or_throw(std::move(r)));
      });
}

kj::Promise<void> training_rpc::listModels(ListModelsContext call) {
  return off_thread<nlohmann::json>([t = training()] { return t->registry().list(); })
      .then([call](result<nlohmann::json> r) mutable {
        auto models = value_or_throw(std::move(r));
        auto out = call.getResults().initModels(static_cast<unsigned>(models.size()));
        for (size_t i = 0; i < models.size(); ++i)
          decode_record<wire::ModelSummary>(models[i], out[static_cast<unsigned>(i)]);
      });
}

kj::Promise<void> training_rpc::showModel(ShowModelContext call) {
  std::string name = call.getParams().getName();
  uint32_t version = call.getParams().getVersion();
  return off_thread<nlohmann::json>(
             [t = training(), name, version] { return t->registry().show(name, version); })
      .then([call](result<nlohmann::json> r) mutable {
        decode_record<wire::ModelVersion>(value_or_throw(std::move(r)),
                                          call.getResults().initModel());
      });
}

kj::Promise<void> training_rpc::list_models_json(
    capnp::CallContext<wire::Gateway::ListModelsParams, wire::Gateway::ListModelsResults> call) {
  return off_thread<nlohmann::json>([t = training()] { return t->registry().list(); })
      .then([call](result<nlohmann::json> r) mutable {
        call.getResults().setJson(value_or_throw(std::move(r)).dump());
      });
}

kj::Promise<void> training_rpc::show_model_json(
    capnp::CallContext<wire::Gateway::ShowModelParams, wire::Gateway::ShowModelResults> call) {
  std::string name = call.getParams().getName();
  uint32_t version = call.getParams().getVersion();
  return off_thread<nlohmann::json>(
             [t = training(), name, version] { return t->registry().show(name, version); })
      .then([call](result<nlohmann::json> r) mutable {
        call.getResults().setJson(value_or_throw(std::move(r)).dump());
      });
}

template <typename Call>
kj::Promise<void> training_rpc::promote(Call call) {
  auto p = call.getParams();
  std::string name = p.getName(), stage = p.getStage();
  uint32_t version = p.getVersion();
  const double share = p.getShare();
  if (version == 0) throw_rpc_error("name the version to promote", errc::invalid);
  return off_thread<bool>([t = training(), name, version, stage, share]() -> result<bool> {
           auto st = t->registry().promote(name, version, stage, share);
           if (!st) return st.failure();
           if (stage == "canary")
             spdlog::info("registry: {} version {} is the canary for {:.0f}% of entities", name,
                          version, 100 * (share < 0 ? 0.1 : share));
           else
             spdlog::info("registry: {} version {} promoted to {}", name, version, stage);
           return true;
         })
      .then([](result<bool> r) { value_or_throw(std::move(r)); });
}

kj::Promise<void> training_rpc::setArms(SetArmsContext call) {
  auto p = call.getParams();
  std::string name = p.getName();
  std::vector<ab_arm> arms;
  for (auto a : p.getArms()) arms.push_back({a.getVersion(), a.getShare()});
  return off_thread<bool>([t = training(), name, arms]() -> result<bool> {
           auto st = t->registry().set_arms(name, arms);
           if (!st) return st.failure();
           std::string text;
           for (auto& a : arms)
             text += fmt::format("{}version {} {:g}%", text.empty() ? "" : ", ", a.version,
                                 100 * a.share);
           spdlog::info("registry: {} A/B arms: {}", name, text.empty() ? "none" : text);
           return true;
         })
      .then([](result<bool> r) { value_or_throw(std::move(r)); });
}

kj::Promise<void> training_rpc::describeModel(DescribeModelContext call) {
  std::string name = call.getParams().getName();
  const model_def* def = d_.defs->find_model(name);
  nlohmann::json definition = nullptr;
  if (def) definition = describe_definition(*def);
  return off_thread<nlohmann::json>([t = training(), name, definition]() -> result<nlohmann::json> {
           auto h = t->registry().current_head(name);
           if (!h) return h.failure();
           if (h->first.is_null() && definition.is_null())
             return make_error("unknown model '" + name + "'", errc::not_found);
           return describe_model(name, h->first, definition);
         })
      .then([call](result<nlohmann::json> r) mutable {
        call.getResults().setJson(value_or_throw(std::move(r)).dump());
      });
}

template <typename Call>
kj::Promise<void> training_rpc::rollback(Call call) {
  std::string name = call.getParams().getName();
  return off_thread<uint32_t>([t = training(), name]() -> result<uint32_t> {
           auto v = t->registry().rollback(name);
           if (v) spdlog::info("registry: {} rolled back to version {}", name, *v);
           return v;
         })
      .then([call](result<uint32_t> r) mutable {
        call.getResults().setVersion(value_or_throw(std::move(r)));
      });
}

template <typename Call>
kj::Promise<void> training_rpc::import_call(Call call) {
  auto p = call.getParams();
  std::string name = p.getName(), label = p.getLabel();
  const label_def* l = d_.defs->find_label(label);
  if (!l) throw_rpc_error("unknown label '" + label + "'" + known_labels(), errc::not_found);
  bool name_ok = !name.empty() && name.size() <= 64;
  for (char c : name)
    name_ok = name_ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_');
  if (!name_ok)
    throw_rpc_error("model names are letters, digits and _ (at most 64)", errc::invalid);
  // A chained model of the definitions (a feature "model:NAME") reads its features, in order;
  // any other import reads every feature column of the label.
  std::vector<std::string> cols = l->feature_columns();
  if (const model_def* def = d_.defs->find_model(name)) {
    bool chained = false;
    for (auto& f : def->features) chained = chained || !chained_model(f).empty();
    if (chained && def->label != label)
      throw_rpc_error("model " + name + " is defined with label " + def->label + ", not " + label,
                      errc::invalid);
    if (chained) cols = def->features;
  }
  auto bytes = p.getArtifact();
  std::string artifact(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
  return off_thread<uint32_t>(
             [t = training(), name, l, cols, artifact = std::move(artifact)]() -> result<uint32_t> {
               auto ok = check_torchscript(artifact, cols.size());
               if (!ok) return make_error("refused: " + ok.error_message(), errc::invalid);
               nlohmann::json views = nlohmann::json::array();
               for (const view_def* v : l->views) views.push_back(v->qualified());
               return t->registry().register_version(
                   name,
                   {{"kind", "imported"},
                    {"inputs", cols},
                    {"lineage", {{"label", l->name}, {"views", views}, {"imported", true}}}},
                   artifact);
             })
      .then([call](result<uint32_t> r) mutable {
        call.getResults().setVersion(value_or_throw(std::move(r)));
      });
}

template <typename Call>
kj::Promise<void> training_rpc::export_call(Call call) {
  std::string name = call.getParams().getName();
  uint32_t version = call.getParams().getVersion();
  struct exported {
    std::string bytes;
    uint32_t version;
  };
  return off_thread<exported>([t = training(), name, version]() -> result<exported> {
           auto j = t->registry().show(name, version);
           if (!j) return j.failure();
           uint32_t v = (*j)["version"].get<uint32_t>();
           auto a = t->registry().artifact(name, v);
           if (!a) return a.failure();
           return exported{std::move(a.value()), v};
         })
      .then([call](result<exported> r) mutable {
        auto e = value_or_throw(std::move(r));
        call.getResults().setArtifact(
            kj::arrayPtr(reinterpret_cast<const kj::byte*>(e.bytes.data()), e.bytes.size()));
        call.getResults().setVersion(e.version);
      });
}

// The family's capability and the root Gateway share these implementations: their parameters
// and results have the same fields.
#define TSR_BOTH(method, Ctx)                                                        \
  template kj::Promise<void> training_rpc::method(wire::Training::Server::Ctx call); \
  template kj::Promise<void> training_rpc::method(wire::Gateway::Server::Ctx call);
TSR_BOTH(dataset_shard, DatasetShardContext)
TSR_BOTH(train_call, TrainContext)
TSR_BOTH(job_call, JobContext)
TSR_BOTH(promote, PromoteModelContext)
TSR_BOTH(rollback, RollbackModelContext)
TSR_BOTH(import_call, ImportModelContext)
TSR_BOTH(export_call, ExportModelContext)
#undef TSR_BOTH

}  // namespace tessera
