"""Fixtures of the flash-attn-v100 GPU tests."""
import os

import pytest
import torch


@pytest.fixture(autouse=True)
def sm7x_path_on_newer_gpus(monkeypatch):
    """Prefill runs on an SM7x tensor-core path; on a newer GPU the emulation switch picks it."""
    if torch.cuda.get_device_capability() >= (8, 0) and not os.environ.get("VLLM_SM7X_EMULATE"):
        monkeypatch.setenv("VLLM_SM7X_EMULATE", "sm75")


@pytest.fixture(scope="module")
def fa():
    import flash_attn_v100

    return flash_attn_v100
