"""The grouped (MoE) kernel's instantiations as the layer and the benchmark see them (no GPU needed: the
registry is host data): every entry takes a row tile the row sort accepts, and every choice the layer
makes is an instantiated entry."""
import pytest

from vllm_sm7x import ops
from vllm_sm7x.ops import moe


@pytest.fixture(scope="module", autouse=True)
def kernels():
    ops.load_kernels()


def test_every_entry_takes_rows_the_sort_accepts():
    tiles = moe.grouped_tiles()
    assert (8, 1) in tiles and (16, 1) in tiles
    # The fused kernel's (8 or 16 rows, 1 or 2 column tiles) and the tiled kernel's grouped form (32 rows x
    # 8 column tiles); awq_moe_gemm finds an entry by (rows, column tiles), so no two may share them.
    assert all((rows in (8, 16) and columns in (1, 2)) or (rows, columns) == (32, 8) for rows, columns in tiles)
    assert (32, 8) in tiles and len(set(tiles)) == len(tiles)


@pytest.mark.parametrize("rows, experts", [(8, 8), (64, 8), (3 * 8, 64), (256 * 8, 256), (8192 * 8, 256)])
def test_the_layers_choice_is_an_instantiated_entry(rows, experts):
    assert moe.grouped_tile_for(rows, experts) in moe.grouped_tiles()


@pytest.mark.parametrize("rows, experts, expected", [
    (16 * 8, 128, (8, 1)),     # decode-sized: a few rows per expert
    (128 * 8, 256, (8, 1)),    # 4 rows per expert
    (256 * 8, 256, (32, 8)),   # 8 per expert: the tiled kernel's grouped form from here
    (8192 * 8, 256, (32, 8)),  # a prompt: 256 per expert
])
def test_prompt_sized_batches_take_the_tiled_form(rows, experts, expected):
    assert moe.grouped_tile_for(rows, experts) == expected


def test_the_tiled_form_starts_at_its_threshold():
    per_expert = moe.TILED_MIN_ROWS_PER_EXPERT
    assert moe.grouped_tile_for(per_expert * 256, 256) == (32, 8)
    assert moe.grouped_tile_for(per_expert * 256 - 1, 256) == (8, 1)
