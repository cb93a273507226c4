// Launchers of the CUDA hash-grid kernels: raw pointers and a stream in, an error string (or nullptr) out.
// Plain C++: the torch binding (hashgrid_cuda.cpp) includes this without any CUDA header, and the kernels
// (hashgrid_cuda.cu) need no torch header, so `nvcc -c hashgrid_cuda.cu` works on a CPU-only torch install.
#pragma once

#include <cstdint>

#include "hashgrid_common.h"

namespace simrecon_hashgrid {

// Per-level parameters, passed to the kernels by value.
struct GridLevels {
  int num_levels;
  int features;             // F: 1, 2, 4 or 8
  uint32_t table_size;      // T, a power of two
  uint32_t dense_bits;      // bit l set: level l is indexed densely
  int res[kMaxLevels];      // resolution of each level (from HashGridConfig, never recomputed)
};

// Many tables of one shape in one launch (a field per tracked actor): point i reads tables[index[i]] and its table
// gradient goes to grad_tables[index[i]]. All three are device arrays; index == nullptr means one table (the
// `table` / `grad_table` arguments), and then the others are ignored.
struct ManyTables {
  const void* const* tables = nullptr;  // [A] table pointers (table dtype)
  float* const* grad_tables = nullptr;  // [A] float32 gradient pointers (zeroed by the caller), or nullptr
  const int32_t* index = nullptr;       // [N] in [0, A)
};

// out [N, L * F] (same dtype as the table) = encode(positions [N, 3] float32, table [L, T, F]).
// half_table: table and out are IEEE fp16, else float32. stream: a cudaStream_t (0 = legacy default stream).
const char* launch_forward(const float* positions, const void* table, void* out, int64_t n, const GridLevels& levels,
                           bool half_table, const ManyTables& many, void* stream);

// Backward: grad_out [N, L * F] (table dtype). grad_table [L, T, F] float32 (zeroed by the caller, accumulated
// with atomics) and/or grad_positions [N, 3] float32 (zeroed by the caller); pass nullptr to skip either.
const char* launch_backward(const float* positions, const void* table, const void* grad_out, float* grad_table,
                            float* grad_positions, int64_t n, const GridLevels& levels, bool half_table,
                            const ManyTables& many, void* stream);

}  // namespace simrecon_hashgrid
