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
    memory-bound benchmarks report their fraction of. The faster of two copies of 1 GiB: the driver's
    memcpy and an SM kernel (an elementwise multiply by one). The memcpy alone understated an H200:
    captured in a graph it measured 2.7 TB/s there, while cuBLAS read fp16 weights at 3.9 TB/s in the
    same run (awq_gemm-sm75-h200-2026-11-30.json), so fractions of it were about 1.45x too high."""
    src = torch.rand(1 << 28, device="cuda")  # float32: 1 GiB
    dst = torch.empty_like(src)
    memcpy_ms = graph_median_ms(lambda: dst.copy_(src))
    kernel_ms = graph_median_ms(lambda: torch.mul(src, 1.0, out=dst))
    return 2 * src.numel() * src.element_size() / min(memcpy_ms, kernel_ms) / 1e6
