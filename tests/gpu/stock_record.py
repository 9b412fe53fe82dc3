"""Where stock vLLM's recorded runs live, and the key that names one (tests/gpu/stock_runs/README.md)."""
import hashlib
import json
from pathlib import Path

STOCK_RUNS = Path(__file__).resolve().parent / "stock_runs"


def stock_run_key(checkpoint: Path, settings: list) -> str:
    """16 hex digits over settings (JSON: GPU model, vLLM version, script, prompts, engine arguments...)
    and every byte of the checkpoint's weights and config: a change to any of them names a new run."""
    files = hashlib.sha256()
    for path in sorted([*checkpoint.glob("*.safetensors"), checkpoint / "config.json"]):
        files.update(path.name.encode())
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 24), b""):
                files.update(chunk)
    return hashlib.sha256(json.dumps([settings, files.hexdigest()]).encode()).hexdigest()[:16]
