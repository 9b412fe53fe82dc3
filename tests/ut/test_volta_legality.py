"""The Volta-legality check passes on our SM70-reachable code and fails when Turing-only code is
planted in it."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "tools" / "check_volta_legality.py"
sys.path.insert(0, str(ROOT / "tools"))
from check_volta_legality import missing_toolchain  # noqa: E402


pytestmark = pytest.mark.skipif(missing_toolchain() is not None, reason=str(missing_toolchain()))


def run_check(*files):
    return subprocess.run([sys.executable, str(CHECK), *map(str, files)], capture_output=True, text=True)


def test_sm70_reachable_code_assembles_for_volta():
    result = run_check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mma_gemm_sm70.cu" in result.stdout and "_sm75.cu" not in result.stdout


PLANTED = """
#include "core/mma_sm70.h"
#include "core/mma_sm75.h"
__global__ void planted(uint32_t* out) {
  __shared__ __align__(16) unsigned short tile[256];
  uint32_t r[2];
  sm7x::sm75::ldmatrix_x2(r, &tile[(threadIdx.x % 16) * 8]);
  out[threadIdx.x] = r[0] + r[1];
}
"""


def test_planted_ldmatrix_is_rejected(tmp_path):
    source = tmp_path / "planted_sm70.cu"
    source.write_text(PLANTED)
    result = run_check(source)
    assert result.returncode == 1
    assert "Feature 'ldmatrix' requires .target sm_75" in result.stdout


def test_the_volta_mma_itself_is_legal(tmp_path):
    source = tmp_path / "volta_mma_sm70.cu"
    source.write_text("""
#include "core/mma_sm70.h"
__global__ void volta(float* out, const uint32_t* in) {
  float d[8] = {};
  const uint32_t a[2] = {in[0], in[1]}, b[2] = {in[2], in[3]};
  sm7x::sm70::mma_m8n8k4(d, a, b);
  for (int i = 0; i < 8; ++i) out[threadIdx.x * 8 + i] = d[i];
}
""")
    result = run_check(source)
    assert result.returncode == 0, result.stdout
    assert "1 kernels, 1 m8n8k4 mma" in result.stdout
