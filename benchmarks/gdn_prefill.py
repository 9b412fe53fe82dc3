#!/usr/bin/env python3
"""Gated DeltaNet prefill (chunk_gated_delta_rule: one sequence of 1K/8K/32K tokens, fp32 initial and
final state) at Qwen3.6-27B and 35B-A3B linear-attention shapes, TP1 and TP4: our chunked SIMT kernel
(csrc/gdn/gdn_prefill.cu) against vLLM's FLA Triton kernels built for this GPU ("native", tensor cores:
a reference, not what a V100/T4 runs) and for the emulated card ("faithful": every Triton kernel of the
chain compiled for sm_70/sm_75, each autotuned kernel on its fastest config that fits the card's shared
memory, from the config lists FLA picks on that card; benchmarks/triton_faithful.py). Median ms per
layer; ours is compared with FLA's output (native; the first faithful build under --quick, which skips
native).
With --conv, the causal conv1d before it instead (csrc/gdn/gdn_conv_prefill.cu against vLLM's Triton
causal_conv1d_fn, native and faithful, on the layouts vLLM's GDN layer passes), with bw_frac = the
bytes it must move (x in, out, the conv state) / time / the copy bandwidth measured in the same run.
These are figures of this GPU running the SM7x code paths, not V100 or T4 figures.

  python benchmarks/gdn_prefill.py --path sm70 sm75 [--out benchmarks/results] [--quick] [--conv]
                                   [--shapes NAME ...]
"""
from __future__ import annotations

import functools
import sys
import time
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from run_info import (baselines_for_path, benchmark_parser, error_note, relative_difference, run_info,  # noqa: E402
                      write_result)
from triton_faithful import (EMULATED_ARCH, EmulatedKernel, FastestConfig, fla_autotune_lists_of,  # noqa: E402
                             swapped, triton_kernels_reachable_from, with_real_triton)

from vllm_sm7x.timing import copy_bandwidth_gbs, graph_median_ms  # noqa: E402

K_DIM = V_DIM = 128
CONV_WIDTH = 4
# (k_heads, v_heads) per GPU.
SHAPES = {"27b-tp1": (16, 48), "27b-tp4": (4, 12), "35b-a3b-tp1": (16, 32), "35b-a3b-tp4": (4, 8)}
FLA_CHUNK = 64  # FLA's chunk size: vLLM's metadata builder precomputes chunk indices for it


class Problem:
    """What vLLM's GDN layer hands the chunk rule for one prompt: l2-normalised q/k, v, log decay, beta."""

    def __init__(self, k_heads: int, v_heads: int, tokens: int):
        def unit(*shape):
            return torch.nn.functional.normalize(torch.randn(*shape, device="cuda"), dim=-1).half()

        self.tokens = tokens
        self.q, self.k = unit(tokens, k_heads, K_DIM), unit(tokens, k_heads, K_DIM)
        self.v = torch.randn(tokens, v_heads, V_DIM, device="cuda").half()
        self.g = -torch.rand(tokens, v_heads, device="cuda")
        self.beta = torch.rand(tokens, v_heads, device="cuda")
        self.state = 0.1 * torch.randn(1, v_heads, V_DIM, K_DIM, device="cuda")
        self.cu_seqlens = torch.tensor([0, tokens], dtype=torch.int32, device="cuda")


def ours(problem: Problem):
    def run():
        return torch.ops._C_sm7x.gdn_chunk_prefill(problem.q, problem.k, problem.v, problem.g, problem.beta,
                                                   K_DIM ** -0.5, problem.state, problem.cu_seqlens)[0]
    return run


@functools.cache
def faithful_kernels(emulate: str | None) -> tuple:
    """(globals, name, FastestConfig) for every kernel of the FLA chain, built once per emulated card so
    every problem reuses the configs compiled for it (compiling is most of the benchmark's time)."""
    from vllm.third_party.flash_linear_attention.ops import chunk

    if emulate is None:
        return ()
    major, minor = torch.cuda.get_device_capability()
    with fla_autotune_lists_of(EMULATED_ARCH[emulate]):  # the config lists FLA picks on that card
        return tuple((namespace, name, FastestConfig(kernel, EMULATED_ARCH[emulate], major * 10 + minor))
                     for namespace, name, kernel in list(triton_kernels_reachable_from(vars(chunk))))


def stock(problem: Problem, emulate: str | None):
    """vLLM's FLA chain as its GDN layer calls it; emulate=None runs it as built for this GPU."""
    from vllm.third_party.flash_linear_attention.ops import chunk
    from vllm.third_party.flash_linear_attention.ops.index import prepare_chunk_indices, prepare_chunk_offsets

    cu_seqlens = problem.cu_seqlens
    indices, offsets = prepare_chunk_indices(cu_seqlens, FLA_CHUNK), prepare_chunk_offsets(cu_seqlens, FLA_CHUNK)
    replacements = faithful_kernels(emulate)
    batch = [x.unsqueeze(0) for x in (problem.q, problem.k, problem.v, problem.g, problem.beta)]

    def run():
        saved = [(namespace, name, namespace[name]) for namespace, name, _ in replacements]
        try:
            for namespace, name, kernel in replacements:
                namespace[name] = kernel
            _, o, *_ = chunk.chunk_gated_delta_rule_fwd(*batch, K_DIM ** -0.5, problem.state, True, cu_seqlens,
                                                        indices, offsets)
            return o[0]
        finally:
            for namespace, name, kernel in saved:
                namespace[name] = kernel
    return run


class ConvProblem:
    """The causal conv1d of one prompt as vLLM's GDN layer calls causal_conv1d_fn: x = mixed_qkv transposed
    ([dim, tokens], dim fastest), the conv state stored [blocks, width - 1, dim] and passed transposed,
    block 1 holding the sequence's (no initial state: a fresh prompt)."""

    def __init__(self, k_heads: int, v_heads: int, tokens: int):
        self.dim = 2 * k_heads * K_DIM + v_heads * V_DIM
        self.tokens = tokens
        self.x = torch.randn(tokens, self.dim, device="cuda").half().transpose(0, 1)
        self.weight = (torch.randn(self.dim, CONV_WIDTH, device="cuda") / 2).half()
        self.bias = torch.randn(self.dim, device="cuda").half()
        self.states = torch.zeros(2, CONV_WIDTH - 1, self.dim, device="cuda").half().transpose(1, 2)
        self.query_start_loc = torch.tensor([0, tokens], dtype=torch.int32, device="cuda")
        self.cache_indices = torch.tensor([1], dtype=torch.int32, device="cuda")
        self.has_initial_state = torch.zeros(1, dtype=torch.bool, device="cuda")

    @property
    def bytes(self) -> int:  # x read, out written (fp16), the state's width - 1 columns written
        return 2 * (2 * self.tokens + CONV_WIDTH - 1) * self.dim


def ours_conv(problem: ConvProblem):
    from vllm.v1.attention.backends.utils import NULL_BLOCK_ID, PAD_SLOT_ID

    def run():
        return torch.ops._C_sm7x.gdn_conv_prefill(problem.x, problem.weight, problem.bias, problem.states,
                                                  problem.query_start_loc, problem.cache_indices,
                                                  problem.has_initial_state, True, PAD_SLOT_ID, NULL_BLOCK_ID)
    return run


def stock_conv(problem: ConvProblem, emulate: str | None):
    """vLLM's causal_conv1d_fn as the GDN layer calls it; emulate=None runs it as built for this GPU."""
    from vllm.model_executor.layers.mamba.ops import causal_conv1d

    from vllm.v1.attention.backends.utils import compute_causal_conv1d_metadata

    conv = with_real_triton(causal_conv1d, "_causal_conv1d_fwd_kernel")
    # The launch plan vLLM's GDN metadata builder precomputes on the host: without it the call syncs
    # (and could not be graph-captured).
    nums_dict, batch_ptr, token_chunk_offset_ptr = compute_causal_conv1d_metadata(
        problem.query_start_loc.cpu(), device=problem.x.device)
    metadata = types.SimpleNamespace(nums_dict=nums_dict, batch_ptr=batch_ptr,
                                     token_chunk_offset_ptr=token_chunk_offset_ptr)
    major, minor = torch.cuda.get_device_capability()
    kernels = ({"_causal_conv1d_fwd_kernel": EmulatedKernel(conv._causal_conv1d_fwd_kernel, EMULATED_ARCH[emulate],
                                                            major * 10 + minor)} if emulate else {})

    def run():
        with swapped(conv, **kernels):
            return conv.causal_conv1d_fn(problem.x, problem.weight, problem.bias, problem.states,
                                         problem.query_start_loc, cache_indices=problem.cache_indices,
                                         has_initial_state=problem.has_initial_state, activation="silu",
                                         metadata=metadata, validate_data=False)
    return run


def prompt_lengths(args) -> tuple:
    return (1024, 8192) if args.quick else (1024, 8192, 32768)


def record(rows: dict, args, info, notes, benchmark: str, case: str, tokens: int, ms: float, baselines: dict,
           bw_frac: float | None = None, **fields) -> None:
    """One problem's row on every path, each path's file rewritten at once: a run cut short by its call's
    time limit keeps what it measured."""
    for path in args.path:
        rows[path].append({"case": case, "phase": "prefill", "context": tokens, "ms": round(ms, 4),
                           "bw_frac": bw_frac, "tflops": None, "baselines": baselines_for_path(baselines, path)})
        write_result(args.out, info, benchmark, path, rows[path], notes, **fields)


def conv_rows(args, shapes, info, notes) -> dict:
    """--conv: our conv1d against vLLM's, native and faithful, per shape and prompt length."""
    bandwidth = copy_bandwidth_gbs()
    rows = {path: [] for path in args.path}
    for shape, (k_heads, v_heads) in shapes.items():
        for tokens in prompt_lengths(args):
            problem = ConvProblem(k_heads, v_heads, tokens)
            ms = graph_median_ms(ours_conv(problem))
            ours_out, baselines = ours_conv(problem)(), {}
            for key, emulate in [("triton_native", None)] + [(f"triton_faithful_{p}", p) for p in args.path]:
                try:
                    run = stock_conv(problem, emulate)
                    stock_out = run()
                    baselines[key] = round(graph_median_ms(run), 4)
                    notes[f"{shape} {tokens} conv1d ours vs {key}"] = \
                        f"relative error {relative_difference(ours_out, stock_out):.2e}"
                except Exception as e:  # reported, not fatal
                    baselines[key] = None
                    notes[f"{shape} {tokens} conv1d {key}"] = error_note(e)
            bw_frac = round(problem.bytes / (ms * 1e-3) / (bandwidth * 1e9), 3)
            print(f"{shape} {tokens} tokens conv1d: ours {ms:.4f} ms ({bw_frac:.2f} of copy bandwidth), {baselines}",
                  flush=True)
            record(rows, args, info, notes, "gdn_conv_prefill", f"{shape} conv1d prefill", tokens, ms, baselines,
                   bw_frac, copy_bandwidth_gbs=round(bandwidth, 1))
            del problem
            torch.cuda.empty_cache()
    for path, path_rows in rows.items():
        print(f"\n{info['gpu']}, {path} path (ms per layer, one prompt's causal conv1d)")
        print(f"{'case':<28} {'tokens':>6} {'ours':>9} {'bw':>6} {'native':>9} {'faithful':>9}")
        for r in path_rows:
            native, faithful = r["baselines"].get("triton_native"), r["baselines"].get(f"triton_faithful_{path}")
            fmt = lambda v: f"{v:>9.4f}" if v is not None else f"{'-':>9}"  # noqa: E731
            print(f"{r['case']:<28} {r['context']:>6} {fmt(r['ms'])} {r['bw_frac']:>6.2f} {fmt(native)} "
                  f"{fmt(faithful)}")
    return rows


def main() -> int:
    parser = benchmark_parser()
    parser.add_argument("--quick", action="store_true",
                        help="TP4 shapes, 1K and 8K tokens, no native baseline (its autotuning compiles ~100 "
                             "configs for this GPU: minutes)")
    parser.add_argument("--conv", action="store_true",
                        help="time the causal conv1d before the chunk rule instead (ours against vLLM's Triton "
                             "causal_conv1d_fn, native and faithful)")
    parser.add_argument("--shapes", nargs="+", choices=SHAPES,
                        help="these shapes only (default: all, or the TP4 ones with --quick): each shape compiles its "
                             "Triton baselines anew (H200, 2026-12-04: 275 s for native and both faithful builds), so "
                             "the full run does not fit one device call")
    parser.add_argument("--ours-only", action="store_true",
                        help="time our kernel alone (a kernel change's A/B in a short call; the faithful chain takes "
                             "~95 s per card to compile)")
    args = parser.parse_args()

    from vllm_sm7x.ops import load_kernels

    load_kernels()
    torch.manual_seed(0)
    rows, notes, start = {path: [] for path in args.path}, {}, time.monotonic()
    info = run_info()
    shapes = {k: v for k, v in SHAPES.items()
              if (k in args.shapes if args.shapes else not args.quick or k.endswith("tp4"))}
    if args.conv:
        conv_rows(args, shapes, info, notes)
        for key, note in notes.items():
            print(f"note: {key}: {note}")
        return 0
    for shape, (k_heads, v_heads) in shapes.items():
        for tokens in prompt_lengths(args):
            problem = Problem(k_heads, v_heads, tokens)
            ms = graph_median_ms(ours(problem))  # SIMT: the same kernel on both paths
            ours_out, reference_out, baselines = ours(problem)(), None, {}
            native_baseline = [] if args.quick else [("fla_native", None)]
            stock_runs = [] if args.ours_only else native_baseline + [(f"fla_faithful_{p}", p) for p in args.path]
            for key, emulate in stock_runs:
                try:
                    run = stock(problem, emulate)
                    if reference_out is None:  # FLA's output, native where it ran: ours is checked against it
                        reference_out, reference_key = run(), key
                    baselines[key] = round(graph_median_ms(run), 4)
                except Exception as e:  # reported, not fatal
                    baselines[key] = None
                    notes[f"{shape} {tokens} {key}"] = error_note(e)
                # Each baseline as it ends: the first faithful one compiles its card's configs (minutes).
                print(f"  {shape} {tokens} {key}: {baselines[key]} ms, at {time.monotonic() - start:.0f} s", flush=True)
            if reference_out is not None:
                notes[f"{shape} {tokens} ours vs {reference_key}"] = \
                    f"relative error {relative_difference(ours_out, reference_out):.2e}"
            print(f"{shape} {tokens} tokens: ours {ms:.4f} ms, {baselines}", flush=True)
            record(rows, args, info, notes, "gdn_prefill", f"{shape} prefill", tokens, ms, baselines)
            del problem
            torch.cuda.empty_cache()

    for path, path_rows in rows.items():
        print(f"\n{info['gpu']}, {path} path (ms per layer, one prompt)")
        print(f"{'case':<22} {'tokens':>6} {'ours':>9} {'native':>9} {'faithful':>9} {'vs faithful':>11}")
        for r in path_rows:
            native, faithful = r["baselines"].get("fla_native"), r["baselines"].get(f"fla_faithful_{path}")
            fmt = lambda v: f"{v:>9.3f}" if v is not None else f"{'-':>9}"  # noqa: E731
            ratio = f"{faithful / r['ms']:>10.1f}x" if faithful else f"{'-':>11}"
            print(f"{r['case']:<22} {r['context']:>6} {fmt(r['ms'])} {fmt(native)} {fmt(faithful)} {ratio}")
    for key, note in notes.items():
        print(f"note: {key}: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
