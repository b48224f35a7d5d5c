// Training throughput on a flights dataset (from `tessera dataset build late`, e.g. the one
// bench_dataset writes): the example's MLP and logistic regression, in this process, with the
// example's split. Prints examples/s and the test AUC.
//   bench_train DATASET.csv
#include <cstdio>

#include "bench_common.h"
#include "trainer.h"

using namespace tessera;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_train DATASET.csv (from tessera dataset build late)\n");
    return 2;
  }
  auto defs = definitions::load_file(TSR_SOURCE_DIR "/examples/flights/flights.lua");
  if (!defs) return 2;
  auto t0 = std::chrono::steady_clock::now();
  auto t = read_dataset_csv(argv[1], {});
  if (!t) {
    std::fprintf(stderr, "%s\n", t.error_message().c_str());
    return 2;
  }
  std::printf("read %zu rows x %zu features in %.1f s\n", t->rows, t->columns.size(),
              bench::seconds_since(t0));
  std::printf("%-16s %8s %14s %10s %10s\n", "model", "epochs", "examples/s", "seconds", "test AUC");
  for (const char* name : {"late_logistic", "late_mlp"}) {
    const model_def* m = (*defs)->find_model(name);
    auto r = train_model(*m, *t, nullptr);
    if (!r) {
      std::fprintf(stderr, "%s: %s\n", name, r.error_message().c_str());
      return 2;
    }
    std::printf("%-16s %8d %14.0f %10.1f %10.4f\n", name, m->epochs, r->examples_per_second,
                r->seconds, r->test.auc);
  }
  return 0;
}
