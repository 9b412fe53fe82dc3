"""Fixtures the GPU tests share."""
import pytest


@pytest.fixture(scope="session")
def awq_checkpoint(tmp_path_factory):
    """preset -> the folder of its AWQ checkpoint (group 128, seed 0; vllm_sm7x.checkpoints), written once
    per test session however many test files serve it: generating one costs GPU time."""
    pytest.importorskip("vllm")
    from vllm_sm7x.checkpoints import make_checkpoint

    made = {}

    def checkpoint(preset: str):
        if preset not in made:
            made[preset] = make_checkpoint(preset, tmp_path_factory.mktemp(f"{preset}-awq"), group_size=128, seed=0)
        return made[preset]

    return checkpoint
