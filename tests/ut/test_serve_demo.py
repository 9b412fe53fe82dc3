"""`vllm-sm7x serve-demo`: which path it picks per GPU, what it tells users without a usable GPU,
the server command it starts, and that the checkpoint is built once."""
import pytest

from vllm_sm7x.activation import Gpu
from vllm_sm7x.entrypoints import cli, demo

V100, T4, H100 = Gpu(0, "Tesla V100-SXM2-32GB", (7, 0)), Gpu(0, "Tesla T4", (7, 5)), Gpu(0, "NVIDIA H100", (9, 0))


def test_native_path_on_volta_and_turing_emulation_elsewhere():
    assert demo.choose_emulation([V100], None) == (None, "native SM70 path on Tesla V100-SXM2-32GB")
    assert demo.choose_emulation([T4], None)[0] is None
    assert demo.choose_emulation([H100], None)[0] == "sm75"
    assert demo.choose_emulation([H100], "sm70")[0] == "sm70"


def test_no_gpu_and_too_old_gpus_are_explained():
    with pytest.raises(SystemExit, match="needs an NVIDIA GPU.*nvidia-smi"):
        demo.choose_emulation([], None)
    with pytest.raises(SystemExit, match="P100.*older than Volta"):
        demo.choose_emulation([Gpu(0, "Tesla P100", (6, 0))], None)


def test_dry_run_prints_the_server_command_and_the_curl(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(demo, "visible_gpus", lambda: [H100])
    assert cli.main(["serve-demo", "--dry-run", "--cache", str(tmp_path), "--port", "8123", "--",
                     "--max-num-seqs", "2"]) == 0
    out = capsys.readouterr().out
    assert "VLLM_SM7X_EMULATE=sm75 " in out and "-m vllm.entrypoints.openai.api_server" in out
    assert f"--model {tmp_path / demo.served_name('qwen3-tiny')}" in out and out.rstrip().count("--max-num-seqs 2") == 1
    assert "curl http://localhost:8123/v1/chat/completions" in out
    assert not (tmp_path / demo.served_name('qwen3-tiny')).exists()  # a dry run builds nothing


def test_checkpoint_is_built_once(tmp_path, monkeypatch):
    folder = demo.ensure_checkpoint(tmp_path)
    assert (folder / "config.json").exists() and (folder / "tokenizer.json").exists()
    monkeypatch.setattr("vllm_sm7x.checkpoints.make_checkpoint", lambda *a, **k: pytest.fail("rebuilt"))
    assert demo.ensure_checkpoint(tmp_path) == folder


@pytest.mark.parametrize("preset", ["qwen35-tiny", "qwen36-35b-a3b-tiny"])
def test_hybrid_presets_are_served_text_only_under_their_own_name(monkeypatch, capsys, tmp_path, preset):
    monkeypatch.setattr(demo, "visible_gpus", lambda: [T4])
    assert cli.main(["serve-demo", "--dry-run", "--preset", preset, "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"--model {tmp_path / (preset + '-awq')}" in out and f"--served-model-name {preset}-awq" in out
    assert "--language-model-only" in out and f'"model": "{preset}-awq"' in out
    assert "VLLM_SM7X_EMULATE" not in out  # a T4 runs its own path
