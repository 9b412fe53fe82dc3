// Torch-facing AWQ ops: input checks that name the failed rule, then execution of the plan that
// awq_dispatch.cpp makes (fused kernel, tiled kernel, or dequantise + cuBLAS for many rows).
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "core/ceil_div.h"
#include "core/torch_arch.h"
#include "moe/moe_routing.h"
#include "ops.h"
#include "quantization/awq/awq_dispatch.h"
#include "quantization/awq/awq_gemm.h"

namespace sm7x {
namespace {

// Bound on the fp16 scratch of the dequantise + cuBLAS path (weights are dequantised in column chunks).
constexpr int64_t kDequantChunkBytes = 64 << 20;

void check_group_size(int64_t group_size) {
  TORCH_CHECK_VALUE(group_size == 32 || group_size == 64 || group_size == 128,
                    "awq: group size ", group_size, " is not supported; use 32, 64 or 128");
}

// Checks the packed layout of awq_gemm.h and returns N (from scale_zero).
int64_t check_packed_weight(const torch::Tensor& qweight, const torch::Tensor& scale_zero, int64_t group_size,
                            int64_t K) {
  check_group_size(group_size);
  TORCH_CHECK_VALUE(K % group_size == 0, "awq: K = ", K, " is not a multiple of the group size ", group_size);
  TORCH_CHECK(scale_zero.is_cuda() && scale_zero.scalar_type() == at::kInt && scale_zero.is_contiguous() &&
                  scale_zero.dim() == 2 && scale_zero.size(0) == K / group_size,
              "awq: scale_zero must be a contiguous int32 (half2) [K/G = ", K / group_size,
              ", N] CUDA tensor, got ", scale_zero.scalar_type(), " ", scale_zero.sizes());
  const int64_t N = scale_zero.size(1);
  const std::vector<int64_t> packed{ceil_div(N, awq::kTileRows), ceil_div(K, awq::kTileK), 2, awq::kSlots, 4};
  TORCH_CHECK(qweight.is_cuda() && qweight.scalar_type() == at::kInt && qweight.sizes() == packed &&
                  qweight.is_contiguous() && reinterpret_cast<uintptr_t>(qweight.data_ptr()) % 16 == 0,
              "awq: qweight must be the packed int32 ", c10::IntArrayRef(packed),
              " CUDA tensor of vllm_sm7x.quantization.awq_format.to_kernel_layout (16-byte aligned), got ",
              qweight.scalar_type(), " ", qweight.sizes());
  TORCH_CHECK(qweight.device() == scale_zero.device(), "awq: qweight and scale_zero on different devices");
  TORCH_CHECK(N <= INT32_MAX && K <= INT32_MAX, "awq: weight too large");
  return N;
}

struct CheckedGemm {
  int64_t M, N, K;
  torch::Tensor x;  // rows readable as 16-byte vectors
};

CheckedGemm check_gemm(const torch::Tensor& x, const torch::Tensor& qweight, const torch::Tensor& scale_zero,
                       int64_t group_size, const std::optional<torch::Tensor>& bias, const char* op) {
  TORCH_CHECK(x.is_cuda() && x.scalar_type() == at::kHalf && x.dim() == 2, op,
              ": x must be a 2-D float16 CUDA tensor (SM70/SM75 have no bf16 tensor cores), got ", x.scalar_type(),
              " ", x.sizes());
  const int64_t M = x.size(0), K = x.size(1);
  TORCH_CHECK_VALUE(K > 0, op, ": x has no columns (K = 0)");
  const int64_t N = check_packed_weight(qweight, scale_zero, group_size, K);
  TORCH_CHECK(x.device() == qweight.device(), op, ": x and qweight on different devices");
  if (bias) {
    TORCH_CHECK(bias->is_cuda() && bias->scalar_type() == at::kHalf && bias->dim() == 1 && bias->size(0) == N &&
                    bias->is_contiguous(),
                op, ": bias must be a contiguous float16 [N = ", N, "] tensor, got ", bias->sizes());
  }
  TORCH_CHECK(M <= INT32_MAX, op, ": too many rows");
  const bool vector_ok = x.stride(1) == 1 && x.stride(0) % 8 == 0 && reinterpret_cast<uintptr_t>(x.data_ptr()) % 16 == 0;
  // A copy, not contiguous(): that returns a contiguous x as it is, misaligned base included.
  return {M, N, K, vector_ok ? x : x.clone(at::MemoryFormat::Contiguous)};
}

awq::Problem problem_of(const CheckedGemm& g, int64_t group_size, ArchPath path) {
  return {g.M, g.N, g.K, static_cast<int>(group_size), path};
}

// Runs the fused kernel, or the tiled one, with config's entry and split count.
void run_planned(const CheckedGemm& g, const torch::Tensor& qweight, const torch::Tensor& scale_zero,
                 int64_t group_size, const std::optional<torch::Tensor>& bias, ArchPath path,
                 awq::LinearKernel kernel, const awq::FusedConfig& config, torch::Tensor& out) {
  awq::GemmParams p{};
  p.x = reinterpret_cast<const __half*>(g.x.data_ptr<at::Half>());
  p.qweight = reinterpret_cast<const uint4*>(qweight.data_ptr<int32_t>());
  p.scale_zero = reinterpret_cast<const __half2*>(scale_zero.data_ptr<int32_t>());
  p.bias = bias ? reinterpret_cast<const __half*>(bias->data_ptr<at::Half>()) : nullptr;
  p.out = reinterpret_cast<__half*>(out.data_ptr<at::Half>());
  p.M = g.M, p.N = g.N, p.K = g.K, p.lda = g.x.stride(0), p.group_size = group_size;
  p.group_shift = __builtin_ctz(static_cast<unsigned>(group_size));  // 32, 64 or 128
  p.k_tiles = ceil_div(g.K, awq::kTileK);
  p.tiles_per_split = ceil_div(p.k_tiles, std::clamp(config.splits, 1, p.k_tiles));
  p.splits = ceil_div(p.k_tiles, p.tiles_per_split);
  torch::Tensor partial;
  if (p.splits > 1) {
    partial = torch::empty({p.splits, g.M, g.N}, g.x.options().dtype(at::kFloat));
    p.partial = partial.data_ptr<float>();
  }
  awq::FusedConfig launched = config;
  launched.splits = p.splits;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch_arch_path(path, [&](auto tag) {
    if (kernel == awq::LinearKernel::kTiled) {
      awq::launch_tiled<decltype(tag)>(p, launched, stream);
    } else {
      awq::launch_fused<decltype(tag)>(p, launched, stream);
    }
  });
  if (p.splits > 1) awq::launch_splitk_reduce(p.partial, p.bias, p.out, p.splits, p.M, p.N, stream);
}

// The fused or the tiled kernel on a checked GEMM: its plan, adjusted by adjust_plan (the forced-kernel
// ops' overrides; awq_linear keeps it), split_k > 0 replacing the split count, then run.
template <class AdjustPlan>
torch::Tensor run_kernel(const CheckedGemm& g, const torch::Tensor& qweight, const torch::Tensor& scale_zero,
                         int64_t group_size, const std::optional<torch::Tensor>& bias, ArchPath path,
                         awq::LinearKernel kernel, int64_t split_k, AdjustPlan&& adjust_plan) {
  auto out = torch::empty({g.M, g.N}, g.x.options());
  if (g.M == 0 || g.N == 0) return out;
  awq::FusedConfig config = adjust_plan(
      awq::plan_kernel(kernel, problem_of(g, group_size, path), awq::device_model(g.x.get_device(), path)));
  if (split_k > 0) config.splits = static_cast<int>(std::min<int64_t>(split_k, awq::kMaxSplits * 4));
  run_planned(g, qweight, scale_zero, group_size, bias, path, kernel, config, out);
  return out;
}

// W^T columns [n0, n0 + n) dequantised to fp16 [n, K]; n0 a multiple of the packed tile rows.
torch::Tensor dequantize_columns(const torch::Tensor& qweight, const torch::Tensor& scale_zero, int64_t group_size,
                                 int64_t n0, int64_t n) {
  const int64_t N = scale_zero.size(1), K = scale_zero.size(0) * group_size;
  auto out = torch::empty({n, K}, qweight.options().dtype(at::kHalf));
  const auto* tiles = reinterpret_cast<const uint4*>(qweight.data_ptr<int32_t>()) +
                      n0 / awq::kTileRows * qweight.size(1) * 2 * awq::kSlots;
  awq::launch_dequantize(tiles, reinterpret_cast<const __half2*>(scale_zero.data_ptr<int32_t>()) + n0,
                         reinterpret_cast<__half*>(out.data_ptr<at::Half>()), n, K, group_size, N,
                         c10::cuda::getCurrentCUDAStream());
  return out;
}

}  // namespace

torch::Tensor awq_gemm(const torch::Tensor& x, const torch::Tensor& qweight, const torch::Tensor& scale_zero,
                       int64_t group_size, const std::optional<torch::Tensor>& bias, const std::string& path,
                       int64_t warps, int64_t split_k, int64_t column_tiles) {
  const CheckedGemm g = check_gemm(x, qweight, scale_zero, group_size, bias, "awq_gemm");
  const c10::cuda::CUDAGuard guard(x.device());
  const ArchPath arch_path = resolve_arch_path_for(x, path, "awq_gemm");
  auto entry = [&](awq::FusedConfig config) {
    if (warps <= 0 && column_tiles <= 0) return config;
    // A value not given comes from the planned entry if that is built with the given one, else from
    // the first registry entry that is.
    TORCH_CHECK_VALUE(warps <= 64 && column_tiles <= 8, "awq_gemm: warps ", warps, " or column_tiles ", column_tiles,
                      " out of range (awq_registry.h)");
    if (warps > 0) config.warps = static_cast<int>(warps);
    if (column_tiles > 0) config.column_tiles = static_cast<int>(column_tiles);
    if (!awq::is_registered(config)) {
      for (const auto& e : awq::fused_registry()) {
        if (e.token_tiles == config.token_tiles && (warps <= 0 || e.warps == warps) &&
            (column_tiles <= 0 || e.column_tiles == column_tiles)) {
          config.warps = e.warps, config.column_tiles = e.column_tiles;
          break;
        }
      }
    }
    TORCH_CHECK_VALUE(awq::is_registered(config), "awq_gemm: no fused kernel with ", awq::describe(config),
                      " (the instantiations are listed in awq_registry.h)");
    return config;
  };
  return run_kernel(g, qweight, scale_zero, group_size, bias, arch_path, awq::LinearKernel::kFused, split_k, entry);
}

torch::Tensor awq_gemm_tiled(const torch::Tensor& x, const torch::Tensor& qweight, const torch::Tensor& scale_zero,
                             int64_t group_size, const std::optional<torch::Tensor>& bias, const std::string& path,
                             int64_t token_tiles, int64_t warps, int64_t split_k) {
  const CheckedGemm g = check_gemm(x, qweight, scale_zero, group_size, bias, "awq_gemm_tiled");
  const c10::cuda::CUDAGuard guard(x.device());
  const ArchPath arch_path = resolve_arch_path_for(x, path, "awq_gemm_tiled");
  auto entry = [&](awq::FusedConfig config) {
    if (token_tiles <= 0 && warps <= 0) return config;
    if (token_tiles > 0) config.token_tiles = static_cast<int>(std::min<int64_t>(token_tiles, 64));
    if (warps > 0) config.warps = static_cast<int>(std::min<int64_t>(warps, 64));
    const auto& entries = awq::tiled_registry();
    TORCH_CHECK_VALUE(std::any_of(entries.begin(), entries.end(),
                                  [&](const awq::FusedConfig& e) {
                                    return awq::is_instantiation(config, e.token_tiles, e.warps, 1);
                                  }),
                      "awq_gemm_tiled: no tiled kernel with ", awq::describe(config),
                      " (SM7X_AWQ_TILED_REGISTRY in csrc/quantization/awq/awq_registry.h lists them)");
    return config;
  };
  return run_kernel(g, qweight, scale_zero, group_size, bias, arch_path, awq::LinearKernel::kTiled, split_k, entry);
}

torch::Tensor awq_linear(const torch::Tensor& x, const torch::Tensor& qweight, const torch::Tensor& scale_zero,
                         int64_t group_size, const std::optional<torch::Tensor>& bias, const std::string& path) {
  const CheckedGemm g = check_gemm(x, qweight, scale_zero, group_size, bias, "awq_linear");
  const c10::cuda::CUDAGuard guard(x.device());
  const ArchPath arch_path = resolve_arch_path_for(x, path, "awq_linear");
  if (g.M == 0 || g.N == 0) return torch::empty({g.M, g.N}, x.options());
  const awq::LinearKernel kernel = awq::linear_kernel_for(g.M);
  if (kernel != awq::LinearKernel::kDequantGemm) {
    return run_kernel(g, qweight, scale_zero, group_size, bias, arch_path, kernel, 0,
                      [](const awq::FusedConfig& planned) { return planned; });
  }
  // Many rows: the GEMM is compute-bound, so dequantise column chunks and let cuBLAS multiply.
  const int64_t chunk = std::max<int64_t>(awq::kTileRows, kDequantChunkBytes / (2 * g.K) / awq::kTileRows * awq::kTileRows);
  if (chunk >= g.N) {
    const auto w = dequantize_columns(qweight, scale_zero, group_size, 0, g.N);
    return bias ? at::addmm(*bias, g.x, w.t()) : at::mm(g.x, w.t());
  }
  auto out = torch::empty({g.M, g.N}, x.options());
  for (int64_t n0 = 0; n0 < g.N; n0 += chunk) {
    const int64_t n = std::min(chunk, g.N - n0);
    const auto w = dequantize_columns(qweight, scale_zero, group_size, n0, n);
    auto columns = out.narrow(1, n0, n);  // cuBLAS writes the strided column block in place
    if (bias) {
      at::addmm_out(columns, bias->narrow(0, n0, n), g.x, w.t());
    } else {
      at::mm_out(columns, g.x, w.t());
    }
  }
  return out;
}

torch::Tensor awq_moe_gemm(const torch::Tensor& x, const torch::Tensor& qweight, const torch::Tensor& scale_zero,
                           const torch::Tensor& sorted_rows, const torch::Tensor& offsets,
                           const torch::Tensor& tile_expert, const torch::Tensor& tile_row, int64_t x_row_divisor,
                           int64_t group_size, int64_t rows_per_tile, const std::string& path,
                           int64_t column_tiles) {
  constexpr const char* op = "awq_moe_gemm";
  TORCH_CHECK_VALUE(qweight.dim() == 6 && scale_zero.dim() == 3 && qweight.size(0) == scale_zero.size(0) &&
                        qweight.is_contiguous() && scale_zero.is_contiguous(),
                    op, ": qweight and scale_zero must be contiguous stacks [experts, ...] of packed expert weights "
                    "(vllm_sm7x.quantization.awq_format.to_kernel_layout per expert), got ", qweight.sizes(), " and ",
                    scale_zero.sizes());
  const int64_t experts = qweight.size(0);
  TORCH_CHECK_VALUE(experts >= 1, op, ": no experts");
  // Every expert has the layout of expert 0 (same shape, contiguous stack).
  const CheckedGemm g = check_gemm(x, qweight.select(0, 0), scale_zero.select(0, 0), group_size, std::nullopt, op);
  for (const torch::Tensor* t : {&sorted_rows, &offsets, &tile_expert, &tile_row}) {
    TORCH_CHECK_VALUE(t->is_cuda() && t->device() == x.device() && t->scalar_type() == at::kInt &&
                          t->is_contiguous() && t->dim() == 1,
                      op, ": routing tensors must be contiguous int32 1-D tensors on ", x.device());
  }
  const int64_t rows = sorted_rows.numel();
  TORCH_CHECK_VALUE(offsets.numel() == experts + 1, op, ": offsets has ", offsets.numel(), " entries for ", experts,
                    " experts (want experts + 1, from moe_sort_rows)");
  TORCH_CHECK_VALUE(x_row_divisor >= 1 && rows == g.M * x_row_divisor, op, ": ", rows, " routed rows need x with ",
                    "rows * x_row_divisor of them (tokens x top-k with divisor top-k, or routed rows with 1); x has ",
                    g.M, " rows, divisor ", x_row_divisor);
  TORCH_CHECK_VALUE(is_grouped_rows_per_tile(rows_per_tile), op, ": rows_per_tile must be ",
                    grouped_rows_per_tile_names(), " (the grouped GEMM's row tiles), got ", rows_per_tile);
  // (rows, column tiles) per CTA name a grouped entry; its warps come from the registry.
  const auto& entries = awq::grouped_registry();
  const auto entry = std::find_if(entries.begin(), entries.end(), [&](const awq::FusedConfig& e) {
    return e.token_tiles * awq::kTokensPerMma == rows_per_tile && e.column_tiles == column_tiles;
  });
  TORCH_CHECK_VALUE(entry != entries.end(), op, ": no grouped kernel takes ", rows_per_tile, " rows per CTA with ",
                    column_tiles, " column tiles (SM7X_AWQ_GROUPED_REGISTRY and SM7X_AWQ_GROUPED_TILED_REGISTRY in ",
                    "csrc/quantization/awq/awq_registry.h list them)");
  const awq::FusedConfig config = *entry;
  const bool tiled = awq::is_grouped_tiled_entry(config);
  TORCH_CHECK_VALUE(tile_expert.numel() == tile_row.numel() &&
                        tile_expert.numel() >= expert_tiles_bound(rows, experts, rows_per_tile),
                    op, ": tile_expert / tile_row must come from moe_sort_rows with the same rows (", rows,
                    ") and rows_per_tile (", rows_per_tile, ")");
  const c10::cuda::CUDAGuard guard(x.device());
  const ArchPath arch_path = resolve_arch_path_for(x, path, op);
  auto out = torch::empty({rows, g.N}, x.options());
  if (rows == 0 || g.N == 0 || tile_expert.numel() == 0) return out;
  TORCH_CHECK_VALUE(tile_expert.numel() <= INT32_MAX, op, ": too many tiles");

  awq::GemmParams p{};
  p.x = reinterpret_cast<const __half*>(g.x.data_ptr<at::Half>());
  p.qweight = reinterpret_cast<const uint4*>(qweight.data_ptr<int32_t>());
  p.scale_zero = reinterpret_cast<const __half2*>(scale_zero.data_ptr<int32_t>());
  p.out = reinterpret_cast<__half*>(out.data_ptr<at::Half>());
  p.M = static_cast<int>(rows), p.N = g.N, p.K = g.K, p.lda = g.x.stride(0), p.group_size = group_size;
  p.group_shift = __builtin_ctz(static_cast<unsigned>(group_size));
  p.k_tiles = ceil_div(g.K, awq::kTileK);
  p.splits = 1, p.tiles_per_split = p.k_tiles;
  awq::GroupedRows grouped{};
  grouped.tile_expert = tile_expert.data_ptr<int>();
  grouped.tile_row = tile_row.data_ptr<int>();
  grouped.expert_end = offsets.data_ptr<int>() + 1;
  grouped.sorted_rows = sorted_rows.data_ptr<int>();
  grouped.x_row_divisor = static_cast<int>(x_row_divisor);
  grouped.expert_weight_stride = qweight.stride(0) / 4;  // int32 -> uint4
  grouped.expert_scale_stride = scale_zero.stride(0);    // int32 = half2
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch_arch_path(arch_path, [&](auto tag) {
    const int tiles = static_cast<int>(tile_expert.numel());
    if (tiled) {
      awq::launch_grouped_tiled<decltype(tag)>(p, grouped, tiles, config, stream);
    } else {
      awq::launch_grouped<decltype(tag)>(p, grouped, tiles, config, stream);
    }
  });
  return out;
}

torch::Tensor awq_dequantize(const torch::Tensor& qweight, const torch::Tensor& scale_zero, int64_t group_size) {
  TORCH_CHECK(scale_zero.dim() == 2, "awq_dequantize: scale_zero must be [K/G, N], got ", scale_zero.sizes());
  const int64_t K = scale_zero.size(0) * group_size;
  const int64_t N = check_packed_weight(qweight, scale_zero, group_size, K);
  const c10::cuda::CUDAGuard guard(qweight.device());
  return dequantize_columns(qweight, scale_zero, group_size, 0, N);
}

std::vector<int64_t> awq_plan(int64_t M, int64_t N, int64_t K, int64_t group_size, const std::string& path,
                              int64_t device) {
  check_group_size(group_size);
  TORCH_CHECK_VALUE(M >= 1 && N >= 1 && K >= 1, "awq_plan: M, N and K must be positive, got ", M, ", ", N, ", ", K);
  const ArchPath arch_path = resolve_arch_path(path, device_compute_capability(device));
  const awq::Problem problem{M, N, K, static_cast<int>(group_size), arch_path};
  const awq::LinearKernel kernel = awq::linear_kernel_for(M);
  if (kernel == awq::LinearKernel::kDequantGemm) return {0, 0, 0, awq_linear_kernel(M), 0};
  const awq::DeviceModel model = awq::device_model(device, arch_path);
  const auto c = awq::plan_kernel(kernel, problem, model);
  return {c.token_tiles, c.warps, c.splits, awq_linear_kernel(M), c.column_tiles};
}

std::vector<int64_t> awq_plan_model(int64_t M, int64_t N, int64_t K, int64_t group_size, int64_t sms,
                                    double bytes_per_us, double sm_mhz, std::vector<int64_t> ctas_per_sm) {
  check_group_size(group_size);
  TORCH_CHECK_VALUE(M >= 1 && N >= 1 && K >= 1 && sms >= 1 && bytes_per_us > 0 && sm_mhz > 0,
                    "awq_plan_model: M, N, K, sms, bytes_per_us and sm_mhz must be positive");
  const size_t entries = awq::fused_registry().size();
  TORCH_CHECK_VALUE(ctas_per_sm.size() == entries, "awq_plan_model: ctas_per_sm needs one value per registry entry (",
                    entries, ", in awq_fused_registry order), got ", ctas_per_sm.size());
  const awq::DeviceModel device{static_cast<int>(sms), bytes_per_us, sm_mhz,
                                [&](const awq::FusedConfig& c) {
                                  const int i = awq::registry_index(c);
                                  return i < 0 ? 1 : static_cast<int>(std::max<int64_t>(1, ctas_per_sm[i]));
                                },
                                [](const awq::FusedConfig&) { return 1; }};
  // The path only keys the tuning table, which the model alone does not read.
  const auto c = awq::model_plan({M, N, K, static_cast<int>(group_size), ArchPath::kSm75}, device);
  return {c.token_tiles, c.warps, c.splits, 0, c.column_tiles};
}

std::vector<int64_t> awq_plan_tiled_model(int64_t M, int64_t N, int64_t K, int64_t group_size, int64_t sms,
                                          double bytes_per_us, double sm_mhz, std::vector<int64_t> ctas_per_sm) {
  check_group_size(group_size);
  TORCH_CHECK_VALUE(M >= 1 && N >= 1 && K >= 1 && sms >= 1 && bytes_per_us > 0 && sm_mhz > 0,
                    "awq_plan_tiled_model: M, N, K, sms, bytes_per_us and sm_mhz must be positive");
  const auto& entries = awq::tiled_registry();
  TORCH_CHECK_VALUE(ctas_per_sm.size() == entries.size(), "awq_plan_tiled_model: ctas_per_sm needs one value per ",
                    "tiled registry entry (", entries.size(), ", in awq_tiled_registry order), got ",
                    ctas_per_sm.size());
  auto tiled_occupancy = [&](const awq::FusedConfig& c) {
    for (size_t i = 0; i < entries.size(); ++i) {
      if (awq::is_instantiation(c, entries[i].token_tiles, entries[i].warps, 1)) {
        return static_cast<int>(std::max<int64_t>(1, ctas_per_sm[i]));
      }
    }
    return 1;
  };
  const awq::DeviceModel device{static_cast<int>(sms), bytes_per_us, sm_mhz,
                                [](const awq::FusedConfig&) { return 1; }, tiled_occupancy};
  const auto c = awq::plan_tiled({M, N, K, static_cast<int>(group_size), ArchPath::kSm75}, device);
  return {c.token_tiles, c.warps, c.splits, 2, c.column_tiles};
}

std::vector<double> awq_device_model(const std::string& path, int64_t device) {
  const ArchPath arch_path = resolve_arch_path(path, device_compute_capability(device));
  const awq::DeviceModel model = awq::device_model(static_cast<int>(device), arch_path);
  std::vector<double> described{static_cast<double>(model.sms), model.bytes_per_us, model.sm_mhz};
  for (const auto& e : awq::fused_registry()) described.push_back(model.ctas_per_sm(e));
  return described;
}

namespace {

std::vector<int64_t> flattened(const std::vector<awq::FusedConfig>& entries) {
  std::vector<int64_t> flat;
  for (const auto& e : entries) flat.insert(flat.end(), {e.token_tiles, e.warps, e.column_tiles});
  return flat;
}

}  // namespace

std::vector<int64_t> awq_fused_registry() { return flattened(awq::fused_registry()); }

std::vector<int64_t> awq_grouped_registry() { return flattened(awq::grouped_registry()); }

std::vector<int64_t> awq_tiled_registry() { return flattened(awq::tiled_registry()); }

int64_t awq_linear_kernel(int64_t M) {
  TORCH_CHECK_VALUE(M >= 1, "awq_linear_kernel: M must be positive, got ", M);
  switch (awq::linear_kernel_for(M)) {
    case awq::LinearKernel::kFused: return 0;
    case awq::LinearKernel::kDequantGemm: return 1;
    default: return 2;
  }
}

int64_t awq_token_tiles(int64_t M) {
  TORCH_CHECK_VALUE(M >= 1, "awq_token_tiles: M must be positive, got ", M);
  return awq::token_tiles_for(M);
}

void awq_set_tuned(int64_t N, int64_t K, int64_t group_size, const std::string& path, int64_t m_bucket,
                   int64_t warps, int64_t split_k, int64_t column_tiles) {
  check_group_size(group_size);
  TORCH_CHECK_VALUE(m_bucket >= 1 && m_bucket <= awq::kFusedMaxRows && awq::m_bucket(m_bucket) == m_bucket,
                    "awq_set_tuned: m_bucket must be a power of two up to ", awq::kFusedMaxRows, ", got ", m_bucket);
  TORCH_CHECK_VALUE(split_k >= 1, "awq_set_tuned: split_k must be >= 1, got ", split_k);
  const ArchPath arch_path = path == "sm70" ? ArchPath::kSm70 : ArchPath::kSm75;
  TORCH_CHECK_VALUE(path == "sm70" || path == "sm75", "awq_set_tuned: path must be sm70 or sm75, got ", path);
  const awq::FusedConfig config{awq::token_tiles_for(m_bucket), static_cast<int>(warps), static_cast<int>(split_k),
                                static_cast<int>(column_tiles)};
  TORCH_CHECK_VALUE(awq::is_registered(config), "awq_set_tuned: no fused kernel with ", awq::describe(config),
                    " (awq_registry.h)");
  awq::set_tuned({m_bucket, N, K, static_cast<int>(group_size), arch_path}, config);
}

void awq_clear_tuned() { awq::clear_tuned(); }

}  // namespace sm7x
