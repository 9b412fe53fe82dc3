"""Fixtures the GPU tests share."""
import os
import time
from pathlib import Path

import pytest


def cached_checkpoint_folder(preset: str, quantization: str = "awq") -> Path:
    """Where SM7X_CHECKPOINT_CACHE (default /tmp/sm7x-checkpoints) keeps the preset's checkpoint in that
    format (group 128, seed 0)."""
    root = Path(os.environ.get("SM7X_CHECKPOINT_CACHE", "/tmp/sm7x-checkpoints"))
    return root / f"{preset}-{quantization}-g128-seed0"


def make_checkpoint_once(preset: str, folder: Path, quantization: str = "awq") -> Path:
    """The preset's checkpoint in that format ("awq", "gptq" or "fp16"; group 128, seed 0) in folder,
    made unless a complete one is there."""
    from vllm_sm7x.checkpoints import make_checkpoint

    done = folder / "sm7x-checkpoint-complete"  # written last: a killed run leaves no half folder in use
    if not done.exists():
        start = time.monotonic()
        make_checkpoint(preset, folder, group_size=128, seed=0,
                        quantization=None if quantization == "fp16" else quantization)
        done.touch()
        print(f"checkpoint {preset} ({quantization}): made in {time.monotonic() - start:.0f} s")
    return folder


def checkpoints_in(quantization: str, tmp_path_factory):
    """preset -> the folder of its checkpoint in that format (group 128, seed 0; vllm_sm7x.checkpoints),
    written once per test session however many test files serve it: generating one costs GPU time. With
    SM7X_CHECKPOINT_CACHE set, the folders live there and later pytest runs on the machine reuse them."""
    pytest.importorskip("vllm")
    made = {}

    def checkpoint(preset: str):
        if preset not in made:
            cached = os.environ.get("SM7X_CHECKPOINT_CACHE")
            folder = (cached_checkpoint_folder(preset, quantization) if cached
                      else tmp_path_factory.mktemp(f"{preset}-{quantization}"))
            made[preset] = make_checkpoint_once(preset, folder, quantization)
        return made[preset]

    return checkpoint


@pytest.fixture(scope="session")
def awq_checkpoint(tmp_path_factory):
    """preset -> its AWQ checkpoint's folder (checkpoints_in)."""
    return checkpoints_in("awq", tmp_path_factory)


@pytest.fixture(scope="session")
def gptq_checkpoint(tmp_path_factory):
    """preset -> its GPTQ checkpoint's folder (4-bit, symmetric, no act-order; checkpoints_in)."""
    return checkpoints_in("gptq", tmp_path_factory)


@pytest.fixture(scope="session")
def fp16_checkpoint(tmp_path_factory):
    """preset -> its fp16 checkpoint's folder (the same model unquantized; checkpoints_in)."""
    return checkpoints_in("fp16", tmp_path_factory)
