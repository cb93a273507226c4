// CUDA kernels of the fused hash-grid encoding (forward, backward to the table and to the positions).
// Only the CUDA runtime and plain C++ headers: compiles with `nvcc -c` without a CUDA build of torch.
// Launch: one thread per point, levels on grid.y (blockIdx.y = level), templated on the feature count and
// the table dtype (float / __half; accumulation always in float32).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "hashgrid_cuda.h"

namespace simrecon_hashgrid {
namespace {

constexpr int kThreads = 256;

template <typename T>
struct Io;
template <>
struct Io<float> {
  static __device__ __forceinline__ float load(const float* p) { return __ldg(p); }
  static __device__ __forceinline__ void store(float* p, float v) { *p = v; }
};
template <>
struct Io<__half> {
  static __device__ __forceinline__ float load(const __half* p) { return __half2float(p[0]); }
  static __device__ __forceinline__ void store(__half* p, float v) { *p = __float2half(v); }
};

// Where point i's table starts: one table for all points, or tables[index[i]] (a field per actor in one launch).
template <typename scalar_t>
struct TableRef {
  const scalar_t* one;
  const scalar_t* const* many;  // device array of table pointers, or nullptr
  const int32_t* index;         // [N] device, or nullptr
  __device__ __forceinline__ const scalar_t* at(int64_t i) const { return index ? many[index[i]] : one; }
};
struct GradRef {
  float* one;
  float* const* many;
  const int32_t* index;
  __device__ __forceinline__ float* at(int64_t i) const { return index ? many[index[i]] : one; }
};

struct Corners {
  uint32_t row[8];
  float frac[3];
};

__device__ __forceinline__ Corners cell_corners(const float* __restrict__ positions, int64_t i,
                                                const GridLevels& lv, int level) {
  Corners c;
  const int res = lv.res[level];
  const float res_f = static_cast<float>(res);
  uint32_t cell[3];
#pragma unroll
  for (int d = 0; d < 3; ++d) axis_cell(positions[i * 3 + d], res, res_f, cell[d], c.frac[d]);
  const bool dense = (lv.dense_bits >> level) & 1u;
  const uint32_t stride = static_cast<uint32_t>(res + 1), mask = lv.table_size - 1u;
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    c.row[k] = grid_row(cell[0] + (k & 1), cell[1] + ((k >> 1) & 1), cell[2] + ((k >> 2) & 1), dense, stride, mask);
  }
  return c;
}

__device__ __forceinline__ float corner_weight(const float* frac, int k) {
  const float wx = (k & 1) ? frac[0] : 1.f - frac[0];
  const float wy = ((k >> 1) & 1) ? frac[1] : 1.f - frac[1];
  const float wz = ((k >> 2) & 1) ? frac[2] : 1.f - frac[2];
  return wx * wy * wz;
}

template <int F, typename scalar_t>
__global__ void forward_kernel(const float* __restrict__ positions, TableRef<scalar_t> table,
                               scalar_t* __restrict__ out, int64_t n, GridLevels lv) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int level = blockIdx.y;
  if (i >= n) return;
  const Corners c = cell_corners(positions, i, lv, level);
  const scalar_t* tab = table.at(i) + static_cast<int64_t>(level) * lv.table_size * F;
  float acc[F];
#pragma unroll
  for (int f = 0; f < F; ++f) acc[f] = 0.f;
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    const float w = corner_weight(c.frac, k);
    const scalar_t* r = tab + static_cast<int64_t>(c.row[k]) * F;
#pragma unroll
    for (int f = 0; f < F; ++f) acc[f] += w * Io<scalar_t>::load(r + f);
  }
  scalar_t* o = out + i * (static_cast<int64_t>(lv.num_levels) * F) + level * F;
#pragma unroll
  for (int f = 0; f < F; ++f) Io<scalar_t>::store(o + f, acc[f]);
}

template <int F, typename scalar_t>
__global__ void backward_kernel(const float* __restrict__ positions, TableRef<scalar_t> table,
                                const scalar_t* __restrict__ grad_out, GradRef grad_table,
                                float* __restrict__ grad_positions, int64_t n, GridLevels lv) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int level = blockIdx.y;
  if (i >= n) return;
  const Corners c = cell_corners(positions, i, lv, level);
  const int64_t level_offset = static_cast<int64_t>(level) * lv.table_size * F;
  float g[F];
  const scalar_t* go = grad_out + i * (static_cast<int64_t>(lv.num_levels) * F) + level * F;
#pragma unroll
  for (int f = 0; f < F; ++f) g[f] = Io<scalar_t>::load(go + f);
  if (grad_table.one != nullptr || grad_table.many != nullptr) {
    float* gt = grad_table.at(i) + level_offset;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const float w = corner_weight(c.frac, k);
      float* r = gt + static_cast<int64_t>(c.row[k]) * F;
#pragma unroll
      for (int f = 0; f < F; ++f) atomicAdd(r + f, w * g[f]);
    }
  }
  if (grad_positions != nullptr) {
    const scalar_t* tab = table.at(i) + level_offset;
    const float fx = c.frac[0], fy = c.frac[1], fz = c.frac[2];
    const float wx[2] = {1.f - fx, fx}, wy[2] = {1.f - fy, fy}, wz[2] = {1.f - fz, fz};
    float dx = 0.f, dy = 0.f, dz = 0.f;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const scalar_t* r = tab + static_cast<int64_t>(c.row[k]) * F;
      float dot = 0.f;
#pragma unroll
      for (int f = 0; f < F; ++f) dot += Io<scalar_t>::load(r + f) * g[f];
      const int bx = k & 1, by = (k >> 1) & 1, bz = (k >> 2) & 1;
      // d w_k / d frac_axis = (+1 if the corner's bit is set else -1) * product of the other two weights
      dx += (bx ? dot : -dot) * wy[by] * wz[bz];
      dy += (by ? dot : -dot) * wx[bx] * wz[bz];
      dz += (bz ? dot : -dot) * wx[bx] * wy[by];
    }
    const float res_f = static_cast<float>(lv.res[level]);  // d frac / d x = res
    atomicAdd(grad_positions + i * 3 + 0, dx * res_f);
    atomicAdd(grad_positions + i * 3 + 1, dy * res_f);
    atomicAdd(grad_positions + i * 3 + 2, dz * res_f);
  }
}

template <typename scalar_t>
TableRef<scalar_t> table_ref(const void* table, const ManyTables& many) {
  return {static_cast<const scalar_t*>(table), reinterpret_cast<const scalar_t* const*>(many.tables), many.index};
}

template <typename scalar_t>
const char* forward_typed(const float* positions, const void* table, void* out, int64_t n, const GridLevels& lv,
                          const ManyTables& many, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((n + kThreads - 1) / kThreads), static_cast<unsigned>(lv.num_levels));
  const TableRef<scalar_t> tab = table_ref<scalar_t>(table, many);
  auto* o = static_cast<scalar_t*>(out);
  switch (lv.features) {
    case 1: forward_kernel<1, scalar_t><<<grid, kThreads, 0, stream>>>(positions, tab, o, n, lv); break;
    case 2: forward_kernel<2, scalar_t><<<grid, kThreads, 0, stream>>>(positions, tab, o, n, lv); break;
    case 4: forward_kernel<4, scalar_t><<<grid, kThreads, 0, stream>>>(positions, tab, o, n, lv); break;
    case 8: forward_kernel<8, scalar_t><<<grid, kThreads, 0, stream>>>(positions, tab, o, n, lv); break;
    default: return "features_per_level must be 1, 2, 4 or 8";
  }
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

template <typename scalar_t>
const char* backward_typed(const float* positions, const void* table, const void* grad_out, float* grad_table,
                           float* grad_positions, int64_t n, const GridLevels& lv, const ManyTables& many,
                           cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((n + kThreads - 1) / kThreads), static_cast<unsigned>(lv.num_levels));
  const TableRef<scalar_t> tab = table_ref<scalar_t>(table, many);
  const GradRef gtab{grad_table, many.grad_tables, many.index};
  const auto* go = static_cast<const scalar_t*>(grad_out);
  switch (lv.features) {
    case 1: backward_kernel<1, scalar_t><<<grid, kThreads, 0, stream>>>(positions, tab, go, gtab, grad_positions, n, lv); break;
    case 2: backward_kernel<2, scalar_t><<<grid, kThreads, 0, stream>>>(positions, tab, go, gtab, grad_positions, n, lv); break;
    case 4: backward_kernel<4, scalar_t><<<grid, kThreads, 0, stream>>>(positions, tab, go, gtab, grad_positions, n, lv); break;
    case 8: backward_kernel<8, scalar_t><<<grid, kThreads, 0, stream>>>(positions, tab, go, gtab, grad_positions, n, lv); break;
    default: return "features_per_level must be 1, 2, 4 or 8";
  }
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

const char* check_levels(int64_t n, const GridLevels& lv) {
  if (lv.num_levels < 1 || lv.num_levels > kMaxLevels) return "num_levels must be in [1, 32]";
  if (lv.table_size == 0 || (lv.table_size & (lv.table_size - 1)) != 0) return "table size must be a power of two";
  if ((n + kThreads - 1) / kThreads > 2147483647LL) return "too many points for one launch";
  return nullptr;
}

}  // namespace

const char* launch_forward(const float* positions, const void* table, void* out, int64_t n, const GridLevels& levels,
                           bool half_table, const ManyTables& many, void* stream) {
  if (const char* err = check_levels(n, levels)) return err;
  if (n == 0) return nullptr;
  auto s = static_cast<cudaStream_t>(stream);
  return half_table ? forward_typed<__half>(positions, table, out, n, levels, many, s)
                    : forward_typed<float>(positions, table, out, n, levels, many, s);
}

const char* launch_backward(const float* positions, const void* table, const void* grad_out, float* grad_table,
                            float* grad_positions, int64_t n, const GridLevels& levels, bool half_table,
                            const ManyTables& many, void* stream) {
  if (const char* err = check_levels(n, levels)) return err;
  const bool table_grad = grad_table != nullptr || many.grad_tables != nullptr;
  if (n == 0 || (!table_grad && grad_positions == nullptr)) return nullptr;
  auto s = static_cast<cudaStream_t>(stream);
  return half_table
             ? backward_typed<__half>(positions, table, grad_out, grad_table, grad_positions, n, levels, many, s)
             : backward_typed<float>(positions, table, grad_out, grad_table, grad_positions, n, levels, many, s);
}

}  // namespace simrecon_hashgrid
