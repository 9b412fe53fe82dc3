#!/usr/bin/env python3
"""Gated DeltaNet decode step (conv update + delta-rule recurrence, one token per sequence) at
Qwen3.6-27B and 35B-A3B linear-attention shapes, TP1 and TP4, batch 1/4/8, fp32 state: our kernels
(csrc/gdn) against vLLM's Triton pair (causal_conv1d_update + the packed recurrent decode) built for
this GPU ("native") and for the emulated card ("faithful": benchmarks/triton_faithful.py).

bw_frac = state bytes read and written / time / copy bandwidth measured in this run; the states of
several layers are rotated so the working set is >= 4x the L2. All calls run inside CUDA graphs.
These are figures of this GPU running the SM7x code paths, not V100 or T4 figures.

  python benchmarks/gdn.py --path sm70 sm75 [--out benchmarks/results] [--quick]
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from run_info import baselines_for_path, benchmark_parser, error_note, run_info, write_result  # noqa: E402
from triton_faithful import EMULATED_ARCH, EmulatedKernel, swapped, with_real_triton  # noqa: E402

from vllm_sm7x.timing import copy_bandwidth_gbs, graph_median_ms  # noqa: E402

K_DIM = V_DIM = 128
WIDTH = 4
# (k_heads, v_heads) per GPU.
SHAPES = {"27b-tp1": (16, 48), "27b-tp4": (4, 12), "35b-a3b-tp1": (16, 32), "35b-a3b-tp4": (4, 8)}


class Problem:
    """One decode step's inputs and `layers` layers of conv and recurrent state (vLLM's layouts)."""

    def __init__(self, k_heads: int, v_heads: int, batch: int, layers: int):
        self.k_heads, self.v_heads, self.batch = k_heads, v_heads, batch
        dim = 2 * k_heads * K_DIM + v_heads * V_DIM
        blocks = batch + 1  # block 0 is vLLM's null block
        self.qkv = torch.randn(batch, dim, device="cuda").half()
        self.a = torch.randn(batch, v_heads, device="cuda").half()
        self.b = torch.randn(batch, v_heads, device="cuda").half()
        self.a_log = torch.rand(v_heads, device="cuda").log()
        self.dt_bias = torch.randn(v_heads, device="cuda").half()
        self.weight = (torch.randn(dim, WIDTH, device="cuda") / 2).half()
        self.indices = torch.arange(1, batch + 1, dtype=torch.int32, device="cuda")
        self.out = torch.empty(batch, v_heads, V_DIM, device="cuda").half()
        self.layers = [(torch.randn(blocks, WIDTH - 1, dim, device="cuda").half().transpose(-1, -2),
                        torch.randn(blocks, v_heads, V_DIM, K_DIM, device="cuda") * 0.1) for _ in range(layers)]

    @property
    def state_bytes(self) -> int:  # read and written per layer
        dim = 2 * self.k_heads * K_DIM + self.v_heads * V_DIM
        return 2 * self.batch * (self.v_heads * V_DIM * K_DIM * 4 + dim * (WIDTH - 1) * 2)


def ours(problem: Problem):
    from vllm_sm7x.ops.gdn import gdn_decode

    def run(conv_state, ssm_state):
        gdn_decode(problem.qkv, problem.a, problem.b, conv_state, problem.weight, None, problem.a_log,
                   problem.dt_bias, ssm_state, problem.indices, problem.out, problem.k_heads, K_DIM ** -0.5)
    return run


def stock(problem: Problem, emulate: str | None):
    """vLLM's decode pair; emulate=None builds for this GPU, "sm70"/"sm75" for that card."""
    from vllm.model_executor.layers.mamba.ops import causal_conv1d
    from vllm.third_party.flash_linear_attention.ops import fused_recurrent

    conv = with_real_triton(causal_conv1d, "_causal_conv1d_update_kernel")
    recurrent = with_real_triton(fused_recurrent, "fused_recurrent_gated_delta_rule_packed_decode_kernel")
    major, minor = torch.cuda.get_device_capability()
    run_arch = major * 10 + minor
    conv_kernels = ({"_causal_conv1d_update_kernel": EmulatedKernel(
        conv._causal_conv1d_update_kernel, EMULATED_ARCH[emulate], run_arch)} if emulate else {})
    recurrent_kernels = ({"fused_recurrent_gated_delta_rule_packed_decode_kernel": EmulatedKernel(
        recurrent.fused_recurrent_gated_delta_rule_packed_decode_kernel, EMULATED_ARCH[emulate], run_arch)}
        if emulate else {})

    def run(conv_state, ssm_state):
        with swapped(conv, **conv_kernels), swapped(recurrent, **recurrent_kernels):
            x = conv.causal_conv1d_update(problem.qkv, conv_state, problem.weight, None, "silu",
                                          conv_state_indices=problem.indices, validate_data=False)
            recurrent.fused_recurrent_gated_delta_rule_packed_decode(
                mixed_qkv=x, a=problem.a, b=problem.b, A_log=problem.a_log, dt_bias=problem.dt_bias,
                scale=K_DIM ** -0.5, initial_state=ssm_state, out=problem.out.unsqueeze(1),
                ssm_state_indices=problem.indices, use_qk_l2norm_in_kernel=True)
    return run


def time_per_layer(fn, problem: Problem) -> float:
    return graph_median_ms(lambda: [fn(c, s) for c, s in problem.layers]) / len(problem.layers)


def main() -> int:
    parser = benchmark_parser()
    parser.add_argument("--quick", action="store_true", help="TP4 shapes, batch 1 and 4 only")
    args = parser.parse_args()

    torch.manual_seed(0)
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    bandwidth = copy_bandwidth_gbs()
    rows, notes = {path: [] for path in args.path}, {}
    shapes = {k: v for k, v in SHAPES.items() if not args.quick or k.endswith("tp4")}
    for shape, (k_heads, v_heads) in shapes.items():
        for batch in ((1, 4) if args.quick else (1, 4, 8)):
            probe = Problem(k_heads, v_heads, batch, 1)
            layers = max(1, -(-4 * l2 // probe.state_bytes))
            del probe
            problem = Problem(k_heads, v_heads, batch, layers)
            baselines = {}
            for key, emulate in [("triton_native", None)] + [(f"triton_faithful_{p}", p) for p in args.path]:
                try:
                    baselines[key] = round(time_per_layer(stock(problem, emulate), problem), 5)
                except Exception as e:  # reported, not fatal
                    baselines[key] = None
                    notes[f"{shape} b={batch} {key}"] = error_note(e)
            ms = time_per_layer(ours(problem), problem)  # SIMT: the same kernels on both paths
            for path in args.path:
                rows[path].append({"case": f"{shape} decode", "phase": "decode", "batch": batch,
                                   "layers_rotated": layers, "ms": round(ms, 5),
                                   "bw_frac": round(problem.state_bytes / (ms * 1e-3) / (bandwidth * 1e9), 3),
                                   "baselines": baselines_for_path(baselines, path)})
            del problem
            torch.cuda.empty_cache()

    info = run_info()
    for path, path_rows in rows.items():
        write_result(args.out, info, "gdn_decode", path, path_rows, notes, copy_bandwidth_gbs=round(bandwidth, 1))
        print(f"\n{info['gpu']}, {path} path, copy bandwidth {bandwidth:.0f} GB/s (ms per layer)")
        print(f"{'case':<20} {'b':>2} {'ours':>9} {'bw':>6} {'native':>9} {'faithful':>9}")
        for r in path_rows:
            b = list(r["baselines"].values()) + [None]
            fmt = lambda v: f"{v:>9.4f}" if v is not None else f"{'-':>9}"  # noqa: E731
            print(f"{r['case']:<20} {r['batch']:>2} {fmt(r['ms'])} {r['bw_frac']:>6.2f} {fmt(b[0])} {fmt(b[1])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
