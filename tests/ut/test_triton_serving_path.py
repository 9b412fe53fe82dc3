"""Every vLLM Triton kernel left on the Qwen3.5/3.6 serving path builds for a V100 and a T4, within
their shared memory and registers (tools/check_triton_sm7x.py). The GPU tests emulate those cards on
an H100, where Triton builds for sm_90 and such a failure could not show. Compiling needs no GPU."""
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton", reason="triton is not installed")
pytest.importorskip("vllm", reason="vllm is not installed")
TOOL = Path(__file__).resolve().parents[2] / "tools" / "check_triton_sm7x.py"


def test_the_serving_paths_triton_kernels_build_for_sm70_and_sm75():
    result = subprocess.run([sys.executable, str(TOOL), "--shapes", "27b-tp4"], capture_output=True, text=True,
                            timeout=900)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-2000:]
    assert result.returncode == 0, summary + "\n" + "\n".join(
        line for line in result.stdout.splitlines() if "FAIL" in line or "NO-FIT" in line)
    assert " 0 failing or not fitting" in summary
