#!/usr/bin/env python3
"""End-to-end serving speed through vllm.LLM at Qwen3.6-27B widths, 8 layers: dense
(`--preset qwen3-27b-width`, the default) or the hybrid layout (`qwen36-27b-width`: 6 Gated DeltaNet +
2 gated full-attention layers, served text-only; ours with and without our GDN decode kernels, and
with our GDN prefill kernels), or Qwen3.6-35B-A3B's MoE hybrid at its widths in 4 layers
(`qwen36-35b-a3b-width`, text-only; the same hybrid rows):
decode tokens/s at batch 1 and 4 (and at batch 1 after --decode-contexts prompts), and time to first
token for prompts of 1K/8K/32K tokens, for our emulated SM70/SM75 paths and, in the same run, stock
vLLM forced to what it does on that card:
  sm75: stock vLLM's own AWQ path (VLLM_SM7X_STOCK_AWQ=1: vLLM 0.26 picks Marlin from SM75) + TRITON_ATTN
  sm70: stock vLLM has no AWQ path on Volta: the same model's fp16 checkpoint + TRITON_ATTN
Decode is the honest comparison (memory-bound: int4 against fp16 or stock kernels); prefill of the
stock side runs this GPU's instructions where Triton picks them, so TTFT is reported, not claimed.
These are figures of this GPU running the SM7x code paths, not V100 or T4 figures.
--mtp K serves the hybrid preset's `-mtp` checkpoint (an MTP head built to agree with the model part
of the time: see vllm_sm7x/checkpoints) with K speculative tokens on every configuration and reports
the share of drafts accepted beside the speed; a run without it gives the same rows without MTP. A
built head's acceptance is not a trained one's: compare tok/s at the acceptance reported.

  python benchmarks/serve.py --path sm70 sm75 [--preset P] [--cache DIR] [--out benchmarks/results] [--quick]
  python benchmarks/serve.py --path sm75 --preset qwen36-27b-width --mtp 3 --decode-contexts 4096 65536
  python benchmarks/serve.py --path sm75 --profile     # GPU kernels of a batch-1 decode, per token
  python benchmarks/serve.py --path sm75 --profile --decode-contexts 65536  # ... also after a 64K prompt
  python benchmarks/serve.py --path sm75 --profile prefill  # ... of one 8K-token prompt
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from run_info import benchmark_parser, run_info, write_result  # noqa: E402

PRESETS = ("qwen3-27b-width", "qwen36-27b-width", "qwen36-35b-a3b-width")
HYBRID_ENGINE = {"language_model_only": True}  # no vision tower: the presets carry no vision weights

MEASURE = r"""
import json, sys, time
from vllm import LLM, SamplingParams
model, backend, contexts = sys.argv[1], sys.argv[2], [int(c) for c in sys.argv[3].split(",")]
engine_args = json.loads(sys.argv[4])
decode_contexts = [int(c) for c in sys.argv[6].split(",") if c]
# No prefix caching: each timing repeats its prompts, and a cached prompt would time a cache hit, not a
# prefill (the TTFT rows of 2026-11-30 did).
llm = LLM(model=model, skip_tokenizer_init=True, max_model_len=max(contexts + decode_contexts) + 256, max_num_seqs=4,
          max_num_batched_tokens=16384, gpu_memory_utilization=0.85, seed=0, enable_prefix_caching=False,
          attention_backend=None if backend == "default" else backend, **engine_args)

def run(prompts, tokens):
    params = SamplingParams(max_tokens=tokens, temperature=0.0, ignore_eos=True, detokenize=False)
    start = time.perf_counter()
    llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    return time.perf_counter() - start

def prompt(n, seed):
    return [(seed * 7919 + 31 * i) % 200000 + 100 for i in range(n)]

run([prompt(64, 0)], 8)  # warm-up (graphs, compilation caches)
if sys.argv[5].startswith("profile"):  # where the GPU time goes, kernel by kernel
    import torch
    CUDA = torch.autograd.DeviceType.CUDA

    def kernels_of(prompts, tokens):  # wall seconds, {kernel: [us, calls]}, graph launches of one run
        run(prompts, tokens)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                torch.profiler.ProfilerActivity.CUDA]) as prof:
            wall = run(prompts, tokens)
        events = prof.key_averages()
        kernels = {e.key: [e.device_time_total, e.count] for e in events
                   if e.device_type == CUDA and e.device_time_total > 0}
        # One launch per step means a FULL decode graph; piecewise graphs launch one per piece.
        return wall, kernels, sum(e.count for e in events if e.key == "cudaGraphLaunch")

    def per_unit(wall, kernels, launches, per, **where):
        top = sorted(kernels.items(), key=lambda kv: -kv[1][0])[:20]
        return {**where, "wall_ms": round(wall * 1e3 / per, 3),
                "gpu_us": round(sum(us for us, _ in kernels.values()) / per, 1),
                "kernels": round(sum(calls for _, calls in kernels.values()) / per, 1),
                "graph_launches": round(launches / per, 2),
                "top_kernels": [{"kernel": key[:120], "calls": round(calls / per, 2), "us": round(us / per, 2)}
                                for key, (us, calls) in top]}

    if sys.argv[5] == "profile-prefill":  # one 8K-token prompt
        profiles = [per_unit(*kernels_of([prompt(8192, 2)], 1), 1, context=8192)]
    else:
        # Decode at batch 1 after each context: 64 steps, less the same prompt's own run (its prefill and
        # first token), per token, so a long prompt's prefill does not count as decode.
        profiles = []
        for context in [128] + decode_contexts:
            prompts = [prompt(context, 1)]
            wall_1, prefill, launches_1 = kernels_of(prompts, 1)
            wall_65, full, launches_65 = kernels_of(prompts, 65)
            decode = {}
            for key, (us, calls) in full.items():
                prefill_us, prefill_calls = prefill.get(key, (0, 0))
                if us > prefill_us:
                    decode[key] = [us - prefill_us, calls - prefill_calls]
            profiles.append(per_unit(wall_65 - wall_1, decode, launches_65 - launches_1, 64, context=context))
    print("RESULT " + json.dumps({"quantization": llm.llm_engine.vllm_config.model_config.quantization,
                                  "unit": "8K-token prompt" if sys.argv[5] == "profile-prefill" else "token",
                                  "profiles": profiles}))
    sys.exit(0)
rows = []
# Decode: 128 tokens after the prompt, less the prompt's own time (a 1-token run of it). Batch 1 only
# after the long prompts, each timing of which prefills them again.
for context, batch in [(128, 1), (128, 4)] + [(c, 1) for c in decode_contexts]:
    prompts = [prompt(context, b + 1) for b in range(batch)]
    repeats = 3 if context <= 8192 else 2
    first, full = min(run(prompts, 1) for _ in range(repeats)), min(run(prompts, 129) for _ in range(repeats))
    rows.append({"phase": "decode", "context": context, "batch": batch,
                 "tok_s": round(batch * 128 / (full - first), 2)})
for context in contexts:
    ttft = min(run([prompt(context, context)], 1) for _ in range(2))
    rows.append({"phase": "prefill", "context": context, "batch": 1, "ttft_ms": round(ttft * 1e3, 2)})
# Only an MTP run keeps stats (get_metrics asserts without them), and only it has draft counters.
metrics = llm.get_metrics() if "speculative_config" in engine_args else []
counters = {m.name.removesuffix("_total"): m.value for m in metrics
            if m.name.startswith("vllm:spec_decode_num_") and hasattr(m, "value")}
drafted = counters.get("vllm:spec_decode_num_draft_tokens", 0)
acceptance = round(counters.get("vllm:spec_decode_num_accepted_tokens", 0) / drafted, 3) if drafted else None
print("RESULT " + json.dumps({"quantization": llm.llm_engine.vllm_config.model_config.quantization, "rows": rows,
                              "mtp_acceptance": acceptance}))
"""


def checkpoint(cache: Path, preset: str, quantize: bool) -> Path:
    folder = cache / f"{preset}-{'awq' if quantize else 'fp16'}"
    if not (folder / "model.safetensors").exists():
        print(f"building {folder} ...", flush=True)
        # Its own process: the GPU memory the build used goes with it, before vLLM asks for 85%.
        subprocess.run([sys.executable, str(ROOT / "tools" / "make_checkpoint.py"), "--preset", preset,
                        "--out", str(folder)] + ([] if quantize else ["--fp16"]), check=True)
    return folder


def measure(model: Path, env_extra: dict, backend: str, contexts, log: Path, engine_args: dict,
            profile: str | None = None, decode_contexts=()) -> dict:
    # Each configuration says which of our switches it sets, flash-attn's decode kernel included.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VLLM_SM7X", "_VLLM_SM7X")) and k != "FLASH_ATTN_V100_DECODE"}
    env["VLLM_SM7X_PROFILE"] = "off"  # every configuration runs the engine arguments given here
    env.update(env_extra)
    if profile:
        env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the model runs in this process, where the profiler is
    result = subprocess.run([sys.executable, "-c", MEASURE, str(model), backend, ",".join(map(str, contexts)),
                             json.dumps(engine_args), f"profile-{profile}" if profile else "measure",
                             ",".join(map(str, decode_contexts))],
                            capture_output=True, text=True, env=env, timeout=1800)
    log.write_text(result.stdout + result.stderr)
    line = next((line for line in result.stdout.splitlines() if line.startswith("RESULT ")), None)
    if result.returncode != 0 or line is None:
        return {"error": (result.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    return json.loads(line.removeprefix("RESULT "))


# Decode kernels flash-attn has on the sm75 path only (the warp-pair kernel, decode_pairs_sm75.cu).
SM75_ONLY_DECODE_KERNELS = ("pairs",)


def configurations(path: str, awq: Path, fp16: Path, attention: list[str], hybrid: bool, decode_kernels=()):
    """(name, checkpoint, environment, attention backend) for our path and stock vLLM on that card;
    hybrids also run ours with vLLM's FLA kernels for all of GDN and ours with FLA's for GDN prefill
    only (ours are the default for both). decode_kernels: ours again with flash-attn's decode kernel
    forced to each (FLASH_ATTN_V100_DECODE), to compare the kernels served, in one run."""
    for backend in attention:
        yield f"ours-{backend.lower()}", awq, {"VLLM_SM7X_EMULATE": path}, backend
    for kernel in decode_kernels:
        if kernel in SM75_ONLY_DECODE_KERNELS and path != "sm75":
            continue  # flash-attn refuses it there: nothing to compare
        yield f"ours-default-decode_{kernel}", awq, {"VLLM_SM7X_EMULATE": path, "FLASH_ATTN_V100_DECODE": kernel}, "default"
    fla_gdn_prefill = {"VLLM_SM7X_GDN_PREFILL": "0", "VLLM_SM7X_GDN_CONV_PREFILL": "0"}  # chunk and conv1d
    fla_gdn = {"VLLM_SM7X_GDN_DECODE": "0", **fla_gdn_prefill}
    stock = {"VLLM_SM7X_EMULATE": path, **fla_gdn}  # vLLM's kernels wherever ours are a switch
    if path == "sm75":
        yield "stock-awq-triton_attn", awq, {**stock, "VLLM_SM7X_STOCK_AWQ": "1"}, "TRITON_ATTN"
    else:  # a MoE preset's row reports the platform's refusal: no MoE kernel but ours exists for Volta
        yield "stock-fp16-triton_attn", fp16, stock, "TRITON_ATTN"
    if hybrid:  # last: the comparison with stock comes first where a run is cut short
        yield "ours-default-fla_gdn", awq, {"VLLM_SM7X_EMULATE": path, **fla_gdn}, "default"
        yield "ours-default-fla_gdn_prefill", awq, {"VLLM_SM7X_EMULATE": path, **fla_gdn_prefill}, "default"


def interleaved_runs(configs, rounds: int, wanted=None) -> list[tuple]:
    """(round, name, checkpoint, environment, backend): every wanted configuration once per round, the
    rounds one after the other (A B A B), so a slow engine start or a drifting machine shows as a
    difference between rounds, not between configurations."""
    chosen = [config for config in configs if not wanted or config[0] in wanted]
    return [(round_, *config) for round_ in range(1, rounds + 1) for config in chosen]


def print_profile(title: str, result: dict) -> None:
    if "error" in result:
        print(f"\n{title}: {result['error']}")
        return
    for p in result["profiles"]:
        print(f"\n{title}, context {p['context']}: per {result['unit']}: {p['wall_ms']} ms wall, {p['gpu_us']} us "
              f"of GPU time in {p['kernels']} kernels, {p['graph_launches']} graph launches")
        for k in p["top_kernels"]:
            print(f"  {k['us']:>9} us  {k['calls']:>6}  {k['kernel']}")


def served(preset: str, mtp: int, presets: dict) -> tuple[str, dict]:
    """The checkpoint preset a run serves and the engine arguments every configuration gets: the
    `-mtp` variant with `mtp` speculative tokens (and the counters that report acceptance) if asked."""
    engine_args = dict(HYBRID_ENGINE) if "text_config" in presets[preset] else {}
    if not mtp:
        return preset, engine_args
    with_head = f"{preset}-mtp"
    if with_head not in presets:
        heads = ", ".join(sorted(p.removesuffix("-mtp") for p in presets if p.endswith("-mtp")))
        raise SystemExit(f"--mtp: {preset} has no preset with an MTP head; these have: {heads}")
    return with_head, {**engine_args, "speculative_config": {"method": "mtp", "num_speculative_tokens": mtp},
                       "disable_log_stats": False}


def main() -> int:
    parser = benchmark_parser()
    parser.add_argument("--cache", type=Path, default=Path("/tmp/sm7x-checkpoints"))
    parser.add_argument("--attention", nargs="+", default=["default", "TRITON_ATTN"],
                        help="attention backends for our path: default (our platform's pick, FLASH_ATTN_V100) "
                             "and/or TRITON_ATTN (vLLM's own)")
    parser.add_argument("--quick", action="store_true", help="prompts of 1K and 8K only")
    parser.add_argument("--profile", nargs="?", const="decode", choices=["decode", "prefill"],
                        help="instead of timing: the GPU kernels of a batch-1 decode, per token, after 128 tokens and "
                             "each --decode-contexts prompt (default), or of one 8K-token prompt (no JSON written)")
    parser.add_argument("--preset", choices=PRESETS, default=PRESETS[0],
                        help="dense 27B widths, the Qwen3.6 hybrid layout at those widths, or the 35B-A3B MoE")
    parser.add_argument("--mtp", type=int, default=0, metavar="K",
                        help="serve the preset's -mtp checkpoint with K speculative tokens (qwen36-27b-width)")
    parser.add_argument("--configs", nargs="+", metavar="NAME",
                        help="run only these configurations (e.g. ours-default ours-default-fla_gdn_prefill); "
                             "default: all of them for the preset and path")
    parser.add_argument("--decode-contexts", type=int, nargs="*", default=[], metavar="TOKENS",
                        help="also decode at batch 1 after prompts of these lengths (e.g. 4096 65536)")
    parser.add_argument("--decode-kernels", nargs="+", default=[], metavar="KERNEL",
                        choices=["simt", "mma", "mma32", "mma8", "pairs"],
                        help="also serve ours with flash-attn's decode kernel forced to each (configurations "
                             "ours-default-decode_KERNEL; with --rounds, interleaved with ours-default); pairs "
                             "runs on the sm75 path only (left out of sm70's configurations) and at head_dim 128 "
                             "or 256 (every preset here)")
    parser.add_argument("--rounds", type=int, default=1, metavar="N",
                        help="run the configurations N times, interleaved (A B A B): engines of one configuration "
                             "differ by more than its repeated timings within one engine do")
    args = parser.parse_args()

    contexts = (1024, 8192) if args.quick else (1024, 8192, 32768)
    sys.path.insert(0, str(ROOT))
    from vllm_sm7x.checkpoints import PRESETS as CHECKPOINTS

    config = CHECKPOINTS[args.preset]
    hybrid = "text_config" in config  # the Qwen3.5/3.6 layouts (served text-only), as make_checkpoint tells them
    preset, engine_args = served(args.preset, args.mtp, CHECKPOINTS)
    label = f"{args.preset}-{config.get('text_config', config)['num_hidden_layers']}L" + (
        f" mtp{args.mtp}" if args.mtp else "")
    for path in args.path:  # before building checkpoints (minutes): a misspelt name fails at once
        names = [name for name, *_ in configurations(path, Path(), Path(), args.attention, hybrid, args.decode_kernels)]
        if args.configs and not set(args.configs) & set(names):
            raise SystemExit(f"--configs {' '.join(args.configs)}: none of these runs on the {path} path; "
                             f"its configurations: {', '.join(names)}")
    awq = checkpoint(args.cache, preset, True)
    fp16 = checkpoint(args.cache, preset, False) if "sm70" in args.path else None
    info = run_info()
    args.out.mkdir(parents=True, exist_ok=True)  # the engines' logs go there before any result
    for path in args.path:
        rows, notes = [], {}
        runs = interleaved_runs(configurations(path, awq, fp16, args.attention, hybrid, args.decode_kernels),
                                args.rounds, args.configs)
        for round_, name, model, env, backend in runs:
            suffix = f"-round{round_}" if args.rounds > 1 else ""
            result = measure(model, env, backend, contexts, args.out / f"serve-{preset}-{path}-{name}{suffix}.log",
                             engine_args, args.profile, args.decode_contexts)
            if args.profile:
                print_profile(f"{label} {name}, {path} path", result)
                continue
            if "error" in result:
                notes[name + suffix] = result["error"]
            else:
                notes[f"{name}{suffix} quantization"] = str(result["quantization"])
                if args.mtp:
                    notes[f"{name}{suffix} mtp acceptance"] = str(result["mtp_acceptance"])
                rows += [{"case": f"{label} {name}", **row, **({"round": round_} if args.rounds > 1 else {})}
                         for row in result["rows"]]
            # After every configuration, so a run stopped by a time limit keeps what it measured.
            write_result(args.out, info, "serve" if preset == PRESETS[0] else f"serve-{preset}", path, rows, notes)
        if args.profile:
            continue
        print(f"\n{info['gpu']}, {path} path")
        print(f"{'case':<45} {'phase':<8} {'ctx':>6} {'b':>2} {'tok/s':>9} {'TTFT ms':>9} {'round':>5}")
        for r in rows:
            print(f"{r['case']:<45} {r['phase']:<8} {r['context']:>6} {r['batch']:>2} {r.get('tok_s', ''):>9} "
                  f"{r.get('ttft_ms', ''):>9} {r.get('round', ''):>5}")
        for key, note in notes.items():
            print(f"  {key}: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
