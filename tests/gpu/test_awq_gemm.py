"""AWQ W4A16 GEMM on both arch paths against a float64 reference of the AWQ weights."""
import pytest
import torch

from vllm_sm7x.quantization.awq_format import (dequantize_awq, dequantize_kernel_layout, quantize_awq,
                                               to_kernel_layout)

pytestmark = pytest.mark.gpu
PATHS = ["sm70", "sm75"]


@pytest.fixture(scope="module")
def awq():
    from vllm_sm7x.ops import awq

    return awq


def make_layer(K, N, group_size, seed, bias=False):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    w = torch.randn(K, N, device="cuda", generator=gen) * 0.05
    qweight, qzeros, scales = quantize_awq(w, group_size)
    reference = dequantize_awq(qweight, qzeros, scales, group_size)  # [K, N] float64
    b = torch.randn(N, device="cuda", generator=gen).half() if bias else None
    return to_kernel_layout(qweight, qzeros, scales, group_size), reference, b


def relative_error(out, x, reference, bias):
    ref = x.double() @ reference + (0 if bias is None else bias.double())
    assert not out.isnan().any(), "unwritten (NaN) or overflowing outputs"
    return float((out.double() - ref).norm() / ref.norm())


# The fp16 rounding of dequantised weights and of the output bounds what any fp16 kernel can reach;
# cuBLAS on the same fp16 weights lands near 5e-4 on these sizes.
TOLERANCE = 2e-3


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("M, K, N, group_size", [(1, 128, 8, 128), (1, 4096, 200, 128), (2, 512, 72, 32),
                                                 (5, 1536, 264, 64), (16, 2048, 128, 128), (33, 640, 520, 32),
                                                 (64, 1024, 1000, 64)])
@pytest.mark.parametrize("bias", [False, True])
def test_fused_kernel_matches_reference(awq, path, M, K, N, group_size, bias, seed):
    weight, reference, b = make_layer(K, N, group_size, seed, bias)
    x = torch.randn(M, K, device="cuda", generator=torch.Generator(device="cuda").manual_seed(seed + 1)).half()
    out = awq.awq_gemm(x, weight, b, path=path)
    torch.cuda.synchronize()
    assert out.shape == (M, N) and out.dtype == torch.float16
    assert relative_error(out, x, reference, b) < TOLERANCE


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("split_k", [1, 2, 3, 7, 64])
def test_every_split_k_gives_the_same_answer(awq, path, split_k, seed):
    weight, reference, b = make_layer(1024, 136, 64, seed, bias=True)
    x = torch.randn(3, 1024, device="cuda").half()
    out = awq.awq_gemm(x, weight, b, path=path, split_k=split_k)
    assert relative_error(out, x, reference, b) < TOLERANCE


def test_dequantize_matches_the_layout_reference(awq, seed):
    weight, _, _ = make_layer(384, 48, 128, seed)
    torch.testing.assert_close(awq.awq_dequantize(weight), dequantize_kernel_layout(weight), rtol=0, atol=0)


@pytest.mark.parametrize("M", [1, 16, 65, 300])
@pytest.mark.parametrize("path", PATHS)
def test_linear_picks_a_path_by_rows_and_agrees(awq, M, path, seed, monkeypatch):
    from vllm_sm7x import activation

    monkeypatch.setattr(activation, "current_activation", lambda: activation.Activation(True, path, True, "test"))
    monkeypatch.setattr(awq, "DEQUANT_CHUNK_BYTES", 64 * 640 * 2)  # force several column chunks
    weight, reference, b = make_layer(640, 200, 128, seed, bias=True)
    x = torch.randn(M, 640, device="cuda").half()
    out = awq.awq_linear(x.view(1, M, 640), weight, b)
    assert out.shape == (1, M, 200)
    assert relative_error(out[0], x, reference, b) < TOLERANCE


def test_non_contiguous_activations(awq, seed):
    weight, reference, _ = make_layer(512, 64, 128, seed)
    x = torch.randn(4, 1024, device="cuda").half()[:, ::2]
    assert relative_error(awq.awq_gemm(x, weight, path="sm70"), x, reference, None) < TOLERANCE


def test_bad_inputs_get_clear_errors(awq):
    weight, _, _ = make_layer(256, 16, 128, 0)
    x = torch.randn(2, 256, device="cuda")
    with pytest.raises(RuntimeError, match="float16"):
        awq.awq_gemm(x, weight, path="sm70")
    with pytest.raises(RuntimeError, match=r"qweight must be a contiguous int32 \[N, K/8\]"):
        awq.awq_gemm(x.half()[:, :128], weight, path="sm70")
    with pytest.raises(ValueError, match="group size 48 is not supported"):
        torch.ops._C_sm7x.awq_gemm(x.half(), weight.qweight, weight.scale_zero, 48, None, "sm70", 0)
    with pytest.raises(RuntimeError, match=r"bias must be a contiguous float16 \[N = 16\]"):
        awq.awq_gemm(x.half(), weight, torch.zeros(8, device="cuda").half(), path="sm70")


def test_op_schema_and_fake_implementations(awq, seed):
    weight, _, b = make_layer(256, 24, 64, seed, bias=True)
    x = torch.randn(3, 256, device="cuda").half()
    torch.library.opcheck(torch.ops._C_sm7x.awq_gemm.default,
                          (x, weight.qweight, weight.scale_zero, 64, b, "sm75", 2))
    torch.library.opcheck(torch.ops._C_sm7x.awq_dequantize.default, (weight.qweight, weight.scale_zero, 64))


@pytest.mark.parametrize("path", PATHS)
def test_cuda_graph_capture_and_replay(awq, path, seed):
    weight, reference, b = make_layer(2048, 256, 128, seed, bias=True)
    x = torch.randn(4, 2048, device="cuda").half()
    awq.awq_gemm(x, weight, b, path=path)  # warm-up outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = awq.awq_gemm(x, weight, b, path=path)
    x.copy_(torch.randn_like(x))
    graph.replay()
    torch.cuda.synchronize()
    assert relative_error(out, x, reference, b) < TOLERANCE
