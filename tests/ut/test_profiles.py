"""Serving profiles: the rules on the four seed models (configs written from their published shapes: DESIGN.md
section 7; Qwen3.5-122B-A10B from a public copy of its config.json, alibaba/InferSim
hf_configs/qwen3.5-122B-A10B_config.json) at TP 1/2/4 on 16 GB and 32 GB cards, `doctor MODEL`, and
the profile at engine start-up (which EngineArgs fields count as given, vLLM's EngineArgs, no GPU)."""
import argparse
import json
import re

import pytest
import torch

from vllm_sm7x.profiles import engine
from vllm_sm7x.profiles.memory import GIB
from vllm_sm7x.profiles.model_facts import ModelFactsError, read_model_facts
from vllm_sm7x.profiles.resolve import Gpus, ProfileError, minimum_need, resolve_profile

AWQ = {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"}
HYBRID = {"vocab_size": 248320, "max_position_embeddings": 262144, "head_dim": 256, "linear_conv_kernel_dim": 4,
          "linear_key_head_dim": 128, "linear_value_head_dim": 128, "linear_num_key_heads": 16,
          "full_attention_interval": 4, "mtp_num_hidden_layers": 1, "mamba_ssm_dtype": "float32"}
SEED_MODELS = {
    "Qwen3.6-27B-AWQ": ("Qwen3_5ForConditionalGeneration",
                        {"hidden_size": 5120, "num_hidden_layers": 64, "num_attention_heads": 24,
                         "num_key_value_heads": 4, "linear_num_value_heads": 48, "intermediate_size": 17408}),
    "Qwen3.5-27B-AWQ": ("Qwen3_5ForConditionalGeneration",
                        {"hidden_size": 5120, "num_hidden_layers": 64, "num_attention_heads": 24,
                         "num_key_value_heads": 4, "linear_num_value_heads": 48, "intermediate_size": 17408}),
    "Qwen3.6-35B-A3B-AWQ": ("Qwen3_5MoeForConditionalGeneration",
                            {"hidden_size": 2048, "num_hidden_layers": 40, "num_attention_heads": 16,
                             "num_key_value_heads": 2, "linear_num_value_heads": 32, "num_experts": 256,
                             "num_experts_per_tok": 8, "moe_intermediate_size": 512,
                             "shared_expert_intermediate_size": 512}),
    "Qwen3.5-122B-A10B-AWQ": ("Qwen3_5MoeForConditionalGeneration",
                              {"hidden_size": 3072, "num_hidden_layers": 48, "num_attention_heads": 32,
                               "num_key_value_heads": 2, "linear_num_value_heads": 64, "num_experts": 256,
                               "num_experts_per_tok": 8, "moe_intermediate_size": 1024,
                               "shared_expert_intermediate_size": 1024}),
}
V100_32GB = Gpus("Tesla V100-SXM2-32GB", 32 * GIB, 4)
V100_16GB = Gpus("Tesla V100-SXM2-16GB", 16 * GIB, 4)


def write_checkpoint(folder, name, mtp_weights=True, vision=True):
    architecture, text = SEED_MODELS[name]
    config = {"architectures": [architecture], "tie_word_embeddings": False, "quantization_config": AWQ,
              "text_config": {**HYBRID, **text}}
    if vision:
        config["vision_config"] = {"depth": 27, "hidden_size": 1152}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    names = ["model.language_model.layers.0.mlp.down_proj.qweight"]
    if mtp_weights:
        names.append("mtp.layers.0.mlp.down_proj.qweight")
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {n: "x" for n in names}}))
    return folder


@pytest.fixture
def seed(tmp_path):
    def make(name, **kwargs):
        return read_model_facts(write_checkpoint(tmp_path / name, name, **kwargs))
    return make


def settings(profile):
    return {name: s.value for name, s in profile.settings.items()}


def test_27b_mtp_on_four_32gb_v100s_is_the_published_profile(seed):
    # 27B-AWQ+MTP TP4: 262144 context, 4 sequences, 8192 batched tokens, MTP k=4, prefix caching aligned.
    chosen = settings(resolve_profile(seed("Qwen3.6-27B-AWQ"), V100_32GB, tp=4))
    assert chosen["max_model_len"] == 262144 and chosen["max_num_seqs"] == 4
    assert chosen["max_num_batched_tokens"] == 8192
    assert chosen["speculative_config"] == {"method": "mtp", "num_speculative_tokens": 4}
    assert chosen["enable_prefix_caching"] is True and chosen["mamba_cache_mode"] == "align"
    assert chosen["language_model_only"] is True
    assert {1, 5, 10, 20} <= set(chosen["cudagraph_capture_sizes"])  # decode and (k+1) x batch
    assert 0.5 < chosen["gpu_memory_utilization"] <= 0.92


def test_prefix_caching_turned_off_by_the_user_leaves_the_state_cache_mode_alone(seed):
    chosen = settings(resolve_profile(seed("Qwen3.6-27B-AWQ"), V100_32GB, tp=4, user={"enable_prefix_caching": False}))
    assert "enable_prefix_caching" not in chosen and "mamba_cache_mode" not in chosen


def test_mtp_needs_the_weights_in_the_files_not_only_the_config(seed):
    chosen = settings(resolve_profile(seed("Qwen3.5-27B-AWQ", mtp_weights=False), V100_32GB, tp=4))
    assert chosen["speculative_config"] is None
    assert chosen["max_num_seqs"] == 1 and chosen["max_num_batched_tokens"] == 16384  # the TP4 baseline


def test_two_gpus_get_three_speculative_tokens(seed):
    chosen = settings(resolve_profile(seed("Qwen3.6-27B-AWQ"), V100_32GB, tp=2))
    assert chosen["speculative_config"]["num_speculative_tokens"] == 3 and chosen["max_num_seqs"] == 1


def test_speculative_tokens_count_every_gpu_pipeline_stages_included(seed):
    chosen = settings(resolve_profile(seed("Qwen3.6-27B-AWQ"), V100_32GB, tp=2, pp=2))
    assert chosen["speculative_config"]["num_speculative_tokens"] == 4  # four GPUs
    assert chosen["max_num_seqs"] == 1  # the concurrency-4 profile is a TP >= 4 one


@pytest.mark.parametrize("name", ["Qwen3.6-35B-A3B-AWQ", "Qwen3.5-122B-A10B-AWQ"])
def test_moe_keeps_mtp_off_and_a_smaller_prefill_chunk(seed, name):
    chosen = settings(resolve_profile(seed(name), V100_32GB, tp=4))
    assert chosen["speculative_config"] is None
    assert chosen["max_num_batched_tokens"] <= 8192 and chosen["max_num_seqs"] == 1
    assert chosen["max_model_len"] == 262144


@pytest.mark.parametrize("name, tp, gpus, nearest", [("Qwen3.6-27B-AWQ", 1, V100_16GB, 2),
                                                      ("Qwen3.5-122B-A10B-AWQ", 4, V100_16GB, 8),
                                                      ("Qwen3.5-122B-A10B-AWQ", 2, V100_32GB, 4)])
def test_weights_that_do_not_fit_name_the_numbers_and_the_tp_that_does(seed, name, tp, gpus, nearest):
    with pytest.raises(ProfileError, match=rf"GiB of weights per GPU at --tensor-parallel-size {tp}, with the "
                                           rf"runtime, a 2048-token prefill chunk and one 4096-token context "
                                           rf"\(\d+\.\d GiB in all\), do not fit .*"
                                           rf"use --tensor-parallel-size {nearest}"):
        resolve_profile(seed(name), gpus, tp=tp)


@pytest.mark.parametrize("name", list(SEED_MODELS))
@pytest.mark.parametrize("tp", [1, 2, 4])
@pytest.mark.parametrize("gpus", [V100_16GB, V100_32GB], ids=["16GB", "32GB"])
def test_every_profile_that_resolves_fits_the_card(seed, name, tp, gpus):
    try:
        profile = resolve_profile(seed(name), gpus, tp=tp)
    except ProfileError as error:
        assert "use --tensor-parallel-size" in str(error) or "does not fit these cards" in str(error)
        return
    chosen = settings(profile)
    total = sum(v for k, v in profile.budget.items() if k != "card")
    assert total <= chosen["gpu_memory_utilization"] * gpus.memory_bytes <= 0.93 * gpus.memory_bytes
    assert 4096 <= chosen["max_model_len"] <= 262144 and chosen["max_model_len"] % 1024 == 0


def test_a_short_context_says_why(seed):
    profile = resolve_profile(seed("Qwen3.6-27B-AWQ", mtp_weights=False), V100_32GB, tp=1)
    context = profile.settings["max_model_len"]
    assert context.value < 262144 and "native 262144 needs" in context.reason


@pytest.mark.parametrize("name, tp, speculative, block, group, state_blocks", [
    ("Qwen3.6-27B-AWQ", 4, 0, 784, 16, 6), ("Qwen3.6-27B-AWQ", 4, 3, 800, 17, 15),
    ("Qwen3.6-27B-AWQ", 1, 4, 816, 17, 18),
    ("Qwen3.6-35B-A3B-AWQ", 1, 0, 1056, 10, 6), ("Qwen3.6-35B-A3B-AWQ", 4, 0, 528, 10, 6),
    ("Qwen3.5-122B-A10B-AWQ", 4, 0, 1056, 12, 6)])
def test_the_kv_pool_is_laid_out_as_vllm_lays_out_a_hybrid(seed, name, tp, speculative, block, group, state_blocks):
    """vLLM 0.26 gives a hybrid's attention the multiple of 16 tokens whose page holds a GDN layer's
    state (block sizes as vLLM derived them for these models), groups layers by the smaller kind's count
    (MTP's attention layer included), and holds 2 + k states per GDN group per request under prefix
    caching: it refuses to start when one request of max_model_len does not fit that."""
    from vllm_sm7x.profiles import memory

    pool = memory.kv_pool(seed(name), tp, speculative_tokens=speculative, prefix_caching=True)
    assert (pool.block_tokens, pool.group_layers, pool.state_blocks) == (block, group, state_blocks)
    assert pool.request_bytes(block + 1) == (2 + state_blocks) * group * pool.page_bytes
    assert pool.tokens_fitting(pool.request_bytes(10 * block)) == 10 * block


@pytest.mark.parametrize("name", list(SEED_MODELS))
@pytest.mark.parametrize("tp, speculative, kv_dtype", [(1, 0, torch.float16), (4, 3, torch.float16),
                                                       (2, 3, torch.float8_e5m2)])
def test_a_requests_bytes_are_what_vllm_itself_counts(seed, name, tp, speculative, kv_dtype):
    """vLLM's own count of one request's pool bytes (its KV cache specs, groups and the check behind
    "not enough KV cache memory for one request of max_model_len"), fed our block size."""
    import types

    pytest.importorskip("vllm")
    from vllm.v1.core import kv_cache_utils
    from vllm.v1.kv_cache_interface import FullAttentionSpec, MambaSpec

    from vllm_sm7x.profiles import memory

    facts = seed(name)
    pool = memory.kv_pool(facts, tp, kv_dtype.itemsize, speculative_tokens=speculative, prefix_caching=True)
    conv_dim = 2 * facts.linear_k_heads * facts.linear_k_dim + facts.linear_v_heads * facts.linear_v_dim
    state_shapes = ((conv_dim // tp, facts.conv_kernel - 1 + speculative),
                    (facts.linear_v_heads // tp, facts.linear_v_dim, facts.linear_k_dim))
    specs = {f"attention.{i}": FullAttentionSpec(block_size=pool.block_tokens, head_size=facts.head_dim,
                                                 num_kv_heads=memory.kv_heads_per_gpu(facts, tp), dtype=kv_dtype)
             for i in range(facts.full_attention_layers + (facts.mtp_layers if speculative else 0))}
    specs.update({f"delta_net.{i}": MambaSpec(shapes=state_shapes, dtypes=(torch.float16, torch.float32),
                                              block_size=pool.block_tokens, page_size_padded=pool.page_bytes,
                                              mamba_cache_mode="align", num_speculative_blocks=speculative)
                  for i in range(facts.linear_attention_layers)})
    groups = kv_cache_utils._get_kv_cache_groups_uniform_page_size(kv_cache_utils.unify_kv_cache_spec_page_size(specs))
    for tokens in (4096, 100001, 262144):
        config = types.SimpleNamespace(
            model_config=types.SimpleNamespace(max_model_len=tokens),
            cache_config=types.SimpleNamespace(mamba_cache_mode="align"),
            parallel_config=types.SimpleNamespace(decode_context_parallel_size=1),
            scheduler_config=types.SimpleNamespace(disable_hybrid_kv_cache_manager=False))
        assert pool.request_bytes(tokens) == kv_cache_utils._max_memory_usage_bytes_from_groups(config, groups)


def test_a_prefill_chunk_under_one_aligned_block_is_refused_with_the_smallest_that_works(seed):
    with pytest.raises(ProfileError, match=r"--max-num-batched-tokens 512 is under one 1056-token attention block.*"
                                           r"use --max-num-batched-tokens 1056 or more"):
        resolve_profile(seed("Qwen3.6-35B-A3B-AWQ"), V100_32GB, tp=1, user={"max_num_batched_tokens": 512})


@pytest.mark.parametrize("gpus, tp", [(V100_32GB, 1), (V100_32GB, 2), (V100_16GB, 2), (V100_32GB, 4)])
def test_the_27b_mtp_pool_holds_its_requests_at_full_length(seed, gpus, tp):
    """The pools vLLM refused (2026-12-02 review: 27B with MTP at TP1/TP2 counted 16 attention layers
    and one state per layer, against vLLM's 17 and 2 + k per GDN group)."""
    from vllm_sm7x.profiles import memory

    facts = seed("Qwen3.6-27B-AWQ")
    chosen = settings(resolve_profile(facts, gpus, tp=tp))
    k = chosen["speculative_config"]["num_speculative_tokens"]
    need = memory.kv_pool(facts, tp, speculative_tokens=k, prefix_caching=True).request_bytes(chosen["max_model_len"])
    assert chosen["kv_cache_memory_bytes"] >= chosen["max_num_seqs"] * need


def test_user_settings_are_kept_and_checked(seed):
    facts = seed("Qwen3.6-27B-AWQ")
    profile = resolve_profile(facts, V100_32GB, tp=4, user={"max_num_seqs": 2, "speculative_config": None})
    assert "max_num_seqs" not in profile.engine_args() and "speculative_config" not in profile.engine_args()
    assert profile.settings["max_num_seqs"].reason == "set by the user"
    with pytest.raises(ProfileError, match=r"--max-model-len 262144 does not fit.*largest that fits is "
                                           r"--max-model-len \d+"):
        resolve_profile(facts, V100_16GB, tp=2, user={"max_model_len": 262144})


def test_the_users_memory_utilization_bounds_the_plan_and_vllm_sizes_the_pool(seed):
    facts = seed("Qwen3.6-27B-AWQ", mtp_weights=False)
    ours = resolve_profile(facts, V100_32GB, tp=1)
    shared = resolve_profile(facts, V100_32GB, tp=1, user={"gpu_memory_utilization": 0.75})
    assert shared.settings["gpu_memory_utilization"].value == 0.75
    # A pool size would make vLLM ignore the utilization: none is injected.
    assert shared.engine_args()["kv_cache_memory_bytes"] is None
    assert shared.settings["max_model_len"].value < ours.settings["max_model_len"].value
    # Exactly the smallest configuration's bytes: the weights fit, the KV pool's margin does not.
    smallest = minimum_need(facts, 1) / V100_32GB.memory_bytes
    with pytest.raises(ProfileError, match=r"no context fits.*--tensor-parallel-size 2\).*higher --gpu-memory-util"):
        resolve_profile(facts, V100_32GB, tp=1, user={"gpu_memory_utilization": smallest})
    with pytest.raises(ProfileError, match=r"do not fit a 32.0 GiB .* \(19.2 GiB usable\)"):
        resolve_profile(facts, V100_32GB, tp=1, user={"gpu_memory_utilization": 0.6})
    with pytest.raises(ProfileError,
                       match=r"do not fit a 32.0 GiB .* \(16.0 GiB usable\): use --tensor-parallel-size 2"):
        resolve_profile(facts, V100_32GB, tp=1, user={"gpu_memory_utilization": 0.5})


def test_the_users_kv_pool_decides_the_context(seed):
    facts = seed("Qwen3.6-27B-AWQ", mtp_weights=False)
    small = resolve_profile(facts, V100_32GB, tp=1, user={"kv_cache_memory_bytes": 2 * GIB})
    context = small.settings["max_model_len"].value
    assert "kv_cache_memory_bytes" not in small.engine_args() and 4096 <= context
    assert context < resolve_profile(facts, V100_32GB, tp=1, user={"kv_cache_memory_bytes": 4 * GIB}
                                     ).settings["max_model_len"].value
    with pytest.raises(ProfileError, match=r"--kv-cache-memory-bytes 1024 holds no 4096-token context for 1 "
                                           r"sequence\(s\): give at least \d+"):
        resolve_profile(facts, V100_32GB, tp=1, user={"kv_cache_memory_bytes": 1024})


@pytest.mark.parametrize("tp, user, message", [
    (0, {}, "--tensor-parallel-size 0: use 1 or more"),
    (-1, {}, "--tensor-parallel-size -1: use 1 or more"),
    (3, {}, r"16 linear-attention key heads do not split over --tensor-parallel-size 3; use one of \[1, 2, 4, 8\]"),
    (1, {"max_num_seqs": 0}, "--max-num-seqs 0: use a positive value"),
    (1, {"max_model_len": -5}, "--max-model-len -5: use a positive value"),
    (1, {"gpu_memory_utilization": 1.5}, r"--gpu-memory-utilization 1.5: use a share of the card's memory in \(0, 1\]"),
])
def test_impossible_arguments_are_refused_with_the_rule(seed, tp, user, message):
    with pytest.raises(ProfileError, match=message):
        resolve_profile(seed("Qwen3.6-27B-AWQ"), V100_32GB, tp=tp, user=user)


def test_pipeline_stages_split_the_layers_and_their_memory(seed):
    """--pipeline-parallel-size: each GPU holds its stage's layers (the fullest, rounded up) and one
    vocabulary matrix, and the KV cache and state of those layers only. 27B on one 16 GB V100 does not
    fit; on two pipeline stages it does."""
    from vllm_sm7x.profiles import memory

    facts = seed("Qwen3.6-27B-AWQ")
    total = facts.checkpoint_bytes if facts.checkpoint_bytes is not None else memory.estimated_weight_bytes(facts)
    one_matrix = facts.vocab_size * facts.hidden_size * 2
    assert memory.weight_bytes_per_gpu(facts, 1, pp=2) == pytest.approx((total - 2 * one_matrix) / 2 + one_matrix, abs=1)
    assert memory.weight_bytes_per_gpu(facts, 2, pp=2) == pytest.approx(memory.weight_bytes_per_gpu(facts, 1, 2) / 2, abs=1)
    unstaged = memory.kv_pool(facts, 1)
    context = 64 * unstaged.block_tokens
    assert memory.kv_pool(facts, 1, pp=2).request_bytes(context) * 2 == unstaged.request_bytes(context)
    assert memory.kv_pool(facts, 1, pp=3).request_bytes(context) == unstaged.request_bytes(context) * 6 // 16  # 16/3 up
    assert memory.kv_pool(facts, 1, pp=4).request_bytes(0) * 4 == unstaged.request_bytes(0)  # the state alone
    with pytest.raises(ProfileError, match="at --tensor-parallel-size 1, with the runtime.* do not fit"):
        resolve_profile(facts, V100_16GB, tp=1)
    staged = resolve_profile(facts, V100_16GB, tp=1, pp=2)
    assert staged.budget["weights"] == memory.weight_bytes_per_gpu(facts, 1, pp=2)
    assert settings(staged)["gpu_memory_utilization"] * V100_16GB.memory_bytes <= 0.93 * V100_16GB.memory_bytes
    with pytest.raises(ProfileError,
                       match=r"x 2 pipeline stages, with the runtime.* do not fit .* use --tensor-parallel-size 2"):
        resolve_profile(seed("Qwen3.5-122B-A10B-AWQ"), V100_32GB, tp=1, pp=2)


def test_cards_without_memory_are_refused(seed):
    with pytest.raises(ProfileError, match="give the cards' size in GiB"):
        resolve_profile(seed("Qwen3.6-27B-AWQ"), Gpus("GPU", 0, 1), tp=1)


def test_mtp_asked_of_a_checkpoint_without_its_weights_is_refused(seed):
    facts = seed("Qwen3.6-27B-AWQ", mtp_weights=False)
    for method in ("mtp", "qwen3_5_mtp"):
        with pytest.raises(ProfileError, match="carry no mtp.\\* weights .*drop --speculative-config"):
            resolve_profile(facts, V100_32GB, tp=4, user={"speculative_config": {"method": method,
                                                                                 "num_speculative_tokens": 2}})
    with_weights = resolve_profile(seed("Qwen3.5-27B-AWQ"), V100_32GB, tp=4,
                                   user={"speculative_config": {"method": "mtp", "num_speculative_tokens": 2}})
    assert with_weights.settings["speculative_config"].user_set


def test_fp8_kv_cache_doubles_the_context_that_fits(seed):
    facts = seed("Qwen3.6-27B-AWQ", mtp_weights=False)
    fp16 = resolve_profile(facts, V100_32GB, tp=1).settings["max_model_len"].value
    fp8 = resolve_profile(facts, V100_32GB, tp=1, user={"kv_cache_dtype": "fp8_e5m2"}).settings["max_model_len"].value
    assert fp8 > 1.8 * fp16


def test_the_table_lists_each_setting_with_its_reason(seed):
    table = resolve_profile(seed("Qwen3.6-27B-AWQ"), V100_32GB, tp=4).table()
    assert "max_model_len" in table and "the model's native context fits" in table and "per GPU: weights" in table


def test_folders_without_a_config_are_refused(tmp_path):
    with pytest.raises(ModelFactsError, match="has no config.json"):
        read_model_facts(tmp_path)


def test_mtp_weights_are_found_in_a_single_file_header(tmp_path):
    import struct

    folder = write_checkpoint(tmp_path / "m", "Qwen3.6-27B-AWQ")
    (folder / "model.safetensors.index.json").unlink()
    header = json.dumps({"mtp.fc.weight": {"dtype": "F16", "shape": [1], "data_offsets": [0, 2]}}).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0\0")
    facts = read_model_facts(folder)
    assert facts.has_mtp_weights and facts.checkpoint_bytes == 8 + len(header) + 2


def test_the_weights_size_is_that_of_the_files_the_index_names(tmp_path):
    """Shards in a subfolder count, a stray file beside the index does not, and a missing shard leaves the
    size to the estimate (a partial sum would undercount the weights and overfill the KV pool)."""
    folder = write_checkpoint(tmp_path / "m", "Qwen3.6-27B-AWQ")
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"model.layers.0.mlp.down_proj.qweight": "shards/a.safetensors",
                        "mtp.layers.0.mlp.down_proj.qweight": "shards/b.safetensors"}}))
    (folder / "shards").mkdir()
    (folder / "shards" / "a.safetensors").write_bytes(b"\0" * 100)
    (folder / "consolidated.safetensors").write_bytes(b"\0" * 1000)
    assert read_model_facts(folder).checkpoint_bytes is None  # b is missing
    (folder / "shards" / "b.safetensors").write_bytes(b"\0" * 20)
    assert read_model_facts(folder).checkpoint_bytes == 120


def test_doctor_prints_the_profile_for_a_model_folder(tmp_path, capsys):
    from vllm_sm7x.entrypoints.cli import main

    folder = write_checkpoint(tmp_path / "q", "Qwen3.6-27B-AWQ")
    assert main(["doctor", str(folder), "-tp", "4", "--gpu-memory-gib", "32"]) == 0
    out = capsys.readouterr().out
    assert "speculative_config" in out and "num_speculative_tokens=4" in out and "262144" in out
    assert main(["doctor", str(folder), "--gpu-memory-gib", "16", "--gpu-count", "1"]) == 2
    err = capsys.readouterr().err
    assert "use --tensor-parallel-size 2 (this machine has 1 GPU(s))" in err
    assert main(["doctor", str(folder), "-tp", "4", "--gpu-memory-gib", "32", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["engine_args"]["max_num_seqs"] == 4


@pytest.mark.parametrize("args, says", [
    (["-tp", "0"], "--tensor-parallel-size 0: use 1 or more"),
    (["-tp", "3"], "do not split over --tensor-parallel-size 3; use one of [1, 2, 4, 8]"),
    (["--max-num-seqs", "0"], "--max-num-seqs 0: use a positive value"),
    (["--gpu-memory-gib", "0"], "give the cards' size in GiB"),
    (["-tp", "8", "--gpu-count", "4"], "--tensor-parallel-size 8 needs 8 GPUs; --gpu-count says 4"),
    (["-tp", "2", "-pp", "2", "--gpu-count", "2"],
     "--tensor-parallel-size 2 x --pipeline-parallel-size 2 needs 4 GPUs; --gpu-count says 2"),
    (["-pp", "0"], "--pipeline-parallel-size 0: use 1 to 64 (the model's layers)"),
    (["--gpu-memory-utilization", "2"], "--gpu-memory-utilization 2.0: use a share"),
])
def test_doctor_refuses_impossible_arguments_with_the_rule(tmp_path, capsys, args, says):
    from vllm_sm7x.entrypoints.cli import main

    folder = write_checkpoint(tmp_path / "q", "Qwen3.6-27B-AWQ")
    described = [] if "--gpu-memory-gib" in args else ["--gpu-memory-gib", "32"]
    assert main(["doctor", str(folder), *described, *args]) == 2
    assert says in capsys.readouterr().err


def test_doctor_takes_the_memory_and_speculative_flags_users_pass(tmp_path, capsys):
    from vllm_sm7x.entrypoints.cli import main

    folder = write_checkpoint(tmp_path / "q", "Qwen3.6-27B-AWQ", mtp_weights=False)
    assert main(["doctor", str(folder), "-tp", "4", "--gpu-memory-gib", "32", "--gpu-memory-utilization", "0.8",
                 "--json"]) == 0
    engine_args = json.loads(capsys.readouterr().out)["engine_args"]
    assert "gpu_memory_utilization" not in engine_args and engine_args["kv_cache_memory_bytes"] is None
    assert main(["doctor", str(folder), "-tp", "4", "--gpu-memory-gib", "32", "--speculative-config",
                 '{"method": "mtp", "num_speculative_tokens": 3}']) == 2
    assert "carry no mtp.* weights" in capsys.readouterr().err


def test_doctor_takes_the_prefix_caching_and_image_flags_the_server_takes(tmp_path, capsys):
    from vllm_sm7x.entrypoints.cli import main

    folder = write_checkpoint(tmp_path / "q", "Qwen3.6-27B-AWQ", mtp_weights=False)

    def engine_args(*flags):
        assert main(["doctor", str(folder), "-tp", "4", "--gpu-memory-gib", "32", "--json", *flags]) == 0
        return json.loads(capsys.readouterr().out)["engine_args"]

    default = engine_args()
    assert default["enable_prefix_caching"] is True and default["language_model_only"] is True
    without = engine_args("--no-enable-prefix-caching", "--limit-mm-per-prompt", '{"image": 1}')
    assert "enable_prefix_caching" not in without and "language_model_only" not in without


# ---------------------------------------------------------------------------------------------------
# At engine start-up


@pytest.fixture
def engine_args():
    pytest.importorskip("vllm")
    from vllm.engine.arg_utils import EngineArgs

    def make(**kwargs):
        return EngineArgs(**kwargs)
    return make


def test_defaults_count_as_unset_and_explicit_values_as_given(engine_args):
    args = engine_args(model="/nowhere", max_num_seqs=2, gpu_memory_utilization=0.5)
    assert engine.user_settings(args) == {"max_num_seqs": 2, "gpu_memory_utilization": 0.5}
    assert engine.user_settings(engine_args(model="/nowhere")) == {}


@pytest.mark.parametrize("given", [{"max_cudagraph_capture_size": 8},
                                   {"compilation_config": {"cudagraph_capture_sizes": [1, 2]}},
                                   {"compilation_config": {"max_cudagraph_capture_size": 8}}])
def test_graph_sizes_given_another_way_keep_the_profiles_list_out(engine_args, given):
    """vLLM refuses two capture lists, or a list whose maximum contradicts --max-cudagraph-capture-size."""
    assert "cudagraph_capture_sizes" in engine.user_settings(engine_args(model="/nowhere", **given))


def test_marked_command_line_defaults_are_unset_until_restored(engine_args):
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    parser.add_argument("--mamba-cache-mode", default="none")
    engine.mark_parser_defaults(parser)
    engine.mark_parser_defaults(parser)  # idempotent
    unset, given = parser.parse_args([]), parser.parse_args(["--gpu-memory-utilization", "0.9"])
    assert isinstance(unset.gpu_memory_utilization, engine.UnsetFloat) and unset.gpu_memory_utilization == 0.9
    assert type(given.gpu_memory_utilization) is float
    args = engine_args(model="/nowhere", gpu_memory_utilization=unset.gpu_memory_utilization,
                       mamba_cache_mode=unset.mamba_cache_mode)
    assert engine.user_settings(args) == {}
    engine.restore_marked_defaults(args)
    assert type(args.gpu_memory_utilization) is float and type(args.mamba_cache_mode) is str


def write_dense_qwen3(folder):
    """A Qwen3-4B-like folder: a model the profile's rules were not written for."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["Qwen3ForCausalLM"], "hidden_size": 2560, "num_hidden_layers": 36, "num_attention_heads": 32,
        "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 9728, "vocab_size": 151936,
        "max_position_embeddings": 40960, "quantization_config": AWQ}))
    return folder


@pytest.fixture
def four_v100s(monkeypatch):
    from vllm_sm7x import activation

    monkeypatch.setattr(activation, "visible_gpus",
                        lambda: [activation.Gpu(i, "Tesla V100-SXM2-32GB", (7, 0), 32 * GIB) for i in range(4)])


def test_the_profile_fills_only_what_the_user_left(engine_args, tmp_path, four_v100s):
    folder = write_checkpoint(tmp_path / "q", "Qwen3.6-27B-AWQ")
    args = engine_args(model=str(folder), tensor_parallel_size=4, max_model_len=65536)
    profile = engine.apply_profile(args, "on")
    assert args.max_model_len == 65536 and profile.settings["max_model_len"].user_set
    assert args.speculative_config == {"method": "mtp", "num_speculative_tokens": 4}
    assert args.max_num_seqs == 4 and args.enable_prefix_caching is True and args.mamba_cache_mode == "align"
    assert args.kv_cache_memory_bytes < 32 * GIB and args.language_model_only is True


def test_auto_profiles_qwen35_checkpoints_and_leaves_other_models_to_vllm(engine_args, tmp_path, four_v100s, caplog):
    qwen36 = engine_args(model=str(write_checkpoint(tmp_path / "q", "Qwen3.6-27B-AWQ")), tensor_parallel_size=4)
    assert engine.apply_profile(qwen36, "auto") is not None and qwen36.max_model_len == 262144
    dense = engine_args(model=str(write_dense_qwen3(tmp_path / "dense")), tensor_parallel_size=4)
    assert engine.apply_profile(dense, "auto") is None
    assert dense.max_num_seqs is None and dense.max_model_len is None  # vLLM's defaults (a 256-request batch)
    assert "Qwen3ForCausalLM is not a Qwen3.5/3.6 model" in caplog.text and "VLLM_SM7X_PROFILE=on" in caplog.text
    assert engine.apply_profile(dense, "on") is not None and dense.max_num_seqs == 1


def test_the_profile_mode_is_checked(monkeypatch):
    monkeypatch.delenv("VLLM_SM7X_PROFILE", raising=False)
    assert engine.profile_mode() == "auto"
    monkeypatch.setenv("VLLM_SM7X_PROFILE", "Yes")
    with pytest.raises(ValueError, match="VLLM_SM7X_PROFILE='yes' is not one of auto, on, off"):
        engine.profile_mode()


@pytest.mark.parametrize("mode, model, says", [
    ("auto", "qwen36", "the server applies it at start-up to every setting you do not pass (VLLM_SM7X_PROFILE=auto)"),
    ("off", "qwen36", "the server does not apply it: VLLM_SM7X_PROFILE=off"),
    ("auto", "dense", "the server does not apply it: Qwen3ForCausalLM is not a Qwen3.5/3.6 model"),
    ("on", "dense", "the server applies it at start-up to every setting you do not pass (VLLM_SM7X_PROFILE=on)"),
])
def test_doctor_says_whether_the_server_applies_the_profile(tmp_path, capsys, monkeypatch, mode, model, says):
    from vllm_sm7x.entrypoints.cli import main

    monkeypatch.setenv("VLLM_SM7X_PROFILE", mode)
    folder = (write_checkpoint(tmp_path / "q", "Qwen3.6-27B-AWQ") if model == "qwen36"
              else write_dense_qwen3(tmp_path / "dense"))
    assert main(["doctor", str(folder), "-tp", "4", "--gpu-memory-gib", "32"]) == 0
    assert says in capsys.readouterr().out


def test_doctor_on_gpus_where_the_plugin_stays_off_says_the_server_will_not_apply_it(tmp_path, capsys,
                                                                                     monkeypatch):
    from vllm_sm7x import activation
    from vllm_sm7x.entrypoints.cli import main

    monkeypatch.delenv("VLLM_SM7X_EMULATE", raising=False)
    monkeypatch.setattr(activation, "visible_gpus", lambda: [activation.Gpu(0, "NVIDIA H100", (9, 0), 80 * GIB)])
    folder = write_checkpoint(tmp_path / "q", "Qwen3.6-27B-AWQ")
    activation.current_activation.cache_clear()  # a process decides once; each doctor run here is a new one
    try:
        assert main(["doctor", str(folder), "-tp", "1"]) == 0
        assert "the server does not apply it: the plugin stays off here (NVIDIA H100 (9.0) is not SM70/SM75" in (
            capsys.readouterr().out)
        monkeypatch.setenv("VLLM_SM7X_EMULATE", "sm75")  # emulation turns the plugin, and so the profile, on
        activation.current_activation.cache_clear()
        assert main(["doctor", str(folder), "-tp", "1"]) == 0
        assert "the server applies it at start-up" in capsys.readouterr().out
    finally:
        activation.current_activation.cache_clear()


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache; hub_cache(model_id, weights=True) puts a Qwen3.6-27B-AWQ snapshot there,
    laid out as huggingface_hub downloads it: refs/main names the snapshot's commit, and the tree listing
    names files vLLM never fetches (README)."""
    from huggingface_hub import constants

    default = tmp_path / "hf-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(default))

    def cache(model_id, weights=True):
        repo = default / ("models--" + model_id.replace("/", "--"))
        snapshot = write_checkpoint(repo / "snapshots" / "0123abcd", "Qwen3.6-27B-AWQ")
        if weights:
            (snapshot / "x").write_bytes(b"")  # the one weight file write_checkpoint's index names
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text("0123abcd")
        (repo / "trees").mkdir()
        (repo / "trees" / "0123abcd.json").write_text(json.dumps({"README.md": {}, "config.json": {}, "x": {}}))
        return snapshot
    return cache


def test_models_that_cannot_be_profiled_keep_vllms_defaults(engine_args, four_v100s, hub_cache, caplog):
    args = engine_args(model="Qwen/Qwen3.6-27B-AWQ")  # a hub id not downloaded yet: vLLM fetches it later
    assert engine.apply_profile(args, "on") is None
    assert args.max_model_len is None and "profile skipped" in caplog.text
    assert "no download of it is in the Hugging Face cache: download it first (`hf download Qwen/Qwen3.6-27B-AWQ`)" in (
        caplog.text)
    assert engine.apply_profile(engine_args(model="./models/Qwen3.6-27B-AWQ"), "on") is None
    assert "./models/Qwen3.6-27B-AWQ: no such folder" in caplog.text


def test_a_hub_id_already_in_the_local_cache_is_profiled_like_its_folder(engine_args, four_v100s, hub_cache,
                                                                         caplog):
    snapshot = hub_cache("Qwen/Qwen3.6-27B-AWQ")  # as vLLM leaves it: no README, unlike the tree listing
    args = engine_args(model="Qwen/Qwen3.6-27B-AWQ", tensor_parallel_size=4)
    assert engine.apply_profile(args, "auto") is not None
    assert args.max_model_len == 262144 and args.speculative_config == {"method": "mtp", "num_speculative_tokens": 4}
    assert f"vllm-sm7x profile for Qwen/Qwen3.6-27B-AWQ, read from {snapshot}" in caplog.text


def test_a_partial_download_is_not_profiled(engine_args, four_v100s, hub_cache, caplog):
    """Weight files missing (an interrupted download, or config files alone): the MTP check and the
    weights' size would be wrong, so the profile stays out until the download is complete."""
    hub_cache("Qwen/Qwen3.6-27B-AWQ", weights=False)
    args = engine_args(model="Qwen/Qwen3.6-27B-AWQ", tensor_parallel_size=4)
    assert engine.apply_profile(args, "auto") is None and args.max_model_len is None
    assert ("its download in the Hugging Face cache is incomplete or has no safetensors weights "
            "(1 of 1 weight files missing, e.g. x)") in caplog.text


def test_a_hub_id_with_a_download_dir_asks_for_the_folder(engine_args, four_v100s, hub_cache, tmp_path, caplog):
    """vLLM puts the weights in --download-dir and config.json in the default cache: no one folder holds both."""
    hub_cache("Qwen/Qwen3.6-27B-AWQ")
    args = engine_args(model="Qwen/Qwen3.6-27B-AWQ", tensor_parallel_size=4, download_dir=str(tmp_path / "models"))
    assert engine.apply_profile(args, "auto") is None
    assert "Qwen/Qwen3.6-27B-AWQ with --download-dir: pass the model's folder as --model" in caplog.text


@pytest.mark.parametrize("damage", ["null field", "not an object", "zero heads", "bad index"])
def test_a_checkpoint_it_cannot_read_leaves_the_start_to_vllm(engine_args, four_v100s, tmp_path, caplog, damage):
    """The profile steps aside (vLLM then reports what it cannot load) instead of stopping the start."""
    folder = write_checkpoint(tmp_path / "q", "Qwen3.6-27B-AWQ")
    config = json.loads((folder / "config.json").read_text())
    if damage == "null field":
        config["text_config"]["num_key_value_heads"] = None
    elif damage == "zero heads":  # and no head_dim: it would be hidden_size / heads
        config["text_config"]["num_attention_heads"] = 0
        config["text_config"].pop("head_dim", None)
    (folder / "config.json").write_text("[1, 2]" if damage == "not an object" else json.dumps(config))
    if damage == "bad index":
        (folder / "model.safetensors.index.json").write_text('"weights"')
    args = engine_args(model=str(folder), tensor_parallel_size=4)
    assert engine.apply_profile(args, "auto") is None and args.max_model_len is None
    assert f"vllm-sm7x profile skipped: {folder}: cannot read the checkpoint" in caplog.text


def test_doctor_reads_a_hub_id_from_the_local_cache(hub_cache, capsys):
    from vllm_sm7x.entrypoints.cli import main

    assert main(["doctor", "Qwen/Qwen3.6-27B-AWQ", "-tp", "4", "--gpu-memory-gib", "32"]) == 2
    assert "no download of it is in the Hugging Face cache" in capsys.readouterr().err
    hub_cache("Qwen/Qwen3.6-27B-AWQ")
    assert main(["doctor", "Qwen/Qwen3.6-27B-AWQ", "-tp", "4", "--gpu-memory-gib", "32"]) == 0
    assert "the server applies it at start-up" in capsys.readouterr().out


# max_num_seqs as vLLM then sees it: 4 in the 27B MTP profile at TP4, 1 for other profiled models,
# None (vLLM's default) where the profile stays out.
@pytest.mark.parametrize("mode, model, max_num_seqs", [(None, "qwen36", 4), (None, "dense", None),
                                                       ("off", "qwen36", None), ("on", "dense", 1)])
def test_engine_start_profiles_what_the_mode_names(engine_args, tmp_path, four_v100s, monkeypatch, mode, model,
                                                   max_num_seqs):
    from vllm.engine.arg_utils import EngineArgs

    from vllm_sm7x.patch import engine_profile

    if mode is None:
        monkeypatch.delenv("VLLM_SM7X_PROFILE", raising=False)  # the default: auto
    else:
        monkeypatch.setenv("VLLM_SM7X_PROFILE", mode)
    seen = {}
    monkeypatch.setattr(EngineArgs, "create_engine_config",  # vLLM's own step, restored after the test
                        lambda self, *args, **kwargs: seen.setdefault("max_num_seqs", self.max_num_seqs))
    assert engine_profile.apply_profile_at_engine_start() is True
    folder = (write_checkpoint(tmp_path / "q", "Qwen3.6-27B-AWQ") if model == "qwen36"
              else write_dense_qwen3(tmp_path / "dense"))
    engine_args(model=str(folder), tensor_parallel_size=4).create_engine_config()
    assert seen["max_num_seqs"] == max_num_seqs


def test_engine_start_refuses_an_impossible_context_before_vllm_builds_anything(engine_args, tmp_path, four_v100s,
                                                                               monkeypatch):
    """256K tokens of a 27B's KV cache and state do not fit beside its weights on one 32 GB V100: the
    start stops at the profile with the numbers and the largest context that fits."""
    from vllm.engine.arg_utils import EngineArgs

    from vllm_sm7x.patch import engine_profile

    monkeypatch.delenv("VLLM_SM7X_PROFILE", raising=False)
    monkeypatch.setattr(EngineArgs, "create_engine_config",  # vLLM's own step, restored after the test
                        lambda self, *args, **kwargs: pytest.fail("vLLM's start ran past the refusal"))
    assert engine_profile.apply_profile_at_engine_start() is True
    folder = write_checkpoint(tmp_path / "q", "Qwen3.6-27B-AWQ")
    with pytest.raises(ProfileError, match=r"--max-model-len 262144 does not fit.*GiB.*largest that fits is "
                                           r"--max-model-len \d+"):
        engine_args(model=str(folder), tensor_parallel_size=1, max_model_len=262144).create_engine_config()


def test_the_patch_wraps_create_engine_config_once():
    pytest.importorskip("vllm")
    from vllm.engine.arg_utils import EngineArgs

    from vllm_sm7x.patch import engine_profile

    original = EngineArgs.create_engine_config
    try:
        engine_profile.apply_profile_at_engine_start()
        assert engine_profile.apply_profile_at_engine_start() is False
        assert EngineArgs.create_engine_config.__wrapped__ in (original, getattr(original, "__wrapped__", None))
    finally:
        EngineArgs.create_engine_config = original


GPTQ = {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False, "sym": True}


@pytest.mark.parametrize("quantization, path, moe, runs, refused", [
    (AWQ, "sm70", True, "AWQ on vllm-sm7x's tensor-core kernels (awq_sm7x)", None),
    ({**AWQ, "bits": 8}, "sm75", False, "AWQ on", "8-bit weights is not supported"),
    (GPTQ, "sm70", False, "GPTQ repacked at load for vllm-sm7x's AWQ kernels (gptq_sm7x)", None),
    ({**GPTQ, "desc_act": True}, "sm70", False, "GPTQ repacked", r"act-order \(desc_act: true"),
    (GPTQ, "sm70", True, "GPTQ repacked", "mixture-of-experts models run on SM70 only from AWQ checkpoints"),
    (GPTQ, "sm75", True, "gptq on vLLM's own kernels", None),  # Turing: vLLM's GPTQ Marlin has sm_75 code
    ({}, "sm70", True, "fp16 weights", "mixture-of-experts models run on SM70 only from AWQ"),
    ({}, "sm70", False, "fp16 weights", None),
])
def test_the_weights_plan_says_which_kernels_run_them_or_why_not(quantization, path, moe, runs, refused):
    from vllm_sm7x.quantization.serving_path import weights_plan

    said, refusal = weights_plan(quantization, path, "Qwen3_5MoeForConditionalGeneration", moe)
    assert said.startswith(runs)
    assert (refusal is None) if refused is None else re.search(refused, refusal), refusal


def test_the_weights_plan_follows_the_stock_awq_switch(monkeypatch):
    from vllm_sm7x.quantization.serving_path import weights_plan

    monkeypatch.setenv("VLLM_SM7X_STOCK_AWQ", "1")  # the configs' own claim rule decides, switch included
    said, refusal = weights_plan(AWQ, "sm75", "Qwen3_5ForConditionalGeneration", False)
    assert said == "awq on vLLM's own kernels" and refusal is None
    said, refusal = weights_plan(AWQ, "sm70", "Qwen3_5ForConditionalGeneration", False)
    assert said == "awq on vLLM's own kernels" and "unset VLLM_SM7X_STOCK_AWQ" in refusal


def test_doctor_names_the_weights_kernels_on_both_paths_for_described_cards(tmp_path, capsys):
    from vllm_sm7x.entrypoints.cli import main

    folder = write_checkpoint(tmp_path / "q", "Qwen3.5-122B-A10B-AWQ")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "quantization_config": GPTQ}))
    assert main(["doctor", str(folder), "-tp", "4", "--gpu-memory-gib", "32"]) == 0  # either card
    out = capsys.readouterr().out
    assert "weights on the sm70 path: GPTQ repacked" in out and "the server refuses them: " in out
    assert "weights on the sm75 path: gptq on vLLM's own kernels\n" in out
    assert main(["doctor", str(folder), "-tp", "4", "--gpu-memory-gib", "32", "--json"]) == 0
    weights = json.loads(capsys.readouterr().out)["weights"]
    assert "mixture-of-experts" in weights["sm70"]["refused_because"] and weights["sm75"]["refused_because"] is None


def test_doctor_on_a_v100_fails_for_weights_the_server_would_refuse(tmp_path, capsys, monkeypatch):
    from vllm_sm7x import activation
    from vllm_sm7x.entrypoints.cli import main

    monkeypatch.setattr(activation, "visible_gpus",
                        lambda: [activation.Gpu(i, "Tesla V100-SXM2-32GB", (7, 0), 32 * GIB) for i in range(4)])
    monkeypatch.setattr(activation, "current_activation",
                        lambda: activation.Activation(True, "sm70", False, "4 x Tesla V100-SXM2-32GB (7.0)"))
    folder = write_checkpoint(tmp_path / "q", "Qwen3.6-27B-AWQ")
    assert main(["doctor", str(folder), "-tp", "4"]) == 0
    assert "weights on the sm70 path: AWQ on vllm-sm7x's tensor-core kernels" in capsys.readouterr().out
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "quantization_config": {**GPTQ, "sym": False}}))
    assert main(["doctor", str(folder), "-tp", "4"]) == 2
    assert "sym: false) is not supported" in capsys.readouterr().out
