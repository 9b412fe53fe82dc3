"""Benchmark result files (benchmarks/run_info.py): DESIGN.md section 8's fields and file name."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from run_info import FIGURES, write_result  # noqa: E402

INFO = {"gpu": "NVIDIA H200", "date": "2026-11-30", "commit": "abc1234", "command": "benchmarks/x.py --quick",
        "gpu_tag": "h200"}


def test_result_file_carries_the_run_and_the_rows(tmp_path):
    rows = [{"case": "27b-tp4 decode", "ms": 0.01}]
    target = write_result(tmp_path / "out", INFO, "gdn_decode", "sm75", rows, {"x": "y"}, "-tp4",
                          copy_bandwidth_gbs=2680.0)
    assert target.name == "gdn_decode-sm75-h200-2026-11-30-tp4.json"
    result = json.loads(target.read_text())
    assert list(result) == ["benchmark", "gpu", "emulate", "date", "commit", "command", "host", "copy_bandwidth_gbs",
                            "rows", "notes"]
    assert result["host"]["cpus"] >= 1 and len(result["host"]["load_average_1_5_15_min"]) == 3
    assert result["emulate"] == "sm75" and result["rows"] == rows and result["commit"] == "abc1234"
    assert result["notes"] == {"figures": FIGURES, "x": "y"}


def test_a_benchmark_may_word_its_figures_note(tmp_path):
    target = write_result(tmp_path, INFO, "moe", "sm70", [], {"figures": "paths, not V100/T4 figures"})
    assert json.loads(target.read_text())["notes"] == {"figures": "paths, not V100/T4 figures"}


def test_a_paths_rows_keep_every_baseline_but_the_other_cards_builds():
    from run_info import baselines_for_path

    baselines = {"triton_native": 1.0, "triton_faithful_sm70": 2.0, "triton_faithful_sm75": 3.0, "ours_grouped": 4.0}
    assert baselines_for_path(baselines, "sm70") == {"triton_native": 1.0, "triton_faithful_sm70": 2.0,
                                                     "ours_grouped": 4.0}
    assert baselines_for_path(baselines, "sm75") == {"triton_native": 1.0, "triton_faithful_sm75": 3.0,
                                                     "ours_grouped": 4.0}


def test_a_failed_baseline_is_noted_by_type_and_first_line():
    from run_info import error_note

    assert error_note(RuntimeError("out of shared memory\ntraceback...")) == "RuntimeError: out of shared memory"
