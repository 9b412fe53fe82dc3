#!/usr/bin/env python3
"""The decode kernels that miss their bandwidth targets, each launched inside one NVTX range "measured"
after a warm-up, for Nsight Compute to read their hardware counters (`tools/device/gpu.sh profile`
runs this under ncu and summarises the counters with tools/device/ncu_summary.py). Timing benchmarks
say how far each kernel is from the roofline; the counters say why (DRAM throughput, occupancy and
what limits it, where warps stall).

  awq-<shape>:        the AWQ GEMM awq_linear runs for one Qwen3.6-27B linear layer at M=1 (-m8/-m16: 8
                      and 16 rows, where the layer aggregate slows from 0.094 to 0.162 ms; -m64: 64 rows,
                      the tiled kernel since 2026-12-02, 0.299 ms per layer against Marlin's 0.191)
  attention-<shape>:  flash-attn-v100 decode at 32K context (the kernel and its split merge); -q5-128k: MTP
                      verification (q_len 5) at 128K, to compare the 8-row and pair kernels
                      (FLASH_ATTN_V100_DECODE=mma8|pairs)
  moe-<shape>:        our MoE layer at one token (Qwen3.6-35B-A3B widths; the decode kernels)
  gdn-prefill-<shape>: our chunked Gated DeltaNet prefill (both passes), one 1024-token prompt

  python benchmarks/profile_kernels.py --path sm75 --case CASE   (one case: ncu filters by the range)
  python benchmarks/profile_kernels.py --list
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

WARMUP = 3


def awq_case(K: int, N: int, M: int = 1):
    def make(path: str):
        from awq_gemm import Layer

        from vllm_sm7x.ops import awq

        layer, x = Layer(K, N, dense=False), torch.randn(M, K, device="cuda").half()
        return lambda: awq.awq_linear(x, layer.kernel, path=path)
    return make


def attention_case(q_heads: int, kv_heads: int, batch: int, q_len: int = 1, context: int = 32768):
    def make(path: str):
        import flash_attn_v100  # noqa: F401  (registers the attention ops)
        from attention import Problem

        problem = Problem(q_heads, kv_heads, batch, q_len=q_len, context=context, layers=1)
        key_cache, value_cache = problem.caches[0]
        return lambda: torch.ops.flash_attn_v100.paged_attention(
            problem.q, key_cache, value_cache, problem.cu_seqlens_q, problem.seqlens_k, problem.block_table,
            q_len, problem.scale, True, -1, 0.0, 0, path)
    return make


def gdn_prefill_case(k_heads: int, v_heads: int, tokens: int):
    def make(path: str):  # the kernel is arch-neutral SIMT: path does not change it
        from gdn_prefill import Problem, ours

        from vllm_sm7x.ops import load_kernels

        load_kernels()
        return ours(Problem(k_heads, v_heads, tokens))
    return make


def moe_case(inter: int):
    def make(path: str):
        import moe

        gen = torch.Generator(device="cuda").manual_seed(0)
        problem = moe.Problem([moe.Layer(inter, gen)], inter, tokens=1, gen=gen)
        run = moe.ours(problem, path)
        return lambda: run(problem.layers[0], problem.ids[0])
    return make


# Qwen3.6-27B: qkv (K 5120, N 2 x 6144 + 2 x 1024) and down (K 17408, N 5120) at TP1, gate_up at TP4.
CASES = {
    "awq-27b-tp1-qkv": awq_case(5120, 2 * 6144 + 2 * 1024),
    "awq-27b-tp1-down": awq_case(17408, 5120),
    "awq-27b-tp4-gate_up": awq_case(5120, 2 * 17408 // 4),
    "awq-27b-tp1-gate_up-m8": awq_case(5120, 2 * 17408, M=8),
    "awq-27b-tp1-gate_up-m16": awq_case(5120, 2 * 17408, M=16),
    "awq-27b-tp1-gate_up-m64": awq_case(5120, 2 * 17408, M=64),
    "attention-27b-tp1-b4": attention_case(24, 4, 4),
    "attention-27b-tp4-b1": attention_case(6, 1, 1),
    "attention-27b-tp4-b4-q5-128k": attention_case(6, 1, 4, q_len=5, context=131072),
    "moe-35b-a3b-tp1": moe_case(512),
    "gdn-prefill-27b-tp4": gdn_prefill_case(4, 12, 1024),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", choices=["sm70", "sm75"], default="sm75")
    parser.add_argument("--case", choices=sorted(CASES))
    parser.add_argument("--list", action="store_true", help="print the case names and exit")
    args = parser.parse_args()
    if args.list:
        print("\n".join(CASES))
        return 0
    if args.case is None:
        parser.error("--case is required (one case per ncu run; --list names them)")
    step = CASES[args.case](args.path)
    for _ in range(WARMUP):  # module load, autotuning and first-touch out of the measured launch
        step()
    torch.cuda.synchronize()
    torch.cuda.nvtx.range_push("measured")
    step()
    torch.cuda.nvtx.range_pop()
    torch.cuda.synchronize()
    print(f"{args.case} ({args.path}): measured launch done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
