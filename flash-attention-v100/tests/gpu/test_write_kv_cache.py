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


def test_slots_past_the_cache_are_skipped_not_written():
    # A slot at or past num_blocks * block_size would write past the cache: the kernel skips it like padding.
    from flash_attn_v100 import write_kv_cache

    key = torch.randn(4, 2, 64, device="cuda").half()
    poison = torch.full((2, 16, 2, 64), float("nan"), device="cuda").half()
    key_cache, value_cache = poison.clone(), poison.clone()
    write_kv_cache(key, key, key_cache, value_cache, torch.tensor([31, 32, 1 << 40, 5], device="cuda"))
    torch.cuda.synchronize()
    expected = poison.clone()
    expected[1, 15], expected[0, 5] = key[0], key[3]
    torch.testing.assert_close(key_cache, expected, equal_nan=True, rtol=0, atol=0)
    torch.testing.assert_close(value_cache, expected, equal_nan=True, rtol=0, atol=0)


def test_bad_inputs_get_clear_errors():
    from flash_attn_v100 import write_kv_cache

    key = torch.randn(4, 2, 64, device="cuda").half()
    cache = torch.zeros(2, 16, 2, 64, device="cuda").half()
    slots = torch.arange(4, device="cuda")
    with pytest.raises(ValueError, match="bfloat16"):
        write_kv_cache(key.bfloat16(), key.bfloat16(), cache, cache.clone(), slots)
    with pytest.raises(ValueError, match=r"view\(torch.float8_e5m2\)"):
        write_kv_cache(key, key, cache.view(torch.uint8)[..., :64], cache.view(torch.uint8)[..., 64:], slots)
    with pytest.raises(ValueError, match="E4M3 KV caches are not supported"):
        e4m3 = torch.zeros(2, 16, 2, 64, device="cuda", dtype=torch.float8_e4m3fn)
        write_kv_cache(key, key, e4m3, e4m3.clone(), slots)
    with pytest.raises(ValueError, match="scales must be positive"):
        e5m2 = torch.zeros(2, 16, 2, 64, device="cuda", dtype=torch.float8_e5m2)
        write_kv_cache(key, key, e5m2, e5m2.clone(), slots, 0.0, 1.0)
    with pytest.raises(RuntimeError, match="do not match key"):
        write_kv_cache(key, key, torch.zeros(2, 16, 2, 32, device="cuda").half(),
                       torch.zeros(2, 16, 2, 32, device="cuda").half(), slots)
    with pytest.raises(RuntimeError, match="int64"):
        write_kv_cache(key, key, cache, cache.clone(), slots.int())


def vllm_layout_caches(num_blocks, block_size, kv_heads, head_size, dtype):
    """vLLM's flash-layout KV tensor [num_blocks, block_size, kv_heads, 2 * head_size] split into the key
    and value views the backend passes (strided: each head row interleaves key and value)."""
    kv = torch.full((num_blocks, block_size, kv_heads, 2 * head_size), float("nan"), device="cuda").to(dtype)
    return kv[..., :head_size], kv[..., head_size:]


@pytest.mark.parametrize("num_tokens, kv_heads, head_size, block_size", [(37, 4, 128, 16), (19, 3, 36, 7),
                                                                         (5, 2, 256, 528)])
@pytest.mark.parametrize("scale", [1.0, 0.37])
def test_fp8_e5m2_write_rounds_as_the_reference(num_tokens, kv_heads, head_size, block_size, scale, seed, e5m2):
    from flash_attn_v100 import write_kv_cache

    quantize, _ = e5m2
    gen = torch.Generator(device="cuda").manual_seed(seed)
    num_blocks = (num_tokens + 3) // block_size + 3
    # Values across E5M2's range, ties of the rounding included, and a few beyond it (saturated).
    key = (torch.randn(num_tokens + 4, kv_heads, head_size, device="cuda", generator=gen) * 300).half()
    value = (torch.randn(num_tokens + 4, kv_heads, head_size, device="cuda", generator=gen) * 3).half()
    key[0, 0, :4] = torch.tensor([60000.0, -65504.0, 1.125, 3.0 * 2 ** -16], device="cuda").half()
    slots = torch.randperm(num_blocks * block_size, device="cuda", generator=gen)[:num_tokens]  # 4 padded rows
    slots[::5] = -1
    key_cache, value_cache = vllm_layout_caches(num_blocks, block_size, kv_heads, head_size, torch.float8_e5m2)
    expected_k, expected_v = vllm_layout_caches(num_blocks, block_size, kv_heads, head_size, torch.float8_e5m2)

    write_kv_cache(key, value, key_cache, value_cache, slots, scale, 2 * scale)
    reference_write(quantize(key, scale).view(torch.uint8), quantize(value, 2 * scale).view(torch.uint8),
                    expected_k.view(torch.uint8), expected_v.view(torch.uint8), slots)
    torch.cuda.synchronize()
    assert torch.equal(key_cache.view(torch.uint8), expected_k.view(torch.uint8))
    assert torch.equal(value_cache.view(torch.uint8), expected_v.view(torch.uint8))


def test_op_schema_and_fake_implementation():
    import flash_attn_v100  # noqa: F401

    key = torch.randn(3, 2, 64, device="cuda").half()
    cache = torch.zeros(2, 16, 2, 64, device="cuda").half()
    torch.library.opcheck(torch.ops.flash_attn_v100.write_kv_cache.default,
                          (key, key.clone(), cache, cache.clone(), torch.tensor([0, 17, -1], device="cuda")))
    fp8 = torch.zeros(2, 16, 2, 64, device="cuda", dtype=torch.float8_e5m2)
    # Not test_schema here: its mutation check multiplies tensors, which torch lacks for float8 (the
    # fp16 call above checks the same schema).
    torch.library.opcheck(torch.ops.flash_attn_v100.write_kv_cache.default,
                          (key, key.clone(), fp8, fp8.clone(), torch.tensor([0, 17], device="cuda"), 0.5, 2.0),
                          test_utils=("test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic"))
