"""Under the emulation switch a newer GPU holds the decode kernel no more often per SM than the
emulated card: a T4 (64 KB of shared memory per SM) fits two CTAs of the head_dim-256 kernel, which
takes 24 KB of static shared memory, while an H200 would fit more."""
import pytest
import torch

pytestmark = pytest.mark.gpu

CARD_SHARED_BYTES = {"sm70": 96 * 1024, "sm75": 64 * 1024}
TILE_TOKENS = 32  # decode_attention.h: kDecodeTileTokens


def decode_shared_bytes(head_dim: int, rows_per_cta: int) -> int:
    """The SIMT decode kernel's static shared memory: queries (fp32 at up to 2 rows per warp, else fp16)
    and one tile buffer for K, then V (rows padded by four words)."""
    pairs = head_dim // 2
    query_pair_bytes = 8 if rows_per_cta <= 8 else 4
    return rows_per_cta * pairs * query_pair_bytes + TILE_TOKENS * (pairs + 4) * 4


def rows_per_cta(query_rows: int) -> int:
    return 4 if query_rows <= 4 else 8 if query_rows <= 8 else 16


def tensor_core_decode_shared_bytes(head_dim: int, row_groups: int = 1) -> int:
    """The tensor-core decode kernel's (decode_mma_kernel.cuh), on row_groups groups of 16 query rows:
    the fp16 query rows, one buffer for 16 keys of K then V^T, four head_dim quarters' partial scores,
    P in fp16, a factor per row (padded rows)."""
    keys, rows, pad = 16, 16 * row_groups, 8
    kv_halves = max(keys * (head_dim + pad), head_dim * (keys + pad))
    return rows * (head_dim + pad) * 2 + kv_halves * 2 + 4 * rows * (keys + 1) * 4 + rows * (keys + pad) * 2 + rows * 4


def rows8_decode_shared_bytes(head_dim: int) -> int:
    """The sm75 path's 8-row kernel's (decode_mma8_sm75.cu): its 4 warps' row maxima and sums, and two
    fp32 slices of the 8 rows' outputs."""
    return 2 * 4 * 8 * 4 + 2 * 8 * head_dim * 4


@pytest.mark.parametrize("path", ["sm70", "sm75"])
@pytest.mark.parametrize("head_dim", [64, 128, 256])
@pytest.mark.parametrize("query_rows", [1, 6, 15, 30])
def test_emulation_holds_the_cards_ctas_per_sm(fa, path, head_dim, query_rows):
    occupancy = fa.decode_occupancy(head_dim, query_rows, path)
    # flash_api.cpp's rule
    volta_rule = "mma32" if query_rows > 16 else "mma" if query_rows > 8 else "mma8"
    assert occupancy["kernel"] == ("mma8" if path == "sm75" else volta_rule)
    shared = {"simt": lambda: decode_shared_bytes(head_dim, rows_per_cta(query_rows)),
              "mma": lambda: tensor_core_decode_shared_bytes(head_dim),
              "mma32": lambda: tensor_core_decode_shared_bytes(head_dim, row_groups=2),
              "mma8": lambda: rows8_decode_shared_bytes(head_dim)}[occupancy["kernel"]]()
    by_shared_memory = CARD_SHARED_BYTES[path] // shared
    assert 1 <= occupancy["card_ctas_per_sm"] <= by_shared_memory
    if torch.cuda.get_device_capability() >= (8, 0):  # emulating the card
        assert occupancy["device_ctas_per_sm"] == occupancy["card_ctas_per_sm"]
    elif {"sm70": (7, 0), "sm75": (7, 5)}[path] == torch.cuda.get_device_capability():  # on the card itself
        assert occupancy["padding_bytes"] == 0


# 24 KB per CTA: a Turing card fits two; a V100 three, as the 8-row block's 80 registers per thread
# (8 warps) allow. A newer GPU's 64K registers per SM hold the kernel to three as well, so only Turing
# needs padding.
@pytest.mark.parametrize("path, ctas, padded", [("sm75", 2, True), ("sm70", 3, False)])
def test_head_dim_256_decode_is_held_to_the_cards_shared_memory(fa, path, ctas, padded, monkeypatch):
    monkeypatch.setenv("FLASH_ATTN_V100_DECODE", "simt")  # both paths default to the 8-row kernel
    occupancy = fa.decode_occupancy(256, 6, path)
    assert occupancy["card_ctas_per_sm"] == ctas
    if torch.cuda.get_device_capability() >= (8, 0):
        assert occupancy["device_ctas_per_sm"] == ctas
        assert (occupancy["padding_bytes"] > 0) == padded


# The tensor-core decode form on 32 query rows (8 warps; MTP verification's 30 rows take it): 39.5 KB
# at head_dim 256, one CTA per SM on a T4, two on a V100 (118 registers there), as many warps per SM as
# the 16-row form's two or three CTAs of 4 warps.
@pytest.mark.parametrize("path, ctas", [("sm75", 1), ("sm70", 2)])
def test_the_32_row_tensor_core_decode_is_held_to_the_card(fa, path, ctas, monkeypatch):
    monkeypatch.setenv("FLASH_ATTN_V100_DECODE", "mma32")  # the sm75 path's default is the 8-row kernel
    occupancy = fa.decode_occupancy(256, 30, path)
    assert occupancy["kernel"] == "mma32"
    assert occupancy["card_ctas_per_sm"] == ctas
    if torch.cuda.get_device_capability() >= (8, 0):
        assert occupancy["device_ctas_per_sm"] == ctas


def test_both_cards_launch_in_one_process_in_either_order(fa, monkeypatch):
    # The padding limit is the kernel's own: a smaller one set for the V100 must not fail the T4's
    # larger padding afterwards (it did: "invalid argument" at launch).
    torch.manual_seed(0)
    q = torch.randn(1, 6, 256, device="cuda", dtype=torch.float16)
    k_cache = torch.randn(8, 16, 1, 256, device="cuda", dtype=torch.float16)
    v_cache = torch.randn_like(k_cache)
    block_table = torch.arange(8, device="cuda", dtype=torch.int32)[None]
    seqlens = torch.tensor([100], device="cuda", dtype=torch.int32)
    outs = {"sm70": [], "sm75": []}
    for path in ("sm70", "sm75", "sm70", "sm75"):
        monkeypatch.setenv("VLLM_SM7X_EMULATE", path)
        outs[path].append(fa.flash_attn_with_kvcache(q[:, None], k_cache, v_cache, cache_seqlens=seqlens,
                                                     block_table=block_table, causal=True))
    torch.cuda.synchronize()
    for first, second in outs.values():  # each path's mma sums in its own order: compare within a path
        assert torch.equal(first, second)
    assert (outs["sm70"][0].float() - outs["sm75"][0].float()).abs().max() < 1e-2


def test_occupancy_rejects_unknown_paths(fa):
    with pytest.raises(ValueError, match="path must be 'sm70' or 'sm75'"):
        fa.decode_occupancy(256, 6, "auto")
    with pytest.raises(ValueError, match="head_dim must be 64, 128 or 256"):
        fa.decode_occupancy(96, 6, "sm75")


# The 8-row kernel (the sm75 path's default, forced on sm70): 16.6-17.2 KB of shared memory at head_dim
# 256, so its registers (221-226 per thread on sm_75 and sm_70) set two CTAs per SM, on the cards and (64K
# registers per SM too) on a newer GPU alike.
@pytest.mark.parametrize("path", ["sm70", "sm75"])
def test_the_8_row_kernel_is_held_to_the_card(fa, path, monkeypatch):
    if path == "sm70":
        monkeypatch.setenv("FLASH_ATTN_V100_DECODE", "mma8")
    occupancy = fa.decode_occupancy(256, 6, path)
    assert occupancy["kernel"] == "mma8"
    assert occupancy["card_ctas_per_sm"] == 2
    if torch.cuda.get_device_capability() >= (8, 0):
        assert occupancy["device_ctas_per_sm"] == occupancy["card_ctas_per_sm"]


# The pair kernel (sm75 only): 24.3 KB of shared memory at head_dim 256 (16 rows' fp32 outputs and the
# pairs' score exchange) and 212-213 registers per thread (nvcc 13, sm_75): two CTAs per SM on a T4, and a
# newer GPU held to that. At head_dim 128 (139-143 registers) the registers allow three.
@pytest.mark.parametrize("head_dim, ctas", [(128, 3), (256, 2)])
def test_the_pair_kernel_is_held_to_the_card(fa, head_dim, ctas, monkeypatch):
    monkeypatch.setenv("FLASH_ATTN_V100_DECODE", "pairs")
    occupancy = fa.decode_occupancy(head_dim, 30, "sm75")
    assert occupancy["kernel"] == "pairs"
    assert occupancy["card_ctas_per_sm"] == ctas
    if torch.cuda.get_device_capability() >= (8, 0):
        assert occupancy["device_ctas_per_sm"] == occupancy["card_ctas_per_sm"]
