"""The `vllm-sm7x` command."""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict


def doctor(args: argparse.Namespace) -> int:
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # vLLM's import-time INFO lines are noise here
    from vllm_sm7x.doctor import format_table, is_ready, run_checks

    checks = run_checks()
    if args.json:
        print(json.dumps({"ready": is_ready(checks), "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        print(format_table(checks))
    return 0 if is_ready(checks) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vllm-sm7x", description="vLLM on NVIDIA Volta (SM70) and Turing (SM75)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("doctor", help="check GPUs, driver, torch, vLLM and our kernels; print what to fix")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=doctor)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
