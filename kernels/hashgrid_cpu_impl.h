// Core of the fused CPU hash-grid encoding: plain C++ and OpenMP on raw pointers (no torch), so that it can be
// benchmarked and tested standalone; hashgrid_cpu.cpp binds it to torch.
//
// Layout: positions [N, 3] float32, table [L, T, F] float32 contiguous, output [N, L * F] float32. Many tables of
// that shape may be given instead, with a table index per point (see ManyTables).
// Work split (measured to be the fast one on small core counts):
//   * forward: levels in the outer loop, so that one level's table stays in cache, points in parallel inside
//     (dynamic (level, chunk) tasks, see forward);
//   * backward: the upstream gradient is first transposed to level-major [L, N, F]; then one task per level (a
//     level's slice of the table gradient is written by one thread only, so no atomics), each thread
//     accumulating the positional gradient in its own [N, 3] buffer.
// Points are processed in blocks of kBlock: first the corner rows and weights of the whole block (plain
// arithmetic loops the compiler vectorises), then the gathers. On hashed levels the gathers are bound by the
// latency of L2 misses (a level's table is 4 MB by default); software prefetching (a block ahead, or spread
// point by point, to L1 or L2) measured no gain over the out-of-order core here, so there is none.
#pragma once

#include <omp.h>
#include <sys/mman.h>

#if defined(__AVX2__) && defined(__FMA__) && !defined(HG_NO_SIMD)
#include <immintrin.h>
#define HG_AVX2 1
#endif

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "hashgrid_common.h"

namespace hg = simrecon_hashgrid;

namespace simrecon_hashgrid_cpu {

constexpr int kBlock = 32;

struct Level {
  int res;
  float res_f;
  bool dense;
  uint32_t stride;  // res + 1
  uint32_t mask;    // T - 1
};

// Corner rows, corner weights and per-axis fractions of points [n0, n0 + nb).
struct BlockCells {
  uint32_t row[8][kBlock];
  float w[8][kBlock];
  float frac[3][kBlock];
};

inline void compute_block(const float* __restrict pos, int64_t n0, int nb, const Level& lv, BlockCells& bc) {
  uint32_t cell[3][kBlock];
  const float* p = pos + n0 * 3;
  for (int j = 0; j < nb; ++j) {  // interleaved x, y, z loads: vectorised as one group
    hg::axis_cell(p[j * 3 + 0], lv.res, lv.res_f, cell[0][j], bc.frac[0][j]);
    hg::axis_cell(p[j * 3 + 1], lv.res, lv.res_f, cell[1][j], bc.frac[1][j]);
    hg::axis_cell(p[j * 3 + 2], lv.res, lv.res_f, cell[2][j], bc.frac[2][j]);
  }
  if (lv.dense) {
    const uint32_t sy = lv.stride, sz = lv.stride * lv.stride;
    for (int j = 0; j < nb; ++j) {
      const uint32_t base = cell[0][j] + cell[1][j] * sy + cell[2][j] * sz;
      for (int c = 0; c < 8; ++c) bc.row[c][j] = base + (c & 1) + ((c >> 1) & 1) * sy + ((c >> 2) & 1) * sz;
    }
  } else {
    for (int j = 0; j < nb; ++j) {
      const uint32_t x0 = cell[0][j], y0 = cell[1][j] * hg::kPrime1, z0 = cell[2][j] * hg::kPrime2;
      const uint32_t x1 = x0 + 1u, y1 = y0 + hg::kPrime1, z1 = z0 + hg::kPrime2;
      bc.row[0][j] = (x0 ^ y0 ^ z0) & lv.mask;
      bc.row[1][j] = (x1 ^ y0 ^ z0) & lv.mask;
      bc.row[2][j] = (x0 ^ y1 ^ z0) & lv.mask;
      bc.row[3][j] = (x1 ^ y1 ^ z0) & lv.mask;
      bc.row[4][j] = (x0 ^ y0 ^ z1) & lv.mask;
      bc.row[5][j] = (x1 ^ y0 ^ z1) & lv.mask;
      bc.row[6][j] = (x0 ^ y1 ^ z1) & lv.mask;
      bc.row[7][j] = (x1 ^ y1 ^ z1) & lv.mask;
    }
  }
  for (int j = 0; j < nb; ++j) {
    const float fx = bc.frac[0][j], fy = bc.frac[1][j], fz = bc.frac[2][j];
    const float wx[2] = {1.f - fx, fx}, wy[2] = {1.f - fy, fy}, wz[2] = {1.f - fz, fz};
    for (int c = 0; c < 8; ++c) bc.w[c][j] = wx[c & 1] * wy[(c >> 1) & 1] * wz[(c >> 2) & 1];
  }
}

// Fresh memory for a large output (the [L, T, F] table gradient is 64 MB by default). Page faults on 4 KB pages
// cost more than the whole backward pass here, so large buffers are 2 MB aligned and marked MADV_HUGEPAGE
// (a hint; without transparent huge pages it behaves like malloc). Returns the base pointer and the mapping
// (base, length) to give to release_buffer, or {nullptr, ...} on failure.
struct Mapping {
  void* ptr = nullptr;   // 2 MB aligned start of the usable buffer
  void* base = nullptr;  // what to munmap
  size_t length = 0;
};

constexpr size_t kHugePage = size_t(2) << 20;
constexpr size_t kMapMinBytes = size_t(4) << 20;  // smaller buffers come from the heap

inline Mapping map_buffer(size_t bytes) {
  Mapping m;
  const size_t usable = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  const size_t length = usable + kHugePage;
  void* base = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return m;
  const uintptr_t aligned = (reinterpret_cast<uintptr_t>(base) + kHugePage - 1) & ~(uintptr_t(kHugePage) - 1);
#ifdef MADV_HUGEPAGE
  madvise(reinterpret_cast<void*>(aligned), usable, MADV_HUGEPAGE);
#endif
  m.ptr = reinterpret_cast<void*>(aligned);
  m.base = base;
  m.length = length;
  return m;
}

inline void release_buffer(void* base, size_t length) { munmap(base, length); }

// Scratch floats freed on scope exit: a huge-page mapping when large (see map_buffer), the heap otherwise.
class Scratch {
 public:
  explicit Scratch(size_t count) {
    const size_t bytes = count * sizeof(float);
    if (bytes >= kMapMinBytes) map_ = map_buffer(bytes);
    if (map_.ptr == nullptr) heap_.resize(count);
  }
  ~Scratch() {
    if (map_.ptr) release_buffer(map_.base, map_.length);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  float* data() { return map_.ptr ? static_cast<float*>(map_.ptr) : heap_.data(); }

 private:
  Mapping map_;
  std::vector<float> heap_;
};

// Where a point's features live. One table [L, T, F] for every point (the usual case), or many tables of the same
// shape with a per-point index (one field per tracked actor, evaluated in one call): point n reads
// tables[index[n]]. Both give the start of the point's table; the level offset is added by the caller.
struct OneTable {
  const float* table;
  const float* at(int64_t) const { return table; }
};
struct ManyTables {
  const float* const* tables;
  const int32_t* index;
  const float* at(int64_t n) const { return tables[index[n]]; }
};
// The same for table gradients (nullptr entries are not allowed: the caller asks for all or none).
struct OneGrad {
  float* grad;
  float* at(int64_t) const { return grad; }
  template <typename Fn>
  void each(Fn&& fn) const { fn(grad); }
};
struct ManyGrads {
  float* const* grads;
  const int32_t* index;
  int64_t count;
  float* at(int64_t n) const { return grads[index[n]]; }
  template <typename Fn>
  void each(Fn&& fn) const {
    for (int64_t a = 0; a < count; ++a) fn(grads[a]);
  }
};

inline std::vector<Level> make_levels(const std::vector<int64_t>& resolutions, const std::vector<int64_t>& dense,
                                      int64_t table_size) {
  std::vector<Level> levels;
  for (size_t l = 0; l < resolutions.size(); ++l) {
    Level lv;
    lv.res = static_cast<int>(resolutions[l]);
    lv.res_f = static_cast<float>(lv.res);
    lv.dense = dense[l] != 0;
    lv.stride = static_cast<uint32_t>(lv.res + 1);
    lv.mask = static_cast<uint32_t>(table_size - 1);
    levels.push_back(lv);
  }
  return levels;
}

// Gather-and-interpolate of the points of a block on one level: out[n0 + j, level * F + f]. `level_offset` is
// the level's start (floats) within a table.
template <int F, typename Tabs>
inline void gather_block_scalar(const Tabs& tabs, int64_t level_offset, const BlockCells& cells, int nb,
                                float* __restrict out, int64_t n0, int out_stride, int level) {
  for (int j = 0; j < nb; ++j) {
    const float* __restrict tab = tabs.at(n0 + j) + level_offset;
    float acc[F] = {};
    for (int c = 0; c < 8; ++c) {
      const float* r = tab + static_cast<int64_t>(cells.row[c][j]) * F;
      const float w = cells.w[c][j];
      for (int f = 0; f < F; ++f) acc[f] += w * r[f];
    }
    float* o = out + (n0 + j) * out_stride + level * F;
    for (int f = 0; f < F; ++f) o[f] = acc[f];
  }
}

#ifdef HG_AVX2
// F = 2 with AVX2: a row is 8 bytes, so one 64-bit gather fetches both features of 4 points' corner; the
// accumulator then holds (point, feature) pairs in output order. Same corner order as the scalar code.
inline void gather_block_avx2_f2(const float* __restrict tab, const BlockCells& cells, int nb, float* __restrict out,
                                 int64_t n0, int out_stride, int level) {
  const auto* rows64 = reinterpret_cast<const long long*>(tab);
  const __m256i dup = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
  int j = 0;
  for (; j + 4 <= nb; j += 4) {
    __m256 acc = _mm256_setzero_ps();
    for (int c = 0; c < 8; ++c) {
      const __m128i idx = _mm_loadu_si128(reinterpret_cast<const __m128i*>(&cells.row[c][j]));
      const __m256 v = _mm256_castsi256_ps(_mm256_i32gather_epi64(rows64, idx, 8));
      const __m256 w = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(&cells.w[c][j])), dup);
      acc = _mm256_fmadd_ps(w, v, acc);
    }
    const __m128 lo = _mm256_castps256_ps128(acc), hi = _mm256_extractf128_ps(acc, 1);
    float* o = out + (n0 + j) * out_stride + level * 2;
    _mm_storel_pi(reinterpret_cast<__m64*>(o), lo);
    _mm_storeh_pi(reinterpret_cast<__m64*>(o + out_stride), lo);
    _mm_storel_pi(reinterpret_cast<__m64*>(o + 2 * out_stride), hi);
    _mm_storeh_pi(reinterpret_cast<__m64*>(o + 3 * out_stride), hi);
  }
  for (; j < nb; ++j) {
    float a0 = 0.f, a1 = 0.f;
    for (int c = 0; c < 8; ++c) {
      const float* r = tab + static_cast<int64_t>(cells.row[c][j]) * 2;
      a0 += cells.w[c][j] * r[0];
      a1 += cells.w[c][j] * r[1];
    }
    float* o = out + (n0 + j) * out_stride + level * 2;
    o[0] = a0;
    o[1] = a1;
  }
}
#endif

template <int F, typename Tabs>
inline void gather_block(const Tabs& tabs, int64_t level_offset, const BlockCells& cells, int nb,
                         float* __restrict out, int64_t n0, int out_stride, int level) {
#ifdef HG_AVX2
  if constexpr (F == 2 && std::is_same_v<Tabs, OneTable>) {  // one base pointer for the 64-bit gathers
    gather_block_avx2_f2(tabs.table + level_offset, cells, nb, out, n0, out_stride, level);
    return;
  }
#endif
  gather_block_scalar<F>(tabs, level_offset, cells, nb, out, n0, out_stride, level);
}

// Forward of points [begin, end) on one level.
template <int F, typename Tabs>
void forward_range(const float* __restrict pos, const Tabs& tabs, int64_t level_offset, float* __restrict out,
                   int64_t begin, int64_t end, int out_stride, int level, const Level& lv) {
  BlockCells cells;
  for (int64_t n0 = begin; n0 < end; n0 += kBlock) {
    const int nb = static_cast<int>(std::min<int64_t>(kBlock, end - n0));
    compute_block(pos, n0, nb, lv, cells);
    gather_block<F>(tabs, level_offset, cells, nb, out, n0, out_stride, level);
  }
}

// Backward of all points on one level (called by exactly one thread per level); gout is the level's [N, F]
// slice of the level-major upstream gradient.
template <int F, typename Tabs, typename Grads>
void backward_level(const float* __restrict pos, const Tabs& tabs, const float* __restrict gout, const Grads* grads,
                    float* __restrict gpos, int64_t level_offset, int64_t n, const Level& lv) {
  BlockCells cells;
  for (int64_t n0 = 0; n0 < n; n0 += kBlock) {
    const int nb = static_cast<int>(std::min<int64_t>(kBlock, n - n0));
    compute_block(pos, n0, nb, lv, cells);
    for (int j = 0; j < nb; ++j) {
      const float* go = gout + (n0 + j) * F;
      float g[F];
      for (int f = 0; f < F; ++f) g[f] = go[f];
      if (grads) {
        float* __restrict gtab = grads->at(n0 + j) + level_offset;
        for (int c = 0; c < 8; ++c) {
          float* r = gtab + static_cast<int64_t>(cells.row[c][j]) * F;
          const float w = cells.w[c][j];
          for (int f = 0; f < F; ++f) r[f] += w * g[f];
        }
      }
      if (gpos) {
        const float fx = cells.frac[0][j], fy = cells.frac[1][j], fz = cells.frac[2][j];
        const float wx[2] = {1.f - fx, fx}, wy[2] = {1.f - fy, fy}, wz[2] = {1.f - fz, fz};
        float dx = 0.f, dy = 0.f, dz = 0.f;
        const float* __restrict tab = tabs.at(n0 + j) + level_offset;
        for (int c = 0; c < 8; ++c) {
          const float* r = tab + static_cast<int64_t>(cells.row[c][j]) * F;
          float dot = 0.f;
          for (int f = 0; f < F; ++f) dot += r[f] * g[f];
          const int bx = c & 1, by = (c >> 1) & 1, bz = (c >> 2) & 1;
          // d w_c / d frac_axis = (+1 if the corner's bit is set else -1) * product of the other two weights
          dx += (bx ? dot : -dot) * wy[by] * wz[bz];
          dy += (by ? dot : -dot) * wx[bx] * wz[bz];
          dz += (bz ? dot : -dot) * wx[bx] * wy[by];
        }
        float* gp = gpos + (n0 + j) * 3;
        gp[0] += dx * lv.res_f;  // d frac / d x = res (also for clamped points: derivative at the boundary)
        gp[1] += dy * lv.res_f;
        gp[2] += dz * lv.res_f;
      }
    }
  }
}

// out [N, L * F] = encode(pos [N, 3], tables [L, T, F]) with `nthreads` OpenMP threads.
// Tasks are (level, chunk of points) in level-major order, handed out dynamically: the threads sweep the levels
// together (one level's table in cache at a time) without a barrier per level, and a thread that the OS
// deschedules (a busy machine) does not hold the others up.
template <int F, typename Tabs>
void forward(const float* pos, const Tabs& tabs, float* out, int64_t n, const std::vector<Level>& levels, int64_t t,
             int nthreads) {
  if (n == 0) return;
  const int num_levels = static_cast<int>(levels.size());
  const int out_stride = num_levels * F;
  const int64_t num_blocks = (n + kBlock - 1) / kBlock;
  const int nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(nthreads, num_blocks)));
  // about 8 chunks per thread and level, at least 2048 points each
  const int64_t chunk_blocks = std::max<int64_t>(64, (num_blocks + 8 * nt - 1) / (8 * nt));
  const int64_t num_chunks = (num_blocks + chunk_blocks - 1) / chunk_blocks;
  const int64_t num_tasks = num_chunks * num_levels;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
  for (int64_t task = 0; task < num_tasks; ++task) {
    const int l = static_cast<int>(task / num_chunks);
    const int64_t chunk = task % num_chunks;
    const int64_t begin = chunk * chunk_blocks * kBlock, end = std::min(n, (chunk + 1) * chunk_blocks * kBlock);
    forward_range<F>(pos, tabs, static_cast<int64_t>(l) * t * F, out, begin, end, out_stride, l, levels[l]);
  }
}

// src [N, L * F] -> dst [L, N, F], in parallel over blocks of points.
template <int F>
void transpose_to_level_major(const float* __restrict src, float* __restrict dst, int64_t n, int num_levels,
                              int nthreads) {
  constexpr int64_t kChunk = 256;
  const int stride = num_levels * F;
#pragma omp parallel for schedule(static) num_threads(std::max(1, nthreads))
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    const int64_t count = std::min(n, c0 + kChunk) - c0;
    for (int l = 0; l < num_levels; ++l) {
      float* d = dst + (static_cast<int64_t>(l) * n + c0) * F;
      const float* s = src + c0 * stride + l * F;
      for (int64_t i = 0; i < count; ++i)
        for (int f = 0; f < F; ++f) d[i * F + f] = s[i * stride + f];
    }
  }
}

// Threads the backward uses: one task per level, so never more than the number of levels.
inline int backward_threads(int64_t num_levels, int nthreads) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(nthreads, num_levels)));
}

// Gradients of forward. grads: the table gradient(s) [L, T, F], zeroed here unless table_grad_is_zero (fresh
// anonymous mappings are), nullptr to skip. grad_pos [backward_threads(L, nthreads), N, 3]: per-thread partial sums, zeroed by the
// caller and summed over the first axis by the caller, nullptr to skip.
template <int F, typename Tabs, typename Grads>
void backward(const float* pos, const Tabs& tabs, const float* grad_out, const Grads* grads, float* grad_pos,
              int64_t n, const std::vector<Level>& levels, int64_t t, int nthreads, bool table_grad_is_zero) {
  const int num_levels = static_cast<int>(levels.size());
  const int out_stride = num_levels * F;
  const int nt = backward_threads(num_levels, nthreads);
  // grad_out [N, L * F] -> level-major [L, N, F]: each level then streams F contiguous floats per point instead
  // of touching one (L * F)-float row of grad_out per point; otherwise all L levels re-read the whole grad_out
  // from memory (32 MB at 2^18 points), which measured a third of the backward.
  Scratch level_major(static_cast<size_t>(n) * out_stride);
  float* g_lm = level_major.data();
  transpose_to_level_major<F>(grad_out, g_lm, n, num_levels, nthreads);
  // Finest (hashed, most expensive) levels first: with dynamic scheduling the cheap coarse levels then fill in
  // at the end, so no thread is left alone with a big level (longest-processing-time-first).
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
  for (int task = 0; task < num_levels; ++task) {
    const int l = num_levels - 1 - task;
    const int64_t level_offset = static_cast<int64_t>(l) * t * F;
    if (grads && !table_grad_is_zero)  // by the level's own task: levels are disjoint, so no two threads meet
      grads->each([&](float* g) { std::memset(g + level_offset, 0, sizeof(float) * t * F); });
    float* gp = grad_pos ? grad_pos + static_cast<int64_t>(omp_get_thread_num()) * n * 3 : nullptr;
    if (n > 0)
      backward_level<F>(pos, tabs, g_lm + static_cast<int64_t>(l) * n * F, grads, gp, level_offset, n, levels[l]);
  }
}

}  // namespace simrecon_hashgrid_cpu
