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


def test_hybrids_also_run_with_fla_gdn_kernels_and_with_fla_prefill():
    """Our path and stock first (a run cut short keeps that comparison), then the hybrid-only rows:
    ours with vLLM's FLA kernels for all of GDN, and ours with FLA's for GDN prefill only. Stock runs
    none of our GDN kernels."""
    awq, fp16 = Path("awq"), Path("fp16")
    rows = list(serve.configurations("sm75", awq, fp16, ["default"], hybrid=True))
    assert [name for name, *_ in rows] == ["ours-default", "stock-awq-triton_attn", "ours-default-fla_gdn",
                                           "ours-default-fla_gdn_prefill"]
    fla_prefill = {"VLLM_SM7X_GDN_PREFILL": "0", "VLLM_SM7X_GDN_CONV_PREFILL": "0"}  # chunk and conv1d
    fla_gdn = {"VLLM_SM7X_GDN_DECODE": "0", **fla_prefill}
    assert rows[1][2] == {"VLLM_SM7X_EMULATE": "sm75", "VLLM_SM7X_STOCK_AWQ": "1", **fla_gdn}
    assert rows[2][2] == {"VLLM_SM7X_EMULATE": "sm75", **fla_gdn}
    assert rows[3][2] == {"VLLM_SM7X_EMULATE": "sm75", **fla_prefill}
    dense = [name for name, *_ in serve.configurations("sm70", awq, fp16, ["default"], hybrid=False)]
    assert dense == ["ours-default", "stock-fp16-triton_attn"]


def test_the_pair_decode_kernel_is_served_on_the_sm75_path_only():
    awq, fp16 = Path("awq"), Path("fp16")
    names = {path: [name for name, *_ in serve.configurations(path, awq, fp16, ["default"], hybrid=False,
                                                               decode_kernels=["mma8", "pairs"])]
             for path in ("sm70", "sm75")}
    assert "ours-default-decode_pairs" in names["sm75"] and "ours-default-decode_mma8" in names["sm70"]
    assert "ours-default-decode_pairs" not in names["sm70"]


def test_decode_kernels_add_ours_with_that_kernel_forced():
    """`--decode-kernels simt mma8`: ours again per kernel, right after ours (so --rounds interleaves them
    with it), each setting flash-attn's switch; without the option nothing changes."""
    awq, fp16 = Path("awq"), Path("fp16")
    rows = list(serve.configurations("sm75", awq, fp16, ["default"], hybrid=False, decode_kernels=["simt", "mma8"]))
    assert [name for name, *_ in rows] == ["ours-default", "ours-default-decode_simt", "ours-default-decode_mma8",
                                           "stock-awq-triton_attn"]
    assert rows[1][2] == {"VLLM_SM7X_EMULATE": "sm75", "FLASH_ATTN_V100_DECODE": "simt"}
    assert rows[1][3] == "default"
    plain = [name for name, *_ in serve.configurations("sm75", awq, fp16, ["default"], hybrid=False)]
    assert plain == ["ours-default", "stock-awq-triton_attn"]


def test_rounds_interleave_the_chosen_configurations():
    configs = [("a", "ckpt", {}, "default"), ("b", "ckpt", {}, "default"), ("c", "ckpt", {}, "default")]
    runs = serve.interleaved_runs(iter(configs), 2, ["c", "a"])
    assert [(round_, name) for round_, name, *_ in runs] == [(1, "a"), (1, "c"), (2, "a"), (2, "c")]
    assert [name for _, name, *_ in serve.interleaved_runs(configs, 1)] == ["a", "b", "c"]


# A stand-in for the two things of vllm.LLM that serve.py's measuring script leans on beyond generate():
# vLLM 0.26's get_metrics() asserts "Stat logging disabled" unless the engine keeps stats
# (disable_log_stats=False; LLM's default is True), and the MTP counters are Counter metrics.
FAKE_VLLM = '''
import time
import types

class SamplingParams:
    def __init__(self, **kwargs):
        self.max_tokens = kwargs["max_tokens"]

class LLM:
    def __init__(self, model, disable_log_stats=True, speculative_config=None, **kwargs):
        self.log_stats, self.speculative = not disable_log_stats, speculative_config
        config = types.SimpleNamespace(model_config=types.SimpleNamespace(quantization="awq_sm7x"))
        self.llm_engine = types.SimpleNamespace(vllm_config=config)

    def generate(self, prompts, params, use_tqdm=True):
        time.sleep(1e-4 * params.max_tokens)  # a 129-token run takes longer than its 1-token prompt run
        return []

    def get_metrics(self):
        assert self.log_stats, "Stat logging disabled"
        counter = lambda name, value: types.SimpleNamespace(name=name, value=value)
        return [counter("vllm:spec_decode_num_draft_tokens_total", 30),
                counter("vllm:spec_decode_num_accepted_tokens_total", 6)]
'''


@pytest.mark.parametrize("mtp", [0, 3])
def test_the_measuring_script_reports_rows_with_and_without_mtp(tmp_path, mtp):
    """The script end to end against a stand-in engine (no GPU): it must not read the draft counters of an
    engine without stats (the H200 run of 2026-12-01 lost every row of a run without MTP to that)."""
    import json
    import subprocess

    (tmp_path / "vllm").mkdir()
    (tmp_path / "vllm" / "__init__.py").write_text(FAKE_VLLM)
    _, engine_args = serve.served("qwen36-27b-width", mtp, PRESETS)
    result = subprocess.run([sys.executable, "-c", serve.MEASURE, "/model", "default", "1024", json.dumps(engine_args),
                             "measure", "4096"], capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path)},
                            timeout=60)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    reported = json.loads(line.removeprefix("RESULT "))
    assert [(r["phase"], r["context"], r["batch"]) for r in reported["rows"]] == [
        ("decode", 128, 1), ("decode", 128, 4), ("decode", 4096, 1), ("prefill", 1024, 1)]
    assert reported["mtp_acceptance"] == (0.2 if mtp else None)


@pytest.mark.parametrize("mode, unit, contexts", [("decode", "token", [128, 4096]),
                                                  ("prefill", "8K-token prompt", [8192])])
def test_the_profiling_script_reports_per_token_or_per_prompt(tmp_path, mode, unit, contexts):
    """--profile [decode|prefill] against the stand-in engine (no GPU, so no kernels to list): decode is
    profiled after 128 tokens and after each --decode-contexts prompt, the prompt's own run taken out."""
    import json
    import subprocess

    (tmp_path / "vllm").mkdir()
    (tmp_path / "vllm" / "__init__.py").write_text(FAKE_VLLM)
    result = subprocess.run([sys.executable, "-c", serve.MEASURE, "/model", "default", "1024,8192", "{}",
                             f"profile-{mode}", "4096"], capture_output=True, text=True,
                            env={"PYTHONPATH": str(tmp_path)}, timeout=120)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    reported = json.loads(line.removeprefix("RESULT "))
    assert reported["unit"] == unit
    assert [p["context"] for p in reported["profiles"]] == contexts
    for p in reported["profiles"]:
        assert p["gpu_us"] == 0 and p["top_kernels"] == [] and p["wall_ms"] > 0


def test_a_profile_prints_each_context_and_its_top_kernels(capsys):
    result = {"unit": "token", "profiles": [
        {"context": 128, "wall_ms": 2.5, "gpu_us": 1200.0, "kernels": 90.0, "graph_launches": 1.0,
         "top_kernels": [{"kernel": "awq_fused", "calls": 32.0, "us": 600.0}]},
        {"context": 65536, "wall_ms": 2.7, "gpu_us": 1400.0, "kernels": 92.0, "graph_launches": 1.0,
         "top_kernels": [{"kernel": "decode_mma8", "calls": 2.0, "us": 200.0}]}]}
    serve.print_profile("8L ours-default, sm75 path", result)
    out = capsys.readouterr().out
    assert "8L ours-default, sm75 path, context 128: per token: 2.5 ms wall, 1200.0 us of GPU time" in out
    assert "context 65536" in out and "decode_mma8" in out and "awq_fused" in out
    serve.print_profile("stock", {"error": "engine failed"})
    assert "stock: engine failed" in capsys.readouterr().out


def test_each_configuration_sets_our_switches_itself(monkeypatch, tmp_path):
    """A switch set in the caller's shell (ours, or flash-attn's decode kernel) must not leak into every
    configuration: only what the configuration names reaches its engine."""
    import subprocess
    import types

    seen = {}

    def fake_run(cmd, env, **kwargs):
        seen.update(env)
        return types.SimpleNamespace(returncode=1, stdout="", stderr="stand-in")

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setenv("FLASH_ATTN_V100_DECODE", "simt")
    monkeypatch.setenv("VLLM_SM7X_GDN_DECODE", "0")
    serve.measure(Path("model"), {"VLLM_SM7X_EMULATE": "sm75", "FLASH_ATTN_V100_DECODE": "mma8"}, "default",
                  (1024,), tmp_path / "log", {})
    assert seen["FLASH_ATTN_V100_DECODE"] == "mma8" and seen["VLLM_SM7X_EMULATE"] == "sm75"
    assert "VLLM_SM7X_GDN_DECODE" not in seen
    seen.clear()
    serve.measure(Path("model"), {"VLLM_SM7X_EMULATE": "sm75"}, "default", (1024,), tmp_path / "log", {})
    assert "FLASH_ATTN_V100_DECODE" not in seen
