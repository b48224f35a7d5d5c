// `tessera train` and `tessera models ...`: training jobs and the model registry over RPC.
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "cli_util.h"
#include "commands.h"
#include "tessera/client.h"

namespace tessera::cli {
namespace {

void print_metrics(wire::SplitMetrics::Reader m) {
  const std::pair<const char*, wire::BinaryMetrics::Reader> splits[] = {
      {"train", m.getTrain()}, {"validation", m.getValidation()}, {"test", m.getTest()}};
  for (auto& [name, s] : splits) {
    if (s.getN() == 0) continue;
    std::printf("  %-10s n %9s  AUC %.4f  log loss %.4f  accuracy %.4f  ECE %.4f  base rate %.3f\n",
                name, human(s.getN()).c_str(), s.getAuc(), s.getLogLoss(), s.getAccuracy(),
                s.getEce(), s.getBaseRate());
  }
}

std::string text_list(capnp::List<capnp::Text>::Reader l) {
  nlohmann::json j = nlohmann::json::array();
  for (auto t : l) j.push_back(std::string(t.cStr()));
  return j.dump();
}

}  // namespace

int run_train(const train_args& a) {
  auto conn = client::connection::open(a.rpc);
  auto queued = conn->train(a.model);
  if (!queued) return fail(a.rpc, queued);
  const std::string id = *queued;
  std::fprintf(stderr, "training job %s queued\n", id.c_str());
  if (a.no_wait) {
    std::printf("%s\n", id.c_str());
    return 0;
  }
  const bool tty = isatty(STDERR_FILENO) && !a.quiet;
  std::string last_line;
  for (;;) {
    auto resp = conn->job(id);
    if (!resp) return fail(a.rpc, resp);
    auto j = resp->get();
    std::string state = j.getState().cStr();
    char line[256];
    if (std::string(j.getPhase().cStr()) == "training")
      std::snprintf(line, sizeof line,
                    "%s on %s (attempt %u): training epoch %u/%u  %3.0f%%  loss %.4f",
                    state.c_str(), j.getNode().cStr(), j.getAttempt(), j.getEpoch(), j.getEpochs(),
                    j.getFraction() * 100, j.getLoss());
    else
      std::snprintf(line, sizeof line, "%s%s%s (attempt %u): %s %3.0f%%", state.c_str(),
                    j.getNode().size() ? " on " : "", j.getNode().cStr(), j.getAttempt(),
                    j.getPhase().cStr(), j.getFraction() * 100);
    if (!a.quiet && (tty || line != last_line)) {
      std::fprintf(stderr, tty ? "\r%-100s" : "%s\n", line);
      std::fflush(stderr);
      last_line = line;
    }
    if (state == "done" || state == "failed") {
      if (tty) std::fprintf(stderr, "\n");
      if (state == "failed") {
        std::fprintf(stderr, "error: training job %s failed: %s\n", id.c_str(),
                     j.getError().cStr());
        return 2;
      }
      std::printf("model %s version %u registered (candidate), test AUC %.4f\n", a.model.c_str(),
                  j.getVersion(), j.getTestAuc());
      auto shown = conn->show_model(a.model, j.getVersion());
      if (!shown) return fail(a.rpc, shown);
      auto m = shown->get();
      print_metrics(m.getMetrics());
      std::printf("  %.0f training examples/s; best epoch %u of %u\n", m.getExamplesPerSecond(),
                  m.getBestEpoch(), m.getEpochs().size());
      return 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
}

int run_models(const models_args& a) {
  auto conn = client::connection::open(a.rpc);
  if (a.action == "list") {
    if (a.json) {
      auto j = conn->list_models_json();
      if (!j) return fail(a.rpc, j);
      std::cout << nlohmann::json::parse(*j).dump(2) << "\n";
      return 0;
    }
    auto models = conn->list_models();
    if (!models) return fail(a.rpc, models);
    if (models->empty())
      std::printf("no models registered (tessera train MODEL, or tessera models import)\n");
    for (auto& m : *models) {
      std::printf("%s  (production: %s)\n", m.name.c_str(),
                  m.production ? std::to_string(m.production).c_str() : "none");
      for (auto& v : m.versions)
        std::printf("  v%-4u %-10s %s\n", v.version, v.stage.c_str(), v.created.c_str());
    }
    return 0;
  }
  if (a.action == "show") {
    if (a.json) {
      auto j = conn->show_model_json(a.name, a.version);
      if (!j) return fail(a.rpc, j);
      std::cout << nlohmann::json::parse(*j).dump(2) << "\n";
      return 0;
    }
    auto shown = conn->show_model(a.name, a.version);
    if (!shown) return fail(a.rpc, shown);
    auto m = shown->get();
    std::printf("%s version %u  stage %s  kind %s  created %s\n", a.name.c_str(), m.getVersion(),
                m.getStage().cStr(), m.hasKind() ? m.getKind().cStr() : "?",
                m.hasCreated() ? m.getCreated().cStr() : "?");
    auto l = m.getLineage();
    std::printf("  label %s  views %s\n", l.hasLabel() ? l.getLabel().cStr() : "?",
                text_list(l.getViews()).c_str());
    if (l.hasDataset())
      std::printf("  dataset %s rows, fnv1a64 %s, %s .. %s\n",
                  human(l.getDataset().getRows()).c_str(), l.getDataset().getFnv1a64().cStr(),
                  l.getDataset().getFrom().cStr(), l.getDataset().getTo().cStr());
    if (l.hasConfig()) {
      auto c = l.getConfig();
      std::string hidden;
      for (auto h : c.getHidden()) hidden += (hidden.empty() ? "" : ",") + std::to_string(h);
      std::printf(
          "  config %s hidden [%s] epochs %u batch %u learning rate %g weight decay %g seed "
          "%llu\n",
          c.getKind().cStr(), hidden.c_str(), c.getEpochs(), c.getBatchSize(), c.getLearningRate(),
          c.getWeightDecay(), static_cast<unsigned long long>(c.getSeed()));
    }
    if (m.hasInputs()) std::printf("  inputs %s\n", text_list(m.getInputs()).c_str());
    if (m.hasMetrics()) print_metrics(m.getMetrics());
    return 0;
  }
  if (a.action == "promote") {
    auto st = conn->promote_model(a.name, a.version, a.stage, a.share);
    if (!st) return fail(a.rpc, st);
    if (a.stage == "canary")
      std::printf("%s version %u is the canary for %.1f%% of entities\n", a.name.c_str(), a.version,
                  100 * (a.share < 0 ? 0.1 : a.share));
    else
      std::printf("%s version %u is now %s\n", a.name.c_str(), a.version, a.stage.c_str());
    return 0;
  }
  if (a.action == "canary") {  // the current canary's share
    auto listed = conn->list_models();
    if (!listed) return fail(a.rpc, listed);
    uint32_t canary = 0;
    for (auto& m : *listed)
      if (m.name == a.name)
        for (auto& v : m.versions)
          if (v.stage == "canary") canary = v.version;
    if (!canary) {
      std::fprintf(stderr,
                   "%s has no canary; make one: tessera models promote %s V --stage "
                   "canary --share S\n",
                   a.name.c_str(), a.name.c_str());
      return 2;
    }
    auto st = conn->promote_model(a.name, canary, "canary", a.share);
    if (!st) return fail(a.rpc, st);
    std::printf("%s version %u is the canary for %.1f%% of entities\n", a.name.c_str(), canary,
                100 * a.share);
    return 0;
  }
  if (a.action == "rollback") {
    auto v = conn->rollback_model(a.name);
    if (!v) return fail(a.rpc, v);
    std::printf("%s: production is version %u again\n", a.name.c_str(), *v);
    return 0;
  }
  if (a.action == "import") {
    std::ifstream in(a.file, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "error: cannot read %s\n", a.file.c_str());
      return 2;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    auto v = conn->import_model(a.name, a.label, ss.str());
    if (!v) return fail(a.rpc, v);
    std::printf("%s version %u imported from %s (candidate)\n", a.name.c_str(), *v, a.file.c_str());
    return 0;
  }
  if (a.action == "export") {
    auto e = conn->export_model(a.name, a.version);
    if (!e) return fail(a.rpc, e);
    std::ofstream out(a.file, std::ios::binary | std::ios::trunc);
    out.write(e->artifact.data(), static_cast<std::streamsize>(e->artifact.size()));
    if (!out) {
      std::fprintf(stderr, "error: cannot write %s\n", a.file.c_str());
      return 2;
    }
    std::printf("%s version %u written to %s (TorchScript, %zu bytes)\n", a.name.c_str(),
                e->version, a.file.c_str(), e->artifact.size());
    return 0;
  }
  std::fprintf(stderr, "error: unknown action %s\n", a.action.c_str());
  return 2;
}

}  // namespace tessera::cli
