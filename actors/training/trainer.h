// Model training with libtorch, behind a small interface (only trainer.cc includes torch; it is
// a module loaded on first use, see trainer_loader.cc: the CLI and a node that never trains do
// not load libtorch, which costs ~0.6 s of process start here).
// Models are binary classifiers: logistic regression or an MLP (ReLU hidden layers). The
// artifact is TorchScript whose forward(x: [n, d] float) returns probabilities [n]; missing
// inputs (NaN) are imputed with the training mean and inputs standardised inside the module,
// so serving needs nothing but the artifact. Training is reproducible: one intra-op thread,
// seeded initialisation and shuffling.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "definitions.h"
#include "evaluation.h"
#include "table.h"
#include "tessera/result.h"

namespace tessera {

struct epoch_log {
  int epoch = 0;
  double train_loss = 0;
  double valid_log_loss = 0;
  double valid_auc = 0;
};

struct training_result {
  std::string artifact;  // TorchScript (torch.jit.save format)
  std::vector<std::string> inputs;
  uint64_t train_rows = 0, valid_rows = 0, test_rows = 0;
  binary_metrics train, validation, test;
  std::vector<distribution> input_reference;  // training split
  distribution prediction_reference;          // predictions on the training split
  std::vector<epoch_log> epochs;
  int best_epoch = 0;  // by validation log loss; its weights are the artifact's
  double seconds = 0;
  double examples_per_second = 0;  // training examples processed per second of training
};

// progress(epoch, fraction of all epochs done, running training loss)
using train_progress = std::function<void(int epoch, double fraction, double loss)>;

// Errors: a split without examples or without both classes, labels other than 0/1.
result<training_result> train_model(const model_def& m, const table& t,
                                    const train_progress& progress,
                                    const std::atomic<bool>* cancel = nullptr);

// Loads a TorchScript artifact and checks it is a model for `inputs` features: forward of a
// [2, inputs] batch gives 2 finite probabilities. The error says what is wrong.
status check_torchscript(const std::string& artifact, size_t inputs);

// Probabilities for rows × inputs features (row-major).
result<std::vector<float>> predict_torchscript(const std::string& artifact,
                                               const std::vector<float>& x, size_t inputs);

// A TorchScript model loaded once for many forward passes (serving, actors/inference).
// Owned by its user; forward() may be called from one thread at a time.
struct torch_module;  // inside the libtorch module
class torchscript_model {
 public:
  // Loads the artifact (a model for `inputs` features). Errors: the module or the artifact.
  static result<std::unique_ptr<torchscript_model>> load(const std::string& artifact,
                                                         size_t inputs);
  ~torchscript_model();
  // Probabilities of `rows` rows of inputs() features (row-major) into out[0, rows).
  status forward(const float* x, size_t rows, float* out) const;
  size_t inputs() const { return inputs_; }
  // libtorch's intra-op threads for this process (serving sets 1: batches are small, and one
  // worker per version runs them).
  static void set_threads(int intra_op);

 private:
  torchscript_model() = default;
  torch_module* m_ = nullptr;
  size_t inputs_ = 0;
};

// The module's entry (tessera_torch_api_v1), implemented with libtorch.
struct torch_api {
  result<training_result> (*train_model)(const model_def&, const table&, const train_progress&,
                                         const std::atomic<bool>*);
  status (*check_torchscript)(const std::string&, size_t);
  result<std::vector<float>> (*predict_torchscript)(const std::string&, const std::vector<float>&,
                                                    size_t);
  result<torch_module*> (*load_module)(const std::string& artifact, size_t inputs);
  void (*free_module)(torch_module*);
  status (*forward)(torch_module*, const float* x, size_t rows, float* out);
  void (*set_threads)(int intra_op);
};

}  // namespace tessera
