#!/usr/bin/env python3
"""Writes docs/environment.md from the table in vllm_sm7x/envs.py (a test checks it is current)."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from vllm_sm7x.envs import environment_variables  # noqa: E402

TARGET = ROOT / "docs" / "environment.md"


def render() -> str:
    lines = ["# Environment variables", "", "Generated from `vllm_sm7x/envs.py` by `tools/gen_env_docs.py`.", "",
             "| variable | meaning |", "| --- | --- |"]
    lines += [f"| `{name}` | {doc} |" for name, (_, doc) in environment_variables.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    TARGET.write_text(render())
    print(f"wrote {TARGET.relative_to(ROOT)}")
