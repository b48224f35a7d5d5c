// inference_service::skew: logged vectors recomputed from the offline log at their logged
// feature time, compared feature by feature (tessera skew MODEL). On-demand inputs are
// recomputed from the logged fields with the label's own expressions.
// Report (JSON): {model, version (of the newest record), sampled, compared, skipped,
// mismatched_examples, features: [{name, compared, mismatches, max_abs_diff, examples:
// [{request_id, logged, offline}]}], skipped_reasons: {reason: count}}.
#include <cmath>
#include <map>

#include <nlohmann/json.hpp>

#include "codec.h"
#include "definitions.h"
#include "inference_service.h"

namespace tessera {
namespace {

value value_of(const nlohmann::json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_boolean()) return j.get<bool>();
  if (j.is_number_integer()) return j.get<int64_t>();
  if (j.is_number()) return j.get<double>();
  return std::monostate{};
}

// The same float the model was given (NaN: missing), from a feature or on-demand value.
double as_input(const value& v) {
  double x;
  return as_number(v, x) ? static_cast<double>(static_cast<float>(x)) : std::nan("");
}

}  // namespace

result<std::string> inference_service::skew(const std::string& model, size_t sample) const {
  if (!d_.offline) return make_error("skew needs the training family on this node");
  if (!log_) return make_error("this node keeps no prediction log", errc::not_found);
  const model_def* md = d_.defs->find_model(model);
  auto page = log_->tail(model, sample ? sample : 1000, 0);
  if (!page) return page.failure();

  struct logged {
    std::string request_id;
    int64_t feature_time;
    std::vector<std::string> inputs;
    std::vector<double> vector;
    std::map<std::string, std::string> keys;  // view@version -> key
    std::vector<std::pair<std::string, value>> fields;
    uint32_t version;
  };
  std::vector<logged> recs;
  std::map<std::string, uint64_t> skipped_reasons;
  for (auto& line : page->records) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) {
      ++skipped_reasons["unreadable record"];
      continue;
    }
    logged r;
    r.request_id = j.value("request_id", "");
    r.feature_time = j.value("feature_time", int64_t(0));
    r.version = j.value("version", 0u);
    for (auto& n : j["inputs"]) r.inputs.push_back(n.get<std::string>());
    for (auto& x : j["vector"]) r.vector.push_back(x.is_number() ? x.get<double>() : std::nan(""));
    for (auto& [k, v] : j["keys"].items()) r.keys[k] = v.get<std::string>();
    for (auto& [k, v] : j["fields"].items()) r.fields.emplace_back(k, value_of(v));
    if (r.inputs.size() != r.vector.size() || r.feature_time == 0) {
      ++skipped_reasons["incomplete record"];
      continue;
    }
    recs.push_back(std::move(r));
  }

  // The offline vectors, one read per view over every record.
  std::map<std::string, std::vector<std::pair<std::string, int64_t>>> lookups;
  for (auto& r : recs)
    for (auto& [view, key] : r.keys) lookups[view].push_back({key, r.feature_time});
  std::map<std::string, std::vector<feature_vector>> offline;
  std::map<std::string, size_t> next;  // per view: the next record's vector
  for (auto& [view, l] : lookups) {
    const view_def* v = d_.defs->find_view(view);
    if (!v) return make_error("view " + view + " is not in the node's definitions");
    auto got = d_.offline->read(*v, l);
    if (!got) return got.failure();
    offline[view] = std::move(*got);
  }

  const label_def* label = md ? d_.defs->find_label(md->label) : nullptr;
  const stream_def* stream = label ? d_.defs->find_stream(label->stream) : nullptr;
  struct per_feature {
    uint64_t compared = 0, mismatches = 0;
    double max_abs_diff = 0;
    nlohmann::json examples = nlohmann::json::array();
  };
  std::map<std::string, per_feature> features;
  std::vector<std::string> order;
  uint64_t compared = 0, mismatched = 0;
  for (auto& r : recs) {
    // This record's offline vector per view.
    std::map<std::string, const feature_vector*> fv;
    bool outside = false;
    for (auto& [view, key] : r.keys) {
      const feature_vector& v = offline[view][next[view]++];
      fv[view] = &v;
      outside = outside || v.as_of == 0;
    }
    if (outside) {
      ++skipped_reasons["feature time outside the offline retention"];
      continue;
    }
    std::vector<value> fields;
    if (stream) {
      auto f = example_fields(*stream, r.fields);
      if (f) fields = std::move(*f);
    }
    bool any = false;
    for (size_t i = 0; i < r.inputs.size(); ++i) {
      const std::string& name = r.inputs[i];
      double off = std::nan("");
      bool known = false;
      const auto dot = name.find('.');
      if (dot != std::string::npos) {
        for (auto& [view, v] : fv)
          if (view.compare(0, view.find('@'), name, 0, dot) == 0)
            for (auto& f : v->values)
              if (f.name == name.substr(dot + 1)) {
                off = as_input(f.v);
                known = true;
              }
      } else if (label && !fields.empty()) {
        for (auto& od : label->on_demand)
          if (od.name == name) {
            off = as_input(od.e->eval(fields));
            known = true;
          }
      }
      if (!known) continue;
      if (!features.count(name)) order.push_back(name);
      per_feature& pf = features[name];
      ++pf.compared;
      const double lg = r.vector[i];
      const bool same = (std::isnan(lg) && std::isnan(off)) || lg == off;
      if (!same) {
        ++pf.mismatches;
        any = true;
        const double diff = std::isnan(lg) || std::isnan(off) ? INFINITY : std::fabs(lg - off);
        pf.max_abs_diff = std::max(pf.max_abs_diff, diff);
        if (pf.examples.size() < 3)
          pf.examples.push_back(
              {{"request_id", r.request_id},
               {"logged", std::isnan(lg) ? nlohmann::json() : nlohmann::json(lg)},
               {"offline", std::isnan(off) ? nlohmann::json() : nlohmann::json(off)}});
      }
    }
    ++compared;
    mismatched += any;
  }
  nlohmann::json report{{"model", model},
                        {"version", recs.empty() ? 0u : recs.back().version},
                        {"sampled", page->records.size()},
                        {"compared", compared},
                        {"skipped", page->records.size() - compared},
                        {"mismatched_examples", mismatched},
                        {"features", nlohmann::json::array()},
                        {"skipped_reasons", skipped_reasons}};
  for (auto& name : order) {
    per_feature& pf = features[name];
    report["features"].push_back(
        {{"name", name},
         {"compared", pf.compared},
         {"mismatches", pf.mismatches},
         {"max_abs_diff", std::isinf(pf.max_abs_diff) ? nlohmann::json("missing on one side")
                                                      : nlohmann::json(pf.max_abs_diff)},
         {"examples", pf.examples}});
  }
  return report.dump();
}

}  // namespace tessera
