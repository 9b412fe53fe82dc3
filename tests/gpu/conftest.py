"""Fixtures the GPU tests share."""
import os
import time
from pathlib import Path

import pytest


def cached_checkpoint_folder(preset: str) -> Path:
    """Where SM7X_CHECKPOINT_CACHE (default /tmp/sm7x-checkpoints) keeps the preset's AWQ checkpoint
    (group 128, seed 0)."""
    return Path(os.environ.get("SM7X_CHECKPOINT_CACHE", "/tmp/sm7x-checkpoints")) / f"{preset}-awq-g128-seed0"


def make_checkpoint_once(preset: str, folder: Path) -> Path:
    """The preset's AWQ checkpoint (group 128, seed 0) in folder, made unless a complete one is there."""
    from vllm_sm7x.checkpoints import make_checkpoint

    done = folder / "sm7x-checkpoint-complete"  # written last: a killed run leaves no half folder in use
    if not done.exists():
        start = time.monotonic()
        make_checkpoint(preset, folder, group_size=128, seed=0)
        done.touch()
        print(f"checkpoint {preset}: made in {time.monotonic() - start:.0f} s")
    return folder


@pytest.fixture(scope="session")
def awq_checkpoint(tmp_path_factory):
    """preset -> the folder of its AWQ checkpoint (group 128, seed 0; vllm_sm7x.checkpoints), written once
    per test session however many test files serve it: generating one costs GPU time. With
    SM7X_CHECKPOINT_CACHE set, the folders live there and later pytest runs on the machine reuse them."""
    pytest.importorskip("vllm")
    made = {}

    def checkpoint(preset: str):
        if preset not in made:
            cached = os.environ.get("SM7X_CHECKPOINT_CACHE")
            folder = cached_checkpoint_folder(preset) if cached else tmp_path_factory.mktemp(f"{preset}-awq")
            made[preset] = make_checkpoint_once(preset, folder)
        return made[preset]

    return checkpoint
