"""AWQ W4A16 on both arch paths against a float64 (float32 for real model widths) reference of the
AWQ weights. Outputs come from the caching allocator, which is poisoned with NaN before each call,
so an element the kernel fails to write shows up as NaN."""
import json

import pytest
import torch

from tests.gpu.kernel_checks import poison_free_memory
from vllm_sm7x.quantization.awq_format import (dequantize_awq, dequantize_kernel_layout, quantize_awq,
                                               to_kernel_layout)

pytestmark = pytest.mark.gpu
PATHS = ["sm70", "sm75"]
# fp16 rounding of the dequantised weights and of the output bounds any fp16 kernel; cuBLAS on the
# same fp16 weights lands near 5e-4 on these sizes.
TOLERANCE = 2e-3
# Qwen3.6-27B linear layers (K, N) at TP1 and their TP4 shards (DESIGN.md section 7).
QWEN27B = {"qkv": (5120, 14336), "o_proj": (6144, 5120), "gate_up": (5120, 34816), "down": (17408, 5120)}
ROW_PARALLEL = ("o_proj", "down")


def tp_shape(name, tp):
    K, N = QWEN27B[name]
    return (K // tp, N) if name in ROW_PARALLEL else (K, N // tp)


@pytest.fixture(scope="module")
def awq():
    from vllm_sm7x.ops import awq

    return awq


def make_layer(K, N, group_size, seed, bias=False, reference_dtype=torch.float64):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    w = torch.randn(K, N, device="cuda", generator=gen) * 0.05
    qweight, qzeros, scales = quantize_awq(w, group_size)
    reference = dequantize_awq(qweight, qzeros, scales, group_size).to(reference_dtype)  # [K, N]
    b = torch.randn(N, device="cuda", generator=gen).half() if bias else None
    return to_kernel_layout(qweight, qzeros, scales, group_size), reference, b


def poisoned(fn, *args, **kwargs):
    """Run fn on NaN-poisoned free memory (kernel_checks.poison_free_memory)."""
    poison_free_memory()
    return fn(*args, **kwargs)


def relative_error(out, x, reference, bias):
    ref = x.to(reference.dtype) @ reference + (0 if bias is None else bias.to(reference.dtype))
    assert not out.isnan().any(), "unwritten (NaN) or overflowing outputs"
    return float((out.to(reference.dtype) - ref).norm() / ref.norm())


def random_x(M, K, seed):
    return torch.randn(M, K, device="cuda", generator=torch.Generator(device="cuda").manual_seed(seed)).half()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("K, N, group_size", [(128, 8, 128), (4096, 200, 128), (544, 72, 32), (1536, 264, 64),
                                              (2048, 136, 128), (640, 520, 32), (1088, 1000, 64), (32, 8, 32),
                                              (96, 72, 32), (64, 104, 64)])
@pytest.mark.parametrize("M", [1, 2, 3, 5, 8, 16, 17, 33, 64])
def test_fused_kernel_matches_reference(awq, path, M, K, N, group_size, seed):
    weight, reference, b = make_layer(K, N, group_size, seed, bias=M % 2 == 1)
    x = random_x(M, K, seed + 1)
    out = poisoned(awq.awq_gemm, x, weight, b, path=path)
    assert out.shape == (M, N) and out.dtype == torch.float16
    assert relative_error(out, x, reference, b) < TOLERANCE


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("tp", [1, 4])
@pytest.mark.parametrize("name", list(QWEN27B))
def test_qwen27b_shapes_every_row_count(awq, path, tp, name, seed):
    K, N = tp_shape(name, tp)
    weight, reference, b = make_layer(K, N, 128, seed, reference_dtype=torch.float32)
    for M in (1, 2, 3, 5, 8, 16, 17, 33, 64, 255, 1024, 4097):
        x = random_x(M, K, seed + M)
        out = poisoned(awq.awq_linear, x, weight, path=path)
        assert relative_error(out, x, reference, None) < TOLERANCE, f"M={M}"


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("group_size", [32, 64, 128])
@pytest.mark.parametrize("M", [1, 7, 100, 255])  # fused, fused, tiled, dequantise + cuBLAS
def test_linear_all_group_sizes_with_bias(awq, path, group_size, M, seed):
    weight, reference, b = make_layer(1280, 776, group_size, seed, bias=True)
    x = random_x(M, 1280, seed + 1)
    out = poisoned(awq.awq_linear, x.view(1, M, 1280), weight, b, path=path)
    assert out.shape == (1, M, 776)
    assert relative_error(out[0], x, reference, b) < TOLERANCE


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("group_size", [64, 128])
@pytest.mark.parametrize("split_k", [1, 2, 3, 7, 16, 64])
def test_every_registry_entry_and_split_agrees(awq, path, group_size, split_k, seed):
    # N = 136: 9 column tiles, so a two-tile CTA's second tile runs past N at the end.
    weight, reference, b = make_layer(2176, 136, group_size, seed, bias=True)
    entries = awq.fused_registry()
    assert {e["column_tiles"] for e in entries} == {1, 2} and {e["token_tiles"] for e in entries} == {1, 2}
    for entry in entries:
        M = 3 if entry["token_tiles"] == 1 else 12
        x = random_x(M, 2176, seed + M)
        out = poisoned(awq.awq_gemm, x, weight, b, path=path, warps=entry["warps"], split_k=split_k,
                       column_tiles=entry["column_tiles"])
        assert relative_error(out, x, reference, b) < TOLERANCE, entry


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("K, N, group_size", [(128, 8, 128), (4096, 200, 128), (544, 72, 32), (1536, 264, 64),
                                              (1088, 1000, 64), (2080, 2056, 32), (32, 8, 32), (96, 72, 32),
                                              (64, 104, 64)])
@pytest.mark.parametrize("M", [1, 17, 33, 64, 65, 100, 255])
def test_tiled_kernel_matches_reference(awq, path, M, K, N, group_size, seed):
    # Every entry; the rows leave token blocks partly filled, N ends inside a CTA's columns and some
    # warps' column tiles lie past N entirely (N = 8, 72).
    weight, reference, b = make_layer(K, N, group_size, seed, bias=M % 2 == 1)
    x = random_x(M, K, seed + 1)
    for entry in awq.tiled_registry():
        out = poisoned(awq.awq_gemm_tiled, x, weight, b, path=path, token_tiles=entry["token_tiles"],
                       warps=entry["warps"])
        assert out.shape == (M, N) and out.dtype == torch.float16
        assert relative_error(out, x, reference, b) < TOLERANCE, entry


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("split_k", [1, 2, 3, 7, 16, 64])
def test_every_tiled_entry_and_split_agrees(awq, path, split_k, seed):
    weight, reference, b = make_layer(2176, 136, 64, seed, bias=True)
    entries = awq.tiled_registry()
    assert {e["token_tiles"] for e in entries} == {4} and {e["column_tiles"] for e in entries} == {1}
    for entry in entries:
        M = 8 * entry["token_tiles"] + 3  # a second, almost empty token block
        x = random_x(M, 2176, seed + M)
        out = poisoned(awq.awq_gemm_tiled, x, weight, b, path=path, token_tiles=entry["token_tiles"],
                       warps=entry["warps"], split_k=split_k)
        assert relative_error(out, x, reference, b) < TOLERANCE, entry


@pytest.mark.parametrize("path", PATHS)
def test_one_override_takes_a_built_entry_with_it(awq, path, seed):
    # The planned (token tiles, warps, column tiles) with only warps or only column tiles replaced may
    # not be built: the other value then comes from an entry that is.
    weight, reference, _ = make_layer(1024, 520, 128, seed)
    for M, warps, column_tiles in [(16, 8, 0), (16, 0, 1), (3, 0, 2), (3, 4, 0)]:
        x = random_x(M, 1024, seed + M)
        out = poisoned(awq.awq_gemm, x, weight, path=path, warps=warps, column_tiles=column_tiles)
        assert relative_error(out, x, reference, None) < TOLERANCE, (M, warps, column_tiles)


def test_dequantize_matches_the_layout_reference(awq, seed):
    weight, _, _ = make_layer(416, 56, 32, seed)
    torch.testing.assert_close(awq.awq_dequantize(weight), dequantize_kernel_layout(weight), rtol=0, atol=0)


def test_tiny_scales_dequantise_exactly(awq):
    # Scales near fp16's subnormal range: the high-nibble magic number must not lose precision.
    weight, _, _ = make_layer(256, 32, 128, 0)
    halves = weight.scale_zero.view(torch.float16).view(*weight.scale_zero.shape, 2)
    halves[..., 0] = 3e-5
    halves[..., 1] = -7 * 3e-5
    torch.testing.assert_close(awq.awq_dequantize(weight), dequantize_kernel_layout(weight), rtol=0, atol=0)


def test_non_contiguous_activations(awq, seed):
    weight, reference, _ = make_layer(512, 64, 128, seed)
    x = random_x(4, 1024, seed)[:, ::2]
    assert relative_error(awq.awq_gemm(x, weight, path="sm70"), x, reference, None) < TOLERANCE


@pytest.mark.parametrize("path", PATHS)
def test_contiguous_activations_at_a_misaligned_address_are_copied(awq, path, seed):
    """A contiguous view whose base is not 16-byte aligned (the kernels read x 16 bytes at a time):
    copied first, not faulted on."""
    weight, reference, _ = make_layer(512, 64, 128, seed)
    x = random_x(1, 5 * 512 + 1, seed)[0, 1:].view(5, 512)
    assert x.is_contiguous() and x.data_ptr() % 16 != 0
    assert relative_error(poisoned(awq.awq_linear, x, weight, path=path), x, reference, None) < TOLERANCE


def test_plan_uses_the_fused_kernel_for_few_rows_the_tiled_for_more_and_cublas_for_many(awq):
    assert awq.awq_plan(1, (5120, 14336), 128, "sm75")["kernel"] == "fused"
    assert awq.awq_plan(16, (5120, 14336), 128, "sm70")["token_tiles"] == 2
    for M in (17, 64, 128):
        plan = awq.awq_plan(M, (5120, 14336), 128, "sm75")
        assert plan["kernel"] == "tiled" and {k: plan[k] for k in ("token_tiles", "warps", "column_tiles")} in [
            {**e} for e in awq.tiled_registry()], plan
    assert awq.awq_plan(129, (5120, 14336), 128, "sm75") == {"kernel": "dequant+cublas"}
    assert awq.awq_plan(4097, (5120, 14336), 128, "sm70") == {"kernel": "dequant+cublas"}
    small_n = awq.awq_plan(1, (17408, 1280), 128, "sm75")
    assert small_n["splits"] > 1, "80 column tiles cannot fill the GPU without splitting k"


def test_tuned_entries_override_the_cost_model(awq):
    shape = (5120, 3584)
    planned = {(M, path): awq.awq_plan(M, shape, 128, path) for M in (3, 5) for path in PATHS}
    tuned = {"kernel": "fused", "token_tiles": 1, "column_tiles": 2, "warps": 8, "splits": 5}
    assert planned[3, "sm75"] != tuned
    try:
        torch.ops._C_sm7x.awq_set_tuned(3584, 5120, 128, "sm75", 4, 8, 5, 2)  # M bucket 4: M = 3 and 4
        assert awq.awq_plan(3, shape, 128, "sm75") == tuned
        assert awq.awq_plan(5, shape, 128, "sm75") == planned[5, "sm75"]  # bucket 8
        assert awq.awq_plan(3, shape, 128, "sm70") == planned[3, "sm70"]  # other path
    finally:
        torch.ops._C_sm7x.awq_clear_tuned()
    assert awq.awq_plan(3, shape, 128, "sm75") == planned[3, "sm75"]


def test_bad_inputs_get_clear_errors(awq):
    weight, _, _ = make_layer(256, 16, 128, 0)
    x = torch.randn(2, 256, device="cuda")
    with pytest.raises(RuntimeError, match="float16"):
        awq.awq_gemm(x, weight, path="sm70")
    with pytest.raises(RuntimeError, match=r"scale_zero must be a contiguous int32 \(half2\) \[K/G = 1, N\]"):
        awq.awq_gemm(x.half()[:, :128], weight, path="sm70")
    with pytest.raises(ValueError, match="group size 48 is not supported"):
        torch.ops._C_sm7x.awq_gemm(x.half(), weight.qweight, weight.scale_zero, 48, None, "sm70", 0, 0)
    with pytest.raises(RuntimeError, match=r"qweight must be the packed int32 \[1, 2, 2, 32, 4\]"):
        torch.ops._C_sm7x.awq_linear(x.half(), weight.qweight[:, :1].contiguous(), weight.scale_zero, 128, None,
                                     "sm75")
    with pytest.raises(ValueError, match=r"x has no columns \(K = 0\)"):
        awq.awq_gemm_tiled(x.half()[:, :0], weight, path="sm75")
    with pytest.raises(RuntimeError, match=r"bias must be a contiguous float16 \[N = 16\]"):
        awq.awq_gemm(x.half(), weight, torch.zeros(8, device="cuda").half(), path="sm70")
    with pytest.raises(ValueError, match="no fused kernel with 1 token tiles, 6 warps and 1 column tiles"):
        awq.awq_gemm(x.half(), weight, path="sm70", warps=6, column_tiles=1)
    with pytest.raises(ValueError, match="no fused kernel with 1 token tiles, 4 warps and 2 column tiles"):
        torch.ops._C_sm7x.awq_set_tuned(16, 256, 128, "sm75", 1, 4, 1, 2)
    with pytest.raises(ValueError, match="no tiled kernel with 8 token tiles, 8 warps and 1 column tiles"):
        awq.awq_gemm_tiled(x.half(), weight, path="sm75", token_tiles=8, warps=8)
    with pytest.raises(ValueError, match="m_bucket must be a power of two up to 16"):
        torch.ops._C_sm7x.awq_set_tuned(16, 256, 128, "sm75", 32, 4, 1, 1)


def test_op_schema_and_fake_implementations(awq, seed):
    weight, _, b = make_layer(256, 24, 64, seed, bias=True)
    x = torch.randn(3, 256, device="cuda").half()
    torch.library.opcheck(torch.ops._C_sm7x.awq_gemm.default,
                          (x, weight.qweight, weight.scale_zero, 64, b, "sm75", 8, 2, 2))
    torch.library.opcheck(torch.ops._C_sm7x.awq_linear.default, (x, weight.qweight, weight.scale_zero, 64, b, "sm70"))
    torch.library.opcheck(torch.ops._C_sm7x.awq_gemm_tiled.default,
                          (x, weight.qweight, weight.scale_zero, 64, b, "sm75", 4, 8, 2))
    torch.library.opcheck(torch.ops._C_sm7x.awq_dequantize.default, (weight.qweight, weight.scale_zero, 64))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("M", [4, 97, 300])
def test_cuda_graph_replay_matches_eager_bit_for_bit(awq, path, M, seed):
    weight, reference, b = make_layer(2048, 264, 128, seed, bias=True)
    x = random_x(M, 2048, seed)
    awq.awq_linear(x, weight, b, path=path)  # warm-up outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = awq.awq_linear(x, weight, b, path=path)
    x.copy_(random_x(M, 2048, seed + 1))
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, awq.awq_linear(x, weight, b, path=path))
    assert relative_error(out, x, reference, b) < TOLERANCE


def test_tuning_file_is_written_once_and_applied(awq, tmp_path, monkeypatch, seed):
    from vllm_sm7x.quantization import awq_tuning

    weight, reference, _ = make_layer(1024, 272, 128, seed)
    file = tmp_path / "tuning.json"
    monkeypatch.setattr(awq_tuning, "M_BUCKETS", (1, 16))
    try:
        awq_tuning.ensure_tuned(weight, "sm75", str(file))
        table = json.loads(file.read_text())
        (key, choices), = table.items()
        assert key.startswith("v3|") and key.endswith("|sm75|N=272|K=1024|G=128") and set(choices) == {"1", "16"}
        assert awq.awq_plan(1, (1024, 272), 128, "sm75") == {"kernel": "fused", "token_tiles": 1,
                                                             "column_tiles": choices["1"]["column_tiles"],
                                                             "warps": choices["1"]["warps"],
                                                             "splits": choices["1"]["splits"]}
        monkeypatch.setattr(awq_tuning, "tune_weight", lambda *a, **k: pytest.fail("timed again"))
        awq_tuning._loaded.clear()
        awq_tuning.ensure_tuned(weight, "sm75", str(file))  # read back from the file
        x = random_x(16, 1024, seed)
        assert relative_error(awq.awq_linear(x, weight, path="sm75"), x, reference, None) < TOLERANCE
    finally:
        torch.ops._C_sm7x.awq_clear_tuned()
        awq_tuning._loaded.clear()
