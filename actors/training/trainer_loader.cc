// trainer.h's functions, forwarded to the libtorch module (libtessera_torch.so), loaded once on
// first use. Where it is looked for, in order: $TESSERA_TORCH_MODULE, beside the executable,
// and where the build put it. A missing or broken module is an error for the caller (a training
// job fails visibly, an import is refused), never a crash.
#include <dlfcn.h>

#include <filesystem>
#include <mutex>

#include "trainer.h"

namespace tessera {
namespace {

struct loaded {
  const torch_api* api = nullptr;
  std::string error;
};

const loaded& module() {
  static loaded m;
  static std::once_flag once;
  std::call_once(once, [] {
    std::vector<std::string> candidates;
    if (const char* env = std::getenv("TESSERA_TORCH_MODULE"); env && *env)
      candidates.push_back(env);
    std::error_code ec;
    auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (!ec) candidates.push_back((exe.parent_path() / "libtessera_torch.so").string());
    candidates.push_back(TSR_TORCH_MODULE_PATH);
    std::string tried;
    for (auto& path : candidates) {
      if (!std::filesystem::exists(path, ec)) {
        tried += (tried.empty() ? "" : ", ") + path + " (missing)";
        continue;
      }
      void* h = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (!h) {
        tried += (tried.empty() ? "" : ", ") + path + " (" + ::dlerror() + ")";
        continue;
      }
      using entry_fn = const torch_api* (*)();
      auto entry = reinterpret_cast<entry_fn>(::dlsym(h, "tessera_torch_api_v1"));
      if (!entry) {
        tried += (tried.empty() ? "" : ", ") + path + " (no tessera_torch_api_v1)";
        continue;
      }
      m.api = entry();
      return;
    }
    m.error = "cannot load the libtorch module: tried " + tried;
  });
  return m;
}

}  // namespace

result<training_result> train_model(const model_def& m, const table& t,
                                    const train_progress& progress,
                                    const std::atomic<bool>* cancel) {
  auto& mod = module();
  if (!mod.api) return make_error(mod.error);
  return mod.api->train_model(m, t, progress, cancel);
}

status check_torchscript(const std::string& artifact, size_t inputs) {
  auto& mod = module();
  if (!mod.api) return make_error(mod.error);
  return mod.api->check_torchscript(artifact, inputs);
}

result<std::vector<float>> predict_torchscript(const std::string& artifact,
                                               const std::vector<float>& x, size_t inputs) {
  auto& mod = module();
  if (!mod.api) return make_error(mod.error);
  return mod.api->predict_torchscript(artifact, x, inputs);
}

result<std::unique_ptr<torchscript_model>> torchscript_model::load(const std::string& artifact,
                                                                   size_t inputs) {
  auto& mod = module();
  if (!mod.api) return make_error(mod.error);
  auto m = mod.api->load_module(artifact, inputs);
  if (!m) return m.failure();
  std::unique_ptr<torchscript_model> out(new torchscript_model());
  out->m_ = *m;
  out->inputs_ = inputs;
  return out;
}

torchscript_model::~torchscript_model() {
  if (m_) module().api->free_module(m_);
}

status torchscript_model::forward(const float* x, size_t rows, float* out) const {
  return module().api->forward(m_, x, rows, out);
}

void torchscript_model::set_threads(int intra_op) {
  if (auto& mod = module(); mod.api) mod.api->set_threads(intra_op);
}

}  // namespace tessera
