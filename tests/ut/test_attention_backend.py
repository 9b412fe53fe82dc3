"""The FLASH_ATTN_V100 backend as vLLM sees it: its name, cache layout and limits, the refusals
that name the fix, its registration, and the command-line spelling users copy."""
import argparse
import collections

import pytest

from vllm_sm7x.attention import selection


def test_command_line_alias_maps_to_custom():
    parser = argparse.ArgumentParser()
    parser.add_argument("--attention-backend", type=str)
    selection.accept_backend_alias(parser)
    selection.accept_backend_alias(parser)  # idempotent
    for spelling in ("FLASH_ATTN_V100", "flash_attn_v100"):
        assert parser.parse_args(["--attention-backend", spelling]).attention_backend == "CUSTOM"
    assert parser.parse_args(["--attention-backend", "TRITON_ATTN"]).attention_backend == "TRITON_ATTN"


@pytest.mark.parametrize("spelling", ["FLASH_ATTN_V100", "flash_attn_v100"])
def test_python_api_alias_maps_to_custom_before_vllm_parses_it(spelling):
    from vllm.config.attention import AttentionConfig
    from vllm.engine.arg_utils import EngineArgs

    args = EngineArgs(model="unused", attention_backend=spelling)
    with pytest.raises(ValueError, match="FLASH_ATTN_V100"):
        AttentionConfig.validate_backend_before(args.attention_backend)  # what vLLM alone does with it
    selection.translate_backend_alias(args)
    assert args.attention_backend == "CUSTOM"
    assert AttentionConfig.validate_backend_before(args.attention_backend).name == "CUSTOM"
    other = EngineArgs(model="unused", attention_backend="TRITON_ATTN")
    selection.translate_backend_alias(other)
    assert other.attention_backend == "TRITON_ATTN"


def test_backend_describes_itself_to_vllm():
    from vllm_sm7x.attention.backend import FlashAttnV100Backend

    assert FlashAttnV100Backend.get_name() == "CUSTOM"
    assert FlashAttnV100Backend.get_kv_cache_shape(10, 32, 4, 256) == (10, 4, 32, 512)
    assert [FlashAttnV100Backend.supports_head_size(d) for d in (64, 128, 256, 96)] == [True, True, True, False]
    with pytest.raises(ValueError, match="multiple of 16"):
        FlashAttnV100Backend.get_kv_cache_shape(10, 24, 4, 128)


@pytest.mark.parametrize("kwargs, message", [({"alibi_slopes": [1.0]}, "ALiBi; use --attention-backend TRITON_ATTN"),
                                             ({"kv_cache_dtype": "fp8"}, "--kv-cache-dtype fp8 is not supported"),
                                             ({"head_size": 80}, "head size 80"),
                                             ({"dual_chunk_attention_config": {"chunk_size": 8192}, "layer_idx": 3},
                                              "does not implement dual_chunk_attention_config")])
def test_unsupported_features_are_refused_with_the_fix(kwargs, message):
    pytest.importorskip("flash_attn_v100", reason="flash-attn-v100 is not built")
    from vllm_sm7x.attention.backend import FlashAttnV100Impl

    args = dict(num_heads=8, head_size=128, scale=0.1, num_kv_heads=2, alibi_slopes=None, sliding_window=None,
                kv_cache_dtype="auto")
    with pytest.raises(NotImplementedError, match=message):
        FlashAttnV100Impl(**{**args, **kwargs})


def test_a_layer_index_alone_is_accepted():
    pytest.importorskip("flash_attn_v100", reason="flash-attn-v100 is not built")
    from vllm_sm7x.attention.backend import FlashAttnV100Impl

    impl = FlashAttnV100Impl(num_heads=8, head_size=128, scale=0.1, num_kv_heads=2, alibi_slopes=None,
                             sliding_window=None, kv_cache_dtype="auto", layer_idx=3, dual_chunk_attention_config=None)
    assert impl.head_size == 128


def test_registered_as_the_custom_backend():
    from vllm.v1.attention.backends.registry import AttentionBackendEnum

    selection.register_backend()
    assert AttentionBackendEnum.CUSTOM.get_path() == selection.BACKEND_CLASS


def test_metadata_builder_can_be_created():
    # vLLM 0.26 declares AttentionMetadataBuilder.__init__ abstract: a builder without one cannot exist.
    from unittest import mock

    from vllm_sm7x.attention.backend import FlashAttnV100Backend

    spec = mock.Mock(block_size=16)
    with mock.patch("vllm.v1.attention.backend.AttentionMetadataBuilder.__init__", return_value=None) as init:
        FlashAttnV100Backend.get_builder_cls()(spec, ["layers.0.attn"], mock.Mock(), "cpu")
    init.assert_called_once()


def batch_of(query_lens, padding=0):
    """The fields longest_decode_query reads of vLLM's CommonAttentionMetadata; `padding` repeated
    offsets past num_reqs, as padded batches carry."""
    import itertools
    import types

    import torch

    offsets = [0, *itertools.accumulate(query_lens)]
    return types.SimpleNamespace(max_query_len=max(query_lens), num_reqs=len(query_lens),
                                 query_start_loc_cpu=torch.tensor(offsets + [offsets[-1] + 40] * padding,
                                                                  dtype=torch.int32))


@pytest.mark.parametrize("query_lens, expected", [([1, 1, 1], -1), ([4, 4], -1), ([16], -1),
                                                  ([1, 512, 1], 1), ([5, 300, 1], 5), ([16, 17], 16),
                                                  ([100, 17], 0), ([512], 0)])
def test_a_mixed_batch_tells_the_op_its_longest_decode_query(query_lens, expected):
    from vllm_sm7x.attention.backend import longest_decode_query

    assert longest_decode_query(batch_of(query_lens, padding=2)) == expected


@pytest.mark.parametrize("fast_prefill, expected", [(False, 1), (True, -1)])
def test_the_builder_passes_the_longest_decode_query_unless_the_offsets_may_be_in_flight(fast_prefill, expected):
    import types
    from unittest import mock

    import torch

    from vllm_sm7x.attention.backend import FlashAttnV100Backend

    config = types.SimpleNamespace(cache_config=types.SimpleNamespace(kv_sharing_fast_prefill=fast_prefill))
    with mock.patch("vllm.v1.attention.backend.AttentionMetadataBuilder.__init__", return_value=None):
        builder = FlashAttnV100Backend.get_builder_cls()(mock.Mock(), ["layers.0.attn"], config, "cpu")
    batch = batch_of([1, 300, 1], padding=2)  # offsets of two padding requests past seq_lens, as V2's runner may pass
    m = types.SimpleNamespace(**vars(batch), num_actual_tokens=302, query_start_loc=batch.query_start_loc_cpu,
                              max_seq_len=900, seq_lens=torch.tensor([5, 300, 900]),
                              block_table_tensor=torch.zeros(5, 60, dtype=torch.int32), slot_mapping=None, causal=True)
    metadata = builder.build(0, m)
    assert metadata.max_decode_query_len == expected
    assert metadata.query_start_loc.tolist() == [0, 1, 301, 302] and metadata.block_table.shape == (3, 60)


def test_the_prefill_threshold_is_flash_attn_v100s():
    import pathlib
    import re

    from vllm_sm7x.attention.backend import PREFILL_MIN_QUERY_LEN

    header = pathlib.Path(__file__).parents[2] / "flash-attention-v100/csrc/decode/decode_attention.h"
    assert re.search(r"kPrefillMinQueryLen = (\d+);", header.read_text()).group(1) == str(PREFILL_MIN_QUERY_LEN)


Candidate = collections.namedtuple("Candidate", "backend_class backend priority")  # vLLM's _BackendCandidate


def selector_config(**overrides):
    import torch
    from vllm.v1.attention.selector import AttentionSelectorConfig

    return AttentionSelectorConfig(**{"head_size": 256, "dtype": torch.float16, "kv_cache_dtype": "auto",
                                      "block_size": None, **overrides})


def ranked(config, installed=True, monkeypatch=None):
    """Our platform's ranking for a layer, on top of a stand-in for vLLM's own list (TRITON_ATTN)."""
    from vllm.platforms.interface import DeviceCapability
    from vllm.v1.attention.backends.registry import AttentionBackendEnum

    selection.register_backend()
    if not installed:
        monkeypatch.setattr(selection.importlib.util, "find_spec", lambda name: None)
    triton = Candidate(object, AttentionBackendEnum.TRITON_ATTN, 0)
    valid, invalid = selection.rank_flash_attn_v100_first([triton], {}, DeviceCapability(7, 0), config, Candidate)
    return [candidate.backend.name for candidate in valid], invalid


def test_flash_attn_v100_is_ranked_first_where_it_supports_the_layer():
    pytest.importorskip("flash_attn_v100", reason="flash-attn-v100 is not built")
    names, invalid = ranked(selector_config())
    assert names == ["CUSTOM", "TRITON_ATTN"] and not invalid
    assert ranked(selector_config(head_size=64, has_sliding_window=True))[0][0] == "CUSTOM"
    assert ranked(selector_config(kv_cache_dtype="fp8_e5m2"))[0][0] == "CUSTOM"  # experimental FP8 KV


@pytest.mark.parametrize("overrides, reason", [({"head_size": 96}, "head_size not supported"),
                                               ({"kv_cache_dtype": "fp8"}, "kv_cache_dtype not supported"),
                                               ({"use_mla": True}, "MLA not supported"),
                                               ({"attn_type": "encoder_only"}, "attention type")])
def test_layers_it_cannot_serve_keep_vllms_choice_with_the_reason(overrides, reason):
    pytest.importorskip("flash_attn_v100", reason="flash-attn-v100 is not built")
    names, invalid = ranked(selector_config(**overrides))
    assert names == ["TRITON_ATTN"]
    assert any(reason in r for r in invalid[next(iter(invalid))][1])


def test_without_the_flash_attn_wheel_vllm_keeps_its_choice_and_says_what_to_install(monkeypatch):
    names, invalid = ranked(selector_config(), installed=False, monkeypatch=monkeypatch)
    assert names == ["TRITON_ATTN"]
    assert "pip install flash-attn-v100" in next(iter(invalid.values()))[1][0]

