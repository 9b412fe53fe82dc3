#!/usr/bin/env python3
"""Writes a local AWQ checkpoint directory for tests, benchmarks and smoke runs without downloads
(vllm_sm7x/checkpoints: random seeded weights with a real config, our AWQ quantizer, a tokenizer
and a Qwen3.5/3.6-style chat template, peaked next-token distributions).

  python tools/make_checkpoint.py --preset qwen3-tiny --out /tmp/qwen3-tiny-awq [--group-size 128] [--seed 0]
                                  [--fp16 | --gptq]

Presets: qwen3-tiny (dense Qwen3, 2 layers), qwen3-27b-width (Qwen3.6-27B widths, 8 layers),
qwen35-tiny / qwen36-27b-width (the Qwen3.5/3.6 hybrid), qwen36-35b-a3b-tiny / qwen36-35b-a3b-width
(the hybrid MoE of Qwen3.6-35B-A3B; serve the hybrids text-only). Build the -width presets on a GPU
machine. Outputs are meaningless; they are for checking and timing the serving path.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vllm_sm7x.checkpoints import PRESETS, make_checkpoint  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--group-size", type=int, default=128, choices=[32, 64, 128])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="where to build the model (default: cuda if present)")
    formats = parser.add_mutually_exclusive_group()
    formats.add_argument("--fp16", action="store_true", help="keep fp16 weights (no AWQ)")
    formats.add_argument("--gptq", action="store_true",
                         help="GPTQ (4-bit, symmetric, no act-order) instead of AWQ; presets without experts")
    args = parser.parse_args()
    quantization = None if args.fp16 else "gptq" if args.gptq else "awq"
    print(make_checkpoint(args.preset, args.out, args.group_size, args.seed, args.device, quantization))
    return 0


if __name__ == "__main__":
    sys.exit(main())
