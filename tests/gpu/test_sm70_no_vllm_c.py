"""On a V100 no vllm._C kernel exists (PyPI vLLM ships no sm_70 code), so in sm70 emulation a full
generate of an AWQ (or GPTQ) model must call none: every op and CUDA kernel it runs is listed by the torch
profiler and checked. Eager mode, so each op is visible (graph replays would hide them)."""
import json
import re
import subprocess
import sys

import pytest

from tests.gpu.engine_env import engine_env

pytestmark = pytest.mark.gpu

PROFILE = """
import json, sys
import torch
from vllm import LLM, SamplingParams
llm = LLM(model=sys.argv[1], skip_tokenizer_init=True, enforce_eager=True, gpu_memory_utilization=0.2,
          max_model_len=512, max_num_seqs=4, seed=0, **json.loads(sys.argv[2]))
prompts = [{"prompt_token_ids": list(range(3, 40))}, {"prompt_token_ids": [5, 9, 11]}]
params = SamplingParams(max_tokens=6, temperature=0.8, top_p=0.9, top_k=20, seed=1, detokenize=False,
                        repetition_penalty=1.1, presence_penalty=0.5, frequency_penalty=0.2)  # penalties: a _C kernel
with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                        torch.profiler.ProfilerActivity.CUDA]) as prof:
    llm.generate(prompts, params)
names = sorted({e.name for e in prof.events()})
print("RESULT " + json.dumps(names))
"""

# Ops registered by vLLM's compiled extensions, and the C++ namespace of their CUDA kernels.
VLLM_C_OP_PREFIXES = ("_C::", "_moe_C::", "_C_stable_libtorch::", "_moe_C_stable_libtorch::", "_C_cache_ops::",
                      "_C_custom_ar::")




def is_vllm_cuda_kernel(name: str) -> bool:
    """A kernel of vLLM's C++ namespace ('void vllm::rms_norm_kernel<...>(...)'). A bare 'vllm::op' is
    a Python-registered op (direct_register_custom_op): its kernels are profiled and checked separately."""
    return "vllm::" in name and not re.fullmatch(r"vllm::\w+", name)


# (preset, engine arguments, ops of ours the profile must show): dense; the MoE hybrid (text-only): its
# prefill takes the grouped expert GEMM, its 2-sequence decode steps the decode kernels; and the dense
# hybrid as the serving profile runs it, with MTP (drafting, verification, rejection sampling) and prefix
# caching in align mode (the state copies between steps).
# A GPTQ export of the dense model runs on the AWQ kernels (gptq_sm7x).
MODELS = {("qwen3-tiny", "awq"): ({}, ("_C_sm7x::awq_linear",)),
          ("qwen3-tiny", "gptq"): ({}, ("_C_sm7x::awq_linear",)),
          ("qwen36-35b-a3b-tiny", "awq"): ({"language_model_only": True},
                                           ("_C_sm7x::awq_moe_gemm", "_C_sm7x::awq_moe_decode_routed")),
          ("qwen35-tiny-mtp", "awq"): ({"language_model_only": True, "enable_prefix_caching": True,
                                        "mamba_cache_mode": "align",
                                        "speculative_config": {"method": "mtp", "num_speculative_tokens": 3}},
                                       ("_C_sm7x::gdn_chunk_prefill", "_C_sm7x::gdn_recurrent"))}


@pytest.mark.parametrize("preset, quantization", list(MODELS))
def test_sm70_generate_calls_no_vllm_c_kernel(preset, quantization, request):
    checkpoint = request.getfixturevalue(f"{quantization}_checkpoint")(preset)
    engine_args, our_ops = MODELS[preset, quantization]
    env = engine_env(VLLM_SM7X_EMULATE="sm70", VLLM_ENABLE_V1_MULTIPROCESSING="0")  # profile the model in-process
    result = subprocess.run([sys.executable, "-c", PROFILE, str(checkpoint), json.dumps(engine_args)],
                            capture_output=True, text=True, env=env, timeout=420)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    names = json.loads(line.removeprefix("RESULT "))
    for our_op in our_ops:
        assert any(name.startswith(our_op) for name in names), f"the profile did not see {our_op}"
    vllm_c = [name for name in names if name.startswith(VLLM_C_OP_PREFIXES) or is_vllm_cuda_kernel(name)]
    assert not vllm_c, f"vllm._C ops/kernels on the sm70 serving path: {vllm_c}"
