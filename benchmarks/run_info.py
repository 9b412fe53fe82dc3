"""What every benchmark result file records about its run (DESIGN.md section 8)."""
from __future__ import annotations

import argparse
import datetime
import os
import shutil
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


def host_load() -> dict:
    """What else the machine was doing when a result was written: CPU load averages (a decode loop of a
    few ms per step feels a neighbour's compile on the shared CPUs) and each GPU's used memory (a
    neighbour on another GPU of the host shows there). Best effort: None where nvidia-smi is missing."""
    used = None
    try:
        if shutil.which("nvidia-smi"):
            smi = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=30)
            used = [int(v) for v in smi.stdout.split()] if smi.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError):  # a hung or odd nvidia-smi must not lose the result file
        used = None
    return {"cpus": os.cpu_count(), "load_average_1_5_15_min": [round(v, 2) for v in os.getloadavg()],
            "gpu_memory_used_mib": used}


FIGURES = "this GPU running the SM7x code path, not V100/T4 figures"
PATHS = ("sm70", "sm75")


def benchmark_parser() -> argparse.ArgumentParser:
    """The arguments every benchmark takes: the emulated paths to run and where results go."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--path", choices=PATHS, nargs="+", required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    return parser


def error_note(error: Exception) -> str:
    """A failed baseline as its result file reports it: the exception's type and first line."""
    return f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"


def relative_difference(actual, expected) -> float:
    """||actual - expected|| / ||expected||, in float64 (tensors of any floating dtype): how far two kernels'
    outputs on the same inputs are apart."""
    return ((actual.double() - expected.double()).norm() / expected.double().norm()).item()


def baselines_for_path(baselines: dict, path: str) -> dict:
    """The baselines of one path's rows: all but those built for the other emulated card (keys ending
    in its name, e.g. triton_faithful_sm70 in the sm75 rows)."""
    return {key: value for key, value in baselines.items()
            if not any(key.endswith(other) for other in PATHS if other != path)}


def write_result(out: Path, info: dict, benchmark: str, path: str, rows: list, notes: dict, suffix: str = "",
                 **fields) -> Path:
    """One path's result file in DESIGN.md section 8's format, named <benchmark>-<path>-<gpu>-<date><suffix>.json;
    fields (copy_bandwidth_gbs, shapes...) go between the run's record and the rows."""
    import json

    result = {"benchmark": benchmark, "gpu": info["gpu"], "emulate": path, "date": info["date"],
              "commit": info["commit"], "command": info["command"], "host": host_load(), **fields, "rows": rows,
              "notes": {"figures": FIGURES, **notes}}
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{benchmark}-{path}-{info['gpu_tag']}-{info['date']}{suffix}.json"
    target.write_text(json.dumps(result, indent=1) + "\n")
    return target
