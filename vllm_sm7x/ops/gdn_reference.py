"""Float64 references of the gated delta rule that csrc/gdn/gdn_prefill.cu computes (vLLM's
chunk_gated_delta_rule arguments; q and k already l2-normalised): the token-by-token recurrence, and
the chunk algebra the kernel is built on, so a CPU test can check that algebra against the
recurrence and the GPU tests can check the kernel against both."""
from __future__ import annotations

import torch


def _per_v_head(x: torch.Tensor, v_heads: int) -> torch.Tensor:
    """[T, k_heads, d] -> [T, v_heads, d]: v-head h reads k-head h // (v_heads // k_heads)."""
    return x.double().repeat_interleave(v_heads // x.shape[1], dim=1)


def _sequences(cu_seqlens: torch.Tensor) -> list[tuple[int, int]]:
    bounds = cu_seqlens.tolist()
    return list(zip(bounds[:-1], bounds[1:]))


def _float64_problem(q, k, v, g, beta, initial_state, cu_seqlens):
    """Inputs in float64 with q and k per v-head, the states to evolve (zeros without initial_state)
    and a zero output."""
    v_heads = v.shape[1]
    q, k, v, g, beta = _per_v_head(q, v_heads), _per_v_head(k, v_heads), v.double(), g.double(), beta.double()
    states = (torch.zeros(cu_seqlens.numel() - 1, v_heads, v.shape[2], k.shape[2], dtype=torch.float64,
                          device=v.device) if initial_state is None else initial_state.double().clone())
    return q, k, v, g, beta, states, torch.zeros_like(v)


def gated_delta_rule_reference(q, k, v, g, beta, scale: float, initial_state, cu_seqlens):
    """q, k [T, k_heads, k_dim], v [T, v_heads, v_dim], g and beta [T, v_heads], initial_state
    [N, v_heads, v_dim, k_dim] or None -> (o [T, v_heads, v_dim], final state [N, v_heads, v_dim, k_dim]),
    float64: per token S = exp(g) S;  S += beta (v - S k) k^T;  o = scale S q."""
    q, k, v, g, beta, states, out = _float64_problem(q, k, v, g, beta, initial_state, cu_seqlens)
    for n, (begin, end) in enumerate(_sequences(cu_seqlens)):
        state = states[n]
        for t in range(begin, end):
            state *= torch.exp(g[t])[:, None, None]
            update = beta[t][:, None] * (v[t] - torch.einsum("hvk,hk->hv", state, k[t]))
            state += update[:, :, None] * k[t][:, None, :]
            out[t] = scale * torch.einsum("hvk,hk->hv", state, q[t])
    return out, states


def chunked_gated_delta_rule_reference(q, k, v, g, beta, scale: float, initial_state, cu_seqlens, chunk: int = 16):
    """The same result through the kernel's chunk algebra (gdn_prefill.cu's header comment): per chunk,
    A and the right-hand sides, a triangular solve for W and Uraw, then U = Uraw - W S0^T, the outputs
    and the chunk's closing state."""
    q, k, v, g, beta, states, out = _float64_problem(q, k, v, g, beta, initial_state, cu_seqlens)
    for n, (begin, end) in enumerate(_sequences(cu_seqlens)):
        for first in range(begin, end, chunk):
            rows = slice(first, min(first + chunk, end))
            kc, qc, vc = k[rows].transpose(0, 1), scale * q[rows].transpose(0, 1), v[rows].transpose(0, 1)
            gcum = g[rows].transpose(0, 1).cumsum(-1)                       # [h, C]
            bc = beta[rows].transpose(0, 1)                                 # [h, C]
            size = gcum.shape[1]
            lower = torch.ones(size, size, dtype=torch.bool, device=v.device).tril()
            decay = torch.where(lower, torch.exp((gcum[:, :, None] - gcum[:, None, :]).masked_fill(~lower, 0)), 0)
            a = (bc[:, :, None] * decay * (kc @ kc.transpose(1, 2))).tril(-1)
            eye = torch.eye(size, dtype=torch.float64, device=v.device)
            rhs_w = (bc * torch.exp(gcum))[:, :, None] * kc
            rhs_u = bc[:, :, None] * vc
            w = torch.linalg.solve_triangular(eye + a, rhs_w, upper=False, unitriangular=True)
            u_raw = torch.linalg.solve_triangular(eye + a, rhs_u, upper=False, unitriangular=True)
            s0 = states[n]                                                  # [h, V, K]
            u = u_raw - w @ s0.transpose(1, 2)                              # [h, C, V]
            p = decay * (qc @ kc.transpose(1, 2))
            o = torch.exp(gcum)[:, :, None] * (qc @ s0.transpose(1, 2)) + p @ u
            out[rows] = o.transpose(0, 1)
            closing = torch.exp(gcum[:, -1:] - gcum)                        # [h, C]
            states[n] = torch.exp(gcum[:, -1])[:, None, None] * s0 + (closing[:, :, None] * u).transpose(1, 2) @ kc
    return out, states
