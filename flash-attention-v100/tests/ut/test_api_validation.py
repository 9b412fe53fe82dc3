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


@pytest.mark.parametrize("q_heads, kv_heads, kv_dim, message", [
    (5, 2, 64, "q's 5 heads are not a multiple of the 2 KV heads"),
    (4, 2, 128, "k/v head_dim 128 differs from q's 64"),
])
def test_gqa_and_head_dim_mismatches_are_named(q_heads, kv_heads, kv_dim, message):
    q = torch.zeros(1, 1, q_heads, 64, dtype=torch.float16)
    cache = torch.zeros(1, 16, kv_heads, kv_dim, dtype=torch.float16)
    with pytest.raises(ValueError, match=message):
        fa.flash_attn_with_kvcache(q, cache, cache)
    with pytest.raises(ValueError, match=message):
        fa.flash_attn_varlen_func(q[0], cache[0], cache[0], torch.tensor([0, 1], dtype=torch.int32),
                                  torch.tensor([0, 16], dtype=torch.int32), 1, 16)


def test_k_and_v_of_different_shapes_or_ranks_are_named():
    q, k_cache, _ = inputs()
    with pytest.raises(ValueError, match="k and v must have the same shape"):
        fa.flash_attn_with_kvcache(q, k_cache, k_cache[:, :8])
    with pytest.raises(ValueError, match=r"k must be \[batch or num_blocks"):
        fa.flash_attn_with_kvcache(q, k_cache[0], k_cache[0])
    with pytest.raises(ValueError, match=r"new k/v must both be \[batch=1, seqlen_new, kv_heads=2, head_dim=64\]"):
        fa.flash_attn_with_kvcache(q, k_cache, k_cache, k=torch.zeros(1, 1, 4, 64, dtype=torch.float16),
                                   v=torch.zeros(1, 1, 4, 64, dtype=torch.float16), cache_seqlens=0)


def test_appending_past_the_cache_with_an_int_length_is_refused():
    q, k_cache, v_cache = inputs()  # 16 positions
    new = torch.zeros(1, 3, 2, 64, dtype=torch.float16)
    with pytest.raises(ValueError, match="appending 3 keys after 14 overflows the cache's 16 positions"):
        fa.flash_attn_with_kvcache(q, k_cache, v_cache, k=new, v=new, cache_seqlens=14)
    with pytest.raises(ValueError, match="appending k/v needs cache_seqlens"):
        fa.flash_attn_with_kvcache(q, k_cache, v_cache, k=new, v=new)


def test_varlen_names_its_layout_and_its_missing_lengths():
    q = torch.zeros(7, 4, 64, dtype=torch.float16)
    k = torch.zeros(9, 2, 64, dtype=torch.float16)
    cu_q, cu_k = torch.tensor([0, 7], dtype=torch.int32), torch.tensor([0, 9], dtype=torch.int32)
    with pytest.raises(ValueError, match=r"varlen q must be \[total_q, heads, head_dim\], got \(1, 7, 4, 64\)"):
        fa.flash_attn_varlen_func(q[None], k, k, cu_q, cu_k, 7, 9)
    with pytest.raises(ValueError, match="unpaged k/v need cu_seqlens_k and max_seqlen_k"):
        fa.flash_attn_varlen_func(q, k, k, cu_q, None, 7, 9)
    with pytest.raises(ValueError, match="unpaged k/v need cu_seqlens_k and max_seqlen_k"):
        fa.flash_attn_varlen_func(q, k, k, cu_q, cu_k, 7, None)
    with pytest.raises(ValueError, match="needs cu_seqlens_q"):
        fa.flash_attn_varlen_func(q, k, k, None, cu_k, 7, 9)
    with pytest.raises(ValueError, match=r"k must be \[num_blocks, block_size, kv_heads, head_dim\] with block_table"):
        fa.flash_attn_varlen_func(q, k, k, cu_q, None, 7, 9, block_table=torch.zeros(1, 1, dtype=torch.int32),
                                  seqused_k=torch.tensor([9], dtype=torch.int32))


def test_flash_attn_func_refuses_dropout_and_bf16():
    q = torch.zeros(1, 3, 4, 64, dtype=torch.float16)
    with pytest.raises(ValueError, match="dropout is not supported"):
        fa.flash_attn_func(q, q, q, dropout_p=0.1)
    with pytest.raises(ValueError, match="bfloat16"):
        fa.flash_attn_func(q.bfloat16(), q.bfloat16(), q.bfloat16())


def test_install_check_module_names_import():
    # Users' install checks: `import flash_attn_v100_cuda, paged_kv_utils`.
    import flash_attn_v100_cuda
    import paged_kv_utils

    assert flash_attn_v100_cuda.__version__ == paged_kv_utils.__version__ == fa.__version__
    assert paged_kv_utils.write_kv_cache is fa.write_kv_cache
    with pytest.raises(AttributeError, match="call flash_attn_v100.flash_attn_func"):
        flash_attn_v100_cuda.fwd  # noqa: B018  (the older package's native entry point)


def test_e5m2_reference_rounds_like_torch_on_every_fp16_value(e5m2):
    # The kernels' E5M2 write mirrors this reference; check it against PyTorch's own float8_e5m2 cast
    # over all 65536 fp16 bit patterns (PyTorch does not saturate: compare where neither saturates).
    quantize, dequantize = e5m2
    halves = torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16).view(torch.float16)
    ours, theirs = quantize(halves), halves.to(torch.float8_e5m2)
    in_range = halves.float().abs() <= 57344
    assert torch.equal(ours.view(torch.uint8)[in_range], theirs.view(torch.uint8)[in_range])
    assert torch.isnan(dequantize(ours)[halves.isnan()]).all()
    big = halves.float().abs() > 57344  # saturated, inf included
    assert (dequantize(ours)[big & ~halves.isnan()].float().abs() == 57344).all()
    # Reading back is exact: a representable value survives the round trip.
    assert torch.equal(quantize(dequantize(theirs[in_range])).view(torch.uint8), theirs[in_range].view(torch.uint8))


@pytest.mark.parametrize("scale", [0.37, 0.05, 3.0])
def test_e5m2_reference_rounds_once_with_a_scale(e5m2, scale):
    # value / scale is a float32: one rounding to E5M2, as PyTorch's float32 -> float8_e5m2 cast does.
    quantize, _ = e5m2
    x = torch.randn(1 << 20, generator=torch.Generator().manual_seed(0)) * 20
    expected = (x / scale).to(torch.float8_e5m2)
    in_range = (x / scale).abs() <= 57344
    assert torch.equal(quantize(x, scale).view(torch.uint8)[in_range], expected.view(torch.uint8)[in_range])


def test_fp8_caches_other_than_e5m2_get_the_fix():
    q = torch.zeros(1, 1, 4, 64, dtype=torch.float16)
    with pytest.raises(ValueError, match="must be float16 or float8_e5m2"):
        fa.flash_attn_with_kvcache(q, torch.zeros(1, 16, 2, 64, dtype=torch.float8_e4m3fn),
                                   torch.zeros(1, 16, 2, 64, dtype=torch.float8_e4m3fn))


@pytest.mark.parametrize("rows, kernel", [(1, "mma8"), (6, "mma8"), (8, "mma8"), (9, "mma"), (16, "mma"),
                                          (17, "mma32"), (30, "mma32"), (256, "mma32")])
def test_volta_decode_kernel_by_query_rows(rows, kernel, monkeypatch):
    # q_len x query heads per KV head: plain decode on the 8-row kernel's Volta form (flash_api.cpp says on
    # what estimate), MTP verification (5 x 6 = 30) on 32 rows per CTA above 16.
    monkeypatch.delenv("FLASH_ATTN_V100_DECODE", raising=False)
    assert fa.decode_kernel(rows, "sm70") == kernel


@pytest.mark.parametrize("rows", [1, 6, 8, 9, 30, 256])
@pytest.mark.parametrize("with_prefill", [False, True])
def test_turing_decode_takes_the_8_row_tensor_core_kernel_for_every_row_count(rows, with_prefill, monkeypatch):
    # Measured faster than every other decode kernel on every case of benchmarks/attention.py (H200, sm75
    # path, attention-sm75-h200-2026-12-03-mma8.json).
    monkeypatch.delenv("FLASH_ATTN_V100_DECODE", raising=False)
    assert fa.decode_kernel(rows, "sm75", with_prefill=with_prefill) == "mma8"


@pytest.mark.parametrize("rows, kernel", [(6, "mma8"), (16, "mma"), (96, "mma")])
def test_a_mixed_volta_batch_keeps_told_plain_decodes_on_8_rows_and_others_on_the_16_row_form(rows, kernel,
                                                                                               monkeypatch):
    # With a prefill in the call, the short sequences' rows are those of the longest (up to 16 per KV
    # head): plain decodes among them would waste 26 of 32 rows. Told they hold at most 8, the 8-row kernel.
    monkeypatch.delenv("FLASH_ATTN_V100_DECODE", raising=False)
    assert fa.decode_kernel(rows, "sm70", with_prefill=True) == kernel
    monkeypatch.setenv("FLASH_ATTN_V100_DECODE", "mma32")  # the switch still forces it
    assert fa.decode_kernel(rows, "sm70", with_prefill=True) == "mma32"


@pytest.mark.parametrize("forced", ["simt", "mma", "mma32", "mma8"])
@pytest.mark.parametrize("path", ["sm70", "sm75"])
def test_the_decode_switch_forces_a_kernel(forced, path, monkeypatch):
    monkeypatch.setenv("FLASH_ATTN_V100_DECODE", forced)
    assert fa.decode_kernel(1, path) == forced and fa.decode_kernel(30, path) == forced


def test_the_pair_kernel_is_forced_on_the_turing_path_only(monkeypatch):
    # Built on Turing's m16n8k8 (decode_pairs_sm75.cu); not a default until measured.
    monkeypatch.setenv("FLASH_ATTN_V100_DECODE", "pairs")
    assert fa.decode_kernel(30, "sm75") == "pairs"
    with pytest.raises(ValueError, match="pairs runs on the sm75 path only"):
        fa.decode_kernel(30, "sm70")


def test_an_unknown_decode_kernel_names_the_choices(monkeypatch):
    monkeypatch.setenv("FLASH_ATTN_V100_DECODE", "tensor")
    with pytest.raises(ValueError, match="FLASH_ATTN_V100_DECODE must be 'simt', 'mma', 'mma32', 'mma8' or 'pairs'"):
        fa.decode_kernel(6, "sm75")
    with pytest.raises(ValueError, match="query_rows must be >= 1"):
        fa.decode_kernel(0, "sm75")
    with pytest.raises(ValueError, match="path must be 'sm70' or 'sm75'"):
        fa.decode_kernel(6, "auto")
