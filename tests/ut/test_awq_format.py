"""AWQ GEMM format <-> kernel layout, in PyTorch on the CPU."""
import pytest
import torch

from vllm_sm7x.quantization.awq_format import (AWQ_NIBBLE_OF_COLUMN, dequantize_awq, dequantize_kernel_layout,
                                               experts_to_kernel_layout, pack_int4, pack_tiles, quantize_awq,
                                               to_kernel_layout, unpack_int4, unpack_tiles)


def test_unpack_follows_awq_nibble_order():
    # Column j of a word sits in nibble AWQ_NIBBLE_OF_COLUMN[j]: word 0x76543210 holds nibble i = i.
    word = torch.tensor([[0x76543210]], dtype=torch.int32)
    assert unpack_int4(word).tolist() == [[AWQ_NIBBLE_OF_COLUMN[j] for j in range(8)]]


def test_pack_unpack_round_trip_including_the_sign_bit(seed):
    gen = torch.Generator().manual_seed(seed)
    values = torch.randint(0, 16, (7, 40), generator=gen)
    values[0, :8] = 15  # all nibbles set: the word is negative as int32
    packed = pack_int4(values)
    assert packed.dtype == torch.int32 and packed.shape == (7, 5)
    assert torch.equal(unpack_int4(packed), values.int())


@pytest.mark.parametrize("group_size", [32, 64, 128])
def test_quantize_is_within_half_a_step(group_size, seed):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(group_size * 3, 24, generator=gen, dtype=torch.float64)
    qweight, qzeros, scales = quantize_awq(w, group_size)
    err = (dequantize_awq(qweight, qzeros, scales, group_size) - w).abs()
    step = scales.double().repeat_interleave(group_size, 0)
    assert (err <= 0.5 * step + 1e-3 * w.abs()).all()


@pytest.mark.parametrize("group_size, K, N", [(32, 160, 56), (64, 320, 24), (128, 640, 1040)])
def test_kernel_layout_dequantises_to_the_awq_weights(group_size, K, N, seed):
    gen = torch.Generator().manual_seed(seed)
    qweight, qzeros, scales = quantize_awq(torch.randn(K, N, generator=gen), group_size)
    kernel = to_kernel_layout(qweight, qzeros, scales, group_size)
    assert kernel.qweight.shape == (-(-N // 16), -(-K // 128), 2, 32, 4)
    assert kernel.scale_zero.shape == (K // group_size, N)
    assert (kernel.in_features, kernel.out_features) == (K, N)
    expected = dequantize_awq(qweight, qzeros, scales, group_size).t()
    got = dequantize_kernel_layout(kernel).double()
    assert ((got - expected).norm() / expected.norm()) < 2e-3  # fp16 rounding of the weights and -zero*scale


# (K, N) per GPU of the layers users serve: Qwen3.6-27B at TP4 (qkv, o_proj, gate_up, down) and a
# Qwen3.6-35B-A3B expert (gate_up, down). Ragged tile edges never occur here: these are the exact shapes.
REAL_SHAPES = [(5120, 3584), (1536, 5120), (5120, 8704), (4352, 5120), (2048, 1024), (512, 2048)]


@pytest.mark.parametrize("K, N", REAL_SHAPES, ids=lambda v: str(v))
def test_real_model_shapes_round_trip_through_the_kernel_layout(K, N, seed):
    gen = torch.Generator().manual_seed(seed)
    qweight, qzeros, scales = quantize_awq(torch.randn(K, N, generator=gen), 128)
    kernel = to_kernel_layout(qweight, qzeros, scales, 128)
    expected = dequantize_awq(qweight, qzeros, scales, 128).t()
    assert ((dequantize_kernel_layout(kernel).double() - expected).norm() / expected.norm()) < 2e-3
    assert torch.equal(unpack_tiles(kernel.qweight, N, K), unpack_int4(qweight).t())


def test_each_value_sits_where_the_kernel_fragments_read_it(seed):
    # Tile (n // 16, k // 128), half (n % 16) // 8, slot 4 * (n % 8) + (k % 128) // 32, word (k % 32) // 8,
    # nibble AWQ_NIBBLE_OF_COLUMN[k % 8]: the contract with csrc/quantization/awq/awq_gemm.h.
    N, K = 40, 288
    q = torch.randint(0, 16, (N, K), generator=torch.Generator().manual_seed(seed))
    packed = pack_tiles(q)
    n, k = torch.meshgrid(torch.arange(N), torch.arange(K), indexing="ij")
    words = packed[n // 16, k // 128, n % 16 // 8, 4 * (n % 8) + k % 128 // 32, k % 32 // 8]
    nibbles = torch.tensor(AWQ_NIBBLE_OF_COLUMN)[k % 8]
    assert torch.equal((words >> (4 * nibbles)) & 0xF, q.int())
    assert torch.equal(unpack_tiles(packed, N, K), q.int())


def test_padding_is_zero_nibbles():
    packed = pack_tiles(torch.full((20, 96), 15))
    full = unpack_tiles(packed, 32, 128)
    assert (full[:20, :96] == 15).all() and (full[20:] == 0).all() and (full[:, 96:] == 0).all()


def test_conversion_in_column_chunks_matches_one_piece(monkeypatch, seed):
    from vllm_sm7x.quantization import awq_format

    qweight, qzeros, scales = quantize_awq(torch.randn(256, 72, generator=torch.Generator().manual_seed(seed)), 64)
    whole = to_kernel_layout(qweight, qzeros, scales, 64)
    monkeypatch.setattr(awq_format, "_CONVERT_COLUMNS", 32)
    chunked = to_kernel_layout(qweight, qzeros, scales, 64)
    assert torch.equal(whole.qweight, chunked.qweight) and torch.equal(whole.scale_zero, chunked.scale_zero)


def test_unsupported_shapes_are_named():
    qweight, qzeros, scales = quantize_awq(torch.randn(128, 16), 128)
    with pytest.raises(ValueError, match="group size 256 is not supported"):
        to_kernel_layout(qweight, qzeros, scales, 256)
    with pytest.raises(ValueError, match="multiple of the group size"):
        quantize_awq(torch.randn(100, 16), 64)
    with pytest.raises(ValueError, match="do not match"):
        to_kernel_layout(qweight, qzeros, scales, 64)


def test_experts_convert_into_one_weight_per_projection(seed):
    gen = torch.Generator().manual_seed(seed)
    awq = [quantize_awq(torch.randn(256, 40, generator=gen), 64) for _ in range(3)]
    stacked = experts_to_kernel_layout(*(torch.stack(part) for part in zip(*awq)), 64)
    assert stacked.qweight.shape == (3, 3, 2, 2, 32, 4) and stacked.scale_zero.shape == (3, 4, 40)
    for e, expert in enumerate(awq):
        alone = to_kernel_layout(*expert, 64)
        assert torch.equal(stacked.qweight[e], alone.qweight) and torch.equal(stacked.scale_zero[e], alone.scale_zero)
    with pytest.raises(ValueError, match=r"\[experts, \.\.\.\] stacks"):
        experts_to_kernel_layout(awq[0][0], awq[0][1], awq[0][2], 64)
