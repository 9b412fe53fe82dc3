#include "quantization/awq/awq_dispatch.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <tuple>

#include "core/arch_select.h"
#include "core/ceil_div.h"
#include "quantization/awq/awq_registry.h"

namespace sm7x::awq {
namespace {

// Time for one warp to work through one k tile when latency, not bandwidth, bounds it: about a
// DRAM round trip divided by the two tiles the warp keeps in flight. Fit with the partial-wave rule
// below to the H200's timed candidates (benchmarks/results/awq_gemm-sm75-h200-2026-12-01-tune.json,
// tools/awq_plan_regret.py): the model's picks take 1.008x the best candidates' time over the 27B
// layers at 1-64 rows, 1.056x at worst (0.35 without the rule: 1.027x, 1.104x).
constexpr double kTileRoundMicros = 0.5;
// Launch and tail of the split-K reduction kernel.
constexpr double kReduceMicros = 2.0;
// Two column tiles per CTA are chosen where one tile's x loads (through L1) would take longer than
// streaming the weights. The weight stream reaches about half of peak bandwidth when nothing else
// bounds it (0.46-0.52 of the H200's in the 27B layers at 1-4 rows), and an SM's loads deliver about
// 22 bytes of x per clock (the H200 at 16 rows and one tile, where x loads, 4x the weight bytes, bound
// the time). Fit to benchmarks/results/awq_gemm-sm75-h200-2026-12-01-column-tiles.json: the rule picks
// the measured best tile count in 66 of its 88 (layer, rows) cases.
constexpr double kWeightStreamFraction = 0.5;
constexpr double kXBytesPerSmClock = 22.0;

using TuningKey = std::tuple<int64_t, int64_t, int, int, int64_t>;  // N, K, group, path, M bucket

std::mutex tuning_mutex;
std::map<TuningKey, FusedConfig>& tuning_table() {
  static std::map<TuningKey, FusedConfig> table;
  return table;
}

TuningKey tuning_key(const Problem& p) {
  return {p.N, p.K, p.group_size, static_cast<int>(p.path), m_bucket(p.M)};
}

}  // namespace

int64_t m_bucket(int64_t M) {
  int64_t bucket = 1;
  while (bucket < M) bucket *= 2;
  return bucket;
}

DeviceModel device_model(int device, ArchPath path) {
  // Attribute queries cost tens of microseconds (the memory clock comes from the driver), so ask
  // once per device and path.
  static std::mutex mutex;
  static std::map<std::pair<int, int>, DeviceModel> models;
  const std::lock_guard<std::mutex> lock(mutex);
  const auto key = std::make_pair(device, static_cast<int>(path));
  const auto found = models.find(key);
  if (found != models.end()) return found->second;
  int sms = 0, mem_khz = 0, bus_bits = 0, sm_khz = 0;
  SM7X_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  SM7X_CUDA_CHECK(cudaDeviceGetAttribute(&sm_khz, cudaDevAttrClockRate, device));
  SM7X_CUDA_CHECK(cudaDeviceGetAttribute(&mem_khz, cudaDevAttrMemoryClockRate, device));
  SM7X_CUDA_CHECK(cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device));
  const double bytes_per_us = 2.0 * mem_khz * 1e3 * bus_bits / 8 / 1e6;  // double data rate
  auto occupancy = dispatch_arch_path(path, [](auto tag) { return &fused_ctas_per_sm<decltype(tag)>; });
  auto tiled_occupancy = dispatch_arch_path(path, [](auto tag) { return &tiled_ctas_per_sm<decltype(tag)>; });
  const DeviceModel model{sms, bytes_per_us > 0 ? bytes_per_us : 900e3, sm_khz > 0 ? sm_khz / 1e3 : 1500.0,
                          occupancy, tiled_occupancy};
  return models.emplace(key, model).first->second;
}

#define SM7X_AWQ_ENTRY(T, W, C) FusedConfig{T, W, 1, C},
const std::vector<FusedConfig>& fused_registry() {
  static const std::vector<FusedConfig> entries{SM7X_AWQ_FUSED_REGISTRY(SM7X_AWQ_ENTRY)};
  return entries;
}

const std::vector<FusedConfig>& grouped_registry() {
#define SM7X_AWQ_GROUPED_TILED_ENTRY(T, W) FusedConfig{T, W, 1, W},
  static const std::vector<FusedConfig> entries{SM7X_AWQ_GROUPED_REGISTRY(SM7X_AWQ_ENTRY)
                                                    SM7X_AWQ_GROUPED_TILED_REGISTRY(SM7X_AWQ_GROUPED_TILED_ENTRY)};
#undef SM7X_AWQ_GROUPED_TILED_ENTRY
  return entries;
}
#undef SM7X_AWQ_ENTRY

const std::vector<FusedConfig>& tiled_registry() {
#define SM7X_AWQ_TILED_ENTRY(T, W) FusedConfig{T, W, 1, 1},
  static const std::vector<FusedConfig> entries{SM7X_AWQ_TILED_REGISTRY(SM7X_AWQ_TILED_ENTRY)};
#undef SM7X_AWQ_TILED_ENTRY
  return entries;
}

bool is_grouped_tiled_entry(const FusedConfig& config) {
#define SM7X_AWQ_MATCH_GROUPED_TILED(T, W) \
  if (is_grouped_tiled(config, T, W)) return true;
  SM7X_AWQ_GROUPED_TILED_REGISTRY(SM7X_AWQ_MATCH_GROUPED_TILED)
#undef SM7X_AWQ_MATCH_GROUPED_TILED
  return false;
}

LinearKernel linear_kernel_for(int64_t M) {
  if (M <= kFusedMaxRows) return LinearKernel::kFused;
  return M <= kTiledMaxRows ? LinearKernel::kTiled : LinearKernel::kDequantGemm;
}

int registry_index(const FusedConfig& c) {
  const auto& entries = fused_registry();
  for (size_t i = 0; i < entries.size(); ++i) {
    if (is_instantiation(c, entries[i].token_tiles, entries[i].warps, entries[i].column_tiles)) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

bool is_registered(const FusedConfig& c) { return registry_index(c) >= 0; }

int token_tiles_for(int64_t M) { return M <= kTokensPerMma ? 1 : 2; }

namespace {

// Weight and scale bytes the fused kernel streams: the weights once per block of tokens.
double weight_bytes(const Problem& p, int64_t token_blocks) {
  return token_blocks * (p.N * p.K / 2.0 + p.K / p.group_size * p.N * 4.0);
}

}  // namespace

namespace {

// A grid of token_blocks x column_blocks x splits CTAs, ctas_per_sm of them resident per SM, each warp
// working through `rounds` k tiles.
double estimate_grid_micros(const Problem& p, const DeviceModel& device, const FusedConfig& c, int ctas_per_sm,
                            int64_t token_blocks, int64_t column_blocks, double rounds) {
  const int64_t ctas = token_blocks * column_blocks * c.splits;
  const int64_t slots = std::max(1, ctas_per_sm) * int64_t{device.sms};
  // Weights are read once per token block, x and out once.
  const double bytes = weight_bytes(p, token_blocks) + 2.0 * p.M * (p.K + p.N);
  // Each wave takes the longer of its share of the bytes at bandwidth and its rounds at latency, and
  // the waves run one after another: a partial last wave of few CTAs cannot fill the memory pipe and
  // costs its rounds at latency. Measured: TP4 gate_up at 5-8 rows, 544 CTAs of 8 warps on 528 slots,
  // takes 1.17x the time of 4 warps in one wave (1056 slots), though both stream the same bytes.
  const int64_t full_waves = ctas / slots, tail_ctas = ctas % slots;
  const double latency = rounds * kTileRoundMicros;
  const double bytes_per_cta = bytes / static_cast<double>(ctas);
  double micros = std::max(full_waves * latency, full_waves * slots * bytes_per_cta / device.bytes_per_us);
  if (tail_ctas > 0) micros += std::max(latency, tail_ctas * bytes_per_cta / device.bytes_per_us);
  if (c.splits > 1) micros += kReduceMicros + 8.0 * p.M * p.N * c.splits / device.bytes_per_us;
  return micros;
}

// The cheapest of entries (given in tie-break order) at every split count worth trying for k_tiles (a
// count that gives the same k ranges as a smaller one is not); a later candidate must be 2% cheaper
// to win: prefer the simpler.
template <class Estimate>
FusedConfig cheapest_plan(const std::vector<FusedConfig>& entries, int64_t k_tiles, Estimate&& estimate_micros) {
  FusedConfig best = entries.front();
  double best_micros = INFINITY;
  for (const FusedConfig& entry : entries) {
    for (int64_t s = 1; s <= std::min<int64_t>(k_tiles, kMaxSplits); ++s) {
      if (ceil_div(k_tiles, ceil_div(k_tiles, s)) != s) continue;
      FusedConfig c = entry;
      c.splits = static_cast<int>(s);
      const double micros = estimate_micros(c);
      if (micros < best_micros * 0.98) best = c, best_micros = micros;
    }
  }
  return best;
}

}  // namespace

double estimate_fused_micros(const Problem& p, const DeviceModel& device, const FusedConfig& c) {
  const int64_t tiles_per_split = ceil_div(ceil_div(p.K, kTileK), c.splits);
  return estimate_grid_micros(p, device, c, device.ctas_per_sm(c), ceil_div(p.M, kTokensPerMma * c.token_tiles),
                              ceil_div(p.N, kTileRows * c.column_tiles),
                              static_cast<double>(ceil_div(tiles_per_split, c.warps)));
}

double estimate_tiled_micros(const Problem& p, const DeviceModel& device, const FusedConfig& c) {
  const int64_t tiles_per_split = ceil_div(ceil_div(p.K, kTileK), c.splits);
  return estimate_grid_micros(p, device, c, device.tiled_ctas_per_sm(c),
                              ceil_div(p.M, kTokensPerMma * c.token_tiles), ceil_div(p.N, kTileRows * c.warps),
                              static_cast<double>(tiles_per_split));
}

int plan_column_tiles(const Problem& p, const DeviceModel& device, int token_tiles) {
  const int64_t token_blocks = ceil_div(p.M, kTokensPerMma * token_tiles);
  const int64_t ctas = token_blocks * ceil_div(p.N, kTileRows);  // one tile per CTA, no splits
  const double stream_micros = weight_bytes(p, token_blocks) / (device.bytes_per_us * kWeightStreamFraction);
  // Every CTA loads its tokens' x over its k range; only the SMs that hold CTAs do that work.
  const double x_micros = 2.0 * ceil_div(p.N, kTileRows) * p.M * p.K /
                          (std::min<int64_t>(ctas, device.sms) * device.sm_mhz * kXBytesPerSmClock);
  return x_micros > stream_micros ? 2 : 1;
}

FusedConfig plan_fused(const Problem& p, const DeviceModel& device) {
  {
    const std::lock_guard<std::mutex> lock(tuning_mutex);
    const auto it = tuning_table().find(tuning_key(p));
    if (it != tuning_table().end()) return it->second;
  }
  return model_plan(p, device);
}

FusedConfig model_plan(const Problem& p, const DeviceModel& device) {
  const int token_tiles = token_tiles_for(p.M);
  const int column_tiles = plan_column_tiles(p, device, token_tiles);
  const int64_t k_tiles = ceil_div(p.K, kTileK);
  // Candidates in tie-break order: 8 warps first (a CTA then streams 8 consecutive tiles: measured
  // faster), then fewer splits.
  std::vector<FusedConfig> entries;
  for (const FusedConfig& e : fused_registry()) {
    if (e.token_tiles == token_tiles && e.column_tiles == column_tiles) entries.push_back(e);
  }
  if (entries.empty()) {  // a registry without two-tile entries for these rows: one tile
    for (const FusedConfig& e : fused_registry()) {
      if (e.token_tiles == token_tiles && e.column_tiles == 1) entries.push_back(e);
    }
  }
  std::stable_sort(entries.begin(), entries.end(),
                   [](const FusedConfig& a, const FusedConfig& b) { return a.warps > b.warps; });
  return cheapest_plan(entries, k_tiles, [&](const FusedConfig& c) { return estimate_fused_micros(p, device, c); });
}

FusedConfig plan_tiled(const Problem& p, const DeviceModel& device) {
  // Candidates in tie-break order: more tokens per CTA (fewer weight reads), then fewer splits.
  std::vector<FusedConfig> entries = tiled_registry();
  std::stable_sort(entries.begin(), entries.end(),
                   [](const FusedConfig& a, const FusedConfig& b) { return a.token_tiles > b.token_tiles; });
  return cheapest_plan(entries, ceil_div(p.K, kTileK),
                       [&](const FusedConfig& c) { return estimate_tiled_micros(p, device, c); });
}

FusedConfig plan_kernel(LinearKernel kernel, const Problem& problem, const DeviceModel& device) {
  return kernel == LinearKernel::kTiled ? plan_tiled(problem, device) : plan_fused(problem, device);
}

void set_tuned(const Problem& p, const FusedConfig& config) {
  const std::lock_guard<std::mutex> lock(tuning_mutex);
  tuning_table()[tuning_key(p)] = config;
}

void clear_tuned() {
  const std::lock_guard<std::mutex> lock(tuning_mutex);
  tuning_table().clear();
}

}  // namespace sm7x::awq
