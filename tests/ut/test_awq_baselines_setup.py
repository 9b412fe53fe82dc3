"""Building the Marlin baseline outside an engine: vLLM's layers ask the tensor-parallel group for their
shard, so the benchmark makes a group of its own process first (in a subprocess here: the group is
process-wide state)."""
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="vllm is not installed")

ROOT = Path(__file__).resolve().parents[2]


def test_marlin_layers_get_a_one_process_tensor_parallel_group():
    script = (f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r})\n"
              "from awq_baselines import one_process_tensor_parallel_group\n"
              "from vllm.distributed import get_tensor_model_parallel_rank, get_tensor_model_parallel_world_size\n"
              "one_process_tensor_parallel_group()\n"
              "one_process_tensor_parallel_group()  # a second call finds the group and keeps it\n"
              "print('TP', get_tensor_model_parallel_world_size(), get_tensor_model_parallel_rank())\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "TP 1 0" in result.stdout.splitlines()
