"""benchmarks/serve.py's choice of checkpoint and engine arguments, with and without MTP (no GPU)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import serve  # noqa: E402

from vllm_sm7x.checkpoints import MTP_RESIDUAL_SCALE, PRESETS  # noqa: E402


def test_without_mtp_each_preset_serves_itself():
    assert serve.served("qwen36-27b-width", 0, PRESETS) == ("qwen36-27b-width", {"language_model_only": True})
    assert serve.served("qwen3-27b-width", 0, PRESETS) == ("qwen3-27b-width", {})


def test_mtp_serves_the_checkpoint_with_a_head_and_counts_its_drafts():
    preset, engine_args = serve.served("qwen36-27b-width", 3, PRESETS)
    assert preset == "qwen36-27b-width-mtp" and preset in MTP_RESIDUAL_SCALE
    assert engine_args == {"language_model_only": True, "disable_log_stats": False,
                           "speculative_config": {"method": "mtp", "num_speculative_tokens": 3}}


def test_mtp_on_a_preset_without_a_head_names_those_with_one():
    with pytest.raises(SystemExit, match="qwen3-27b-width has no preset with an MTP head; these have: qwen35-tiny, "
                                         "qwen36-27b-width"):
        serve.served("qwen3-27b-width", 3, PRESETS)


def test_the_width_mtp_preset_is_the_width_model():
    """Same layers and widths as qwen36-27b-width (its tok/s compare with that preset's), one MTP layer."""
    assert PRESETS["qwen36-27b-width-mtp"] == PRESETS["qwen36-27b-width"]
    assert PRESETS["qwen36-27b-width-mtp"]["text_config"]["mtp_num_hidden_layers"] == 1
