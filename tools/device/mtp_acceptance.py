"""Where MTP drafts get lost: speculative decoding's acceptance on the qwen35-tiny-mtp AWQ checkpoint
under each named variant of our emulated path, one engine per variant (run on the lent GPU; each
costs about one serving test's engine start).

    python tools/device/mtp_acceptance.py sm75:ours sm75:fla-gdn sm75:triton-attn sm75:eager

Variants swap one of our pieces for stock vLLM's, so the one whose swap restores stock's rate
(tests/gpu/test_e2e_vs_stock.py prints it) holds the loss:
    ours         our GDN kernels, FLASH_ATTN_V100, CUDA graphs
    fla-gdn      vLLM's Triton kernels for all of GDN (VLLM_SM7X_GDN_DECODE=0, VLLM_SM7X_GDN_PREFILL=0,
                 VLLM_SM7X_GDN_CONV_PREFILL=0)
    triton-attn  TRITON_ATTN instead of FLASH_ATTN_V100
    stock-parts  both swaps at once (what is left is ours: AWQ GEMM, platform, config)
    eager        ours without CUDA graphs
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.gpu.conftest import cached_checkpoint_folder, make_checkpoint_once  # noqa: E402
from tests.gpu.test_e2e_vs_stock import MTP, acceptance, generate  # noqa: E402

OUR_GDN = {"VLLM_SM7X_GDN_DECODE": "1", "VLLM_SM7X_GDN_PREFILL": "1", "VLLM_SM7X_GDN_CONV_PREFILL": "1"}
FLA_GDN = {"VLLM_SM7X_GDN_DECODE": "0", "VLLM_SM7X_GDN_PREFILL": "0", "VLLM_SM7X_GDN_CONV_PREFILL": "0"}
VARIANTS = {  # name -> (environment, attention backend, mode)
    "ours": (OUR_GDN, "default", "graphs"),
    "fla-gdn": (FLA_GDN, "default", "graphs"),
    "triton-attn": (OUR_GDN, "TRITON_ATTN", "graphs"),
    "stock-parts": (FLA_GDN, "TRITON_ATTN", "graphs"),
    "eager": (OUR_GDN, "default", "eager"),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="PATH:VARIANT, e.g. sm75:fla-gdn (variants: " + ", ".join(VARIANTS) + ")")
    args = parser.parse_args()
    folder = make_checkpoint_once("qwen35-tiny-mtp", cached_checkpoint_folder("qwen35-tiny-mtp"))
    for run in args.runs:
        path, variant = run.split(":")
        env, backend, mode = VARIANTS[variant]
        result = generate(folder, path, mode, backend=backend, engine_args=MTP, env_extra=env, logprobs=0)
        rate, accepted, drafted = acceptance(result)
        print(f"MTP acceptance {path}:{variant}: {accepted} of {drafted} ({rate:.3f}), quantization "
              f"{result['quantization']}", flush=True)


if __name__ == "__main__":
    main()
