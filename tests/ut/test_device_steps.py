"""tools/device/steps.sh: several gpu.sh commands in one device call, sharing its time budget."""
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

STEPS_SH = Path(__file__).resolve().parents[2] / "tools" / "device" / "steps.sh"

pytestmark = pytest.mark.skipif(not all(shutil.which(tool) for tool in ("bash", "timeout", "tar", "env")),
                                reason="needs bash, timeout, tar and env")

# Stands in for gpu.sh: records its arguments and environment; `fail` exits 3, `sleep N` sleeps in the
# foreground and says so if interrupted.
FAKE_GPU_SH = """#!/usr/bin/env bash
printf '%s\\n' "$@" > "$OUT/args.txt"
echo "skip_build=${SM7X_SKIP_BUILD:-} decode=${FLASH_ATTN_V100_DECODE:-} limit=$SM7X_CALL_LIMIT_S"
case "$1" in
  fail) exit 3 ;;
  sleep) trap 'echo interrupted; exit 130' INT; sleep "$2" ;;
esac
echo "done: $1"
"""


def run_steps(tmp_path: Path, *steps: str, limit: int = 575, min_left: int = 60) -> tuple[int, str, dict]:
    fake = tmp_path / "gpu.sh"
    fake.write_text(FAKE_GPU_SH)
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "SM7X_GPU_SH": str(fake), "SM7X_CALL_LIMIT_S": str(limit),
           "SM7X_STEP_MIN_S": str(min_left)}
    env.pop("SM7X_SKIP_BUILD", None)
    result = subprocess.run(["bash", str(STEPS_SH), *steps], env=env, capture_output=True, text=True, timeout=120)
    files = {}
    if (out / "steps.tgz").exists():
        with tarfile.open(out / "steps.tgz") as archive:
            files = {m.name: archive.extractfile(m).read().decode() for m in archive.getmembers() if m.isfile()}
    return result.returncode, result.stdout, files


def test_each_step_runs_in_its_own_folder_with_its_environment_and_one_build(tmp_path):
    rc, stdout, files = run_steps(tmp_path, 'test -k "sm75 and mtp_keeps"',
                                  "FLASH_ATTN_V100_DECODE=pairs profile sm75")
    assert rc == 0, stdout
    # The step's quoting is kept: -k gets one expression.
    assert files["step1/args.txt"].splitlines() == ["test", "-k", "sm75 and mtp_keeps"]
    assert files["step2/args.txt"].splitlines() == ["profile", "sm75"]
    assert files["step1/step.txt"].strip() == 'test -k "sm75 and mtp_keeps"'
    assert "skip_build= decode= limit=" in files["step1/console.log"]  # the first step builds
    assert "skip_build=1 decode=pairs" in files["step2/console.log"]
    assert "== step 2 (exit 0" in stdout and "done: profile" in stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["steps.tgz"]  # one file comes back


def test_a_failed_step_fails_the_call_and_the_next_step_still_runs(tmp_path):
    rc, stdout, files = run_steps(tmp_path, "fail now", "test")
    assert rc == 1
    assert "== step 1 (exit 3" in stdout and "== step 2 (exit 0" in stdout
    assert "done: test" in files["step2/console.log"]


def test_the_budget_stops_a_step_with_sigint_and_skips_what_cannot_start(tmp_path):
    rc, stdout, files = run_steps(tmp_path, "sleep 60", "test", limit=3, min_left=1)
    assert rc == 1
    assert "interrupted" in files["step1/console.log"]  # SIGINT reached it: pytest would print its summary
    assert "== step 2 skipped" in stdout and "step2/step.txt" not in files
