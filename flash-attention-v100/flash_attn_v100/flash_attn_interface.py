"""Public functions of flash-attn-v100 over torch.ops.flash_attn_v100, each with a fake
implementation so torch.compile and CUDA graphs can trace it. Signatures follow flash-attn's."""
from __future__ import annotations

import json
import math
import os

import torch

import flash_attn_v100._C  # noqa: F401  (registers torch.ops.flash_attn_v100)

HEAD_DIMS = (64, 128, 256)


@torch.library.register_fake("flash_attn_v100::write_kv_cache")
def _write_kv_cache_fake(key, value, key_cache, value_cache, slot_mapping, k_scale=1.0, v_scale=1.0) -> None:
    return None


@torch.library.register_fake("flash_attn_v100::paged_attention")
def _paged_attention_fake(q, k_cache, v_cache, cu_seqlens_q, seqlens_k, block_table, max_seqlen_q, scale, causal,
                          window_left, softcap, num_splits, path, k_scale=1.0, v_scale=1.0, max_decode_q_len=-1):
    total_q, heads, _ = q.shape
    return q.new_empty(q.shape), q.new_empty((heads, total_q), dtype=torch.float32)


@torch.library.register_fake("flash_attn_v100::paged_attention_out")
def _paged_attention_out_fake(out, q, k_cache, v_cache, cu_seqlens_q, seqlens_k, block_table, max_seqlen_q, scale,
                              causal, window_left, softcap, num_splits, path, k_scale=1.0, v_scale=1.0,
                              max_decode_q_len=-1):
    return q.new_empty((q.shape[1], q.shape[0]), dtype=torch.float32)


def write_kv_cache(key: torch.Tensor, value: torch.Tensor, key_cache: torch.Tensor, value_cache: torch.Tensor,
                   slot_mapping: torch.Tensor, k_scale: float = 1.0, v_scale: float = 1.0) -> None:
    """Store key/value [num_tokens, num_kv_heads, head_size] (fp16) into paged caches
    [num_blocks, block_size, num_kv_heads, head_size] at `slot_mapping` (int64 [n], n <= num_tokens;
    slot = block * block_size + offset; negative slots are padding and skipped, and so are slots at or past
    num_blocks * block_size). vLLM's layout.
    Caches are float16, or (experimental) torch.float8_e5m2 holding value / k_scale (v_scale),
    rounded to nearest even and saturated at +-57344."""
    torch.ops.flash_attn_v100.write_kv_cache(key, value, key_cache, value_cache, slot_mapping, k_scale, v_scale)


def _check_inputs(q, k_cache, v_cache, k, v, window_size, alibi_slopes, rotary_cos) -> None:
    for name, t in (("q", q), ("k_cache", k_cache), ("v_cache", v_cache), ("k", k), ("v", v)):
        if t is None or (name.endswith("_cache") and t.dtype == torch.float8_e5m2):
            continue
        if t.dtype == torch.bfloat16:
            raise ValueError(f"flash_attn_v100: {name} is bfloat16; SM70/SM75 have no bf16 tensor cores: use "
                             "float16")
        if t.dtype != torch.float16:
            allowed = "float16 or float8_e5m2 (experimental)" if name.endswith("_cache") else "float16"
            raise ValueError(f"flash_attn_v100: {name} must be {allowed}, got {t.dtype}")
    if q.dim() != 4:
        raise ValueError(f"flash_attn_v100: q must be [batch, seqlen_q, heads, head_dim], got {tuple(q.shape)}")
    if q.shape[-1] not in HEAD_DIMS:
        raise ValueError(f"flash_attn_v100: head_dim {q.shape[-1]} is not supported; use one of {HEAD_DIMS} "
                         "(pad the head dimension, or use PyTorch's scaled_dot_product_attention)")
    if (k is None) != (v is None):
        raise ValueError("flash_attn_v100: pass both k and v to append, or neither")
    if alibi_slopes is not None or rotary_cos is not None:
        raise ValueError("flash_attn_v100: ALiBi and in-kernel rotary are not supported; apply RoPE to q/k first")
    left, right = window_size
    if right not in (-1, 0):
        raise ValueError(f"flash_attn_v100: window_size right = {right} is not supported; keys right of the query "
                         "are either all visible (-1) or none (0, as with causal=True)")


def _check_kv_shapes(q, k_cache, v_cache, rank: int, kv_layout: str) -> None:
    """k_cache/v_cache against q [..., heads, head_dim]: the same shape, `rank` dimensions (kv_layout
    names them), q's head_dim, and a KV head count that divides q's heads (GQA/MQA). Checked here so
    CPU tensors and every device get the message before the op's own checks."""
    for name, t in (("k", k_cache), ("v", v_cache)):
        if t.dim() != rank:
            raise ValueError(f"flash_attn_v100: {name} must be {kv_layout}, got {tuple(t.shape)}")
    if k_cache.shape != v_cache.shape:
        raise ValueError(f"flash_attn_v100: k and v must have the same shape, got {tuple(k_cache.shape)} and "
                         f"{tuple(v_cache.shape)}")
    heads, head_dim = q.shape[-2:]
    kv_heads, kv_head_dim = k_cache.shape[-2:]
    if kv_head_dim != head_dim:
        raise ValueError(f"flash_attn_v100: k/v head_dim {kv_head_dim} differs from q's {head_dim}")
    if kv_heads == 0 or heads % kv_heads:
        raise ValueError(f"flash_attn_v100: q's {heads} heads are not a multiple of the {kv_heads} KV heads; "
                         "GQA/MQA need heads % kv_heads == 0 (repeat the KV heads to a divisor of heads)")


def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                    alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """Attention of q [batch, seqlen_q, heads, head_dim] over k/v [batch, seqlen_k, kv_heads, head_dim],
    flash-attn's call (same limits as flash_attn_with_kvcache; queries are the last seqlen_q positions).
    Returns out [batch, seqlen_q, heads, head_dim] (and the log-sum-exp [batch, heads, seqlen_q] with
    return_attn_probs, which returns no probabilities)."""
    if dropout_p != 0.0:
        raise ValueError("flash_attn_v100: dropout is not supported (forward inference only)")
    # k/v are a contiguous cache holding seqlen_k keys per sequence.
    result = flash_attn_with_kvcache(q, k, v, softmax_scale=softmax_scale, causal=causal, window_size=window_size,
                                     softcap=softcap, alibi_slopes=alibi_slopes, return_softmax_lse=return_attn_probs)
    return (*result, None) if return_attn_probs else result


def flash_attn_with_kvcache(q, k_cache, v_cache, k=None, v=None, rotary_cos=None, rotary_sin=None,
                            cache_seqlens=None, cache_batch_idx=None, cache_leftpad=None, block_table=None,
                            softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                            rotary_interleaved=True, alibi_slopes=None, num_splits=0, return_softmax_lse=False,
                            k_scale=1.0, v_scale=1.0):
    """Attention of q [batch, seqlen_q, heads, head_dim] over a KV cache, flash-attn's call.

    k_cache/v_cache: [batch, seqlen_cache, kv_heads, head_dim], or with `block_table` (int32
    [batch, max_blocks]) paged [num_blocks, block_size, kv_heads, head_dim]. cache_seqlens (int32
    [batch], or an int) counts the cached keys; k/v [batch, seqlen_new, kv_heads, head_dim], if
    given, are written into the cache after them first (past the table's capacity: refused for an int
    cache_seqlens, dropped for a tensor, which the host cannot read without a sync). Queries are the last seqlen_q positions
    (causal masks keys to their right); window_size = (left, right) with right -1 or 0.
    fp16 only; head_dim 64/128/256; GQA/MQA when heads % kv_heads == 0. Experimental: caches of
    dtype torch.float8_e5m2 holding key / k_scale and value / v_scale (write_kv_cache's rounding),
    read back exactly and multiplied by the scales in the kernel. Returns out (and the
    softmax log-sum-exp [batch, heads, seqlen_q] with return_softmax_lse). A query that sees no
    key gets zeros and lse -inf.
    """
    _check_inputs(q, k_cache, v_cache, k, v, window_size, alibi_slopes, rotary_cos)
    _check_kv_shapes(q, k_cache, v_cache, 4, "[batch or num_blocks, seqlen_cache or block_size, kv_heads, head_dim]")
    if k is not None and (k.shape != v.shape or k.dim() != 4 or k.shape[0] != q.shape[0]
                          or k.shape[2:] != k_cache.shape[2:]):
        raise ValueError(f"flash_attn_v100: new k/v must both be [batch={q.shape[0]}, seqlen_new, "
                         f"kv_heads={k_cache.shape[2]}, head_dim={k_cache.shape[3]}], got {tuple(k.shape)} and "
                         f"{tuple(v.shape)}")
    if cache_batch_idx is not None or cache_leftpad is not None:
        raise ValueError("flash_attn_v100: cache_batch_idx and cache_leftpad are not supported")
    batch = q.shape[0]
    if block_table is None:  # a contiguous cache is a paged one with one block per sequence
        if k_cache.shape[0] != batch:
            raise ValueError(f"flash_attn_v100: k_cache has {k_cache.shape[0]} sequences, q has {batch}")
        block_table = torch.arange(batch, dtype=torch.int32, device=q.device).view(batch, 1)
    block_size = k_cache.shape[1]
    if cache_seqlens is None:
        if block_table.shape[1] != 1:
            raise ValueError("flash_attn_v100: a paged cache needs cache_seqlens")
        if k is not None:
            raise ValueError("flash_attn_v100: appending k/v needs cache_seqlens (without it the cache counts as "
                             "full, and there is no room after it)")
        cache_seqlens = torch.full((batch,), block_size, dtype=torch.int32, device=q.device)
    elif isinstance(cache_seqlens, int):
        if k is not None and cache_seqlens + k.shape[1] > block_table.shape[1] * block_size:
            raise ValueError(f"flash_attn_v100: appending {k.shape[1]} keys after {cache_seqlens} overflows the "
                             f"cache's {block_table.shape[1] * block_size} positions per sequence; give it more "
                             "blocks (block_table columns) or seqlen_cache")
        cache_seqlens = torch.full((batch,), cache_seqlens, dtype=torch.int32, device=q.device)
    cache_seqlens = cache_seqlens.to(torch.int32)
    if k is not None:
        new, columns = k.shape[1], block_table.shape[1]
        positions = cache_seqlens.view(batch, 1).long() + torch.arange(new, device=q.device)
        # Positions past the cache are dropped (slot -1), not looked up past the block table: a device-side
        # check would need a sync; the attention reads at most the table's keys either way.
        blocks = torch.gather(block_table.long(), 1, (positions // block_size).clamp(max=columns - 1))
        slots = torch.where(positions < columns * block_size, blocks * block_size + positions % block_size,
                            -1).reshape(-1)
        write_kv_cache(k.reshape(-1, *k.shape[2:]).contiguous(), v.reshape(-1, *v.shape[2:]).contiguous(),
                       k_cache, v_cache, slots, k_scale, v_scale)
        cache_seqlens = cache_seqlens + new
    batch, q_len, heads, dim = q.shape
    causal = causal or window_size[1] == 0  # flash-attn: right window 0 hides every key right of the query
    cu_seqlens_q = torch.arange(0, batch * q_len + 1, q_len, dtype=torch.int32, device=q.device)
    out, lse = _paged_attention(q.reshape(batch * q_len, heads, dim), k_cache, v_cache, cu_seqlens_q, cache_seqlens,
                                block_table, q_len, softmax_scale, causal, window_size, softcap, num_splits, k_scale,
                                v_scale)
    out = out.view(batch, q_len, heads, dim)
    return (out, lse.view(heads, batch, q_len).permute(1, 0, 2).contiguous()) if return_softmax_lse else out


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                           softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0, alibi_slopes=None,
                           deterministic=False, return_attn_probs=False, block_table=None, seqused_k=None,
                           k_scale=1.0, v_scale=1.0):
    """Variable-length attention, flash-attn's call: q [total_q, heads, head_dim] with cu_seqlens_q
    (int32 [batch + 1]); k/v either [total_k, kv_heads, head_dim] with cu_seqlens_k, or paged caches
    [num_blocks, block_size, kv_heads, head_dim] with `block_table` and `seqused_k` (keys per
    sequence; cu_seqlens_k is then ignored, as in flash-attn; float16 or, experimental, float8_e5m2
    caches with k_scale/v_scale as in flash_attn_with_kvcache). A sequence's queries are its last
    positions (bottom-right causal alignment). Returns out [total_q, heads, head_dim] (and the
    log-sum-exp [heads, total_q] with return_attn_probs, which returns no probabilities).

    Sequences with up to 16 new queries run on the SIMT kernel of flash_attn_with_kvcache, longer
    ones on the tensor-core prefill kernel of the arch path (VLLM_SM7X_EMULATE picks it on newer GPUs).
    """
    if q.dim() != 3:
        raise ValueError(f"flash_attn_v100: varlen q must be [total_q, heads, head_dim], got {tuple(q.shape)}")
    _check_inputs(q.unsqueeze(0), k, v, None, None, window_size, alibi_slopes, None)
    if block_table is None:
        _check_kv_shapes(q, k, v, 3, "[total_k, kv_heads, head_dim] (or paged, with block_table)")
        if cu_seqlens_k is None or max_seqlen_k is None:
            raise ValueError("flash_attn_v100: unpaged k/v need cu_seqlens_k and max_seqlen_k (or pass the paged "
                             "caches with block_table and seqused_k)")
    else:
        _check_kv_shapes(q, k, v, 4, "[num_blocks, block_size, kv_heads, head_dim] with block_table")
    if cu_seqlens_q is None or max_seqlen_q is None:
        raise ValueError("flash_attn_v100: varlen attention needs cu_seqlens_q (int32 [batch + 1]) and max_seqlen_q")
    if dropout_p != 0.0:
        raise ValueError("flash_attn_v100: dropout is not supported (forward inference only)")
    causal = causal or window_size[1] == 0
    if block_table is None:
        # Unpaged keys are a paged cache with one-token blocks: block j of sequence b is key cu_seqlens_k[b] + j.
        seqused_k = (cu_seqlens_k[1:] - cu_seqlens_k[:-1]).to(torch.int32)
        columns = torch.arange(max(int(max_seqlen_k), 1), dtype=torch.int32, device=q.device)
        block_table = (cu_seqlens_k[:-1, None].to(torch.int32) + columns).clamp(max=max(k.shape[0] - 1, 0))
        k, v = k.unsqueeze(1), v.unsqueeze(1)
    elif seqused_k is None:
        if cu_seqlens_k is None:
            raise ValueError("flash_attn_v100: a paged k/v (block_table) needs seqused_k or cu_seqlens_k")
        seqused_k = cu_seqlens_k[1:] - cu_seqlens_k[:-1]
    out, lse = _paged_attention(q, k, v, cu_seqlens_q.to(torch.int32), seqused_k.to(torch.int32), block_table,
                                int(max_seqlen_q), softmax_scale, causal, window_size, softcap, 0, k_scale, v_scale)
    return (out, lse, None) if return_attn_probs else out


def arch_path() -> str:
    """Which tensor-core path the kernels take: the device's own ("auto"), or the one vllm-sm7x's
    emulation switch VLLM_SM7X_EMULATE=sm70|sm75 names (for running SM7x code on newer GPUs)."""
    return os.environ.get("VLLM_SM7X_EMULATE", "").strip().lower() or "auto"


def _paged_attention(q, k_cache, v_cache, cu_seqlens_q, seqlens_k, block_table, max_seqlen_q, softmax_scale,
                     causal, window_size, softcap, num_splits, k_scale=1.0, v_scale=1.0):
    scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(q.shape[-1])
    return torch.ops.flash_attn_v100.paged_attention(q, k_cache, v_cache, cu_seqlens_q, seqlens_k.contiguous(),
                                                     block_table.to(torch.int32), max_seqlen_q, scale, causal,
                                                     window_size[0], softcap, num_splits, arch_path(), k_scale,
                                                     v_scale)


def decode_kernel(query_rows: int, path: str, with_prefill: bool = False) -> str:
    """The decode kernel the op takes on arch path `path` ("sm70" or "sm75") for `query_rows` query rows per
    KV head (q_len x the GQA group): "simt", "mma", "mma32" or "mma8" (both paths' plain decode), or "pairs"
    (sm75 only, forced), as FLASH_ATTN_V100_DECODE names them (it forces one). with_prefill: the call also holds prefill query
    blocks (a mixed batch), whose short sequences keep the 16-row form on the sm70 path unless query_rows
    says they hold at most 8."""
    return torch.ops.flash_attn_v100.decode_kernel(query_rows, path, with_prefill)


def decode_occupancy(head_dim: int, query_rows: int, path: str) -> dict:
    """The decode kernel the op takes for `query_rows` query rows per KV head (q_len x the GQA group):
    "kernel" "simt", "mma", "mma32", "mma8" or "pairs" as FLASH_ATTN_V100_DECODE names them (it forces one), and its
    CTAs per SM (fp16 cache) on the card of `path` ("sm70": V100, "sm75": T4/RTX 2080 Ti), and on this GPU when it
    emulates that card: with the emulation switch on a newer GPU, the decode kernels get unused
    dynamic shared memory ("padding", bytes) so the GPU holds no more CTAs per SM than the card would."""
    (card, device, padding), kernel = torch.ops.flash_attn_v100.decode_occupancy(head_dim, query_rows, path)
    return {"kernel": kernel, "card_ctas_per_sm": card, "device_ctas_per_sm": device, "padding_bytes": padding}


def build_info() -> dict:
    """The archs this build was compiled for."""
    return json.loads(torch.ops.flash_attn_v100.build_info())
