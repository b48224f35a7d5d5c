// The libtorch side of trainer.h, built as its own module (libtessera_torch.so, loaded by
// trainer_loader.cc on first use): a process that never trains or predicts never loads libtorch.
#include "trainer.h"

#include <torch/script.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <sstream>

namespace tessera {
namespace torch_backend {

result<std::vector<float>> predict_torchscript(const std::string& artifact,
                                               const std::vector<float>& x, size_t inputs);

namespace {

struct split_rows {
  std::vector<int64_t> train, valid, test;
};

split_rows split_by_time(const model_def& m, const table& t) {
  split_rows s;
  for (size_t i = 0; i < t.rows; ++i) {
    const int64_t pt = t.time[i];
    if (pt >= m.train_from && pt < m.valid_from)
      s.train.push_back(static_cast<int64_t>(i));
    else if (pt >= m.valid_from && pt < m.test_from)
      s.valid.push_back(static_cast<int64_t>(i));
    else if (pt >= m.test_from && pt < m.test_to)
      s.test.push_back(static_cast<int64_t>(i));
  }
  return s;
}

// The model's parameters as plain tensors; logits() is the same computation as the
// TorchScript forward() written below (minus the sigmoid).
struct net {
  torch::Tensor mean, std;
  std::vector<torch::Tensor> w, b;

  torch::Tensor logits(torch::Tensor x) const {
    x = torch::where(torch::isnan(x), mean, x);
    x = (x - mean) / std;
    for (size_t l = 0; l < w.size(); ++l) {
      x = torch::matmul(x, w[l]) + b[l];
      if (l + 1 < w.size()) x = torch::relu(x);
    }
    return x.squeeze(-1);
  }
  std::vector<torch::Tensor> parameters() const {
    std::vector<torch::Tensor> p;
    for (size_t l = 0; l < w.size(); ++l) p.push_back(w[l]), p.push_back(b[l]);
    return p;
  }
};

std::string to_torchscript(const net& n) {
  torch::jit::Module mod("TesseraModel");
  mod.register_buffer("mean", n.mean.detach().clone());
  mod.register_buffer("std", n.std.detach().clone());
  std::string body =
      "def forward(self, x):\n"
      "    x = torch.where(torch.isnan(x), self.mean, x)\n"
      "    x = (x - self.mean) / self.std\n";
  for (size_t l = 0; l < n.w.size(); ++l) {
    mod.register_parameter("w" + std::to_string(l), n.w[l].detach().clone(), false);
    mod.register_parameter("b" + std::to_string(l), n.b[l].detach().clone(), false);
    body += "    x = torch.matmul(x, self.w" + std::to_string(l) + ") + self.b" +
            std::to_string(l) + "\n";
    if (l + 1 < n.w.size()) body += "    x = torch.relu(x)\n";
  }
  body += "    return torch.sigmoid(x.squeeze(-1))\n";
  mod.define(body);
  std::ostringstream out;
  mod.save(out);
  return out.str();
}

std::vector<float> to_vector(const torch::Tensor& t) {
  auto c = t.contiguous().to(torch::kFloat);
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

}  // namespace

result<training_result> train_model(const model_def& m, const table& t,
                                    const train_progress& progress,
                                    const std::atomic<bool>* cancel) {
  try {
    at::set_num_threads(1);  // reproducible: one intra-op thread, fixed reduction order
    torch::manual_seed(m.seed);
    const int64_t d = static_cast<int64_t>(t.columns.size());
    if (d == 0) return make_error("model " + m.name + ": no feature columns");
    for (float y : t.y)
      if (y != 0.0f && y != 1.0f)
        return make_error("model " + m.name + ": labels must be 0 or 1 (got " + std::to_string(y) +
                          ")");
    split_rows sp = split_by_time(m, t);
    const char* names[3] = {"train", "validation", "test"};
    const std::vector<int64_t>* parts[3] = {&sp.train, &sp.valid, &sp.test};
    for (int k = 0; k < 3; ++k) {
      if (parts[k]->empty())
        return make_error("model " + m.name + ": the " + names[k] +
                          " split has no examples (check split = { ... } against the dataset's "
                          "prediction times)");
      double pos = 0;
      for (int64_t i : *parts[k]) pos += t.y[static_cast<size_t>(i)];
      if (pos == 0 || pos == static_cast<double>(parts[k]->size()))
        return make_error("model " + m.name + ": the " + names[k] + " split has only one class");
    }
    auto all_x = torch::from_blob(const_cast<float*>(t.x.data()), {static_cast<int64_t>(t.rows), d},
                                  torch::kFloat);
    auto all_y = torch::from_blob(const_cast<float*>(t.y.data()), {static_cast<int64_t>(t.rows)},
                                  torch::kFloat);
    auto take = [&](const std::vector<int64_t>& rows) {
      auto idx = torch::from_blob(const_cast<int64_t*>(rows.data()),
                                  {static_cast<int64_t>(rows.size())}, torch::kLong);
      return std::pair{all_x.index_select(0, idx).clone(), all_y.index_select(0, idx).clone()};
    };
    auto [xtr, ytr] = take(sp.train);
    auto [xva, yva] = take(sp.valid);
    auto [xte, yte] = take(sp.test);

    // Imputation and scaling from the training split only (no leakage from later splits).
    net n;
    auto present = ~torch::isnan(xtr);
    auto filled = torch::where(present, xtr, torch::zeros_like(xtr));
    auto cnt = present.sum(0).clamp_min(1).to(torch::kFloat);
    n.mean = filled.sum(0) / cnt;
    auto centered = torch::where(present, xtr - n.mean, torch::zeros_like(xtr));
    n.std = (centered.pow(2).sum(0) / cnt).sqrt();
    n.std = torch::where(n.std > 1e-12, n.std, torch::ones_like(n.std));
    std::vector<int64_t> sizes{d};
    if (m.kind == "mlp")
      for (int h : m.hidden) sizes.push_back(h);
    sizes.push_back(1);
    for (size_t l = 0; l + 1 < sizes.size(); ++l) {
      double bound =
          std::sqrt(6.0 / static_cast<double>(sizes[l] + sizes[l + 1]));  // Glorot uniform
      n.w.push_back(
          (torch::rand({sizes[l], sizes[l + 1]}) * 2 - 1).mul_(bound).requires_grad_(true));
      n.b.push_back(torch::zeros({sizes[l + 1]}).requires_grad_(true));
    }
    torch::optim::Adam opt(n.parameters(),
                           torch::optim::AdamOptions(m.learning_rate).weight_decay(m.weight_decay));

    training_result out;
    out.inputs = t.columns;
    out.train_rows = sp.train.size(), out.valid_rows = sp.valid.size(),
    out.test_rows = sp.test.size();
    std::mt19937_64 rng(m.seed);
    std::vector<int64_t> perm(sp.train.size());
    const int64_t ntr = static_cast<int64_t>(sp.train.size());
    double best = INFINITY;
    net best_net;
    auto start = std::chrono::steady_clock::now();
    double train_seconds = 0;
    uint64_t processed = 0;
    for (int e = 1; e <= m.epochs; ++e) {
      auto epoch_start = std::chrono::steady_clock::now();
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), rng);
      auto order = torch::from_blob(perm.data(), {ntr}, torch::kLong);
      double loss_sum = 0;
      int64_t batches = 0;
      for (int64_t off = 0; off < ntr; off += m.batch_size) {
        if (cancel && cancel->load()) return make_error("training of " + m.name + " was cancelled");
        auto idx = order.slice(0, off, std::min(ntr, off + m.batch_size));
        auto xb = xtr.index_select(0, idx), yb = ytr.index_select(0, idx);
        opt.zero_grad();
        auto loss = torch::binary_cross_entropy_with_logits(n.logits(xb), yb);
        loss.backward();
        opt.step();
        loss_sum += loss.item<double>();
        ++batches;
        processed += static_cast<uint64_t>(idx.size(0));
        if (progress && batches % 200 == 0)
          progress(
              e,
              (static_cast<double>(e - 1) + static_cast<double>(off) / static_cast<double>(ntr)) /
                  m.epochs,
              loss_sum / static_cast<double>(batches));
      }
      train_seconds +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
      torch::NoGradGuard ng;
      auto pva = to_vector(torch::sigmoid(n.logits(xva)));
      auto mva = evaluate(pva, to_vector(yva));
      out.epochs.push_back({e, loss_sum / std::max<int64_t>(1, batches), mva.log_loss, mva.auc});
      if (mva.log_loss < best) {
        best = mva.log_loss;
        out.best_epoch = e;
        best_net = net{n.mean.clone(), n.std.clone(), {}, {}};
        for (size_t l = 0; l < n.w.size(); ++l)
          best_net.w.push_back(n.w[l].detach().clone()),
              best_net.b.push_back(n.b[l].detach().clone());
      }
      if (progress) progress(e, static_cast<double>(e) / m.epochs, out.epochs.back().train_loss);
    }
    torch::NoGradGuard ng;
    out.artifact = to_torchscript(best_net);
    auto predict = [&](const torch::Tensor& x) {
      return to_vector(torch::sigmoid(best_net.logits(x)));
    };
    auto ptr = predict(xtr);
    out.train = evaluate(ptr, to_vector(ytr));
    out.validation = evaluate(predict(xva), to_vector(yva));
    out.test = evaluate(predict(xte), to_vector(yte));
    for (int64_t c = 0; c < d; ++c)
      out.input_reference.push_back(
          describe_distribution(t.columns[static_cast<size_t>(c)], to_vector(xtr.select(1, c))));
    out.prediction_reference = describe_distribution("prediction", ptr);
    out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    out.examples_per_second =
        train_seconds > 0 ? static_cast<double>(processed) / train_seconds : 0;
    // The artifact must reproduce what was evaluated.
    auto again = predict_torchscript(
        out.artifact,
        std::vector<float>(t.x.begin(),
                           t.x.begin() + std::min<size_t>(t.rows, 64) * static_cast<size_t>(d)),
        static_cast<size_t>(d));
    if (!again) return make_error("exported TorchScript does not load: " + again.error_message());
    return out;
  } catch (const c10::Error& e) {
    return make_error("libtorch: " + std::string(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return make_error(std::string("training failed: ") + e.what());
  }
}

}  // namespace torch_backend

// A loaded TorchScript module (trainer.h, torchscript_model).
struct torch_module {
  torch::jit::Module mod;
  size_t inputs = 0;
};

namespace torch_backend {
namespace {

// TorchScript errors carry a traceback: the last line says what went wrong.
error last_line(std::string w) {
  while (!w.empty() && w.back() == '\n') w.pop_back();
  auto nl = w.rfind('\n');
  return make_error(nl == std::string::npos ? w : w.substr(nl + 1));
}
error torch_error(const c10::Error& e) {
  return last_line(e.what_without_backtrace());
}

}  // namespace

result<torch_module*> load_module(const std::string& artifact, size_t inputs) {
  try {
    std::istringstream in(artifact);
    auto m = std::make_unique<torch_module>();
    m->mod = torch::jit::load(in);
    m->mod.eval();
    m->inputs = inputs;
    return m.release();
  } catch (const c10::Error& e) {
    return torch_error(e);
  } catch (const std::exception& e) {
    return make_error(e.what());
  }
}

void free_module(torch_module* m) {
  delete m;
}

status forward(torch_module* m, const float* x, size_t rows, float* out) {
  try {
    torch::NoGradGuard ng;
    const int64_t n = static_cast<int64_t>(rows);
    auto xt = torch::from_blob(const_cast<float*>(x), {n, static_cast<int64_t>(m->inputs)},
                               torch::kFloat);
    auto outv = m->mod.forward({xt});
    if (!outv.isTensor()) return make_error("forward() does not return a tensor");
    auto p = outv.toTensor().reshape({-1}).to(torch::kFloat).contiguous();
    if (p.size(0) != n)
      return make_error("forward() returned " + std::to_string(p.size(0)) + " values for " +
                        std::to_string(n) + " rows");
    std::memcpy(out, p.data_ptr<float>(), rows * sizeof(float));
    return ok_status();
  } catch (const c10::Error& e) {
    return torch_error(e);
  } catch (const std::exception& e) {  // e.g. an exception raised by the TorchScript code
    return last_line(e.what());
  }
}

void set_threads(int intra_op) {
  at::set_num_threads(intra_op);
}

result<std::vector<float>> predict_torchscript(const std::string& artifact,
                                               const std::vector<float>& x, size_t inputs) {
  auto m = load_module(artifact, inputs);
  if (!m) return m.failure();
  std::unique_ptr<torch_module> owned(*m);
  const size_t n = inputs ? x.size() / inputs : 0;
  std::vector<float> out(n);
  if (auto st = forward(owned.get(), x.data(), n, out.data()); !st) return st.failure();
  return out;
}

status check_torchscript(const std::string& artifact, size_t inputs) {
  if (artifact.size() < 4 || artifact.compare(0, 2, "PK") != 0)
    return make_error("not a TorchScript archive (expected a zip file written by torch.jit.save)");
  std::vector<float> x(2 * inputs, 0.5f);
  auto p = predict_torchscript(artifact, x, inputs);
  if (!p)
    return make_error("not a usable TorchScript model for " + std::to_string(inputs) +
                      " inputs: " + p.error_message());
  for (float v : *p)
    if (!std::isfinite(v) || v < 0 || v > 1)
      return make_error("forward() must return probabilities in [0, 1]; got " + std::to_string(v));
  return ok_status();
}

}  // namespace torch_backend
}  // namespace tessera

extern "C" __attribute__((visibility("default"))) const tessera::torch_api* tessera_torch_api_v1() {
  static const tessera::torch_api api{
      &tessera::torch_backend::train_model,         &tessera::torch_backend::check_torchscript,
      &tessera::torch_backend::predict_torchscript, &tessera::torch_backend::load_module,
      &tessera::torch_backend::free_module,         &tessera::torch_backend::forward,
      &tessera::torch_backend::set_threads};
  return &api;
}
