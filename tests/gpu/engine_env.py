"""The environment of the engine processes the GPU tests start."""
import os

# The serving profile (on by default for Qwen3.5/3.6) would change the engine settings the tests
# compare against stock vLLM; the test of the profile turns it back on.
PINNED = {"VLLM_SM7X_PROFILE": "off"}


def engine_env(**settings: str) -> dict:
    """This process's environment without our variables (none leaks in from the caller's shell), the
    pinned ones, then `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VLLM_SM7X", "_VLLM_SM7X"))}
    env.update(PINNED)
    env.update(settings)
    return env
