"""Causal conv1d of Gated DeltaNet prefill (csrc/gdn/gdn_conv_prefill.cu, in place of vLLM's Triton
causal_conv1d_fn) against a float64 reference and against vLLM's own kernel on the same inputs, in
vLLM's layouts: x passed as mixed_qkv transposed ([dim, tokens], dim fastest), the conv state stored
[blocks, state_len, dim] and passed transposed with room for draft tokens, sequences with and
without an initial state, empty ones, and padding (cache index -1 or the null block 0)."""
import pytest
import torch

from tests.gpu.kernel_checks import relative_error

pytestmark = pytest.mark.gpu
DEVICE = "cuda"
PAD, NULL = -1, 0
# Prompt lengths: single tokens, shorter than the window, chunk-sized, odd, and an empty one.
LENGTHS = [37, 1, 2, 0, 129, 5, 300, 3]


@pytest.fixture(autouse=True)
def kernels():
    from vllm_sm7x.ops import load_kernels

    load_kernels()


def inputs(gen, dim, width, blocks=12, extra_columns=2):
    starts = torch.tensor([0] + LENGTHS, device=DEVICE).cumsum(0).int()
    tokens = int(starts[-1])
    mixed_qkv = torch.randn(tokens, dim, generator=gen, device=DEVICE).half()
    weight = (torch.randn(dim, width, generator=gen, device=DEVICE) * 0.5).half()
    bias = torch.randn(dim, generator=gen, device=DEVICE).half()
    stored = torch.randn(blocks, width - 1 + extra_columns, dim, generator=gen, device=DEVICE).half()
    cache_indices = (torch.randperm(blocks - 1, generator=gen, device=DEVICE)[:len(LENGTHS)] + 1).int()
    cache_indices[5] = PAD  # padding sequences: left alone
    cache_indices[7] = NULL
    has_initial_state = torch.rand(len(LENGTHS), generator=gen, device=DEVICE) < 0.5
    has_initial_state[0], has_initial_state[1] = True, False
    return mixed_qkv.transpose(0, 1), weight, bias, stored.transpose(1, 2), starts, cache_indices, has_initial_state


def reference(x, weight, bias, states, starts, cache_indices, has_initial_state, padding=(PAD, NULL)):
    """float64: (out [dim, tokens] with NaN where nothing is written, the states afterwards); sequences
    whose block is in `padding` are skipped."""
    width = weight.shape[1]
    out = torch.full(x.shape, float("nan"), dtype=torch.float64, device=DEVICE)
    new_states = states.double().clone()
    for n, block in enumerate(cache_indices.tolist()):
        begin, end = int(starts[n]), int(starts[n + 1])
        if block in padding or end == begin:
            continue
        initial = states[block, :, :width - 1].double() if has_initial_state[n] else \
            torch.zeros(x.shape[0], width - 1, dtype=torch.float64, device=DEVICE)
        window = torch.cat([initial, x[:, begin:end].double()], dim=1)
        for t in range(end - begin):
            out[:, begin + t] = torch.nn.functional.silu(bias.double() + (weight.double() * window[:, t:t + width]).sum(1))
        new_states[block, :, :width - 1] = window[:, -(width - 1):]
    return out, new_states


@pytest.mark.parametrize("width", [2, 3, 4])
@pytest.mark.parametrize("dim", [200, 1024 + 8])
def test_conv_prefill_matches_float64_and_leaves_padding_alone(width, dim, seed):
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    x, weight, bias, states, starts, cache_indices, has_initial_state = inputs(gen, dim, width)
    expected_out, expected_states = reference(x, weight, bias, states, starts, cache_indices, has_initial_state)
    out = torch.ops._C_sm7x.gdn_conv_prefill(x, weight, bias, states, starts, cache_indices, has_initial_state,
                                             True, PAD, NULL)
    torch.cuda.synchronize()
    assert out.shape == x.shape and out.stride() == x.stride()
    written = ~expected_out.isnan()
    assert not out[written].isnan().any()
    assert relative_error(out[written], expected_out[written]) < 2e-3
    # The kept columns are copies of fp16 inputs: exact; the draft-token columns and padding untouched.
    assert torch.equal(states.double(), expected_states)


def run_and_compare(x, weight, bias, states, starts, cache_indices, has_initial_state, expected):
    expected_out, expected_states = expected
    out = torch.ops._C_sm7x.gdn_conv_prefill(x, weight, bias, states, starts, cache_indices, has_initial_state,
                                             True, PAD, NULL)
    torch.cuda.synchronize()
    written = ~expected_out.isnan()
    assert relative_error(out[written], expected_out[written]) < 2e-3
    assert torch.equal(states.double(), expected_states)


def test_cache_indices_as_vllm_passes_them_with_several_blocks_per_sequence(seed):
    """With MTP or prefix caching a sequence owns several state blocks, and vLLM's GDN layer passes
    block_table[:, 0]: a view whose stride is the table's width, not 1."""
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    x, weight, bias, states, starts, cache_indices, has_initial_state = inputs(gen, 200, 4)
    expected = reference(x, weight, bias, states, starts, cache_indices, has_initial_state)
    table = torch.stack([cache_indices, torch.full_like(cache_indices, NULL), cache_indices.flip(0)], dim=1)
    column = table[:, 0]
    assert column.stride(0) == 3
    run_and_compare(x, weight, bias, states, starts, column, has_initial_state, expected)


def test_without_cache_indices_sequence_n_uses_block_n_and_block_0_is_live(seed):
    """No cache indices: every sequence is live in its own block, the first in block 0 (which as an
    index would be vLLM's null block)."""
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    x, weight, bias, states, starts, _, has_initial_state = inputs(gen, 200, 4)
    own_blocks = torch.arange(len(LENGTHS), dtype=torch.int32, device=DEVICE)
    expected = reference(x, weight, bias, states, starts, own_blocks, has_initial_state, padding=())
    run_and_compare(x, weight, bias, states, starts, None, has_initial_state, expected)


def test_query_start_loc_past_the_tokens_reads_only_the_tokens(seed):
    """A last start past x (never from vLLM's metadata, but nothing must fault): the last sequence ends
    at the last token, its outputs and state as if its start were exact."""
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    x, weight, bias, states, starts, cache_indices, has_initial_state = inputs(gen, 200, 4)
    free = sorted(set(range(1, states.shape[0])) - set(cache_indices.tolist()))
    cache_indices[-1] = free[0]  # the last sequence live (inputs() pads it)
    expected = reference(x, weight, bias, states, starts, cache_indices, has_initial_state)
    past = starts.clone()
    past[-1] += 4096
    run_and_compare(x, weight, bias, states, past, cache_indices, has_initial_state, expected)


@pytest.mark.parametrize("width", [2, 4])
def test_conv_prefill_matches_vllms_triton_kernel(width, seed):
    from vllm.model_executor.layers.mamba.ops.causal_conv1d import causal_conv1d_fn

    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    x, weight, bias, states, starts, cache_indices, has_initial_state = inputs(gen, 1032, width)
    cache_indices[cache_indices == PAD] = NULL  # vLLM 0.26 pads with the null block; its kernel would index -1
    theirs_states = states.clone()
    theirs = causal_conv1d_fn(x, weight, bias, conv_states=theirs_states, query_start_loc=starts,
                              cache_indices=cache_indices, has_initial_state=has_initial_state, activation="silu")
    ours = torch.ops._C_sm7x.gdn_conv_prefill(x, weight, bias, states, starts, cache_indices, has_initial_state,
                                              True, PAD, NULL)
    torch.cuda.synchronize()
    live = [n for n, block in enumerate(cache_indices.tolist()) if block not in (PAD, NULL)]
    columns = torch.cat([torch.arange(int(starts[n]), int(starts[n + 1]), device=DEVICE) for n in live])
    assert relative_error(ours[:, columns], theirs[:, columns]) < 1e-3
    assert torch.equal(states, theirs_states)


def test_the_patched_layer_function_sends_prefill_to_our_kernel(monkeypatch, seed):
    from vllm.model_executor.layers.mamba.gdn import qwen_gdn_linear_attn as gdn_module

    from vllm_sm7x import activation
    from vllm_sm7x.activation import Activation
    from vllm_sm7x.patch import gdn_conv_prefill

    def stock(*args, **kwargs):
        raise AssertionError("vLLM's Triton conv called for inputs our kernel takes")

    monkeypatch.setattr(gdn_module, "causal_conv1d_fn", stock)
    monkeypatch.setattr(activation, "current_activation", lambda: Activation(True, "sm75", True, ""))
    monkeypatch.setenv("VLLM_SM7X_GDN_CONV_PREFILL", "1")
    assert gdn_conv_prefill.causal_conv1d_fn_on_sm7x_kernel()
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    x, weight, bias, states, starts, cache_indices, has_initial_state = inputs(gen, 200, 4)
    expected_out, expected_states = reference(x, weight, bias, states, starts, cache_indices, has_initial_state)
    out = gdn_module.causal_conv1d_fn(x, weight, bias, conv_states=states, has_initial_state=has_initial_state,
                                      cache_indices=cache_indices, query_start_loc=starts, metadata=object())
    written = ~expected_out.isnan()
    assert relative_error(out[written], expected_out[written]) < 2e-3 and torch.equal(states.double(), expected_states)
