"""Where stock vLLM's recorded runs live, the key that names one, and how one is written
(tests/gpu/stock_runs/README.md)."""
import hashlib
import json
import os
from pathlib import Path

STOCK_RUNS = Path(__file__).resolve().parent / "stock_runs"
# The engine runs with skip_tokenizer_init: the tokenizer's files cannot change its token ids. The marker
# is written after the checkpoint is complete (tests/gpu/conftest.py).
NOT_READ_BY_THE_ENGINE = ("tokenizer", "vocab", "merges", "special_tokens", "sm7x-checkpoint-complete")


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


def write_atomically(path: Path, text: str) -> None:
    """A run stopped mid-write (the call's time limit) leaves no truncated record behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)
