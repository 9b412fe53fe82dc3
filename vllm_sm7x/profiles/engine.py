"""The profile applied to vLLM's EngineArgs before the engine config is built: the settings the user
left unset are filled in and the table is logged once.

"Unset": None for fields without a real default; for the few with one (gpu_memory_utilization,
mamba_cache_mode), the command line gets a look-alike default (`UnsetFloat`/`UnsetStr`, equal to
vLLM's value) so an explicit `--gpu-memory-utilization 0.9` still counts as set. Through the Python
API (`LLM(...)`) a value equal to vLLM's default counts as unset."""
from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

logger = logging.getLogger("vllm.sm7x")


class UnsetFloat(float):
    """vLLM's default value, marked as not given by the user."""


class UnsetStr(str):
    """vLLM's default value, marked as not given by the user."""


PROFILE_MODES = ("auto", "on", "off")
MARKED_DEFAULTS = {"gpu_memory_utilization": UnsetFloat, "mamba_cache_mode": UnsetStr}
# EngineArgs fields the profile may fill (resolve.Profile.engine_args names them) and may be given by users.
PROFILED_FIELDS = ("max_model_len", "max_num_seqs", "max_num_batched_tokens", "speculative_config",
                   "enable_prefix_caching", "kv_cache_memory_bytes", "gpu_memory_utilization", "mamba_cache_mode",
                   "language_model_only", "cudagraph_capture_sizes", "limit_mm_per_prompt", "kv_cache_dtype")


def mark_parser_defaults(parser: argparse.ArgumentParser) -> None:
    """Command-line defaults that look like vLLM's but say "not given"."""
    for field, marker in MARKED_DEFAULTS.items():
        default = parser.get_default(field)
        if default is not None and not isinstance(default, marker):
            parser.set_defaults(**{field: marker(default)})


def user_settings(engine_args) -> dict:
    """The profiled fields the user gave: not None, not marked, and not vLLM's own default."""
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(engine_args)
                if f.name in PROFILED_FIELDS and (f.default is not dataclasses.MISSING
                                                  or f.default_factory is not dataclasses.MISSING)}
    given = {}
    for name in PROFILED_FIELDS:
        value = getattr(engine_args, name, None)
        if value is None or isinstance(value, (UnsetFloat, UnsetStr)) or value == defaults.get(name):
            continue
        given[name] = value
    # Graph sizes given another way (vLLM refuses a second list, or a maximum that contradicts it).
    compilation = getattr(engine_args, "compilation_config", None)
    if "cudagraph_capture_sizes" not in given and (
            getattr(engine_args, "max_cudagraph_capture_size", None) is not None
            or getattr(compilation, "cudagraph_capture_sizes", None) is not None
            or getattr(compilation, "max_cudagraph_capture_size", None) is not None):
        given["cudagraph_capture_sizes"] = "given through --max-cudagraph-capture-size or --compilation-config"
    return given


def profile_mode() -> str:
    """VLLM_SM7X_PROFILE, checked: one of PROFILE_MODES."""
    from vllm_sm7x import envs

    mode = envs.VLLM_SM7X_PROFILE
    if mode not in PROFILE_MODES:
        raise ValueError(f"VLLM_SM7X_PROFILE={mode!r} is not one of auto, on, off (auto: the serving profile for "
                         "Qwen3.5/3.6 checkpoints; on: for every model; off: vLLM's defaults)")
    return mode


def reason_not_applied(facts, mode: str) -> str | None:
    """Why the server does not apply the profile to this model in this mode; None when it does."""
    if mode == "off":
        return "VLLM_SM7X_PROFILE=off"
    if mode == "auto" and not facts.is_qwen35:
        return (f"{facts.architecture} is not a Qwen3.5/3.6 model, for which its rules are written "
                "(VLLM_SM7X_PROFILE=on applies it anyway)")
    return None


def apply_profile(engine_args, mode: str):
    """Fills engine_args' unset fields from the profile and returns it (None when the model is not
    profiled: a log line says why, and vLLM's defaults stand). `mode` "auto" profiles Qwen3.5/3.6
    checkpoints only. Impossible combinations raise."""
    from vllm_sm7x.activation import visible_gpus
    from vllm_sm7x.profiles.model_facts import ModelFactsError, checkpoint_folder, read_model_facts
    from vllm_sm7x.profiles.resolve import Gpus, resolve_profile

    gpus = visible_gpus()
    if not gpus:
        logger.info("vllm-sm7x profile skipped: no GPU visible through NVML")
        return None
    try:
        folder = checkpoint_folder(engine_args.model, getattr(engine_args, "revision", None),
                                   getattr(engine_args, "download_dir", None))
        facts = read_model_facts(folder)
    except ModelFactsError as error:  # vLLM reports what it cannot load; the profile only steps aside
        logger.info("vllm-sm7x profile skipped: %s", error)
        return None
    skipped = reason_not_applied(facts, mode)
    if skipped:
        logger.info("vllm-sm7x profile skipped: %s", skipped)
        return None
    profile = resolve_profile(facts, Gpus(gpus[0].name, min(g.memory_bytes for g in gpus), len(gpus)),
                              engine_args.tensor_parallel_size, user_settings(engine_args),
                              engine_args.pipeline_parallel_size)
    for name, value in profile.engine_args().items():
        setattr(engine_args, name, value)
    read_from = "" if Path(engine_args.model) == folder else f", read from {folder}"
    logger.info("vllm-sm7x profile for %s%s (VLLM_SM7X_PROFILE=off disables it; flags you pass win):\n%s",
                engine_args.model, read_from, profile.table())
    return profile


def restore_marked_defaults(engine_args) -> None:
    """Markers become plain values again before vLLM validates its config."""
    for field, marker in MARKED_DEFAULTS.items():
        value = getattr(engine_args, field, None)
        if isinstance(value, marker):
            setattr(engine_args, field, marker.__mro__[1](value))
