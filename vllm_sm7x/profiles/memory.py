"""Bytes per GPU of a serving configuration: weights, the KV pool (KV cache and Gated DeltaNet state
as vLLM lays them out), and the prefill workspace. `tp` GPUs split every layer; `pp` pipeline stages
split the layers (the fullest stage is priced: its share of the layers, rounded up, and one
vocabulary matrix at an end). Weights come from the safetensors sizes when the folder has them (else from the shapes);
the workspace is an estimate that errs high, so a profile that fits here leaves vLLM's own profiling
run room."""
from __future__ import annotations

import math
from dataclasses import dataclass

from vllm_sm7x.profiles.model_facts import ModelFacts

GIB = 1 << 30
FP16, FP32 = 2, 4
GDN_PREFILL_RECORD_TAIL = 20  # csrc/gdn/gdn_prefill.cu kRecordTail: P's row (16 floats), G, padding
# Per GPU, outside what is priced below: CUDA context, allocator slack, NCCL buffers, CUDA graphs.
RUNTIME_OVERHEAD_BYTES = int(1.5 * GIB)


def linear_weight_bytes(facts: ModelFacts, params: int) -> int:
    """A quantized linear layer stores `bits` per weight plus an fp16 scale and a packed zero per group."""
    if facts.weight_bits >= 16:
        return params * FP16
    return params * facts.weight_bits // 8 + params // facts.group_size * (FP16 + facts.weight_bits / 8)


def embedding_bytes(facts: ModelFacts) -> int:
    """The vocabulary matrices (embedding and lm_head, one if tied), fp16 in every checkpoint we serve."""
    return facts.vocab_size * facts.hidden_size * FP16 * (1 if facts.tie_word_embeddings else 2)


def estimated_weight_bytes(facts: ModelFacts) -> int:
    """The checkpoint's size from its shapes (used when the folder has no weight files)."""
    h = facts.hidden_size
    attention = h * facts.num_attention_heads * facts.head_dim * (3 if facts.is_qwen35 else 2)  # q (+ gate), o
    attention += 2 * h * facts.num_kv_heads * facts.head_dim
    conv_dim = 2 * facts.linear_k_heads * facts.linear_k_dim + facts.linear_v_heads * facts.linear_v_dim
    delta_net = h * (conv_dim + facts.linear_v_heads * facts.linear_v_dim + 2 * facts.linear_v_heads)
    delta_net += facts.linear_v_heads * facts.linear_v_dim * h
    if facts.is_moe:
        mlp = 3 * h * (facts.num_experts * facts.moe_intermediate_size + facts.shared_expert_intermediate_size)
    else:
        mlp = 3 * h * facts.intermediate_size
    linear = (facts.full_attention_layers * attention + facts.linear_attention_layers * delta_net
              + facts.num_layers * mlp)
    mtp = facts.mtp_layers * (attention + mlp + 2 * h * h)
    return int(linear_weight_bytes(facts, linear + mtp) + embedding_bytes(facts))


def stage_layers(layers: int, pp: int) -> int:
    """Layers of the fullest pipeline stage."""
    return math.ceil(layers / pp)


def weight_bytes_per_gpu(facts: ModelFacts, tp: int, pp: int = 1) -> int:
    total = facts.checkpoint_bytes if facts.checkpoint_bytes is not None else estimated_weight_bytes(facts)
    if pp == 1:
        return math.ceil(total / tp)
    vocabulary = embedding_bytes(facts)
    layers = max(0, total - vocabulary) * stage_layers(facts.num_layers, pp) / facts.num_layers
    one_end = vocabulary // (1 if facts.tie_word_embeddings else 2)  # the first stage's embedding or the last's lm_head
    return math.ceil((layers + one_end) / tp)


def kv_heads_per_gpu(facts: ModelFacts, tp: int) -> int:
    return max(1, facts.num_kv_heads // tp)  # fewer KV heads than GPUs: each GPU keeps a copy of one


def state_bytes_per_layer(facts: ModelFacts, tp: int, speculative_tokens: int = 0) -> int:
    """Gated DeltaNet state of one sequence in one layer (vLLM's shapes: the conv window grows by the
    speculative tokens; the recurrent state is v_heads x v_dim x k_dim)."""
    conv_dim = 2 * facts.linear_k_heads * facts.linear_k_dim + facts.linear_v_heads * facts.linear_v_dim
    conv = conv_dim // tp * (facts.conv_kernel - 1 + speculative_tokens) * FP16
    recurrent = facts.linear_v_heads // tp * facts.linear_v_dim * facts.linear_k_dim
    return conv + recurrent * facts.ssm_state_bytes_per_element


KERNEL_BLOCK_TOKENS = 16  # FLASH_ATTN_V100's block sizes are multiples of 16 (attention/backend.py)


@dataclass(frozen=True)
class KvPool:
    """One request's share of vLLM 0.26's KV pool (v1/core/kv_cache_utils.py and the hybrid block size
    in model_executor/models/config.py), which the profile must size exactly: vLLM refuses a pool that
    cannot hold one request of max_model_len. Layers are grouped so every group has `group_layers` slots
    (attention and Gated DeltaNet layers in groups of the smaller count, the last one padded; MTP's
    attention layer counts); a block holds one page per slot; a hybrid's attention block is the
    multiple of 16 tokens whose page holds a layer's state. A request takes ceil(tokens / block) blocks
    of each attention group and `state_blocks` blocks of each GDN group: 1 + k, or 2 + k when prefix
    caching keeps aligned states (k speculative tokens)."""
    block_tokens: int
    page_bytes: int
    group_layers: int
    attention_groups: int
    state_blocks: int  # per request, over all GDN groups

    def request_bytes(self, tokens: int) -> int:
        blocks = self.attention_groups * math.ceil(tokens / self.block_tokens) + self.state_blocks
        return blocks * self.group_layers * self.page_bytes

    def tokens_fitting(self, request_bytes: float) -> int:
        """The longest context one request of at most `request_bytes` can hold (a multiple of the block)."""
        blocks = int(request_bytes // (self.group_layers * self.page_bytes)) - self.state_blocks
        return max(0, blocks // self.attention_groups) * self.block_tokens


def kv_pool(facts: ModelFacts, tp: int, kv_cache_bytes: int = FP16, pp: int = 1, speculative_tokens: int = 0,
            prefix_caching: bool = False) -> KvPool:
    mtp = facts.mtp_layers if speculative_tokens else 0
    token_bytes = 2 * kv_heads_per_gpu(facts, tp) * facts.head_dim * kv_cache_bytes  # one layer's K and V
    stage_attention = stage_layers(facts.full_attention_layers, pp) + mtp
    if not facts.is_hybrid:
        return KvPool(KERNEL_BLOCK_TOKENS, KERNEL_BLOCK_TOKENS * token_bytes, stage_attention, 1, 0)
    state = state_bytes_per_layer(facts, tp, speculative_tokens)
    block = KERNEL_BLOCK_TOKENS * math.ceil(state / (KERNEL_BLOCK_TOKENS * token_bytes))
    # vLLM groups the whole model's layers, then gives each pipeline stage its share of every group.
    attention, delta_net = facts.full_attention_layers + mtp, facts.linear_attention_layers
    group = min(attention, delta_net)
    if max(attention, delta_net) < 1.5 * group:  # vLLM pads the smaller kind instead
        group = max(attention, delta_net)
    attention_groups, delta_net_groups = math.ceil(attention / group), math.ceil(delta_net / group)
    stage_slots = max(math.ceil(stage_attention / attention_groups),
                      math.ceil(stage_layers(delta_net, pp) / delta_net_groups))
    per_group = (2 if prefix_caching else 1) + speculative_tokens
    return KvPool(block, block * token_bytes, stage_slots, attention_groups, delta_net_groups * per_group)


def prefill_workspace_bytes(facts: ModelFacts, tp: int, batched_tokens: int) -> int:
    """Activations of one forward pass over `batched_tokens` tokens (fp16, a few live copies of each
    width); MoE adds the routed copies of every token (top-k); hybrids the GDN prefill's solved chunks."""
    conv_dim = 2 * facts.linear_k_heads * facts.linear_k_dim + facts.linear_v_heads * facts.linear_v_dim
    per_token = 8 * facts.hidden_size + 4 * (facts.intermediate_size + conv_dim) // tp
    if facts.is_moe:
        per_token += facts.experts_per_token * (3 * facts.moe_intermediate_size // tp + 2 * facts.hidden_size)
    return batched_tokens * per_token * FP16 + gdn_prefill_records_bytes(facts, tp, batched_tokens)


def gdn_prefill_records_bytes(facts: ModelFacts, tp: int, batched_tokens: int) -> int:
    """Our GDN prefill's workspace while one layer prefills (the default path): per token and v-head, the
    chunk solve's fp32 records (W, Uraw, P's row, G and padding: csrc/gdn/gdn_prefill.cu, record_floats)
    and the fp32 copies of g and beta. 27B at TP1: 53 KB per token, 0.87 GB for a 16K-token chunk."""
    if not facts.is_hybrid:
        return 0
    floats_per_v_head = facts.linear_k_dim + facts.linear_v_dim + GDN_PREFILL_RECORD_TAIL + 2
    return batched_tokens * facts.linear_v_heads // tp * floats_per_v_head * FP32
