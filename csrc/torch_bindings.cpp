// Op schemas of vllm_sm7x._C, namespace _C_sm7x. Fake (meta) implementations are registered beside
// the Python wrappers in vllm_sm7x/ops/.
#include <Python.h>
#include <cuda_runtime_api.h>
#include <torch/library.h>

#include <string>

#include "ops.h"

std::string sm7x::build_info() {
  return std::string("{\"cuda_archs\": \"") + SM7X_CUDA_ARCHS_STR + "\", \"cuda_runtime\": " +
         std::to_string(CUDART_VERSION) + ", \"paths\": [\"sm70\"" + (SM7X_BUILD_SM75 ? ", \"sm75\"" : "") + "]}";
}

TORCH_LIBRARY(_C_sm7x, m) {
  m.def("build_info() -> str");
  m.impl("build_info", &sm7x::build_info);
  m.def("mma_gemm(Tensor a, Tensor b, Tensor(a!) out, str path) -> ()");
  m.impl("mma_gemm", torch::kCUDA, &sm7x::mma_gemm);
  m.def("awq_gemm(Tensor x, Tensor qweight, Tensor scale_zero, int group_size, Tensor? bias, str path, "
        "int warps, int split_k, int column_tiles=0) -> Tensor");
  m.impl("awq_gemm", torch::kCUDA, &sm7x::awq_gemm);
  m.def("awq_gemm_tiled(Tensor x, Tensor qweight, Tensor scale_zero, int group_size, Tensor? bias, str path, "
        "int token_tiles, int warps, int split_k) -> Tensor");
  m.impl("awq_gemm_tiled", torch::kCUDA, &sm7x::awq_gemm_tiled);
  m.def("awq_linear(Tensor x, Tensor qweight, Tensor scale_zero, int group_size, Tensor? bias, str path) -> Tensor");
  m.impl("awq_linear", torch::kCUDA, &sm7x::awq_linear);
  m.def("awq_dequantize(Tensor qweight, Tensor scale_zero, int group_size) -> Tensor");
  m.impl("awq_dequantize", torch::kCUDA, &sm7x::awq_dequantize);
  m.def("gdn_conv_update(Tensor(a!) x, Tensor(b!) conv_state, Tensor weight, Tensor? bias, Tensor state_indices, "
        "bool silu, Tensor? cu_seqlens=None, Tensor? num_accepted=None) -> ()");
  m.impl("gdn_conv_update", torch::kCUDA, &sm7x::gdn_conv_update);
  m.def("gdn_conv_prefill(Tensor x, Tensor weight, Tensor? bias, Tensor(a!) conv_state, Tensor query_start_loc, "
        "Tensor? cache_indices, Tensor? has_initial_state, bool silu, int pad_slot_id, int null_block_id) -> Tensor");
  m.impl("gdn_conv_prefill", torch::kCUDA, &sm7x::gdn_conv_prefill);
  m.def("gdn_recurrent(Tensor qkv, Tensor a, Tensor b, Tensor A_log, Tensor dt_bias, float scale, "
        "Tensor(a!) state, Tensor state_indices, Tensor(b!) out, int k_heads, Tensor? cu_seqlens=None, "
        "Tensor? num_accepted=None, bool round_beta=False) -> ()");
  m.impl("gdn_recurrent", torch::kCUDA, &sm7x::gdn_recurrent);
  m.def("gdn_chunk_prefill(Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta, float scale, "
        "Tensor? initial_state, Tensor cu_seqlens) -> (Tensor, Tensor)");
  m.impl("gdn_chunk_prefill", torch::kCUDA, &sm7x::gdn_chunk_prefill);
  m.def("moe_topk_softmax(Tensor(a!) topk_weights, Tensor(b!) topk_ids, Tensor(c!) token_expert_indices, "
        "Tensor gating_output, bool renormalize) -> ()");
  m.impl("moe_topk_softmax", torch::kCUDA, &sm7x::moe_topk_softmax);
  m.def("moe_sort_rows(Tensor topk_ids, int num_experts, int rows_per_tile) -> Tensor[]");
  m.impl("moe_sort_rows", torch::kCUDA, &sm7x::moe_sort_rows);
  m.def("moe_combine(Tensor down, Tensor topk_weights, Tensor topk_ids, int num_experts) -> Tensor");
  m.impl("moe_combine", torch::kCUDA, &sm7x::moe_combine);
  m.def("moe_silu_mul(Tensor gate_up) -> Tensor");
  m.impl("moe_silu_mul", torch::kCUDA, &sm7x::moe_silu_mul);
  m.def("awq_moe_decode(Tensor x, Tensor w13_qweight, Tensor w13_scale_zero, Tensor w2_qweight, "
        "Tensor w2_scale_zero, Tensor topk_weights, Tensor topk_ids, int group_size) -> Tensor");
  m.impl("awq_moe_decode", torch::kCUDA, &sm7x::awq_moe_decode);
  m.def("awq_moe_decode_routed(Tensor x, Tensor w13_qweight, Tensor w13_scale_zero, Tensor w2_qweight, "
        "Tensor w2_scale_zero, Tensor router_logits, int top_k, bool renormalize, int group_size) -> Tensor[]");
  m.impl("awq_moe_decode_routed", torch::kCUDA, &sm7x::awq_moe_decode_routed);
  m.def("awq_moe_gemm(Tensor x, Tensor qweight, Tensor scale_zero, Tensor sorted_rows, Tensor offsets, "
        "Tensor tile_expert, Tensor tile_row, int x_row_divisor, int group_size, int rows_per_tile, str path, "
        "int column_tiles=1) -> Tensor");
  m.impl("awq_moe_gemm", torch::kCUDA, &sm7x::awq_moe_gemm);
  // Host-only (no tensors): plain functions, callable on any machine with the GPU they name.
  m.def("awq_plan(int M, int N, int K, int group_size, str path, int device) -> int[]", &sm7x::awq_plan);
  m.def("awq_fused_registry() -> int[]", &sm7x::awq_fused_registry);
  m.def("awq_grouped_registry() -> int[]", &sm7x::awq_grouped_registry);
  m.def("awq_tiled_registry() -> int[]", &sm7x::awq_tiled_registry);
  m.def("awq_device_model(str path, int device) -> float[]", &sm7x::awq_device_model);
  m.def("awq_token_tiles(int M) -> int", &sm7x::awq_token_tiles);
  m.def("awq_linear_kernel(int M) -> int", &sm7x::awq_linear_kernel);
  m.def("awq_plan_model(int M, int N, int K, int group_size, int sms, float bytes_per_us, float sm_mhz, "
        "int[] ctas_per_sm) -> int[]",
        &sm7x::awq_plan_model);
  m.def("awq_plan_tiled_model(int M, int N, int K, int group_size, int sms, float bytes_per_us, float sm_mhz, "
        "int[] ctas_per_sm) -> int[]",
        &sm7x::awq_plan_tiled_model);
  m.def("awq_set_tuned(int N, int K, int group_size, str path, int m_bucket, int warps, int split_k, "
        "int column_tiles=1) -> ()",
        &sm7x::awq_set_tuned);
  m.def("awq_clear_tuned() -> ()", &sm7x::awq_clear_tuned);
}

// Importing vllm_sm7x._C loads this library, whose static initialisers register the ops above.
PyMODINIT_FUNC PyInit__C(void) {
  static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "vllm-sm7x CUDA kernels (torch.ops._C_sm7x)", -1,
                               nullptr};
  return PyModule_Create(&module);
}
