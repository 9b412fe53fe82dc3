"""The FLASH_ATTN_V100 backend as vLLM sees it: its name, cache layout and limits, the refusals
that name the fix, its registration, and the command-line spelling users copy."""
import argparse

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


def test_backend_describes_itself_to_vllm():
    from vllm_sm7x.attention.backend import FlashAttnV100Backend

    assert FlashAttnV100Backend.get_name() == "CUSTOM"
    assert FlashAttnV100Backend.get_kv_cache_shape(10, 32, 4, 256) == (10, 4, 32, 512)
    assert [FlashAttnV100Backend.supports_head_size(d) for d in (64, 128, 256, 96)] == [True, True, True, False]
    with pytest.raises(ValueError, match="multiple of 16"):
        FlashAttnV100Backend.get_kv_cache_shape(10, 24, 4, 128)


@pytest.mark.parametrize("kwargs, message", [({"alibi_slopes": [1.0]}, "ALiBi; use --attention-backend TRITON_ATTN"),
                                             ({"kv_cache_dtype": "fp8"}, "--kv-cache-dtype fp8 is not supported"),
                                             ({"head_size": 80}, "head size 80")])
def test_unsupported_features_are_refused_with_the_fix(kwargs, message):
    pytest.importorskip("flash_attn_v100", reason="flash-attn-v100 is not built")
    from vllm_sm7x.attention.backend import FlashAttnV100Impl

    args = dict(num_heads=8, head_size=128, scale=0.1, num_kv_heads=2, alibi_slopes=None, sliding_window=None,
                kv_cache_dtype="auto")
    with pytest.raises(NotImplementedError, match=message):
        FlashAttnV100Impl(**{**args, **kwargs})


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
