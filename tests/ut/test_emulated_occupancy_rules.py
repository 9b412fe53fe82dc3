"""The emulated cards' CTAs per SM (csrc/core/emulated_occupancy.h: card_ctas_per_sm), compiled as host
code with the CUDA toolkit: shared memory, threads, CTA slots and registers, as V100 and Turing allot them."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# (card, threads per CTA, static shared bytes, registers per thread) -> CTAs per SM
CASES = {
    ("Sm75", 128, 41088, 170): 1,   # decode attention, head_dim 256, two K/V tiles: 64 KB holds one
    ("Sm70", 128, 41088, 170): 2,   # 96 KB holds two (registers would allow two as well: 176 x 128)
    ("Sm75", 128, 24704, 168): 2,   # one tile buffer: shared memory allows two
    ("Sm70", 128, 24704, 168): 3,   # 168 registers: 5376 per warp, three CTAs of four warps
    ("Sm70", 128, 24704, 170): 2,   # 170 rounds up to 176 per thread: two
    ("Sm75", 256, 4608, 64): 4,     # AWQ fused kernel, 8 warps: Turing's 1024 threads per SM
    ("Sm70", 256, 4608, 64): 4,     # V100: 2048 threads would allow 8; 64 registers x 256 allow 4
    ("Sm75", 32, 0, 16): 16,        # tiny CTAs: Turing's 16 CTA slots
    ("Sm70", 32, 0, 16): 32,        # V100's 32
}


def test_card_ctas_per_sm(tmp_path):
    nvcc = shutil.which("nvcc") or str(Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "bin" / "nvcc")
    if not Path(nvcc).exists():
        pytest.skip("no nvcc: the occupancy rules are checked where the CUDA toolkit is installed")
    lines = "".join(
        f'  std::printf("%d\\n", sm7x::card_ctas_per_sm(sm7x::card_limits<sm7x::{card}>(), {threads}, {shared}, '
        f"{registers}));\n" for card, threads, shared, registers in CASES)
    source = tmp_path / "occupancy.cu"
    source.write_text(f'#include <cstdio>\n#include "core/emulated_occupancy.h"\nint main() {{\n{lines}}}\n')
    subprocess.run([nvcc, "-std=c++17", f"-I{ROOT / 'csrc'}", str(source), "-o", str(tmp_path / "occupancy")],
                   check=True, capture_output=True, timeout=600)
    printed = subprocess.run([str(tmp_path / "occupancy")], check=True, capture_output=True, text=True).stdout
    assert [int(n) for n in printed.split()] == list(CASES.values())
