"""Every _C_sm7x op has a fake implementation giving the real op's output shape and dtype, so
torch.compile and CUDA-graph capture can trace it (checked here without a GPU)."""
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from vllm_sm7x import ops


def test_fake_implementations_give_output_shapes():
    ops.load_kernels()
    with FakeTensorMode():
        x = torch.empty(3, 256, dtype=torch.float16, device="cuda")
        qweight = torch.empty(2, 2, 2, 32, 4, dtype=torch.int32, device="cuda")  # N = 24, K = 256 packed
        scale_zero = torch.empty(2, 24, dtype=torch.int32, device="cuda")
        for out in (torch.ops._C_sm7x.awq_gemm(x, qweight, scale_zero, 128, None, "sm70", 0, 0),
                    torch.ops._C_sm7x.awq_linear(x, qweight, scale_zero, 128, None, "sm75")):
            assert out.shape == (3, 24) and out.dtype == torch.float16
        weights = torch.ops._C_sm7x.awq_dequantize(qweight, scale_zero, 128)
        assert weights.shape == (24, 256) and weights.dtype == torch.float16
        c = torch.empty(3, 24, device="cuda")
        assert torch.ops._C_sm7x.mma_gemm(x, weights, c, "sm75") is None
        routed = [torch.empty(3, 8, dtype=dtype, device="cuda") for dtype in (torch.float32, torch.int32, torch.int32)]
        gating = torch.empty(3, 128, dtype=torch.float16, device="cuda")
        assert torch.ops._C_sm7x.moe_topk_softmax(*routed, gating, True) is None
        offsets, rows, tile_expert, tile_row = torch.ops._C_sm7x.moe_sort_rows(routed[1], 128, 8)
        assert (offsets.shape, rows.shape) == ((129,), (24,))
        assert tile_expert.shape == tile_row.shape == (24 // 8 + 24,)  # 24 rows over 128 experts
        experts_q = torch.empty(128, 2, 2, 2, 32, 4, dtype=torch.int32, device="cuda")
        experts_sz = torch.empty(128, 2, 24, dtype=torch.int32, device="cuda")
        out = torch.ops._C_sm7x.awq_moe_gemm(x, experts_q, experts_sz, rows, offsets, tile_expert, tile_row, 8,
                                             128, 8, "sm70")
        assert out.shape == (24, 24) and out.dtype == torch.float16
        gated = torch.ops._C_sm7x.moe_silu_mul(out)
        assert gated.shape == (24, 12) and gated.dtype == torch.float16
        combined = torch.ops._C_sm7x.moe_combine(out, routed[0], routed[1], 128)
        assert combined.shape == (3, 24) and combined.dtype == torch.float16
        w13_q = torch.empty(128, 2, 2, 2, 32, 4, dtype=torch.int32, device="cuda")  # 256 -> 2 x 16
        w13_sz = torch.empty(128, 2, 32, dtype=torch.int32, device="cuda")
        w2_q = torch.empty(128, 16, 1, 2, 32, 4, dtype=torch.int32, device="cuda")    # 16 -> 256
        w2_sz = torch.empty(128, 1, 256, dtype=torch.int32, device="cuda")
        layer = torch.ops._C_sm7x.awq_moe_decode(x, w13_q, w13_sz, w2_q, w2_sz, routed[0], routed[1], 16)
        assert layer.shape == (3, 256) and layer.dtype == torch.float16
        layer, weights, ids = torch.ops._C_sm7x.awq_moe_decode_routed(x, w13_q, w13_sz, w2_q, w2_sz, gating, 8, True,
                                                                      16)
        assert layer.shape == (3, 256) and layer.dtype == torch.float16
        assert (weights.shape, weights.dtype, ids.shape, ids.dtype) == ((3, 8), torch.float32, (3, 8), torch.int32)


def test_conv_prefill_fake_keeps_the_layout_vllm_transposes_back():
    ops.load_kernels()
    with FakeTensorMode():
        x = torch.empty(7, 200, dtype=torch.float16, device="cuda").transpose(0, 1)  # mixed_qkv.T: [dim, tokens]
        weight = torch.empty(200, 4, dtype=torch.float16, device="cuda")
        states = torch.empty(3, 5, 200, dtype=torch.float16, device="cuda").transpose(1, 2)
        starts = torch.empty(3, dtype=torch.int32, device="cuda")
        out = torch.ops._C_sm7x.gdn_conv_prefill(x, weight, None, states, starts, None, None, True, -1, 0)
        assert out.shape == (200, 7) and out.stride() == x.stride() and out.dtype == torch.float16
