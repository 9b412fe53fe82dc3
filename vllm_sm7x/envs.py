"""Environment variables of vllm-sm7x: the one table (docs/environment.md is generated from it)."""
from __future__ import annotations

import os
from typing import Any, Callable

_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _switch(name: str, default: str) -> bool:
    """An on/off variable: 1/true/yes/on or 0/false/no/off; anything else is named as an error rather
    than read as off."""
    value = os.environ.get(name, default).strip().lower() or default
    if value not in _ON + _OFF:
        raise ValueError(f"{name}={value!r} is not understood: set it to 1 (on) or 0 (off), or unset it")
    return value in _ON


environment_variables: dict[str, tuple[Callable[[], Any], str]] = {
    "VLLM_SM7X_EMULATE": (
        lambda: os.environ.get("VLLM_SM7X_EMULATE", "").strip().lower() or None,
        "Make the plugin behave as on a V100 (`sm70`) or a Turing GPU (`sm75`) on any newer NVIDIA GPU: the "
        "platform activates, vLLM sees that compute capability, and kernels take that arch path. Used by every "
        "GPU end-to-end test and benchmark; never needed on a real V100/T4.",
    ),
    "VLLM_SM7X_DISABLE": (
        lambda: _switch("VLLM_SM7X_DISABLE", "0"),
        "Set to 1 to keep the plugin off even on SM70/SM75 GPUs (stock vLLM behaviour).",
    ),
    "VLLM_SM7X_STOCK_AWQ": (
        lambda: _switch("VLLM_SM7X_STOCK_AWQ", "0"),
        "Set to 1 to leave AWQ checkpoints to vLLM's own AWQ kernels while the platform stays active (for "
        "comparisons: what stock vLLM does on a Turing card). Refused on the SM70 path, where stock vLLM has no "
        "AWQ kernels.",
    ),
    "VLLM_SM7X_AWQ_TUNING": (
        lambda: os.environ.get("VLLM_SM7X_AWQ_TUNING", "").strip() or None,
        "Path of a JSON file of measured AWQ GEMM choices (tile entry and k splits per weight shape and batch "
        "bucket, per GPU model). When set, weight shapes missing from the file are timed once at load (a few "
        "seconds per shape) and written back; later starts reuse them. Unset: the built-in cost model decides.",
    ),
    "VLLM_SM7X_GDN_DECODE": (
        lambda: _switch("VLLM_SM7X_GDN_DECODE", "1"),
        "Qwen3.5/3.6 Gated DeltaNet decode steps (one token per sequence, and MTP verification batches) run on "
        "our CUDA kernels (default `1`; batches with prefill tokens keep vLLM's Triton ones). `0`: vLLM's Triton "
        "kernels for decode too. Default since 2026-12-01: the hybrid checkpoint matched stock vLLM end to end "
        "on both paths with it, and MTP accepted as many drafts as with vLLM's kernels (H200).",
    ),
    "VLLM_SM7X_GDN_PREFILL": (
        lambda: _switch("VLLM_SM7X_GDN_PREFILL", "1"),
        "Qwen3.5/3.6 Gated DeltaNet prefill's chunked delta rule (chunk_gated_delta_rule) runs on our CUDA kernel "
        "(default `1`) for fp16 layers with head_k_dim 64 or 128; other layers keep vLLM's Triton one. `0`: "
        "vLLM's Triton kernels. Default since 2026-12-02: the hybrid checkpoint matched stock vLLM end to end on "
        "both paths with it, and the kernel took 0.5-0.6x the time of vLLM's chain compiled for sm_75 at 1K-8K "
        "tokens (H200).",
    ),
    "VLLM_SM7X_GDN_CONV_PREFILL": (
        lambda: _switch("VLLM_SM7X_GDN_CONV_PREFILL", "0"),
        "Set to 1 to run the causal conv1d of Qwen3.5/3.6 Gated DeltaNet prefill on our CUDA kernel instead of "
        "vLLM's Triton causal_conv1d_fn. Stays opt-in: it passes its kernel tests (float64, vLLM's kernel, strided "
        "cache indices) and the hybrid checkpoint with MTP end to end on both paths, but takes 1.9-2.6x the time "
        "of vLLM's kernel, which has no matrix product and so runs as fast built for sm_75 as for Hopper "
        "(H200, 2026-12-02).",
    ),
    "VLLM_SM7X_MOE_ROUTER_IN_KERNEL": (
        lambda: _switch("VLLM_SM7X_MOE_ROUTER_IN_KERNEL", "1"),
        "AWQ MoE layers with a plain softmax top-k router (Qwen3.5/3.6 MoE) take vLLM's router logits and route "
        "inside our expert kernels (default `1`): at decode (up to 4 tokens) the first expert kernel picks the "
        "experts itself, one launch fewer per layer than vLLM's routing kernel before it. `0`: vLLM's router "
        "picks the experts first (with expert parallel, data parallel or `--enable-return-routed-experts` it "
        "always does).",
    ),
    "VLLM_SM7X_PROFILE": (
        lambda: os.environ.get("VLLM_SM7X_PROFILE", "auto").strip().lower(),
        "The serving profile: at engine start-up, fill the settings the user did not give (context length, "
        "max_num_seqs, max_num_batched_tokens, MTP, prefix caching, KV pool, gpu_memory_utilization, text-only "
        "mode) from the model, the GPUs and the TP size, and log them as one table (`vllm-sm7x doctor MODEL` "
        "shows the same table without starting). `auto` (default): for Qwen3.5/3.6 checkpoints, the models the "
        "profile's rules were written for, given as a folder or as a Hugging Face id already in the local cache "
        "(one not yet downloaded is not profiled on the start that downloads it); `on`: for any model it can "
        "read; `off`: vLLM's defaults. Flags you pass are kept and checked: a `--gpu-memory-utilization` bounds "
        "the plan and vLLM sizes the KV pool from it (the profile then sets no pool size); a "
        "`--kv-cache-memory-bytes` is the pool the context must fit; `--speculative-config` with MTP on a "
        "checkpoint whose files carry no `mtp.*` weights is refused at start-up.",
    ),
}


def __getattr__(name: str) -> Any:
    if name in environment_variables:
        return environment_variables[name][0]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return list(environment_variables)


def register_with_vllm() -> None:
    """Make our variables, and the forks' ones we answer at start-up (legacy_env), known to vLLM's table:
    it warns about every VLLM_* variable it does not know (and refuses to start with
    --fail-on-environ-validation). Known there, they also join the factors vLLM hashes into its
    torch.compile cache key. vLLM reads every getter of its table when it caches them (unguarded, in
    the engine core and workers): ours there return the raw string and never raise, where our own
    getters refuse a bad value (a plugin that is off must not stop vLLM over its variables). Idempotent."""
    import vllm.envs as vllm_envs

    from vllm_sm7x.legacy_env import LEGACY_VARIABLES

    for name in [*environment_variables, *LEGACY_VARIABLES]:
        vllm_envs.environment_variables.setdefault(name, lambda name=name: os.environ.get(name))
