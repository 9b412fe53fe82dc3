"""Measured AWQ GEMM choices: time every registry entry (warps, column tiles) and k split count of the
fused kernel per weight shape and batch bucket, keep the fastest, and hand them to the C++ dispatcher (which otherwise uses its cost
model). Results persist in a JSON file (VLLM_SM7X_AWQ_TUNING) keyed by GPU model and arch path.

Timing follows the rule for memory-bound kernels: weights are rotated over copies whose total is
at least twice the L2, so no candidate is timed on cached data; each candidate runs in a CUDA graph.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from pathlib import Path

import torch

from vllm_sm7x.quantization.awq_format import AwqKernelWeight
from vllm_sm7x.timing import graph_median_ms

logger = logging.getLogger(__name__)

# The fused kernel's rows (kFusedMaxRows): the C++ side buckets M up to a power of two; above 16 the
# tiled kernel or cuBLAS run, planned by the cost model.
M_BUCKETS = (1, 2, 4, 8, 16)
SPLITS = (1, 2, 3, 4, 6, 8, 12, 16)
_lock = threading.Lock()
_loaded: dict[str, dict] = {}


def shape_key(gpu: str, path: str, weight: AwqKernelWeight) -> str:
    # "v3": buckets stop at 16 rows, where the tiled kernel takes over (files written before it are timed again).
    return f"v3|{gpu}|{path}|N={weight.out_features}|K={weight.in_features}|G={weight.group_size}"


def tune_weight(weight: AwqKernelWeight, path: str, m_buckets=None, timings: list | None = None) -> dict[int, dict]:
    """{M bucket: {"warps", "column_tiles", "splits", "ms"}} for this weight shape, fastest per bucket.
    timings, if given, receives every candidate's {"M", "warps", "column_tiles", "splits", "ms"}."""
    from vllm_sm7x.ops.awq import awq_gemm, fused_registry

    l2 = torch.cuda.get_device_properties(weight.qweight.device).L2_cache_size
    weight_bytes = weight.qweight.numel() * 4 + weight.scale_zero.numel() * 4
    copies = [weight] + [AwqKernelWeight(weight.qweight.clone(), weight.scale_zero.clone(), weight.group_size)
                         for _ in range(max(1, -(-2 * l2 // weight_bytes)) - 1)]
    k_tiles = -(-weight.in_features // 128)
    results = {}
    for bucket in m_buckets or M_BUCKETS:
        x = torch.randn(bucket, weight.in_features, device=weight.qweight.device).half()
        token_tiles = torch.ops._C_sm7x.awq_token_tiles(bucket)
        best = None
        for entry in (e for e in fused_registry() if e["token_tiles"] == token_tiles):
            warps, column_tiles = entry["warps"], entry["column_tiles"]
            for splits in (s for s in SPLITS if s <= k_tiles):
                ms = graph_median_ms(lambda: [awq_gemm(x, w, path=path, warps=warps, split_k=splits,
                                                       column_tiles=column_tiles) for w in copies])
                ms /= len(copies)
                if timings is not None:
                    timings.append({"M": bucket, "warps": warps, "column_tiles": column_tiles, "splits": splits,
                                    "ms": round(ms, 5)})
                if best is None or ms < best["ms"]:
                    best = {"warps": warps, "column_tiles": column_tiles, "splits": splits, "ms": round(ms, 5)}
        results[bucket] = best
    return results


def apply(weight_shape: tuple[int, int], group_size: int, path: str, tuned: dict) -> None:
    """Hand measured choices to the dispatcher. weight_shape is (K, N). A choice this build cannot run (a
    tuning file from another build, or edited by hand) is skipped with a warning: the cost model plans
    that case instead."""
    K, N = weight_shape
    for bucket, choice in tuned.items():
        try:
            torch.ops._C_sm7x.awq_set_tuned(N, K, group_size, path, int(bucket), choice["warps"], choice["splits"],
                                            choice["column_tiles"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:  # a missing field, a wrong type, a rule
            logger.warning("vllm-sm7x: ignoring the tuned AWQ choice %s for N=%d K=%d: %s", choice, N, K, e)


def _read(file: Path) -> dict:
    if file.exists():
        try:
            return json.loads(file.read_text())
        except (OSError, ValueError) as e:
            logger.warning("vllm-sm7x: ignoring unreadable AWQ tuning file %s (%s)", file, e)
    return {}


def _write(file: Path, table: dict) -> None:
    # Atomic replace: tensor-parallel workers may write the same file.
    file.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=file.parent, delete=False, suffix=".tmp") as tmp:
        json.dump(table, tmp, indent=1, sort_keys=True)
    os.replace(tmp.name, file)


def ensure_tuned(weight: AwqKernelWeight, path: str, file: str) -> None:
    """Apply the file's choices for this weight shape, timing and saving them first if missing."""
    gpu = torch.cuda.get_device_name(weight.qweight.device)
    key = shape_key(gpu, path, weight)
    with _lock:
        table = _loaded.setdefault(file, _read(Path(file)))
        if key not in table:
            logger.info("vllm-sm7x: timing AWQ GEMM choices for %s (once; saved to %s)", key, file)
            table[key] = tune_weight(weight, path)
            merged = {**_read(Path(file)), key: table[key]}
            _write(Path(file), merged)
            table.update(merged)
    apply((weight.in_features, weight.out_features), weight.group_size, path, table[key])
