// Torch op of the MoE routing kernel: input checks that name the problem, then launch.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/all.h>

#include "moe/awq_moe_decode.h"
#include "moe/moe_routing.h"
#include "ops.h"

namespace sm7x {

namespace {

GatingDtype gating_dtype(const torch::Tensor& logits, const char* op) {
  switch (logits.scalar_type()) {
    case at::kHalf: return GatingDtype::kFloat16;
    case at::kBFloat16: return GatingDtype::kBFloat16;
    case at::kFloat: return GatingDtype::kFloat32;
    default: TORCH_CHECK_VALUE(false, op, ": router logits must be float16, bfloat16 or float32, got ",
                               logits.scalar_type());
  }
}

void check_router_shape(int64_t experts, int64_t k, const char* op) {
  TORCH_CHECK_VALUE(experts >= 1 && experts <= kMaxRoutedExperts, op, ": ", experts,
                    " experts; the routing kernels take 1 to ", kMaxRoutedExperts);
  TORCH_CHECK_VALUE(k >= 1 && k <= std::min<int64_t>(kMaxTopK, experts), op, ": top-k ", k, " must be 1 to ",
                    std::min<int64_t>(kMaxTopK, experts), " for ", experts, " experts");
}

}  // namespace

void moe_topk_softmax(torch::Tensor& topk_weights, torch::Tensor& topk_ids, torch::Tensor& token_expert_indices,
                      const torch::Tensor& gating_output, bool renormalize) {
  constexpr const char* op = "moe_topk_softmax";
  for (const torch::Tensor* t : {&topk_weights, &topk_ids, &token_expert_indices}) {
    TORCH_CHECK_VALUE(t->is_cuda() && t->device() == gating_output.device(), op, ": every tensor must be on ",
                      gating_output.device());
  }
  TORCH_CHECK_VALUE(gating_output.dim() == 2 && gating_output.stride(1) == 1, op,
                    ": gating_output must be [tokens, experts] with contiguous rows, got ", gating_output.sizes());
  const GatingDtype dtype = gating_dtype(gating_output, op);
  const int64_t tokens = gating_output.size(0), experts = gating_output.size(1), k = topk_weights.size(-1);
  check_router_shape(experts, k, op);
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
  TORCH_CHECK_VALUE(is_grouped_rows_per_tile(rows_per_tile), op, ": rows_per_tile must be ",
                    grouped_rows_per_tile_names(), " (the grouped GEMM's row tiles), got ", rows_per_tile);
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

namespace {

// Packed expert weights of one projection K -> N: qweight [E, N/16, ceil(K/128), 2, 32, 4] int32 and
// scale_zero [E, K/G, N] int32 (half2), contiguous (experts_to_kernel_layout).
void check_expert_stack(const torch::Tensor& qweight, const torch::Tensor& scale_zero, int64_t experts, int64_t K,
                        int64_t N, int64_t group_size, const char* name, const char* op) {
  const std::vector<int64_t> packed{experts, N / 16, (K + 127) / 128, 2, 32, 4};
  TORCH_CHECK_VALUE(qweight.scalar_type() == at::kInt && scale_zero.scalar_type() == at::kInt &&
                        qweight.is_contiguous() && scale_zero.is_contiguous() && qweight.sizes() == packed &&
                        scale_zero.sizes() == c10::IntArrayRef({experts, K / group_size, N}),
                    op, ": ", name, " must be contiguous int32 stacks qweight ", c10::IntArrayRef(packed),
                    " and scale_zero [", experts, ", ", K / group_size, ", ", N,
                    "] (experts_to_kernel_layout), got ", qweight.sizes(), " and ", scale_zero.sizes());
}

// Checks and parameters the two decode-layer ops share (everything but the routing); act and out are
// allocated here.
AwqMoeDecodeParams decode_layer_params(const char* op, const torch::Tensor& x, const torch::Tensor& w13_qweight,
                                       const torch::Tensor& w13_scale_zero, const torch::Tensor& w2_qweight,
                                       const torch::Tensor& w2_scale_zero, int64_t k, int64_t group_size,
                                       torch::Tensor& act, torch::Tensor& out) {
  TORCH_CHECK_VALUE(group_size == 32 || group_size == 64 || group_size == 128, op, ": group size ", group_size,
                    " is not supported (32, 64 or 128)");
  TORCH_CHECK_VALUE(x.is_cuda() && x.scalar_type() == at::kHalf && x.dim() == 2 && x.is_contiguous() &&
                        reinterpret_cast<uintptr_t>(x.data_ptr()) % 16 == 0,
                    op, ": x must be a contiguous, 16-byte aligned float16 CUDA tensor [tokens, hidden], got ",
                    x.sizes());
  TORCH_CHECK_VALUE(w13_scale_zero.dim() == 3 && w2_scale_zero.dim() == 3, op,
                    ": scale_zero stacks must be [experts, K/G, N], got ", w13_scale_zero.sizes(), " and ",
                    w2_scale_zero.sizes());
  const int64_t tokens = x.size(0), hidden = x.size(1), experts = w13_scale_zero.size(0);
  const int64_t inter = w13_scale_zero.size(2) / 2;
  TORCH_CHECK_VALUE(hidden % group_size == 0 && inter % group_size == 0 && inter % 16 == 0, op, ": hidden ", hidden,
                    " and expert width ", inter, " must be multiples of the group size ", group_size);
  check_expert_stack(w13_qweight, w13_scale_zero, experts, hidden, 2 * inter, group_size, "w13 (hidden -> 2 x width)",
                     op);
  check_expert_stack(w2_qweight, w2_scale_zero, experts, inter, hidden, group_size, "w2 (width -> hidden)", op);
  for (const torch::Tensor* t : {&w13_qweight, &w13_scale_zero, &w2_qweight, &w2_scale_zero}) {
    TORCH_CHECK_VALUE(t->is_cuda() && t->device() == x.device(), op, ": every tensor must be on ", x.device());
  }
  TORCH_CHECK_VALUE(k >= 1 && k <= kMaxTopK, op, ": top-k ", k, " must be 1 to ", kMaxTopK,
                    " (the routing kernels' limit: one lane per chosen expert)");
  TORCH_CHECK_VALUE(tokens * k <= INT32_MAX, op, ": too many routed rows");
  act = torch::empty({tokens * k, inter}, x.options());
  out = torch::empty({tokens, hidden}, x.options());
  AwqMoeDecodeParams p{};
  p.x = reinterpret_cast<const __half*>(x.data_ptr<at::Half>());
  p.w13 = reinterpret_cast<const uint4*>(w13_qweight.data_ptr<int32_t>());
  p.w13_sz = reinterpret_cast<const __half2*>(w13_scale_zero.data_ptr<int32_t>());
  p.w2 = reinterpret_cast<const uint4*>(w2_qweight.data_ptr<int32_t>());
  p.w2_sz = reinterpret_cast<const __half2*>(w2_scale_zero.data_ptr<int32_t>());
  p.w13_stride = w13_qweight.stride(0) / 4, p.w13_sz_stride = w13_scale_zero.stride(0);
  p.w2_stride = w2_qweight.stride(0) / 4, p.w2_sz_stride = w2_scale_zero.stride(0);
  p.act = reinterpret_cast<__half*>(act.data_ptr<at::Half>());
  p.out = reinterpret_cast<__half*>(out.data_ptr<at::Half>());
  p.tokens = static_cast<int>(tokens), p.k = static_cast<int>(k), p.experts = static_cast<int>(experts);
  p.hidden = static_cast<int>(hidden), p.inter = static_cast<int>(inter);
  p.group_shift = __builtin_ctz(static_cast<unsigned>(group_size));
  return p;
}

}  // namespace

torch::Tensor awq_moe_decode(const torch::Tensor& x, const torch::Tensor& w13_qweight,
                             const torch::Tensor& w13_scale_zero, const torch::Tensor& w2_qweight,
                             const torch::Tensor& w2_scale_zero, const torch::Tensor& topk_weights,
                             const torch::Tensor& topk_ids, int64_t group_size) {
  constexpr const char* op = "awq_moe_decode";
  TORCH_CHECK_VALUE(topk_ids.dim() == 2 && topk_ids.size(0) == x.size(0) && topk_weights.sizes() == topk_ids.sizes() &&
                        topk_ids.scalar_type() == at::kInt && topk_weights.scalar_type() == at::kFloat &&
                        topk_ids.is_contiguous() && topk_weights.is_contiguous() && topk_ids.is_cuda() &&
                        topk_weights.is_cuda() && topk_ids.device() == x.device() &&
                        topk_weights.device() == x.device(),
                    op, ": topk_weights (float32) and topk_ids (int32) must be contiguous [tokens = ", x.size(0),
                    ", k] on ", x.device(), ", got ", topk_weights.sizes(), " and ", topk_ids.sizes());
  torch::Tensor act, out;
  AwqMoeDecodeParams p = decode_layer_params(op, x, w13_qweight, w13_scale_zero, w2_qweight, w2_scale_zero,
                                             topk_ids.size(1), group_size, act, out);
  p.weights = topk_weights.data_ptr<float>();
  p.ids = topk_ids.data_ptr<int>();
  const c10::cuda::CUDAGuard guard(x.device());
  launch_awq_moe_decode(p, c10::cuda::getCurrentCUDAStream());
  return out;
}

std::vector<torch::Tensor> awq_moe_decode_routed(const torch::Tensor& x, const torch::Tensor& w13_qweight,
                                                 const torch::Tensor& w13_scale_zero, const torch::Tensor& w2_qweight,
                                                 const torch::Tensor& w2_scale_zero,
                                                 const torch::Tensor& router_logits, int64_t top_k, bool renormalize,
                                                 int64_t group_size) {
  constexpr const char* op = "awq_moe_decode_routed";
  TORCH_CHECK_VALUE(router_logits.is_cuda() && router_logits.device() == x.device() && router_logits.dim() == 2 &&
                        router_logits.size(0) == x.size(0) && router_logits.stride(1) == 1,
                    op, ": router_logits must be [tokens = ", x.size(0), ", experts] with contiguous rows on ",
                    x.device(), ", got ", router_logits.sizes());
  const GatingDtype dtype = gating_dtype(router_logits, op);
  const int64_t experts = router_logits.size(1);
  check_router_shape(experts, top_k, op);
  torch::Tensor act, out;
  AwqMoeDecodeParams p = decode_layer_params(op, x, w13_qweight, w13_scale_zero, w2_qweight, w2_scale_zero, top_k,
                                             group_size, act, out);
  TORCH_CHECK_VALUE(p.experts == experts, op, ": the router scores ", experts, " experts and the layer holds ",
                    p.experts, "; routing in the kernel needs every expert on this rank (no expert parallel)");
  auto topk_weights = torch::empty({x.size(0), top_k}, x.options().dtype(at::kFloat));
  auto topk_ids = torch::empty({x.size(0), top_k}, x.options().dtype(at::kInt));
  p.weights = topk_weights.data_ptr<float>();
  p.ids = topk_ids.data_ptr<int>();
  p.router_logits = router_logits.data_ptr();
  p.logits_stride = router_logits.stride(0);
  p.logits_dtype = dtype;
  p.renormalize = renormalize;
  const c10::cuda::CUDAGuard guard(x.device());
  launch_awq_moe_decode(p, c10::cuda::getCurrentCUDAStream());
  return {out, topk_weights, topk_ids};
}

}  // namespace sm7x
