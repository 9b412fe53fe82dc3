// Host-side choice of how an AWQ GEMM runs: the fused kernel (which registry entry, how many
// k splits) or dequantise + cuBLAS. One place decides; the ops in awq_ops.cpp only execute.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "core/arch.h"
#include "quantization/awq/awq_gemm.h"

namespace sm7x::awq {

// Which kernel runs M rows (linear_kernel_for): the fused kernel up to kFusedMaxRows (it re-reads the
// weights once per 16 tokens), the tiled kernel up to kTiledMaxRows (once per 32 tokens), then
// dequantise + cuBLAS. Measured on the 27B decoder layers (H200, sm75 path, `benchmarks/awq_gemm.py
// --kernels`): at 16 rows the fused kernel takes 0.87-0.89x the tiled one's time, at 32-128 the tiled
// 0.77-0.91x the next best, at 256 dequantise + cuBLAS 0.71-0.76x the tiled (docs/benchmarks.md).
constexpr int64_t kFusedMaxRows = 16;
constexpr int64_t kTiledMaxRows = 128;
constexpr int kMaxSplits = 16;

enum class LinearKernel { kFused, kTiled, kDequantGemm };
LinearKernel linear_kernel_for(int64_t M);

struct Problem {
  int64_t M, N, K;
  int group_size;
  ArchPath path;
};

struct DeviceModel {
  int sms;                                                // streaming multiprocessors
  double bytes_per_us;                                    // peak memory bandwidth
  double sm_mhz;                                          // SM clock
  std::function<int(const FusedConfig&)> ctas_per_sm;     // occupancy of a registry entry
  std::function<int(const FusedConfig&)> tiled_ctas_per_sm;  // occupancy of a tiled registry entry
};

DeviceModel device_model(int device, ArchPath path);

// The fused kernel's registry entries (awq_registry.h), splits = 1; the index of the one that holds
// config's (token_tiles, warps, column_tiles), -1 for none.
const std::vector<FusedConfig>& fused_registry();
// The grouped (MoE) launch's entries, likewise: the fused kernel's, then the tiled kernel's grouped
// form as (token_tiles, warps, column_tiles = warps).
const std::vector<FusedConfig>& grouped_registry();
// The tiled kernel's entries (column_tiles 1; warps = column tiles per CTA).
const std::vector<FusedConfig>& tiled_registry();
// Whether a grouped_registry() entry is the tiled kernel's grouped form.
bool is_grouped_tiled_entry(const FusedConfig& config);
int registry_index(const FusedConfig& config);
bool is_registered(const FusedConfig& config);
// Token tiles per CTA for M rows (8 tokens each): one for decode, two above.
int token_tiles_for(int64_t M);

// The cost model: first the column tiles per CTA (two where one tile's x loads through L1 would
// outlast the weight stream), then every registry entry with them usable for M and every split
// count, scored by the full waves of CTAs on resident slots (each the longer of its share of the
// bytes at bandwidth and its per-warp k rounds at latency), a partial last wave's rounds at latency,
// and the split-K reduction; the cheapest wins, ties to more warps and fewer splits.
// A measured entry in the tuning table (set by vllm_sm7x/quantization/awq_tuning.py) wins over it
// (plan_fused); model_plan is the cost model alone.
FusedConfig plan_fused(const Problem& problem, const DeviceModel& device);
FusedConfig model_plan(const Problem& problem, const DeviceModel& device);
double estimate_fused_micros(const Problem& problem, const DeviceModel& device, const FusedConfig& config);
int plan_column_tiles(const Problem& problem, const DeviceModel& device, int token_tiles);

// The tiled kernel's plan: the registry entry and split count with the lowest estimate (the fused
// model's waves, with a CTA's columns = 16 x warps and each warp walking every k tile of its split).
FusedConfig plan_tiled(const Problem& problem, const DeviceModel& device);
double estimate_tiled_micros(const Problem& problem, const DeviceModel& device, const FusedConfig& config);
// plan_fused or plan_tiled, as kernel says (not kDequantGemm, which has no plan).
FusedConfig plan_kernel(LinearKernel kernel, const Problem& problem, const DeviceModel& device);

// Tuning table (fused kernel), keyed by (N, K, group size, path, M bucket = M rounded up to a power of two).
int64_t m_bucket(int64_t M);
void set_tuned(const Problem& bucket_problem, const FusedConfig& config);
void clear_tuned();

}  // namespace sm7x::awq
