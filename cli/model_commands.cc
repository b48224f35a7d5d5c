// `tessera train` and `tessera models ...`: training jobs and the model registry over RPC.
#include <capnp/ez-rpc.h>
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
#include "schemas/gateway.capnp.h"

namespace tessera::cli {
namespace {

// Runs `body` with a connected gateway; maps RPC errors to messages and exit code 2.
template <typename F>
int with_gateway(const std::string& rpc, F&& body) {
  try {
    capnp::EzRpcClient client(rpc);
    return body(client.getMain<wire::Gateway>(), client.getWaitScope());
  } catch (const kj::Exception& e) {
    if (is_remote_error(e)) {
      std::fprintf(stderr, "error: %s\n", describe(e).c_str());
      return 2;
    }
    fail_connect(rpc, e);
    return 2;
  }
}

void print_metrics(const nlohmann::json& m) {
  for (const char* split : {"train", "validation", "test"}) {
    if (!m.contains(split)) continue;
    auto& s = m[split];
    std::printf("  %-10s n %9s  AUC %.4f  log loss %.4f  accuracy %.4f  ECE %.4f  base rate %.3f\n",
                split, human(s.value("n", 0ull)).c_str(), s.value("auc", 0.0),
                s.value("log_loss", 0.0), s.value("accuracy", 0.0), s.value("ece", 0.0),
                s.value("base_rate", 0.0));
  }
}

}  // namespace

int run_train(const train_args& a) {
  return with_gateway(a.rpc, [&](wire::Gateway::Client gw, kj::WaitScope& ws) {
    auto req = gw.trainRequest();
    req.setModel(a.model);
    std::string id = req.send().wait(ws).getJobId().cStr();
    std::fprintf(stderr, "training job %s queued\n", id.c_str());
    if (a.no_wait) {
      std::printf("%s\n", id.c_str());
      return 0;
    }
    const bool tty = isatty(STDERR_FILENO) && !a.quiet;
    std::string last_line;
    for (;;) {
      auto jr = gw.jobRequest();
      jr.setJobId(id);
      auto resp = jr.send().wait(ws);
      auto j = resp.getJob();
      std::string state = j.getState().cStr();
      char line[256];
      if (std::string(j.getPhase().cStr()) == "training")
        std::snprintf(line, sizeof line,
                      "%s on %s (attempt %u): training epoch %u/%u  %3.0f%%  loss %.4f",
                      state.c_str(), j.getNode().cStr(), j.getAttempt(), j.getEpoch(),
                      j.getEpochs(), j.getFraction() * 100, j.getLoss());
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
        auto sr = gw.showModelRequest();
        sr.setName(a.model);
        sr.setVersion(j.getVersion());
        auto shown = nlohmann::json::parse(std::string(sr.send().wait(ws).getJson().cStr()));
        print_metrics(shown["metrics"]);
        std::printf("  %.0f training examples/s; best epoch %d of %zu\n",
                    shown.value("examples_per_second", 0.0), shown.value("best_epoch", 0),
                    shown["epochs"].size());
        return 0;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
  });
}

int run_models(const models_args& a) {
  return with_gateway(a.rpc, [&](wire::Gateway::Client gw, kj::WaitScope& ws) -> int {
    if (a.action == "list") {
      auto resp = gw.listModelsRequest().send().wait(ws);
      auto j = nlohmann::json::parse(std::string(resp.getJson().cStr()));
      if (a.json) {
        std::cout << j.dump(2) << "\n";
        return 0;
      }
      if (j.empty())
        std::printf("no models registered (tessera train MODEL, or tessera models import)\n");
      for (auto& m : j) {
        std::printf("%s  (production: %s)\n", m["name"].get<std::string>().c_str(),
                    m["production"].is_null()
                        ? "none"
                        : std::to_string(m["production"].get<uint32_t>()).c_str());
        for (auto& v : m["versions"])
          std::printf("  v%-4u %-10s %s\n", v["version"].get<uint32_t>(),
                      v["stage"].get<std::string>().c_str(),
                      v["created"].get<std::string>().c_str());
      }
      return 0;
    }
    if (a.action == "show") {
      auto req = gw.showModelRequest();
      req.setName(a.name);
      req.setVersion(a.version);
      auto resp = req.send().wait(ws);
      auto j = nlohmann::json::parse(std::string(resp.getJson().cStr()));
      if (a.json) {
        std::cout << j.dump(2) << "\n";
        return 0;
      }
      std::printf("%s version %u  stage %s  kind %s  created %s\n", a.name.c_str(),
                  j["version"].get<uint32_t>(), j["stage"].get<std::string>().c_str(),
                  j.value("kind", "?").c_str(), j.value("created", "?").c_str());
      auto& l = j["lineage"];
      std::printf("  label %s  views %s\n", l.value("label", "?").c_str(),
                  l.contains("views") ? l["views"].dump().c_str() : "[]");
      if (l.contains("dataset"))
        std::printf("  dataset %s rows, fnv1a64 %s, %s .. %s\n",
                    human(l["dataset"].value("rows", 0ull)).c_str(),
                    l["dataset"].value("fnv1a64", "").c_str(),
                    l["dataset"].value("from", "").c_str(), l["dataset"].value("to", "").c_str());
      if (l.contains("config")) std::printf("  config %s\n", l["config"].dump().c_str());
      if (j.contains("inputs")) std::printf("  inputs %s\n", j["inputs"].dump().c_str());
      if (j.contains("metrics")) print_metrics(j["metrics"]);
      return 0;
    }
    if (a.action == "promote") {
      auto req = gw.promoteModelRequest();
      req.setName(a.name);
      req.setVersion(a.version);
      req.setStage(a.stage);
      req.send().wait(ws);
      std::printf("%s version %u is now %s\n", a.name.c_str(), a.version, a.stage.c_str());
      return 0;
    }
    if (a.action == "rollback") {
      auto req = gw.rollbackModelRequest();
      req.setName(a.name);
      auto v = req.send().wait(ws).getVersion();
      std::printf("%s: production is version %u again\n", a.name.c_str(), v);
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
      std::string bytes = ss.str();
      auto req = gw.importModelRequest();
      req.setName(a.name);
      req.setLabel(a.label);
      req.setArtifact(kj::arrayPtr(reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size()));
      auto v = req.send().wait(ws).getVersion();
      std::printf("%s version %u imported from %s (candidate)\n", a.name.c_str(), v,
                  a.file.c_str());
      return 0;
    }
    if (a.action == "export") {
      auto req = gw.exportModelRequest();
      req.setName(a.name);
      req.setVersion(a.version);
      auto resp = req.send().wait(ws);
      auto art = resp.getArtifact();
      std::ofstream out(a.file, std::ios::binary | std::ios::trunc);
      out.write(reinterpret_cast<const char*>(art.begin()),
                static_cast<std::streamsize>(art.size()));
      if (!out) {
        std::fprintf(stderr, "error: cannot write %s\n", a.file.c_str());
        return 2;
      }
      std::printf("%s version %u written to %s (TorchScript, %zu bytes)\n", a.name.c_str(),
                  resp.getVersion(), a.file.c_str(), art.size());
      return 0;
    }
    std::fprintf(stderr, "error: unknown action %s\n", a.action.c_str());
    return 2;
  });
}

}  // namespace tessera::cli
