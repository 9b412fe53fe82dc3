"""The `vllm-sm7x` command."""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path


def doctor(args: argparse.Namespace) -> int:
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # vLLM's import-time INFO lines are noise here
    from vllm_sm7x.doctor import format_table, is_ready, run_checks

    checks = run_checks()
    if args.json:
        print(json.dumps({"ready": is_ready(checks), "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        print(format_table(checks))
    return 0 if is_ready(checks) else 1


def serve_demo(args: argparse.Namespace) -> int:
    from vllm_sm7x.entrypoints.demo import serve_demo as run

    return run(args.cache, args.port, args.emulate, args.vllm_args, args.dry_run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vllm-sm7x", description="vLLM on NVIDIA Volta (SM70) and Turing (SM75)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("doctor", help="check GPUs, driver, torch, vLLM and our kernels; print what to fix")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=doctor)
    from vllm_sm7x.entrypoints.demo import DEFAULT_CACHE

    p = sub.add_parser("serve-demo", help="build a tiny AWQ model and serve it with vLLM's OpenAI server on this GPU")
    p.add_argument("--port", type=int, default=8000)
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
