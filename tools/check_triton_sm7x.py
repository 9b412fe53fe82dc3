#!/usr/bin/env python
"""Compile, on a CPU-only machine, every vLLM 0.26 Triton kernel that the Qwen3.5/3.6 serving path can
launch with vllm-sm7x active (fp16, CUDA graphs, prefix caching align mode, MTP), for sm_70 and sm_75.
Our GPU tests emulate those cards on an H100, where Triton builds for sm_90: a kernel that does not
build for a V100 or a T4 (bf16 or fp8 instructions, shared memory past the card's) would only fail on
the real card. Run it after changing the pinned vLLM or Triton (tests/ut/test_triton_serving_path.py
runs the 27B TP4 shapes).

Each kernel is reached the way vLLM launches it: where the Python wrapper runs on CPU tensors, the wrapper
is called and its launch recorded (so constexprs, strides, num_warps are vLLM's own); otherwise the launch
arguments are rebuilt from the wrapper's source (marked "rebuilt" in the output). Every recorded launch is
compiled with triton.compile(ASTSource, target=GPUTarget("cuda", arch, 32)) (benchmarks/triton_faithful.py's
EmulatedKernel), then the cubin's resources are read with Triton's bundled cuobjdump and checked against
the card: shared memory <= 96 KB (V100) / 64 KB (Turing), registers x threads <= 64K, no local spills.

    python tools/check_triton_sm7x.py [--fla-chunk] [--shapes 27b-tp4,35b-tp1]

--fla-chunk also compiles every autotune config of FLA's chunked prefill chain (GDN prefill fallback when
vllm-sm7x's chunk kernel declines the inputs), with the autotune lists a V100/T4 would get (slow: minutes).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import types
import traceback
from concurrent.futures import ThreadPoolExecutor
from unittest import mock

os.environ["CUDA_VISIBLE_DEVICES"] = ""  # vllm.triton_utils then keeps the real triton although no driver is active
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import torch  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from triton_faithful import (SHARED_MEMORY_LIMIT, EmulatedKernel, FaithfulCompileError,  # noqa: E402
                             LaunchRecorder, bound_arguments, config_options, distinct_configs,
                             recorded_launches, unwrap_tuned)

CUOBJDUMP = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
REGS_PER_BLOCK = 64 << 10  # both Volta and Turing
F16, F32, I32, I64, BOOL = torch.float16, torch.float32, torch.int32, torch.int64, torch.bool

SHAPES = {  # per-GPU shapes
    # Qwen3.6-27B at TP4: 24 q / 4 kv heads of 256 -> 6 / 1; GDN 16 k / 48 v heads of 128 -> 4 / 12
    "27b-tp4": dict(hidden=5120, qh=6, kvh=1, hd=256, rot=64, gk=4, gv=12, dk=128, dv=128, width=4, mtp=4,
                    block=432),
    # Qwen3.6-35B-A3B at TP1: 16 q / 2 kv heads of 256; GDN 16 k / 32 v heads of 128
    "35b-tp1": dict(hidden=2048, qh=16, kvh=2, hd=256, rot=64, gk=16, gv=32, dk=128, dv=128, width=4, mtp=4,
                    block=1072),
}
VOCAB = 248320


# ----------------------------------------------------------------------------- compiling
def resources(cubin: bytes) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([CUOBJDUMP, "-res-usage", f.name], capture_output=True, text=True).stdout
    m = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", out)
    return dict(zip(("regs", "stack", "static_shared", "local"), map(int, m.groups()))) if m else {}


def compile_launch(kernel, args, kwargs, arch: int, config=None) -> dict:
    fn, _, heuristics, _ = unwrap_tuned(kernel)
    bound = bound_arguments(fn, heuristics, args, kwargs)
    if config is not None:
        bound.update(config_options(config))
    t0 = time.time()
    try:
        compiled, _ = EmulatedKernel(fn, arch, None, no_mma=False).compile(**bound)
    except FaithfulCompileError as e:
        return dict(ok=False, error=str(e.__cause__ or e).splitlines()[0][:300], secs=time.time() - t0)
    except Exception as e:  # noqa: BLE001
        return dict(ok=False, error=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}", secs=time.time() - t0)
    ptx = compiled.asm["ptx"]
    res = resources(compiled.asm["cubin"])
    warps = compiled.metadata.num_warps
    shared = compiled.metadata.shared
    threads = warps * 32
    notes = []
    if shared > SHARED_MEMORY_LIMIT[arch]:
        notes.append(f"SMEM {shared} > {SHARED_MEMORY_LIMIT[arch]}")
    if res and res["regs"] * threads > REGS_PER_BLOCK:
        notes.append(f"REGS {res['regs']}x{threads} > 64K")
    if res and res["local"]:
        notes.append(f"spills {res['local']} B local")
    if re.search(r"\b(?:wg|w)?mma\.", ptx):
        notes.append("mma")
    if re.search(r"\.bf16", ptx):
        notes.append("bf16-ptx")
    if re.search(r"e4m3|e5m2", ptx):
        notes.append("fp8-ptx")
    return dict(ok=True, shared=shared, warps=warps, stages=compiled.metadata.num_stages, **res,
                fits=not any(n.startswith(("SMEM", "REGS")) for n in notes), notes=notes, secs=time.time() - t0)


# ----------------------------------------------------------------------------- the cases
def cases(s: dict) -> list[tuple[str, str, object, list]]:
    """(kernel id, where on the serving path, kernel object, [(variant, args, kwargs, how)])."""
    out = []
    T = 40  # tokens of a small prefill chunk (runtime ints are not specialised beyond divisibility)
    qh, kvh, hd, rot = s["qh"], s["kvh"], s["hd"], s["rot"]
    gk, gv, dk, dv, width, mtp = s["gk"], s["gv"], s["dk"], s["dv"], s["width"], s["mtp"]
    conv_dim = 2 * gk * dk + gv * dv
    qkvz = conv_dim + gv * dv

    # 1. fused QK-RMSNorm + partial NeoX RoPE + gate copy (every full-attention layer, target and MTP head)
    from vllm.model_executor.layers import fused_qk_norm_rope as m
    qkv = torch.zeros(T, qh * 2 * hd + 2 * kvh * hd, dtype=F16)
    q_gate, k, _ = qkv.split([qh * 2 * hd, kvh * hd, kvh * hd], dim=-1)
    launches = recorded_launches(m, "_fused_qk_rmsnorm_rope_gate_kernel", lambda: m.fused_qk_rmsnorm_rope_gate(
        q_gate, k, torch.ones(hd), torch.ones(hd), torch.zeros(4096, rot, dtype=F16), torch.zeros(T, dtype=I64),
        1e-6, qh, kvh, hd, rot))
    out.append(("fused_qk_norm_rope._fused_qk_rmsnorm_rope_gate_kernel",
                "Qwen3NextAttention._project_qkv_gate (CUDA, text-only): every full-attn layer + MTP layer",
                m._fused_qk_rmsnorm_rope_gate_kernel, [("fp16", *launches[0], "wrapper")]))

    # 2. KV cache write, called by vllm-sm7x's FLASH_ATTN_V100 do_kv_cache_update (fp16 cache)
    from vllm.v1.attention.ops import triton_reshape_and_cache_flash as rc
    blocks, bs = 8, s["block"]
    phys = torch.zeros(blocks, bs, kvh, 2 * hd, dtype=F16)  # (blocks, kv_heads, bs, 2hd) in stride order 0,2,1,3
    key_cache, value_cache = phys.split(hd, dim=-1)
    key = torch.zeros(T, qh * hd + 2 * kvh * hd, dtype=F16)[:, qh * hd:qh * hd + kvh * hd].view(T, kvh, hd)
    value = torch.zeros(T, kvh, hd, dtype=F16)
    variants = []
    for cap in ((7, 0), (7, 5)):
        with mock.patch.object(torch.cuda, "get_device_capability", lambda *a, **k: cap):
            launches = recorded_launches(rc, "reshape_and_cache_kernel_flash", lambda: (
                rc.triton_reshape_and_cache_flash(key, value, key_cache, value_cache, torch.zeros(T, dtype=I64),
                                                  "auto", torch.ones(1), torch.ones(1))))
        variants.append((f"as on sm{cap[0]}{cap[1]}", *launches[0], "wrapper"))
    out.append(("triton_reshape_and_cache_flash.reshape_and_cache_kernel_flash",
                "FlashAttnV100Impl.do_kv_cache_update (ours) -> every full-attn layer, every step",
                rc.reshape_and_cache_kernel_flash, variants[:1]))  # both caps pick TILE_SIZE 512 / 16 warps

    # 3/4. causal conv1d (GDN): prefill (vLLM's by default; ours is opt-in) and update (spec / mixed batches)
    from vllm.model_executor.layers.mamba.ops import causal_conv1d as cc
    state_len = width - 1 + mtp
    conv_state = torch.zeros(6, state_len, conv_dim, dtype=F16).transpose(-1, -2)  # SD layout, as the layer passes it
    weight = torch.zeros(conv_dim, width, dtype=F16)
    mixed = torch.zeros(T, qkvz, dtype=F16)[:, :conv_dim]
    qsl = torch.tensor([0, 30, T], dtype=I32)
    launches = recorded_launches(cc, "_causal_conv1d_fwd_kernel", lambda: cc.causal_conv1d_fn(
        mixed.transpose(0, 1), weight, None, conv_states=conv_state, query_start_loc=qsl,
        cache_indices=torch.tensor([1, 2], dtype=I32), has_initial_state=torch.tensor([False, True]),
        activation="silu", metadata=None))
    out.append(("causal_conv1d._causal_conv1d_fwd_kernel",
                "GDN _forward_core prefill (causal_conv1d_fn) + qwen_triton_warmup at start-up",
                cc._causal_conv1d_fwd_kernel, [("prefill", *launches[0], "wrapper")]))
    nseq = 2
    spec_tok = nseq * (mtp + 1)
    spec_idx = torch.zeros(nseq, mtp + 1, dtype=I32)
    v_spec = recorded_launches(cc, "_causal_conv1d_update_kernel", lambda: cc.causal_conv1d_update(
        torch.zeros(spec_tok, conv_dim, dtype=F16), conv_state, weight, None, "silu",
        conv_state_indices=spec_idx[:, 0][:nseq], num_accepted_tokens=torch.ones(nseq, dtype=I32),
        query_start_loc=torch.arange(0, spec_tok + 1, mtp + 1, dtype=I32), max_query_len=mtp + 1,
        validate_data=False))
    v_dec = recorded_launches(cc, "_causal_conv1d_update_kernel", lambda: cc.causal_conv1d_update(
        mixed[:nseq], conv_state, weight, None, "silu", conv_state_indices=torch.tensor([1, 2], dtype=I32),
        validate_data=True))
    out.append(("causal_conv1d._causal_conv1d_update_kernel",
                "GDN spec tokens in batches that also hold prefills/plain decodes; plain decode if ours declines",
                cc._causal_conv1d_update_kernel, [("MTP verify", *v_spec[0], "wrapper"),
                                                  ("plain decode", *v_dec[0], "wrapper")]))

    # 5. fused post-conv prep (split + l2norm + gating) for GDN prefill
    from vllm.third_party.flash_linear_attention.ops import fused_gdn_prefill_post_conv as pc
    variants = []
    for L in (1, 16, T):
        launches = recorded_launches(pc, "_fused_post_conv_kernel", lambda: pc.fused_post_conv_prep(
            torch.zeros(L, conv_dim, dtype=F16), torch.zeros(L, gv, dtype=F16), torch.zeros(L, gv, dtype=F16),
            torch.zeros(gv), torch.zeros(gv, dtype=F16), gk, dk, dv, apply_l2norm=True, output_g_exp=False))
        variants.append((f"L={L}", *launches[0], "wrapper"))
    out.append(("fused_gdn_prefill_post_conv._fused_post_conv_kernel",
                "GDN prefill + _warmup_prefill_kernels (profile run) + qwen_triton_warmup",
                pc._fused_post_conv_kernel, variants))

    # 6. fused sigmoid gating + recurrent delta rule (spec part of mixed batches, decodes beside prefills)
    from vllm.third_party.flash_linear_attention.ops import fused_sigmoid_gating as sg
    variants = []
    for state_dtype in (F16, F32):
        ssm = torch.zeros(6, gv, dv, dk, dtype=state_dtype)
        launches = recorded_launches(sg, "fused_sigmoid_gating_delta_rule_update_kernel",
                          lambda: sg.fused_sigmoid_gating_delta_rule_update(
                              A_log=torch.zeros(gv), a=torch.zeros(spec_tok, gv, dtype=F16),
                              b=torch.zeros(spec_tok, gv, dtype=F16), dt_bias=torch.zeros(gv, dtype=F16),
                              q=torch.zeros(1, spec_tok, gk, dk, dtype=F16),
                              k=torch.zeros(1, spec_tok, gk, dk, dtype=F16),
                              v=torch.zeros(1, spec_tok, gv, dv, dtype=F16), initial_state=ssm,
                              inplace_final_state=True,
                              cu_seqlens=torch.arange(0, spec_tok + 1, mtp + 1, dtype=I32),
                              ssm_state_indices=spec_idx, num_accepted_tokens=torch.ones(nseq, dtype=I32),
                              use_qk_l2norm_in_kernel=True))
        variants.append((f"MTP verify, {str(state_dtype)[6:]} state", *launches[0], "wrapper"))
        launches = recorded_launches(sg, "fused_sigmoid_gating_delta_rule_update_kernel",
                          lambda: sg.fused_sigmoid_gating_delta_rule_update(
                              A_log=torch.zeros(gv), a=torch.zeros(nseq, gv, dtype=F16),
                              b=torch.zeros(nseq, gv, dtype=F16), dt_bias=torch.zeros(gv, dtype=F16),
                              q=torch.zeros(1, nseq, gk, dk, dtype=F16), k=torch.zeros(1, nseq, gk, dk, dtype=F16),
                              v=torch.zeros(1, nseq, gv, dv, dtype=F16), initial_state=ssm,
                              inplace_final_state=True, cu_seqlens=torch.arange(0, nseq + 1, dtype=I32),
                              ssm_state_indices=torch.tensor([1, 2], dtype=I32), use_qk_l2norm_in_kernel=True))
        variants.append((f"decode, {str(state_dtype)[6:]} state", *launches[0], "wrapper"))
    out.append(("fused_sigmoid_gating.fused_sigmoid_gating_delta_rule_update_kernel",
                "GDN spec/decode part of batches with prefills (or spec+plain decodes) + qwen_triton_warmup",
                sg.fused_sigmoid_gating_delta_rule_update_kernel, variants))

    # 7. FLA packed recurrent decode: only where vllm-sm7x's decode kernel declines (state dtype, alignment)
    from vllm.third_party.flash_linear_attention.ops import fused_recurrent as fr
    launches = recorded_launches(fr, "fused_recurrent_gated_delta_rule_packed_decode_kernel",
                      lambda: fr.fused_recurrent_gated_delta_rule_packed_decode(
                          mixed_qkv=torch.zeros(nseq, conv_dim, dtype=F16), a=torch.zeros(nseq, gv, dtype=F16),
                          b=torch.zeros(nseq, gv, dtype=F16), A_log=torch.zeros(gv),
                          dt_bias=torch.zeros(gv, dtype=F16), scale=dk ** -0.5,
                          initial_state=torch.zeros(6, gv, dv, dk, dtype=F16),
                          out=torch.zeros(nseq, 1, gv, dv, dtype=F16),
                          ssm_state_indices=torch.tensor([1, 2], dtype=I32), use_qk_l2norm_in_kernel=True))
    out.append(("fused_recurrent.fused_recurrent_gated_delta_rule_packed_decode_kernel",
                "fallback: plain decode when vllm-sm7x's GDN decode declines (_sm7x_states None)",
                fr.fused_recurrent_gated_delta_rule_packed_decode_kernel, [("decode", *launches[0], "wrapper")]))

    # 8. gated RMSNorm on the GDN output: Triton only when the custom op is enabled (custom_ops 'all' /
    #    enforce_eager / +rms_norm_gated); under Inductor (default with CUDA graphs) forward_native.
    from vllm.third_party.flash_linear_attention.ops import layernorm_guard as lg
    variants = []
    for sms, rows in ((80, 2 * T * gv), (40, 4)):
        with mock.patch.object(lg, "num_compute_units", lambda *_a, _s=sms: _s):
            launches = recorded_launches(lg, "layer_norm_fwd_kernel", lambda: lg.rmsnorm_fn(
                torch.zeros(rows, dv, dtype=F16), torch.ones(dv, dtype=F16), None, z=torch.zeros(rows, dv, dtype=F16),
                eps=1e-6, group_size=None, norm_before_gate=True, activation="silu"))
        variants.append((f"{rows} rows, {sms} SMs", *launches[0], "wrapper"))
    out.append(("layernorm_guard.layer_norm_fwd_kernel",
                "RMSNormGated.forward_cuda (GDN output norm) only with custom op enabled (eager / 'all')",
                lg.layer_norm_fwd_kernel, variants))

    # 9. M-RoPE: only when the attention layer does not fuse (vision enabled) AND the rotary custom op is enabled
    from vllm.model_executor.layers.rotary_embedding import mrope as mr
    cos = torch.zeros(3, T, rot // 2, dtype=F16)
    launches = recorded_launches(mr, "_triton_mrope_forward", lambda: mr.triton_mrope(
        torch.zeros(T, qh * hd, dtype=F16), torch.zeros(T, kvh * hd, dtype=F16), cos, cos.clone(), [11, 11, 10],
        hd, rot, True))
    out.append(("mrope._triton_mrope_forward",
                "MRotaryEmbedding.forward_cuda (multimodal, not fused; custom op 'all')",
                mr._triton_mrope_forward, [("interleaved", *launches[0], "wrapper")]))

    # ---------------------------------------------------------------- model runner (V1: hybrid models)
    from vllm.v1.worker import block_table as btm
    nreq, max_blocks = 4, 608
    bt = torch.zeros(nreq, max_blocks, dtype=I32)
    variants = []
    for kv_block in (s["block"], 16):
        variants.append((f"block {kv_block}", (T, 8192, torch.tensor([0, 30, T], dtype=I32), torch.zeros(T, dtype=I64),
                                               bt, bt.stride(0), kv_block, torch.zeros(8192, dtype=I64)),
                         dict(KV_CACHE_BLOCK_SIZE=kv_block, BLOCKS_PER_KV_BLOCK=1, TOTAL_CP_WORLD_SIZE=1,
                              TOTAL_CP_RANK=0, CP_KV_CACHE_INTERLEAVE_SIZE=1, PAD_ID=-1, BLOCK_SIZE=1024),
                         "rebuilt"))
    out.append(("block_table._compute_slot_mapping_kernel",
                "GPUModelRunner._prepare_inputs every step + start-up warmups", btm._compute_slot_mapping_kernel,
                variants))

    from vllm.v1.worker import utils as wu
    page_el = s["block"] * kvh * 2 * hd * 2 // 4
    out.append(("worker.utils._zero_kv_blocks_kernel", "KVBlockZeroer.zero_block_ids (new blocks) + qwen warmup",
                wu._zero_kv_blocks_kernel,
                [("", (torch.zeros(4, dtype=torch.uint64), torch.zeros(3, dtype=I64), 3),
                  dict(N_SEGS=4, PAGE_SIZE_EL=page_el, BLOCK_SIZE=min(1024, page_el & -page_el)), "rebuilt")]))

    from vllm.v1.worker import mamba_utils as mu
    out.append(("mamba_utils.batch_memcpy_kernel", "preprocess_mamba (align mode): state block moves",
                mu.batch_memcpy_kernel,
                [("", (torch.zeros(8, dtype=torch.uint64), torch.zeros(8, dtype=torch.uint64),
                       torch.zeros(8, dtype=I32)), dict(BLOCK_SIZE=1024), "rebuilt")]))
    n_states = 2 * 48
    z = lambda dt: torch.zeros(n_states, dtype=dt)  # noqa: E731
    variants = []
    for ds in (False, True):
        variants.append(("DS conv layout" if ds else "SD conv layout (default)",
                         (torch.ones(nreq, dtype=I32), torch.zeros(nreq, dtype=I32), torch.zeros(nreq, dtype=I32),
                          torch.zeros(nreq, dtype=I32), torch.zeros(nreq, dtype=I32), torch.zeros(1, dtype=I64),
                          max_blocks, z(I64), z(I64), z(I32), z(I64), z(I32), z(I32), z(I32), z(I64),
                          torch.zeros(nreq, dtype=I32), None, nreq),
                         dict(block_size=s["block"], COPY_BLOCK_SIZE=1024, CONV_STATE_DIM_FIRST=ds), "rebuilt"))
    out.append(("mamba_utils.postprocess_mamba_fused_kernel",
                "postprocess_mamba_align_gpu: align mode + spec decode, every step",
                mu.postprocess_mamba_fused_kernel, variants))

    # ---------------------------------------------------------------- MTP proposer (padded drafter batch)
    from vllm.v1.spec_decode import utils as su
    out.append(("spec_decode.utils.eagle_prepare_next_token_padded_kernel",
                "EagleProposer.prepare_next_token_ids_padded (MTP), every step",
                su.eagle_prepare_next_token_padded_kernel,
                [("", (torch.zeros(nreq, mtp + 1, dtype=I32), torch.zeros(nreq, dtype=BOOL),
                       torch.zeros(nreq, dtype=I32),
                       torch.zeros(nreq, dtype=I32), torch.zeros(nreq, dtype=I32), VOCAB, mtp + 1, nreq, mtp + 1),
                  dict(BLOCK_SIZE_TOKENS=triton.next_power_of_2(mtp + 1)), "rebuilt")]))
    out.append(("spec_decode.utils.eagle_prepare_inputs_padded_kernel",
                "EagleProposer.prepare_inputs_padded (MTP), every step", su.eagle_prepare_inputs_padded_kernel,
                [("", (torch.zeros(nreq, dtype=I32), torch.zeros(nreq, dtype=I32), torch.zeros(nreq + 1, dtype=I32),
                       torch.zeros(nreq, dtype=I32), torch.zeros(nreq, dtype=I32), nreq), {}, "rebuilt")]))
    step_update = su.eagle_step_update_slot_mapping_and_metadata
    launches = recorded_launches(su, "eagle_step_slot_mapping_metadata_kernel", lambda: step_update(
        torch.zeros(nreq, dtype=I64), bt, torch.zeros(nreq, dtype=I32), s["block"], 262144,
        torch.zeros(nreq, dtype=I64), torch.zeros(8, dtype=I64), input_batch_size=8))
    out.append(("spec_decode.utils.eagle_step_slot_mapping_metadata_kernel",
                "EagleProposer.propose draft steps 2..k (MTP k>1)", su.eagle_step_slot_mapping_metadata_kernel,
                [("", *launches[0], "wrapper")]))

    # ---------------------------------------------------------------- rejection sampler + top-k/top-p
    from vllm.v1.sample import rejection_sampler as rs
    ntok = nreq * mtp
    cu = torch.arange(mtp, ntok + 1, mtp, dtype=I32)
    out.append(("rejection_sampler.rejection_greedy_sample_kernel", "RejectionSampler.forward (MTP), every step",
                rs.rejection_greedy_sample_kernel,
                [("all greedy", (torch.zeros(nreq, mtp + 1, dtype=I32), cu, torch.zeros(ntok, dtype=I32),
                                 torch.zeros(ntok, dtype=I64), torch.zeros(nreq, 1, dtype=I32), None, mtp, None, None),
                  dict(SYNTHETIC_MODE=False), "rebuilt"),
                 ("mixed", (torch.zeros(nreq, mtp + 1, dtype=I32), cu, torch.zeros(ntok, dtype=I32),
                            torch.zeros(ntok, dtype=I64), torch.zeros(nreq, 1, dtype=I32),
                            torch.zeros(nreq, dtype=BOOL),
                            mtp, torch.zeros(ntok, dtype=torch.float64), None),
                       dict(SYNTHETIC_MODE=False), "rebuilt")]))
    variants = []
    for no_draft in (True, False):
        variants.append(("no draft probs" if no_draft else "draft probs",
                         (torch.zeros(nreq, mtp + 1, dtype=I32), cu, torch.zeros(ntok, dtype=I32),
                          None if no_draft else torch.zeros(ntok, VOCAB), torch.zeros(ntok, VOCAB),
                          torch.zeros(nreq, 1, dtype=I32), torch.zeros(ntok, dtype=I32),
                          torch.zeros(ntok, dtype=torch.float64), torch.zeros(nreq, dtype=BOOL), mtp, VOCAB, None),
                         dict(NO_DRAFT_PROBS=no_draft, SYNTHETIC_MODE=False), "rebuilt"))
    out.append(("rejection_sampler.rejection_random_sample_kernel", "RejectionSampler (temperature > 0)",
                rs.rejection_random_sample_kernel, variants))
    variants = []
    for name, x in (("temperature fp32", torch.zeros(nreq)), ("top_k int32", torch.zeros(nreq, dtype=I32))):
        launches = recorded_launches(rs, "expand_kernel", lambda: rs.expand_batch_to_tokens(x, cu, ntok))
        variants.append((name, *launches[0], "wrapper"))
    out.append(("rejection_sampler.expand_kernel", "apply_sampling_constraints (temperature > 0)",
                rs.expand_kernel, variants))
    variants = []
    for no_draft in (True, False):
        variants.append(("no draft probs" if no_draft else "draft probs",
                         (torch.zeros(ntok, dtype=I32), cu, torch.zeros(ntok, dtype=I32),
                          None if no_draft else torch.zeros(ntok, VOCAB), torch.zeros(ntok, VOCAB),
                          torch.zeros(nreq, VOCAB), VOCAB, 8192),
                         dict(NO_DRAFT_PROBS=no_draft, USE_FP64_GUMBEL=False), "rebuilt"))
    out.append(("rejection_sampler.sample_recovered_tokens_kernel", "RejectionSampler (temperature > 0)",
                rs.sample_recovered_tokens_kernel, variants))

    from vllm.v1.sample.ops import topk_topp_triton as tt
    variants = []
    rows = ntok
    logits = torch.zeros(rows, VOCAB)
    tables = (torch.tensor(tt._PERCENTILE_TO_STD_TABLE, dtype=F32),
              torch.tensor(tt._NORMAL_CDF_TO_SIGMA_TABLE, dtype=F32))
    for k_on, p_on in ((True, True), (False, True), (True, False)):
        variants.append((f"top_k={k_on} top_p={p_on}",
                         (logits, logits.stride(0), torch.zeros(rows, VOCAB), *tables,
                          torch.zeros(rows, dtype=I32) if k_on else logits, torch.zeros(rows) if p_on else logits),
                         dict(BATCH_SIZE=rows, MASK_VALUE=float("-inf"), VOCAB_SIZE=VOCAB, BLOCK_SIZE=8192,
                              BLOCK_SIZE_TRUNC=4096, TOPK_ENABLED=k_on, TOPP_ENABLED=p_on), "rebuilt"))
    out.append(("topk_topp_triton._topk_topp_kernel",
                "apply_top_k_top_p with >= 8 rows: RejectionSampler target logits; Sampler at >= 8 seqs",
                tt._topk_topp_kernel, variants))

    # ---------------------------------------------------------------- structured outputs (xgrammar, not vLLM)
    try:
        from xgrammar.kernels import apply_token_bitmask_inplace_triton as xg
    except ImportError:
        return out
    variants = []
    for dtype in (F16, F32):
        for idx in (None, torch.zeros(2, dtype=I32)):
            lg_ = torch.zeros(nreq, VOCAB, dtype=dtype)
            bm = torch.zeros(nreq, (VOCAB + 31) // 32, dtype=I32)
            variants.append((f"{str(dtype)[6:]} logits, indices={'yes' if idx is not None else 'no'}",
                             (lg_, bm, idx, nreq if idx is None else 2, VOCAB, lg_.stride(0), bm.stride(0), 80, 4096),
                             dict(num_warps=4096 // 32 // (16 // lg_.element_size()), num_stages=3), "rebuilt"))
    out.append(("xgrammar.apply_token_bitmask_inplace_kernel",
                "apply_grammar_bitmask (structured output / forced tool calls); xgrammar's own Triton kernel",
                xg.apply_token_bitmask_inplace_kernel, variants))
    return out


def fla_chunk_cases(arch: int, s: dict) -> list:
    """Every autotune config of FLA's chunked prefill chain, as the repo's test_gdn_baselines_compile does,
    with the lists FLA picks on the emulated card."""
    from triton_faithful import fla_autotune_lists_of, triton_kernels_reachable_from
    from vllm.third_party.flash_linear_attention.ops import chunk as chunk_module
    from vllm.third_party.flash_linear_attention.ops.index import prepare_chunk_indices, prepare_chunk_offsets

    jobs = []
    with fla_autotune_lists_of(arch):
        import importlib
        chunk = importlib.reload(chunk_module)
        recorders = {}
        for namespace, name, kernel in list(triton_kernels_reachable_from(vars(chunk))):
            rec = LaunchRecorder()
            recorders[(id(namespace), name)] = (namespace, name, kernel, rec)
            namespace[name] = rec
        try:
            tokens, gk, gv, d = 300, s["gk"], s["gv"], s["dk"]
            cu = torch.tensor([0, 100, tokens], dtype=I32)
            chunk.chunk_gated_delta_rule_fwd(
                torch.zeros(1, tokens, gk, d, dtype=F16), torch.zeros(1, tokens, gk, d, dtype=F16),
                torch.zeros(1, tokens, gv, d, dtype=F16), torch.zeros(1, tokens, gv),
                torch.zeros(1, tokens, gv, dtype=F16),
                d ** -0.5, torch.zeros(2, gv, d, d), True, cu_seqlens=cu, chunk_indices=prepare_chunk_indices(cu, 64),
                chunk_offsets=prepare_chunk_offsets(cu, 64))
        finally:
            for namespace, name, kernel, rec in recorders.values():
                namespace[name] = kernel
        for namespace, name, kernel, rec in recorders.values():
            if not rec.launches:
                continue
            _, configs, _, _ = unwrap_tuned(kernel)
            for config in distinct_configs(configs, arch):
                jobs.append((f"fla.{name}", str(config) if config else "", kernel, *rec.launches[0], config))
    importlib.reload(chunk_module)
    return jobs


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--archs", default="70,75")
    parser.add_argument("--shapes", default="27b-tp4,35b-tp1")
    parser.add_argument("--fla-chunk", action="store_true")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--keep-cache", action="store_true",
                        help="reuse Triton's on-disk cache (default: a fresh one, so every kernel is really compiled)")
    opts = parser.parse_args()
    if not opts.keep_cache:
        os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="triton-sm7x-cache-")
    archs = [int(a) for a in opts.archs.split(",")]
    t_start = time.time()
    jobs = []  # (shape, kernel id, where, variant, how, arch, kernel, args, kwargs, config)
    for shape in opts.shapes.split(","):
        for kid, where, kernel, variants in cases(SHAPES[shape]):
            for variant, args, kwargs, how in variants:
                for arch in archs:
                    jobs.append((shape, kid, where, variant, how, arch, kernel, args, kwargs, None))
        if opts.fla_chunk:
            for arch in archs:
                for kid, variant, kernel, args, kwargs, config in fla_chunk_cases(arch, SHAPES[shape]):
                    jobs.append((shape, kid, "GDN prefill fallback (vllm-sm7x chunk kernel declines)", variant,
                                 "wrapper+autotune config", arch, kernel, args, kwargs, config))
    t_setup = time.time() - t_start

    def run(job):
        shape, kid, where, variant, how, arch, kernel, args, kwargs, config = job
        return job, compile_launch(kernel, args, kwargs, arch, config)

    with ThreadPoolExecutor(max_workers=opts.workers) as pool:
        results = list(pool.map(run, jobs))

    failures = 0
    last = None
    for (shape, kid, where, variant, how, arch, *_), r in results:
        if (shape, kid) != last:
            print(f"\n[{shape}] {kid}\n    where: {where}")
            last = (shape, kid)
        if r["ok"]:
            status = "OK " if r["fits"] else "NO-FIT"
            failures += not r["fits"]
            print(f"    sm_{arch} {status} {variant:<42} ({how}) warps={r['warps']} smem={r['shared']}B "
                  f"regs={r.get('regs')} stack={r.get('stack')} local={r.get('local')} {','.join(r['notes'])} "
                  f"[{r['secs']:.1f}s]")
        else:
            failures += 1
            print(f"    sm_{arch} FAIL {variant:<42} ({how}) {r['error']} [{r['secs']:.1f}s]")
    if not opts.keep_cache:
        import shutil
        shutil.rmtree(os.environ["TRITON_CACHE_DIR"], ignore_errors=True)
    print(f"\n{len(results)} compiles, {failures} failing or not fitting; setup {t_setup:.0f}s, "
          f"total {time.time() - t_start:.0f}s on {opts.workers} worker threads")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
