"""tools/awq_plan_regret.py: the cost model's picks against the tuner's timed candidates, on the CPU."""
import sys
from pathlib import Path

import pytest

from vllm_sm7x import ops

ops.load_kernels()
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import awq_plan_regret  # noqa: E402
from tests.ut.described_gpus import H200, described  # noqa: E402
from vllm_sm7x.ops.awq import fused_registry, plan_with_model  # noqa: E402


def result_where_one_other_choice_is_faster(M=16, tp=1, faster_by=0.8):
    """Every layer's candidates: the model's own pick at 1.0 ms and one other choice at faster_by ms."""
    model = described(H200)
    candidates = {}
    for name, K, N in awq_plan_regret.LAYERS:
        K, N = awq_plan_regret.shard(name, K, N, tp)
        plan = plan_with_model(M, (K, N), 128, model)
        pick = [plan["warps"], plan["column_tiles"], plan["splits"]]
        other = [pick[0], pick[1], pick[2] + 1]
        candidates[name] = [[*pick, 1.0], [*other, faster_by]]
    row = {"case": f"layer-27b-tp{tp}", "M": M, "tuned": {"candidates": candidates}}
    return {"group_size": 128, "device_model": model, "registry": fused_registry(), "rows": [row]}


def test_the_models_picks_are_found_among_the_candidates_and_compared_with_the_best():
    entries = awq_plan_regret.regret(result_where_one_other_choice_is_faster())
    assert len(entries) == 4 and all(e["pick_ms"] == 1.0 and e["best_ms"] == 0.8 for e in entries)
    totals = awq_plan_regret.summary(entries)
    assert totals["per_row"] == {("layer-27b-tp1", 16): pytest.approx(1.25)}
    assert totals["geometric_mean"] == pytest.approx(1.25)


def test_a_pick_the_tuner_did_not_time_is_reported_not_guessed():
    result = result_where_one_other_choice_is_faster()
    candidates = result["rows"][0]["tuned"]["candidates"]
    candidates["qkv"] = candidates["qkv"][1:]  # the model's pick was not timed
    entries = awq_plan_regret.regret(result)
    assert [e["pick_ms"] for e in entries if e["layer"] == "qkv"] == [None]
    assert awq_plan_regret.summary(entries)["per_row"] == {}


def test_results_without_the_device_description_or_of_another_registry_are_refused():
    result = result_where_one_other_choice_is_faster()
    with pytest.raises(SystemExit, match="no device_model"):
        awq_plan_regret.regret({k: v for k, v in result.items() if k != "device_model"})
    with pytest.raises(SystemExit, match="registry differs"):
        awq_plan_regret.regret({**result, "registry": result["registry"][:-1]})
