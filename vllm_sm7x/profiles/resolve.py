"""The profile rules: from a checkpoint's facts, the GPUs and the tensor-parallel size to the settings
a user did not set, each with its reason. Pure functions (tested on the CPU with the seed models'
configs); a setting the user gave is kept as given and only checked for fit."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from vllm_sm7x.profiles import memory
from vllm_sm7x.profiles.memory import GIB
from vllm_sm7x.profiles.model_facts import ModelFacts

# Share of a card's memory a profile plans to use (the rest: driver, other processes, fragmentation).
MAX_UTILIZATION = 0.92
CONTEXT_STEP = 1024  # a context that does not fit is cut to a multiple of this
MIN_CONTEXT = 4096   # below this a configuration is refused rather than served
MIN_BATCHED_TOKENS = 2048
WORKSPACE_SHARE = 0.25  # the prefill chunk's activations may take this share of what the weights leave
POOL_MARGIN = 1.10   # KV pool over what max_num_seqs full contexts need (prefix-cache and state slack)
TP_SIZES = (1, 2, 4, 8)


class ProfileError(ValueError):
    """A combination that cannot work, with the numbers and the nearest setting that does."""


@dataclass(frozen=True)
class Gpus:
    name: str
    memory_bytes: int  # per card
    count: int  # 0: not known (a plan for cards described by size only)


@dataclass
class Setting:
    name: str  # vLLM's engine argument (EngineArgs field)
    value: object
    reason: str
    user_set: bool = False


@dataclass
class Profile:
    settings: dict[str, Setting] = field(default_factory=dict)
    budget: dict[str, int] = field(default_factory=dict)  # bytes per GPU, for the table

    def set(self, name: str, value, reason: str, user: dict) -> object:
        """Records the user's value if they gave one, else ours; returns the one in force."""
        if name in user:
            self.settings[name] = Setting(name, user[name], "set by the user", user_set=True)
        else:
            self.settings[name] = Setting(name, value, reason)
        return self.settings[name].value

    def engine_args(self) -> dict[str, object]:
        """What the profile injects: only the settings the user left unset."""
        return {s.name: s.value for s in self.settings.values() if not s.user_set}

    def table(self) -> str:
        rows = [("setting", "value", "why")]
        rows += [(s.name, _show(s.value), s.reason) for s in self.settings.values()]
        width = [max(len(r[i]) for r in rows) for i in range(2)]
        lines = [f"{r[0]:<{width[0]}}  {r[1]:<{width[1]}}  {r[2]}" for r in rows]
        lines.append("per GPU: " + ", ".join(f"{k} {v / GIB:.1f} GiB" for k, v in self.budget.items()))
        return "\n".join(lines)


def _show(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list) and len(value) > 8:
        return f"{value[:4]} .. {value[-1]} ({len(value)} sizes)"
    return str(value)


def mtp_tokens_for(gpus_in_use: int) -> int:
    # The published anchors' policy (3 on up to two GPUs, 4 on more) until real checkpoints are measured.
    return 3 if gpus_in_use <= 2 else 4


def resolve_profile(facts: ModelFacts, gpus: Gpus, tp: int, user: dict | None = None, pp: int = 1) -> Profile:
    """`user`: the engine arguments the user set explicitly (EngineArgs field -> value); `pp` the
    pipeline-parallel stages (each GPU holds 1/tp of the layers of one stage)."""
    user = dict(user or {})
    _check_arguments(facts, gpus, tp, user, pp)
    profile = Profile()
    card = gpus.memory_bytes
    # The user's --gpu-memory-utilization bounds the plan; vLLM then sizes the KV pool from it.
    utilization = user.get("gpu_memory_utilization", MAX_UTILIZATION)
    budget = int(card * utilization)
    weights = memory.weight_bytes_per_gpu(facts, tp, pp)
    fixed = weights + memory.RUNTIME_OVERHEAD_BYTES
    if minimum_need(facts, tp, pp) > budget:
        raise ProfileError(_weights_do_not_fit(facts, gpus, tp, weights, utilization, pp))

    # MTP: only where the checkpoint carries the head's weights; off for MoE until measured faster.
    speculative = 0
    if "speculative_config" in user:
        profile.set("speculative_config", None, "", user)
        speculative = int((user["speculative_config"] or {}).get("num_speculative_tokens", 0))
        _check_mtp_weights(facts, user["speculative_config"])
    elif facts.is_qwen35 and facts.mtp_layers and facts.has_mtp_weights and not facts.is_moe:
        speculative = mtp_tokens_for(tp * pp)  # every GPU of the engine, pipeline stages included
        profile.set("speculative_config", {"method": "mtp", "num_speculative_tokens": speculative},
                    f"the checkpoint has MTP weights; {speculative} tokens on {tp * pp} GPU(s)", user)
    else:
        why = ("MoE: MTP stays off until measured faster" if facts.is_moe and facts.has_mtp_weights else
               "the checkpoint has no mtp.* weights" if facts.mtp_layers else "the model has no MTP head")
        profile.set("speculative_config", None, why, user)

    seqs = profile.set("max_num_seqs", 4 if speculative and tp >= 4 else 1,
                       "MTP profile at TP >= 4" if speculative and tp >= 4 else "one long-context request", user)
    batched = profile.set("max_num_batched_tokens", 16384 if not (speculative or facts.is_moe) else 8192,
                          "MoE workspace" if facts.is_moe else "MTP verification batches" if speculative
                          else "dense prefill chunk", user)
    if "max_num_batched_tokens" not in user:
        # Halve the prefill chunk until its activations take at most a quarter of what the weights leave.
        first = batched
        while (memory.prefill_workspace_bytes(facts, tp, batched) > WORKSPACE_SHARE * (budget - fixed)
               and batched > MIN_BATCHED_TOKENS):
            batched //= 2
        if batched != first:
            profile.set("max_num_batched_tokens", batched, f"{first} halved until the prefill workspace takes "
                        f"<= {WORKSPACE_SHARE:.0%} of the memory the weights leave", user)
    aligned_states = facts.is_hybrid and user.get("enable_prefix_caching", True)
    pool_layout = memory.kv_pool(facts, tp, 1 if user.get("kv_cache_dtype") == "fp8_e5m2" else 2, pp, speculative,
                                 prefix_caching=aligned_states)
    if aligned_states and "max_num_batched_tokens" in user and batched < pool_layout.block_tokens:
        raise ProfileError(f"--max-num-batched-tokens {batched} is under one {pool_layout.block_tokens}-token "
                           "attention block, the smallest prefill chunk vLLM allows when prefix caching keeps the "
                           "state at block boundaries: use --max-num-batched-tokens "
                           f"{pool_layout.block_tokens} or more")
    if aligned_states and "max_num_batched_tokens" not in user and batched < pool_layout.block_tokens:
        # vLLM refuses a prefill chunk under one attention block when states are kept at block boundaries.
        batched = profile.set("max_num_batched_tokens", pool_layout.block_tokens,
                              f"one {pool_layout.block_tokens}-token block: the smallest chunk aligned states allow",
                              user)
    workspace = memory.prefill_workspace_bytes(facts, tp, batched)

    def kv_need(tokens: int) -> int:  # KV cache and state of max_num_seqs sequences of this many tokens
        return seqs * pool_layout.request_bytes(tokens)

    left = budget - fixed - workspace  # what the plan leaves for the KV pool
    if "kv_cache_memory_bytes" in user:  # the user's pool is the pool: no margin over it
        pool_budget, margin = user["kv_cache_memory_bytes"], 1.0
    else:
        pool_budget, margin = left, POOL_MARGIN
    fits = pool_layout.tokens_fitting(pool_budget / margin / seqs)
    native = facts.max_position_embeddings
    if "max_model_len" in user:
        context = profile.set("max_model_len", None, "", user)
        if context > fits:
            raise ProfileError(f"--max-model-len {context} does not fit: {seqs} sequence(s) of it need "
                               f"{_gib(kv_need(context) * POOL_MARGIN)} of KV cache and "
                               f"state per GPU, {_gib(pool_budget)} is left after weights and workspace; the "
                               f"largest that fits is --max-model-len {_round_down(fits)}")
    elif fits >= native:
        context = profile.set("max_model_len", native, "the model's native context fits", user)
    elif fits >= MIN_CONTEXT:
        context = profile.set("max_model_len", _round_down(fits),
                              f"native {native} needs {_gib(kv_need(native) * POOL_MARGIN)} of KV "
                              f"per GPU; {_gib(pool_budget)} is left", user)
    elif "kv_cache_memory_bytes" in user:
        raise ProfileError(f"--kv-cache-memory-bytes {user['kv_cache_memory_bytes']} holds no {MIN_CONTEXT}-token "
                           f"context for {seqs} sequence(s): give at least "
                           f"{math.ceil(kv_need(MIN_CONTEXT))}")
    else:
        raise ProfileError(f"no context fits: {_gib(pool_budget)} per GPU is left for the KV cache after "
                           f"{_gib(weights)} of weights; use more GPUs (--tensor-parallel-size "
                           f"{_smallest_tp(facts, gpus, utilization, above=tp, pp=pp) or 'more'}), a smaller "
                           f"--max-num-batched-tokens or a higher --gpu-memory-utilization")

    if "gpu_memory_utilization" in user and "kv_cache_memory_bytes" not in user:
        # vLLM gives the pool what the user's utilization leaves (a pool size would override it).
        pool = max(0, left)
        profile.set("kv_cache_memory_bytes", None, "vLLM sizes the KV pool from --gpu-memory-utilization", user)
    else:
        pool = profile.set("kv_cache_memory_bytes", math.ceil(kv_need(context) * POOL_MARGIN),
                           f"{seqs} x {context} tokens + state, +{POOL_MARGIN - 1:.0%}; the rest stays free", user)
    used = fixed + workspace + pool
    profile.set("gpu_memory_utilization", math.ceil(used / card * 100) / 100,
                "weights + workspace + KV pool + runtime, rounded up", user)
    if facts.is_hybrid and user.get("enable_prefix_caching", True):  # aligned state serves prefix caching only
        profile.set("enable_prefix_caching", True, "hybrid model: prefix caching with aligned state", user)
        profile.set("mamba_cache_mode", "align", "cache the state only at block boundaries", user)
    if facts.has_vision and "limit_mm_per_prompt" not in user:
        profile.set("language_model_only", True, "text-only: no vision profiling (pass "
                    "--limit-mm-per-prompt to serve images)", user)
    if speculative:
        sizes = sorted({b * m for b in range(1, seqs + 1) for m in (1, speculative + 1)})
        profile.set("cudagraph_capture_sizes", sizes, f"decode and (k+1) x batch verification, batch <= {seqs}", user)
    profile.budget = {"weights": weights, "workspace": workspace, "kv pool": pool,
                      "runtime": memory.RUNTIME_OVERHEAD_BYTES, "card": card}
    return profile


def _check_arguments(facts: ModelFacts, gpus: Gpus, tp: int, user: dict, pp: int = 1) -> None:
    """Values no configuration can take, refused with the rule before any arithmetic on them."""
    if gpus.memory_bytes <= 0:
        raise ProfileError(f"{gpus.name}: {gpus.memory_bytes} bytes of memory per card; give the cards' size in GiB")
    if tp < 1:
        raise ProfileError(f"--tensor-parallel-size {tp}: use 1 or more")
    if pp < 1 or pp > facts.num_layers:
        raise ProfileError(f"--pipeline-parallel-size {pp}: use 1 to {facts.num_layers} (the model's layers)")
    for name in ("max_model_len", "max_num_seqs", "max_num_batched_tokens", "kv_cache_memory_bytes"):
        if name in user and user[name] < 1:
            raise ProfileError(f"--{name.replace('_', '-')} {user[name]}: use a positive value")
    utilization = user.get("gpu_memory_utilization")
    if utilization is not None and not 0 < utilization <= 1:
        raise ProfileError(f"--gpu-memory-utilization {utilization}: use a share of the card's memory in (0, 1]")
    heads = {"attention heads": facts.num_attention_heads, "linear-attention key heads": facts.linear_k_heads,
             "linear-attention value heads": facts.linear_v_heads}
    for what, count in heads.items():
        if count and count % tp:
            sizes = [t for t in TP_SIZES if all(c % t == 0 for c in heads.values() if c)]
            raise ProfileError(f"{facts.architecture}: {count} {what} do not split over --tensor-parallel-size {tp}; "
                               f"use one of {sizes}")


def _check_mtp_weights(facts: ModelFacts, speculative_config: dict | None) -> None:
    """An MTP draft asked of a checkpoint without the head's weights would draft from an uninitialised
    head (vLLM loads what the files have): refused."""
    method = str((speculative_config or {}).get("method") or "")
    if (method == "mtp" or method.endswith("_mtp")) and facts.is_qwen35 and not facts.has_mtp_weights:
        raise ProfileError(f"--speculative-config asks for MTP, but this checkpoint's files carry no mtp.* "
                           f"weights ({facts.mtp_layers} MTP layer(s) in its config): drop --speculative-config, or "
                           f"use a checkpoint quantised with its MTP head")


def _gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


def _round_down(tokens: int) -> int:
    return max(0, tokens // CONTEXT_STEP * CONTEXT_STEP)


def minimum_need(facts: ModelFacts, tp: int, pp: int = 1) -> int:
    """Bytes per GPU of the smallest configuration served: one sequence of MIN_CONTEXT tokens, the
    smallest prefill chunk, no MTP."""
    return (memory.weight_bytes_per_gpu(facts, tp, pp) + memory.RUNTIME_OVERHEAD_BYTES
            + memory.prefill_workspace_bytes(facts, tp, MIN_BATCHED_TOKENS)
            + memory.kv_pool(facts, tp, pp=pp, prefix_caching=facts.is_hybrid).request_bytes(MIN_CONTEXT))


def _smallest_tp(facts: ModelFacts, gpus: Gpus, utilization: float, above: int = 0, pp: int = 1) -> int | None:
    budget = int(gpus.memory_bytes * utilization)
    return next((tp for tp in TP_SIZES if tp > above and minimum_need(facts, tp, pp) <= budget), None)


def _weights_do_not_fit(facts: ModelFacts, gpus: Gpus, tp: int, weights: int, utilization: float,
                        pp: int = 1) -> str:
    budget = int(gpus.memory_bytes * utilization)
    nearest = _smallest_tp(facts, gpus, utilization, pp=pp)
    stages = f" x {pp} pipeline stages" if pp > 1 else ""
    fix = (f"use --tensor-parallel-size {nearest}" + (f" (this machine has {gpus.count} GPU(s))"
                                                      if 0 < gpus.count < nearest * pp else "")
           if nearest else "this model does not fit these cards at any supported TP size")
    return (f"{facts.architecture}: {_gib(weights)} of weights per GPU at --tensor-parallel-size {tp}{stages}, with "
            f"the runtime, a {MIN_BATCHED_TOKENS}-token prefill chunk and one {MIN_CONTEXT}-token context "
            f"({_gib(minimum_need(facts, tp, pp))} in all), do not fit a {_gib(gpus.memory_bytes)} {gpus.name} "
            f"({_gib(budget)} usable): {fix}")
