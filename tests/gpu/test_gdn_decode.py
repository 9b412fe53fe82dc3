"""Gated DeltaNet decode and MTP-verification kernels (csrc/gdn) against a float64 reference of vLLM's
recurrence and against vLLM's own Triton kernels, in vLLM's state layouts: conv state stored
[blocks, state_len, dim] and passed transposed, states in pages whose block stride exceeds their
size, block 0 = padding (left untouched), NaN-poisoned outputs."""
import math

import pytest
import torch

pytestmark = pytest.mark.gpu
DEVICE = "cuda"

# (k_heads, v_heads, k_dim, v_dim): Qwen3.6-27B at TP4 and TP1, 35B-A3B at TP2, small and wide heads.
SHAPES = [(4, 12, 128, 128), (16, 48, 128, 128), (8, 16, 128, 128), (2, 6, 64, 64), (1, 3, 256, 256)]


@pytest.fixture(autouse=True)
def kernels():
    from vllm_sm7x.ops import load_kernels

    load_kernels()


def paged(blocks, *shape, dtype, gen, pad=64):
    """[blocks, *shape] views of pages `pad` elements longer than a block (vLLM's as_strided states)."""
    size = math.prod(shape)
    storage = torch.randn(blocks * (size + pad), generator=gen, device=DEVICE).to(dtype)
    strides = [size + pad] + [math.prod(shape[i + 1:]) for i in range(len(shape))]
    return storage.as_strided((blocks, *shape), strides)


def block_indices(tokens, blocks, gen):
    """Distinct blocks per token; every third token from the second on is padding (block 0), so the
    first token is always a live one."""
    indices = (torch.randperm(blocks - 1, generator=gen, device=DEVICE)[:tokens] + 1).int()
    indices[1::3] = 0
    return indices


def layer_inputs(gen, tokens, blocks, k_heads, v_heads, k_dim, v_dim, conv_len=3, state_dtype=torch.float32,
                 width=4):
    """One GDN layer's inputs for a step of `tokens` tokens: the packed qkv, the gating inputs and
    parameters, the conv weight, and paged states (conv state stored [blocks, conv_len, dim] and passed
    transposed, as vLLM does)."""
    dim = 2 * k_heads * k_dim + v_heads * v_dim
    return {
        "qkv": torch.randn(tokens, dim, generator=gen, device=DEVICE).half(),
        "a": torch.randn(tokens, v_heads, generator=gen, device=DEVICE).half(),
        "b": torch.randn(tokens, v_heads, generator=gen, device=DEVICE).half(),
        "a_log": torch.rand(v_heads, generator=gen, device=DEVICE).log(),
        "dt_bias": torch.randn(v_heads, generator=gen, device=DEVICE).half(),
        "weight": (torch.randn(dim, width, generator=gen, device=DEVICE) / 2).half(),
        "conv_state": paged(blocks, conv_len, dim, dtype=torch.float16, gen=gen).transpose(-1, -2),
        "ssm_state": paged(blocks, v_heads, v_dim, k_dim, dtype=state_dtype, gen=gen),
    }


def reference_conv(x, conv_state, weight, bias, indices):
    """x [T, D] -> silu(conv) and the shifted states (float64); padding tokens keep their input."""
    out, state = x.double().clone(), conv_state.double().clone()
    width = weight.shape[1]
    for t, block in enumerate(indices.tolist()):
        if block == 0:
            continue
        window = torch.cat([state[block][:, :width - 1], x[t].double()[:, None]], dim=1)
        acc = (window * weight.double()).sum(-1) + (0 if bias is None else bias.double())
        out[t] = acc * torch.sigmoid(acc)
        state[block][:, :width - 1] = window[:, 1:]
    return out, state


def reference_recurrent(qkv, a, b, a_log, dt_bias, state, indices, k_heads, k_dim, v_dim, scale, cu_seqlens=None,
                        num_accepted=None, round_beta=True):
    """vLLM's recurrence in float64: out [T, HV, V] and the updated states. Without cu_seqlens each
    token is a sequence reading and writing indices[t]; with them, sequence n starts from
    indices[n, num_accepted[n] - 1] and saves the state after its token t to indices[n, t]."""
    v_heads = a.shape[1]
    state = state.double().clone()
    out = torch.zeros(qkv.shape[0], v_heads, v_dim, dtype=torch.float64, device=DEVICE)
    x = qkv.double()
    q = x[:, :k_heads * k_dim].view(-1, k_heads, k_dim)
    k = x[:, k_heads * k_dim:2 * k_heads * k_dim].view(-1, k_heads, k_dim)
    v = x[:, 2 * k_heads * k_dim:].view(-1, v_heads, v_dim)
    group = v_heads // k_heads
    g = -a_log.double().exp() * torch.nn.functional.softplus(a.double() + dt_bias.double())
    beta = torch.sigmoid(b.float())
    beta = (beta.half() if round_beta else beta).double()  # vLLM's single-token kernel rounds beta
    if cu_seqlens is None:
        cu_seqlens, num_accepted = list(range(qkv.shape[0] + 1)), [1] * qkv.shape[0]
        indices = indices.view(-1, 1)
    rows, accepted = indices.tolist(), list(num_accepted)
    for n in range(len(cu_seqlens) - 1):
        tokens = range(cu_seqlens[n], cu_seqlens[n + 1])
        source = rows[n][accepted[n] - 1] if len(tokens) else 0
        if source <= 0:
            continue
        for hv in range(v_heads):
            s = state[source, hv].clone()
            for position, t in enumerate(tokens):
                qh, kh = q[t, hv // group], k[t, hv // group]
                qh = qh / torch.sqrt((qh * qh).sum() + 1e-6) * scale
                kh = kh / torch.sqrt((kh * kh).sum() + 1e-6)
                s = s * g[t, hv].exp()
                u = beta[t, hv] * (v[t, hv] - s @ kh)
                s = s + torch.outer(u, kh)
                out[t, hv] = s @ qh
                if rows[n][position] > 0:
                    state[rows[n][position], hv] = s
    return out, state


def assert_close(actual, expected, rel, what):
    assert not actual.isnan().any(), f"{what}: NaN (unwritten output?)"
    error = (actual.double() - expected).abs().max().item()
    bound = rel * max(expected.abs().max().item(), 1e-3)
    assert error <= bound, f"{what}: max abs error {error:.3e} > {bound:.3e}"


@pytest.mark.parametrize("dim, width, tokens", [(2560, 4, 7), (10240, 4, 1), (96, 2, 33)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_conv_update_matches_reference(dim, width, tokens, with_bias, seed):
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    blocks = tokens + 5
    stored = paged(blocks, width - 1, dim, dtype=torch.float16, gen=gen)  # vLLM's SD layout
    conv_state = stored.transpose(-1, -2)
    weight = torch.randn(dim, width, generator=gen, device=DEVICE).half()
    bias = torch.randn(dim, generator=gen, device=DEVICE).half() if with_bias else None
    rows = torch.randn(tokens, dim + 8, generator=gen, device=DEVICE).half()
    x = rows[:, 8:]  # strided rows, as a slice of the fused projection
    indices = block_indices(tokens, blocks, gen)
    expected_out, expected_state = reference_conv(x, conv_state, weight, bias, indices)
    untouched = conv_state[0].clone()

    torch.ops._C_sm7x.gdn_conv_update(x, conv_state, weight, bias, indices, True)
    assert_close(x, expected_out, 2e-3, "conv output")
    assert torch.equal(conv_state.double(), expected_state), "conv state not shifted exactly"
    assert torch.equal(conv_state[0], untouched), "the padding block was written"


@pytest.mark.parametrize("k_heads, v_heads, k_dim, v_dim", SHAPES)
@pytest.mark.parametrize("state_dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("tokens", [1, 7])
def test_recurrent_decode_matches_reference(k_heads, v_heads, k_dim, v_dim, state_dtype, tokens, seed):
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    blocks = tokens + 4
    inputs = layer_inputs(gen, tokens, blocks, k_heads, v_heads, k_dim, v_dim, state_dtype=state_dtype)
    qkv, a, b, a_log, dt_bias, state = (inputs[k] for k in ("qkv", "a", "b", "a_log", "dt_bias", "ssm_state"))
    state[0] = float("nan")  # the padding block must never be read into a result or written
    indices = block_indices(tokens, blocks, gen)
    scale = k_dim ** -0.5
    expected_out, expected_state = reference_recurrent(qkv, a, b, a_log, dt_bias, state, indices, k_heads, k_dim,
                                                       v_dim, scale)
    out = torch.full((tokens, v_heads, v_dim), float("nan"), device=DEVICE).half()

    torch.ops._C_sm7x.gdn_recurrent(qkv, a, b, a_log, dt_bias, scale, state, indices, out, k_heads, round_beta=True)
    live = indices > 0
    assert_close(out[live], expected_out[live], 2e-3, "output")
    assert torch.equal(out[~live], torch.zeros_like(out[~live])), "padding tokens must get zeros"
    tolerance = 1e-3 if state_dtype == torch.float32 else 2e-3  # fp16 state: one rounding per step
    assert_close(state[1:], expected_state[1:], tolerance, "state")
    assert state[0].isnan().all(), "the padding block was written"


def test_decode_step_composes_conv_and_recurrence(seed):
    from vllm_sm7x.ops.gdn import gdn_decode

    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    k_heads, v_heads, k_dim, v_dim, tokens, width = 4, 12, 128, 128, 5, 4
    blocks = 9
    inputs = layer_inputs(gen, tokens, blocks, k_heads, v_heads, k_dim, v_dim, conv_len=width - 1, width=width)
    qkv, a, b, a_log, dt_bias, weight, conv_state, ssm_state = (
        inputs[k] for k in ("qkv", "a", "b", "a_log", "dt_bias", "weight", "conv_state", "ssm_state"))
    indices = block_indices(tokens, blocks, gen)
    convolved, _ = reference_conv(qkv, conv_state, weight, None, indices)
    initial_state = ssm_state.clone()
    out = torch.full((tokens, v_heads, v_dim), float("nan"), device=DEVICE).half()

    gdn_decode(qkv, a, b, conv_state, weight, None, a_log, dt_bias, ssm_state, indices, out, k_heads, k_dim ** -0.5)
    assert_close(qkv, convolved, 2e-3, "convolved qkv")
    # The recurrence saw the kernel's fp16 conv output: the reference takes the same input.
    expected_out, _ = reference_recurrent(qkv, a, b, a_log, dt_bias, initial_state, indices, k_heads, k_dim, v_dim,
                                          k_dim ** -0.5)
    live = indices > 0
    assert_close(out[live], expected_out[live], 2e-3, "output")


def test_decode_reads_the_block_column_vllm_passes_through_its_stride(seed):
    """With MTP each sequence owns 1 + k state blocks, and vLLM's plain-decode metadata is
    block_table[:, 0]: a view of stride 1 + k (copied to a contiguous buffer only under full CUDA
    graphs). The step must equal the one given the same indices contiguously."""
    from vllm_sm7x.ops.gdn import gdn_decode

    k_heads, v_heads, k_dim, v_dim, tokens, width, blocks = 4, 12, 128, 128, 5, 4, 9
    results = []
    for strided in (False, True):
        gen = torch.Generator(device=DEVICE).manual_seed(seed)  # the same inputs, in the same layouts, twice
        inputs = layer_inputs(gen, tokens, blocks, k_heads, v_heads, k_dim, v_dim, conv_len=width - 1, width=width)
        indices = block_indices(tokens, blocks, gen)
        if strided:
            table = torch.stack([indices, indices.flip(0), torch.zeros_like(indices), indices.roll(1)], dim=1)
            indices = table[:, 0]
            assert indices.stride(0) == 4
        out = torch.full((tokens, v_heads, v_dim), float("nan"), device=DEVICE).half()
        gdn_decode(inputs["qkv"], inputs["a"], inputs["b"], inputs["conv_state"], inputs["weight"], None,
                   inputs["a_log"], inputs["dt_bias"], inputs["ssm_state"], indices, out, k_heads, k_dim ** -0.5)
        results.append((out, inputs["qkv"], inputs["conv_state"], inputs["ssm_state"]))
    torch.cuda.synchronize()
    for contiguous, strided in zip(*results):
        assert torch.equal(contiguous.nan_to_num(), strided.nan_to_num())


def test_bad_inputs_are_refused_with_the_limit():
    qkv = torch.zeros(2, 2 * 96 + 2 * 96, device=DEVICE).half()
    state = torch.zeros(3, 2, 96, 96, device=DEVICE)
    ab = torch.zeros(2, 2, device=DEVICE).half()
    with pytest.raises(ValueError, match="head_k_dim 96 is not supported"):
        torch.ops._C_sm7x.gdn_recurrent(qkv, ab, ab, torch.zeros(2, device=DEVICE), ab[0], 1.0, state,
                                        torch.ones(2, dtype=torch.int32, device=DEVICE),
                                        torch.zeros(2, 2, 96, device=DEVICE).half(), 1)
    misaligned = torch.zeros(3 * 2 * 64 * 64 + 1, device=DEVICE)[1:].view(3, 2, 64, 64)
    with pytest.raises(ValueError, match="multiples of 16 bytes"):
        torch.ops._C_sm7x.gdn_recurrent(qkv[:, :256].contiguous(), ab, ab, torch.zeros(2, device=DEVICE), ab[0],
                                        1.0, misaligned, torch.ones(2, dtype=torch.int32, device=DEVICE),
                                        torch.zeros(2, 2, 64, device=DEVICE).half(), 1)
    with pytest.raises(ValueError, match="must be float16"):
        torch.ops._C_sm7x.gdn_conv_update(qkv.float(), torch.zeros(3, 384, 3, device=DEVICE).half(),
                                          torch.zeros(384, 4, device=DEVICE).half(), None,
                                          torch.ones(2, dtype=torch.int32, device=DEVICE), True)


def test_op_schemas_and_fake_implementations():
    qkv = torch.randn(3, 2 * 64 + 2 * 64, device=DEVICE).half()
    conv_state = torch.randn(4, 3, 256, device=DEVICE).half().transpose(-1, -2)
    indices = torch.tensor([1, 0, 3], dtype=torch.int32, device=DEVICE)
    torch.library.opcheck(torch.ops._C_sm7x.gdn_conv_update.default,
                          (qkv, conv_state, torch.randn(256, 4, device=DEVICE).half(), None, indices, True))
    ab = torch.randn(3, 2, device=DEVICE).half()
    torch.library.opcheck(torch.ops._C_sm7x.gdn_recurrent.default,
                          (qkv, ab, ab, torch.zeros(2, device=DEVICE), ab[0].contiguous(), 0.125,
                           torch.randn(4, 2, 64, 64, device=DEVICE), indices,
                           torch.empty(3, 2, 64, device=DEVICE).half(), 1))


def test_matches_vllms_own_decode_kernels(seed):
    """The same step through vLLM's Triton pair (built for this GPU), from the same states: our kernels
    must be a drop-in replacement, not only agree with our reading of the math."""
    pytest.importorskip("vllm")
    from vllm.model_executor.layers.mamba.ops.causal_conv1d import causal_conv1d_update
    from vllm.third_party.flash_linear_attention.ops.fused_recurrent import (
        fused_recurrent_gated_delta_rule_packed_decode)

    from vllm_sm7x.ops.gdn import gdn_decode

    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    k_heads, v_heads, k_dim, v_dim, tokens, width, blocks = 4, 12, 128, 128, 6, 4, 10
    inputs = layer_inputs(gen, tokens, blocks, k_heads, v_heads, k_dim, v_dim, conv_len=width - 1, width=width)
    qkv, a, b, a_log, dt_bias, weight, conv_state, ssm_state = (
        inputs[k] for k in ("qkv", "a", "b", "a_log", "dt_bias", "weight", "conv_state", "ssm_state"))
    indices = block_indices(tokens, blocks, gen)
    theirs = {"qkv": qkv.clone(), "conv": conv_state.clone(), "ssm": ssm_state.clone(),
              "out": torch.zeros(tokens, 1, v_heads, v_dim, device=DEVICE).half()}
    x = causal_conv1d_update(theirs["qkv"], theirs["conv"], weight, None, "silu", conv_state_indices=indices,
                             validate_data=False)
    fused_recurrent_gated_delta_rule_packed_decode(mixed_qkv=x, a=a, b=b, A_log=a_log, dt_bias=dt_bias,
                                                   scale=k_dim ** -0.5, initial_state=theirs["ssm"],
                                                   out=theirs["out"], ssm_state_indices=indices,
                                                   use_qk_l2norm_in_kernel=True)
    out = torch.full((tokens, v_heads, v_dim), float("nan"), device=DEVICE).half()
    gdn_decode(qkv, a, b, conv_state, weight, None, a_log, dt_bias, ssm_state, indices, out, k_heads, k_dim ** -0.5)
    assert_close(qkv, x.double(), 2e-3, "convolved qkv vs vLLM")
    assert torch.equal(conv_state, theirs["conv"]), "conv state differs from vLLM's"
    assert_close(out, theirs["out"].squeeze(1).double(), 2e-3, "output vs vLLM")
    assert_close(ssm_state, theirs["ssm"].double(), 1e-3, "state vs vLLM")


# ---------------------------------------------------------------------------------------------------
# MTP verification: 1 + k tokens per sequence


def reference_conv_verify(x, conv_state, weight, indices, num_accepted, cu_seqlens):
    """vLLM's speculative conv update in float64: each sequence's window starts at its last accepted
    position; its state becomes [history after that position, the sequence's inputs]."""
    out, state = x.double().clone(), conv_state.double().clone()
    width = weight.shape[1]
    for n in range(len(cu_seqlens) - 1):
        block, tokens = int(indices[n, 0]), range(cu_seqlens[n], cu_seqlens[n + 1])
        if block == 0 or not len(tokens):
            continue
        offset = num_accepted[n] - 1
        window = state[block][:, offset:offset + width - 1].clone()
        kept = window[:, 1:].clone()
        for position, t in enumerate(tokens):
            window = torch.cat([window, x[t].double()[:, None]], dim=1)
            acc = (window * weight.double()).sum(-1)
            out[t] = acc * torch.sigmoid(acc)
            window = window[:, 1:]
        state[block][:, :width - 2] = kept
        state[block][:, width - 2:width - 2 + len(tokens)] = x[list(tokens)].double().t()
    return out, state


def verify_batch(gen, k_heads, v_heads, k_dim, v_dim, draft, seqs, width=4, state_dtype=torch.float32):
    """A verification batch as vLLM builds it: seqs sequences of 1 + draft tokens (the last one empty:
    CUDA-graph padding), distinct state blocks per position, num_accepted in 1 .. 1 + draft."""
    lengths = [1 + draft] * (seqs - 1) + [0]
    cu_seqlens = [0]
    for length in lengths:
        cu_seqlens.append(cu_seqlens[-1] + length)
    tokens, blocks = cu_seqlens[-1], seqs * (1 + draft) + 3
    indices = (torch.randperm(blocks - 1, generator=gen, device=DEVICE)[:seqs * (1 + draft)] + 1).int()
    indices = indices.view(seqs, 1 + draft).contiguous()
    indices[-1] = 0  # the padded sequence
    # Every count 1 .. 1 + draft over the live sequences (cycled, then shuffled), so each start column runs.
    counts = [1 + n % (1 + draft) for n in range(seqs - 1)]
    accepted = [counts[i] for i in torch.randperm(seqs - 1, generator=gen, device=DEVICE).tolist()] + [1]
    return {**layer_inputs(gen, tokens, blocks, k_heads, v_heads, k_dim, v_dim, conv_len=width - 1 + draft,
                           width=width, state_dtype=state_dtype),
            "indices": indices, "accepted": accepted, "cu_seqlens": cu_seqlens}


@pytest.mark.parametrize("k_heads, v_heads, k_dim, v_dim", [(4, 12, 128, 128), (2, 6, 64, 64)])
@pytest.mark.parametrize("draft, width, state_dtype", [(1, 4, torch.float32), (3, 4, torch.float32),
                                                       (4, 4, torch.float32), (3, 4, torch.float16),
                                                       (2, 2, torch.float32), (3, 6, torch.float32)])
def test_mtp_verification_matches_reference(k_heads, v_heads, k_dim, v_dim, draft, width, state_dtype, seed):
    from vllm_sm7x.ops.gdn import gdn_verify

    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    x = verify_batch(gen, k_heads, v_heads, k_dim, v_dim, draft, seqs=7, width=width, state_dtype=state_dtype)
    accepted = torch.tensor(x["accepted"], dtype=torch.int32, device=DEVICE)
    cu = torch.tensor(x["cu_seqlens"], dtype=torch.int32, device=DEVICE)
    expected_qkv, expected_conv = reference_conv_verify(x["qkv"], x["conv_state"], x["weight"], x["indices"],
                                                        x["accepted"], x["cu_seqlens"])
    initial_ssm = x["ssm_state"].clone()
    out = torch.full((x["qkv"].shape[0], v_heads, v_dim), float("nan"), device=DEVICE).half()

    gdn_verify(x["qkv"], x["a"], x["b"], x["conv_state"], x["weight"], None, x["a_log"], x["dt_bias"], x["ssm_state"],
               x["indices"], accepted, cu, out, k_heads, k_dim ** -0.5)
    assert_close(x["qkv"], expected_qkv, 2e-3, "convolved qkv")
    assert torch.equal(x["conv_state"].double(), expected_conv), "conv state not rolled exactly"
    expected_out, expected_ssm = reference_recurrent(x["qkv"], x["a"], x["b"], x["a_log"], x["dt_bias"], initial_ssm,
                                                     x["indices"], k_heads, k_dim, v_dim, k_dim ** -0.5,
                                                     x["cu_seqlens"], x["accepted"], round_beta=False)
    assert_close(out, expected_out, 2e-3, "output")  # no padded sequence has tokens: every row written
    tolerance = 1e-3 if state_dtype == torch.float32 else 2e-3  # fp16 state: one rounding per saved state
    assert_close(x["ssm_state"][1:], expected_ssm[1:], tolerance, "states saved per draft position")


def test_mtp_verification_of_a_short_sequence(seed):
    """A sequence with fewer tokens than its row of blocks (only the first positions are written)."""
    from vllm_sm7x.ops.gdn import gdn_verify

    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    k_heads, v_heads, k_dim, v_dim, draft = 2, 6, 64, 64, 3
    x = verify_batch(gen, k_heads, v_heads, k_dim, v_dim, draft, seqs=3)
    cu_seqlens = [0, 1 + draft, 1 + draft + 2, 1 + draft + 2]  # the second sequence has 2 of 4 tokens
    tokens = cu_seqlens[-1]
    for key in ("qkv", "a", "b"):
        x[key] = x[key][:tokens].contiguous()
    accepted = torch.tensor(x["accepted"], dtype=torch.int32, device=DEVICE)
    cu = torch.tensor(cu_seqlens, dtype=torch.int32, device=DEVICE)
    expected_qkv, expected_conv = reference_conv_verify(x["qkv"], x["conv_state"], x["weight"], x["indices"],
                                                        x["accepted"], cu_seqlens)
    initial_ssm = x["ssm_state"].clone()
    out = torch.full((tokens, v_heads, v_dim), float("nan"), device=DEVICE).half()

    gdn_verify(x["qkv"], x["a"], x["b"], x["conv_state"], x["weight"], None, x["a_log"], x["dt_bias"], x["ssm_state"],
               x["indices"], accepted, cu, out, k_heads, k_dim ** -0.5)
    expected_out, expected_ssm = reference_recurrent(x["qkv"], x["a"], x["b"], x["a_log"], x["dt_bias"], initial_ssm,
                                                     x["indices"], k_heads, k_dim, v_dim, k_dim ** -0.5, cu_seqlens,
                                                     x["accepted"], round_beta=False)
    assert_close(x["qkv"], expected_qkv, 2e-3, "convolved qkv")
    assert torch.equal(x["conv_state"].double(), expected_conv), "conv state not rolled exactly"
    assert_close(out, expected_out, 2e-3, "output")
    assert_close(x["ssm_state"][1:], expected_ssm[1:], 1e-3, "states")
    unwritten = x["indices"][1, 2:].long()
    assert torch.equal(x["ssm_state"][unwritten], initial_ssm[unwritten]), "blocks past the sequence were written"


def test_mtp_inputs_are_checked():
    qkv = torch.zeros(4, 2 * 64 + 2 * 64, device=DEVICE).half()
    weight = torch.zeros(256, 4, device=DEVICE).half()
    cu = torch.tensor([0, 2, 4], dtype=torch.int32, device=DEVICE)
    rows = torch.ones(2, 2, dtype=torch.int32, device=DEVICE)
    accepted = torch.ones(2, dtype=torch.int32, device=DEVICE)
    short_state = torch.zeros(5, 3, 256, device=DEVICE).half().transpose(-1, -2)  # width - 1 only
    with pytest.raises(ValueError, match="need width - 2 \\+ that = 4"):
        torch.ops._C_sm7x.gdn_conv_update(qkv, short_state, weight, None, rows, True, cu, accepted)
    with pytest.raises(ValueError, match="needs cu_seqlens"):
        torch.ops._C_sm7x.gdn_conv_update(qkv[:2], short_state, weight, None, rows, True, None, accepted)
    with pytest.raises(ValueError, match="state_indices must be \\[seqs, positions"):
        torch.ops._C_sm7x.gdn_conv_update(qkv, short_state, weight, None, rows[:, 0].contiguous(), True, cu)


def test_mtp_op_schemas_with_optional_arguments():
    qkv = torch.randn(4, 2 * 64 + 2 * 64, device=DEVICE).half()
    conv_state = torch.randn(5, 4, 256, device=DEVICE).half().transpose(-1, -2)
    cu = torch.tensor([0, 2, 4], dtype=torch.int32, device=DEVICE)
    rows = torch.tensor([[1, 2], [3, 4]], dtype=torch.int32, device=DEVICE)
    accepted = torch.tensor([2, 1], dtype=torch.int32, device=DEVICE)
    torch.library.opcheck(torch.ops._C_sm7x.gdn_conv_update.default,
                          (qkv, conv_state, torch.randn(256, 4, device=DEVICE).half(), None, rows, True, cu,
                           accepted))
    ab = torch.randn(4, 2, device=DEVICE).half()
    torch.library.opcheck(torch.ops._C_sm7x.gdn_recurrent.default,
                          (qkv, ab, ab, torch.zeros(2, device=DEVICE), ab[0].contiguous(), 0.125,
                           torch.randn(5, 2, 64, 64, device=DEVICE), rows,
                           torch.empty(4, 2, 64, device=DEVICE).half(), 1, cu, accepted, False))


def test_mtp_verification_matches_vllms_own_kernels(seed):
    pytest.importorskip("vllm")
    from vllm.model_executor.layers.mamba.ops.causal_conv1d import causal_conv1d_update
    from vllm.third_party.flash_linear_attention.ops.fused_sigmoid_gating import (
        fused_sigmoid_gating_delta_rule_update)

    from vllm_sm7x.ops.gdn import gdn_verify

    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    k_heads, v_heads, k_dim, v_dim, draft, seqs = 4, 12, 128, 128, 3, 4
    x = verify_batch(gen, k_heads, v_heads, k_dim, v_dim, draft, seqs)
    accepted = torch.tensor(x["accepted"], dtype=torch.int32, device=DEVICE)
    cu = torch.tensor(x["cu_seqlens"], dtype=torch.int32, device=DEVICE)
    tokens = x["qkv"].shape[0]
    theirs = {"qkv": x["qkv"].clone(), "conv": x["conv_state"].clone(), "ssm": x["ssm_state"].clone()}
    convolved = causal_conv1d_update(theirs["qkv"], theirs["conv"], x["weight"], None, "silu",
                                     conv_state_indices=x["indices"][:, 0], num_accepted_tokens=accepted,
                                     query_start_loc=cu, max_query_len=1 + draft, validate_data=False)
    q = convolved[:, :k_heads * k_dim].reshape(1, tokens, k_heads, k_dim).contiguous()
    k = convolved[:, k_heads * k_dim:2 * k_heads * k_dim].reshape(1, tokens, k_heads, k_dim).contiguous()
    v = convolved[:, 2 * k_heads * k_dim:].reshape(1, tokens, v_heads, v_dim).contiguous()
    their_out, _ = fused_sigmoid_gating_delta_rule_update(
        A_log=x["a_log"], a=x["a"], b=x["b"], dt_bias=x["dt_bias"], q=q, k=k, v=v, initial_state=theirs["ssm"],
        inplace_final_state=True, cu_seqlens=cu, ssm_state_indices=x["indices"], num_accepted_tokens=accepted,
        use_qk_l2norm_in_kernel=True)
    out = torch.full((tokens, v_heads, v_dim), float("nan"), device=DEVICE).half()
    gdn_verify(x["qkv"], x["a"], x["b"], x["conv_state"], x["weight"], None, x["a_log"], x["dt_bias"], x["ssm_state"],
               x["indices"], accepted, cu, out, k_heads, k_dim ** -0.5)
    assert_close(x["qkv"], convolved.double(), 2e-3, "convolved qkv vs vLLM")
    assert torch.equal(x["conv_state"], theirs["conv"]), "conv state differs from vLLM's"
    assert_close(out, their_out.squeeze(0).double(), 2e-3, "output vs vLLM")
    assert_close(x["ssm_state"], theirs["ssm"].double(), 1e-3, "states vs vLLM")


# ---------------------------------------------------------------------------------------------------
# Mixed steps: vLLM's layer calls FLA's recurrence for the decodes and verifications it peels off a prompt


@pytest.mark.parametrize("verify", [False, True])
def test_mixed_step_recurrence_matches_vllms_own_kernel(verify, seed):
    """The patched fused_sigmoid_gating_delta_rule_update (vllm_sm7x/patch/gdn_recurrent.py) against vLLM's
    on the same post-conv q/k/v, in the two forms vLLM's mixed step calls it: the decodes (one token each,
    a 1-D index column longer than them: the prompts' blocks follow) and the verifications (2-D indices,
    accepted counts, a and b longer than the call's tokens)."""
    pytest.importorskip("vllm")
    from vllm.third_party.flash_linear_attention.ops.fused_sigmoid_gating import (
        fused_sigmoid_gating_delta_rule_update)

    from vllm_sm7x.patch.gdn_recurrent import sm7x_fused_sigmoid_gating

    def no_fallback(*args, **kwargs):
        pytest.fail("the wrapper gave this call back to vLLM's kernel: nothing of ours would be tested")

    ours_fn = sm7x_fused_sigmoid_gating(no_fallback)
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    k_heads, v_heads, k_dim, v_dim = 4, 12, 128, 128
    if verify:
        x = verify_batch(gen, k_heads, v_heads, k_dim, v_dim, 3, 4)
        cu = torch.tensor(x["cu_seqlens"], dtype=torch.int32, device=DEVICE)
        accepted = torch.tensor(x["accepted"], dtype=torch.int32, device=DEVICE)
        indices, tokens = x["indices"], x["qkv"].shape[0]
        extra = {"num_accepted_tokens": accepted}
    else:
        tokens, prompts, blocks = 5, 2, 12
        x = layer_inputs(gen, tokens, blocks, k_heads, v_heads, k_dim, v_dim)
        cu = torch.arange(tokens + 1, dtype=torch.int32, device=DEVICE)
        indices = torch.cat([block_indices(tokens, blocks, gen),
                             torch.full((prompts,), blocks - 1, dtype=torch.int32, device=DEVICE)])
        extra = {}
    ab_rows = tokens + 7  # vLLM passes the whole step's a and b to the verification call
    a = torch.randn(ab_rows, v_heads, generator=gen, device=DEVICE).half()
    b = torch.randn(ab_rows, v_heads, generator=gen, device=DEVICE).half()
    qkv = x["qkv"]
    q = qkv[:, :k_heads * k_dim].reshape(1, tokens, k_heads, k_dim).contiguous()
    k = qkv[:, k_heads * k_dim:2 * k_heads * k_dim].reshape(1, tokens, k_heads, k_dim).contiguous()
    v = qkv[:, 2 * k_heads * k_dim:].reshape(1, tokens, v_heads, v_dim).contiguous()
    states = {"theirs": x["ssm_state"].clone(), "ours": x["ssm_state"]}
    outs = {}
    for name, fn in (("theirs", fused_sigmoid_gating_delta_rule_update), ("ours", ours_fn)):
        torch.full((1, tokens, v_heads, v_dim), float("nan"), device=DEVICE).half()  # freed: outputs may land on NaN
        outs[name], final = fn(A_log=x["a_log"], a=a if verify else a[:tokens], b=b if verify else b[:tokens],
                               dt_bias=x["dt_bias"], q=q, k=k, v=v, initial_state=states[name],
                               inplace_final_state=True, cu_seqlens=cu, ssm_state_indices=indices,
                               use_qk_l2norm_in_kernel=True, **extra)
        assert final is states[name]
    live = (indices[:, 0] if verify else indices[:tokens]) > 0
    token_live = live.repeat_interleave(torch.diff(cu).long()) if verify else live
    assert outs["ours"].shape == outs["theirs"].shape == (1, tokens, v_heads, v_dim)
    assert_close(outs["ours"][0][token_live], outs["theirs"][0][token_live].double(), 2e-3, "output vs vLLM")
    assert_close(states["ours"], states["theirs"].double(), 1e-3, "states vs vLLM")
