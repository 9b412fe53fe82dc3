"""Starts `vllm-sm7x serve-demo` (vLLM's OpenAI server on a tiny AWQ model, plugin active) for the
GPU end-to-end tests, waits until it is healthy and stops it afterwards."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.gpu.engine_env import engine_env

HERE = Path(__file__).resolve().parent


@contextlib.contextmanager
def demo_server(emulate: str, port: int, cache: Path, log: Path, extra_args=(), extra_env=None, startup_s: int = 400,
                preset: str = "qwen3-tiny"):
    env = engine_env(**(extra_env or {}))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))  # scripted_output
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "vllm_sm7x.entrypoints.cli", "serve-demo", "--emulate",
                                    emulate, "--port", str(port), "--cache", str(cache), "--preset", preset, "--",
                                    *extra_args],
                                   stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.time() + startup_s
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited {process.returncode}:\n{log.read_text()[-6000:]}")
            try:
                urllib.request.urlopen(f"http://localhost:{port}/health", timeout=2)
                break
            except OSError:
                if time.time() > deadline:
                    pytest.fail(f"server not healthy after {startup_s} s:\n{log.read_text()[-6000:]}")
                time.sleep(2)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
