"""FLASH_ATTN_V100: vLLM's attention backend on flash-attn-v100 kernels (SM70/SM75, fp16).

Registered as AttentionBackendEnum.CUSTOM (the enum is closed); `--attention-backend FLASH_ATTN_V100`
is accepted as its name (vllm_sm7x.attention.selection). The KV cache uses vLLM's flash layout
(logical [num_blocks, kv_heads, block_size, 2 * head_size], stored block, token, head), so vLLM's
cache allocation, prefix caching and hybrid models' page sizes work unchanged; new keys and values
are written by vLLM's Triton cache-write kernel (a copy: nothing there needs tensor cores). With
`--kv-cache-dtype fp8_e5m2` (experimental; stock vLLM refuses FP8 KV below SM89) the cache holds one
byte per element, written and read by flash-attn-v100's own kernels.

One varlen kernel serves mixed prefill/decode batches (flash_attn_v100's paged_attention). Its
grid depends on the number of sequences and the longest query, and its split-KV on the block
table's width, so full CUDA graphs are declared for uniform batches only (decode, and MTP
verification with 1 + k tokens per sequence); mixed batches run between piecewise graphs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from vllm.v1.attention.backend import (AttentionBackend, AttentionCGSupport, AttentionImpl, AttentionMetadataBuilder,
                                       AttentionType, CommonAttentionMetadata, MultipleOf)
from vllm.logger import init_logger
from vllm.v1.attention.backends.utils import get_kv_cache_layout

logger = init_logger(__name__)
NAME = "FLASH_ATTN_V100"
HEAD_SIZES = (64, 128, 256)
# flash-attn-v100's kPrefillMinQueryLen (csrc/decode/decode_attention.h): shorter queries take its decode
# kernels, longer ones its prefill kernel.
PREFILL_MIN_QUERY_LEN = 17


@dataclass
class FlashAttnV100Metadata:
    num_actual_tokens: int
    max_query_len: int
    # The longest query the op's decode kernels take (under PREFILL_MIN_QUERY_LEN tokens) when the batch
    # also has longer ones, else -1: sizes their grid and KV splits for the decodes actually present.
    max_decode_query_len: int
    query_start_loc: torch.Tensor  # int32 [num_reqs + 1]
    max_seq_len: int
    seq_lens: torch.Tensor         # int32 [num_reqs]
    block_table: torch.Tensor      # int32 [num_reqs, max_blocks]
    slot_mapping: torch.Tensor
    causal: bool


def longest_decode_query(m: CommonAttentionMetadata) -> int:
    """The longest query under PREFILL_MIN_QUERY_LEN tokens (0 if none) of a batch that also has longer
    ones, from the CPU copy of the query offsets (no device sync); -1 for a batch of short queries only,
    whose max_query_len already says it."""
    if m.max_query_len < PREFILL_MIN_QUERY_LEN:
        return -1
    query_lens = torch.diff(m.query_start_loc_cpu[:m.num_reqs + 1])
    short = query_lens[query_lens < PREFILL_MIN_QUERY_LEN]
    return int(short.max()) if short.numel() else 0


class FlashAttnV100MetadataBuilder(AttentionMetadataBuilder[FlashAttnV100Metadata]):
    _cudagraph_support: ClassVar[AttentionCGSupport] = AttentionCGSupport.UNIFORM_BATCH

    def __init__(self, kv_cache_spec, layer_names: list[str], vllm_config, device: torch.device) -> None:
        super().__init__(kv_cache_spec, layer_names, vllm_config, device)  # abstract in vLLM 0.26
        # KV-sharing fast prefill hands builders a CPU copy of the query offsets that is still being copied
        # from the GPU (vllm/v1/attention/backends/utils.py): too early to size the decode kernels from.
        self.cpu_offsets_exact = getattr(vllm_config.cache_config, "kv_sharing_fast_prefill", False) is not True

    def build(self, common_prefix_len: int, common_attn_metadata: CommonAttentionMetadata,
              fast_build: bool = False) -> FlashAttnV100Metadata:
        m = common_attn_metadata
        if isinstance(m.causal, torch.Tensor):
            raise NotImplementedError(f"{NAME}: per-request causal flags are not supported; use TRITON_ATTN")
        # vLLM's V2 model runner may pass query offsets for padding requests past seq_lens (they hold no
        # tokens); the kernel takes the sequences seq_lens covers, with their offsets and block rows.
        reqs = m.seq_lens.shape[0]
        return FlashAttnV100Metadata(num_actual_tokens=m.num_actual_tokens, max_query_len=m.max_query_len,
                                     max_decode_query_len=longest_decode_query(m) if self.cpu_offsets_exact else -1,
                                     query_start_loc=m.query_start_loc[:reqs + 1], max_seq_len=m.max_seq_len,
                                     seq_lens=m.seq_lens, block_table=m.block_table_tensor[:reqs],
                                     slot_mapping=m.slot_mapping, causal=bool(m.causal))

    def build_for_cudagraph_capture(self, common_attn_metadata: CommonAttentionMetadata) -> FlashAttnV100Metadata:
        metadata = self.build(0, common_attn_metadata)
        metadata.seq_lens.fill_(1)  # capture is fast with short contexts; replays read the real lengths
        return metadata


class FlashAttnV100Backend(AttentionBackend):
    accept_output_buffer: bool = True
    supported_dtypes: ClassVar[list[torch.dtype]] = [torch.float16]
    supported_kv_cache_dtypes: ClassVar[list[str]] = ["auto", "float16", "fp8_e5m2"]
    forward_includes_kv_cache_update: bool = False

    @staticmethod
    def get_name() -> str:
        return "CUSTOM"  # AttentionBackendEnum is closed; users may type FLASH_ATTN_V100

    @staticmethod
    def get_supported_kernel_block_sizes() -> list[int | MultipleOf]:
        return [MultipleOf(16)]

    @staticmethod
    def get_impl_cls() -> type[FlashAttnV100Impl]:
        return FlashAttnV100Impl

    @staticmethod
    def get_builder_cls() -> type[FlashAttnV100MetadataBuilder]:
        return FlashAttnV100MetadataBuilder

    @staticmethod
    def get_kv_cache_shape(num_blocks: int, block_size: int, num_kv_heads: int, head_size: int,
                           cache_dtype_str: str = "auto") -> tuple[int, ...]:
        if block_size % 16 != 0:
            raise ValueError(f"{NAME}: block size {block_size} is not a multiple of 16")
        return (num_blocks, num_kv_heads, block_size, 2 * head_size)  # vLLM's flash layout

    @staticmethod
    def get_kv_cache_stride_order(include_num_layers_dimension: bool = False) -> tuple[int, ...]:
        if get_kv_cache_layout() != "NHD":
            raise ValueError(f"{NAME} stores the KV cache as NHD (block, token, head); unset VLLM_KV_CACHE_LAYOUT")
        return (1, 0, 3, 2, 4) if include_num_layers_dimension else (0, 2, 1, 3)

    @classmethod
    def supports_head_size(cls, head_size: int) -> bool:
        return head_size in HEAD_SIZES

    @classmethod
    def supports_sliding_window(cls) -> bool:
        return True

    @classmethod
    def supports_non_causal(cls) -> bool:
        return True

    @classmethod
    def supports_attn_type(cls, attn_type: str) -> bool:
        return attn_type == AttentionType.DECODER

    @classmethod
    def supports_compute_capability(cls, capability) -> bool:
        return capability.major >= 7


class FlashAttnV100Impl(AttentionImpl):
    def __init__(self, num_heads: int, head_size: int, scale: float, num_kv_heads: int,
                 alibi_slopes: list[float] | None, sliding_window: int | None, kv_cache_dtype: str,
                 logits_soft_cap: float | None = None, attn_type: str = AttentionType.DECODER,
                 kv_sharing_target_layer_name: str | None = None, sinks: torch.Tensor | None = None,
                 **model_extras) -> None:
        import flash_attn_v100  # noqa: F401  (registers torch.ops.flash_attn_v100)

        for what, given in (("ALiBi", alibi_slopes), ("attention sinks", sinks)):
            if given is not None:
                raise NotImplementedError(f"{NAME} does not support {what}; use --attention-backend TRITON_ATTN")
        # Arguments some models give their attention layers (layer_idx: an index, no behaviour); any other
        # one that is set changes what attention computes, e.g. Qwen's dual_chunk_attention_config.
        ignored = {"layer_idx"}
        unsupported = sorted(k for k, v in model_extras.items()
                             if k not in ignored and v is not None and v is not False)
        if unsupported:
            raise NotImplementedError(f"{NAME} does not implement {', '.join(unsupported)} (set by this model's "
                                      "attention layers): serve a configuration without it")
        if kv_cache_dtype not in FlashAttnV100Backend.supported_kv_cache_dtypes:
            raise NotImplementedError(f"{NAME}: --kv-cache-dtype {kv_cache_dtype} is not supported; use auto "
                                      "(float16) or fp8_e5m2 (experimental)")
        if kv_cache_dtype == "fp8_e5m2":
            logger.warning_once("%s: FP8 E5M2 KV cache is experimental (half the KV memory; keys and values "
                                "keep 2 mantissa bits)", NAME)
        if head_size not in HEAD_SIZES:
            raise NotImplementedError(f"{NAME}: head size {head_size} is not supported ({HEAD_SIZES})")
        self.num_heads, self.head_size, self.num_kv_heads = num_heads, head_size, num_kv_heads
        self.scale = float(scale)
        self.window_left = -1 if sliding_window is None else sliding_window - 1
        self.softcap = float(logits_soft_cap or 0.0)
        self.kv_cache_dtype = kv_cache_dtype
        self.fp8 = kv_cache_dtype == "fp8_e5m2"
        self.attn_type = attn_type
        self.kv_sharing_target_layer_name = kv_sharing_target_layer_name
        from vllm_sm7x.activation import kernel_path

        self.kernel_path = kernel_path()  # fixed now: torch.compile must see a constant

    def do_kv_cache_update(self, layer, key: torch.Tensor, value: torch.Tensor, kv_cache: torch.Tensor,
                           slot_mapping: torch.Tensor) -> None:
        from vllm.v1.attention.ops.triton_reshape_and_cache_flash import triton_reshape_and_cache_flash

        key_cache, value_cache = self._caches(kv_cache)
        if self.fp8:
            torch.ops.flash_attn_v100.write_kv_cache(key, value, key_cache, value_cache, slot_mapping,
                                                     layer._k_scale_float, layer._v_scale_float)
            return
        triton_reshape_and_cache_flash(key, value, key_cache, value_cache, slot_mapping, self.kv_cache_dtype,
                                       layer._k_scale, layer._v_scale)

    def _caches(self, kv_cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[num_blocks, block_size, kv_heads, head_size] views of the keys and values (vLLM allocates an
        FP8 cache as uint8)."""
        if self.fp8:
            kv_cache = kv_cache.view(torch.float8_e5m2)
        key_cache, value_cache = kv_cache.transpose(1, 2).split(self.head_size, dim=-1)
        return key_cache, value_cache

    def forward(self, layer, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, kv_cache: torch.Tensor,
                attn_metadata: FlashAttnV100Metadata, output: torch.Tensor, output_scale: torch.Tensor | None = None,
                output_block_scale: torch.Tensor | None = None) -> torch.Tensor:
        if output_scale is not None or output_block_scale is not None:
            raise NotImplementedError(f"{NAME} does not fuse output quantization")
        if attn_metadata is None:  # profiling run
            return output.fill_(0)
        tokens = attn_metadata.num_actual_tokens
        key_cache, value_cache = self._caches(kv_cache)
        torch.ops.flash_attn_v100.paged_attention_out(
            output[:tokens].view(tokens, self.num_heads, self.head_size), query[:tokens], key_cache, value_cache,
            attn_metadata.query_start_loc, attn_metadata.seq_lens, attn_metadata.block_table,
            attn_metadata.max_query_len, self.scale, attn_metadata.causal, self.window_left, self.softcap, 0,
            self.kernel_path, layer._k_scale_float, layer._v_scale_float, attn_metadata.max_decode_query_len)
        return output
