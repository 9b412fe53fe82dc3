"""Tensor parallel across 2 GPUs: the same AWQ checkpoints, greedy, our plugin in SM70/SM75 emulation at
TP2 against stock vLLM native at TP2 (dense, the Qwen3.5 hybrid, the Qwen3.6 MoE hybrid), and our TP2
against our TP1, with the close-call rule of the single-GPU end-to-end tests. TP2 shards the AWQ groups
(row-parallel K splits on group boundaries), the attention heads (2 q / 1 kv per rank on qwen3-tiny),
the Gated DeltaNet heads and the experts' width. Both paths keep vLLM's custom all-reduce here (PyPI's
vLLM kernels run on this GPU; on a V100 that takes a vLLM built for sm_70, else NCCL)."""
import pytest
from tests.gpu.test_e2e_vs_stock import (HYBRID_ENGINE, STOCK_HYBRID_ENGINE, assert_matches_stock, generate,
                                         stock_samples)

pytestmark = pytest.mark.gpu
TP2 = {"tensor_parallel_size": 2}


@pytest.fixture(autouse=True)
def two_gpus():
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip(f"tensor parallel needs 2 GPUs, this machine has {torch.cuda.device_count()}")


@pytest.fixture(scope="module")
def dense_checkpoint(awq_checkpoint):
    return awq_checkpoint("qwen3-tiny")


@pytest.fixture(scope="module")
def dense_stock_tp2(dense_checkpoint):
    return stock_samples(dense_checkpoint, TP2)


@pytest.mark.parametrize("emulate", ["sm75", "sm70"])
def test_dense_tp2_matches_stock_vllm_tp2(dense_checkpoint, dense_stock_tp2, emulate):
    ours = generate(dense_checkpoint, emulate, "graphs", engine_args=TP2)
    assert ours["quantization"] == "awq_sm7x"
    assert_matches_stock(dense_stock_tp2, ours, f"qwen3-tiny {emulate}/TP2")


@pytest.fixture(scope="module")
def hybrid_checkpoint(awq_checkpoint):
    return awq_checkpoint("qwen35-tiny")


def test_hybrid_tp2_with_our_gdn_decode_matches_stock_vllm_tp2(hybrid_checkpoint):
    # Stock's GDN prefill pinned to Triton as in the single-GPU test (no FlashInfer on the lent machine).
    stock = stock_samples(hybrid_checkpoint, {**STOCK_HYBRID_ENGINE, **TP2})
    ours = generate(hybrid_checkpoint, "sm70", "graphs", engine_args={**HYBRID_ENGINE, **TP2},
                    env_extra={"VLLM_SM7X_GDN_DECODE": "1"})
    assert ours["quantization"] == "awq_sm7x"
    assert "Gated DeltaNet decode and MTP verification run on the sm7x CUDA kernels" in ours["log"]
    assert_matches_stock(stock, ours, "qwen35-tiny sm70/TP2")


def test_dense_tp2_agrees_with_tp1_on_our_sm70_path(dense_checkpoint):
    tp1 = generate(dense_checkpoint, "sm70", "graphs")
    tp2 = generate(dense_checkpoint, "sm70", "graphs", engine_args=TP2)
    assert_matches_stock(tp1["samples"], tp2, "qwen3-tiny sm70 TP2 against TP1")


@pytest.fixture(scope="module")
def moe_checkpoint(tmp_path_factory):
    """Group size 64: TP2 halves the expert width (128 -> 64), and row-parallel shards split on groups."""
    pytest.importorskip("vllm")
    from vllm_sm7x.checkpoints import make_checkpoint

    return make_checkpoint("qwen36-35b-a3b-tiny", tmp_path_factory.mktemp("moe-g64"), group_size=64, seed=0)


def test_moe_tp2_matches_stock_vllm_tp2(moe_checkpoint):
    stock = stock_samples(moe_checkpoint, {**STOCK_HYBRID_ENGINE, **TP2})
    ours = generate(moe_checkpoint, "sm70", "graphs", engine_args={**HYBRID_ENGINE, **TP2})
    assert ours["quantization"] == "awq_sm7x"
    assert_matches_stock(stock, ours, "qwen36-35b-a3b-tiny sm70/TP2")
