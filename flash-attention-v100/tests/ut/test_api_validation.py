"""Bad input to flash_attn_with_kvcache gets a clear error before any kernel runs (CPU tensors
suffice: the checks come first)."""
import pytest
import torch

fa = pytest.importorskip("flash_attn_v100", reason="flash-attn-v100 is not built")


def inputs(dtype=torch.float16, dim=64):
    q = torch.zeros(1, 1, 4, dim, dtype=dtype)
    cache = torch.zeros(1, 16, 2, dim, dtype=dtype)
    return q, cache, cache


@pytest.mark.parametrize("kwargs, message", [
    ({"dtype": torch.bfloat16}, "bfloat16; SM70/SM75 have no bf16 tensor cores"),
    ({"dtype": torch.float32}, "must be float16"),
    ({"dim": 96}, r"head_dim 96 is not supported; use one of \(64, 128, 256\)"),
])
def test_dtype_and_head_dim(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fa.flash_attn_with_kvcache(*inputs(**kwargs))


def test_window_right_k_without_v_and_alibi():
    q, k_cache, v_cache = inputs()
    with pytest.raises(ValueError, match="window_size right = 5 is not supported"):
        fa.flash_attn_with_kvcache(q, k_cache, v_cache, window_size=(-1, 5))
    with pytest.raises(ValueError, match="pass both k and v"):
        fa.flash_attn_with_kvcache(q, k_cache, v_cache, k=torch.zeros(1, 1, 2, 64, dtype=torch.float16))
    with pytest.raises(ValueError, match="ALiBi and in-kernel rotary are not supported"):
        fa.flash_attn_with_kvcache(q, k_cache, v_cache, alibi_slopes=torch.zeros(4))
