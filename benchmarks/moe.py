#!/usr/bin/env python3
"""Routed experts of one MoE layer at Qwen3.6-35B-A3B widths (hidden 2048, 256 experts, top-8, expert
width 512 at TP1 and 128 at TP4; AWQ int4, group 128), or with --shapes 122b-a10b-tp4 Qwen3.5-122B-A10B's
at TP4 (hidden 3072, expert width 256), for 1, 4, 16 and 256 tokens: our grouped AWQ
GEMM layer (vllm_sm7x.ops.moe.awq_moe: routing sort, gate/up, SiLU gate, down, weighted sum) against
vLLM's int4 fused MoE (`fused_experts` with use_int4_w4a16: moe_align_block_size, the Triton
`fused_moe_kernel_gptq_awq`, SiLU-and-mul, moe_sum) built for this GPU ("native"), and with its
Triton kernel built for the emulated card ("faithful": benchmarks/triton_faithful.py). vLLM's own pick
of its CUDA wna16 kernel for few tokens per expert is reported as "vllm_wna16_native" (a T4 has it,
a V100 has no int4 MoE path at all). The shared expert is not part of the timed layer.

bw_frac = bytes of the experts the routing touches (weights, scales, zeros) / time / copy bandwidth of
this run; experts of several layers are rotated so the touched bytes are >= 4x the L2. Layer 0 holds
the same AWQ weights in both formats and the outputs are compared (notes say if they disagree). Where
ours takes its decode kernels (few tokens), its grouped-GEMM form is timed too ("ours_grouped"); with
--grouped-configs, the grouped form on every (rows per CTA, column tiles) of the grouped registry too
("ours_grouped_r<rows>_c<tiles>", each checked against vLLM's output like ours). All
calls run inside CUDA graphs. Where the decode form runs, its bounds are measured in the same setting:
the same bytes copied in two launches ("copy_same_bytes") and its two launches on a near-empty layer
("launch_floor"), and the layer with its routing as served: from the router logits, the decode kernels
routing themselves ("ours_from_logits", what the monolithic MoE method runs) and the routing kernel
before the layer ("ours_router_then_layer", vLLM's router then the method). These are figures of this
GPU running the SM7x code paths, not V100 or T4 figures.

  python benchmarks/moe.py --path sm70 sm75 [--out benchmarks/results] [--quick] [--tokens N ...]
                           [--shapes NAME ...] [--grouped-configs]
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import NamedTuple
from unittest import mock

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from run_info import (baselines_for_path, benchmark_parser, error_note, relative_difference, run_info,  # noqa: E402
                      write_result)
from triton_faithful import EMULATED_ARCH, EmulatedKernel, swapped, with_real_triton  # noqa: E402

from vllm_sm7x.quantization.awq_format import experts_to_kernel_layout, unpack_int4  # noqa: E402
from vllm_sm7x.timing import copy_bandwidth_gbs, graph_median_ms  # noqa: E402

EXPERTS, TOPK, GROUP = 256, 8, 128  # both models: 256 experts, top-8


class Shape(NamedTuple):
    hidden: int
    inter: int  # expert width per GPU


SHAPES = {"35b-a3b-tp1": Shape(2048, 512), "35b-a3b-tp4": Shape(2048, 128),
          "122b-a10b-tp4": Shape(3072, 256)}  # Qwen3.5-122B-A10B at TP4, the seed's MoE setup
MEMORY_BUDGET = 24 << 30  # bytes of expert weights per shape, both formats
FAITHFUL_MAX_TOKENS = 1024  # beyond, the FMA-only faithful Triton build takes seconds per timed graph


def wna16_format(qweight: torch.Tensor, qzeros: torch.Tensor, scales: torch.Tensor):
    """One expert's AWQ GEMM-format tensors ([K, N/8], [K/G, N/8], [K/G, N]) in the layout of vLLM's
    int4 fused MoE kernel: values [N, K/2] uint8 (k pairs, low nibble first), scales [N, K/G], zero
    points [N/2, K/G] uint8 (n pairs, low nibble first)."""
    values = unpack_int4(qweight).t()                 # [N, K]
    zeros = unpack_int4(qzeros).t()                   # [N, K/G]
    packed = (values[:, 0::2] | (values[:, 1::2] << 4)).to(torch.uint8)
    packed_zeros = (zeros[0::2] | (zeros[1::2] << 4)).to(torch.uint8)
    return packed.contiguous(), scales.t().contiguous(), packed_zeros.contiguous()


def random_awq(experts: int, k: int, n: int, gen: torch.Generator):
    """AWQ GEMM-format tensors of random int4 experts: (qweight, qzeros, scales), each [E, ...]."""
    full = dict(low=-2**31, high=2**31 - 1, dtype=torch.int32, device="cuda", generator=gen)
    return (torch.randint(size=(experts, k, n // 8), **full), torch.randint(size=(experts, k // GROUP, n // 8), **full),
            (torch.rand(experts, k // GROUP, n, device="cuda", generator=gen) * 0.02 + 0.001).half())


class Layer:
    """One MoE layer's experts in both formats (ours: kernel layout; vLLM's: wna16)."""

    def __init__(self, shape: Shape, gen: torch.Generator):
        self.ours, self.vllm = {}, {}
        for name, (k, n) in {"w13": (shape.hidden, 2 * shape.inter), "w2": (shape.inter, shape.hidden)}.items():
            qweight, qzeros, scales = random_awq(EXPERTS, k, n, gen)
            self.ours[name] = experts_to_kernel_layout(qweight, qzeros, scales, GROUP)
            parts = [wna16_format(qweight[e], qzeros[e], scales[e]) for e in range(EXPERTS)]
            self.vllm[name] = [torch.stack(tensors) for tensors in zip(*parts)]

    @staticmethod
    def expert_bytes(shape: Shape) -> int:
        """Bytes of one expert (int4 weights, fp16 scales and zero terms), as our kernels read them."""
        weights = 3 * shape.hidden * shape.inter  # 2I x H + H x I values
        return weights // 2 + 2 * (weights // GROUP) * 2


class Problem:
    def __init__(self, layers: list[Layer], shape: Shape, tokens: int, gen: torch.Generator):
        self.layers, self.shape, self.tokens = layers, shape, tokens
        self.x = torch.randn(tokens, shape.hidden, device="cuda", generator=gen).half()
        self.weights = torch.rand(tokens, TOPK, device="cuda", generator=gen).softmax(-1)
        self.logits = [torch.randn(tokens, EXPERTS, device="cuda", generator=gen).half() for _ in layers]
        self.ids = [logits.topk(TOPK, -1).indices.int() for logits in self.logits]

    def touched_bytes(self) -> float:  # per layer, averaged
        distinct = sum(ids.unique().numel() for ids in self.ids) / len(self.ids)
        return distinct * Layer.expert_bytes(self.shape)


def ours(problem: Problem, path: str, decode_max_tokens: int | None = None, grouped_tile=None):
    """Our layer as the MoE method runs it, or with decode_max_tokens=0 always on the grouped GEMMs,
    on grouped_tile (rows per CTA, column tiles) if given."""
    from vllm_sm7x.ops.moe import DECODE_MAX_TOKENS, awq_moe

    limit = DECODE_MAX_TOKENS if decode_max_tokens is None else decode_max_tokens
    return lambda layer, ids: awq_moe(problem.x, layer.ours["w13"], layer.ours["w2"], problem.weights, ids, path,
                                      decode_max_tokens=limit, grouped_tile=grouped_tile)


def routed_from_logits(problem: Problem, path: str, in_kernel: bool):
    """Our layer with its routing, from one layer's router logits: the decode kernels routing themselves
    (in_kernel), or the routing kernel then the layer (as with vLLM's router in front)."""
    from vllm_sm7x.ops.moe import awq_moe, awq_moe_routed, topk_softmax

    if in_kernel:
        return lambda layer, logits: awq_moe_routed(problem.x, layer.ours["w13"], layer.ours["w2"], logits, TOPK,
                                                    True, path)

    def router_then_layer(layer, logits):
        weights, ids, _ = topk_softmax(logits, TOPK, True)
        return awq_moe(problem.x, layer.ours["w13"], layer.ours["w2"], weights, ids, path)

    return router_then_layer


def decode_form_bounds(problem: Problem, path: str) -> dict:
    """What bounds the two-launch decode form, measured in the same graph setting (ms per layer):
    "copy_same_bytes": two elementwise copies moving (read + write, as the copy roofline counts) the
    bytes each launch must read, the gate/up experts' then the down experts', over as many buffer pairs
    as there are layers (outside the L2 like them): the launch structure at copy bandwidth.
    "launch_floor": the same two launches on a layer of 8 experts of hidden and width 128 (192 KB in all)."""
    from vllm_sm7x.ops.moe import awq_moe

    gate_up, down = 2 * problem.touched_bytes() / 3, problem.touched_bytes() / 3  # 2HI and HI values
    pair_of = lambda b: (torch.empty(int(b) // 8, device="cuda"), torch.empty(int(b) // 8, device="cuda"))  # noqa: E731
    buffers = [[pair_of(b) for b in (gate_up, down)] for _ in problem.layers]
    copies = graph_median_ms(lambda: [torch.mul(src, 1.0, out=dst) for pair in buffers for src, dst in pair])
    gen = torch.Generator(device="cuda").manual_seed(1)
    tiny = {name: experts_to_kernel_layout(*random_awq(8, k, n, gen), GROUP)
            for name, (k, n) in {"w13": (128, 256), "w2": (128, 128)}.items()}
    x = torch.randn(problem.tokens, 128, device="cuda", generator=gen).half()
    ids = torch.stack([torch.randperm(8, device="cuda", generator=gen) for _ in range(problem.tokens)]).int()  # top-8
    weights = torch.rand(ids.shape, device="cuda", generator=gen).softmax(-1)
    floor = graph_median_ms(lambda: [awq_moe(x, tiny["w13"], tiny["w2"], weights, ids, path) for _ in problem.layers])
    return {"copy_same_bytes": round(copies / len(problem.layers), 5),
            "launch_floor": round(floor / len(problem.layers), 5)}


def fused_moe_module():
    from vllm.model_executor.layers.fused_moe import fused_moe

    return with_real_triton(fused_moe, "fused_moe_kernel_gptq_awq")


def stock(problem: Problem, emulate: str | None, triton_only: bool):
    """vLLM's int4 fused MoE on the layer; triton_only keeps vLLM off its CUDA wna16 kernel; emulate
    swaps the Triton kernel for its build for that card."""
    module = fused_moe_module()
    major, minor = torch.cuda.get_device_capability()
    kernels = {"fused_moe_kernel_gptq_awq": EmulatedKernel(module.fused_moe_kernel_gptq_awq, EMULATED_ARCH[emulate],
                                                           major * 10 + minor)} if emulate else {}

    def run(layer, ids):
        (w1, w1_scale, w1_zp), (w2, w2_scale, w2_zp) = layer.vllm["w13"], layer.vllm["w2"]
        keep_triton = (mock.patch.object(module, "should_moe_wna16_use_cuda", return_value=False) if triton_only
                       else contextlib.nullcontext())
        with swapped(module, **kernels), keep_triton:
            return module.fused_experts_impl(problem.x, w1, w2, problem.weights, ids, activation="silu",
                                             use_int4_w4a16=True, w1_scale=w1_scale, w2_scale=w2_scale,
                                             w1_zp=w1_zp, w2_zp=w2_zp, block_shape=[0, GROUP])
    return run


def time_per_layer(fn, problem: Problem, inputs: list[torch.Tensor] | None = None) -> float:
    """Median ms per layer of fn(layer, routing input) over the rotated layers, inputs the layers' expert
    ids unless given (e.g. their router logits)."""
    per_layer = inputs if inputs is not None else problem.ids
    return graph_median_ms(lambda: [fn(layer, x) for layer, x in zip(problem.layers, per_layer)]) / len(
        problem.layers)


def main() -> int:
    parser = benchmark_parser()
    parser.add_argument("--quick", action="store_true", help="1, 4 and 16 tokens only")
    parser.add_argument("--tokens", type=int, nargs="+", help="these token counts instead (e.g. 8192: a prefill "
                        f"chunk); the faithful Triton baseline is skipped above {FAITHFUL_MAX_TOKENS} tokens")
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=["35b-a3b-tp1", "35b-a3b-tp4"],
                        help="layer shapes (default: the 35B-A3B ones; 122b-a10b-tp4 is Qwen3.5-122B-A10B at TP4)")
    parser.add_argument("--grouped-configs", action="store_true",
                        help="also time the grouped GEMMs on every entry of the grouped registry")
    args = parser.parse_args()
    from vllm_sm7x.ops.moe import DECODE_MAX_TOKENS, grouped_tiles

    gen = torch.Generator(device="cuda").manual_seed(0)
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    bandwidth = copy_bandwidth_gbs()
    token_counts = args.tokens or ((1, 4, 16) if args.quick else (1, 4, 16, 256))  # 4: the decode form's last size
    rows, notes = {path: [] for path in args.path}, {}
    for name in args.shapes:
        shape = SHAPES[name]
        one_token_bytes = TOPK * Layer.expert_bytes(shape)
        layer_bytes = 2 * EXPERTS * Layer.expert_bytes(shape)  # both formats
        count = max(1, min(-(-4 * l2 // one_token_bytes), MEMORY_BUDGET // layer_bytes))
        layers = [Layer(shape, gen) for _ in range(count)]
        for tokens in token_counts:
            problem = Problem(layers, shape, tokens, gen)
            baselines = {}
            faithful = [(f"triton_faithful_{p}", p, True) for p in args.path] if tokens <= FAITHFUL_MAX_TOKENS else []
            if not faithful:
                notes[f"{name} t={tokens} faithful"] = f"not timed above {FAITHFUL_MAX_TOKENS} tokens (FMA-only Triton)"
            for key, emulate, triton_only in ([("vllm_wna16_native", None, False), ("triton_native", None, True)] +
                                              faithful):
                try:
                    baselines[key] = round(time_per_layer(stock(problem, emulate, triton_only), problem), 5)
                except Exception as e:  # reported, not fatal
                    baselines[key] = None
                    notes[f"{name} t={tokens} {key}"] = error_note(e)
            reference = None
            try:
                reference = stock(problem, None, True)(layers[0], problem.ids[0])
            except Exception:  # noted above
                pass
            for path in args.path:
                run = ours(problem, path)
                if reference is not None:
                    diff = relative_difference(run(layers[0], problem.ids[0]), reference)
                    if diff > 4e-3:
                        notes[f"{name} t={tokens} {path}"] = f"ours and vLLM's outputs differ: {diff:.2e}"
                ms = time_per_layer(run, problem)
                path_baselines = baselines_for_path(baselines, path)
                if tokens <= DECODE_MAX_TOKENS:  # ours took the decode kernels: the grouped form beside it
                    path_baselines["ours_grouped"] = round(time_per_layer(ours(problem, path, 0), problem), 5)
                    for key, in_kernel in (("ours_from_logits", True), ("ours_router_then_layer", False)):
                        path_baselines[key] = round(time_per_layer(routed_from_logits(problem, path, in_kernel),
                                                                   problem, problem.logits), 5)
                    try:
                        path_baselines.update(decode_form_bounds(problem, path))
                    except Exception as e:  # reported, not fatal
                        notes[f"{name} t={tokens} {path} bounds"] = error_note(e)
                for rows_per_cta, column_tiles in grouped_tiles() if args.grouped_configs else ():
                    key = f"ours_grouped_r{rows_per_cta}_c{column_tiles}"
                    grouped = ours(problem, path, 0, (rows_per_cta, column_tiles))
                    if reference is not None:
                        diff = relative_difference(grouped(layers[0], problem.ids[0]), reference)
                        if diff > 4e-3:
                            notes[f"{name} t={tokens} {path} {key}"] = f"differs from vLLM's output: {diff:.2e}"
                    path_baselines[key] = round(time_per_layer(grouped, problem), 5)
                rows[path].append({"case": f"{name} moe", "phase": "decode" if tokens <= 16 else "prefill",
                                   "tokens": tokens, "layers_rotated": count, "ms": round(ms, 5),
                                   "bw_frac": round(problem.touched_bytes() / (ms * 1e-3) / (bandwidth * 1e9), 3),
                                   "tflops": None, "baselines": path_baselines})
            del problem
        del layers
        torch.cuda.empty_cache()

    info = run_info()
    for path, path_rows in rows.items():
        write_result(args.out, info, "moe", path, path_rows,
                     {"figures": "this GPU running the SM7x code paths, not V100/T4 figures",
                      "timed": "routed experts only (no shared expert, no router GEMM)", **notes},
                     copy_bandwidth_gbs=round(bandwidth, 1))
        print(f"\n{info['gpu']}, {path} path, copy bandwidth {bandwidth:.0f} GB/s (ms per layer)")
        print(f"{'case':<16} {'tokens':>6} {'ours':>9} {'bw':>6} {'grouped':>9} {'wna16':>9} {'triton':>9} "
              f"{'faithful':>9}")
        fmt = lambda v: f"{v:>9.4f}" if v is not None else f"{'-':>9}"  # noqa: E731
        for r in path_rows:
            b = r["baselines"]
            faithful = next((v for k, v in b.items() if "faithful" in k), None)
            print(f"{r['case']:<16} {r['tokens']:>6} {fmt(r['ms'])} {r['bw_frac']:>6.2f} {fmt(b.get('ours_grouped'))} "
                  f"{fmt(b.get('vllm_wna16_native'))} {fmt(b.get('triton_native'))} {fmt(faithful)}")
            if "ours_from_logits" in b:
                routed_bw = r["bw_frac"] * r["ms"] / b["ours_from_logits"]
                print(f"{'':<16} {'':>6} with its routing, from the logits: routed in the kernels "
                      f"{fmt(b['ours_from_logits']).strip()} (bw {routed_bw:.2f}), "
                      f"routing kernel then the layer {fmt(b['ours_router_then_layer']).strip()}")
            if "copy_same_bytes" in b:
                print(f"{'':<16} {'':>6} bounds of its two launches: the same bytes copied in two launches "
                      f"{fmt(b['copy_same_bytes']).strip()}, "
                      f"the launches with no work {fmt(b['launch_floor']).strip()}")
            configs = [(k.removeprefix("ours_grouped_"), v) for k, v in b.items() if k.startswith("ours_grouped_r")]
            if configs:
                print(f"{'':<16} {'':>6} grouped configs: " + ", ".join(f"{k} {fmt(v).strip()}" for k, v in configs))
        for key, note in notes.items():
            print(f"  {key}: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
