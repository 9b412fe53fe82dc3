"""Gated DeltaNet chunked prefill (csrc/gdn/gdn_prefill.cu, vLLM's chunk_gated_delta_rule) against the
float64 token recurrence and against vLLM's own FLA Triton kernel on the same inputs: variable-length
batches with empty and single-token sequences, chunk boundaries, GQA head sharing, fp32 and fp16
initial states, strong and weak decay, NaN-poisoned outputs. The kernel (two passes: every chunk solved
in parallel, then each sequence's state walked through them) is SIMT (no arch path), so one run covers
both emulated cards; its shared memory (under 30 KB) fits both."""
import pytest
import torch

from tests.gpu.kernel_checks import capture, poison_free_memory, relative_error

pytestmark = pytest.mark.gpu
DEVICE = "cuda"
# (k_heads, v_heads, k_dim, v_dim): Qwen3.6-27B GDN at TP1 and TP4, 35B-A3B at TP1, the tiny presets,
# and k_dim != v_dim both ways (a swapped index would pass on square heads).
SHAPES = [(16, 48, 128, 128), (4, 12, 128, 128), (16, 32, 128, 128), (2, 4, 64, 64), (2, 4, 64, 128),
          (4, 8, 128, 64)]
LENGTHS = [[1], [17], [5, 33, 16, 0, 40], [301, 2, 64]]


@pytest.fixture(autouse=True)
def kernels():
    from vllm_sm7x.ops import load_kernels

    load_kernels()


def prefill_inputs(gen, lengths, k_heads, v_heads, k_dim, v_dim, state_dtype=torch.float32, decay_scale=1.0):
    """What vLLM hands the op: l2-normalised fp16 q/k, fp16 v, fp32 log decay and beta, states."""
    tokens = sum(lengths)

    def unit(*shape):
        return torch.nn.functional.normalize(torch.randn(*shape, generator=gen, device=DEVICE), dim=-1).half()

    q, k = unit(tokens, k_heads, k_dim), unit(tokens, k_heads, k_dim)
    v = torch.randn(tokens, v_heads, v_dim, generator=gen, device=DEVICE).half()
    g = -decay_scale * torch.rand(tokens, v_heads, generator=gen, device=DEVICE)
    beta = torch.rand(tokens, v_heads, generator=gen, device=DEVICE)
    state = None if state_dtype is None else (
        0.5 * torch.randn(len(lengths), v_heads, v_dim, k_dim, generator=gen, device=DEVICE)).to(state_dtype)
    cu_seqlens = torch.tensor([0] + lengths, device=DEVICE).cumsum(0).int()
    return q, k, v, g, beta, state, cu_seqlens


def worst_sequence_error(out, expected, cu_seqlens):
    """The largest relative error of any one sequence's outputs: one bad sequence (or chunk) must not
    hide in the norm of a long batch."""
    bounds = cu_seqlens.tolist()
    return max((relative_error(out[b:e], expected[b:e]) for b, e in zip(bounds[:-1], bounds[1:]) if e > b),
               default=0.0)


def run_prefill(q, k, v, g, beta, state, cu_seqlens, scale):
    poison_free_memory()
    return torch.ops._C_sm7x.gdn_chunk_prefill(q, k, v, g, beta, scale, state, cu_seqlens)


@pytest.mark.parametrize("k_heads, v_heads, k_dim, v_dim", SHAPES)
@pytest.mark.parametrize("lengths", LENGTHS)
@pytest.mark.parametrize("state_dtype", [torch.float32, torch.float16, None])
def test_prefill_matches_the_float64_recurrence(k_heads, v_heads, k_dim, v_dim, lengths, state_dtype, seed):
    from vllm_sm7x.ops.gdn_reference import gated_delta_rule_reference

    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    q, k, v, g, beta, state, cu_seqlens = prefill_inputs(gen, lengths, k_heads, v_heads, k_dim, v_dim, state_dtype)
    scale = k_dim ** -0.5
    out, final_state = run_prefill(q, k, v, g, beta, state, cu_seqlens, scale)
    ref_out, ref_state = gated_delta_rule_reference(q, k, v, g, beta, scale, state, cu_seqlens)
    assert out.shape == (sum(lengths), v_heads, v_dim) and out.dtype == torch.float16
    assert final_state.shape == (len(lengths), v_heads, v_dim, k_dim) and final_state.dtype == torch.float32
    assert worst_sequence_error(out, ref_out, cu_seqlens) < 2e-3
    for n in range(len(lengths)):
        assert relative_error(final_state[n], ref_state[n]) < 1e-3, f"state of sequence {n}"


def test_many_sequences_of_mixed_lengths(seed):
    """70 sequences, empty ones among them: the first pass finds each chunk's sequence 32 sequences at
    a time, so a batch past 32 and 64 sequences must still give every chunk to the right one."""
    from vllm_sm7x.ops.gdn_reference import gated_delta_rule_reference

    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    lengths = torch.randint(0, 40, (70,), generator=gen, device=DEVICE).tolist()
    lengths[33] = 0
    q, k, v, g, beta, state, cu_seqlens = prefill_inputs(gen, lengths, 2, 4, 64, 64)
    out, final_state = run_prefill(q, k, v, g, beta, state, cu_seqlens, 0.125)
    ref_out, ref_state = gated_delta_rule_reference(q, k, v, g, beta, 0.125, state, cu_seqlens)
    assert worst_sequence_error(out, ref_out, cu_seqlens) < 2e-3
    for n in range(len(lengths)):
        assert relative_error(final_state[n], ref_state[n]) < 1e-3, f"state of sequence {n}"


def test_rows_wider_than_the_heads_are_read_through_their_stride(seed):
    """q, k and v as slices of one wider projection output per token (the op takes any row stride)."""
    from vllm_sm7x.ops.gdn_reference import gated_delta_rule_reference

    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    q, k, v, g, beta, state, cu_seqlens = prefill_inputs(gen, [37, 20], 2, 6, 128, 128)
    tokens, width = q.shape[0], 2 * 2 * 128 + 6 * 128 + 40
    fused = torch.randn(tokens, width, generator=gen, device=DEVICE).half()
    fused[:, :256], fused[:, 256:512], fused[:, 512:1280] = q.flatten(1), k.flatten(1), v.flatten(1)
    views = fused[:, :256].view(tokens, 2, 128), fused[:, 256:512].view(tokens, 2, 128), \
        fused[:, 512:1280].view(tokens, 6, 128)
    assert views[0].stride(0) == width
    out, final_state = run_prefill(*views, g, beta, state, cu_seqlens, 0.09)
    ref_out, ref_state = gated_delta_rule_reference(q, k, v, g, beta, 0.09, state, cu_seqlens)
    assert worst_sequence_error(out, ref_out, cu_seqlens) < 2e-3
    assert relative_error(final_state, ref_state) < 1e-3


@pytest.mark.parametrize("decay_scale", [0.01, 8.0])
def test_long_sequence_with_weak_and_strong_decay(decay_scale, seed):
    """4097 tokens: 257 chunks carried through the state; with decay near 1 the state grows large, with
    strong decay exp(G) underflows inside a chunk, and neither may turn into NaN or drift."""
    from vllm_sm7x.ops.gdn_reference import gated_delta_rule_reference

    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    inputs = prefill_inputs(gen, [4097], 4, 12, 128, 128, decay_scale=decay_scale)
    out, final_state = run_prefill(*inputs, 128 ** -0.5)
    ref_out, ref_state = gated_delta_rule_reference(*inputs[:5], 128 ** -0.5, *inputs[5:])
    assert relative_error(out, ref_out) < 2e-3
    assert relative_error(final_state, ref_state) < 1e-3


def test_matches_vllms_own_chunked_kernel(seed):
    """The same batch through vLLM's FLA chunk_gated_delta_rule (the Triton kernel it runs on these
    cards), as vLLM calls it: a drop-in replacement, not only our reading of the math."""
    pytest.importorskip("vllm")
    from vllm.third_party.flash_linear_attention.ops.chunk import chunk_gated_delta_rule as fla_chunk

    from vllm_sm7x.ops.gdn import chunk_gated_delta_rule

    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    q, k, v, g, beta, state, cu_seqlens = prefill_inputs(gen, [70, 1, 129, 16], 4, 12, 128, 128)
    batch = [x.unsqueeze(0) for x in (q, k, v, g, beta)]
    theirs, their_state = fla_chunk(*batch, initial_state=state.clone(), output_final_state=True,
                                    cu_seqlens=cu_seqlens, use_qk_l2norm_in_kernel=False)
    ours, our_state = chunk_gated_delta_rule(*batch, initial_state=state, cu_seqlens=cu_seqlens)
    assert ours.shape == theirs.shape
    assert relative_error(ours, theirs.double()) < 2e-3
    assert relative_error(our_state, their_state.double()) < 1e-3


def test_wrapper_takes_fla_arguments_in_batches_and_normalises(seed):
    """Without cu_seqlens every batch row is a sequence; use_qk_l2norm_in_kernel normalises q and k
    first (as vLLM's other callers ask)."""
    from vllm_sm7x.ops.gdn import chunk_gated_delta_rule
    from vllm_sm7x.ops.gdn_reference import gated_delta_rule_reference

    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    q, k, v, g, beta, _, _ = prefill_inputs(gen, [3 * 21], 2, 4, 64, 64)
    raw_q, raw_k = 3 * q, 0.5 * k
    shape = lambda x: x.view(3, 21, *x.shape[1:])  # noqa: E731
    out, state = chunk_gated_delta_rule(shape(raw_q), shape(raw_k), shape(v), shape(g), shape(beta),
                                        use_qk_l2norm_in_kernel=True)
    cu_seqlens = torch.tensor([0, 21, 42, 63], device=DEVICE)
    ref_out, ref_state = gated_delta_rule_reference(q, k, v, g, beta, 64 ** -0.5, None, cu_seqlens)
    assert out.shape == (3, 21, 4, 64)
    assert relative_error(out.reshape(63, 4, 64), ref_out) < 2e-3
    assert relative_error(state, ref_state) < 1e-3


def test_replays_in_a_cuda_graph_with_new_inputs(seed):
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    q, k, v, g, beta, state, cu_seqlens = prefill_inputs(gen, [40, 9], 4, 12, 128, 128)

    def step():
        return torch.ops._C_sm7x.gdn_chunk_prefill(q, k, v, g, beta, 0.1, state, cu_seqlens)

    graph, (out, final_state) = capture(step)
    fresh = prefill_inputs(gen, [40, 9], 4, 12, 128, 128)
    for target, source in zip((q, k, v, g, beta, state), fresh):
        target.copy_(source)
    graph.replay()
    expected_out, expected_state = step()
    assert torch.equal(out, expected_out) and torch.equal(final_state, expected_state)


def test_bad_inputs_are_refused_with_the_rule():
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    q, k, v, g, beta, state, cu_seqlens = prefill_inputs(gen, [5, 3], 2, 4, 64, 64)
    op = torch.ops._C_sm7x.gdn_chunk_prefill
    wide = torch.zeros(8, 2, 96, device=DEVICE).half()
    with pytest.raises(ValueError, match="head_k_dim 96 is not supported by the chunked prefill"):
        op(wide, wide, v, g, beta, 0.1, None, cu_seqlens)
    with pytest.raises(ValueError, match="must be float16"):
        op(q.bfloat16(), k, v, g, beta, 0.1, None, cu_seqlens)
    with pytest.raises(ValueError, match="g and beta must be float32"):
        op(q, k, v, g.half(), beta, 0.1, None, cu_seqlens)
    with pytest.raises(ValueError, match="initial_state must be contiguous \\[seqs = 2"):
        op(q, k, v, g, beta, 0.1, state[:1], cu_seqlens)
    with pytest.raises(ValueError, match="base address must be a multiple of 16 bytes"):
        misaligned = torch.zeros(state.numel() + 1, device=DEVICE)[1:].view_as(state)
        op(q, k, v, g, beta, 0.1, misaligned, cu_seqlens)
    with pytest.raises(ValueError, match="v-heads are not a positive multiple of"):
        op(q, k, v[:, :3].contiguous(), g[:, :3].contiguous(), beta[:, :3].contiguous(), 0.1, None, cu_seqlens)


def test_cu_seqlens_past_the_tokens_cannot_fault():
    from vllm_sm7x.ops.gdn_reference import gated_delta_rule_reference

    gen = torch.Generator(device=DEVICE).manual_seed(0)
    q, k, v, g, beta, _, _ = prefill_inputs(gen, [6], 2, 4, 64, 64)
    wild = torch.tensor([0, 4, 1 << 20], dtype=torch.int32, device=DEVICE)  # the last sequence cut to 2 tokens
    out, state = torch.ops._C_sm7x.gdn_chunk_prefill(q, k, v, g, beta, 0.1, None, wild)
    torch.cuda.synchronize()
    ref_out, ref_state = gated_delta_rule_reference(q, k, v, g, beta, 0.1, None,
                                                    torch.tensor([0, 4, 6], device=DEVICE))
    assert relative_error(out, ref_out) < 2e-3 and relative_error(state, ref_state) < 1e-3


def test_op_schema_and_fake_implementation():
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    q, k, v, g, beta, state, cu_seqlens = prefill_inputs(gen, [5, 3], 2, 4, 64, 64)
    torch.library.opcheck(torch.ops._C_sm7x.gdn_chunk_prefill.default,
                          (q, k, v, g, beta, 0.1, state, cu_seqlens))
