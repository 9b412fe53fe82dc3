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


def copy_bandwidth_gbs() -> float:
    """Device-to-device copy bandwidth of this GPU (GB/s, bytes read + written): the roofline the
    memory-bound benchmarks report their fraction of."""
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    return 2 * src.numel() / graph_median_ms(lambda: dst.copy_(src)) / 1e6
