"""What the MoE routers of a transformers Qwen3.5/3.6 MoE model decide, recorded while it runs: used
to shape the test presets' routers (vllm_sm7x.checkpoints) and to tell a router near-tie from a wrong
token in the end-to-end tests (vllm_sm7x.checkpoints.reference)."""
from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def recorded_routers(model):
    """Within the block, the returned list fills with (top_k, router logits [tokens, experts] float32)
    of every MoE layer the model runs, in order."""
    records: list[tuple[int, torch.Tensor]] = []

    def record(router, inputs, outputs):
        records.append((router.top_k, outputs[0].detach().float()))

    hooks = [module.register_forward_hook(record) for name, module in model.named_modules()
             if name.endswith(".mlp.gate")]
    try:
        yield records
    finally:
        for hook in hooks:
            hook.remove()


def kth_expert_weights(records) -> torch.Tensor:
    """The renormalised routing weight of the last (k-th) chosen expert, per token and layer: what an
    expert swap at the k-th place, by rounding at a near-tie, changes in the layer's output."""
    weights = []
    for top_k, logits in records:
        chosen = logits.softmax(-1).topk(top_k, dim=-1).values
        weights.append(chosen[:, -1] / chosen.sum(-1))
    return torch.cat(weights)


def relative_topk_gaps(records) -> torch.Tensor:
    """[layers, tokens]: the gap between the k-th and (k+1)-th router logit over the spread (std) of that
    token's logits: how far, relative to its logits, rounding must move one to swap an expert."""
    gaps = []
    for top_k, logits in records:
        ordered = logits.sort(-1, descending=True).values
        # a flat row (spread 0) is a full tie: gap 0, not 0/0
        gaps.append((ordered[:, top_k - 1] - ordered[:, top_k]) / logits.std(-1).clamp_min(1e-30))
    return torch.stack(gaps)
