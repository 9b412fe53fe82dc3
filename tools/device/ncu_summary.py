#!/usr/bin/env python3
"""One short block per kernel from Nsight Compute's raw CSV pages (`ncu --csv --page raw`, as
`gpu.sh profile` writes them): time, DRAM traffic and throughput, occupancy and its limiters, issue
activity, and the reasons warps stall most, so a kernel's distance from the roofline gets a measured
cause.

  python tools/device/ncu_summary.py ncu-CASE.csv ...
"""
from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

# (label, metric or metrics tried in order (ncu's names differ between GPU generations), scale to the
# printed unit, unit)
METRICS = [
    ("time", "gpu__time_duration.sum", 1e-3, "us"),  # ncu reports ns
    ("DRAM read", "dram__bytes_read.sum", 1e-6, "MB"),
    ("DRAM read rate", "dram__bytes_read.sum.per_second", 1e-12, "TB/s"),
    ("DRAM % of peak", ("gpu__dram_throughput.avg.pct_of_peak_sustained_elapsed",
                        "dram__throughput.avg.pct_of_peak_sustained_elapsed"), 1, "%"),
    ("L2 % of peak", "lts__t_sectors.avg.pct_of_peak_sustained_elapsed", 1, "%"),
    ("L1 hit rate", "l1tex__t_sector_hit_rate.pct", 1, "%"),
    ("L2 hit rate", "lts__t_sector_hit_rate.pct", 1, "%"),
    ("SM % of peak", "sm__throughput.avg.pct_of_peak_sustained_elapsed", 1, "%"),
    ("grid", "launch__grid_size", 1, "CTAs"),
    ("threads per CTA", "launch__block_size", 1, ""),
    ("registers per thread", "launch__registers_per_thread", 1, ""),
    ("waves per SM", "launch__waves_per_multiprocessor", 1, ""),
    ("occupancy achieved", "sm__warps_active.avg.pct_of_peak_sustained_active", 1, "%"),
    ("occupancy theoretical", "sm__maximum_warps_per_active_cycle_pct", 1, "%"),
    ("CTAs per SM by registers", "launch__occupancy_limit_registers", 1, ""),
    ("CTAs per SM by shared memory", "launch__occupancy_limit_shared_mem", 1, ""),
    ("CTAs per SM by warps", "launch__occupancy_limit_warps", 1, ""),
    ("issue slots busy", "smsp__issue_active.avg.pct_of_peak_sustained_active", 1, "%"),
    # What the issue slots went to (InstructionStats, ComputeWorkloadAnalysis): a kernel bound inside
    # the SM shows which pipe or how many instructions per byte.
    ("warp instructions executed", "smsp__inst_executed.sum", 1e-6, "M"),
    ("tensor pipe % of peak", ("sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active",
                               "sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active",
                               "sm__inst_executed_pipe_tensor.avg.pct_of_peak_sustained_active"), 1, "%"),
    ("FMA pipe % of peak", ("sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active",
                            "sm__inst_executed_pipe_fma.avg.pct_of_peak_sustained_active"), 1, "%"),
    ("ALU pipe % of peak", ("sm__pipe_alu_cycles_active.avg.pct_of_peak_sustained_active",
                            "sm__inst_executed_pipe_alu.avg.pct_of_peak_sustained_active"), 1, "%"),
    ("LSU pipe % of peak", "sm__inst_executed_pipe_lsu.avg.pct_of_peak_sustained_active", 1, "%"),
]
# Per-reason stall counters; ncu names them in more than one family (warps stalled per issued
# instruction, average latencies, sampled counts; with suffixes): one family is used, the one that
# names the most reasons. "selected" is the warp issuing, not a stall.
STALL = re.compile(r"^(smsp__(?:average_warps_issue_stalled|average_warp_latency_issue_stalled|"
                   r"pcsamp_warps_issue_stalled))_(\w+?)((?:_per_issue_active)?(?:\.\w+)*)$")
NOT_STALLS = ("selected",)
TOP_STALLS = 5


def number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def read_raw_page(path: Path) -> list[dict[str, str]]:
    """Rows of one raw-page CSV (header of metric names, a row of units, one row per kernel); ncu's
    own log lines before the header are skipped."""
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.startswith('"')]
    if len(lines) < 2:
        return []
    rows = list(csv.DictReader(lines))
    return rows[1:]  # the first row holds the units


def stall_counts(row: dict[str, str]) -> dict[str, float]:
    """Reason -> stall count (or latency) of one kernel's row, from one counter family; the "not
    issued" variants are left out."""
    families: dict[tuple[str, str], dict[str, float]] = {}
    for name, text in row.items():
        match = STALL.match(name or "")
        value = number(text or "")
        if (match and value is not None and not match.group(2).endswith("not_issued")
                and match.group(2) not in NOT_STALLS):
            families.setdefault((match.group(1), match.group(3)), {})[match.group(2)] = value
    return max(families.values(), key=len, default={})


def summarise(path: Path) -> str:
    rows = read_raw_page(path)
    if not rows:
        return f"{path.name}: no kernel profiled (see ncu.log: ncu failed or the range matched nothing)"
    blocks = []
    for row in rows:
        kernel = row.get("Kernel Name", "?")
        lines = [f"{path.stem}: {kernel[:100]}"]
        for label, metrics, scale, unit in METRICS:
            names = (metrics,) if isinstance(metrics, str) else metrics
            value = next((v for v in (number(row.get(name, "")) for name in names) if v is not None), None)
            shown = "not collected" if value is None else f"{value * scale:,.4g} {unit}".rstrip()
            lines.append(f"  {label:<30} {shown}")
        counts = stall_counts(row)
        if counts:
            total = sum(counts.values()) or 1.0
            top = sorted(counts.items(), key=lambda item: -item[1])[:TOP_STALLS]
            lines.append("  stalls (share): " + ", ".join(f"{reason} {value / total:.0%}" for reason, value in top))
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    print("\n".join(summarise(Path(arg)) for arg in argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
