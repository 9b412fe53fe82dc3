"""Paged KV write against a PyTorch reference: poisoned caches, padding slots, strided inputs, and
head sizes that take the 16-byte and the element-wise copy."""
import pytest
import torch

pytestmark = pytest.mark.gpu


def reference_write(key, value, key_cache, value_cache, slots):
    block_size = key_cache.shape[1]
    for token, slot in enumerate(slots.tolist()):
        if slot >= 0:
            key_cache[slot // block_size, slot % block_size] = key[token]
            value_cache[slot // block_size, slot % block_size] = value[token]


@pytest.mark.parametrize("num_tokens, kv_heads, head_size, block_size",
                         [(1, 1, 64, 16), (37, 4, 128, 16), (5, 2, 256, 528), (19, 3, 36, 7), (64, 1, 80, 32)])
@pytest.mark.parametrize("strided", [False, True])
def test_matches_reference(num_tokens, kv_heads, head_size, block_size, strided, seed):
    from flash_attn_v100 import write_kv_cache

    gen = torch.Generator(device="cuda").manual_seed(seed)
    num_blocks = (num_tokens + 3) // block_size + 3
    if strided:  # keys and values as slices of one fused qkv projection, as vLLM passes them
        qkv = torch.randn(num_tokens, 3 * kv_heads * head_size + 8, device="cuda", generator=gen).half()
        key = qkv[:, 8: 8 + kv_heads * head_size].view(num_tokens, kv_heads, head_size)
        value = qkv[:, 8 + kv_heads * head_size: 8 + 2 * kv_heads * head_size].view(num_tokens, kv_heads, head_size)
    else:
        key = torch.randn(num_tokens, kv_heads, head_size, device="cuda", generator=gen).half()
        value = torch.randn(num_tokens, kv_heads, head_size, device="cuda", generator=gen).half()
    slots = torch.randperm(num_blocks * block_size, device="cuda", generator=gen)[:num_tokens]
    slots[::5] = -1  # padding tokens are skipped
    poison = torch.full((num_blocks, block_size, kv_heads, head_size), float("nan"), device="cuda").half()
    key_cache, value_cache = poison.clone(), poison.clone()
    expected_k, expected_v = poison.clone(), poison.clone()

    write_kv_cache(key, value, key_cache, value_cache, slots)
    reference_write(key, value, expected_k, expected_v, slots)
    torch.cuda.synchronize()
    torch.testing.assert_close(key_cache, expected_k, equal_nan=True, rtol=0, atol=0)
    torch.testing.assert_close(value_cache, expected_v, equal_nan=True, rtol=0, atol=0)


def test_bad_inputs_get_clear_errors():
    from flash_attn_v100 import write_kv_cache

    key = torch.randn(4, 2, 64, device="cuda").half()
    cache = torch.zeros(2, 16, 2, 64, device="cuda").half()
    slots = torch.arange(4, device="cuda")
    with pytest.raises(RuntimeError, match="float16"):
        write_kv_cache(key.bfloat16(), key.bfloat16(), cache, cache.clone(), slots)
    with pytest.raises(RuntimeError, match="do not match key"):
        write_kv_cache(key, key, torch.zeros(2, 16, 2, 32, device="cuda").half(),
                       torch.zeros(2, 16, 2, 32, device="cuda").half(), slots)
    with pytest.raises(RuntimeError, match="int64"):
        write_kv_cache(key, key, cache, cache.clone(), slots.int())


def test_op_schema_and_fake_implementation():
    import flash_attn_v100  # noqa: F401

    key = torch.randn(3, 2, 64, device="cuda").half()
    cache = torch.zeros(2, 16, 2, 64, device="cuda").half()
    torch.library.opcheck(torch.ops.flash_attn_v100.write_kv_cache.default,
                          (key, key.clone(), cache, cache.clone(), torch.tensor([0, 17, -1], device="cuda")))
