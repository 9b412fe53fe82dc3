"""The mma.sync wrappers of both arch paths, through the smoke GEMM, against a float64 reference."""
import pytest
import torch

from vllm_sm7x import activation, ops
from vllm_sm7x.activation import Activation

pytestmark = pytest.mark.gpu
PATHS = ["sm70", "sm75"]
# Odd sizes: partial tiles in M, N and K; K=1 and K not a multiple of the mma's k.
SHAPES = [(1, 1, 1), (16, 16, 8), (37, 29, 45), (5, 113, 257), (128, 96, 64), (333, 17, 1001)]


def random_operands(M, N, K, seed):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    a = torch.randn(M, K, device="cuda", generator=gen).half()
    b = torch.randn(N, K, device="cuda", generator=gen).half()
    return a, b


def relative_error(out, a, b):
    ref = a.double() @ b.double().T
    return float((out.double() - ref).norm() / ref.norm())


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("M, N, K", SHAPES)
def test_matches_float64_reference(path, M, N, K, seed):
    a, b = random_operands(M, N, K, seed)
    out = torch.full((M, N), float("nan"), device="cuda")  # poisoned: every element must be written
    ops.mma_gemm(a, b, path=path, out=out)
    torch.cuda.synchronize()
    assert not out.isnan().any()
    assert relative_error(out, a, b) < 1e-5  # fp16 products are exact in fp32; only summation rounds


def test_both_paths_agree_on_non_contiguous_inputs(seed):
    a, b = random_operands(70, 50, 96, seed)
    a_view, b_view = a[:, ::2], b[:, ::2]
    results = [ops.mma_gemm(a_view, b_view, path=p) for p in PATHS]
    torch.cuda.synchronize()
    for out in results:
        assert relative_error(out, a_view, b_view) < 1e-5


def test_default_path_follows_emulation(monkeypatch, seed):
    a, b = random_operands(19, 23, 31, seed)
    monkeypatch.setattr(activation, "current_activation", lambda: Activation(True, "sm75", True, "test"))
    assert relative_error(ops.mma_gemm(a, b), a, b) < 1e-5
    if torch.cuda.get_device_capability() >= (8, 0):
        monkeypatch.setattr(activation, "current_activation", lambda: Activation(False, None, False, "test"))
        with pytest.raises(ValueError, match="no native SM7x path for compute capability"):
            ops.mma_gemm(a, b)


def test_bad_inputs_get_clear_errors():
    a = torch.randn(4, 8, device="cuda")
    with pytest.raises(RuntimeError, match="float16"):
        ops.mma_gemm(a.bfloat16(), a.bfloat16(), path="sm70")
    with pytest.raises(RuntimeError, match=r"expected a \[M, K\] and b \[N, K\]"):
        ops.mma_gemm(a.half(), torch.randn(4, 9, device="cuda").half(), path="sm70")
    with pytest.raises(ValueError, match="unknown arch path 'sm80'"):
        ops.mma_gemm(a.half(), a.half(), path="sm80")


def test_op_schema_and_fake_implementation(seed):
    a, b = random_operands(9, 10, 11, seed)
    out = torch.empty(9, 10, device="cuda")
    torch.library.opcheck(torch.ops._C_sm7x.mma_gemm.default, (a, b, out, "sm70"))


@pytest.mark.parametrize("path", PATHS)
def test_cuda_graph_capture_and_replay(path, seed):
    a, b = random_operands(33, 40, 72, seed)
    out = torch.empty(33, 40, device="cuda")
    ops.mma_gemm(a, b, path=path, out=out)  # warm up outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        ops.mma_gemm(a, b, path=path, out=out)
    a.copy_(torch.randn_like(a))
    out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    assert relative_error(out, a, b) < 1e-5
