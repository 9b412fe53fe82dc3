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

std::vector<torch::Tensor> moe_sort_rows(const torch::Tensor& topk_ids, int64_t num_experts) {
  constexpr const char* op = "moe_sort_rows";
  TORCH_CHECK_VALUE(topk_ids.is_cuda() && topk_ids.scalar_type() == at::kInt && topk_ids.is_contiguous(), op,
                    ": topk_ids must be a contiguous int32 CUDA tensor [tokens, k]");
  TORCH_CHECK_VALUE(num_experts >= 1 && num_experts <= kMaxRoutedExperts, op, ": ", num_experts,
                    " experts; the sort takes 1 to ", kMaxRoutedExperts);
  TORCH_CHECK_VALUE(topk_ids.numel() <= kMaxSortedRows, op, ": ", topk_ids.numel(),
                    " routed rows in one call; at most ", kMaxSortedRows, " (split the batch)");
  const auto options = topk_ids.options();
  torch::Tensor offsets = torch::empty({num_experts + 1}, options);
  torch::Tensor sorted_rows = torch::empty({topk_ids.numel()}, options);
  torch::Tensor active_experts = torch::empty({num_experts}, options);
  torch::Tensor active_count = torch::empty({1}, options);
  SortRowsParams p{};
  p.topk_ids = topk_ids.data_ptr<int>();
  p.offsets = offsets.data_ptr<int>();
  p.sorted_rows = sorted_rows.data_ptr<int>();
  p.active_experts = active_experts.data_ptr<int>();
  p.active_count = active_count.data_ptr<int>();
  p.rows = static_cast<int>(topk_ids.numel()), p.experts = static_cast<int>(num_experts);
  const c10::cuda::CUDAGuard guard(topk_ids.device());
  launch_sort_rows(p, c10::cuda::getCurrentCUDAStream());
  return {offsets, sorted_rows, active_experts, active_count};
}

std::vector<torch::Tensor> moe_expert_tiles(const torch::Tensor& offsets, int64_t rows, int64_t rows_per_tile) {
  constexpr const char* op = "moe_expert_tiles";
  TORCH_CHECK_VALUE(offsets.is_cuda() && offsets.scalar_type() == at::kInt && offsets.is_contiguous() &&
                        offsets.dim() == 1 && offsets.numel() >= 2 && offsets.numel() - 1 <= kMaxRoutedExperts,
                    op, ": offsets must be moe_sort_rows' contiguous int32 [experts + 1], got ", offsets.sizes());
  TORCH_CHECK_VALUE(rows_per_tile == 8 || rows_per_tile == 16, op, ": rows_per_tile must be 8 or 16, got ",
                    rows_per_tile);
  TORCH_CHECK_VALUE(rows >= 0 && rows <= kMaxSortedRows, op, ": rows must be 0 to ", kMaxSortedRows, ", got ", rows);
  const int64_t experts = offsets.numel() - 1;
  const int64_t max_tiles = expert_tiles_bound(rows, experts, rows_per_tile);
  torch::Tensor tile_expert = torch::empty({max_tiles}, offsets.options());
  torch::Tensor tile_row = torch::empty({max_tiles}, offsets.options());
  if (max_tiles == 0) return {tile_expert, tile_row};
  ExpertTilesParams p{};
  p.offsets = offsets.data_ptr<int>();
  p.tile_expert = tile_expert.data_ptr<int>();
  p.tile_row = tile_row.data_ptr<int>();
  p.experts = static_cast<int>(experts), p.rows_per_tile = static_cast<int>(rows_per_tile);
  p.max_tiles = static_cast<int>(max_tiles);
  const c10::cuda::CUDAGuard guard(offsets.device());
  launch_expert_tiles(p, c10::cuda::getCurrentCUDAStream());
  return {tile_expert, tile_row};
}

}  // namespace sm7x
