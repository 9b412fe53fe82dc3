#!/usr/bin/env python3
"""Attention at Qwen3.6-27B's full-attention shape (head_dim 256; 24 query / 4 KV heads at TP1, 6 / 1
at TP4) on the SM7x paths: flash-attn-v100 against stock vLLM's TRITON_ATTN kernel
(`unified_attention`), built for this GPU ("native") and built for the emulated card ("faithful":
Triton emits no tensor-core instruction there; benchmarks/triton_faithful.py runs that build here).

  decode:  batch 1 and 4, 1 and 5 new tokens (MTP verification), contexts 4K .. 256K, and 512 keys in a
           block table sized for 256K (a short chat under a 256K max_model_len); bw_frac = KV
           bytes read / time / copy bandwidth measured in this run. KV caches of several layers are
           rotated so the working set is >= 4x the L2 where memory allows.
  prefill: one causal prompt of 1K, 8K and 32K tokens.
  mixed (--mixed): 1 and 4 decodes at 64K keys sharing a step with a 512-token prompt, as vLLM batches
           a new request with running ones (the op told the longest decode query, as vLLM's builder
           does); timed beside the same call untold, the same decodes alone and the prompt alone.
All calls run inside CUDA graphs (no launch or Python overhead in the figures). These are figures of
this GPU running the SM7x code paths, not V100 or T4 figures.

  python benchmarks/attention.py --path sm70 sm75 [--out benchmarks/results] [--quick] [--decode-only | --prefill-only]
"""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from run_info import benchmark_parser, error_note, run_info, write_result  # noqa: E402
from triton_faithful import EMULATED_ARCH, EmulatedKernel, swapped, with_real_triton  # noqa: E402

from vllm_sm7x.timing import copy_bandwidth_gbs, graph_median_ms  # noqa: E402

HEAD_DIM = 256
SHAPES = {"27b-tp1": (24, 4), "27b-tp4": (6, 1)}  # query heads, KV heads
BLOCK_SIZE = 16
MEMORY_BUDGET = 24 << 30  # bytes of KV caches per case
SHORT_CONTEXT = 512


class Problem:
    """Queries and `layers` paged KV caches in vLLM's flash layout ([blocks, block_size, kv_heads, 2 * d])."""

    def __init__(self, q_heads: int, kv_heads: int, batch: int, q_len: int, context: int, layers: int,
                 capacity: int | None = None):
        """capacity: tokens the block table has room for (vLLM sizes it by max_model_len), default context."""
        self.q_heads, self.kv_heads, self.batch, self.q_len, self.context = q_heads, kv_heads, batch, q_len, context
        per_seq = -(-context // BLOCK_SIZE)
        self.q = torch.randn(batch * q_len, q_heads, HEAD_DIM, device="cuda").half()
        self.caches = []
        for _ in range(layers):
            kv = torch.randn(batch * per_seq, BLOCK_SIZE, kv_heads, 2 * HEAD_DIM, device="cuda").half()
            self.caches.append(kv.split(HEAD_DIM, dim=-1))  # key_cache, value_cache views
        self.block_table = torch.arange(batch * per_seq, dtype=torch.int32, device="cuda").view(batch, per_seq)
        if capacity is not None:  # columns past the context are never read
            width = -(-capacity // BLOCK_SIZE)
            self.block_table = torch.nn.functional.pad(self.block_table, (0, width - per_seq)).contiguous()
        self.cu_seqlens_q = torch.arange(0, batch * q_len + 1, q_len, dtype=torch.int32, device="cuda")
        self.seqlens_k = torch.full((batch,), context, dtype=torch.int32, device="cuda")
        self.scale = 1.0 / math.sqrt(HEAD_DIM)
        self.longest_decode_query = -1  # the op's max_decode_q_len: unknown (sized from q_len)

    @property
    def kv_bytes(self) -> int:  # read per layer
        return 2 * self.batch * self.context * self.kv_heads * HEAD_DIM * 2


class MixedProblem(Problem):
    """`decodes` sequences of one query at `context` keys, then one causal prompt of `prompt` tokens, in one
    call (vLLM's mixed step); q_len is the longest query, as the op's max_seqlen_q. told: the op is told the
    longest decode query (1), as vLLM's builder tells it; otherwise it sizes the decodes for 16."""

    def __init__(self, q_heads: int, kv_heads: int, decodes: int, context: int, prompt: int, layers: int,
                 told: bool = True):
        super().__init__(q_heads, kv_heads, decodes + 1, 1, max(context, prompt), layers)
        self.q_len, self.context = prompt, context
        self.q = torch.randn(decodes + prompt, q_heads, HEAD_DIM, device="cuda").half()
        self.cu_seqlens_q = torch.tensor(list(range(decodes + 1)) + [decodes + prompt], dtype=torch.int32,
                                         device="cuda")
        self.seqlens_k = torch.tensor([context] * decodes + [prompt], dtype=torch.int32, device="cuda")
        self.decodes, self.prompt = decodes, prompt
        self.longest_decode_query = 1 if told else -1

    @property
    def kv_bytes(self) -> int:
        return 2 * (self.decodes * self.context + self.prompt) * self.kv_heads * HEAD_DIM * 2


def ours(problem: Problem, num_splits: int = 0):
    """flash-attn-v100 on the paged caches; num_splits 0 lets the op choose the KV split count."""
    from flash_attn_v100.flash_attn_interface import arch_path  # importing the package registers the ops

    path = arch_path()

    def run(key_cache, value_cache):
        return torch.ops.flash_attn_v100.paged_attention(
            problem.q, key_cache, value_cache, problem.cu_seqlens_q, problem.seqlens_k, problem.block_table,
            problem.q_len, problem.scale, True, -1, 0.0, num_splits, path, 1.0, 1.0, problem.longest_decode_query)
    return run


def decode_occupancy(path: str) -> dict:
    """The decode kernel's CTAs per SM on the emulated card and here, at this benchmark's query rows
    per KV head (group 6: q_len 1 and 5)."""
    from flash_attn_v100 import decode_occupancy as occupancy

    group = SHAPES["27b-tp4"][0] // SHAPES["27b-tp4"][1]
    return {f"rows={rows}": occupancy(HEAD_DIM, rows, path) for rows in (group, 5 * group)}


def unified_attention_module():
    from vllm.v1.attention.ops import triton_unified_attention

    return with_real_triton(triton_unified_attention, "kernel_unified_attention")


def triton_attn_kwargs(q, cu_seqlens_q, max_q_len: int, seqlens_k, max_context: int, block_table, scale: float,
                       kv_heads: int) -> dict:
    """unified_attention's arguments as vLLM's TRITON_ATTN backend passes them (fp16 cache, no graphs:
    3D segmented kernel for decode batches of few sequences, 2D otherwise), workspaces included."""
    threshold, segments = 128 // kv_heads, 16  # TritonAttentionMetadataBuilder: seq_threshold_3D, segments
    heads, dim = q.shape[1], q.shape[2]
    workspace = dict(dtype=torch.float32, device=q.device)
    descale = torch.ones(len(seqlens_k), kv_heads, **workspace)
    return dict(q=q, out=torch.empty_like(q), cu_seqlens_q=cu_seqlens_q, max_seqlen_q=max_q_len, seqused_k=seqlens_k,
                max_seqlen_k=max_context, softmax_scale=scale, causal=True, window_size=(-1, -1),
                block_table=block_table, softcap=0, q_descale=None, k_descale=descale, v_descale=descale,
                seq_threshold_3D=threshold, num_par_softmax_segments=segments,
                softmax_segm_output=torch.empty(threshold, heads, segments, dim, **workspace),
                softmax_segm_max=torch.empty(threshold, heads, segments, **workspace),
                softmax_segm_expsum=torch.empty(threshold, heads, segments, **workspace))


def emulated_kernels(module, emulate: str, run_arch: int | None) -> dict:
    """TRITON_ATTN's two kernels built for the emulated card (run_arch None: compile only)."""
    return {name: EmulatedKernel(getattr(module, name), EMULATED_ARCH[emulate], run_arch)
            for name in ("kernel_unified_attention", "reduce_segments")}


def stock(problem: Problem, emulate: str | None):
    """vLLM's TRITON_ATTN call; emulate=None builds for this GPU, "sm70"/"sm75" for that card."""
    module = unified_attention_module()
    kwargs = triton_attn_kwargs(problem.q, problem.cu_seqlens_q, problem.q_len, problem.seqlens_k, problem.context,
                                problem.block_table, problem.scale, problem.kv_heads)
    major, minor = torch.cuda.get_device_capability()
    kernels = emulated_kernels(module, emulate, major * 10 + minor) if emulate else {}

    def run(key_cache, value_cache):
        with swapped(module, **kernels):
            module.unified_attention(k=key_cache, v=value_cache, **kwargs)
        return kwargs["out"]
    return run


def time_per_layer(fn, problem: Problem) -> float:
    return graph_median_ms(lambda: [fn(k, v) for k, v in problem.caches]) / len(problem.caches)


def measure(problem: Problem, path: str, bandwidth: float, notes: dict, label: str, splits=(), stock_too=True) -> dict:
    """Ours (the op's own split choice, and each count of `splits` for tuning), then the baselines."""
    saved = os.environ.get("VLLM_SM7X_EMULATE")
    os.environ["VLLM_SM7X_EMULATE"] = path  # our kernels take this arch path (flash_attn_v100.arch_path)
    try:
        ms = time_per_layer(ours(problem), problem)
        by_splits = {str(n): round(time_per_layer(ours(problem, n), problem), 5) for n in splits}
    finally:
        if saved is None:
            del os.environ["VLLM_SM7X_EMULATE"]
        else:
            os.environ["VLLM_SM7X_EMULATE"] = saved
    baselines = {}
    for key, emulate in (("triton_attn_native", None), (f"triton_attn_faithful_{path}", path)) if stock_too else ():
        try:
            baselines[key] = round(time_per_layer(stock(problem, emulate), problem), 5)
        except Exception as e:  # reported, not fatal
            baselines[key] = None
            notes[f"{label} {key}"] = error_note(e)
    result = {"ms": round(ms, 5), "bw_frac": round(problem.kv_bytes / (ms * 1e-3) / (bandwidth * 1e9), 3),
              "baselines": baselines}
    if by_splits:
        result["ms_by_splits"] = by_splits
    return result


def main() -> int:
    parser = benchmark_parser()
    parser.add_argument("--quick", action="store_true", help="fewer cases")
    parser.add_argument("--no-stock", action="store_true", help="skip the TRITON_ATTN baselines")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--decode-only", action="store_true", help="skip the prefill cases")
    only.add_argument("--prefill-only", action="store_true", help="skip the decode cases")
    parser.add_argument("--mixed", action="store_true",
                        help="also time decodes sharing a step with a prompt (ours only), beside each alone")
    parser.add_argument("--splits", type=int, nargs="*", default=[],
                        help="also time decode with these KV split counts (tuning the op's choice)")
    args = parser.parse_args()

    torch.manual_seed(0)
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    bandwidth = copy_bandwidth_gbs()
    contexts = () if args.prefill_only else (4096, 32768) if args.quick else (4096, 32768, 131072, 262144)
    prompts = () if args.decode_only else (1024, 8192) if args.quick else (1024, 8192, 32768)
    rows, notes = {path: [] for path in args.path}, {}
    for shape, (q_heads, kv_heads) in SHAPES.items():
        # Serving shape of a short conversation: 512 keys in a block table sized for 256K.
        for batch in () if args.prefill_only else (1, 4):
            kv_bytes = 2 * batch * SHORT_CONTEXT * kv_heads * HEAD_DIM * 2
            problem = Problem(q_heads, kv_heads, batch, 1, SHORT_CONTEXT, -(-4 * l2 // kv_bytes), capacity=262144)
            for path in args.path:
                label = f"{shape} decode ctx={SHORT_CONTEXT} of 256K b={batch}"
                rows[path].append({"case": f"{shape} decode-short", "phase": "decode", "context": SHORT_CONTEXT,
                                   "capacity": 262144, "batch": batch, "q_len": 1,
                                   "layers_rotated": len(problem.caches),
                                   **measure(problem, path, bandwidth, notes, label, stock_too=not args.no_stock)})
            del problem
        for context in contexts:
            for batch in (1, 4):
                for q_len in (1, 5):
                    kv_bytes = 2 * batch * context * kv_heads * HEAD_DIM * 2
                    if kv_bytes > MEMORY_BUDGET:
                        continue
                    layers = max(1, min(-(-4 * l2 // kv_bytes), MEMORY_BUDGET // kv_bytes))
                    problem = Problem(q_heads, kv_heads, batch, q_len, context, layers)
                    for path in args.path:
                        label = f"{shape} decode ctx={context} b={batch} q={q_len}"
                        rows[path].append({"case": f"{shape} decode", "phase": "decode", "context": context,
                                           "batch": batch, "q_len": q_len, "layers_rotated": layers,
                                           **measure(problem, path, bandwidth, notes, label, args.splits,
                                                   stock_too=not args.no_stock)})
                    del problem
                    torch.cuda.empty_cache()
        for decodes in (1, 4) if args.mixed else ():
            context, prompt = 65536, 512
            layers = max(1, -(-4 * l2 // (2 * decodes * context * kv_heads * HEAD_DIM * 2)))
            parts = {"mixed": MixedProblem(q_heads, kv_heads, decodes, context, prompt, layers),
                     "mixed untold": MixedProblem(q_heads, kv_heads, decodes, context, prompt, layers, told=False),
                     "decodes alone": Problem(q_heads, kv_heads, decodes, 1, context, layers),
                     "prompt alone": Problem(q_heads, kv_heads, 1, prompt, prompt, layers)}
            for path in args.path:
                timed = {name: measure(problem, path, bandwidth, notes, f"{shape} {name}", stock_too=False)["ms"]
                         for name, problem in parts.items()}
                rows[path].append({"case": f"{shape} mixed", "phase": "mixed", "context": context, "batch": decodes,
                                   "q_len": prompt, "layers_rotated": layers, "ms": timed["mixed"],
                                   "bw_frac": round(parts["mixed"].kv_bytes / (timed["mixed"] * 1e-3)
                                                    / (bandwidth * 1e9), 3),
                                   "baselines": {"mixed_untold": timed["mixed untold"],
                                                 "decodes_alone": timed["decodes alone"],
                                                 "prompt_alone": timed["prompt alone"]}})
            del parts
            torch.cuda.empty_cache()
        for prompt in prompts:
            problem = Problem(q_heads, kv_heads, 1, prompt, prompt, 1)
            flops = 4 * prompt * prompt * q_heads * HEAD_DIM / 2  # causal: half of QK^T and PV
            for path in args.path:
                result = measure(problem, path, bandwidth, notes, f"{shape} prefill {prompt}",
                                 stock_too=not args.no_stock)
                result["bw_frac"] = None
                result["tflops"] = round(flops / (result["ms"] * 1e-3) / 1e12, 2)
                rows[path].append({"case": f"{shape} prefill", "phase": "prefill", "context": prompt, "batch": 1,
                                   "q_len": prompt, **result})
            del problem
            torch.cuda.empty_cache()

    info = run_info()
    gpu = info["gpu"]
    for path, path_rows in rows.items():
        occupancy = decode_occupancy(path)
        write_result(args.out, info, "attention", path, path_rows, notes, copy_bandwidth_gbs=round(bandwidth, 1),
                     head_dim=HEAD_DIM, decode_occupancy=occupancy,
                     decode_kernel=os.environ.get("FLASH_ATTN_V100_DECODE") or "by query rows")
        ctas = ", ".join(f"{query_rows} {o.get('kernel', 'simt')} {o['device_ctas_per_sm']} "
                         f"(card {o['card_ctas_per_sm']})"
                         for query_rows, o in occupancy.items())
        print(f"\n{gpu}, {path} path, copy bandwidth {bandwidth:.0f} GB/s (ms per layer); "
              f"decode CTAs per SM: {ctas}")
        print(f"{'case':<16} {'ctx':>7} {'b':>2} {'q':>6} {'ours':>9} {'bw':>6} {'native':>9} {'faithful':>9}")
        for r in (r for r in path_rows if r["phase"] != "mixed"):
            b = list(r["baselines"].values()) + [None, None]  # none with --no-stock
            fmt = lambda v: f"{v:>9.4f}" if v is not None else f"{'-':>9}"  # noqa: E731
            bw = f"{r['bw_frac']:>6.2f}" if r["bw_frac"] is not None else f"{'-':>6}"
            print(f"{r['case']:<16} {r['context']:>7} {r['batch']:>2} {r['q_len']:>6} {fmt(r['ms'])} {bw} "
                  f"{fmt(b[0])} {fmt(b[1])}")
        for r in (r for r in path_rows if r["phase"] == "mixed"):
            alone = r["baselines"]
            print(f"{r['case']:<16} {r['batch']} decodes at {r['context']} keys + a {r['q_len']}-token prompt: "
                  f"{r['ms']:.4f} ms together ({alone['mixed_untold']:.4f} with decodes sized for 16 queries), "
                  f"{alone['decodes_alone']:.4f} + {alone['prompt_alone']:.4f} alone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
