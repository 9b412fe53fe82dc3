"""The head_dim-256 decode kernels (Qwen3.5/3.6's full attention) fit two CTAs per SM on a Turing card
and three on a V100, by what ptxas allots them there: at one CTA per SM (40 KB of shared memory, the
earlier K and V tiles) decode took 1.4-1.8x as long in emulation (docs/benchmarks.md)."""
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import check_volta_legality as check  # noqa: E402

pytestmark = pytest.mark.skipif(check.missing_toolchain() is not None, reason=str(check.missing_toolchain()))

SOURCE = ROOT / "flash-attention-v100" / "csrc" / "decode" / "decode_attention.cu"
# card -> (shared memory per SM, threads per SM, CTA slots), as csrc/core/arch.h has them
CARDS = {"sm75": (64 * 1024, 1024, 16), "sm70": (96 * 1024, 2048, 32)}


def ctas_per_sm(card: str, threads: int, registers: int, shared: int) -> int:
    """The rule of csrc/core/emulated_occupancy.h (card_ctas_per_sm), for a decode kernel's CTA."""
    shared_per_sm, threads_per_sm, slots = CARDS[card]
    warp_registers = -(-registers * 32 // 256) * 256
    by_shared = shared_per_sm // shared if shared else slots
    return min(slots, threads_per_sm // threads, 65536 // (warp_registers * threads // 32), by_shared)


def d256_decode_kernels(ptxas_verbose: str) -> dict[str, tuple[int, int, int]]:
    """decode_kernel_d256<kWarps, kRowsPerWarp, Kv> -> (threads, registers, shared memory)."""
    found = {}
    for name, (registers, shared) in check.kernel_resources(ptxas_verbose).items():
        warps = re.search(r"decode_kernel_d256ILi(\d+)E", name)
        if warps:
            found[name] = (int(warps.group(1)) * 32, registers, shared)
    assert len(found) == 6, f"expected the 3 row forms x 2 cache formats of decode_kernel_d256, got {sorted(found)}"
    return found


def test_turing_holds_two_d256_decode_ctas_per_sm():
    from setup_support.cuda_archs import find_cuda_home

    result = subprocess.run([str(find_cuda_home() / "bin" / "nvcc"), "-std=c++17", "-arch=sm_75", "-Xptxas", "-v",
                             f"-I{ROOT / 'csrc'}", f"-I{ROOT / 'flash-attention-v100' / 'csrc'}", "-c", str(SOURCE),
                             "-o", "/dev/null"], capture_output=True, text=True, check=True, timeout=900)
    for name, (threads, registers, shared) in d256_decode_kernels(result.stdout + result.stderr).items():
        assert ctas_per_sm("sm75", threads, registers, shared) >= 2, f"{name}: {registers} registers, {shared} B smem"


def test_a_v100_holds_three_d256_decode_ctas_per_sm():
    from setup_support.cuda_archs import find_cuda_home

    ptxas = check.find_ptxas()
    with tempfile.TemporaryDirectory() as workdir:
        _, verbose = check.assemble_for_sm70(SOURCE, find_cuda_home() / "bin" / "nvcc", ptxas,
                                             check.PTX_ISA_OF_PTXAS[check.ptxas_version(ptxas)], Path(workdir))
    for name, (threads, registers, shared) in d256_decode_kernels(verbose).items():
        assert ctas_per_sm("sm70", threads, registers, shared) >= 3, f"{name}: {registers} registers, {shared} B smem"
