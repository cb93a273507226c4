// Torch binding of the CUDA hash-grid kernels (hashgrid_cuda.cu): checks tensors, allocates outputs and calls
// the raw-pointer launchers on the stream handed in from Python (torch.cuda.current_stream().cuda_stream), so
// that neither file needs ATen's CUDA headers.
#include <torch/extension.h>

#include <tuple>
#include <vector>

#include "hashgrid_cuda.h"

namespace hg = simrecon_hashgrid;

namespace {

hg::GridLevels make_levels(const torch::Tensor& table, const std::vector<int64_t>& resolutions,
                           const std::vector<int64_t>& dense) {
  const int64_t num_levels = table.size(0), t = table.size(1), f = table.size(2);
  TORCH_CHECK(num_levels >= 1 && num_levels <= hg::kMaxLevels, "hashgrid_cuda: at most ", hg::kMaxLevels,
              " levels, got ", num_levels);
  TORCH_CHECK(static_cast<int64_t>(resolutions.size()) == num_levels &&
                  static_cast<int64_t>(dense.size()) == num_levels,
              "hashgrid_cuda: one resolution and one dense flag per level expected");
  TORCH_CHECK(t > 0 && (t & (t - 1)) == 0 && t <= (int64_t(1) << 31), "hashgrid_cuda: T must be a power of two");
  TORCH_CHECK(f == 1 || f == 2 || f == 4 || f == 8, "hashgrid_cuda: features_per_level must be 1, 2, 4 or 8, got ", f);
  hg::GridLevels lv{};
  lv.num_levels = static_cast<int>(num_levels);
  lv.features = static_cast<int>(f);
  lv.table_size = static_cast<uint32_t>(t);
  lv.dense_bits = 0;
  for (int64_t l = 0; l < num_levels; ++l) {
    lv.res[l] = static_cast<int>(resolutions[l]);
    if (dense[l]) lv.dense_bits |= (1u << l);
  }
  return lv;
}

void check_inputs(const torch::Tensor& positions, const torch::Tensor& table) {
  TORCH_CHECK(positions.is_cuda() && table.is_cuda(), "hashgrid_cuda: tensors must be CUDA tensors");
  TORCH_CHECK(positions.device() == table.device(), "hashgrid_cuda: positions and table on different devices");
  TORCH_CHECK(positions.dim() == 2 && positions.size(1) == 3, "hashgrid_cuda: positions must be [N, 3], got ",
              positions.sizes());
  TORCH_CHECK(table.dim() == 3, "hashgrid_cuda: table must be [L, T, F], got ", table.sizes());
  TORCH_CHECK(positions.scalar_type() == torch::kFloat32, "hashgrid_cuda: positions must be float32");
  TORCH_CHECK(table.scalar_type() == torch::kFloat32 || table.scalar_type() == torch::kFloat16,
              "hashgrid_cuda: table must be float32 or float16");
  TORCH_CHECK(positions.is_contiguous() && table.is_contiguous(), "hashgrid_cuda: tensors must be contiguous");
}

void* as_stream(int64_t stream) { return reinterpret_cast<void*>(static_cast<intptr_t>(stream)); }

}  // namespace

// positions [N, 3] float32, table [L, T, F] -> [N, L * F] in the table's dtype
torch::Tensor hashgrid_forward(torch::Tensor positions, torch::Tensor table, std::vector<int64_t> resolutions,
                               std::vector<int64_t> dense, int64_t stream) {
  check_inputs(positions, table);
  const auto lv = make_levels(table, resolutions, dense);
  const int64_t n = positions.size(0);
  auto out = torch::empty({n, table.size(0) * table.size(2)}, table.options());
  const char* err = hg::launch_forward(positions.data_ptr<float>(), table.data_ptr(), out.data_ptr(), n, lv,
                                       table.scalar_type() == torch::kFloat16, hg::ManyTables{}, as_stream(stream));
  TORCH_CHECK(err == nullptr, "hashgrid_cuda forward: ", err ? err : "");
  return out;
}

// -> (grad_table [L, T, F] in the table's dtype or undefined, grad_positions [N, 3] float32 or undefined).
// The table gradient is accumulated in float32 (atomics) and cast once for fp16 tables.
std::vector<torch::Tensor> hashgrid_backward(torch::Tensor grad_out, torch::Tensor positions, torch::Tensor table,
                                             std::vector<int64_t> resolutions, std::vector<int64_t> dense,
                                             bool need_table_grad, bool need_positions_grad, int64_t stream) {
  check_inputs(positions, table);
  const auto lv = make_levels(table, resolutions, dense);
  const int64_t n = positions.size(0);
  TORCH_CHECK(grad_out.scalar_type() == table.scalar_type() && grad_out.is_contiguous() && grad_out.dim() == 2 &&
                  grad_out.size(0) == n && grad_out.size(1) == table.size(0) * table.size(2),
              "hashgrid_cuda: grad_out must be contiguous [N, L * F] in the table dtype, got ", grad_out.sizes());
  auto f32 = table.options().dtype(torch::kFloat32);
  torch::Tensor gtab, gpos;
  if (need_table_grad) gtab = torch::zeros(table.sizes(), f32);
  if (need_positions_grad) gpos = torch::zeros({n, 3}, f32);
  const char* err = hg::launch_backward(positions.data_ptr<float>(), table.data_ptr(), grad_out.data_ptr(),
                                        gtab.defined() ? gtab.data_ptr<float>() : nullptr,
                                        gpos.defined() ? gpos.data_ptr<float>() : nullptr, n, lv,
                                        table.scalar_type() == torch::kFloat16, hg::ManyTables{}, as_stream(stream));
  TORCH_CHECK(err == nullptr, "hashgrid_cuda backward: ", err ? err : "");
  if (gtab.defined() && table.scalar_type() != torch::kFloat32) gtab = gtab.to(table.scalar_type());
  return {gtab, gpos};
}

// Many tables of one shape, point i reading tables[table_index[i]] (int32 [N] on the device, in range: checked in
// Python). The table pointers travel to the device as one small int64 tensor per call.
namespace {

torch::Tensor pointer_array(const std::vector<int64_t>& ptrs, const torch::Tensor& like) {
  auto host = torch::tensor(ptrs, torch::TensorOptions().dtype(torch::kInt64));
  return host.to(like.device(), /*non_blocking=*/false);
}

void check_many(const torch::Tensor& positions, const torch::Tensor& table_index, const std::vector<torch::Tensor>& tables) {
  TORCH_CHECK(!tables.empty(), "hashgrid_cuda: at least one table expected");
  for (const auto& table : tables) {
    check_inputs(positions, table);
    TORCH_CHECK(table.sizes() == tables[0].sizes() && table.scalar_type() == tables[0].scalar_type(),
                "hashgrid_cuda: all tables must have one shape and dtype");
  }
  TORCH_CHECK(table_index.device() == positions.device() && table_index.scalar_type() == torch::kInt32 &&
                  table_index.is_contiguous() && table_index.dim() == 1 && table_index.size(0) == positions.size(0),
              "hashgrid_cuda: table_index must be contiguous int32 [N] on the positions' device, got ",
              table_index.sizes());
}

}  // namespace

torch::Tensor hashgrid_forward_many(torch::Tensor positions, torch::Tensor table_index, std::vector<torch::Tensor> tables,
                                    std::vector<int64_t> resolutions, std::vector<int64_t> dense, int64_t stream) {
  check_many(positions, table_index, tables);
  const auto lv = make_levels(tables[0], resolutions, dense);
  const int64_t n = positions.size(0);
  auto out = torch::empty({n, tables[0].size(0) * tables[0].size(2)}, tables[0].options());
  std::vector<int64_t> ptrs;
  for (const auto& t : tables) ptrs.push_back(reinterpret_cast<int64_t>(t.data_ptr()));
  const auto dev_ptrs = pointer_array(ptrs, positions);
  hg::ManyTables many;
  many.tables = reinterpret_cast<const void* const*>(dev_ptrs.data_ptr<int64_t>());
  many.index = table_index.data_ptr<int32_t>();
  const char* err = hg::launch_forward(positions.data_ptr<float>(), tables[0].data_ptr(), out.data_ptr(), n, lv,
                                       tables[0].scalar_type() == torch::kFloat16, many, as_stream(stream));
  TORCH_CHECK(err == nullptr, "hashgrid_cuda forward: ", err ? err : "");
  return out;
}

std::tuple<std::vector<torch::Tensor>, torch::Tensor> hashgrid_backward_many(
    torch::Tensor grad_out, torch::Tensor positions, torch::Tensor table_index, std::vector<torch::Tensor> tables,
    std::vector<int64_t> resolutions, std::vector<int64_t> dense, bool need_table_grad, bool need_positions_grad,
    int64_t stream) {
  check_many(positions, table_index, tables);
  const auto lv = make_levels(tables[0], resolutions, dense);
  const int64_t n = positions.size(0);
  TORCH_CHECK(grad_out.scalar_type() == tables[0].scalar_type() && grad_out.is_contiguous() && grad_out.dim() == 2 &&
                  grad_out.size(0) == n && grad_out.size(1) == tables[0].size(0) * tables[0].size(2),
              "hashgrid_cuda: grad_out must be contiguous [N, L * F] in the table dtype, got ", grad_out.sizes());
  auto f32 = tables[0].options().dtype(torch::kFloat32);
  std::vector<torch::Tensor> gtabs;
  std::vector<int64_t> ptrs, gptrs;
  for (const auto& t : tables) {
    ptrs.push_back(reinterpret_cast<int64_t>(t.data_ptr()));
    if (need_table_grad) {
      gtabs.push_back(torch::zeros(t.sizes(), f32));
      gptrs.push_back(reinterpret_cast<int64_t>(gtabs.back().data_ptr()));
    }
  }
  torch::Tensor gpos;
  if (need_positions_grad) gpos = torch::zeros({n, 3}, f32);
  const auto dev_ptrs = pointer_array(ptrs, positions);
  torch::Tensor dev_gptrs;
  hg::ManyTables many;
  many.tables = reinterpret_cast<const void* const*>(dev_ptrs.data_ptr<int64_t>());
  many.index = table_index.data_ptr<int32_t>();
  if (need_table_grad) {
    dev_gptrs = pointer_array(gptrs, positions);
    many.grad_tables = reinterpret_cast<float* const*>(dev_gptrs.data_ptr<int64_t>());
  }
  const char* err = hg::launch_backward(positions.data_ptr<float>(), tables[0].data_ptr(), grad_out.data_ptr(), nullptr,
                                        gpos.defined() ? gpos.data_ptr<float>() : nullptr, n, lv,
                                        tables[0].scalar_type() == torch::kFloat16, many, as_stream(stream));
  TORCH_CHECK(err == nullptr, "hashgrid_cuda backward: ", err ? err : "");
  if (tables[0].scalar_type() != torch::kFloat32)
    for (auto& g : gtabs) g = g.to(tables[0].scalar_type());
  return {gtabs, gpos};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "simrecon fused hash-grid encoding, CUDA";
  m.def("forward", &hashgrid_forward, "hash-grid encoding forward (CUDA)");
  m.def("backward", &hashgrid_backward, "hash-grid encoding backward (CUDA)");
  m.def("forward_many", &hashgrid_forward_many, "hash-grid encoding forward, a table per point (CUDA)");
  m.def("backward_many", &hashgrid_backward_many, "hash-grid encoding backward, a table per point (CUDA)");
}
