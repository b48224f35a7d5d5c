// A training set in memory: the numeric feature columns of a dataset CSV (as written by
// `tessera dataset build`), its labels and prediction times. Missing cells are NaN.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tessera/result.h"

namespace tessera {

struct table {
  std::vector<std::string> columns;  // feature columns, in x's order
  size_t rows = 0;
  std::vector<float> x;       // rows × columns, row-major
  std::vector<float> y;       // labels
  std::vector<int64_t> time;  // prediction times (µs)
};

// Reads a dataset CSV. `features` selects columns (empty: every column after `label`). Errors
// name the line and column: a missing column, a label that is not a number, a row with the
// wrong number of cells, a feature cell that is not a number.
result<table> read_dataset_csv(const std::string& path, const std::vector<std::string>& features);

}  // namespace tessera
