// Shared definitions of the hash-grid encoding kernels (C++ CPU op and CUDA op).
// Plain C++ (no torch headers) so that nvcc compiles it without a CUDA build of torch.
// Conventions (must match simrecon/encoding/config.py and reference.py exactly; the cell index always does, the
// fraction may differ by an ulp where the host compiler contracts s - i into an FMA):
//   * a position x is clamped to [0, 1], scaled as s = x * res (float32), cell i = min(floor(s), res - 1),
//     fraction f = s - i; the level's grid has res + 1 vertices per axis;
//   * corner c of the cell is offset by its bits: x = bit 0, y = bit 1, z = bit 2;
//   * dense level: row = i + j * (res + 1) + k * (res + 1)^2;
//   * hashed level: row = (i * 1 ^ j * 2654435761 ^ k * 805459861) & (T - 1) in uint32 arithmetic.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define HG_HD __host__ __device__ __forceinline__
#else
#define HG_HD inline
#endif

namespace simrecon_hashgrid {

constexpr uint32_t kPrime1 = 2654435761u;
constexpr uint32_t kPrime2 = 805459861u;
constexpr int kMaxLevels = 32;

// Lower cell corner and fraction along one axis.
HG_HD void axis_cell(float x, int res, float res_f, uint32_t& cell, float& frac) {
  x = x > 0.f ? x : 0.f;
  x = x < 1.f ? x : 1.f;  // branch-free clamp; NaN is refused in Python before reaching here
#if defined(__CUDA_ARCH__)
  const float s = __fmul_rn(x, res_f);  // never contracted into an FMA: same rounding as the CPU and reference
#else
  const float s = x * res_f;
#endif
  int i = static_cast<int>(s);  // s >= 0 after clamping: truncation is floor (and vectorises without SSE4.1)
  i = i > res - 1 ? res - 1 : i;
  cell = static_cast<uint32_t>(i);
  frac = s - static_cast<float>(i);
}

// Row of corner (cx, cy, cz) on a level: dense when `dense`, else hashed into [0, mask].
HG_HD uint32_t grid_row(uint32_t cx, uint32_t cy, uint32_t cz, bool dense, uint32_t stride, uint32_t mask) {
  if (dense) return cx + cy * stride + cz * stride * stride;
  return (cx ^ (cy * kPrime1) ^ (cz * kPrime2)) & mask;
}

}  // namespace simrecon_hashgrid
