// Torch binding of the fused CPU hash-grid encoding (core in hashgrid_cpu_impl.h, OpenMP).
#include <torch/extension.h>

#include <tuple>
#include <type_traits>
#include <vector>

#include "hashgrid_cpu_impl.h"

namespace hgc = simrecon_hashgrid_cpu;

namespace {

void check_inputs(const torch::Tensor& positions, const torch::Tensor& table, const std::vector<int64_t>& resolutions,
                  const std::vector<int64_t>& dense) {
  TORCH_CHECK(positions.device().is_cpu() && table.device().is_cpu(), "hashgrid_cpu: tensors must be on the CPU");
  TORCH_CHECK(positions.dim() == 2 && positions.size(1) == 3, "hashgrid_cpu: positions must be [N, 3], got ",
              positions.sizes());
  TORCH_CHECK(table.dim() == 3, "hashgrid_cpu: table must be [L, T, F], got ", table.sizes());
  TORCH_CHECK(positions.scalar_type() == torch::kFloat32 && table.scalar_type() == torch::kFloat32,
              "hashgrid_cpu: positions and table must be float32");
  TORCH_CHECK(positions.is_contiguous() && table.is_contiguous(), "hashgrid_cpu: tensors must be contiguous");
  TORCH_CHECK(static_cast<int64_t>(resolutions.size()) == table.size(0) &&
                  static_cast<int64_t>(dense.size()) == table.size(0),
              "hashgrid_cpu: one resolution and one dense flag per level expected");
  const int64_t t = table.size(1);
  TORCH_CHECK(t > 0 && (t & (t - 1)) == 0 && t <= (int64_t(1) << 31), "hashgrid_cpu: T must be a power of two");
}

template <typename Fn>
void dispatch_features(int64_t f, Fn&& fn) {
  switch (f) {
    case 1: fn(std::integral_constant<int, 1>{}); break;
    case 2: fn(std::integral_constant<int, 2>{}); break;
    case 4: fn(std::integral_constant<int, 4>{}); break;
    case 8: fn(std::integral_constant<int, 8>{}); break;
    default: TORCH_CHECK(false, "hashgrid_cpu: features_per_level must be 1, 2, 4 or 8, got ", f);
  }
}

// Float32 tensor for a kernel output; large ones live in fresh 2 MB aligned MADV_HUGEPAGE mappings (see
// map_buffer): first touch of a fresh 64 MB gradient on 4 KB pages costs more than computing it. *is_zero tells
// whether the memory is known to be zero (fresh anonymous mappings are) or uninitialised.
torch::Tensor empty_float(at::IntArrayRef sizes, const torch::TensorOptions& options, bool* is_zero = nullptr) {
  int64_t numel = 1;
  for (int64_t s : sizes) numel *= s;
  const size_t bytes = static_cast<size_t>(numel) * sizeof(float);
  if (is_zero) *is_zero = false;
  if (bytes < hgc::kMapMinBytes) return torch::empty(sizes, options.dtype(torch::kFloat32));
  const hgc::Mapping m = hgc::map_buffer(bytes);
  if (m.ptr == nullptr) return torch::empty(sizes, options.dtype(torch::kFloat32));
  if (is_zero) *is_zero = true;
  void* base = m.base;
  const size_t length = m.length;
  return torch::from_blob(
      m.ptr, sizes, [base, length](void*) { hgc::release_buffer(base, length); },
      options.dtype(torch::kFloat32));
}

int num_threads() { return std::max(1, at::get_num_threads()); }  // honours torch.set_num_threads

}  // namespace

// positions [N, 3], table [L, T, F] -> [N, L * F]
torch::Tensor hashgrid_forward(torch::Tensor positions, torch::Tensor table, std::vector<int64_t> resolutions,
                               std::vector<int64_t> dense) {
  check_inputs(positions, table, resolutions, dense);
  const int64_t n = positions.size(0), t = table.size(1), f = table.size(2);
  auto out = empty_float({n, table.size(0) * f}, positions.options());
  const auto levels = hgc::make_levels(resolutions, dense, t);
  dispatch_features(f, [&](auto fc) {
    hgc::forward<decltype(fc)::value>(positions.data_ptr<float>(), hgc::OneTable{table.data_ptr<float>()},
                                      out.data_ptr<float>(), n, levels, t, num_threads());
  });
  return out;
}

// Gradients of hashgrid_forward: (grad_table [L, T, F] or undefined, grad_positions [N, 3] or undefined).
std::vector<torch::Tensor> hashgrid_backward(torch::Tensor grad_out, torch::Tensor positions, torch::Tensor table,
                                             std::vector<int64_t> resolutions, std::vector<int64_t> dense,
                                             bool need_table_grad, bool need_positions_grad) {
  check_inputs(positions, table, resolutions, dense);
  const int64_t n = positions.size(0), num_levels = table.size(0), t = table.size(1), f = table.size(2);
  TORCH_CHECK(grad_out.scalar_type() == torch::kFloat32 && grad_out.is_contiguous() && grad_out.dim() == 2 &&
                  grad_out.size(0) == n && grad_out.size(1) == num_levels * f,
              "hashgrid_cpu: grad_out must be contiguous float32 [N, L * F], got ", grad_out.sizes());
  const int nt = hgc::backward_threads(num_levels, num_threads());
  torch::Tensor gtab, gpos;
  bool gtab_is_zero = false;
  if (need_table_grad) gtab = empty_float(table.sizes(), table.options(), &gtab_is_zero);  // else zeroed per level
  if (need_positions_grad) gpos = torch::zeros({nt, n, 3}, positions.options());  // per-thread accumulators
  if (!need_table_grad && !need_positions_grad) return {gtab, gpos};
  const auto levels = hgc::make_levels(resolutions, dense, t);
  const hgc::OneGrad grads{gtab.defined() ? gtab.data_ptr<float>() : nullptr};
  dispatch_features(f, [&](auto fc) {
    hgc::backward<decltype(fc)::value>(positions.data_ptr<float>(), hgc::OneTable{table.data_ptr<float>()},
                                       grad_out.data_ptr<float>(), gtab.defined() ? &grads : nullptr,
                                       gpos.defined() ? gpos.data_ptr<float>() : nullptr, n, levels, t, nt,
                                       gtab_is_zero);
  });
  if (gpos.defined()) gpos = nt == 1 ? gpos[0] : gpos.sum(0);
  return {gtab, gpos};
}

// Many tables of one shape, point n reading tables[table_index[n]] (int32 [N], checked to be in range).
namespace {

std::vector<const float*> check_many(const torch::Tensor& positions, const torch::Tensor& table_index,
                                     const std::vector<torch::Tensor>& tables, const std::vector<int64_t>& resolutions,
                                     const std::vector<int64_t>& dense) {
  TORCH_CHECK(!tables.empty(), "hashgrid_cpu: at least one table expected");
  std::vector<const float*> ptrs;
  for (const auto& table : tables) {
    check_inputs(positions, table, resolutions, dense);
    TORCH_CHECK(table.sizes() == tables[0].sizes(), "hashgrid_cpu: all tables must have one shape, got ",
                table.sizes(), " and ", tables[0].sizes());
    ptrs.push_back(table.data_ptr<float>());
  }
  TORCH_CHECK(table_index.device().is_cpu() && table_index.scalar_type() == torch::kInt32 &&
                  table_index.is_contiguous() && table_index.dim() == 1 && table_index.size(0) == positions.size(0),
              "hashgrid_cpu: table_index must be contiguous int32 [N], got ", table_index.sizes());
  if (table_index.numel() > 0) {
    const int64_t lo = table_index.min().item<int64_t>(), hi = table_index.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < static_cast<int64_t>(tables.size()), "hashgrid_cpu: table_index must be in [0, ",
                tables.size(), "), got values in [", lo, ", ", hi, "]");
  }
  return ptrs;
}

}  // namespace

torch::Tensor hashgrid_forward_many(torch::Tensor positions, torch::Tensor table_index, std::vector<torch::Tensor> tables,
                                    std::vector<int64_t> resolutions, std::vector<int64_t> dense) {
  const auto ptrs = check_many(positions, table_index, tables, resolutions, dense);
  const int64_t n = positions.size(0), t = tables[0].size(1), f = tables[0].size(2);
  auto out = empty_float({n, tables[0].size(0) * f}, positions.options());
  const auto levels = hgc::make_levels(resolutions, dense, t);
  const hgc::ManyTables tabs{ptrs.data(), table_index.data_ptr<int32_t>()};
  dispatch_features(f, [&](auto fc) {
    hgc::forward<decltype(fc)::value>(positions.data_ptr<float>(), tabs, out.data_ptr<float>(), n, levels, t,
                                      num_threads());
  });
  return out;
}

// -> (one table gradient per table, or an empty list; grad_positions [N, 3] or undefined).
std::tuple<std::vector<torch::Tensor>, torch::Tensor> hashgrid_backward_many(
    torch::Tensor grad_out, torch::Tensor positions, torch::Tensor table_index, std::vector<torch::Tensor> tables,
    std::vector<int64_t> resolutions, std::vector<int64_t> dense, bool need_table_grad, bool need_positions_grad) {
  const auto ptrs = check_many(positions, table_index, tables, resolutions, dense);
  const int64_t n = positions.size(0), num_levels = tables[0].size(0), t = tables[0].size(1), f = tables[0].size(2);
  TORCH_CHECK(grad_out.scalar_type() == torch::kFloat32 && grad_out.is_contiguous() && grad_out.dim() == 2 &&
                  grad_out.size(0) == n && grad_out.size(1) == num_levels * f,
              "hashgrid_cpu: grad_out must be contiguous float32 [N, L * F], got ", grad_out.sizes());
  const int nt = hgc::backward_threads(num_levels, num_threads());
  // One buffer for all the table gradients (returned as views): a fresh huge-page mapping, already zero, once it
  // is large; a table each (2 MB for an actor) page-faulted its way through 4 KB pages at every step.
  std::vector<torch::Tensor> gtabs;
  std::vector<float*> gptrs;
  bool gtab_is_zero = false;
  if (need_table_grad) {
    const int64_t count = static_cast<int64_t>(tables.size());
    auto all = empty_float({count, num_levels, t, f}, tables[0].options(), &gtab_is_zero);
    gtabs = all.unbind(0);
    for (auto& g : gtabs) gptrs.push_back(g.data_ptr<float>());
  }
  torch::Tensor gpos;
  if (need_positions_grad) gpos = torch::zeros({nt, n, 3}, positions.options());
  if (!need_table_grad && !need_positions_grad) return {gtabs, gpos};
  const auto levels = hgc::make_levels(resolutions, dense, t);
  const hgc::ManyTables tabs{ptrs.data(), table_index.data_ptr<int32_t>()};
  const hgc::ManyGrads grads{gptrs.data(), table_index.data_ptr<int32_t>(), static_cast<int64_t>(gptrs.size())};
  dispatch_features(f, [&](auto fc) {
    hgc::backward<decltype(fc)::value>(positions.data_ptr<float>(), tabs, grad_out.data_ptr<float>(),
                                       need_table_grad ? &grads : nullptr,
                                       gpos.defined() ? gpos.data_ptr<float>() : nullptr, n, levels, t, nt,
                                       gtab_is_zero);
  });
  if (gpos.defined()) gpos = nt == 1 ? gpos[0] : gpos.sum(0);
  return {gtabs, gpos};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "simrecon fused hash-grid encoding, CPU (OpenMP)";
  m.def("forward", &hashgrid_forward, "hash-grid encoding forward (CPU)");
  m.def("backward", &hashgrid_backward, "hash-grid encoding backward (CPU)");
  m.def("forward_many", &hashgrid_forward_many, "hash-grid encoding forward, a table per point (CPU)");
  m.def("backward_many", &hashgrid_backward_many, "hash-grid encoding backward, a table per point (CPU)");
}
