// Adam for hash tables, one entry at a time (tiny-cuda-nn's rule for its encoding parameters): an entry whose
// gradient is exactly zero was not touched by any point this step, and keeps its value, its moments and its own
// step count. With torch's Adam such an entry drifts on for ~10 steps on its decaying momentum (m decays 0.9 a
// step, sqrt(v) only 0.995), so one touch moved it ~10 learning rates; here it moves one.
// Plain C++ so that the CPU op and nvcc share it (no torch header).
#pragma once

#include <cmath>
#include <cstdint>

#include "hashgrid_common.h"

namespace simrecon_hashgrid {

// corr[t] = sqrt(1 - beta2^t) / (1 - beta1^t) for t in [0, t_max] (built by the caller; corr[0] is unused), and an
// entry's count saturates at t_max, where the correction is 1 to float precision.
// The rule for one entry, without branches or conditional loads (the CPU loop vectorises it): an entry with g == 0
// keeps m, v and t and gets a zero step (its step is computed and discarded). Returns what to subtract from the
// parameter.
HG_HD float table_adam_rule(float g, float& m, float& v, int32_t& t, float lr, float beta1, float beta2, float eps,
                            const float* corr, int32_t t_max) {
  const bool touched = g != 0.f;
  const float m1 = beta1 * m + (1.f - beta1) * g;
  const float v1 = beta2 * v + (1.f - beta2) * (g * g);
  const int32_t t1 = t < t_max ? t + 1 : t_max;
  const float step = lr * corr[t1] * m1 / (sqrtf(v1) + eps);
  m = touched ? m1 : m;
  v = touched ? v1 : v;
  t = touched ? t1 : t;
  return touched ? step : 0.f;
}

}  // namespace simrecon_hashgrid
