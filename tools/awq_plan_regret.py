#!/usr/bin/env python3
"""How much time the AWQ cost model leaves on the table, from a `benchmarks/awq_gemm.py --tune` result:
for each decoder-layer row and layer, the model's plan on the GPU the run described (its `device_model`,
recomputed here with this tree's model: no GPU needed) against every candidate the tuner timed
(`tuned.candidates`), both at the rows the tuner timed (the row count's bucket, a power of two).
Prints one table and the summary: per row, the layer graph's summed time on the model's picks over the
summed best times.

  python tools/awq_plan_regret.py benchmarks/results/awq_gemm-sm75-h200-<date>.json
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
from awq_gemm import LAYERS, m_bucket, shard  # noqa: E402
from vllm_sm7x.quantization.awq_format import TILE_K  # noqa: E402


def regret(result: dict) -> list[dict]:
    """One entry per (layer row, layer): the model's pick, its measured ms (None where the tuner did not
    time it), the best candidate and its ms."""
    from vllm_sm7x.ops.awq import fused_registry, plan_with_model

    if "device_model" not in result:
        raise SystemExit("this result has no device_model: rerun benchmarks/awq_gemm.py --tune on this tree")
    if result.get("registry") != fused_registry():
        raise SystemExit("the result's fused-kernel registry differs from this build's: its CTAs per SM do not "
                         "describe these entries")
    entries = []
    for row in result["rows"]:
        candidates = (row.get("tuned") or {}).get("candidates")
        if not row["case"].startswith("layer-") or not candidates:
            continue
        tp = int(row["case"].rsplit("tp", 1)[1])
        rows = m_bucket(row["M"])  # what the candidates were timed at
        for name, K, N in LAYERS:
            K, N = shard(name, K, N, tp)
            timed = {(w, c, launched_splits(K, s)): ms for w, c, s, ms in candidates[name]}
            plan = plan_with_model(rows, (K, N), result["group_size"], result["device_model"])
            pick = ((plan["warps"], plan["column_tiles"], launched_splits(K, plan["splits"]))
                    if plan["kernel"] == "fused" else None)
            best = min(timed, key=timed.get)
            entries.append({"case": row["case"], "M": row["M"], "rows": rows, "layer": name, "pick": pick,
                            "pick_ms": timed.get(pick), "best": best, "best_ms": timed[best]})
    return entries


def launched_splits(K: int, splits: int) -> int:
    """The k splits a launch really has (awq_gemm.h: each split takes ceil(k_tiles / splits) tiles), so
    a requested 12 and a planned 10 that launch alike compare as one choice."""
    k_tiles = -(-K // TILE_K)
    return -(-k_tiles // -(-k_tiles // splits))


def summary(entries: list[dict]) -> dict:
    """Per layer row, summed pick ms / summed best ms (rows with an untimed pick left out), and their
    geometric mean."""
    rows = {}
    for e in entries:
        rows.setdefault((e["case"], e["M"]), []).append(e)
    ratios = {key: sum(e["pick_ms"] for e in es) / sum(e["best_ms"] for e in es)
              for key, es in rows.items() if all(e["pick_ms"] is not None for e in es)}
    mean = math.exp(sum(map(math.log, ratios.values())) / len(ratios)) if ratios else None
    return {"per_row": ratios, "geometric_mean": mean}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    entries = regret(json.loads(Path(argv[0]).read_text()))
    print(f"{'case':<15} {'rows':>4} {'layer':<8} {'model (w, c, s)':<16} {'ms':>8} {'best (w, c, s)':<16} {'ms':>8} "
          f"{'ratio':>6}")
    for e in entries:
        ms = f"{e['pick_ms']:>8.4f}" if e["pick_ms"] is not None else f"{'untimed':>8}"
        ratio = f"{e['pick_ms'] / e['best_ms']:>6.2f}" if e["pick_ms"] is not None else f"{'-':>6}"
        print(f"{e['case']:<15} {e['rows']:>4} {e['layer']:<8} {str(e['pick']):<16} {ms} {str(e['best']):<16} "
              f"{e['best_ms']:>8.4f} {ratio}")
    totals = summary(entries)
    for (case, M), ratio in totals["per_row"].items():
        print(f"{case} M={M}: the model's picks take {ratio:.3f}x the best candidates' time")
    if totals["geometric_mean"] is not None:
        print(f"geometric mean over rows: {totals['geometric_mean']:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
