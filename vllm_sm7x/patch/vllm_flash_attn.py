"""Lets `import vllm.vllm_flash_attn` succeed where vLLM's FlashAttention extensions are absent
(every SM70/SM75 build). See the index in vllm_sm7x/patch/__init__.py."""
from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import types

logger = logging.getLogger("vllm.sm7x")
PACKAGE = "vllm.vllm_flash_attn"
MISSING_EXTENSIONS = "requires the CUDA flash attention extensions"


def allow_missing_extensions() -> bool:
    """Installs the package without its import-time check when that check is what fails.
    Returns True if it installed it."""
    try:
        importlib.import_module(PACKAGE)
        return False
    except ImportError as e:
        if MISSING_EXTENSIONS not in str(e):
            return False  # some other breakage: let vLLM report it where it happens
    spec = importlib.util.find_spec(PACKAGE)
    package = types.ModuleType(PACKAGE, "vLLM's FlashAttention package without FA2/FA3 kernels (sm_80+ only).")
    package.__spec__ = spec
    package.__path__ = list(spec.submodule_search_locations)
    package.__package__ = PACKAGE
    sys.modules[PACKAGE] = package
    interface = importlib.import_module(f"{PACKAGE}.flash_attn_interface")
    for name in ("FA2_AVAILABLE", "FA3_AVAILABLE", "compile_flash_attn_varlen_func_from_specs",
                 "fa_version_unsupported_reason", "flash_attn_varlen_func", "get_scheduler_metadata",
                 "is_fa_version_supported"):
        setattr(package, name, getattr(interface, name))
    setattr(sys.modules["vllm"], "vllm_flash_attn", package)
    logger.debug("vllm-sm7x: %s installed without FA2/FA3 kernels (none exist for SM70/SM75)", PACKAGE)
    return True
