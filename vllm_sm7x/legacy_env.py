"""Environment variables of the SM70/SM75 vLLM forks our users come from (1Cat-vLLM: see
docs/migrating.md). Their launch scripts carry them over; each gets a one-line answer at start-up
(and in `vllm-sm7x doctor`) instead of being silently ignored."""
from __future__ import annotations

from collections.abc import Mapping

# name -> what vllm-sm7x does in its place
LEGACY_VARIABLES = {
    "VLLM_SM70_ENABLE_DENSE_F16_FASTPATH": (
        "1Cat-vLLM's experimental fp16 dense GEMM path; here unquantized (fp16) linear layers always run "
        "on cuBLAS, which uses the tensor cores of SM70/SM75, so there is nothing to turn on"),
    "VLLM_FLASH_V100_ENABLE_PAGED_PREFILL": (
        "1Cat-vLLM's paged-prefill switch; here FLASH_ATTN_V100 always prefills from the paged KV cache, "
        "cached prefixes included, so there is nothing to turn on"),
}


def legacy_notes(environ: Mapping[str, str]) -> list[str]:
    """One sentence per legacy variable set in `environ`."""
    return [f"{name} is set but not read by vllm-sm7x: {meaning}." for name, meaning in LEGACY_VARIABLES.items()
            if name in environ]
