#!/usr/bin/env python3
"""AWQ W4A16 GEMM at Qwen3.6-27B layer widths (TP1 and TP4 shards), small M (decode, MTP verify).

Per case: median ms of our fused kernel on the chosen arch path, of dequantise + cuBLAS, and of
cuBLAS on dense fp16 weights; bw_frac = bytes that must move / time / copy bandwidth measured in
this run. Weight sets rotate so the working set is several times the L2. On a newer GPU this runs
the SM70/SM75 code paths in emulation: the numbers are that GPU's, not a V100's or T4's.

  python benchmarks/awq_gemm.py --path sm70 sm75 [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
GROUP = 128
# (case, K, N) for Qwen3.6-27B: hidden 5120, q 24x256 (+ output gate), kv 4x256, MLP 17408.
LAYERS = [("qkv", 5120, 2 * 6144 + 2 * 1024), ("o_proj", 6144, 5120), ("gate_up", 5120, 2 * 17408),
          ("down", 17408, 5120)]
ROW_PARALLEL = {"o_proj", "down"}


def cases(tp: int):
    for name, K, N in LAYERS:
        yield f"27b-tp{tp} {name}", (K // tp, N) if name in ROW_PARALLEL else (K, N // tp)


def median_ms(fn, sets: int, iters: int = 60, warmup: int = 10) -> float:
    for i in range(warmup):
        fn(i % sets)
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    for i in range(iters):
        starts[i].record()
        fn(i % sets)
        ends[i].record()
    torch.cuda.synchronize()
    times = sorted(s.elapsed_time(e) for s, e in zip(starts, ends))
    return times[len(times) // 2]


def copy_bandwidth_gbs() -> float:
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = median_ms(lambda _: dst.copy_(src), 1, iters=20)
    return 2 * src.numel() / ms / 1e6


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--path", choices=["sm70", "sm75"], nargs="+", required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--m", type=int, nargs="+", default=[1, 4, 16])
    args = parser.parse_args()

    from vllm_sm7x.ops import awq
    from vllm_sm7x.quantization.awq_format import quantize_awq, to_kernel_layout

    torch.manual_seed(0)
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    bandwidth = copy_bandwidth_gbs()
    rows = {path: [] for path in args.path}
    for tp in (1, 4):
        for case, (K, N) in cases(tp):
            weight_bytes = K * N // 2
            sets = max(2, -(-4 * l2 // weight_bytes))  # working set >= 4x L2
            layers = [to_kernel_layout(*quantize_awq(torch.randn(K, N, device="cuda") * 0.05, GROUP), GROUP)
                      for _ in range(sets)]
            dense = [awq.awq_dequantize(w) for w in layers]  # [N, K] fp16
            for M in args.m:
                x = torch.randn(M, K, device="cuda").half()
                deq = median_ms(lambda i: torch.nn.functional.linear(x, awq.awq_dequantize(layers[i])), sets)
                fp16 = median_ms(lambda i: torch.nn.functional.linear(x, dense[i]), sets)
                moved = weight_bytes + (K // GROUP) * N * 4 + M * K * 2 + M * N * 2
                for path in args.path:
                    ours = median_ms(lambda i: awq.awq_gemm(x, layers[i], path=path), sets)
                    rows[path].append({
                        "case": case, "M": M, "N": N, "K": K, "ms": round(ours, 5),
                        "bw_frac": round(moved / (ours * 1e-3) / (bandwidth * 1e9), 3), "tflops": None,
                        "baselines": {"dequant_cublas_fp16": round(deq, 5), "cublas_fp16_dense": round(fp16, 5),
                                      "triton_awq_vllm": None}})
            del layers, dense
            torch.cuda.empty_cache()

    gpu = torch.cuda.get_device_name(0)
    date = datetime.date.today().isoformat()
    git = subprocess.run(["git", "rev-parse", "--verify", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    commit = git.stdout.strip() if git.returncode == 0 else ""  # the GPU machine gets no .git
    args.out.mkdir(parents=True, exist_ok=True)
    gpu_tag = gpu.replace("NVIDIA", "").split()[0].lower()
    for path, path_rows in rows.items():
        result = {"benchmark": "awq_gemm", "gpu": gpu, "emulate": path, "date": date,
                  "commit": commit or os.environ.get("SM7X_COMMIT", "unknown"), "command": " ".join(sys.argv),
                  "copy_bandwidth_gbs": round(bandwidth, 1), "group_size": GROUP, "rows": path_rows,
                  "notes": "triton_awq_vllm: not run (vLLM was not installed on the GPU machine for this run). "
                           "Figures of this GPU running the SM7x code path, not V100/T4 figures."}
        (args.out / f"awq_gemm-{path}-{gpu_tag}-{date}.json").write_text(json.dumps(result, indent=1) + "\n")
        print(f"\n{gpu}, {path} path, copy bandwidth {bandwidth:.0f} GB/s")
        print(f"{'case':<20} {'M':>3} {'ours ms':>9} {'bw':>6} {'deq+cuBLAS':>11} {'fp16 dense':>11}")
        for r in path_rows:
            b = r["baselines"]
            print(f"{r['case']:<20} {r['M']:>3} {r['ms']:>9.4f} {r['bw_frac']:>6.2f} "
                  f"{b['dequant_cublas_fp16']:>11.4f} {b['cublas_fp16_dense']:>11.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
