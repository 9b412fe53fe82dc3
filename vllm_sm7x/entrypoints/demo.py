"""`vllm-sm7x serve-demo`: the main job on any NVIDIA GPU in one command. Builds a tiny AWQ checkpoint
(random weights, seconds; `qwen3-tiny` by default, or the Qwen3.5 hybrid or Qwen3.6 MoE layout) in a
cache folder if absent, then starts vLLM's OpenAI server on it through the same entry point users
type, with our plugin active (emulating a Turing card on newer GPUs)."""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from vllm_sm7x.activation import Gpu, native_path, visible_gpus

# Presets the demo serves: dense Qwen3, the Qwen3.5 hybrid (Gated DeltaNet + gated attention), that
# hybrid with an MTP head (the serving profile turns MTP on for it), the Qwen3.6 MoE hybrid. The
# hybrids declare a vision tower without weights: served text-only.
DEMO_PRESETS = {"qwen3-tiny": [], "qwen35-tiny": ["--language-model-only"],
                "qwen35-tiny-mtp": ["--language-model-only"], "qwen36-35b-a3b-tiny": ["--language-model-only"]}
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vllm-sm7x"


def choose_emulation(gpus: list[Gpu], requested: str | None) -> tuple[str | None, str]:
    """(value for VLLM_SM7X_EMULATE or None, what to tell the user). Raises SystemExit with the
    fix when no GPU can run the demo."""
    if not gpus:
        raise SystemExit("serve-demo needs an NVIDIA GPU and its driver, and NVML sees none here "
                         "(check `nvidia-smi`; in a container, pass the GPU through, e.g. --gpus all)")
    if requested:
        return requested, f"emulating {requested.upper()} on {gpus[0].name} (--emulate)"
    paths = {native_path(gpu.capability) for gpu in gpus}
    if len(paths) == 1 and None not in paths:
        return None, f"native {paths.pop().upper()} path on {gpus[0].name}"
    older = [gpu for gpu in gpus if gpu.capability < (7, 0)]
    if older:
        raise SystemExit(f"{older[0].name} (compute capability {older[0].capability[0]}.{older[0].capability[1]}) "
                         "is older than Volta: vLLM and vllm-sm7x need SM70 or newer")
    return "sm75", (f"{gpus[0].name} is not a V100/T4-class GPU: emulating SM75 so the plugin's kernels run "
                    "(use --emulate sm70 for the Volta path)")


def served_name(preset: str) -> str:
    return f"{preset}-awq"


def ensure_checkpoint(cache: Path, preset: str = "qwen3-tiny") -> Path:
    folder = cache / served_name(preset)
    if not (folder / "config.json").exists() or not (folder / "model.safetensors").exists():
        from vllm_sm7x.checkpoints import make_checkpoint

        print(f"building the demo checkpoint in {folder} ...", flush=True)
        make_checkpoint(preset, folder)
    return folder


def server_command(model: Path, port: int, extra: list[str], preset: str = "qwen3-tiny") -> list[str]:
    return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
            "--served-model-name", served_name(preset), "--port", str(port), "--max-model-len", "1024",
            "--gpu-memory-utilization", "0.3", "--enable-auto-tool-choice", "--tool-call-parser", "qwen3_coder",
            "--reasoning-parser", "qwen3", *DEMO_PRESETS[preset], *extra]


def try_it(port: int, preset: str = "qwen3-tiny") -> str:
    body = ('{"model": "' + served_name(preset) + '", "messages": [{"role": "user", "content": "Hello"}], '
            '"max_tokens": 32}')
    return f"curl http://localhost:{port}/v1/chat/completions -H 'Content-Type: application/json' -d '{body}'"


def serve_demo(cache: Path, port: int, emulate: str | None, extra: list[str], dry_run: bool,
               preset: str = "qwen3-tiny") -> int:
    emulate, how = choose_emulation(visible_gpus(), emulate)
    model = ensure_checkpoint(cache, preset) if not dry_run else cache / served_name(preset)
    command = server_command(model, port, extra, preset)
    env = dict(os.environ)
    if emulate:
        env["VLLM_SM7X_EMULATE"] = emulate
    print(f"vllm-sm7x demo: {how}. The model has random weights: answers are gibberish; the point is "
          "that the whole serving path runs on our kernels.")
    print("starting: " + (f"VLLM_SM7X_EMULATE={emulate} " if emulate else "") + shlex.join(command))
    print(f"when it says 'Application startup complete', try:\n  {try_it(port, preset)}", flush=True)
    if dry_run:
        return 0
    os.execvpe(command[0], command, env)  # the server replaces this process (Ctrl-C stops it)
    return 1  # not reached
