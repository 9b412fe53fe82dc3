"""The faithful GDN decode baseline on the CPU: vLLM's causal_conv1d_update and packed recurrent decode,
called as the GDN layer calls them, with their kernels compiled for sm_70/sm_75 (benchmarks/gdn.py runs
those builds on the H100). Compile-to-PTX needs no GPU."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed")
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def gdn_benchmark():
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("gdn_benchmark", BENCHMARKS / "gdn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("arch", [70, 75])
def test_vllms_gdn_decode_kernels_compile_for_the_emulated_card(gdn_benchmark, arch):
    from triton_faithful import MMA_PTX, EmulatedKernel, swapped, with_real_triton
    from vllm.model_executor.layers.mamba.ops import causal_conv1d
    from vllm.third_party.flash_linear_attention.ops import fused_recurrent

    conv = with_real_triton(causal_conv1d, "_causal_conv1d_update_kernel")
    recurrent = with_real_triton(fused_recurrent, "fused_recurrent_gated_delta_rule_packed_decode_kernel")
    conv_kernel = EmulatedKernel(conv._causal_conv1d_update_kernel, arch, None)
    recurrent_kernel = EmulatedKernel(recurrent.fused_recurrent_gated_delta_rule_packed_decode_kernel, arch, None)
    v_heads, dim = 12, 2 * 4 * 128 + 12 * 128  # Qwen3.6-27B at TP4: 4 k-heads, 12 v-heads
    qkv = torch.zeros(2, dim, dtype=torch.float16)
    indices = torch.tensor([1, 2], dtype=torch.int32)
    with swapped(conv, _causal_conv1d_update_kernel=conv_kernel), \
            swapped(recurrent, fused_recurrent_gated_delta_rule_packed_decode_kernel=recurrent_kernel):
        x = conv.causal_conv1d_update(qkv, torch.zeros(3, 3, dim, dtype=torch.float16).transpose(-1, -2),
                                      torch.zeros(dim, 4, dtype=torch.float16), None, "silu",
                                      conv_state_indices=indices, validate_data=False)
        recurrent.fused_recurrent_gated_delta_rule_packed_decode(
            mixed_qkv=x, a=torch.zeros(2, v_heads, dtype=torch.float16), b=torch.zeros(2, v_heads, dtype=torch.float16),
            A_log=torch.zeros(v_heads), dt_bias=torch.zeros(v_heads, dtype=torch.float16), scale=128 ** -0.5,
            initial_state=torch.zeros(3, v_heads, 128, 128), out=torch.zeros(2, 1, v_heads, 128, dtype=torch.float16),
            ssm_state_indices=indices, use_qk_l2norm_in_kernel=True)
    compiled = [*conv_kernel.kernels.values(), *recurrent_kernel.kernels.values()]
    assert len(compiled) == 2
    for kernel in compiled:
        assert f".target sm_{arch}" in kernel.asm["ptx"] and not MMA_PTX.search(kernel.asm["ptx"])


# Turing gives a CTA at most 64 KB of shared memory (Volta 96 KB); a Triton config over that fails to
# launch there, and Triton builds other GPUs' GDN kernels past it (lmdeploy's issue 4385 on a 2080 Ti).
TURING_SHARED_MEMORY = 64 << 10


class EveryConfig:
    """Stands in for an autotuned kernel: each launch compiles its configs for `arch` (one of those that
    differ only in pipeline depth, which build the same kernel below sm_80: distinct_configs) and records
    (config, shared memory bytes) under the kernel's name."""

    def __init__(self, kernel, arch: int, found: dict):
        from triton_faithful import distinct_configs, unwrap_tuned

        kernel, configs, self.heuristics, _ = unwrap_tuned(kernel)
        self.configs = distinct_configs(configs, arch)
        self.fn, self.arch, self.found = kernel, arch, found

    def __getitem__(self, grid):
        from triton_faithful import EmulatedKernel, bound_arguments, config_options

        def launch(*args, **kwargs):
            emulated = EmulatedKernel(self.fn, self.arch, None)
            bound = bound_arguments(self.fn, self.heuristics, args, kwargs)
            for config in self.configs:
                compiled, _ = emulated.compile(**{**bound, **config_options(config)})
                self.found.setdefault(self.fn.__name__, []).append((str(config), compiled.metadata.shared))
        return launch


@pytest.mark.parametrize("arch", [75])
def test_vllms_gdn_chunked_prefill_fits_turing_shared_memory(gdn_benchmark, arch):
    """vLLM 0.26's FLA chunked prefill (the path our platform keeps for GDN prefill) compiled for the
    emulated card: no tensor-core instruction (EmulatedKernel checks), and the autotune configs of every
    kernel within Turing's 64 KB of shared memory at Qwen3.5/3.6's head dims (128), so a T4 or 2080 Ti
    can prefill on it (32 KB at most, seen 2026-11-30)."""
    from triton_faithful import triton_kernels_reachable_from, with_real_triton
    from vllm.third_party.flash_linear_attention.ops import chunk as chunk_module
    from vllm.third_party.flash_linear_attention.ops.index import prepare_chunk_indices, prepare_chunk_offsets

    chunk = with_real_triton(chunk_module, "chunk_gated_delta_rule_fwd")
    found = {}
    for namespace, name, kernel in list(triton_kernels_reachable_from(vars(chunk))):
        namespace[name] = EveryConfig(kernel, arch, found)
    tokens, k_heads, v_heads, dim = 300, 4, 12, 128  # Qwen3.6-27B at TP4; two sequences, a partial chunk
    cu_seqlens = torch.tensor([0, 100, tokens], dtype=torch.int32)
    chunk.chunk_gated_delta_rule_fwd(
        torch.zeros(1, tokens, k_heads, dim, dtype=torch.float16), torch.zeros(1, tokens, k_heads, dim,
                                                                               dtype=torch.float16),
        torch.zeros(1, tokens, v_heads, dim, dtype=torch.float16), torch.zeros(1, tokens, v_heads),
        torch.zeros(1, tokens, v_heads, dtype=torch.float16), dim ** -0.5, torch.zeros(2, v_heads, dim, dim), True,
        cu_seqlens=cu_seqlens, chunk_indices=prepare_chunk_indices(cu_seqlens, 64),
        chunk_offsets=prepare_chunk_offsets(cu_seqlens, 64))
    assert {"chunk_scaled_dot_kkt_fwd_kernel", "recompute_w_u_fwd_kernel", "chunk_fwd_kernel_o"} <= set(found), found
    over = {name: [(config, shared) for config, shared in configs if shared > TURING_SHARED_MEMORY]
            for name, configs in found.items()}
    assert not any(over.values()), f"configs over Turing's 64 KB: {over}"


def first_launch(module, kernel_name: str, call) -> tuple:
    """(JIT function, autotune configs, bound arguments of its first launch) of `module.kernel_name` when
    call(module) runs vLLM's wrapper: the launch is recorded, not run (no GPU)."""
    from triton_faithful import bound_arguments, recorded_launches, unwrap_tuned, with_real_triton

    module = with_real_triton(module, kernel_name)
    fn, configs, heuristics, _ = unwrap_tuned(getattr(module, kernel_name))
    args, kwargs = recorded_launches(module, kernel_name, lambda: call(module))[0]
    return fn, configs, bound_arguments(fn, heuristics, args, kwargs)


def test_configs_compiled_on_threads_come_back_in_config_order(gdn_benchmark):
    """FastestConfig times configs by zipping them with compile_configs' results: a thread pool must
    not reorder them (each compiled kernel carries its config's warp count)."""
    from triton_faithful import EmulatedKernel, compile_configs
    from vllm.third_party.flash_linear_attention.ops import cumsum

    fn, configs, bound = first_launch(cumsum, "chunk_local_cumsum_scalar_kernel",
                                      lambda module: module.chunk_local_cumsum(torch.zeros(1, 100, 4), chunk_size=64))
    configs = sorted(configs, key=lambda config: -config.num_warps)  # an order the pool cannot guess
    compiled = compile_configs(EmulatedKernel(fn, 75, None), bound, configs)
    assert [kernel.metadata.num_warps for kernel in compiled] == [config.num_warps for config in configs]


@pytest.mark.parametrize("arch", [70, 75])
def test_configs_that_differ_only_in_stages_build_one_kernel_below_sm80(gdn_benchmark, arch):
    """distinct_configs' premise, which lets the faithful benchmarks compile a third of FLA's configs:
    on sm_70/sm_75 Triton ignores num_stages, so the PTX and cubin are the same at every depth."""
    from triton_faithful import EmulatedKernel, config_options, distinct_configs
    from vllm.third_party.flash_linear_attention.ops import chunk_scaled_dot_kkt

    tokens, heads = 100, 4
    fn, configs, bound = first_launch(chunk_scaled_dot_kkt, "chunk_scaled_dot_kkt_fwd_kernel",
                                      lambda module: module.chunk_scaled_dot_kkt_fwd(
                                          torch.zeros(1, tokens, heads, 128, dtype=torch.float16),
                                          beta=torch.zeros(1, tokens, heads, dtype=torch.float16)))
    kept = distinct_configs(configs, arch)
    depths = [c for c in configs if (c.kwargs, c.num_warps) == (kept[0].kwargs, kept[0].num_warps)]
    assert len(kept) < len(configs) and len(depths) > 1
    emulated = EmulatedKernel(fn, arch, None)
    kernels = [emulated.compile(**{**bound, **config_options(c)})[0] for c in depths]
    built = {(kernel.asm["ptx"], kernel.asm["cubin"]) for kernel in kernels}
    assert len(built) == 1, f"{len(built)} different kernels for {[c.num_stages for c in depths]} stages"
    # The control: from sm_80 on the pipeliner reads num_stages, and the same configs build different kernels.
    assert distinct_configs(configs, 80) == configs
    ampere = EmulatedKernel(fn, 80, None, no_mma=False)
    assert len({ampere.compile(**{**bound, **config_options(c)})[0].asm["ptx"] for c in depths}) > 1


def test_faithful_fla_kernels_autotune_over_the_lists_the_emulated_card_gets(gdn_benchmark, monkeypatch):
    """FLA picks chunk_o's and cumsum's autotune lists when it is imported, from the GPU it finds: the
    faithful baselines must search a V100's or T4's lists, not the H200's they run on."""
    import importlib

    from triton_faithful import fla_autotune_lists_of
    from vllm.third_party.flash_linear_attention.ops import chunk_o, cumsum, utils

    def lists():
        return chunk_o.BKV_LIST, chunk_o.NUM_WARPS, cumsum.BS_LIST

    monkeypatch.setattr(utils, "check_shared_mem", lambda arch="none", tensor_idx=0: True)  # as on an H200
    monkeypatch.setattr(utils, "is_nvidia_hopper", True)
    try:
        importlib.reload(chunk_o)
        importlib.reload(cumsum)
        hopper = lists()
        assert hopper == ([64, 128], [2, 4], [32, 64])
        for arch in (70, 75):  # 96 and 64 KB: both under FLA's 100 KB line
            with fla_autotune_lists_of(arch):
                assert lists() == ([32, 64], [2, 4, 8], [16, 32])
            assert lists() == hopper  # imported as on this GPU again
    finally:
        monkeypatch.undo()
        importlib.reload(chunk_o)
        importlib.reload(cumsum)
