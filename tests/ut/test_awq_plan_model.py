"""The AWQ cost model (csrc/quantization/awq/awq_dispatch.cpp) on a described GPU, without one: decode
keeps one column tile and splits k where the columns cannot fill the GPU; 16 and more rows of the 27B
layers take two column tiles, whose x loads are half. On the H200 two tiles were the measured best in
20 of 24 cases at 16-64 rows, and one tile in 46 of 64 at 1-8 rows (two tiles won the others by at
most 8%; benchmarks/results/awq_gemm-sm75-h200-2026-12-01-column-tiles.json)."""
import json
import sys
from pathlib import Path

import pytest
import torch

from vllm_sm7x import ops

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "benchmarks"))

ops.load_kernels()

from awq_gemm import LAYERS, shard  # noqa: E402
from tests.ut.described_gpus import H200, H200_CTAS_PER_SM, T4, V100, described, registry_entries  # noqa: E402
from vllm_sm7x.ops.awq import plan_tiled_with_model, plan_with_model  # noqa: E402

def plan(M, K, N, group_size=128, gpu=H200):
    chosen = plan_with_model(M, (K, N), group_size, described(gpu))
    assert chosen.pop("kernel") == "fused"
    return chosen


def test_every_registry_entry_is_described():
    assert set(registry_entries()) == set(H200_CTAS_PER_SM)


@pytest.mark.parametrize("tp", [1, 4])
@pytest.mark.parametrize("M", [1, 3, 8])
def test_decode_keeps_one_column_tile(M, tp):
    for name, K, N in LAYERS:
        K, N = shard(name, K, N, tp)
        chosen = plan(M, K, N)
        assert chosen["column_tiles"] == 1 and chosen["token_tiles"] == 1, (name, chosen)


@pytest.mark.parametrize("M", [16, 33, 64])
def test_many_rows_take_two_column_tiles(M):
    for name, K, N in LAYERS:
        chosen = plan(M, K, N)
        assert (chosen["token_tiles"], chosen["warps"], chosen["column_tiles"]) == (2, 4, 2), (name, chosen)
        if name in ("qkv", "gate_up"):  # enough columns to fill the GPU: no k split
            assert chosen["splits"] == 1, (name, chosen)


def test_picks_are_within_a_few_percent_of_the_measured_best():
    # Every candidate the tuner timed on the H200 (27B layers, TP1 and TP4, 1-64 rows): the model's picks,
    # replayed on the GPU that run described, against the fastest. 1.027x and 1.104x before the
    # partial-wave term (tools/awq_plan_regret.py prints the table).
    import awq_plan_regret as regret_tool
    result = json.loads((RESULTS / "awq_gemm-sm75-h200-2026-12-01-tune.json").read_text())
    totals = regret_tool.summary(regret_tool.regret(result))
    assert len(totals["per_row"]) == 22, "a layer row's pick was not among the timed candidates"
    assert totals["geometric_mean"] < 1.015
    assert max(totals["per_row"].values()) < 1.06, totals["per_row"]


@pytest.mark.parametrize("M, token_tiles", [(1, 1), (8, 1), (9, 2), (16, 2), (17, 2), (64, 2)])
def test_token_tiles_follow_the_rows(M, token_tiles):
    assert torch.ops._C_sm7x.awq_token_tiles(M) == token_tiles


@pytest.mark.parametrize("gpu", [V100, T4], ids=["V100", "T4"])
@pytest.mark.parametrize("tp", [1, 4])
def test_decode_plans_fill_the_cards_users_run(gpu, tp):
    for M in (1, 4, 8):
        for name, K, N in LAYERS:
            K, N = shard(name, K, N, tp)
            chosen = plan(M, K, N, gpu=gpu)
            ctas = -(-N // (16 * chosen["column_tiles"])) * chosen["splits"]
            assert ctas >= gpu["sms"], (name, M, chosen)
            assert chosen["splits"] <= 8, (name, M, chosen)  # a split's k range stays >= 2 tiles at 27B widths


def test_few_columns_split_k_to_fill_the_gpu():
    # 80 column tiles on 132 SMs: without splitting k most SMs would idle.
    assert plan(1, 17408, 1280)["splits"] > 1


def test_bad_descriptions_get_clear_errors():
    with pytest.raises(ValueError, match="one value per registry entry"):
        torch.ops._C_sm7x.awq_plan_model(1, 1024, 1024, 128, 132, 4.8e6, 1980.0, [1, 2])
    ctas = [1] * len(registry_entries())
    with pytest.raises(ValueError, match="must be positive"):
        torch.ops._C_sm7x.awq_plan_model(1, 1024, 1024, 128, 0, 4.8e6, 1980.0, ctas)
    with pytest.raises(ValueError, match="group size 0 is not supported"):
        torch.ops._C_sm7x.awq_plan_model(1, 1024, 1024, 0, 132, 4.8e6, 1980.0, ctas)
    with pytest.raises(ValueError, match="one value per tiled registry entry"):
        torch.ops._C_sm7x.awq_plan_tiled_model(32, 1024, 1024, 128, 132, 4.8e6, 1980.0, [2, 2, 2])


@pytest.mark.parametrize("M, kernel", [(1, 0), (16, 0), (17, 2), (64, 2), (128, 2), (129, 1), (4097, 1)])
def test_rows_pick_fused_then_tiled_then_dequantise_and_cublas(M, kernel):
    # awq_plan's codes: 0 fused, 1 dequantise + cuBLAS, 2 tiled
    assert torch.ops._C_sm7x.awq_linear_kernel(M) == kernel


def test_the_row_ranges_the_start_up_log_names_are_the_kernel_choice():
    from vllm_sm7x.ops.awq import linear_row_ranges

    assert linear_row_ranges() == {"fused": 16, "tiled": 128}


def test_a_tuned_choice_this_build_cannot_run_is_skipped_with_a_warning(caplog):
    from vllm_sm7x.quantization import awq_tuning

    unknown = {"warps": 8, "column_tiles": 8, "splits": 1, "ms": 0.1}  # no such registry entry
    known = {"warps": 4, "column_tiles": 2, "splits": 2, "ms": 0.1}
    try:
        edited = {"warps": 4, "splits": 1}  # a hand edit that lost a field
        awq_tuning.apply((5120, 34816), 128, "sm75", {8: unknown, 16: known, 4: edited})  # loading does not fail
        warnings = [r.getMessage() for r in caplog.records if "ignoring the tuned AWQ choice" in r.getMessage()]
        assert len(warnings) == 2 and "'column_tiles': 8" in warnings[0] and "no fused kernel with" in warnings[0]
        assert "column_tiles" in warnings[1]
    finally:
        torch.ops._C_sm7x.awq_clear_tuned()


def test_tiled_plans_at_32_rows_are_the_ones_timed_on_the_h200():
    # The run that set the tiled kernel's row range planned these; the model must still give them.
    result = json.loads((RESULTS / "awq_gemm-sm75-h200-2026-12-02-kernels.json").read_text())
    rows = [r for r in result["rows"] if r["M"] == 32]
    assert len(rows) == 2
    for row in rows:
        tp = int(row["case"].removeprefix("layer-27b-tp"))
        for name, K, N in LAYERS:
            K, N = shard(name, K, N, tp)
            assert plan_tiled_with_model(32, (K, N), 128, described(H200)) == row["plans"][name], (tp, name)


@pytest.mark.parametrize("gpu", [H200, V100, T4], ids=["H200", "V100", "T4"])
@pytest.mark.parametrize("tp", [1, 4])
@pytest.mark.parametrize("M", [17, 64, 128])
def test_tiled_plans_keep_at_least_two_k_tiles_per_split(gpu, tp, M):
    for name, K, N in LAYERS:
        K, N = shard(name, K, N, tp)
        chosen = plan_tiled_with_model(M, (K, N), 128, described(gpu))
        assert chosen["kernel"] == "tiled" and chosen["token_tiles"] == 4, (name, chosen)
        assert -(-K // 128) >= 2 * chosen["splits"], (name, M, chosen)
