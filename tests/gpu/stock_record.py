"""Where stock vLLM's recorded runs live, the key that names one, and how one is written
(tests/gpu/stock_runs/README.md)."""
import hashlib
import json
import os
import tempfile
from pathlib import Path

STOCK_RUNS = Path(__file__).resolve().parent / "stock_runs"
# The engine runs with skip_tokenizer_init: the tokenizer's files cannot change its token ids. The marker
# is written after the checkpoint is complete (tests/gpu/conftest.py); checkpoint_info.json describes the
# checkpoint for people (vllm_sm7x.checkpoints).
NOT_READ_BY_THE_ENGINE = ("tokenizer", "vocab", "merges", "special_tokens", "sm7x-checkpoint-complete",
                          "checkpoint_info.json")


def files_digest(paths) -> str:
    """sha256 over the names and bytes of the files, in name order."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 24), b""):
                digest.update(chunk)
    return digest.hexdigest()


def stock_run_key(checkpoint: Path, settings: list) -> str:
    """16 hex digits over settings (JSON: GPU model, versions, binaries, script, prompts, engine arguments,
    environment...) and every byte of the checkpoint's files that the engine reads: a change to any of
    them names a new run."""
    files = [p for p in checkpoint.iterdir() if p.is_file() and not p.name.startswith(NOT_READ_BY_THE_ENGINE)]
    return hashlib.sha256(json.dumps([settings, files_digest(files)]).encode()).hexdigest()[:16]


def recorded_stock_run(key: str, machine_cache: Path | None = None) -> Path | None:
    """The record of the run with this key: committed (named after whatever checkpoint folder made it:
    the key alone decides), else one the machine kept in machine_cache; None if neither has it."""
    for folder in (STOCK_RUNS, machine_cache):
        found = sorted(folder.glob(f"*-stock-run-{key}.json")) if folder is not None else []
        if found:
            return found[0]
    return None


def write_atomically(path: Path, text: str) -> None:
    """A run stopped mid-write (the call's time limit) leaves no truncated record behind, and writers on
    several GPUs at once (gpu.sh test-per-gpu) each write their own temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=path.name, suffix=".partial",
                                     delete=False) as partial:
        partial.write(text)
    os.replace(partial.name, path)
