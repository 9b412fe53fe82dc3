"""On the lent GPU: with VLLM_SM7X_EMULATE vLLM's current_platform is ours and sees the emulated
capability; without it, on a newer GPU, vLLM's own platform is untouched."""
import subprocess
import sys

import pytest
import torch

from tests.gpu.engine_env import engine_env

pytestmark = pytest.mark.gpu

PROBE = """
from vllm.platforms import current_platform as p
from vllm.plugins import load_general_plugins
load_general_plugins()
import torch
print("RESULT", type(p).__module__ + "." + type(p).__qualname__, p.get_device_capability().to_int(),
      p.use_custom_allreduce(), hasattr(torch.ops._C_sm7x, "mma_gemm"))
"""


def probe(emulate: str | None) -> tuple[list[str], str]:
    env = engine_env()
    if emulate:
        env["VLLM_SM7X_EMULATE"] = emulate
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT"))
    return line.split()[1:], result.stdout + result.stderr


# vLLM's custom all-reduce stays on in both: PyPI's vLLM kernels have code for this GPU (on a V100 they
# need a vLLM built for sm_70, tests/ut/test_fatbin.py).
@pytest.mark.parametrize("emulate, capability", [("sm70", "70"), ("sm75", "75")])
def test_emulation_makes_our_platform_current(emulate, capability):
    pytest.importorskip("vllm")
    fields, log = probe(emulate)
    assert fields == ["vllm_sm7x.platform.Sm7xPlatform", capability, "True", "True"]
    assert log.count(f"emulating {emulate.upper()} on") == 1, log
    assert log.count("tensor-parallel all-reduce: vLLM's custom all-reduce") == 1, log


def test_stock_platform_without_emulation_on_newer_gpus():
    pytest.importorskip("vllm")
    if torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("this GPU is SM7x: the plugin is meant to activate here")
    fields, _ = probe(None)
    assert fields[0] != "vllm_sm7x.platform.Sm7xPlatform"
    assert fields[3] == "False"  # the general plugin registered nothing


BACKEND_PROBE = """
import torch
from vllm.platforms import current_platform as p
from vllm.plugins import load_general_plugins
from vllm.v1.attention.selector import AttentionSelectorConfig
load_general_plugins()
for head_size, kv_cache_dtype in ((256, "auto"), (128, "auto"), (96, "auto"), (128, "fp8")):
    config = AttentionSelectorConfig(head_size=head_size, dtype=torch.float16, kv_cache_dtype=kv_cache_dtype,
                                     block_size=None)
    print("RESULT", head_size, kv_cache_dtype, p.get_attn_backend_cls(None, config))
"""


@pytest.mark.parametrize("emulate", ["sm70", "sm75"])
def test_flash_attn_v100_is_the_default_attention_where_it_fits(emulate):
    pytest.importorskip("vllm")
    env = engine_env(VLLM_SM7X_EMULATE=emulate)
    result = subprocess.run([sys.executable, "-c", BACKEND_PROBE], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    picks = {tuple(line.split()[1:3]): line.split()[3] for line in result.stdout.splitlines()
             if line.startswith("RESULT")}
    ours = "vllm_sm7x.attention.backend.FlashAttnV100Backend"
    assert picks[("256", "auto")] == picks[("128", "auto")] == ours
    assert ours not in (picks[("96", "auto")], picks[("128", "fp8")])  # vLLM's own pick where ours cannot
