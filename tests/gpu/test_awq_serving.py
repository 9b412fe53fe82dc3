"""vLLM serves an AWQ checkpoint in SM70/SM75 emulation through the awq_sm7x config and our
kernels, with no --quantization flag and with --quantization awq, eager and compiled with CUDA graphs
(the default users get)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gpu.engine_env import engine_env

pytestmark = pytest.mark.gpu

GENERATE = """
import json, sys
from vllm import LLM, SamplingParams
quantization = sys.argv[2] if sys.argv[2] != "none" else None
llm = LLM(model=sys.argv[1], quantization=quantization, skip_tokenizer_init=True, enforce_eager=sys.argv[3] == "eager",
          gpu_memory_utilization=0.2, max_model_len=512, max_num_seqs=4, dtype="float16", seed=0)
engine = llm.llm_engine
model_config = getattr(engine, "model_config", None) or engine.vllm_config.model_config
prompts = [{"prompt_token_ids": [1, 17, 42, 99, 7]}, {"prompt_token_ids": list(range(3, 80))}]
outputs = llm.generate(prompts, SamplingParams(max_tokens=8, temperature=0.0, detokenize=False, logprobs=1))
print("RESULT " + json.dumps({"quantization": model_config.quantization,
                              "tokens": [list(o.outputs[0].token_ids) for o in outputs]}))
"""


@pytest.fixture(scope="module")
def checkpoint(awq_checkpoint):
    return awq_checkpoint("qwen3-tiny")


def generate(checkpoint: Path, emulate: str, quantization: str | None, mode: str) -> dict:
    env = engine_env(VLLM_SM7X_EMULATE=emulate)
    result = subprocess.run([sys.executable, "-c", GENERATE, str(checkpoint), quantization or "none", mode],
                            capture_output=True, text=True, env=env, timeout=420)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


@pytest.mark.parametrize("emulate, quantization, mode", [("sm75", None, "eager"), ("sm70", "awq", "eager"),
                                                        ("sm75", None, "compiled")])
def test_awq_checkpoint_is_served_by_our_kernels(checkpoint, emulate, quantization, mode):
    result = generate(checkpoint, emulate, quantization, mode)
    assert result["quantization"] == "awq_sm7x"
    assert [len(tokens) for tokens in result["tokens"]] == [8, 8]
    assert all(0 <= t < 512 for tokens in result["tokens"] for t in tokens)
