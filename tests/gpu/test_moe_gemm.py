"""Grouped AWQ expert GEMM (one launch for every routed row of every expert) on both arch paths,
against per-expert float32 matmuls of the dequantised AWQ weights: random, skewed and one-expert
routing, experts with no rows, a single token, dropped (expert-parallel) ids, the gate/up form (x holds
tokens) and the down form (x holds routed rows), and CUDA-graph replay. Outputs come from a
NaN-poisoned allocator, so an unwritten row shows up."""
import pytest
import torch

from tests.gpu.kernel_checks import capture, poison_free_memory
from vllm_sm7x.quantization.awq_format import dequantize_awq, experts_to_kernel_layout, quantize_awq

pytestmark = pytest.mark.gpu
PATHS = ["sm70", "sm75"]
TOLERANCE = 2e-3


@pytest.fixture(scope="module")
def moe():
    from vllm_sm7x.ops import moe

    return moe


def make_experts(experts, K, N, group_size, gen):
    """Stacked kernel-layout weights and the float32 [E, K, N] they stand for."""
    awq = [quantize_awq(torch.randn(K, N, device="cuda", generator=gen) * 0.05, group_size) for _ in range(experts)]
    reference = torch.stack([dequantize_awq(*expert, group_size).float() for expert in awq])
    return experts_to_kernel_layout(*(torch.stack(part) for part in zip(*awq)), group_size), reference


def routing(kind, tokens, experts, topk, gen):
    """topk_ids [tokens, topk] int32: distinct experts per token, drawn as `kind` says."""
    if kind == "random":
        scores = torch.rand(tokens, experts, device="cuda", generator=gen)
    elif kind == "skewed":  # most rows on the first few experts, many experts with none
        scores = torch.rand(tokens, experts, device="cuda", generator=gen) * torch.linspace(
            8, 0.01, experts, device="cuda") ** 3
    else:
        raise ValueError(kind)
    return scores.topk(topk, dim=-1).indices.int()


def run_grouped(moe, x, weight, topk_ids, experts, x_row_divisor, path, grouped_tile=None):
    """The grouped GEMM on grouped_tile (rows per CTA, column tiles), or on the layer's own choice."""
    rows = topk_ids.numel()
    per_tile, column_tiles = grouped_tile or moe.grouped_tile_for(rows, min(rows, experts))
    offsets, sorted_rows, tiles = moe.sort_rows(topk_ids, experts, per_tile)
    poison_free_memory()
    return moe.awq_moe_gemm(x, weight, sorted_rows, offsets, tiles, x_row_divisor, per_tile, path=path,
                            column_tiles=column_tiles)


def reference(x, weights, topk_ids, x_row_divisor):
    ids = topk_ids.reshape(-1).long()
    rows = torch.arange(ids.numel(), device="cuda")
    return torch.einsum("rk,rkn->rn", x.float()[rows // x_row_divisor], weights[ids])


def relative_error(out, ref, keep=None):
    if keep is not None:
        out, ref = out[keep], ref[keep]
    assert not out.isnan().any(), "unwritten (NaN) rows"
    return float((out.float() - ref).norm() / ref.norm())


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("tokens, experts, topk, K, N, group_size", [
    (1, 8, 2, 256, 72, 128),       # a single decode token
    (3, 64, 8, 2048, 1024, 128),   # Qwen3.6-35B-A3B gate/up widths (TP1), MTP-sized batch
    (8, 256, 8, 2048, 264, 64),    # 256 experts, most with no rows
    (33, 16, 4, 640, 136, 32),     # several tokens per expert: 16-row tiles
    (130, 8, 2, 384, 200, 128),    # long expert row lists
])
@pytest.mark.parametrize("kind", ["random", "skewed"])
def test_gate_up_form_matches_per_expert_reference(moe, path, tokens, experts, topk, K, N, group_size, kind, seed):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    weight, weights = make_experts(experts, K, N, group_size, gen)
    x = torch.randn(tokens, K, device="cuda", generator=gen).half()
    topk_ids = routing(kind, tokens, experts, topk, gen)
    out = run_grouped(moe, x, weight, topk_ids, experts, topk, path)
    assert out.shape == (tokens * topk, N)
    assert relative_error(out, reference(x, weights, topk_ids, topk)) < TOLERANCE




@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("registry_entry", range(4))  # checked against the registry's length below
@pytest.mark.parametrize("tokens, experts, topk, K, N, group_size, x_row_divisor", [
    (3, 64, 8, 2048, 1024, 128, 8),    # 35B-A3B gate/up widths, a few rows per expert
    (300, 16, 4, 640, 136, 32, 4),     # ~75 rows per expert: several 16-row tiles, a partial last one
    (257, 8, 2, 512, 2056, 64, 1),     # routed-row inputs (down), N past the last 32-column pair
])
def test_every_grouped_configuration_matches_per_expert_reference(moe, path, registry_entry, tokens, experts, topk,
                                                                  K, N, group_size, x_row_divisor, seed):
    tiles = moe.grouped_tiles()
    assert len(tiles) == 4, f"the grouped registry has {len(tiles)} entries: update registry_entry's range"
    grouped_tile = tiles[registry_entry]
    gen = torch.Generator(device="cuda").manual_seed(seed)
    weight, weights = make_experts(experts, K, N, group_size, gen)
    x = torch.randn(tokens * topk // x_row_divisor, K, device="cuda", generator=gen).half()
    topk_ids = routing("skewed", tokens, experts, topk, gen)
    out = run_grouped(moe, x, weight, topk_ids, experts, x_row_divisor, path, grouped_tile)
    assert relative_error(out, reference(x, weights, topk_ids, x_row_divisor)) < TOLERANCE


@pytest.mark.parametrize("path", PATHS)
def test_down_form_reads_routed_rows(moe, path, seed):
    """x [tokens * topk, K]: each routed row has its own input (the down projection of 35B-A3B)."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    tokens, experts, topk, K, N = 5, 32, 8, 512, 2048
    weight, weights = make_experts(experts, K, N, 128, gen)
    x = torch.randn(tokens * topk, K, device="cuda", generator=gen).half()
    topk_ids = routing("random", tokens, experts, topk, gen)
    out = run_grouped(moe, x, weight, topk_ids, experts, 1, path)
    assert relative_error(out, reference(x, weights, topk_ids, 1)) < TOLERANCE


@pytest.mark.parametrize("path", PATHS)
def test_one_expert_takes_every_row(moe, path, seed):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    weight, weights = make_experts(4, 256, 40, 64, gen)
    x = torch.randn(37, 256, device="cuda", generator=gen).half()
    topk_ids = torch.full((37, 1), 2, dtype=torch.int32, device="cuda")
    out = run_grouped(moe, x, weight, topk_ids, 4, 1, path)
    assert relative_error(out, reference(x, weights, topk_ids, 1)) < TOLERANCE


@pytest.mark.parametrize("path", PATHS)
def test_dropped_ids_are_left_out(moe, path, seed):
    """Expert parallelism masks other ranks' experts as -1: their rows are skipped, the rest exact."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    weight, weights = make_experts(8, 256, 48, 128, gen)
    x = torch.randn(6, 256, device="cuda", generator=gen).half()
    topk_ids = routing("random", 6, 8, 3, gen)
    keep = (topk_ids.reshape(-1) < 4)
    masked = torch.where(topk_ids < 4, topk_ids, torch.full_like(topk_ids, -1))
    out = run_grouped(moe, x, weight, masked, 8, 3, path)
    assert relative_error(out, reference(x, weights, topk_ids, 3), keep) < TOLERANCE


@pytest.mark.parametrize("path", PATHS)
def test_cuda_graph_replay_follows_new_routing(moe, path, seed):
    """Sizes are fixed by shapes: a graph captured once gives the eager result for every new routing."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    tokens, experts, topk, K, N = 4, 64, 8, 1024, 256
    weight, weights = make_experts(experts, K, N, 128, gen)
    x = torch.randn(tokens, K, device="cuda", generator=gen).half()
    topk_ids = routing("random", tokens, experts, topk, gen)
    per_tile, column_tiles = moe.grouped_tile_for(tokens * topk, experts)

    def step():
        offsets, sorted_rows, tiles = moe.sort_rows(topk_ids, experts, per_tile)
        return moe.awq_moe_gemm(x, weight, sorted_rows, offsets, tiles, topk, per_tile, path=path,
                                column_tiles=column_tiles)

    graph, captured = capture(step)
    for kind in ("random", "skewed"):
        topk_ids.copy_(routing(kind, tokens, experts, topk, gen))
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(captured, step())
        assert relative_error(captured, reference(x, weights, topk_ids, topk)) < TOLERANCE


def layer_reference(x, w13_ref, w2_ref, topk_weights, topk_ids, experts):
    """float64 expert layer; slots of ids outside [0, experts) count as zero."""
    kept = (topk_ids >= 0) & (topk_ids < experts)
    ids = torch.where(kept, topk_ids, 0).long()
    inter = w2_ref.shape[1]
    gate_up = torch.einsum("th,tkhn->tkn", x.double(), w13_ref[ids].double())
    act = torch.nn.functional.silu(gate_up[..., :inter]) * gate_up[..., inter:]
    return torch.einsum("tki,tkih,tk->th", act, w2_ref[ids].double(), topk_weights.double() * kept)


# Both forms of the layer: the SIMT decode kernels (tokens <= DECODE_MAX_TOKENS) and the grouped GEMMs.
FORMS = {"decode": 4, "grouped": 0}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("tokens, experts, topk, hidden, inter, group_size", [
    (1, 256, 8, 2048, 512, 128),  # Qwen3.6-35B-A3B at TP1, one decode token (decode: 8 and 16 warps)
    (1, 256, 8, 2048, 128, 128),  # ... at TP4
    (1, 256, 8, 3072, 256, 128),  # Qwen3.5-122B-A10B at TP4 (its seed setup), one decode token
    (3, 256, 8, 3072, 1024, 128),  # ... at TP1, an MTP-sized batch
    (3, 8, 2, 384, 96, 32),       # 3 k tiles over 4 warps; a width shorter than one k tile
    (4, 60, 4, 640, 192, 64),     # a partial last k tile of the down projection
    (2, 16, 4, 1152, 384, 128),   # decode: 9 k tiles over 8 warps (gate/up), 12 items over 8 (down)
    (5, 32, 4, 512, 256, 128),
    (40, 32, 4, 512, 256, 128),
    (200, 16, 4, 640, 192, 64),   # 50 rows per expert: the tiled form, partial column and k tiles
    (40, 8, 2, 3072, 256, 128),   # Qwen3.5-122B-A10B widths at TP4, 10 rows per expert: the tiled form
])
def test_whole_expert_layer_matches_float64_reference(moe, path, form, tokens, experts, topk, hidden, inter,
                                                      group_size, seed):
    """awq_moe (what the vLLM MoE method runs): gate/up, SiLU gate, down, weighted sum over the top-k,
    with some slots on other ranks' experts (-1 and ids past the last). The intermediate values are
    fp16 between the projections: more roundings than a single GEMM, hence twice its tolerance."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    w13, w13_ref = make_experts(experts, hidden, 2 * inter, group_size, gen)
    w2, w2_ref = make_experts(experts, inter, hidden, group_size, gen)
    x = torch.randn(tokens, hidden, device="cuda", generator=gen).half()
    topk_ids = routing("random", tokens, experts, topk, gen)
    dropped = torch.rand(tokens, topk, device="cuda", generator=gen) < 0.2
    dropped[:, 0] = False
    topk_ids = torch.where(dropped, torch.where(dropped.roll(1, 1), -1, experts + 1), topk_ids).int()
    topk_weights = torch.rand(tokens, topk, device="cuda", generator=gen).softmax(-1)
    poison_free_memory()
    out = moe.awq_moe(x, w13, w2, topk_weights, topk_ids, path=path, decode_max_tokens=FORMS[form])
    assert out.shape == (tokens, hidden) and out.dtype == torch.float16
    reference = layer_reference(x, w13_ref, w2_ref, topk_weights, topk_ids, experts)
    assert relative_error(out, reference) < 2 * TOLERANCE


def assert_replays_follow_new_routing(step, reroute, reference, times=2):
    """step() captured in a CUDA graph; after each reroute() (new ids or logits in the captured inputs) a
    replay equals a fresh eager call bit for bit (deterministic) and matches reference() in float64."""
    graph, captured = capture(step)
    for _ in range(times):
        reroute()
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(captured, step()), "the decode form must be deterministic"
        assert relative_error(captured, reference()) < 2 * TOLERANCE


def small_decode_layer(gen, experts=64, hidden=1024, inter=256):
    """(w13, its float32 reference, w2, its reference, x of 2 tokens) of a small decode-sized layer."""
    w13, w13_ref = make_experts(experts, hidden, 2 * inter, 128, gen)
    w2, w2_ref = make_experts(experts, inter, hidden, 128, gen)
    return w13, w13_ref, w2, w2_ref, torch.randn(2, hidden, device="cuda", generator=gen).half()


def test_decode_form_replays_in_a_cuda_graph_with_new_routing(moe, seed):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    experts, topk = 64, 8
    w13, w13_ref, w2, w2_ref, x = small_decode_layer(gen, experts)
    topk_ids = routing("random", 2, experts, topk, gen)
    topk_weights = torch.rand(2, topk, device="cuda", generator=gen).softmax(-1)
    kinds = iter(("random", "skewed"))
    assert_replays_follow_new_routing(
        lambda: moe.awq_moe(x, w13, w2, topk_weights, topk_ids, decode_max_tokens=4),
        lambda: topk_ids.copy_(routing(next(kinds), 2, experts, topk, gen)),
        lambda: layer_reference(x, w13_ref, w2_ref, topk_weights, topk_ids, experts))


def test_decode_form_checks_its_inputs(moe, seed):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    w13, _ = make_experts(4, 256, 256, 128, gen)  # hidden 256 -> 2 x width 128
    w2, _ = make_experts(4, 128, 256, 128, gen)
    w2_group64, _ = make_experts(4, 128, 256, 64, gen)
    x = torch.randn(1, 256, device="cuda", generator=gen).half()
    ids = torch.zeros(1, 2, dtype=torch.int32, device="cuda")
    weights = torch.full((1, 2), 0.5, device="cuda")
    decode = torch.ops._C_sm7x.awq_moe_decode
    with pytest.raises(ValueError, match="group size 16 is not supported"):
        decode(x, w13.qweight, w13.scale_zero, w2.qweight, w2.scale_zero, weights, ids, 16)
    with pytest.raises(ValueError, match=r"w2 \(width -> hidden\) must be contiguous int32 stacks"):
        decode(x, w13.qweight, w13.scale_zero, w2_group64.qweight, w2_group64.scale_zero, weights, ids, 128)
    with pytest.raises(ValueError, match="topk_ids"):
        decode(x, w13.qweight, w13.scale_zero, w2.qweight, w2.scale_zero, weights, ids.long(), 128)
    with pytest.raises(ValueError, match="top-k 33 must be 1 to 32"):
        decode(x, w13.qweight, w13.scale_zero, w2.qweight, w2.scale_zero, torch.full((1, 33), 0.03, device="cuda"),
               torch.zeros(1, 33, dtype=torch.int32, device="cuda"), 128)
    torch.library.opcheck(decode.default, (x, w13.qweight, w13.scale_zero, w2.qweight, w2.scale_zero, weights, ids,
                                           128))


def router_logits(tokens, experts, dtype, gen):
    """Router logits [tokens, experts] as a strided slice of a wider projection (as vLLM may pass them)."""
    rows = torch.randn(tokens, experts + 3, device="cuda", generator=gen) * 2
    return rows.to(dtype)[:, 3:]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("tokens, experts, topk, hidden, inter, group_size, logits_dtype, renormalize", [
    (1, 256, 8, 2048, 512, 128, torch.float16, True),   # Qwen3.6-35B-A3B at TP1, one decode token
    (1, 256, 8, 2048, 128, 128, torch.float16, True),   # ... at TP4
    (3, 256, 8, 3072, 256, 128, torch.float32, False),  # Qwen3.5-122B-A10B at TP4, an MTP-sized batch
    (4, 300, 5, 384, 96, 32, torch.bfloat16, True),     # past 256 experts: 32 logits per lane
    (2, 7, 7, 256, 128, 64, torch.float16, False),      # every expert chosen
    (4, 64, 8, 512, 1024, 128, torch.float16, True),    # 2048 gate/up CTAs, past one wave: routing kernel first
    (9, 60, 4, 640, 192, 64, torch.float16, True),      # past the decode form: the routing kernel first
])
def test_layer_from_router_logits_routes_as_the_routing_kernel(moe, path, tokens, experts, topk, hidden, inter,
                                                               group_size, logits_dtype, renormalize, seed):
    """awq_moe_routed (what the monolithic vLLM method runs) gives, bit for bit, the layer on the routing
    kernel's picks, and the decode op's returned picks are that kernel's; the layer also matches float64."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    w13, w13_ref = make_experts(experts, hidden, 2 * inter, group_size, gen)
    w2, w2_ref = make_experts(experts, inter, hidden, group_size, gen)
    x = torch.randn(tokens, hidden, device="cuda", generator=gen).half()
    logits = router_logits(tokens, experts, logits_dtype, gen)
    weights, ids, _ = moe.topk_softmax(logits, topk, renormalize)
    poison_free_memory()
    out = moe.awq_moe_routed(x, w13, w2, logits, topk, renormalize, path=path)
    assert out.shape == (tokens, hidden) and out.dtype == torch.float16
    assert torch.equal(out, moe.awq_moe(x, w13, w2, weights, ids, path=path))
    assert relative_error(out, layer_reference(x, w13_ref, w2_ref, weights, ids, experts)) < 2 * TOLERANCE
    if tokens <= moe.DECODE_MAX_TOKENS:
        poison_free_memory()
        _, routed_weights, routed_ids = torch.ops._C_sm7x.awq_moe_decode_routed(
            x, w13.qweight, w13.scale_zero, w2.qweight, w2.scale_zero, logits, topk, renormalize, group_size)
        assert torch.equal(routed_ids, ids) and torch.equal(routed_weights, weights)


def test_layer_from_router_logits_replays_in_a_cuda_graph_with_new_logits(moe, seed):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    experts, topk = 64, 8
    w13, w13_ref, w2, w2_ref, x = small_decode_layer(gen, experts)
    logits = torch.randn(2, experts, device="cuda", generator=gen).half()

    def reference():
        weights, ids, _ = moe.topk_softmax(logits, topk, True)
        return layer_reference(x, w13_ref, w2_ref, weights, ids, experts)

    assert_replays_follow_new_routing(
        lambda: moe.awq_moe_routed(x, w13, w2, logits, topk, True),
        lambda: logits.copy_(torch.randn(2, experts, device="cuda", generator=gen)), reference)


def test_layer_from_router_logits_checks_its_inputs(moe, seed):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    w13, _ = make_experts(4, 256, 256, 128, gen)  # hidden 256 -> 2 x width 128
    w2, _ = make_experts(4, 128, 256, 128, gen)
    x = torch.randn(1, 256, device="cuda", generator=gen).half()
    logits = torch.randn(1, 4, device="cuda", generator=gen).half()
    routed = torch.ops._C_sm7x.awq_moe_decode_routed
    with pytest.raises(ValueError, match="the router scores 8 experts and the layer holds 4"):
        routed(x, w13.qweight, w13.scale_zero, w2.qweight, w2.scale_zero, torch.randn(1, 8, device="cuda").half(), 2,
               True, 128)
    with pytest.raises(ValueError, match="router logits must be float16, bfloat16 or float32"):
        routed(x, w13.qweight, w13.scale_zero, w2.qweight, w2.scale_zero, logits.double(), 2, True, 128)
    with pytest.raises(ValueError, match="top-k 5 must be 1 to 4 for 4 experts"):
        routed(x, w13.qweight, w13.scale_zero, w2.qweight, w2.scale_zero, logits, 5, True, 128)
    with pytest.raises(ValueError, match=r"router_logits must be \[tokens = 1, experts\]"):
        routed(x, w13.qweight, w13.scale_zero, w2.qweight, w2.scale_zero, logits.expand(2, 4), 2, True, 128)
    torch.library.opcheck(routed.default, (x, w13.qweight, w13.scale_zero, w2.qweight, w2.scale_zero, logits, 2,
                                           True, 128))


def test_bad_input_names_the_rule(moe, seed):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    weight, _ = make_experts(2, 256, 32, 128, gen)
    x = torch.randn(10, 256, device="cuda", generator=gen).half()
    topk_ids = torch.randint(0, 2, (10, 2), dtype=torch.int32, device="cuda", generator=gen)
    offsets, sorted_rows, tiles = moe.sort_rows(topk_ids, 2, 8)
    with pytest.raises(ValueError, match="x_row_divisor"):
        moe.awq_moe_gemm(x, weight, sorted_rows, offsets, tiles, 1, 8)
    with pytest.raises(ValueError, match=r"rows_per_tile must be 8 or 16 or 32 \(the grouped GEMM's row tiles\)"):
        moe.awq_moe_gemm(x, weight, sorted_rows, offsets, tiles, 2, 64)
    with pytest.raises(ValueError, match="no grouped kernel takes 8 rows per CTA with 2 column tiles"):
        moe.awq_moe_gemm(x, weight, sorted_rows, offsets, tiles, 2, 8, column_tiles=2)
    _, _, coarse = moe.sort_rows(topk_ids, 2, 16)  # 3 tiles, where 8-row tiles need up to 4
    with pytest.raises(ValueError, match="must come from moe_sort_rows with the same rows"):
        moe.awq_moe_gemm(x, weight, sorted_rows, offsets, coarse, 2, 8)
