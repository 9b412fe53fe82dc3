// Torch ops of the Gated DeltaNet kernels (decode, MTP verification, chunked prefill): input checks that
// name the problem, then launch.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/all.h>

#include "gdn/gdn_conv_prefill.h"
#include "gdn/gdn_decode.h"
#include "gdn/gdn_prefill.h"
#include "ops.h"

namespace sm7x {
namespace {

using TensorPtrs = std::initializer_list<const torch::Tensor*>;

void check_cuda_on(const torch::Tensor& t, const torch::Tensor& like, const char* op, const char* name) {
  TORCH_CHECK_VALUE(t.is_cuda() && t.device() == like.device(), op, ": ", name, " must be on ", like.device());
}

void check_half(const torch::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_VALUE(t.scalar_type() == at::kHalf, op, ": ", name, " must be float16 (SM70/SM75 serve fp16 models; "
                    "--dtype float16), got ", t.scalar_type());
}

// The sequences of a call: one token each (state_indices [tokens], any stride: vLLM passes
// block_table[:, 0], whose stride is the table's width with MTP), or cu_seqlens [seqs + 1] with
// state_indices [seqs, 1 + draft tokens] (rows contiguous) and, for MTP, num_accepted [seqs].
GdnSequences sequences_of(const torch::Tensor& like, int64_t tokens, const torch::Tensor& state_indices,
                          const std::optional<torch::Tensor>& cu_seqlens,
                          const std::optional<torch::Tensor>& num_accepted, const char* op) {
  check_cuda_on(state_indices, like, op, "state_indices");
  const bool rows_contiguous = state_indices.dim() == 1 || state_indices.size(1) == 1 || state_indices.stride(1) == 1;
  TORCH_CHECK_VALUE(state_indices.scalar_type() == at::kInt && state_indices.dim() >= 1 && state_indices.dim() <= 2 &&
                        rows_contiguous,
                    op, ": state_indices must be int32 [seqs] or [seqs, positions] with contiguous rows");
  GdnSequences s{};
  s.seqs = state_indices.size(0);
  s.indices_stride = state_indices.stride(0);
  s.positions = cu_seqlens ? state_indices.size(-1) : 1;
  s.state_indices = state_indices.data_ptr<int>();
  TORCH_CHECK_VALUE(!num_accepted || cu_seqlens, op, ": num_accepted (MTP) needs cu_seqlens");
  if (cu_seqlens) {
    TORCH_CHECK_VALUE(state_indices.dim() == 2 && s.positions >= 1, op,
                      ": with cu_seqlens, state_indices must be [seqs, positions >= 1] (one block per token "
                      "position of a sequence), got ", state_indices.sizes());
    check_cuda_on(*cu_seqlens, like, op, "cu_seqlens");
    TORCH_CHECK_VALUE(cu_seqlens->scalar_type() == at::kInt && cu_seqlens->dim() == 1 &&
                          cu_seqlens->size(0) == s.seqs + 1 && cu_seqlens->is_contiguous(),
                      op, ": cu_seqlens must be a contiguous int32 [seqs + 1 = ", s.seqs + 1, "] tensor");
    s.cu_seqlens = cu_seqlens->data_ptr<int>();
  } else {
    TORCH_CHECK_VALUE(s.seqs == tokens, op, ": without cu_seqlens every token is a sequence: state_indices has ",
                      s.seqs, " rows for ", tokens, " tokens");
  }
  if (num_accepted) {
    check_cuda_on(*num_accepted, like, op, "num_accepted");
    TORCH_CHECK_VALUE(num_accepted->scalar_type() == at::kInt && num_accepted->dim() == 1 &&
                          num_accepted->size(0) == s.seqs && num_accepted->is_contiguous(),
                      op, ": num_accepted must be a contiguous int32 [seqs = ", s.seqs, "] tensor");
    s.num_accepted = num_accepted->data_ptr<int>();
  }
  return s;
}

// The conv weight [dim, width <= 8], optional bias [dim] and conv state [blocks, dim, >= width - 1] of
// both conv ops (dtypes and devices checked by the caller for the first three); returns width.
int64_t check_conv_weights(const torch::Tensor& x, const torch::Tensor& weight,
                           const std::optional<torch::Tensor>& bias, const torch::Tensor& conv_state, int64_t dim,
                           const char* op) {
  TORCH_CHECK_VALUE(weight.dim() == 2 && weight.size(0) == dim && weight.is_contiguous() && weight.size(1) >= 1 &&
                        weight.size(1) <= 8,
                    op, ": weight must be contiguous [dim = ", dim, ", width <= 8], got ", weight.sizes());
  const int64_t width = weight.size(1);
  TORCH_CHECK_VALUE(conv_state.dim() == 3 && conv_state.size(1) == dim && conv_state.size(2) >= width - 1, op,
                    ": conv_state must be [blocks, dim = ", dim, ", >= width - 1 = ", width - 1, "], got ",
                    conv_state.sizes());
  if (bias) {
    check_cuda_on(*bias, x, op, "bias");
    check_half(*bias, op, "bias");
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == dim && bias->is_contiguous(), op,
                      ": bias must be contiguous [dim]");
  }
  return width;
}

}  // namespace

void gdn_conv_update(torch::Tensor& x, torch::Tensor& conv_state, const torch::Tensor& weight,
                     const std::optional<torch::Tensor>& bias, const torch::Tensor& state_indices, bool silu,
                     const std::optional<torch::Tensor>& cu_seqlens,
                     const std::optional<torch::Tensor>& num_accepted) {
  constexpr const char* op = "gdn_conv_update";
  for (const torch::Tensor* t : TensorPtrs{&conv_state, &weight}) check_cuda_on(*t, x, op, "every tensor");
  check_half(x, op, "x");
  check_half(conv_state, op, "conv_state");
  check_half(weight, op, "weight");
  TORCH_CHECK_VALUE(x.dim() == 2 && x.stride(1) == 1, op, ": x must be [tokens, dim] with contiguous rows");
  const int64_t tokens = x.size(0), dim = x.size(1);
  const int64_t width = check_conv_weights(x, weight, bias, conv_state, dim, op);
  GdnConvUpdateParams p{};
  p.seq = sequences_of(x, tokens, state_indices, cu_seqlens, num_accepted, op);
  // A window starts at most positions - 1 columns in and the inputs are written after width - 2 kept ones.
  TORCH_CHECK_VALUE(conv_state.size(2) >= width - 2 + p.seq.positions, op, ": conv_state holds ",
                    conv_state.size(2), " positions; sequences of up to ", p.seq.positions,
                    " tokens need width - 2 + that = ", width - 2 + p.seq.positions);
  const c10::cuda::CUDAGuard guard(x.device());
  p.x = reinterpret_cast<__half*>(x.data_ptr<at::Half>());
  p.conv_state = reinterpret_cast<__half*>(conv_state.data_ptr<at::Half>());
  p.weight = reinterpret_cast<const __half*>(weight.data_ptr<at::Half>());
  p.bias = bias ? reinterpret_cast<const __half*>(bias->data_ptr<at::Half>()) : nullptr;
  p.x_stride = x.stride(0);
  p.state_block_stride = conv_state.stride(0), p.state_dim_stride = conv_state.stride(1);
  p.state_pos_stride = conv_state.stride(2);
  p.dim = dim, p.width = width, p.silu = silu;
  launch_gdn_conv_update(p, c10::cuda::getCurrentCUDAStream());
}

torch::Tensor gdn_conv_prefill(const torch::Tensor& x, const torch::Tensor& weight,
                               const std::optional<torch::Tensor>& bias, torch::Tensor& conv_state,
                               const torch::Tensor& query_start_loc, const std::optional<torch::Tensor>& cache_indices,
                               const std::optional<torch::Tensor>& has_initial_state, bool silu, int64_t pad_slot_id,
                               int64_t null_block_id) {
  constexpr const char* op = "gdn_conv_prefill";
  for (const torch::Tensor* t : TensorPtrs{&weight, &conv_state}) check_cuda_on(*t, x, op, "every tensor");
  check_half(x, op, "x");
  check_half(weight, op, "weight");
  check_half(conv_state, op, "conv_state");
  TORCH_CHECK_VALUE(x.dim() == 2, op, ": x must be [dim, tokens] (vLLM passes mixed_qkv transposed), got ",
                    x.sizes());
  const int64_t dim = x.size(0), tokens = x.size(1);
  const int64_t width = check_conv_weights(x, weight, bias, conv_state, dim, op);
  check_cuda_on(query_start_loc, x, op, "query_start_loc");
  TORCH_CHECK_VALUE(query_start_loc.scalar_type() == at::kInt && query_start_loc.dim() == 1 &&
                        query_start_loc.size(0) >= 2 && query_start_loc.is_contiguous(),
                    op, ": query_start_loc must be a contiguous int32 [seqs + 1] tensor");
  const int64_t seqs = query_start_loc.size(0) - 1;
  if (cache_indices) {
    check_cuda_on(*cache_indices, x, op, "cache_indices");
    TORCH_CHECK_VALUE(cache_indices->scalar_type() == at::kInt && cache_indices->dim() >= 1 &&
                          cache_indices->dim() <= 2 && cache_indices->size(0) >= seqs &&
                          (cache_indices->dim() == 1 || cache_indices->size(1) >= 1),
                      op, ": cache_indices must be int32 [seqs = ", seqs, "] or [seqs, k >= 1] (any strides)");
  }
  if (has_initial_state) {
    check_cuda_on(*has_initial_state, x, op, "has_initial_state");
    TORCH_CHECK_VALUE(has_initial_state->scalar_type() == at::kBool && has_initial_state->dim() == 1 &&
                          has_initial_state->size(0) >= seqs && has_initial_state->is_contiguous(),
                      op, ": has_initial_state must be a contiguous bool [seqs = ", seqs, "] tensor");
  }
  for (int64_t id : {pad_slot_id, null_block_id}) {
    TORCH_CHECK_VALUE(id >= INT32_MIN && id <= INT32_MAX, op, ": padding block ids must fit int32, got ", id);
  }
  TORCH_CHECK_VALUE(tokens <= INT32_MAX, op, ": ", tokens, " tokens do not fit int32");
  const c10::cuda::CUDAGuard guard(x.device());
  auto out = torch::empty_like(x);  // x's strides: vLLM transposes the result back
  GdnConvPrefillParams p{};
  p.x = reinterpret_cast<const __half*>(x.data_ptr<at::Half>());
  p.out = reinterpret_cast<__half*>(out.data_ptr<at::Half>());
  p.conv_state = reinterpret_cast<__half*>(conv_state.data_ptr<at::Half>());
  p.weight = reinterpret_cast<const __half*>(weight.data_ptr<at::Half>());
  p.bias = bias ? reinterpret_cast<const __half*>(bias->data_ptr<at::Half>()) : nullptr;
  p.query_start_loc = query_start_loc.data_ptr<int>();
  p.cache_indices = cache_indices ? cache_indices->data_ptr<int>() : nullptr;
  p.has_initial_state = has_initial_state ? has_initial_state->data_ptr<bool>() : nullptr;
  p.x_dim_stride = x.stride(0), p.x_token_stride = x.stride(1);
  p.out_dim_stride = out.stride(0), p.out_token_stride = out.stride(1);
  p.state_block_stride = conv_state.stride(0), p.state_dim_stride = conv_state.stride(1);
  p.state_pos_stride = conv_state.stride(2);
  // vLLM passes block_table[:, 0], strided wherever a sequence has more than one state block (MTP,
  // prefix caching): one row stride serves that view and [seqs, k] tables alike.
  p.indices_stride = cache_indices ? cache_indices->stride(0) : 1;
  p.seqs = static_cast<int>(seqs), p.tokens = static_cast<int>(tokens), p.dim = static_cast<int>(dim);
  p.width = static_cast<int>(width), p.silu = silu;
  p.pad_slot_id = static_cast<int>(pad_slot_id), p.null_block_id = static_cast<int>(null_block_id);
  launch_gdn_conv_prefill(p, c10::cuda::getCurrentCUDAStream());
  return out;
}

void gdn_recurrent(const torch::Tensor& qkv, const torch::Tensor& a, const torch::Tensor& b,
                   const torch::Tensor& a_log, const torch::Tensor& dt_bias, double scale, torch::Tensor& state,
                   const torch::Tensor& state_indices, torch::Tensor& out, int64_t k_heads,
                   const std::optional<torch::Tensor>& cu_seqlens, const std::optional<torch::Tensor>& num_accepted,
                   bool round_beta) {
  constexpr const char* op = "gdn_recurrent";
  for (const torch::Tensor* t : TensorPtrs{&a, &b, &a_log, &dt_bias, &state, &out}) {
    check_cuda_on(*t, qkv, op, "every tensor");
  }
  check_half(qkv, op, "qkv");
  check_half(a, op, "a");
  check_half(b, op, "b");
  check_half(dt_bias, op, "dt_bias");
  check_half(out, op, "out");
  TORCH_CHECK_VALUE(state.scalar_type() == at::kFloat || state.scalar_type() == at::kHalf, op,
                    ": the recurrent state must be float32 or float16, got ", state.scalar_type());
  TORCH_CHECK_VALUE(a_log.scalar_type() == at::kFloat && a_log.dim() == 1 && a_log.is_contiguous(), op,
                    ": A_log must be a contiguous float32 [v_heads] tensor");
  TORCH_CHECK_VALUE(state.dim() == 4 && state.stride(3) == 1 && state.stride(2) == state.size(3) &&
                        state.stride(1) == state.size(2) * state.size(3),
                    op, ": state must be [blocks, v_heads, v_dim, k_dim] with contiguous blocks, got ",
                    state.sizes());
  // The kernel moves 4 state elements per access (16 bytes fp32, 8 bytes fp16).
  const int64_t vector_bytes = 4 * state.element_size();
  TORCH_CHECK_VALUE(reinterpret_cast<uintptr_t>(state.data_ptr()) % vector_bytes == 0 &&
                        state.stride(0) * state.element_size() % vector_bytes == 0,
                    op, ": the state's base address and block stride must be multiples of ", vector_bytes,
                    " bytes (vLLM's mamba pages are); got stride ", state.stride(0));
  const int64_t v_heads = state.size(1), v_dim = state.size(2), k_dim = state.size(3);
  TORCH_CHECK_VALUE(k_dim == 64 || k_dim == 128 || k_dim == 256, op, ": head_k_dim ", k_dim,
                    " is not supported; use 64, 128 or 256");
  TORCH_CHECK_VALUE(v_dim % 32 == 0, op, ": head_v_dim ", v_dim, " must be a multiple of 32");
  TORCH_CHECK_VALUE(k_heads > 0 && v_heads % k_heads == 0, op, ": ", v_heads, " v-heads are not a multiple of ",
                    k_heads, " k-heads");
  TORCH_CHECK_VALUE(qkv.dim() == 2 && qkv.stride(1) == 1 && qkv.size(1) == 2 * k_heads * k_dim + v_heads * v_dim,
                    op, ": qkv must be [tokens, 2 * k_heads * k_dim + v_heads * v_dim = ",
                    2 * k_heads * k_dim + v_heads * v_dim, "] with contiguous rows, got ", qkv.sizes());
  const int64_t tokens = qkv.size(0);
  for (const torch::Tensor* t : TensorPtrs{&a, &b}) {
    TORCH_CHECK_VALUE(t->dim() == 2 && t->size(0) == tokens && t->size(1) == v_heads && t->stride(1) == 1, op,
                      ": a and b must be [tokens, v_heads] with contiguous rows");
  }
  TORCH_CHECK_VALUE(a_log.size(0) == v_heads && dt_bias.dim() == 1 && dt_bias.size(0) == v_heads &&
                        dt_bias.is_contiguous(),
                    op, ": A_log and dt_bias must have v_heads = ", v_heads, " entries");
  TORCH_CHECK_VALUE(out.dim() == 3 && out.size(0) == tokens && out.size(1) == v_heads && out.size(2) == v_dim &&
                        out.is_contiguous(),
                    op, ": out must be contiguous [tokens, v_heads, v_dim]");
  GdnRecurrentParams p{};
  p.seq = sequences_of(qkv, tokens, state_indices, cu_seqlens, num_accepted, op);
  const c10::cuda::CUDAGuard guard(qkv.device());
  p.qkv = reinterpret_cast<const __half*>(qkv.data_ptr<at::Half>());
  p.a = reinterpret_cast<const __half*>(a.data_ptr<at::Half>());
  p.b = reinterpret_cast<const __half*>(b.data_ptr<at::Half>());
  p.a_log = a_log.data_ptr<float>();
  p.dt_bias = reinterpret_cast<const __half*>(dt_bias.data_ptr<at::Half>());
  p.state = state.data_ptr();
  p.out = reinterpret_cast<__half*>(out.data_ptr<at::Half>());
  p.qkv_stride = qkv.stride(0), p.a_stride = a.stride(0), p.b_stride = b.stride(0);
  p.state_block_stride = state.stride(0);
  p.k_heads = k_heads, p.v_heads = v_heads, p.v_dim = v_dim;
  p.scale = scale;
  p.state_fp32 = state.scalar_type() == at::kFloat;
  p.round_beta = round_beta;
  launch_gdn_recurrent(p, k_dim, c10::cuda::getCurrentCUDAStream());
}

std::tuple<torch::Tensor, torch::Tensor> gdn_chunk_prefill(const torch::Tensor& q, const torch::Tensor& k,
                                                         const torch::Tensor& v, const torch::Tensor& g,
                                                         const torch::Tensor& beta, double scale,
                                                         const std::optional<torch::Tensor>& initial_state,
                                                         const torch::Tensor& cu_seqlens) {
  constexpr const char* op = "gdn_chunk_prefill";
  for (const torch::Tensor* t : TensorPtrs{&k, &v, &g, &beta, &cu_seqlens}) check_cuda_on(*t, q, op, "every tensor");
  check_half(q, op, "q");
  check_half(k, op, "k");
  check_half(v, op, "v");
  for (const torch::Tensor* t : TensorPtrs{&q, &k, &v}) {
    TORCH_CHECK_VALUE(t->dim() == 3 && t->stride(2) == 1 && t->stride(1) == t->size(2), op,
                      ": q, k and v must be [tokens, heads, head_dim] with each token's heads contiguous, got ",
                      t->sizes(), " strides ", t->strides());
  }
  const int64_t tokens = q.size(0), k_heads = q.size(1), k_dim = q.size(2);
  const int64_t v_heads = v.size(1), v_dim = v.size(2);
  TORCH_CHECK_VALUE(k.sizes() == q.sizes() && v.size(0) == tokens, op, ": q ", q.sizes(), ", k ", k.sizes(),
                    " and v ", v.sizes(), " must agree on tokens (and q, k on heads and head_dim)");
  TORCH_CHECK_VALUE(k_dim == 64 || k_dim == 128, op, ": head_k_dim ", k_dim,
                    " is not supported by the chunked prefill; use 64 or 128 (vLLM's Triton kernel serves others)");
  TORCH_CHECK_VALUE(v_dim > 0 && v_dim % 32 == 0, op, ": head_v_dim ", v_dim, " must be a positive multiple of 32");
  TORCH_CHECK_VALUE(k_heads > 0 && v_heads > 0 && v_heads % k_heads == 0, op, ": ", v_heads,
                    " v-heads are not a positive multiple of ", k_heads, " k-heads");
  TORCH_CHECK_VALUE(tokens < (int64_t{1} << 31), op, ": ", tokens, " tokens in one call; at most 2^31 - 1");
  for (const torch::Tensor* t : TensorPtrs{&g, &beta}) {
    TORCH_CHECK_VALUE(t->scalar_type() == at::kFloat && t->dim() == 2 && t->size(0) == tokens &&
                          t->size(1) == v_heads && t->stride(1) == 1,
                      op, ": g and beta must be float32 [tokens = ", tokens, ", v_heads = ", v_heads,
                      "] with contiguous rows, got ", t->scalar_type(), " ", t->sizes());
  }
  TORCH_CHECK_VALUE(cu_seqlens.scalar_type() == at::kInt && cu_seqlens.dim() == 1 && cu_seqlens.size(0) >= 1 &&
                        cu_seqlens.is_contiguous(),
                    op, ": cu_seqlens must be a contiguous int32 [seqs + 1] tensor");
  const int64_t seqs = cu_seqlens.size(0) - 1;
  TORCH_CHECK_VALUE(seqs < (int64_t{1} << 31), op, ": ", seqs, " sequences in one call; at most 2^31 - 1");
  if (initial_state) {
    check_cuda_on(*initial_state, q, op, "initial_state");
    TORCH_CHECK_VALUE(initial_state->scalar_type() == at::kFloat || initial_state->scalar_type() == at::kHalf, op,
                      ": initial_state must be float32 or float16, got ", initial_state->scalar_type());
    TORCH_CHECK_VALUE(initial_state->dim() == 4 && initial_state->size(0) == seqs &&
                          initial_state->size(1) == v_heads && initial_state->size(2) == v_dim &&
                          initial_state->size(3) == k_dim && initial_state->is_contiguous(),
                      op, ": initial_state must be contiguous [seqs = ", seqs, ", v_heads = ", v_heads,
                      ", v_dim = ", v_dim, ", k_dim = ", k_dim, "], got ", initial_state->sizes());
    // The kernel reads the state 4 elements at a time (16 bytes fp32, 8 bytes fp16).
    TORCH_CHECK_VALUE(reinterpret_cast<uintptr_t>(initial_state->data_ptr()) % (4 * initial_state->element_size()) ==
                          0,
                      op, ": initial_state's base address must be a multiple of ", 4 * initial_state->element_size(),
                      " bytes (a fresh tensor's is; clone a view that starts inside a block)");
  }
  torch::Tensor out = torch::empty({tokens, v_heads, v_dim}, q.options());
  torch::Tensor final_state = torch::empty({seqs, v_heads, v_dim, k_dim}, q.options().dtype(at::kFloat));
  GdnPrefillParams p{};
  const c10::cuda::CUDAGuard guard(q.device());
  p.q = q.data_ptr(), p.k = k.data_ptr(), p.v = v.data_ptr();
  p.g = g.data_ptr<float>(), p.beta = beta.data_ptr<float>();
  p.cu_seqlens = cu_seqlens.data_ptr<int>();
  p.initial_state = initial_state ? initial_state->data_ptr() : nullptr;
  p.initial_state_fp32 = initial_state && initial_state->scalar_type() == at::kFloat;
  p.final_state = final_state.data_ptr<float>();
  p.out = out.data_ptr();
  p.q_stride = q.stride(0), p.k_stride = k.stride(0), p.v_stride = v.stride(0);
  p.g_stride = g.stride(0), p.beta_stride = beta.stride(0);
  p.tokens = tokens, p.seqs = seqs, p.k_heads = k_heads, p.v_heads = v_heads, p.v_dim = v_dim;
  p.scale = scale;
  // The solved chunks (pass 1 -> pass 2), from the caching allocator: graph-capture safe.
  TORCH_CHECK_VALUE(gdn_prefill_solve_slots(tokens, seqs) < (int64_t{1} << 31), op, ": ", tokens, " tokens in ", seqs,
                    " sequences are too many for one call; split the batch");
  torch::Tensor records =
      torch::empty({tokens * v_heads * gdn_prefill_record_floats(k_dim, v_dim)}, final_state.options());
  launch_gdn_chunk_prefill(p, k_dim, records.data_ptr<float>(), c10::cuda::getCurrentCUDAStream());
  return {out, final_state};
}

}  // namespace sm7x
