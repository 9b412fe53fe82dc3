"""The `vllm-sm7x` command."""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path


def doctor(args: argparse.Namespace) -> int:
    if args.model:
        return doctor_profile(args)
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # vLLM's import-time INFO lines are noise here
    from vllm_sm7x.doctor import format_table, is_ready, run_checks

    checks = run_checks()
    if args.json:
        print(json.dumps({"ready": is_ready(checks), "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        print(format_table(checks))
    return 0 if is_ready(checks) else 1


def doctor_profile(args: argparse.Namespace) -> int:
    """The serving profile for MODEL on these GPUs (or the ones described by --gpu-memory-gib)."""
    from vllm_sm7x.activation import current_activation, visible_gpus
    from vllm_sm7x.profiles.engine import profile_mode, reason_not_applied
    from vllm_sm7x.profiles.memory import GIB
    from vllm_sm7x.profiles.model_facts import ModelFactsError, checkpoint_folder, read_model_facts
    from vllm_sm7x.profiles.resolve import Gpus, ProfileError, resolve_profile

    if args.gpu_memory_gib is not None:
        gpus = Gpus("GPU (--gpu-memory-gib)", int(args.gpu_memory_gib * GIB), args.gpu_count or 0)
    else:
        found = visible_gpus()
        if not found:
            print("no GPU visible: describe the cards with --gpu-memory-gib (and --gpu-count)", file=sys.stderr)
            return 2
        gpus = Gpus(found[0].name, min(g.memory_bytes for g in found), len(found))
    user = {name: getattr(args, name) for name in PROFILE_USER_ARGS if getattr(args, name) is not None}
    # Only for described cards: visible ones may be one node of several (vLLM's Ray executor, docs/multi-node.md).
    tp, pp = args.tensor_parallel_size, args.pipeline_parallel_size
    if args.gpu_memory_gib is not None and 0 < gpus.count < tp * pp:
        asked = f"--tensor-parallel-size {tp}" + (f" x --pipeline-parallel-size {pp}" if pp > 1 else "")
        print(f"error: {asked} needs {tp * pp} GPUs; --gpu-count says {gpus.count}", file=sys.stderr)
        return 2
    try:
        mode = profile_mode()
        facts = read_model_facts(checkpoint_folder(args.model))
        profile = resolve_profile(facts, gpus, tp, user, pp)
    except (ModelFactsError, ProfileError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # The weights' kernels on each card the command speaks of: these GPUs', or both paths for described cards.
    from vllm_sm7x.quantization.serving_path import weights_plan

    paths = [current_activation().path] if args.gpu_memory_gib is None else ["sm70", "sm75"]
    weights = {path: weights_plan(facts.quantization_config, path, facts.architecture, facts.is_moe)
               for path in paths if path is not None}
    refusals = {path: refusal for path, (_, refusal) in weights.items() if refusal}
    not_applied = reason_not_applied(facts, mode)
    if not_applied is None and args.gpu_memory_gib is None:  # these GPUs: the profile runs only inside the plugin
        activation = current_activation()
        if not activation.active:
            not_applied = f"the plugin stays off here ({activation.reason})"
    if args.json:
        print(json.dumps({"engine_args": profile.engine_args(), "budget_bytes": profile.budget,
                          "reasons": {s.name: s.reason for s in profile.settings.values()},
                          "applied_at_start": not_applied is None, "not_applied_because": not_applied,
                          "weights": {path: {"runs_on": runs, "refused_because": refusal}
                                      for path, (runs, refusal) in weights.items()}}, indent=2))
    else:
        print(f"{args.model} on {gpus.count or 'n'} x {gpus.name}, --tensor-parallel-size {tp}"
              + (f", --pipeline-parallel-size {pp}" if pp > 1 else ""))
        for path, (runs, refusal) in weights.items():
            print(f"weights on the {path} path: {runs}" + (f"; the server refuses them: {refusal}" if refusal else ""))
        print(profile.table())
        print(f"the server does not apply it: {not_applied}" if not_applied else
              f"the server applies it at start-up to every setting you do not pass (VLLM_SM7X_PROFILE={mode})")
    # On these GPUs a refusal is the server's answer; for described cards it holds on one path only.
    return 2 if args.gpu_memory_gib is None and refusals else 0


# Engine arguments a user may pass to `doctor MODEL`: the profile keeps them and checks they fit.
PROFILE_USER_ARGS = ("max_model_len", "max_num_seqs", "max_num_batched_tokens", "kv_cache_dtype",
                     "gpu_memory_utilization", "kv_cache_memory_bytes", "speculative_config", "enable_prefix_caching",
                     "limit_mm_per_prompt")


def serve_demo(args: argparse.Namespace) -> int:
    from vllm_sm7x.entrypoints.demo import serve_demo as run

    return run(args.cache, args.port, args.emulate, args.vllm_args, args.dry_run, args.preset)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vllm-sm7x", description="vLLM on NVIDIA Volta (SM70) and Turing (SM75)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("doctor", help="check GPUs, driver, torch, vLLM and our kernels; print what to fix")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("model", nargs="?", help="a checkpoint folder: print the serving profile vllm-sm7x chooses for it "
                   "on these GPUs, and why, without starting vLLM")
    p.add_argument("--tensor-parallel-size", "-tp", type=int, default=1)
    p.add_argument("--pipeline-parallel-size", "-pp", type=int, default=1)
    p.add_argument("--gpu-memory-gib", type=float, help="plan for cards of this size instead of the visible GPUs")
    p.add_argument("--gpu-count", type=int, help="with --gpu-memory-gib: how many cards there are")
    p.add_argument("--max-model-len", type=int)
    p.add_argument("--max-num-seqs", type=int)
    p.add_argument("--max-num-batched-tokens", type=int)
    p.add_argument("--kv-cache-dtype", choices=["auto", "float16", "fp8_e5m2"])
    p.add_argument("--gpu-memory-utilization", type=float)
    p.add_argument("--kv-cache-memory-bytes", type=int)
    p.add_argument("--speculative-config", type=json.loads, help="as vLLM takes it, JSON")
    p.add_argument("--enable-prefix-caching", action=argparse.BooleanOptionalAction, default=None,
                   help="as vLLM takes it (off: hybrid models keep no aligned states, which frees KV memory)")
    p.add_argument("--limit-mm-per-prompt", type=json.loads,
                   help="as vLLM takes it, JSON: any value keeps a vision checkpoint's encoder (no text-only default)")
    p.set_defaults(func=doctor)
    from vllm_sm7x.entrypoints.demo import DEFAULT_CACHE, DEMO_PRESETS

    p = sub.add_parser("serve-demo", help="build a tiny AWQ model and serve it with vLLM's OpenAI server on this GPU")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--preset", choices=list(DEMO_PRESETS), default="qwen3-tiny",
                   help="dense Qwen3 (default), the Qwen3.5 hybrid (-mtp: with an MTP head) or the Qwen3.6 MoE "
                        "layout, tiny and random")
    p.add_argument("--emulate", choices=["sm70", "sm75"], help="force an arch path (default: native on "
                   "V100/T4-class GPUs, sm75 emulation on newer ones)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"checkpoint folder (default {DEFAULT_CACHE})")
    p.add_argument("--dry-run", action="store_true", help="print what would run, build and start nothing")
    p.add_argument("vllm_args", nargs=argparse.REMAINDER, help="after --: more api_server arguments")
    p.set_defaults(func=serve_demo)
    args = parser.parse_args(argv)
    if getattr(args, "vllm_args", None) and args.vllm_args[0] == "--":
        args.vllm_args = args.vllm_args[1:]
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
