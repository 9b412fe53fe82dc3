"""tools/device/caches.sh: the lent machine's compile caches go home in parts and come back intact."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

CACHES_SH = Path(__file__).resolve().parents[2] / "tools" / "device" / "caches.sh"

pytestmark = pytest.mark.skipif(not all(shutil.which(tool) for tool in ("bash", "xz", "tar", "split")),
                                reason="needs bash, xz, tar and split")


def caches(function: str, home: Path, cwd: Path, out: Path, stash: Path) -> str:
    env = {**os.environ, "HOME": str(home), "OUT": str(out), "SM7X_CACHE_STASH": str(stash)}
    result = subprocess.run(["bash", "-c", f"source {CACHES_SH} && {function}"], cwd=cwd, env=env,
                            capture_output=True, text=True, check=True)
    return result.stdout


def test_saved_caches_come_back_once_per_machine_from_parts(tmp_path):
    home, out, stash = tmp_path / "home", tmp_path / "out", tmp_path / "stash"
    kernel = home / ".triton" / "cache" / "abc" / "kernel.cubin"
    graph = home / ".cache" / "vllm" / "torch_compile_cache" / "rank_0_0" / "model"
    payload = os.urandom(17 * 2 ** 20)  # incompressible: more than one 15 MiB part
    kernel.parent.mkdir(parents=True)
    kernel.write_bytes(payload)
    graph.parent.mkdir(parents=True)
    graph.write_text("compiled")

    assert "in 2 part(s)" in caches("save_caches", home, tmp_path, out, stash)
    parts = sorted(p.name for p in (out / "caches").iterdir())
    assert parts == ["device-caches.tar.xz.part-0", "device-caches.tar.xz.part-1"]

    # Brought home into .device/caches, carried to a fresh machine and stashed there.
    checkout = tmp_path / "checkout"
    shutil.copytree(out / "caches", checkout / ".device" / "caches")
    shutil.rmtree(home)
    home.mkdir()
    caches("stash_caches", home, checkout, out, stash)
    shutil.rmtree(checkout / ".device")  # a later call carries nothing: the stash serves it
    assert "restored from" in caches("restore_caches", home, checkout, out, stash)
    assert kernel.read_bytes() == payload and graph.read_text() == "compiled"

    kernel.unlink()  # the marker keeps a second call from unpacking again
    assert caches("restore_caches", home, checkout, out, stash) == ""
    assert not kernel.exists()


def test_nothing_to_save_is_said_and_restoring_nothing_is_silent(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    assert "nothing to save" in caches("save_caches", home, tmp_path, tmp_path / "out", tmp_path / "stash")
    assert caches("restore_caches", home, tmp_path, tmp_path / "out", tmp_path / "stash") == ""


def test_a_failed_save_leaves_no_parts_behind(tmp_path):
    home, out, fake_bin = tmp_path / "home", tmp_path / "out", tmp_path / "bin"
    (home / ".triton" / "cache").mkdir(parents=True)
    (home / ".triton" / "cache" / "kernel").write_text("x")
    fake_bin.mkdir()
    (fake_bin / "xz").write_text("#!/bin/sh\nexit 1\n")  # a compressor that dies half-way
    (fake_bin / "xz").chmod(0o755)
    env = {**os.environ, "HOME": str(home), "OUT": str(out), "PATH": f"{fake_bin}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-c", f"source {CACHES_SH} && save_caches"], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 1 and "save FAILED" in result.stdout
    assert not (out / "caches").exists()
