// `tessera train` and `tessera models ...`: training jobs and the model registry over RPC.
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <fmt/format.h>

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

std::string percent(double share) {
  return fmt::format("{:g}%", 100 * share);
}

// The model as a whole (describeModel's JSON), a few lines.
void print_overview(const nlohmann::json& d) {
  const auto& def = d["definition"];
  std::string head = d["name"].get<std::string>() + "  production " +
                     (d["production"].is_null() ? std::string("none")
                                                : "v" + d["production"].dump() + " (" +
                                                      percent(d["production_share"]) + ")");
  if (def.is_object()) head += "  label " + def["label"].get<std::string>();
  std::printf("%s\n", head.c_str());
  std::string versions;
  for (auto& v : d["versions"])
    versions += (versions.empty() ? "" : ", ") + ("v" + v["version"].dump() + " ") +
                v["stage"].get<std::string>();
  std::printf("  versions: %s\n", versions.empty() ? "none registered" : versions.c_str());
  if (d["canary"].is_object())
    std::printf("  canary: v%u %s\n", d["canary"]["version"].get<uint32_t>(),
                percent(d["canary"]["share"]).c_str());
  if (!d["ab"].empty()) {
    std::string arms;
    for (auto& a : d["ab"])
      arms += (arms.empty() ? "" : ", ") + ("v" + a["version"].dump() + " ") + percent(a["share"]);
    std::printf("  A/B arms: %s; production the rest\n", arms.c_str());
  }
  if (!d["shadows"].empty()) {
    std::string sh;
    for (auto& v : d["shadows"]) sh += (sh.empty() ? "v" : ", v") + v.dump();
    std::printf("  shadows: %s (shadow sample %s)\n", sh.c_str(),
                def.is_object() ? percent(def["shadow_sample"]).c_str() : "?");
  } else if (def.is_object()) {
    std::printf("  shadow sample: %s\n", percent(def["shadow_sample"]).c_str());
  }
  if (!d["production_history"].empty())
    std::printf("  production history: %s\n", d["production_history"].dump().c_str());
  if (!def.is_object()) {
    std::printf("  (not in this node's definitions: no fallback, no feature age bound)\n");
    return;
  }
  const auto& fb = def["fallback"];
  if (fb.is_null())
    std::printf("  fallback: none\n");
  else if (fb.contains("constant"))
    std::printf("  fallback: constant %g (reserve %s)\n", fb["constant"].get<double>(),
                fb["reserve"].get<std::string>().c_str());
  else
    std::printf("  fallback: model %s (reserve %s)\n", fb["model"].get<std::string>().c_str(),
                fb["reserve"].get<std::string>().c_str());
  std::printf("  max feature age: %s\n", def["max_feature_age"].is_null()
                                             ? "none"
                                             : def["max_feature_age"].get<std::string>().c_str());
  const auto& rules = def["rules"];
  if (rules.is_null() || !rules.is_object()) {
    std::printf("  rules: none\n");
  } else if (rules.contains("lua")) {
    std::printf("  rules: a Lua function @%s (on error '%s', %lld instructions, %s)\n",
                rules["version"].get<std::string>().c_str(),
                rules["on_error"].get<std::string>().c_str(),
                static_cast<long long>(rules["max_instructions"].get<int64_t>()),
                rules["budget"].get<std::string>().c_str());
  } else {
    std::printf("  rules @%s (first that holds fires; on error '%s'):\n",
                rules["version"].get<std::string>().c_str(),
                rules["on_error"].get<std::string>().c_str());
    for (auto& r : rules["list"]) {
      std::string cond = r.contains("when") ? r["when"].get<std::string>() : "";
      if (r.contains("top_k"))
        cond = "top " + std::to_string(r["top_k"].get<int>()) + " of the call" +
               (cond.empty() ? "" : " and " + cond);
      std::printf("    %-16s %-40s -> %s\n", r["name"].get<std::string>().c_str(),
                  cond.empty() ? "(always)" : cond.c_str(),
                  r["decision"].get<std::string>().c_str());
    }
  }
  if (!def["takes_scores_of"].empty())
    std::printf("  takes the scores of: %s\n", def["takes_scores_of"].dump().c_str());
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
    // Without -v: the model as a whole first (stages, shares, arms, fallback, ...), then its
    // production (else latest) version; a model only defined, not registered, has no version.
    nlohmann::json overview;
    if (!a.version) {
      auto d = conn->describe_model_json(a.name);
      if (!d) return fail(a.rpc, d);
      overview = nlohmann::json::parse(*d);
    }
    const bool has_version = a.version || !overview["versions"].empty();
    if (a.json) {
      nlohmann::json out = nlohmann::json::object();
      if (has_version) {
        auto j = conn->show_model_json(a.name, a.version);
        if (!j) return fail(a.rpc, j);
        out = nlohmann::json::parse(*j);
      }
      if (!a.version) out["model"] = overview;
      std::cout << out.dump(2) << "\n";
      return 0;
    }
    if (!a.version) print_overview(overview);
    if (!has_version) return 0;
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
  if (a.action == "ab") {
    if (a.clear == !a.arms.empty()) {
      std::fprintf(stderr,
                   "error: give the arms (--arm VERSION=SHARE, once per version) or --clear\n");
      return 2;
    }
    std::vector<std::pair<uint32_t, double>> arms;
    for (auto& text : a.arms) {
      const auto eq = text.find('=');
      char* end = nullptr;
      const unsigned long v = eq == std::string::npos ? 0 : std::strtoul(text.c_str(), &end, 10);
      const bool version_ok = eq != std::string::npos && end == text.c_str() + eq && v > 0;
      double share = 0;
      bool share_ok = false;
      if (version_ok) {
        const std::string s = text.substr(eq + 1);
        share = std::strtod(s.c_str(), &end);
        share_ok = !s.empty() && end == s.c_str() + s.size();
      }
      if (!version_ok || !share_ok) {
        std::fprintf(stderr, "error: --arm %s: expected VERSION=SHARE, e.g. --arm 3=0.5\n",
                     text.c_str());
        return 2;
      }
      arms.emplace_back(static_cast<uint32_t>(v), share);
    }
    auto st = conn->set_ab_arms(a.name, arms);
    if (!st) return fail(a.rpc, st);
    if (arms.empty()) {
      std::printf("%s: no A/B arms; production answers for every entity\n", a.name.c_str());
      return 0;
    }
    double rest = 1;
    std::string text;
    for (auto& [v, share] : arms) {
      text += fmt::format("{}v{} {}", text.empty() ? "" : ", ", v, percent(share));
      rest -= share;
    }
    std::printf("%s A/B arms: %s; production %s\n", a.name.c_str(), text.c_str(),
                percent(std::max(0.0, rest)).c_str());
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
