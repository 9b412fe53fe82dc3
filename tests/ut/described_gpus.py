"""GPUs described for the AWQ cost model (ops.awq.plan_with_model's input), so its plans can be checked
on the CPU: the H200 the benchmarks ran on, and the cards users run."""
from vllm_sm7x.ops.awq import fused_registry, tiled_registry

H200 = {"sms": 132, "bytes_per_us": 4.8e6, "sm_mhz": 1980.0}
# The cards users run (peak bandwidth, boost clock); their CTAs per SM are taken as the H200 build's
# (64K registers per SM on all three; none of those counts passes Turing's 1,024 threads per SM).
V100 = {"sms": 80, "bytes_per_us": 0.9e6, "sm_mhz": 1530.0}
T4 = {"sms": 40, "bytes_per_us": 0.32e6, "sm_mhz": 1590.0}
# Resident CTAs per SM of each registry entry (token_tiles, warps, column_tiles) on the H200's sm_90
# build: ptxas's registers per thread against 64K registers and 2,048 threads per SM.
H200_CTAS_PER_SM = {(1, 4, 1): 8, (1, 8, 1): 4, (2, 4, 1): 5, (2, 8, 1): 2, (1, 8, 2): 2, (2, 4, 2): 3}
# The tiled kernel's entries (token_tiles, warps): 110 registers x 256 threads on sm_75 (ptxas -v) and
# 16 KB of shared memory: two CTAs per SM on all of these cards.
TILED_CTAS_PER_SM = {(4, 8): 2}


def registry_entries() -> list[tuple[int, int, int]]:
    return [(e["token_tiles"], e["warps"], e["column_tiles"]) for e in fused_registry()]


def described(gpu: dict) -> dict:
    """gpu with the CTAs per SM of each registry entry (fused, then tiled), in the registries' order."""
    return {**gpu, "ctas_per_sm": [H200_CTAS_PER_SM[entry] for entry in registry_entries()],
            "tiled_ctas_per_sm": [TILED_CTAS_PER_SM[e["token_tiles"], e["warps"]] for e in tiled_registry()]}
