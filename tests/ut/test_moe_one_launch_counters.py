"""The one-launch MoE decode form's counters (vllm_sm7x.ops.moe.one_launch_counters): made once, never
inside a CUDA-graph capture, bounded."""
import pytest
import torch

from vllm_sm7x.ops import moe


def test_they_are_not_made_inside_a_graph_capture(monkeypatch):
    monkeypatch.setattr(moe, "_ONE_LAUNCH_COUNTERS", {})
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    with pytest.raises(RuntimeError, match="outside CUDA-graph capture: run the layer once before capturing"):
        moe.one_launch_counters(torch.device("cpu"), 1)


def test_they_are_made_once_and_kept(monkeypatch):
    monkeypatch.setattr(moe, "_ONE_LAUNCH_COUNTERS", {})
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    first = moe.one_launch_counters(torch.device("cpu"), 1)
    assert first.dtype == torch.int32 and not first.any() and first.numel() == 2 + moe.ONE_LAUNCH_MAX_TOKENS
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)  # a later capture reuses them
    assert moe.one_launch_counters(torch.device("cpu"), moe.ONE_LAUNCH_MAX_TOKENS) is first


def test_too_many_tokens_are_refused():
    with pytest.raises(ValueError, match="at most 254 tokens"):
        moe.one_launch_counters(torch.device("cpu"), moe.ONE_LAUNCH_MAX_TOKENS + 1)
