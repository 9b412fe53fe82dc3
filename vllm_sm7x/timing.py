"""Timing on the GPU the way memory-bound kernels must be timed: inside a CUDA graph (no launch or
Python overhead), median of replays after a warm-up. Used by the tuning cache and the benchmarks."""
from __future__ import annotations

import torch


def graph_median_ms(step, replays: int = 10) -> float:
    """Median ms of one replay of a CUDA graph that runs step() once (warmed up outside the capture)."""
    step()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    graph.replay()
    times = []
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]
