// Torch op of the MoE routing kernel: input checks that name the problem, then launch.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/all.h>

#include "moe/moe_routing.h"
#include "ops.h"

namespace sm7x {

void moe_topk_softmax(torch::Tensor& topk_weights, torch::Tensor& topk_ids, torch::Tensor& token_expert_indices,
                      const torch::Tensor& gating_output, bool renormalize) {
  constexpr const char* op = "moe_topk_softmax";
  for (const torch::Tensor* t : {&topk_weights, &topk_ids, &token_expert_indices}) {
    TORCH_CHECK_VALUE(t->is_cuda() && t->device() == gating_output.device(), op, ": every tensor must be on ",
                      gating_output.device());
  }
  TORCH_CHECK_VALUE(gating_output.dim() == 2 && gating_output.stride(1) == 1, op,
                    ": gating_output must be [tokens, experts] with contiguous rows, got ", gating_output.sizes());
  GatingDtype dtype;
  switch (gating_output.scalar_type()) {
    case at::kHalf: dtype = GatingDtype::kFloat16; break;
    case at::kBFloat16: dtype = GatingDtype::kBFloat16; break;
    case at::kFloat: dtype = GatingDtype::kFloat32; break;
    default: TORCH_CHECK_VALUE(false, op, ": gating_output must be float16, bfloat16 or float32, got ",
                               gating_output.scalar_type());
  }
  const int64_t tokens = gating_output.size(0), experts = gating_output.size(1), k = topk_weights.size(-1);
  TORCH_CHECK_VALUE(experts >= 1 && experts <= kMaxRoutedExperts, op, ": ", experts,
                    " experts; the routing kernel takes 1 to ", kMaxRoutedExperts);
  TORCH_CHECK_VALUE(k >= 1 && k <= std::min<int64_t>(kMaxTopK, experts), op, ": top-k ", k, " must be 1 to ",
                    std::min<int64_t>(kMaxTopK, experts), " for ", experts, " experts");
  TORCH_CHECK_VALUE(topk_weights.scalar_type() == at::kFloat && topk_ids.scalar_type() == at::kInt &&
                        token_expert_indices.scalar_type() == at::kInt,
                    op, ": topk_weights must be float32, topk_ids and token_expert_indices int32");
  for (const torch::Tensor* t : {&topk_weights, &topk_ids, &token_expert_indices}) {
    TORCH_CHECK_VALUE(t->dim() == 2 && t->size(0) == tokens && t->size(1) == k && t->is_contiguous(), op,
                      ": the outputs must be contiguous [tokens = ", tokens, ", k = ", k, "], got ", t->sizes());
  }
  TORCH_CHECK_VALUE(tokens * k <= INT32_MAX, op, ": too many tokens for int32 token_expert_indices");
  TopkSoftmaxParams p{};
  p.gating = gating_output.data_ptr();
  p.gating_stride = gating_output.stride(0);
  p.weights = topk_weights.data_ptr<float>();
  p.ids = topk_ids.data_ptr<int>();
  p.token_expert = token_expert_indices.data_ptr<int>();
  p.tokens = static_cast<int>(tokens), p.experts = static_cast<int>(experts), p.k = static_cast<int>(k);
  p.renormalize = renormalize;
  const c10::cuda::CUDAGuard guard(gating_output.device());
  launch_topk_softmax(p, dtype, c10::cuda::getCurrentCUDAStream());
}

std::vector<torch::Tensor> moe_sort_rows(const torch::Tensor& topk_ids, int64_t num_experts, int64_t rows_per_tile) {
  constexpr const char* op = "moe_sort_rows";
  TORCH_CHECK_VALUE(topk_ids.is_cuda() && topk_ids.scalar_type() == at::kInt && topk_ids.is_contiguous(), op,
                    ": topk_ids must be a contiguous int32 CUDA tensor [tokens, k]");
  TORCH_CHECK_VALUE(num_experts >= 1 && num_experts <= kMaxRoutedExperts, op, ": ", num_experts,
                    " experts; the sort takes 1 to ", kMaxRoutedExperts);
  TORCH_CHECK_VALUE(topk_ids.numel() <= kMaxSortedRows, op, ": ", topk_ids.numel(),
                    " routed rows in one call; at most ", kMaxSortedRows, " (split the batch)");
  TORCH_CHECK_VALUE(rows_per_tile == 8 || rows_per_tile == 16, op, ": rows_per_tile must be 8 or 16, got ",
                    rows_per_tile);
  const int64_t rows = topk_ids.numel();
  const int64_t max_tiles = expert_tiles_bound(rows, num_experts, rows_per_tile);
  const auto options = topk_ids.options();
  torch::Tensor offsets = torch::empty({num_experts + 1}, options);
  torch::Tensor sorted_rows = torch::empty({rows}, options);
  torch::Tensor tile_expert = torch::empty({max_tiles}, options);
  torch::Tensor tile_row = torch::empty({max_tiles}, options);
  SortRowsParams p{};
  p.topk_ids = topk_ids.data_ptr<int>();
  p.offsets = offsets.data_ptr<int>();
  p.sorted_rows = sorted_rows.data_ptr<int>();
  p.tile_expert = tile_expert.data_ptr<int>();
  p.tile_row = tile_row.data_ptr<int>();
  p.rows = static_cast<int>(rows), p.experts = static_cast<int>(num_experts);
  p.rows_per_tile = static_cast<int>(rows_per_tile), p.max_tiles = static_cast<int>(max_tiles);
  const c10::cuda::CUDAGuard guard(topk_ids.device());
  launch_sort_rows(p, c10::cuda::getCurrentCUDAStream());
  return {offsets, sorted_rows, tile_expert, tile_row};
}

torch::Tensor moe_combine(const torch::Tensor& down, const torch::Tensor& topk_weights, const torch::Tensor& topk_ids,
                          int64_t num_experts) {
  constexpr const char* op = "moe_combine";
  TORCH_CHECK_VALUE(topk_ids.dim() == 2 && topk_weights.sizes() == topk_ids.sizes(), op,
                    ": topk_weights and topk_ids must both be [tokens, k], got ", topk_weights.sizes(), " and ",
                    topk_ids.sizes());
  const int64_t tokens = topk_ids.size(0), k = topk_ids.size(1);
  TORCH_CHECK_VALUE(down.dim() == 2 && down.size(0) == tokens * k, op, ": down must be [tokens * k = ", tokens * k,
                    ", hidden], got ", down.sizes());
  const int64_t hidden = down.size(1);
  TORCH_CHECK_VALUE(hidden % 8 == 0, op, ": hidden size ", hidden, " must be a multiple of 8");
  TORCH_CHECK_VALUE(down.scalar_type() == at::kHalf && topk_weights.scalar_type() == at::kFloat &&
                        topk_ids.scalar_type() == at::kInt,
                    op, ": down must be float16, topk_weights float32, topk_ids int32");
  for (const torch::Tensor* t : {&down, &topk_weights, &topk_ids}) {
    TORCH_CHECK_VALUE(t->is_cuda() && t->device() == down.device() && t->is_contiguous(), op,
                      ": every tensor must be contiguous and on ", down.device());
  }
  TORCH_CHECK_VALUE(tokens <= INT32_MAX && hidden <= INT32_MAX, op, ": too many tokens or columns");
  auto out = torch::empty({tokens, hidden}, down.options());
  CombineParams p{};
  p.down = reinterpret_cast<const __half*>(down.data_ptr<at::Half>());
  p.weights = topk_weights.data_ptr<float>();
  p.ids = topk_ids.data_ptr<int>();
  p.out = reinterpret_cast<__half*>(out.data_ptr<at::Half>());
  p.tokens = static_cast<int>(tokens), p.k = static_cast<int>(k), p.hidden = static_cast<int>(hidden);
  p.experts = static_cast<int>(num_experts);
  const c10::cuda::CUDAGuard guard(down.device());
  launch_combine(p, c10::cuda::getCurrentCUDAStream());
  return out;
}

torch::Tensor moe_silu_mul(const torch::Tensor& gate_up) {
  constexpr const char* op = "moe_silu_mul";
  TORCH_CHECK_VALUE(gate_up.is_cuda() && gate_up.scalar_type() == at::kHalf && gate_up.dim() == 2 &&
                        gate_up.is_contiguous(),
                    op, ": gate_up must be a contiguous float16 CUDA tensor [rows, 2 * width], got ",
                    gate_up.sizes());
  const int64_t rows = gate_up.size(0), width = gate_up.size(1) / 2;
  TORCH_CHECK_VALUE(gate_up.size(1) == 2 * width && width % 8 == 0, op, ": gate_up has ", gate_up.size(1),
                    " columns; it must be 2 x a multiple of 8 (gate, then up)");
  TORCH_CHECK_VALUE(rows <= INT32_MAX, op, ": too many rows");
  auto out = torch::empty({rows, width}, gate_up.options());
  SiluMulParams p{};
  p.gate_up = reinterpret_cast<const __half*>(gate_up.data_ptr<at::Half>());
  p.out = reinterpret_cast<__half*>(out.data_ptr<at::Half>());
  p.rows = static_cast<int>(rows), p.width = static_cast<int>(width);
  const c10::cuda::CUDAGuard guard(gate_up.device());
  launch_silu_mul(p, c10::cuda::getCurrentCUDAStream());
  return out;
}

}  // namespace sm7x
