"""flash_attn_with_kvcache and flash_attn_varlen_func against a float32 PyTorch reference: head dims 64/128/256, GQA ratios
1/4/6/8, query blocks of 1 to 33 tokens, ragged cache lengths, paged and contiguous caches, causal
and not, sliding windows, softcap, appended k/v, split-KV against one pass, CUDA graphs. Outputs come
from the caching allocator, poisoned with NaN first, so unwritten elements fail."""
import math

import pytest
import torch

pytestmark = pytest.mark.gpu
TOLERANCE = 2e-3


def reference(q, k_cache, v_cache, block_table, seqlens, scale, causal, window_left, softcap):
    """float32 attention, one sequence and head at a time, straight from the cache pages."""
    batch, q_len, heads, dim = q.shape
    kv_heads, block_size = k_cache.shape[2], k_cache.shape[1]
    out = torch.zeros(batch, q_len, heads, dim, dtype=torch.float32, device=q.device)
    lse = torch.full((batch, heads, q_len), -math.inf, device=q.device)
    for b in range(batch):
        keys = int(seqlens[b])
        if keys == 0:
            continue
        pos = torch.arange(keys, device=q.device)
        blocks = block_table[b, pos // block_size].long()
        k = k_cache[blocks, pos % block_size].float()  # [keys, kv_heads, dim]
        v = v_cache[blocks, pos % block_size].float()
        q_pos = keys - q_len + torch.arange(q_len, device=q.device)
        visible = torch.ones(q_len, keys, dtype=torch.bool, device=q.device)
        if causal:
            visible &= pos[None, :] <= q_pos[:, None]
        if window_left >= 0:
            visible &= pos[None, :] >= q_pos[:, None] - window_left
        for h in range(heads):
            kv = h // (heads // kv_heads)
            s = (q[b, :, h].float() @ k[:, kv].T) * scale
            if softcap > 0:
                s = softcap * torch.tanh(s / softcap)
            s = s.masked_fill(~visible, -math.inf)
            row_lse = torch.logsumexp(s, -1)
            p = torch.exp(s - row_lse[:, None]).nan_to_num(0.0)
            out[b, :, h] = p @ v[:, kv]
            lse[b, h] = row_lse
    return out, lse


def poison(*shapes):
    """Free NaN-filled blocks of exactly these (shape, dtype)s, so the op's outputs reuse them."""
    junk = [torch.full(shape, float("nan"), dtype=dtype, device="cuda") for shape, dtype in shapes]
    del junk


def paged_cache(seqlens, kv_heads, dim, block_size, gen, extra_blocks=3):
    """Random paged K/V with shuffled block tables (pages of one sequence are not adjacent)."""
    batch = len(seqlens)
    per_seq = max(1, -(-max(seqlens) // block_size))
    num_blocks = batch * per_seq + extra_blocks
    k_cache = torch.randn(num_blocks, block_size, kv_heads, dim, device="cuda", generator=gen).half()
    v_cache = torch.randn(num_blocks, block_size, kv_heads, dim, device="cuda", generator=gen).half()
    order = torch.randperm(num_blocks, device="cuda", generator=gen)[:batch * per_seq]
    block_table = order.view(batch, per_seq).int()
    return k_cache, v_cache, block_table


def relative_error(out, ref):
    """Worst relative error over output rows (one query and head each), so a wrong long-context row is
    not hidden by many short, large-norm ones."""
    assert not out.isnan().any(), "unwritten (NaN) outputs"
    out, ref = out.float().reshape(-1, out.shape[-1]), ref.reshape(-1, ref.shape[-1])
    norms = ref.norm(dim=-1)
    keep = norms > 0  # rows that see no key are checked separately
    return float(((out - ref).norm(dim=-1)[keep] / norms[keep]).max())


@pytest.mark.parametrize("dim", [64, 128, 256])
@pytest.mark.parametrize("heads, kv_heads", [(4, 4), (8, 2), (6, 1), (16, 2)])
@pytest.mark.parametrize("q_len", [1, 2, 5, 16, 33])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("num_splits", [1, 3, 0])
def test_paged_decode_matches_reference(fa, dim, heads, kv_heads, q_len, causal, num_splits, seed):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    seqlens = [q_len, q_len + 17, q_len + 300, q_len + 1001]
    k_cache, v_cache, block_table = paged_cache(seqlens, kv_heads, dim, 16, gen)
    q = torch.randn(len(seqlens), q_len, heads, dim, device="cuda", generator=gen).half()
    lens = torch.tensor(seqlens, dtype=torch.int32, device="cuda")
    poison((q.shape, torch.float16), ((heads, q.shape[0] * q_len), torch.float32))
    out, lse = fa.flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=lens, block_table=block_table,
                                         causal=causal, num_splits=num_splits, return_softmax_lse=True)
    ref, ref_lse = reference(q, k_cache, v_cache, block_table, lens, 1 / math.sqrt(dim), causal, -1, 0.0)
    assert relative_error(out, ref) < TOLERANCE
    torch.testing.assert_close(lse, ref_lse, atol=2e-3, rtol=1e-4)


@pytest.mark.parametrize("window_left, softcap", [(0, 0.0), (7, 0.0), (100, 30.0), (-1, 5.0)])
def test_windows_and_softcap(fa, window_left, softcap, seed):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    seqlens = [3, 64, 513]
    k_cache, v_cache, block_table = paged_cache(seqlens, 2, 128, 32, gen)
    q = torch.randn(3, 3, 8, 128, device="cuda", generator=gen).half()
    lens = torch.tensor(seqlens, dtype=torch.int32, device="cuda")
    out = fa.flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=lens, block_table=block_table, causal=True,
                                     window_size=(window_left, 0), softcap=softcap)
    ref, _ = reference(q, k_cache, v_cache, block_table, lens, 1 / math.sqrt(128), True, window_left, softcap)
    assert relative_error(out, ref) < TOLERANCE


@pytest.mark.parametrize("num_splits", [1, 2, 7, 0])
def test_split_kv_agrees_with_one_pass(fa, num_splits, seed):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    seqlens = [5000, 20, 1]
    k_cache, v_cache, block_table = paged_cache(seqlens, 1, 256, 528, gen)  # hybrid models' large blocks
    q = torch.randn(3, 1, 6, 256, device="cuda", generator=gen).half()
    lens = torch.tensor(seqlens, dtype=torch.int32, device="cuda")
    out = fa.flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=lens, block_table=block_table,
                                     causal=True, num_splits=num_splits)
    ref, _ = reference(q, k_cache, v_cache, block_table, lens, 1 / math.sqrt(256), True, -1, 0.0)
    assert relative_error(out, ref) < TOLERANCE


@pytest.mark.parametrize("num_splits", [0, 64])
@pytest.mark.parametrize("q_len, window_left", [(1, -1), (3, -1), (1, 40)])
def test_short_contexts_in_a_wide_block_table(fa, num_splits, q_len, window_left, seed):
    """vLLM sizes block tables by max_model_len: a few keys in room for 8192 leave most splits empty
    (and, with a window, splits before it too); the merge must skip them. Partials are poisoned."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    seqlens = [q_len, 37, 300, 129]
    k_cache, v_cache, block_table = paged_cache(seqlens, 2, 256, 16, gen)
    wide = torch.randint(0, k_cache.shape[0], (len(seqlens), 8192 // 16), device="cuda", generator=gen).int()
    wide[:, :block_table.shape[1]] = block_table
    q = torch.randn(len(seqlens), q_len, 12, 256, device="cuda", generator=gen).half()
    lens = torch.tensor(seqlens, dtype=torch.int32, device="cuda")
    total_q = len(seqlens) * q_len
    poison(((128, total_q, 12, 256), torch.float32), ((128, total_q, 12), torch.float32), (q.shape, torch.float16))
    out = fa.flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=lens, block_table=wide, causal=True,
                                     window_size=(window_left, 0), num_splits=num_splits)
    ref, _ = reference(q, k_cache, v_cache, block_table, lens, 1 / math.sqrt(256), True, window_left, 0.0)
    assert relative_error(out, ref) < TOLERANCE


@pytest.mark.parametrize("q_len", [5, 40])
@pytest.mark.parametrize("num_splits", [1, 0])
def test_a_window_past_every_key_hides_none(fa, q_len, num_splits, seed):
    """A left window of INT32_MAX keys, with more queries than keys (the first queries sit left of key
    0, where q_pos - window would overflow int): every key stays visible, as with no window. q_len 5
    runs the decode kernels, 40 the prefill kernel."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    seqlens = [2, q_len + 9]
    k_cache, v_cache, block_table = paged_cache(seqlens, 2, 128, 16, gen)
    q = torch.randn(len(seqlens), q_len, 4, 128, device="cuda", generator=gen).half()
    lens = torch.tensor(seqlens, dtype=torch.int32, device="cuda")
    poison((q.shape, torch.float16))
    out = fa.flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=lens, block_table=block_table, causal=False,
                                     window_size=(2**31 - 1, -1), num_splits=num_splits)
    ref, _ = reference(q, k_cache, v_cache, block_table, lens, 1 / math.sqrt(128), False, -1, 0.0)
    assert relative_error(out, ref) < TOLERANCE


def test_contiguous_cache_equals_paged(fa, seed):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    batch, length, kv_heads, dim = 3, 200, 2, 64
    k_flat = torch.randn(batch, length, kv_heads, dim, device="cuda", generator=gen).half()
    v_flat = torch.randn(batch, length, kv_heads, dim, device="cuda", generator=gen).half()
    q = torch.randn(batch, 2, 4, dim, device="cuda", generator=gen).half()
    lens = torch.tensor([200, 77, 2], dtype=torch.int32, device="cuda")
    contiguous = fa.flash_attn_with_kvcache(q, k_flat, v_flat, cache_seqlens=lens, causal=True)
    pages = 8  # the same data cut into 25-token pages, listed in order
    k_paged = k_flat.view(batch * pages, length // pages, kv_heads, dim)
    v_paged = v_flat.view(batch * pages, length // pages, kv_heads, dim)
    table = torch.arange(batch * pages, dtype=torch.int32, device="cuda").view(batch, pages)
    paged = fa.flash_attn_with_kvcache(q, k_paged, v_paged, cache_seqlens=lens, block_table=table, causal=True)
    torch.testing.assert_close(contiguous, paged, rtol=0, atol=0)


def test_appended_k_v_land_in_the_cache_and_are_attended(fa, seed):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    seqlens = [10, 40]
    k_cache, v_cache, block_table = paged_cache([s + 5 for s in seqlens], 2, 128, 16, gen)
    q = torch.randn(2, 5, 4, 128, device="cuda", generator=gen).half()
    k_new = torch.randn(2, 5, 2, 128, device="cuda", generator=gen).half()
    v_new = torch.randn(2, 5, 2, 128, device="cuda", generator=gen).half()
    lens = torch.tensor(seqlens, dtype=torch.int32, device="cuda")
    out = fa.flash_attn_with_kvcache(q, k_cache, v_cache, k=k_new, v=v_new, cache_seqlens=lens,
                                     block_table=block_table, causal=True)
    for b, start in enumerate(seqlens):
        pos = torch.arange(start, start + 5, device="cuda")
        blocks = block_table[b, pos // 16].long()
        torch.testing.assert_close(k_cache[blocks, pos % 16], k_new[b], rtol=0, atol=0)
        torch.testing.assert_close(v_cache[blocks, pos % 16], v_new[b], rtol=0, atol=0)
    ref, _ = reference(q, k_cache, v_cache, block_table, lens + 5, 1 / math.sqrt(128), True, -1, 0.0)
    assert relative_error(out, ref) < TOLERANCE


def test_appending_past_the_block_table_drops_what_does_not_fit(fa, seed):
    # With per-sequence lengths on the GPU the host cannot check capacity without a sync: the positions past
    # the table are dropped (no lookup past it, no write past the cache) and attention reads what fits.
    gen = torch.Generator(device="cuda").manual_seed(seed)
    k_cache, v_cache, table = paged_cache([30, 30], 2, 128, 16, gen, extra_blocks=0)  # 2 blocks of 16 each
    before_k = k_cache.clone()
    q = torch.randn(2, 1, 4, 128, device="cuda", generator=gen).half()
    new = torch.randn(2, 5, 2, 128, device="cuda", generator=gen).half()
    lens = torch.tensor([29, 10], dtype=torch.int32, device="cuda")  # sequence 0: 3 of its 5 new keys fit
    out = fa.flash_attn_with_kvcache(q, k_cache, v_cache, k=new, v=new, cache_seqlens=lens, block_table=table)
    torch.cuda.synchronize()
    assert torch.isfinite(out).all()
    expected_k = before_k.clone()
    for b, start in enumerate([29, 10]):
        for j in range(5):
            pos = start + j
            if pos < 32:
                expected_k[table[b, pos // 16].long(), pos % 16] = new[b, j]
    torch.testing.assert_close(k_cache, expected_k, equal_nan=True, rtol=0, atol=0)


@pytest.mark.parametrize("num_splits", [1, 4])  # one pass, and the split-merge kernel
def test_a_query_with_no_keys_gets_zeros_and_minus_inf_lse(fa, num_splits):
    k_cache = torch.randn(8, 16, 1, 64, device="cuda").half()
    q = torch.randn(2, 1, 2, 64, device="cuda").half()
    lens = torch.tensor([0, 3], dtype=torch.int32, device="cuda")
    table = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]], dtype=torch.int32, device="cuda")
    poison((q.shape, torch.float16), ((2, 2), torch.float32))
    out, lse = fa.flash_attn_with_kvcache(q, k_cache, k_cache, cache_seqlens=lens, block_table=table,
                                         num_splits=num_splits, return_softmax_lse=True)
    assert (out[0] == 0).all() and torch.isinf(lse[0]).all() and (lse[0] < 0).all()
    assert torch.isfinite(lse[1]).all() and not out[1].isnan().any()


def test_cuda_graph_replay(fa, seed):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    k_cache, v_cache, block_table = paged_cache([1600, 33], 1, 256, 16, gen)
    q = torch.randn(2, 1, 6, 256, device="cuda", generator=gen).half()
    lens = torch.tensor([900, 33], dtype=torch.int32, device="cuda")
    fa.flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=lens, block_table=block_table, causal=True)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fa.flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=lens, block_table=block_table,
                                         causal=True)
    lens.copy_(torch.tensor([1500, 40], dtype=torch.int32))  # later steps, same graph (pages are there)
    q.copy_(torch.randn(q.shape, device="cuda", generator=gen).half())
    graph.replay()
    torch.cuda.synchronize()
    ref, _ = reference(q, k_cache, v_cache, block_table, lens, 1 / math.sqrt(256), True, -1, 0.0)
    assert relative_error(out, ref) < TOLERANCE


def test_op_schema_and_fake(fa):
    q = torch.randn(2, 1, 4, 64, device="cuda").half()
    k_cache = torch.randn(3, 16, 2, 64, device="cuda").half()
    table = torch.tensor([[0], [2]], dtype=torch.int32, device="cuda")
    lens = torch.tensor([5, 16], dtype=torch.int32, device="cuda")
    cu = torch.tensor([0, 1, 2], dtype=torch.int32, device="cuda")
    torch.library.opcheck(torch.ops.flash_attn_v100.paged_attention.default,
                          (q.view(2, 4, 64), k_cache, k_cache, cu, lens, table, 1, 0.125, True, -1, 0.0, 0, "auto"))


def varlen_reference(q, cu_q, k_cache, v_cache, block_table, seqlens, scale, causal, window_left=-1, softcap=0.0):
    outs = []
    for b in range(len(seqlens)):
        q_b = q[cu_q[b]:cu_q[b + 1]].unsqueeze(0)
        out, _ = reference(q_b, k_cache, v_cache, block_table[b:b + 1], seqlens[b:b + 1], scale, causal,
                           window_left, softcap)
        outs.append(out[0])
    return torch.cat(outs)


@pytest.mark.parametrize("causal", [True, False])
def test_varlen_mixed_prefill_and_decode_over_pages(fa, causal, seed):
    # One batch as vLLM schedules it: a prompt with a cached prefix, a fresh prompt, decodes, an MTP block.
    gen = torch.Generator(device="cuda").manual_seed(seed)
    q_lens, seqlens = [50, 37, 1, 1, 5], [300, 37, 900, 17, 64]
    k_cache, v_cache, block_table = paged_cache(seqlens, 2, 128, 16, gen)
    cu_q = torch.tensor([0] + list(torch.tensor(q_lens).cumsum(0)), dtype=torch.int32, device="cuda")
    q = torch.randn(sum(q_lens), 12, 128, device="cuda", generator=gen).half()
    lens = torch.tensor(seqlens, dtype=torch.int32, device="cuda")
    poison((q.shape, torch.float16), ((q.shape[1], q.shape[0]), torch.float32))
    out = fa.flash_attn_varlen_func(q, k_cache, v_cache, cu_q, None, max(q_lens), max(seqlens), causal=causal,
                                    block_table=block_table, seqused_k=lens)
    ref = varlen_reference(q, cu_q.tolist(), k_cache, v_cache, block_table, lens, 1 / math.sqrt(128), causal)
    assert relative_error(out, ref) < TOLERANCE


@pytest.mark.parametrize("dim, heads, kv_heads", [(256, 24, 4), (128, 12, 2)])
@pytest.mark.parametrize("q_lens, seqlens, longest_decode", [([1, 300, 1, 1], [4000, 300, 77, 2100], 1),
                                                             ([5, 40, 1], [600, 940, 33], 5),
                                                             ([16, 17, 2], [500, 17, 64], 16),
                                                             ([40, 17], [40, 500], 0)])
def test_a_mixed_batch_told_its_longest_decode_query(fa, dim, heads, kv_heads, q_lens, seqlens, longest_decode,
                                                     seed):
    # vLLM's builder passes the longest short query: the decode grid and KV splits are sized for it.
    from flash_attn_v100.flash_attn_interface import arch_path

    gen = torch.Generator(device="cuda").manual_seed(seed)
    k_cache, v_cache, block_table = paged_cache(seqlens, kv_heads, dim, 16, gen)
    cu_q = torch.tensor([0] + list(torch.tensor(q_lens).cumsum(0)), dtype=torch.int32, device="cuda")
    q = torch.randn(sum(q_lens), heads, dim, device="cuda", generator=gen).half()
    lens = torch.tensor(seqlens, dtype=torch.int32, device="cuda")
    args = (q, k_cache, v_cache, cu_q, lens, block_table, max(q_lens), 1 / math.sqrt(dim), True, -1, 0.0, 0,
            arch_path(), 1.0, 1.0)
    poison((q.shape, torch.float16), ((q.shape[1], q.shape[0]), torch.float32))
    out, lse = torch.ops.flash_attn_v100.paged_attention(*args, longest_decode)
    ref = varlen_reference(q, cu_q.tolist(), k_cache, v_cache, block_table, lens, 1 / math.sqrt(dim), True)
    assert relative_error(out, ref) < TOLERANCE
    poison((q.shape, torch.float16), ((q.shape[1], q.shape[0]), torch.float32))
    unsized, unsized_lse = torch.ops.flash_attn_v100.paged_attention(*args)  # -1: sized for 16 queries
    assert relative_error(unsized, ref) < TOLERANCE
    torch.testing.assert_close(lse, unsized_lse, rtol=0, atol=1e-3)


def test_a_longest_decode_query_told_too_short_leaves_the_rest_unwritten_and_nothing_else(fa, seed):
    # A caller's error (vLLM's builder reads exact offsets): queries past the value get no row of the grid
    # or of the split buffers. Every other output stays right: no write lands in another sequence's rows.
    from flash_attn_v100.flash_attn_interface import arch_path

    gen = torch.Generator(device="cuda").manual_seed(seed)
    q_lens, seqlens = [5, 300, 1, 5], [3000, 300, 2000, 4000]
    k_cache, v_cache, block_table = paged_cache(seqlens, 2, 128, 16, gen)
    cu_q = torch.tensor([0] + list(torch.tensor(q_lens).cumsum(0)), dtype=torch.int32, device="cuda")
    q = torch.randn(sum(q_lens), 12, 128, device="cuda", generator=gen).half()
    lens = torch.tensor(seqlens, dtype=torch.int32, device="cuda")
    out = torch.full_like(q, float("nan"))
    torch.ops.flash_attn_v100.paged_attention_out(out, q, k_cache, v_cache, cu_q, lens, block_table, 300,
                                                  1 / math.sqrt(128), True, -1, 0.0, 0, arch_path(), 1.0, 1.0, 2)
    ref = varlen_reference(q, cu_q.tolist(), k_cache, v_cache, block_table, lens, 1 / math.sqrt(128), True)
    told = torch.tensor([i < 2 for i in range(5)] + [True] * 300 + [True] + [i < 2 for i in range(5)], device="cuda")
    assert relative_error(out[told], ref[told]) < TOLERANCE
    assert out[~told].isnan().all()


@pytest.mark.parametrize("max_seqlen_q, longest_decode", [(300, 17), (300, -2), (5, 1), (5, 0)])
def test_a_longest_decode_query_that_cannot_be_is_refused(fa, max_seqlen_q, longest_decode):
    k_cache = torch.zeros(20, 16, 1, 64, device="cuda").half()
    q = torch.zeros(max_seqlen_q + 1, 1, 64, device="cuda").half()
    cu = torch.tensor([0, 1, max_seqlen_q + 1], dtype=torch.int32, device="cuda")
    with pytest.raises(ValueError, match="max_decode_q_len"):
        torch.ops.flash_attn_v100.paged_attention(
            q, k_cache, k_cache, cu, torch.tensor([1, max_seqlen_q], dtype=torch.int32, device="cuda"),
            torch.zeros(2, 20, dtype=torch.int32, device="cuda"), max_seqlen_q, 0.125, True, -1, 0.0, 0, "sm75",
            1.0, 1.0, longest_decode)


def test_varlen_unpaged_keys(fa, seed):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    lens = [7, 129, 1]
    total = sum(lens)
    k = torch.randn(total, 1, 64, device="cuda", generator=gen).half()
    v = torch.randn(total, 1, 64, device="cuda", generator=gen).half()
    q = torch.randn(total, 4, 64, device="cuda", generator=gen).half()
    cu = torch.tensor([0, 7, 136, 137], dtype=torch.int32, device="cuda")
    out = fa.flash_attn_varlen_func(q, k, v, cu, cu, 129, 129, causal=True)
    # The same keys as a paged cache of one-token blocks in order.
    table = torch.zeros(3, 129, dtype=torch.int32, device="cuda")
    for b in range(3):
        table[b, :lens[b]] = torch.arange(cu[b], cu[b + 1], device="cuda")
    ref = varlen_reference(q, cu.tolist(), k.unsqueeze(1), v.unsqueeze(1), table,
                           torch.tensor(lens, device="cuda"), 1 / 8, True)
    assert relative_error(out, ref) < TOLERANCE


@pytest.mark.parametrize("path", ["sm70", "sm75"])
@pytest.mark.parametrize("dim", [64, 128, 256])
@pytest.mark.parametrize("heads, kv_heads", [(4, 4), (12, 2)])
@pytest.mark.parametrize("causal", [True, False])
def test_tensor_core_prefill_matches_reference(fa, path, dim, heads, kv_heads, causal, seed, monkeypatch):
    # Query blocks longer than 16 take the mma kernel of the forced arch path; a cached prefix, ragged lengths.
    monkeypatch.setenv("VLLM_SM7X_EMULATE", path)
    gen = torch.Generator(device="cuda").manual_seed(seed)
    q_lens, seqlens = [17, 130, 64, 1], [17, 300, 64 + 33, 5]
    k_cache, v_cache, block_table = paged_cache(seqlens, kv_heads, dim, 16, gen)
    cu_q = torch.tensor([0] + list(torch.tensor(q_lens).cumsum(0)), dtype=torch.int32, device="cuda")
    q = torch.randn(sum(q_lens), heads, dim, device="cuda", generator=gen).half()
    lens = torch.tensor(seqlens, dtype=torch.int32, device="cuda")
    poison((q.shape, torch.float16), ((q.shape[1], q.shape[0]), torch.float32))
    out, lse, _ = fa.flash_attn_varlen_func(q, k_cache, v_cache, cu_q, None, max(q_lens), max(seqlens),
                                            causal=causal, block_table=block_table, seqused_k=lens,
                                            return_attn_probs=True)
    ref = varlen_reference(q, cu_q.tolist(), k_cache, v_cache, block_table, lens, 1 / math.sqrt(dim), causal)
    assert relative_error(out, ref) < TOLERANCE
    assert torch.isfinite(lse).all()


@pytest.mark.parametrize("path", ["sm70", "sm75"])
def test_tensor_core_prefill_window_and_softcap(fa, path, seed, monkeypatch):
    monkeypatch.setenv("VLLM_SM7X_EMULATE", path)
    gen = torch.Generator(device="cuda").manual_seed(seed)
    k_cache, v_cache, block_table = paged_cache([200], 2, 256, 32, gen)
    q = torch.randn(100, 6, 256, device="cuda", generator=gen).half()
    cu_q = torch.tensor([0, 100], dtype=torch.int32, device="cuda")
    lens = torch.tensor([200], dtype=torch.int32, device="cuda")
    out = fa.flash_attn_varlen_func(q, k_cache, v_cache, cu_q, None, 100, 200, causal=True, window_size=(40, 0),
                                    softcap=20.0, block_table=block_table, seqused_k=lens)
    ref = varlen_reference(q, [0, 100], k_cache, v_cache, block_table, lens, 1 / 16, True, 40, 20.0)
    assert relative_error(out, ref) < TOLERANCE


def test_prefill_on_a_gpu_without_a_native_path_names_the_switch(fa, monkeypatch):
    if torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("this GPU has a native SM7x path")
    monkeypatch.delenv("VLLM_SM7X_EMULATE", raising=False)
    k_cache = torch.zeros(2, 16, 1, 64, device="cuda").half()
    q = torch.zeros(20, 1, 64, device="cuda").half()
    with pytest.raises(ValueError, match="VLLM_SM7X_EMULATE"):
        fa.flash_attn_varlen_func(q, k_cache, k_cache, torch.tensor([0, 20], dtype=torch.int32, device="cuda"), None,
                                  20, 20, block_table=torch.tensor([[0, 1]], dtype=torch.int32, device="cuda"),
                                  seqused_k=torch.tensor([20], dtype=torch.int32, device="cuda"))


def test_the_pair_kernel_refuses_head_dim_64(fa, monkeypatch):
    # A warp pair splits each key's V loads, which at head_dim 64 are one 64-dim chunk: refused by name,
    # before any launch; on the sm70 path it is refused whatever the head_dim (test_api_validation.py).
    monkeypatch.setenv("VLLM_SM7X_EMULATE", "sm75")
    monkeypatch.setenv("FLASH_ATTN_V100_DECODE", "pairs")
    cache = torch.zeros(1, 16, 1, 64, device="cuda").half()
    q = torch.zeros(1, 5, 6, 64, device="cuda").half()
    with pytest.raises(ValueError, match="pairs takes head_dim 128 or 256"):
        fa.flash_attn_with_kvcache(q, cache, cache, cache_seqlens=torch.tensor([9], dtype=torch.int32, device="cuda"),
                                   causal=True)


def test_out_variant_writes_into_the_callers_buffer(fa, seed):
    # What the vLLM backend does: write into the first rows of its padded output buffer.
    gen = torch.Generator(device="cuda").manual_seed(seed)
    k_cache, v_cache, table = paged_cache([40, 300], 2, 128, 16, gen)
    q = torch.randn(2, 8, 128, device="cuda", generator=gen).half()
    args = (k_cache, v_cache, torch.tensor([0, 1, 2], dtype=torch.int32, device="cuda"),
            torch.tensor([40, 300], dtype=torch.int32, device="cuda"), table, 1, 0.088, True, -1, 0.0, 0, "auto")
    expected, expected_lse = torch.ops.flash_attn_v100.paged_attention(q, *args)
    buffer = torch.full((5, 8, 128), float("nan"), dtype=torch.float16, device="cuda")
    lse = torch.ops.flash_attn_v100.paged_attention_out(buffer[:2], q, *args)
    torch.testing.assert_close(buffer[:2], expected, rtol=0, atol=0)
    torch.testing.assert_close(lse, expected_lse, rtol=0, atol=0)
    assert buffer[2:].isnan().all()  # rows past the request untouched
    torch.library.opcheck(torch.ops.flash_attn_v100.paged_attention_out.default, (buffer[:2], q, *args))
