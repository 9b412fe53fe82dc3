"""The chunk algebra of the Gated DeltaNet prefill kernel (csrc/gdn/gdn_prefill.cu), written out in
float64 (vllm_sm7x.ops.gdn_reference), equals the token-by-token recurrence: odd lengths, chunk
boundaries, several sequences, GQA head sharing, strong and weak decay, with and without an initial
state. The GPU tests then hold the kernel to the same recurrence."""
import torch
import pytest

from vllm_sm7x.ops.gdn_reference import chunked_gated_delta_rule_reference, gated_delta_rule_reference


def random_prefill(gen, lengths, k_heads, v_heads, k_dim, v_dim, decay_scale, with_state):
    tokens = sum(lengths)
    q = torch.nn.functional.normalize(torch.randn(tokens, k_heads, k_dim, generator=gen, dtype=torch.float64), dim=-1)
    k = torch.nn.functional.normalize(torch.randn(tokens, k_heads, k_dim, generator=gen, dtype=torch.float64), dim=-1)
    v = torch.randn(tokens, v_heads, v_dim, generator=gen, dtype=torch.float64)
    g = -decay_scale * torch.rand(tokens, v_heads, generator=gen, dtype=torch.float64)  # log decay <= 0
    beta = torch.rand(tokens, v_heads, generator=gen, dtype=torch.float64)
    state = torch.randn(len(lengths), v_heads, v_dim, k_dim, generator=gen, dtype=torch.float64) if with_state else None
    cu_seqlens = torch.tensor([0] + lengths).cumsum(0)
    return q, k, v, g, beta, state, cu_seqlens


@pytest.mark.parametrize("lengths", [[1], [16], [17], [5, 33, 16, 0, 40]])
@pytest.mark.parametrize("k_heads, v_heads", [(1, 1), (2, 6)])
@pytest.mark.parametrize("decay_scale", [0.05, 3.0])
@pytest.mark.parametrize("with_state", [False, True])
def test_chunk_algebra_equals_the_recurrence(lengths, k_heads, v_heads, decay_scale, with_state):
    gen = torch.Generator().manual_seed(len(lengths) * 100 + v_heads)
    inputs = random_prefill(gen, lengths, k_heads, v_heads, 24, 8, decay_scale, with_state)
    out, state = gated_delta_rule_reference(*inputs[:5], 0.3, *inputs[5:])
    chunked_out, chunked_state = chunked_gated_delta_rule_reference(*inputs[:5], 0.3, *inputs[5:], chunk=16)
    assert torch.allclose(chunked_out, out, rtol=1e-9, atol=1e-9)
    assert torch.allclose(chunked_state, state, rtol=1e-9, atol=1e-9)
    if with_state and lengths[-1]:  # the state moved: the check above compared something
        assert not torch.allclose(state[-1], inputs[5][-1])
