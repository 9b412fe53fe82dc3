// Mixture-of-experts routing for SM70/SM75 without vLLM's _moe_C (which has no sm_70 code): the
// softmax top-k of vLLM's topk_softmax, with its arguments and outputs, so the MoE layer can call
// either. Equal probabilities: the lower expert index first (deterministic; tested).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace sm7x {

constexpr int kMaxRoutedExperts = 1024;  // experts per token the routing kernel scores (32 per lane)
constexpr int kMaxTopK = 32;             // experts chosen per token (one lane each)

struct TopkSoftmaxParams {
  const void* gating;        // [tokens, experts] router logits (row stride gating_stride), dtype below
  int64_t gating_stride;
  float* weights;            // [tokens, k]: softmax probability of each chosen expert (renormalised
                             // over the k when asked)
  int* ids;                  // [tokens, k]: chosen experts, most probable first; equal
                             // probabilities: lower expert index first
  int* token_expert;         // [tokens, k]: j * tokens + token (vLLM's token_expert_indices)
  int tokens, experts, k;
  bool renormalize;
};

enum class GatingDtype { kFloat16, kBFloat16, kFloat32 };

void launch_topk_softmax(const TopkSoftmaxParams& params, GatingDtype dtype, cudaStream_t stream);

}  // namespace sm7x
