"""The MoE steps around the expert GEMM (csrc/moe): top-k softmax routing against a float64 reference
and against vLLM's own _moe_C.topk_softmax (chosen experts in order, ties: lower index first, their
probabilities, renormalisation, token_expert_indices; odd sizes, strided rows, poisoned outputs); the
row sort with its tile list; the SiLU gate and the weighted combine against float64."""
import pytest
import torch

from tests.gpu.kernel_checks import poison_free_memory, relative_error

pytestmark = pytest.mark.gpu
DEVICE = "cuda"


@pytest.fixture(autouse=True)
def kernels():
    from vllm_sm7x.ops import load_kernels

    load_kernels()


def reference(gating, topk, renormalize):
    """float64 softmax, experts sorted by probability with lower index first on ties."""
    prob = gating.double().softmax(-1)
    order = torch.sort(-prob, dim=-1, stable=True).indices[:, :topk]
    weights = prob.gather(1, order)
    if renormalize:
        weights = weights / weights.sum(-1, keepdim=True)
    return prob, weights, order


def poisoned(tokens, topk):
    return (torch.full((tokens, topk), float("nan"), device=DEVICE),
            torch.full((tokens, topk), -7, dtype=torch.int32, device=DEVICE),
            torch.full((tokens, topk), -7, dtype=torch.int32, device=DEVICE))


@pytest.mark.parametrize("tokens, experts, topk", [(1, 8, 2), (7, 60, 4), (333, 128, 8), (65, 256, 8),
                                                   (5, 512, 10), (3, 1000, 32), (9, 33, 32), (4, 1, 1)])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("renormalize", [False, True])
def test_topk_softmax_matches_reference(tokens, experts, topk, dtype, renormalize, seed):
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    rows = (torch.randn(tokens, experts + 5, generator=gen, device=DEVICE) * 3).to(dtype)
    gating = rows[:, 5:]  # strided rows, as a slice of a wider projection
    weights, ids, token_expert = poisoned(tokens, topk)

    torch.ops._C_sm7x.moe_topk_softmax(weights, ids, token_expert, gating, renormalize)
    prob, expected_weights, expected_ids = reference(gating, topk, renormalize)
    assert ((ids >= 0) & (ids < experts)).all(), "an expert index out of range"
    # Each pick has the reference's probability for its rank (near-equal logits may swap ids).
    assert torch.allclose(prob.gather(1, ids.long()), prob.gather(1, expected_ids), rtol=1e-5, atol=1e-7)
    distinct = ids.long().sort(-1).values
    assert (distinct[:, 1:] != distinct[:, :-1]).all(), "an expert chosen twice"
    torch.testing.assert_close(weights.double(), expected_weights, rtol=1e-5, atol=1e-7)
    rank = torch.arange(topk, device=DEVICE)[None, :]
    assert torch.equal(token_expert, (rank * tokens + torch.arange(tokens, device=DEVICE)[:, None]).int())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_exact_ties_choose_the_lower_expert_first(dtype):
    # -0 and +0 are one value: their tie goes to the lower expert too
    gating = torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0, 2.0], [-0.0, 0.0, -0.0, 0.0, 0.0, -0.0]], device=DEVICE).to(dtype)
    weights, ids, token_expert = poisoned(2, 4)
    torch.ops._C_sm7x.moe_topk_softmax(weights, ids, token_expert, gating, False)
    assert ids.tolist() == [[1, 2, 4, 5], [0, 1, 2, 3]]
    assert torch.allclose(weights[1], torch.full((4,), 1 / 6, device=DEVICE))


def test_nan_logits_give_valid_experts_not_a_fault():
    gating = torch.full((2, 16), float("nan"), device=DEVICE)
    weights, ids, token_expert = poisoned(2, 4)
    torch.ops._C_sm7x.moe_topk_softmax(weights, ids, token_expert, gating, False)
    torch.cuda.synchronize()
    assert ((ids >= 0) & (ids < 16)).all()


def test_no_tokens_is_a_no_op():
    weights, ids, token_expert = poisoned(0, 8)
    torch.ops._C_sm7x.moe_topk_softmax(weights, ids, token_expert, torch.empty(0, 64, device=DEVICE).half(), True)


@pytest.mark.parametrize("renormalize", [False, True])
def test_matches_vllms_own_topk_softmax(renormalize, seed):
    """Drop-in for vLLM's _moe_C kernel (built for this GPU): same ids, weights and indices."""
    pytest.importorskip("vllm")
    from vllm import _custom_ops as vllm_ops

    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    tokens, experts, topk = 77, 256, 8  # Qwen3.6-35B-A3B's router
    gating = torch.randn(tokens, experts, generator=gen, device=DEVICE).half()
    theirs = (torch.empty(tokens, topk, device=DEVICE), torch.empty(tokens, topk, dtype=torch.int32, device=DEVICE),
              torch.empty(tokens, topk, dtype=torch.int32, device=DEVICE))
    vllm_ops.topk_softmax(*theirs, gating, renormalize)
    from vllm_sm7x.ops.moe import topk_softmax

    weights, ids, token_expert = topk_softmax(gating, topk, renormalize)
    # fp16 logits tie often; the two kernels may order equal probabilities differently, nothing else.
    prob = gating.double().softmax(-1)
    assert torch.allclose(prob.gather(1, ids.long()), prob.gather(1, theirs[1].long()), rtol=1e-6, atol=0)
    torch.testing.assert_close(weights, theirs[0], rtol=1e-5, atol=1e-7)
    assert torch.equal(token_expert, theirs[2])


def test_bad_inputs_are_refused_with_the_limit():
    weights, ids, token_expert = poisoned(2, 8)
    with pytest.raises(ValueError, match="2000 experts; the routing kernels take 1 to 1024"):
        torch.ops._C_sm7x.moe_topk_softmax(weights, ids, token_expert, torch.zeros(2, 2000, device=DEVICE), True)
    with pytest.raises(ValueError, match="top-k 8 must be 1 to 4 for 4 experts"):
        torch.ops._C_sm7x.moe_topk_softmax(weights, ids, token_expert, torch.zeros(2, 4, device=DEVICE), True)
    with pytest.raises(ValueError, match="float16, bfloat16 or float32"):
        torch.ops._C_sm7x.moe_topk_softmax(weights, ids, token_expert,
                                           torch.zeros(2, 64, dtype=torch.float64, device=DEVICE), True)


def test_op_schema_and_fake_implementation():
    weights, ids, token_expert = poisoned(5, 8)
    torch.library.opcheck(torch.ops._C_sm7x.moe_topk_softmax.default,
                          (weights, ids, token_expert, torch.randn(5, 128, device=DEVICE).half(), True))


# ---------------------------------------------------------------------------------------------------
# Rows grouped by expert (for the grouped expert GEMM)


def expected_tiles(offsets, rows_per_tile, max_tiles):
    """Each expert's rows cut into rows_per_tile tiles in expert order, then -1 experts."""
    tile_expert, tile_row = [], []
    for e, (begin, end) in enumerate(zip(offsets[:-1], offsets[1:])):
        for row in range(begin, end, rows_per_tile):
            tile_expert.append(e), tile_row.append(row)
    return tile_expert + [-1] * (max_tiles - len(tile_expert)), tile_row


@pytest.mark.parametrize("tokens, k, experts", [(1, 8, 256), (7, 8, 256), (333, 4, 60), (4096, 8, 512),
                                                (16384, 8, 128), (5, 2, 1024), (0, 8, 64)])
@pytest.mark.parametrize("routing", ["random", "skewed"])
@pytest.mark.parametrize("rows_per_tile", [8, 16, 32])
def test_sort_rows_groups_every_row_under_its_expert_and_tiles_them(tokens, k, experts, routing, rows_per_tile,
                                                                   seed):
    from vllm_sm7x.ops.moe import sort_rows

    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    if routing == "random":
        # k distinct experts per token, as a top-k gives
        ids = torch.rand(tokens, experts, generator=gen, device=DEVICE).argsort(-1)[:, :k]
    else:  # most rows on 3 experts, many experts with none
        ids = torch.randint(0, 3, (tokens, k), generator=gen, device=DEVICE)
    ids = ids.int().contiguous()
    offsets, rows, (tile_expert, tile_row) = sort_rows(ids, experts, rows_per_tile)

    flat = ids.flatten().long()
    counts = torch.bincount(flat, minlength=experts)
    expected_offsets = torch.cat([torch.zeros(1, dtype=torch.long, device=DEVICE), counts.cumsum(0)])
    assert torch.equal(offsets.long(), expected_offsets)
    assert torch.equal(rows.sort().values.long(), torch.arange(flat.numel(), device=DEVICE)), "a row lost or doubled"
    expert_of_position = torch.repeat_interleave(torch.arange(experts, device=DEVICE), counts)
    assert torch.equal(flat[rows.long()], expert_of_position), "a row under the wrong expert"
    want_expert, want_row = expected_tiles(expected_offsets.tolist(), rows_per_tile, tile_expert.numel())
    assert tile_expert.tolist() == want_expert
    assert tile_row[:len(want_row)].tolist() == want_row


def test_sort_rows_drops_masked_ids():
    from vllm_sm7x.ops.moe import sort_rows

    ids = torch.tensor([[3, -1], [70, 3], [0, 5]], dtype=torch.int32, device=DEVICE)  # 64 experts: -1, 70 out
    offsets, rows, (tile_expert, tile_row) = sort_rows(ids, 64, 8)
    assert offsets[[0, 1, 3, 4, 5, 6, 64]].tolist() == [0, 1, 1, 3, 3, 4, 4]
    assert sorted(rows[1:3].tolist()) == [0, 3] and rows[0].item() == 4 and rows[3].item() == 5
    assert rows[4:].tolist() == [-1, -1]
    assert tile_expert[:3].tolist() == [0, 3, 5] and tile_row[:3].tolist() == [0, 1, 3]
    assert (tile_expert[3:] == -1).all(), "a tile past the last expert's"


def test_sort_rows_inputs_are_checked_and_its_schema_holds():
    with pytest.raises(ValueError, match="2000 experts; the sort takes 1 to 1024"):
        torch.ops._C_sm7x.moe_sort_rows(torch.zeros(2, 8, dtype=torch.int32, device=DEVICE), 2000, 8)
    with pytest.raises(ValueError, match="contiguous int32"):
        torch.ops._C_sm7x.moe_sort_rows(torch.zeros(2, 8, dtype=torch.int64, device=DEVICE), 64, 8)
    with pytest.raises(ValueError, match=r"rows_per_tile must be 8 or 16 or 32 \(the grouped GEMM's row tiles\)"):
        torch.ops._C_sm7x.moe_sort_rows(torch.zeros(2, 8, dtype=torch.int32, device=DEVICE), 64, 12)
    # Rows of one expert come out in any order, so two runs may differ: opcheck's AOT-dispatch test
    # compares an eager run with a traced one and is left out; schema and fake implementation are checked.
    torch.library.opcheck(torch.ops._C_sm7x.moe_sort_rows.default,
                          (torch.randint(0, 64, (5, 8), dtype=torch.int32, device=DEVICE), 64, 8),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


# ---------------------------------------------------------------------------------------------------
# The expert layer's steps between and after the GEMMs: SiLU gate, weighted combine


@pytest.mark.parametrize("rows, width", [(1, 8), (7, 128), (333, 520), (64, 2048)])
def test_silu_mul_gates_up_with_silu_of_gate(rows, width, seed):
    from vllm_sm7x.ops.moe import silu_mul

    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    gate_up = (torch.randn(rows, 2 * width, generator=gen, device=DEVICE) * 3).half()
    poison_free_memory()
    out = silu_mul(gate_up)
    g, u = gate_up.double().split(width, dim=1)
    assert out.shape == (rows, width) and out.dtype == torch.float16
    assert relative_error(out, torch.nn.functional.silu(g) * u) < 1e-3  # one fp16 rounding


@pytest.mark.parametrize("tokens, k, hidden, experts", [(1, 8, 2048, 256), (5, 2, 256, 8), (37, 4, 1032, 60)])
def test_combine_sums_each_tokens_weighted_rows_and_skips_other_ranks(tokens, k, hidden, experts, seed):
    """Slots whose id is another rank's (-1, or >= experts) hold rows nobody wrote: NaN here, and they
    must neither be read into the sum nor poison it."""
    from vllm_sm7x.ops.moe import combine

    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    ids = torch.randint(-1, experts + 2, (tokens, k), generator=gen, device=DEVICE, dtype=torch.int32)
    ids[:, 0] = 0  # every token keeps one expert
    weights = torch.rand(tokens, k, generator=gen, device=DEVICE).softmax(-1)
    down = torch.randn(tokens * k, hidden, generator=gen, device=DEVICE).half()
    local = ((ids >= 0) & (ids < experts)).reshape(-1)
    down[~local] = float("nan")
    poison_free_memory()
    out = combine(down, weights, ids, experts)
    kept = torch.where(local.view(tokens, k, 1), down.double().view(tokens, k, hidden), 0)
    reference = (kept * weights.double().unsqueeze(-1)).sum(1)
    assert out.shape == (tokens, hidden) and out.dtype == torch.float16
    assert relative_error(out, reference) < 1e-3


def test_silu_mul_and_combine_check_inputs_and_schemas():
    with pytest.raises(ValueError, match="2 x a multiple of 8"):
        torch.ops._C_sm7x.moe_silu_mul(torch.zeros(3, 20, dtype=torch.float16, device=DEVICE))
    with pytest.raises(ValueError, match="contiguous float16"):
        torch.ops._C_sm7x.moe_silu_mul(torch.zeros(3, 32, dtype=torch.float32, device=DEVICE))
    ids = torch.zeros(2, 4, dtype=torch.int32, device=DEVICE)
    weights = torch.full((2, 4), 0.25, device=DEVICE)
    with pytest.raises(ValueError, match="hidden size 12 must be a multiple of 8"):
        torch.ops._C_sm7x.moe_combine(torch.zeros(8, 12, dtype=torch.float16, device=DEVICE), weights, ids, 4)
    with pytest.raises(ValueError, match=r"down must be \[tokens \* k = 8"):
        torch.ops._C_sm7x.moe_combine(torch.zeros(6, 16, dtype=torch.float16, device=DEVICE), weights, ids, 4)
    with pytest.raises(ValueError, match="topk_weights float32"):
        torch.ops._C_sm7x.moe_combine(torch.zeros(8, 16, dtype=torch.float16, device=DEVICE), weights.half(), ids, 4)
    torch.library.opcheck(torch.ops._C_sm7x.moe_silu_mul.default,
                          (torch.randn(5, 64, device=DEVICE).half(),))
    torch.library.opcheck(torch.ops._C_sm7x.moe_combine.default,
                          (torch.randn(8, 16, device=DEVICE).half(), weights, ids, 4))
