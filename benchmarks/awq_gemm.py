#!/usr/bin/env python3
"""AWQ W4A16 GEMM at Qwen3.6-27B layer widths (TP1 and TP4 shards) on the SM70/SM75 code paths.

Two kinds of rows, both against baselines timed in the same run on the same inputs:
  layer-27b-tp{1,4}: the four linear layers of whole decoder layers (qkv, o_proj, gate_up, down) in
      sequence inside one CUDA graph, over enough distinct layers that the weights are >= 4x the L2;
      ms is per decoder layer. This is how decode runs.
  27b-tp{1,4} <layer>: one GEMM per call (eager; launch-bound for the small TP4 matrices), weight
      sets rotated so the working set is >= 4x the L2.
bw_frac = bytes that must move (int4 weights, scales, x, out) / time / device-to-device copy
bandwidth measured in this run. device_model: what the cost model knows of this GPU (its plans can be
recomputed from it on a CPU: tools/awq_plan_regret.py). Baselines: cuBLAS fp16 on the dequantised
weights, and stock vLLM's AWQ paths (benchmarks/awq_baselines.py): its CUDA awq_gemm method, its Triton
kernel built for this GPU, and that Triton kernel built for the emulated card ("faithful": no tensor
cores there).
On a newer GPU these are that GPU's figures for the SM7x code paths, not V100 or T4 figures.

  python benchmarks/awq_gemm.py --path sm70 sm75 [--tp 1 4] [--tune] [--out benchmarks/results] [--quick]
  python benchmarks/awq_gemm.py --path sm75 --kernels   # 16-256 rows: fused vs tiled vs cuBLAS vs Marlin
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
GROUP = 128
# (name, K, N) for Qwen3.6-27B: hidden 5120, q 24x256 (+ output gate), kv 4x256, MLP 17408.
LAYERS = [("qkv", 5120, 2 * 6144 + 2 * 1024), ("o_proj", 6144, 5120), ("gate_up", 5120, 2 * 17408),
          ("down", 17408, 5120)]
ROW_PARALLEL = {"o_proj", "down"}
DECODE_M = (1, 2, 3, 4, 5, 6, 7, 8, 16, 32, 64)
# The baselines of awq_baselines.py that users of the card get from stock vLLM: the "stock" column is the
# fastest of those that ran (Marlin is what vLLM 0.26 picks on a T4).
STOCK_BASELINES = ("vllm_awq_cuda", "vllm_marlin", "triton_awq_native")
SHAPE_M = (1, 4, 8, 16, 32, 64, 128, 256, 1024, 4096)


sys.path.insert(0, str(ROOT / "benchmarks"))
from run_info import benchmark_parser, error_note, run_info, write_result  # noqa: E402

from vllm_sm7x.timing import copy_bandwidth_gbs  # noqa: E402


def load_baselines():
    import awq_baselines

    return awq_baselines


def shard(name: str, K: int, N: int, tp: int) -> tuple[int, int]:
    return (K // tp, N) if name in ROW_PARALLEL else (K, N // tp)


def median_ms(fn, sets: int, iters: int = 40, warmup: int = 5) -> float:
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


def graph_ms(step) -> float:
    """Median ms of one replay of a CUDA graph that runs step() once."""
    step()  # warm-up (and Triton compilation) outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return median_ms(lambda _: graph.replay(), 1, iters=20, warmup=3)


class Layer:
    """One linear layer: AWQ checkpoint tensors, our kernel layout, and dense fp16 weights."""

    def __init__(self, K: int, N: int, dense: bool):
        from vllm_sm7x.ops import awq
        from vllm_sm7x.quantization.awq_format import quantize_awq, to_kernel_layout

        self.K, self.N = K, N
        self.awq = quantize_awq(torch.randn(K, N, device="cuda") * 0.05, GROUP)
        self.kernel = to_kernel_layout(*self.awq, GROUP)
        self.dense = awq.awq_dequantize(self.kernel) if dense else None  # [N, K]
        self.bytes = K * N // 2 + K // GROUP * N * 4


def moved_bytes(layer: Layer, M: int) -> int:
    return layer.bytes + 2 * M * (layer.K + layer.N)


def m_bucket(M: int) -> int:
    return 1 << (M - 1).bit_length()


def rounded(ms):
    return None if ms is None else round(ms, 5)


def try_ms(measure):
    try:
        return measure(), None
    except Exception as e:  # a baseline that fails here is reported, not fatal
        return None, error_note(e)


def layer_rows(tp: int, paths, bandwidth: float, l2: int, baselines_mod, decode_m, notes, tune: bool) -> dict:
    from vllm_sm7x.ops import awq

    shapes = [(name, *shard(name, K, N, tp)) for name, K, N in LAYERS]
    per_layer = sum(K * N // 2 + K // GROUP * N * 4 for _, K, N in shapes)
    count = max(2, -(-4 * l2 // per_layer))
    layers = [{name: Layer(K, N, dense=True) for name, K, N in shapes} for _ in range(count)]
    xs = {M: {name: torch.randn(M, K, device="cuda").half() for name, K, _ in shapes} for M in decode_m}

    def graph_per_layer(M, gemm):
        return graph_ms(lambda: [gemm(decoder[name], xs[M][name]) for decoder in layers for name, _, _ in shapes]) / count

    # What the same number of launches costs with (almost) no work: the per-kernel floor of a graph.
    tiny = Layer(128, 16, dense=False)
    floor = graph_ms(lambda: [awq.awq_linear(xs[decode_m[0]][shapes[0][0]][:, :128], tiny.kernel, path=paths[0])
                              for _ in range(len(shapes) * count)]) / count
    notes[f"layer-27b-tp{tp} launch floor"] = (f"{floor:.5f} ms per decoder layer: {len(shapes)} launches of a "
                                               "16x128 GEMM in the same graph")
    cublas = {M: graph_per_layer(M, lambda layer, x: torch.nn.functional.linear(x, layer.dense)) for M in decode_m}
    rows = {path: [] for path in paths}
    for path in paths:
        stock_names = []
        if baselines_mod is not None:
            for decoder in layers:
                for layer in decoder.values():
                    layer.stock, built_notes = baselines_mod.stock_baselines(*layer.awq, GROUP, path)
                    notes.update(built_notes)
                    stock_names = list(layer.stock)
        for M in decode_m:
            moved = sum(moved_bytes(layer, M) for decoder in layers for layer in decoder.values()) / count
            ours = graph_per_layer(M, lambda layer, x: awq.awq_linear(x, layer.kernel, path=path))
            stock = {}
            for key in stock_names:
                ms, error = try_ms(lambda: graph_per_layer(M, lambda layer, x: layer.stock[key](x)))
                stock[key] = rounded(ms)
                if error:
                    notes[f"layer-27b-tp{tp} {key} M={M}"] = error
            tuned = {}
            if tune and M <= 16:  # the same graph after measured choices replace the cost model's (fused rows)
                from vllm_sm7x.quantization import awq_tuning

                def tuned_graph(choices):
                    for name, K, N in shapes:
                        awq_tuning.apply((K, N), GROUP, path, {m_bucket(M): choices[name]})
                    ms = graph_per_layer(M, lambda layer, x: awq.awq_linear(x, layer.kernel, path=path))
                    torch.ops._C_sm7x.awq_clear_tuned()
                    return {"ms": rounded(ms), "bw_frac": round(moved / (ms * 1e-3) / (bandwidth * 1e9), 3),
                            "choices": choices}

                best, best_one_tile, candidates = {}, {}, {}
                for name, K, N in shapes:
                    timings = []
                    best[name] = awq_tuning.tune_weight(layers[0][name].kernel, path, m_buckets=[m_bucket(M)],
                                                        timings=timings)[m_bucket(M)]
                    best_one_tile[name] = min((t for t in timings if t["column_tiles"] == 1), key=lambda t: t["ms"])
                    # Every timed candidate, [warps, column_tiles, splits, ms]: what the cost model is fitted to.
                    candidates[name] = [[t["warps"], t["column_tiles"], t["splits"], t["ms"]] for t in timings]
                # The same run's A/B of two column tiles per CTA: the best choices without them.
                tuned = {**tuned_graph(best), "one_column_tile": tuned_graph(best_one_tile), "candidates": candidates}
            rows[path].append({
                "case": f"layer-27b-tp{tp}", "M": M, "layers_in_graph": count, "ms": rounded(ours),
                "launch_floor_ms": rounded(floor),
                "plans": {name: awq.awq_plan(M, (K, N), GROUP, path) for name, K, N in shapes}, "tuned": tuned,
                "bw_frac": round(moved / (ours * 1e-3) / (bandwidth * 1e9), 3), "tflops": None,
                "speedup_vs_cublas_fp16": round(cublas[M] / ours, 2),
                "baselines": {"cublas_fp16_dequant": rounded(cublas[M]), **stock}})
    return rows


TILED_M = (16, 32, 64, 128, 256)


def tiled_rows(tp: int, paths, bandwidth: float, l2: int, with_marlin: bool, notes) -> dict:
    """Decoder-layer graphs (as layer_rows) at 16-256 rows, for the choice between the fused kernel, the
    tiled kernel (each registry entry, planned splits) and dequantise + cuBLAS: ms per decoder layer of
    each, of awq_linear's own choice ("ms"), and of vLLM's Marlin on the same weights."""
    from vllm_sm7x.ops import awq

    shapes = [(name, *shard(name, K, N, tp)) for name, K, N in LAYERS]
    per_layer = sum(K * N // 2 + K // GROUP * N * 4 for _, K, N in shapes)
    count = max(2, -(-4 * l2 // per_layer))
    layers = [{name: Layer(K, N, dense=True) for name, K, N in shapes} for _ in range(count)]
    marlin = {}
    if with_marlin:
        try:
            import vllm._custom_ops  # noqa: F401  (vLLM's CUDA ops, Marlin's among them)
            from awq_baselines import marlin_baseline
            from vllm.model_executor.layers.quantization.auto_awq import AutoAWQConfig
            config = AutoAWQConfig(weight_bits=4, group_size=GROUP, zero_point=True, lm_head_quantized=False)
            marlin = {id(layer): marlin_baseline(*layer.awq, config)
                      for decoder in layers for layer in decoder.values()}
        except Exception as e:  # reported, not fatal
            notes[f"layer-27b-tp{tp} vllm_marlin"] = error_note(e)

    def per_layer_ms(M, gemm):
        xs = {name: torch.randn(M, K, device="cuda").half() for name, K, _ in shapes}
        return graph_ms(lambda: [gemm(decoder[name], xs[name]) for decoder in layers for name, _, _ in shapes]) / count

    rows = {path: [] for path in paths}
    for path in paths:
        for M in TILED_M:
            moved = sum(moved_bytes(layer, M) for decoder in layers for layer in decoder.values()) / count
            ours = per_layer_ms(M, lambda layer, x: awq.awq_linear(x, layer.kernel, path=path))
            kernels = {"fused": per_layer_ms(M, lambda layer, x: awq.awq_gemm(x, layer.kernel, path=path))}
            for e in awq.tiled_registry():
                kernels[f"tiled_t{e['token_tiles']}_w{e['warps']}"] = per_layer_ms(
                    M, lambda layer, x: awq.awq_gemm_tiled(x, layer.kernel, path=path, token_tiles=e["token_tiles"],
                                                           warps=e["warps"]))
            kernels["dequant_cublas"] = per_layer_ms(M, lambda layer, x: torch.nn.functional.linear(
                x, awq.awq_dequantize(layer.kernel)))
            baselines = {"cublas_fp16_dequant": per_layer_ms(M, lambda layer, x: torch.nn.functional.linear(
                x, layer.dense))}
            if marlin and path == "sm75":
                baselines["vllm_marlin"] = per_layer_ms(M, lambda layer, x: marlin[id(layer)](x))
            rows[path].append({
                "case": f"layer-27b-tp{tp}", "M": M, "layers_in_graph": count, "ms": rounded(ours),
                "plans": {name: awq.awq_plan(M, (K, N), GROUP, path) for name, K, N in shapes},
                "kernels": {k: rounded(v) for k, v in kernels.items()},
                "bw_frac": round(moved / (ours * 1e-3) / (bandwidth * 1e9), 3), "tflops": None,
                "baselines": {k: rounded(v) for k, v in baselines.items()}})
    return rows


def print_kernel_table(gpu, path, rows):
    names = list(rows[0]["kernels"]) if rows else []
    print(f"\n{gpu}, {path} path: ms per decoder layer by kernel (ours = awq_linear's choice)")
    print(f"{'case':<15} {'M':>4} {'ours':>8} " + " ".join(f"{n:>15}" for n in names) + f" {'marlin':>8}")
    for r in rows:
        marlin = r["baselines"].get("vllm_marlin")
        print(f"{r['case']:<15} {r['M']:>4} {r['ms']:>8.4f} " + " ".join(f"{r['kernels'][n]:>15.4f}" for n in names)
              + (f" {marlin:>8.4f}" if marlin is not None else f" {'-':>8}"))


def shape_rows(tp: int, paths, bandwidth: float, l2: int, baselines_mod, shape_m, notes) -> dict:
    from vllm_sm7x.ops import awq

    rows = {path: [] for path in paths}
    for name, K, N in LAYERS:
        K, N = shard(name, K, N, tp)
        case = f"27b-tp{tp} {name}"
        sets = max(2, -(-4 * l2 // (K * N // 2)))
        layers = [Layer(K, N, dense=False) for _ in range(sets)]
        stock_fns = {}
        if baselines_mod is not None:
            for path in paths:
                stock_fns[path] = []
                for layer in layers:
                    fns, built_notes = baselines_mod.stock_baselines(*layer.awq, GROUP, path)
                    stock_fns[path].append(fns)
                    notes.update(built_notes)
        for M in shape_m:
            x = torch.randn(M, K, device="cuda").half()
            moved = moved_bytes(layers[0], M)
            dequant = median_ms(lambda i: torch.nn.functional.linear(x, awq.awq_dequantize(layers[i].kernel)), sets)
            for path in paths:
                ours = median_ms(lambda i: awq.awq_linear(x, layers[i].kernel, path=path), sets)
                # The kernels awq_linear does not pick at these rows, forced (fused above 16, tiled elsewhere).
                fused = median_ms(lambda i: awq.awq_gemm(x, layers[i].kernel, path=path), sets) if M > 16 else None
                tiled = median_ms(lambda i: awq.awq_gemm_tiled(x, layers[i].kernel, path=path), sets) \
                    if not 16 < M <= 128 else None
                stock = {}
                for key in (stock_fns[path][0] if stock_fns else {}):
                    ms, error = try_ms(lambda: median_ms(lambda i: stock_fns[path][i][key](x), sets, iters=10))
                    stock[key] = rounded(ms)
                    if error:
                        notes[f"{case} {key} M={M}"] = error
                flops = 2 * M * K * N
                rows[path].append({
                    "case": case, "M": M, "N": N, "K": K, "ms": rounded(ours),
                    "bw_frac": round(moved / (ours * 1e-3) / (bandwidth * 1e9), 3),
                    "tflops": round(flops / (ours * 1e-3) / 1e12, 2),
                    "plan": awq.awq_plan(M, (K, N), GROUP, path), "fused_ms": rounded(fused),
                    "tiled_ms": rounded(tiled),
                    "baselines": {"dequant_cublas_fp16": rounded(dequant), **stock}})
        del layers
        torch.cuda.empty_cache()
    return rows


def print_table(gpu, path, bandwidth, rows):
    print(f"\n{gpu}, {path} path, copy bandwidth {bandwidth:.0f} GB/s (ms; stock = best stock vLLM AWQ path)")
    print(f"{'case':<22} {'M':>5} {'ours':>9} {'bw':>6} {'tuned bw':>8} {'1-tile bw':>9} {'cuBLAS':>9} {'stock':>9} "
          f"{'faithful':>9}")
    for r in rows:
        b = r["baselines"]
        cublas = b.get("cublas_fp16_dequant", b.get("dequant_cublas_fp16"))
        stock = [v for k, v in b.items() if k in STOCK_BASELINES and v is not None]
        faithful = next((v for k, v in b.items() if "faithful" in k), None)
        fmt = lambda v: f"{v:>9.4f}" if v is not None else f"{'-':>9}"  # noqa: E731
        tuned = r.get("tuned") or {}
        tuned_bw = f"{tuned['bw_frac']:>8.2f}" if tuned else f"{'-':>8}"
        one_tile_bw = f"{tuned['one_column_tile']['bw_frac']:>9.2f}" if tuned else f"{'-':>9}"
        print(f"{r['case']:<22} {r['M']:>5} {fmt(r['ms'])} {r['bw_frac']:>6.2f} {tuned_bw} {one_tile_bw} {fmt(cublas)} "
              f"{fmt(min(stock) if stock else None)} {fmt(faithful)}")


def main() -> int:
    parser = benchmark_parser()
    parser.add_argument("--quick", action="store_true", help="fewer M values, no stock vLLM baselines")
    parser.add_argument("--no-stock", action="store_true", help="skip the stock vLLM baselines")
    parser.add_argument("--tune", action="store_true", help="also time the layer graphs with measured choices")
    parser.add_argument("--tp", type=int, nargs="+", choices=[1, 4], default=[1, 4])
    parser.add_argument("--layers-only", action="store_true", help="the decoder-layer graphs, no per-shape rows")
    parser.add_argument("--kernels", action="store_true",
                        help="only decoder-layer graphs at 16-256 rows, each kernel forced, and Marlin")
    args = parser.parse_args()

    from vllm_sm7x.ops.awq import device_model, fused_registry, tiled_registry

    torch.manual_seed(0)
    notes = {}
    baselines_mod = None
    if not (args.quick or args.no_stock):
        try:
            baselines_mod = load_baselines()
        except Exception as e:
            notes["stock"] = f"stock vLLM baselines unavailable: {type(e).__name__}: {e}"
    decode_m = (1, 4, 8) if args.quick else DECODE_M
    shape_m = (1, 4, 16, 64, 256, 4096) if args.quick else SHAPE_M
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    bandwidth = copy_bandwidth_gbs()
    rows = {path: [] for path in args.path}
    info = run_info()
    subset = "" if sorted(args.tp) == [1, 4] else "-tp" + "-".join(map(str, args.tp))
    if args.kernels:
        for tp in args.tp:
            part = tiled_rows(tp, args.path, bandwidth, l2, not args.no_stock, notes)
            for path in args.path:
                rows[path] += part[path]
                write_result(args.out, info, "awq_gemm", path, rows[path], notes, "-kernels",
                             copy_bandwidth_gbs=round(bandwidth, 1), group_size=GROUP,
                             tiled_registry=tiled_registry())
            torch.cuda.empty_cache()
        for path, path_rows in rows.items():
            print_kernel_table(info["gpu"], path, path_rows)
        return 0
    for tp in args.tp:
        parts = [lambda: layer_rows(tp, args.path, bandwidth, l2, baselines_mod, decode_m, notes, args.tune)]
        if not args.layers_only:
            parts.append(lambda: shape_rows(tp, args.path, bandwidth, l2, baselines_mod, shape_m, notes))
        for measure in parts:
            part = measure()
            for path in args.path:
                rows[path] += part[path]
                # Written after every part: a run cut short keeps what it measured.
                write_result(args.out, info, "awq_gemm", path, rows[path], notes, subset,
                             copy_bandwidth_gbs=round(bandwidth, 1), group_size=GROUP,
                             device_model=device_model(path), registry=fused_registry())
            torch.cuda.empty_cache()
    for path, path_rows in rows.items():
        print_table(info["gpu"], path, bandwidth, path_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
