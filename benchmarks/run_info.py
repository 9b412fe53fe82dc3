"""What every benchmark result file records about its run (DESIGN.md section 8)."""
from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_info() -> dict:
    """gpu, date, commit (SM7X_COMMIT first: the lent GPU machine's copy of the tree may carry a stale
    .git), command, and gpu_tag for file names (e.g. 'h100')."""
    import torch

    gpu = torch.cuda.get_device_name(0)
    commit = os.environ.get("SM7X_COMMIT")
    if not commit:
        git = subprocess.run(["git", "rev-parse", "--verify", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        commit = git.stdout.strip() if git.returncode == 0 else "unknown"
    return {"gpu": gpu, "date": datetime.date.today().isoformat(), "commit": commit, "command": " ".join(sys.argv),
            "gpu_tag": gpu.replace("NVIDIA", "").split()[0].lower()}


FIGURES = "this GPU running the SM7x code path, not V100/T4 figures"


def write_result(out: Path, info: dict, benchmark: str, path: str, rows: list, notes: dict, suffix: str = "",
                 **fields) -> Path:
    """One path's result file in DESIGN.md section 8's format, named <benchmark>-<path>-<gpu>-<date><suffix>.json;
    fields (copy_bandwidth_gbs, shapes...) go between the run's record and the rows."""
    import json

    result = {"benchmark": benchmark, "gpu": info["gpu"], "emulate": path, "date": info["date"],
              "commit": info["commit"], "command": info["command"], **fields, "rows": rows,
              "notes": {"figures": FIGURES, **notes}}
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{benchmark}-{path}-{info['gpu_tag']}-{info['date']}{suffix}.json"
    target.write_text(json.dumps(result, indent=1) + "\n")
    return target
