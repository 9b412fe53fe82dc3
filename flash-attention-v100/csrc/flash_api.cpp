// Torch ops of flash_attn_v100._C (namespace flash_attn_v100): input checks with clear messages,
// then the kernels' launchers. Fake implementations live in flash_attn_v100/flash_attn_interface.py.
#include <Python.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <torch/all.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <tuple>
#include <vector>

#include "core/ceil_div.h"
#include "core/cuda_check.h"
#include "core/torch_arch.h"
#include "decode/decode_attention.h"
#include "prefill/prefill_attention.h"
#include "paged_kv/write_kv_cache.h"

namespace flash_v100 {

using TensorPtrs = std::initializer_list<const torch::Tensor*>;
using sm7x::ceil_div;

std::string build_info() {
  return std::string("{\"cuda_archs\": \"") + SM7X_CUDA_ARCHS_STR + "\", \"cuda_runtime\": " +
         std::to_string(CUDART_VERSION) + ", \"paths\": [\"simt\", \"sm70\"" + (SM7X_BUILD_SM75 ? ", \"sm75\"" : "") +
         "]}";
}

// Which kernel runs decode and MTP verification, by the query rows per KV head of the call's short
// sequences (q_len x group). Measured on the H200 in emulation (sm75 path, 2026-12-01):
// - benchmarks/results/attention-sm75-h200-2026-12-01-mma-decode-ab.json: at 30 rows (MTP verification,
//   q_len 5 x 6 heads) the tensor-core kernel on 16 rows per CTA takes 0.66-0.98x the SIMT kernel's time;
//   at 6 rows (plain decode) 1.05-1.33x, as its 16-key stages keep half the SIMT kernel's bytes in flight.
// - benchmarks/results/attention-sm75-h200-2026-12-01-mma32.json: at 30 rows its 32-row form (8 warps,
//   two row groups share each K/V stage, so K and V are read once instead of twice) takes 0.56-0.98x the
//   16-row form's time at 32K+ context (median 0.78x), 0.63-1.12x at 4K.
// So on the sm70 path: the 16-row tensor-core form for 9-16 rows, the 32-row form above 16 (but in a
// mixed batch, below). Up to 8 rows it takes the 8-row kernel's Volta form, on an estimate: the H200 runs
// Volta's m8n8k4 about 20x slower than a V100, so it cannot time that form as a V100 would. With its mma
// replaced by stand-ins (branch diag/volta-free-mma, attention-sm70-h200-2026-12-03-volta-free-mma.json)
// it took 0.57-0.84x the SIMT kernel's time from 32K keys at q_len 1 (0.26-0.59 of copy bandwidth
// against SIMT's 0.22-0.34, both held to a V100's CTAs per SM), and 0.72-1.18x at 512-4K keys. A V100's
// HMMA cost for its 4 mma per KB of KV is about 1/20 of the H200's measured one, which leaves it near the
// first figures. FLASH_ATTN_V100_DECODE=simt restores SIMT.
// The sm75 path takes the 8-row kernel (decode_mma8.cuh: each warp on its own keys, fragments loaded
// straight from the cache) for every decode: forced on every case in one run
// (benchmarks/results/attention-sm75-h200-2026-12-03-mma8.json) it took 0.40-0.93x the SIMT kernel's time
// at q_len 1 (median 0.49x; 0.61-0.81 of copy bandwidth from 32K keys at 27B TP1) and 0.58-0.86x the
// 32-row form's at q_len 5, whose 30 rows it reads in four blocks of 8 (the blocks of one split run side
// by side, so the re-reads come from L2).
// The pair kernel (decode_pairs_sm75.cu: 16 rows per warp pair, each warp on half of head_dim) is the
// sm75 path's candidate for MTP verification: 0.86-0.93x the 8-row kernel's time at q_len 5 from 32K keys,
// slower at 4K and at q_len 1 (attention-sm75-h200-2026-12-03-pairs-ab-*.json), not yet served: it runs
// only when asked for.
// FLASH_ATTN_V100_DECODE=simt|mma|mma32|mma8|pairs forces one.
namespace {

constexpr int64_t kMmaDecodeMinRows = 9;
constexpr int64_t kMma32DecodeMinRows = 17;

struct DecodeChoice {
  bool tensor_cores;
  int row_groups;    // of the tensor-core kernel: groups of 16 query rows per CTA
  const char* name;  // as FLASH_ATTN_V100_DECODE spells it
  bool rows8 = false;  // the 8-row kernel (launch_decode_mma8)
  bool pairs = false;  // the pair kernel (launch_decode_pairs: 16 rows, Turing path, head_dim >= 128)
  int64_t rows_per_cta() const {
    if (rows8) return kMma8Rows;
    if (pairs) return kPairRows;
    return tensor_cores ? kDecodeRowsPerCta * row_groups : kDecodeRowsPerCta;
  }
};

// The five decode kernels, each spelled once for the default rule and the switch.
constexpr DecodeChoice kSimtDecode{false, 1, "simt"};
constexpr DecodeChoice kMmaDecode{true, 1, "mma"};
constexpr DecodeChoice kMma32Decode{true, 2, "mma32"};
constexpr DecodeChoice kMma8Decode{true, 1, "mma8", true};
constexpr DecodeChoice kPairsDecode{true, 1, "pairs", false, true};

// with_prefill: the call also has query blocks for the prefill kernel (a mixed batch) and the caller did
// not say how long its short sequences are. They may then be plain decodes (q_len 1) whatever
// query_rows says (it counts the most they may have, 16 per KV head), so on the sm70 path they keep the
// 16-row form: the 32-row one measured 0.90-1.45x its time on 6 rows (median 1.39x; H200, sm75,
// attention-sm75-h200-2026-12-01-mma32.json). Told 8 rows or fewer, they take the 8-row kernel.
DecodeChoice decode_choice(int64_t query_rows, bool with_prefill, sm7x::ArchPath path) {
  const char* env = std::getenv("FLASH_ATTN_V100_DECODE");
  const std::string choice = env == nullptr ? "" : env;
  if (choice.empty()) {
    if (path == sm7x::ArchPath::kSm75) return kMma8Decode;
    if (query_rows >= kMma32DecodeMinRows && !with_prefill) return kMma32Decode;
    return query_rows >= kMmaDecodeMinRows ? kMmaDecode : kMma8Decode;
  }
  TORCH_CHECK_VALUE(choice != kPairsDecode.name || path == sm7x::ArchPath::kSm75,
                    "FLASH_ATTN_V100_DECODE=pairs runs on the sm75 path only (it is built on Turing's m16n8k8); ",
                    "unset it on the sm70 path");
  for (const DecodeChoice& kernel : {kSimtDecode, kMmaDecode, kMma32Decode, kMma8Decode, kPairsDecode}) {
    if (choice == kernel.name) return kernel;
  }
  TORCH_CHECK_VALUE(false, "FLASH_ATTN_V100_DECODE must be 'simt', 'mma', 'mma32', 'mma8' or 'pairs' (unset: chosen by ",
                    "arch path and query rows), got '", choice, "'");
  return {};
}

void check_decode_head_dim(const DecodeChoice& choice, int64_t head_dim) {
  TORCH_CHECK_VALUE(!choice.pairs || head_dim >= 128, "FLASH_ATTN_V100_DECODE=pairs takes head_dim 128 or 256 (a ",
                    "warp pair splits each key's 64-dim V loads), got ", head_dim, ": unset it for this model");
}

}  // namespace

// The decode kernel the op takes on arch path `path` ("sm70" or "sm75") for `query_rows` rows per KV head,
// as FLASH_ATTN_V100_DECODE names it (no GPU needed).
std::string decode_kernel_op(int64_t query_rows, const std::string& path, bool with_prefill) {
  TORCH_CHECK_VALUE(query_rows >= 1, "decode_kernel: query_rows must be >= 1");
  TORCH_CHECK_VALUE(path == "sm70" || path == "sm75", "decode_kernel: path must be 'sm70' or 'sm75', got '", path, "'");
  return decode_choice(query_rows, with_prefill, path == "sm75" ? sm7x::ArchPath::kSm75 : sm7x::ArchPath::kSm70).name;
}

// The decode kernel the op takes for `query_rows` rows per KV head (fp16 cache) and its CTAs per SM for
// `path`'s card ("sm70" or "sm75"): ([the card's, this GPU's when that card is emulated (equal on the
// card itself), the shared-memory padding that does it], the kernel as FLASH_ATTN_V100_DECODE names it).
std::tuple<std::vector<int64_t>, std::string> decode_occupancy_op(int64_t head_dim, int64_t query_rows,
                                                                   const std::string& path) {
  TORCH_CHECK_VALUE(path == "sm70" || path == "sm75", "decode_occupancy: path must be 'sm70' or 'sm75', got '", path,
                    "'");
  TORCH_CHECK_VALUE(head_dim == 64 || head_dim == 128 || head_dim == 256, "decode_occupancy: head_dim must be 64, 128 or 256");
  TORCH_CHECK_VALUE(query_rows >= 1, "decode_occupancy: query_rows must be >= 1");
  int device = 0;
  SM7X_CUDA_CHECK(cudaGetDevice(&device));
  const sm7x::ArchPath arch_path = sm7x::resolve_arch_path(path, sm7x::device_compute_capability(device));
  const sm7x::CardLimits card = sm7x::card_limits(arch_path);
  const DecodeChoice choice = decode_choice(query_rows, /*with_prefill=*/false, arch_path);
  check_decode_head_dim(choice, head_dim);
  const int dim = static_cast<int>(head_dim);
  const DecodeOccupancy o =
      choice.tensor_cores ? sm7x::dispatch_arch_path(arch_path, [&](auto tag) {
        using Tag = decltype(tag);
        if constexpr (std::is_same_v<Tag, sm7x::Sm75>) {
          if (choice.pairs) return decode_pairs_occupancy<Tag>(dim, card);
        }
        return choice.rows8 ? decode_mma8_occupancy<Tag>(dim, card)
                            : decode_mma_occupancy<Tag>(dim, choice.row_groups, card);
      })
                          : decode_occupancy(dim, query_rows, card);
  return {std::vector<int64_t>{o.card_ctas, o.device_ctas, o.padding}, choice.name};
}

namespace {

void check_half(const torch::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.scalar_type() != at::kBFloat16, "flash_attn_v100: ", name,
                    " is bfloat16; SM70/SM75 have no bf16 tensor cores: use float16 (--dtype float16)");
  TORCH_CHECK_VALUE(t.scalar_type() == at::kHalf, "flash_attn_v100: ", name, " must be float16, got ",
                    t.scalar_type());
}

// The caches' storage: float16, or (experimental) FP8 E5M2 with its dequantisation scales.
KvFormat kv_format_of(const torch::Tensor& k_cache, const torch::Tensor& v_cache, double k_scale, double v_scale) {
  TORCH_CHECK_VALUE(k_cache.scalar_type() == v_cache.scalar_type(), "flash_attn_v100: k_cache is ",
                    k_cache.scalar_type(), " but v_cache is ", v_cache.scalar_type());
  const auto dtype = k_cache.scalar_type();
  TORCH_CHECK_VALUE(dtype != at::kByte, "flash_attn_v100: the KV cache is uint8; if it holds FP8 E5M2 bytes (vLLM's "
                    "fp8_e5m2), pass it as cache.view(torch.float8_e5m2)");
  TORCH_CHECK_VALUE(dtype != at::kFloat8_e4m3fn, "flash_attn_v100: FP8 E4M3 KV caches are not supported on "
                    "SM70/SM75 (no FP8 hardware to decode them cheaply): use float16 or fp8_e5m2");
  if (dtype == at::kFloat8_e5m2) {
    TORCH_CHECK_VALUE(k_scale > 0 && v_scale > 0 && std::isfinite(k_scale) && std::isfinite(v_scale),
                      "flash_attn_v100: FP8 KV scales must be positive and finite, got k_scale=", k_scale,
                      " v_scale=", v_scale);
    return KvFormat::kFp8E5m2;
  }
  check_half(k_cache, "k_cache");
  return KvFormat::kFloat16;
}

}  // namespace

void write_kv_cache(const torch::Tensor& key, const torch::Tensor& value, torch::Tensor& key_cache,
                    torch::Tensor& value_cache, const torch::Tensor& slot_mapping, double k_scale, double v_scale) {
  for (const torch::Tensor* t : TensorPtrs{&key, &value, &key_cache, &value_cache, &slot_mapping}) {
    TORCH_CHECK(t->is_cuda() && t->device() == key.device(), "write_kv_cache: all tensors must be on ",
                key.device());
  }
  sm7x::check_volta_or_newer(key, "write_kv_cache");
  check_half(key, "key");
  check_half(value, "value");
  const KvFormat format = kv_format_of(key_cache, value_cache, k_scale, v_scale);
  TORCH_CHECK(key.dim() == 3 && value.sizes() == key.sizes(),
              "write_kv_cache: key and value must be [num_tokens, num_kv_heads, head_size], got ", key.sizes(),
              " and ", value.sizes());
  TORCH_CHECK(key_cache.dim() == 4 && value_cache.sizes() == key_cache.sizes(),
              "write_kv_cache: caches must be [num_blocks, block_size, num_kv_heads, head_size], got ",
              key_cache.sizes(), " and ", value_cache.sizes());
  TORCH_CHECK(key_cache.size(2) == key.size(1) && key_cache.size(3) == key.size(2),
              "write_kv_cache: cache heads/head_size ", key_cache.sizes(), " do not match key ", key.sizes());
  TORCH_CHECK(slot_mapping.scalar_type() == at::kLong && slot_mapping.dim() == 1 &&
                  slot_mapping.size(0) <= key.size(0) && slot_mapping.is_contiguous(),
              "write_kv_cache: slot_mapping must be a contiguous int64 [num_tokens] tensor with at most one slot "
              "per key row");
  for (const auto* t : {&key, &value}) {
    TORCH_CHECK(t->stride(2) == 1 && t->stride(1) == t->size(2),
                "write_kv_cache: heads x head_size of each token must be contiguous");
  }
  for (const torch::Tensor* t : TensorPtrs{&key_cache, &value_cache}) {
    TORCH_CHECK(t->stride(3) == 1, "write_kv_cache: the caches' head_size must be contiguous");
  }

  const c10::cuda::CUDAGuard guard(key.device());
  WriteKvCacheParams p{};
  p.key = reinterpret_cast<const __half*>(key.data_ptr<at::Half>());
  p.value = reinterpret_cast<const __half*>(value.data_ptr<at::Half>());
  p.key_cache = key_cache.data_ptr();
  p.value_cache = value_cache.data_ptr();
  p.kv_format = format;
  p.k_scale = k_scale, p.v_scale = v_scale;
  p.slot_mapping = slot_mapping.data_ptr<int64_t>();
  p.key_token_stride = key.stride(0);
  p.value_token_stride = value.stride(0);
  for (int d = 0; d < 3; ++d) {
    p.key_cache_strides[d] = key_cache.stride(d);
    p.value_cache_strides[d] = value_cache.stride(d);
  }
  p.num_tokens = slot_mapping.size(0);
  p.num_heads = key.size(1);
  p.head_size = key.size(2);
  p.block_size = key_cache.size(1);
  p.num_slots = key_cache.size(0) * key_cache.size(1);
  launch_write_kv_cache(p, c10::cuda::getCurrentCUDAStream());
}

// Writes out [total_q, q_heads, head_dim] (contiguous rows) and returns lse [q_heads, total_q].
// max_decode_q_len: the longest query under kPrefillMinQueryLen tokens when the batch also has longer
// ones (0: none), or -1 when the caller does not know it.
torch::Tensor paged_attention_out(torch::Tensor& out, const torch::Tensor& q, const torch::Tensor& k_cache,
                                  const torch::Tensor& v_cache, const torch::Tensor& cu_seqlens_q,
                                  const torch::Tensor& seqlens_k, const torch::Tensor& block_table,
                                  int64_t max_seqlen_q, double scale, bool causal, int64_t window_left,
                                  double softcap, int64_t num_splits, const std::string& path, double k_scale,
                                  double v_scale, int64_t max_decode_q_len) {
  for (const torch::Tensor* t : TensorPtrs{&q, &k_cache, &v_cache, &cu_seqlens_q, &seqlens_k, &block_table}) {
    TORCH_CHECK(t->is_cuda() && t->device() == q.device(), "paged_attention: all tensors must be on ", q.device());
  }
  sm7x::check_volta_or_newer(q, "paged_attention");
  check_half(q, "q");
  const KvFormat kv_format = kv_format_of(k_cache, v_cache, k_scale, v_scale);
  TORCH_CHECK_VALUE(q.dim() == 3, "paged_attention: q must be [total_q, q_heads, head_dim], got ", q.sizes());
  const int64_t total_q = q.size(0), q_heads = q.size(1), head_dim = q.size(2);
  TORCH_CHECK_VALUE(head_dim == 64 || head_dim == 128 || head_dim == 256, "flash_attn_v100: head_dim ", head_dim,
                    " is not supported; use 64, 128 or 256");
  TORCH_CHECK_VALUE(k_cache.dim() == 4 && v_cache.sizes() == k_cache.sizes() && k_cache.size(3) == head_dim,
                    "paged_attention: k_cache and v_cache must be [num_blocks, block_size, kv_heads, ", head_dim,
                    "], got ", k_cache.sizes(), " and ", v_cache.sizes());
  const int64_t kv_heads = k_cache.size(2), block_size = k_cache.size(1);
  TORCH_CHECK_VALUE(kv_heads > 0 && q_heads % kv_heads == 0, "flash_attn_v100: ", q_heads,
                    " query heads are not a multiple of ", kv_heads, " KV heads");
  TORCH_CHECK_VALUE(cu_seqlens_q.scalar_type() == at::kInt && cu_seqlens_q.dim() == 1 && cu_seqlens_q.size(0) >= 1 &&
                        cu_seqlens_q.is_contiguous(),
                    "paged_attention: cu_seqlens_q must be a contiguous int32 [batch + 1] tensor");
  const int64_t batch = cu_seqlens_q.size(0) - 1;
  TORCH_CHECK_VALUE(seqlens_k.scalar_type() == at::kInt && seqlens_k.dim() == 1 && seqlens_k.size(0) == batch &&
                        seqlens_k.is_contiguous(),
                    "paged_attention: seqlens_k must be a contiguous int32 [batch = ", batch, "] tensor");
  TORCH_CHECK_VALUE(block_table.scalar_type() == at::kInt && block_table.dim() == 2 &&
                        block_table.size(0) == batch && block_table.stride(1) == 1,
                    "paged_attention: block_table must be int32 [batch = ", batch, ", max_blocks], got ",
                    block_table.scalar_type(), " ", block_table.sizes());
  TORCH_CHECK_VALUE(q.stride(2) == 1 && q.stride(0) % 2 == 0 && q.stride(1) % 2 == 0 &&
                        reinterpret_cast<uintptr_t>(q.data_ptr()) % 4 == 0,
                    "paged_attention: q's head_dim must be contiguous with even strides");
  for (const torch::Tensor* t : TensorPtrs{&k_cache, &v_cache}) {
    TORCH_CHECK_VALUE(t->stride(3) == 1 && t->stride(0) % 8 == 0 && t->stride(1) % 8 == 0 && t->stride(2) % 8 == 0 &&
                          reinterpret_cast<uintptr_t>(t->data_ptr()) % 16 == 0,
                      "paged_attention: KV caches need a contiguous head_dim and 16-byte aligned rows");
  }
  TORCH_CHECK_VALUE(softcap >= 0, "paged_attention: softcap must be >= 0 (0 = off), got ", softcap);
  TORCH_CHECK_VALUE(window_left >= -1 && window_left <= INT32_MAX, "paged_attention: window_left ", window_left,
                    " must be -1 (no window) or a key count");
  // Row blocks of the smallest decode CTA (8 rows) bound every decode grid's x.
  TORCH_CHECK_VALUE(q_heads <= 65535 && kv_heads <= 65535 && batch * ceil_div(max_seqlen_q * (q_heads / kv_heads), kMma8Rows) <=
                        INT32_MAX,
                    "paged_attention: too many KV heads or query rows for one launch");
  TORCH_CHECK_VALUE(max_seqlen_q >= 0 && max_seqlen_q <= total_q, "paged_attention: max_seqlen_q = ",
                    max_seqlen_q, " is outside [0, total_q = ", total_q, "]");

  const c10::cuda::CUDAGuard guard(q.device());
  // Long query blocks run on the prefill kernel; short ones (decode, MTP verification) on a decode
  // kernel, in the same call for a mixed batch. Both kinds take tensor cores unless the SIMT decode
  // kernel, the same on every arch, is asked for.
  const bool prefill = max_seqlen_q >= kPrefillMinQueryLen;
  // The decode kernels' queries per sequence: the longest query under kPrefillMinQueryLen. A caller that
  // knows it passes it (vLLM's builder reads it from its CPU copy of the query offsets); otherwise a
  // mixed batch's short sequences are sized for kPrefillMinQueryLen - 1 queries, which for plain decodes
  // leaves most of the grid's row blocks empty and splits the keys over a fraction of the GPU.
  TORCH_CHECK_VALUE(max_decode_q_len == -1 || (prefill ? max_decode_q_len >= 0 && max_decode_q_len < kPrefillMinQueryLen
                                                       : max_decode_q_len == max_seqlen_q),
                    "paged_attention: max_decode_q_len = ", max_decode_q_len, " must be -1 (unknown), the longest ",
                    "query under ", kPrefillMinQueryLen, " tokens of a batch with longer ones, or max_seqlen_q = ",
                    max_seqlen_q);
  const bool decode_q_len_known = max_decode_q_len >= 0;
  const int64_t decode_q_len =
      decode_q_len_known ? max_decode_q_len : std::min<int64_t>(max_seqlen_q, kPrefillMinQueryLen - 1);
  const int64_t decode_rows = decode_q_len * (q_heads / kv_heads);
  // Without a forced path on a GPU that has no SM7x path of its own, decode keeps the SIMT kernel,
  // which runs anywhere (prefill then names the switch). The device is asked only when it matters.
  const bool sm7x_path = path != "auto" || [&] {
    const int cc = sm7x::device_compute_capability(q.get_device());
    return sm7x::Sm70::is_native_for(cc) || sm7x::Sm75::is_native_for(cc);
  }();
  // A path forced on a GPU that is not its native one is emulation: the kernels then keep to the
  // emulated card's CTAs per SM (core/emulated_occupancy.h).
  const std::optional<sm7x::CardLimits> card = sm7x::emulated_card_for(q, path, "paged_attention");
  // The arch path: of the tensor-core kernels that run (and the decode kernel it takes), and of those an
  // emulated call pads.
  sm7x::ArchPath arch_path = sm7x::ArchPath::kSm70;
  if (prefill || sm7x_path) arch_path = sm7x::resolve_arch_path_for(q, path, "paged_attention");
  const DecodeChoice decode = sm7x_path ? decode_choice(decode_rows, prefill && !decode_q_len_known, arch_path)
                                        : kSimtDecode;
  check_decode_head_dim(decode, head_dim);
  const bool mma_decode = decode.tensor_cores;
  if (prefill) {
    TORCH_CHECK_VALUE(q.stride(0) % 8 == 0 && q.stride(1) % 8 == 0 && reinterpret_cast<uintptr_t>(q.data_ptr()) % 16 == 0,
                      "paged_attention: for prefill q's rows must be 16-byte aligned (strides multiple of 8)");
  }
  TORCH_CHECK_VALUE(out.is_cuda() && out.device() == q.device() && out.scalar_type() == at::kHalf &&
                        out.sizes() == q.sizes() && out.stride(2) == 1 && out.stride(1) == head_dim &&
                        out.stride(0) == q_heads * head_dim && reinterpret_cast<uintptr_t>(out.data_ptr()) % 4 == 0,
                    "paged_attention: out must be float16 [total_q, q_heads, head_dim] with contiguous rows, got ",
                    out.sizes());
  auto lse = torch::empty({q_heads, total_q}, q.options().dtype(at::kFloat));
  if (batch == 0 || total_q == 0 || max_seqlen_q == 0) return lse;

  DecodeParams p{};
  p.q = reinterpret_cast<const __half*>(q.data_ptr<at::Half>());
  p.k_cache = k_cache.data_ptr();
  p.v_cache = v_cache.data_ptr();
  p.kv_format = kv_format;
  p.cu_seqlens_q = cu_seqlens_q.data_ptr<int>();
  p.seqlens_k = seqlens_k.data_ptr<int>();
  p.block_table = block_table.data_ptr<int>();
  p.out = reinterpret_cast<__half*>(out.data_ptr<at::Half>());
  p.lse = lse.data_ptr<float>();
  p.q_token_stride = q.stride(0), p.q_head_stride = q.stride(1);
  p.k_block_stride = k_cache.stride(0), p.k_token_stride = k_cache.stride(1), p.k_head_stride = k_cache.stride(2);
  p.v_block_stride = v_cache.stride(0), p.v_token_stride = v_cache.stride(1), p.v_head_stride = v_cache.stride(2);
  p.block_table_stride = block_table.stride(0);
  p.batch = batch, p.total_q = total_q, p.max_q_len = max_seqlen_q;
  p.q_heads = q_heads, p.kv_heads = kv_heads, p.block_size = block_size;
  // Scores use the dequantised keys: fold the K cache's scale into the softmax scale.
  p.scale = scale * (kv_format == KvFormat::kFp8E5m2 ? k_scale : 1.0);
  p.v_scale = kv_format == KvFormat::kFp8E5m2 ? v_scale : 1.0;
  p.softcap = softcap, p.causal = causal;
  const int64_t capacity = block_table.size(1) * block_size;  // keys the block table can hold
  TORCH_CHECK_VALUE(capacity <= INT32_MAX, "paged_attention: block table too large");
  p.max_keys = static_cast<int>(capacity);
  // A window reaching past the block table's capacity hides no key: none. The kernels compute
  // q_pos - window_left in int, which a window near INT32_MAX would overflow where q_len > keys.
  p.window_left = window_left >= capacity ? -1 : static_cast<int>(window_left);

  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  // The SIMT kernel sees at most kPrefillMinQueryLen - 1 queries per sequence and leaves longer ones
  // (and their rows of out and lse) to the prefill kernel, which runs after it.
  p.max_q_len = static_cast<int>(decode_q_len);

  // Split the keys so the decode CTAs fill two per SM in one wave; from shapes only, so CUDA graphs
  // stay valid (each sequence sizes its ranges from its own length on the device). Rounding down: a
  // few CTAs past the last slot form a second wave that costs a whole split's time (27B TP1, 4
  // sequences: 17 splits made 272 CTAs for 264 slots and took 1.3x the time of 14).
  const int64_t max_keys = std::max<int64_t>(1, capacity);
  const int64_t row_blocks = ceil_div(p.max_q_len * (q_heads / kv_heads), decode.rows_per_cta());
  int64_t splits = num_splits;
  if (row_blocks == 0) {
    splits = 1;  // no decode queries: the decode kernels return at once
  } else if (splits <= 0) {
    int sms = 0;
    SM7X_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, q.get_device()));
    // A prompt's CTAs return at once: size the splits for the sequences that may be decodes (all but
    // one where a prompt is present: exact for one prompt chunk beside running decodes).
    const int64_t decode_batch = prefill ? std::max<int64_t>(1, batch - 1) : batch;
    splits = 2 * sms / (decode_batch * kv_heads * row_blocks);
  }
  p.splits = static_cast<int>(std::clamp<int64_t>(splits, 1, std::min<int64_t>(kDecodeMaxSplits, ceil_div(max_keys, kDecodeTileTokens))));
  // A lone long prompt is the prefill kernel's alone (the SIMT kernel returns at once for it): no split
  // buffers, which are sized by total_q and took 2.2 GB of float32 for an 8K prompt at 27B TP1.
  if (batch == 1 && max_seqlen_q >= kPrefillMinQueryLen) p.splits = 1;
  torch::Tensor partial_out, partial_lse;
  if (p.splits > 1) {
    // Rows for the queries the SIMT kernel serves only (batch x its query cap): an 8K prompt in the
    // batch would otherwise add 8K rows per split (2.2 GB at 27B TP1 with 11 splits).
    partial_out = torch::empty({p.splits, split_rows(p), head_dim}, q.options().dtype(at::kFloat));
    partial_lse = torch::empty({p.splits, split_rows(p)}, q.options().dtype(at::kFloat));
    p.partial_out = partial_out.data_ptr<float>();
    p.partial_lse = partial_lse.data_ptr<float>();
  }
  const sm7x::CardLimits* emulated = card ? &*card : nullptr;
  if (card) {
    settle_decode_paddings(static_cast<int>(head_dim), *card);
    sm7x::dispatch_arch_path(arch_path, [&](auto tag) {
      using Tag = decltype(tag);
      settle_decode_mma_paddings<Tag>(static_cast<int>(head_dim), *card);
      settle_decode_mma8_paddings<Tag>(static_cast<int>(head_dim), *card);
      if constexpr (std::is_same_v<Tag, sm7x::Sm75>) settle_decode_pairs_paddings<Tag>(static_cast<int>(head_dim), *card);
    });
  }
  if (mma_decode) {
    sm7x::dispatch_arch_path(arch_path, [&](auto tag) {
      using Tag = decltype(tag);
      if constexpr (std::is_same_v<Tag, sm7x::Sm75>) {
        if (decode.pairs) return launch_decode_pairs<Tag>(p, head_dim, emulated, stream);
      }
      if (decode.rows8) {
        launch_decode_mma8<Tag>(p, head_dim, emulated, stream);
      } else {
        launch_decode_mma<Tag>(p, head_dim, decode.row_groups, emulated, stream);
      }
    });
  } else {
    launch_decode_simt(p, head_dim, emulated, stream);
  }
  launch_decode_merge(p, head_dim, emulated, stream);
  if (prefill) {
    p.max_q_len = max_seqlen_q;
    p.splits = 1;
    sm7x::dispatch_arch_path(arch_path, [&](auto tag) {
      launch_prefill_attention<decltype(tag)>(p, head_dim, emulated, stream);
    });
  }
  return lse;
}

std::tuple<torch::Tensor, torch::Tensor> paged_attention(const torch::Tensor& q, const torch::Tensor& k_cache,
                                                         const torch::Tensor& v_cache,
                                                         const torch::Tensor& cu_seqlens_q,
                                                         const torch::Tensor& seqlens_k,
                                                         const torch::Tensor& block_table, int64_t max_seqlen_q,
                                                         double scale, bool causal, int64_t window_left,
                                                         double softcap, int64_t num_splits,
                                                         const std::string& path, double k_scale,
                                                         double v_scale, int64_t max_decode_q_len) {
  TORCH_CHECK_VALUE(q.dim() == 3, "paged_attention: q must be [total_q, q_heads, head_dim], got ", q.sizes());
  auto out = torch::empty(q.sizes(), q.options());
  auto lse = paged_attention_out(out, q, k_cache, v_cache, cu_seqlens_q, seqlens_k, block_table, max_seqlen_q,
                                 scale, causal, window_left, softcap, num_splits, path, k_scale, v_scale, max_decode_q_len);
  return {out, lse};
}

}  // namespace flash_v100

TORCH_LIBRARY(flash_attn_v100, m) {
  m.def("build_info() -> str");
  m.impl("build_info", &flash_v100::build_info);
  m.def("decode_kernel(int query_rows, str path, bool with_prefill=False) -> str", &flash_v100::decode_kernel_op);
  m.def("decode_occupancy(int head_dim, int query_rows, str path) -> (int[], str)");
  m.impl("decode_occupancy", &flash_v100::decode_occupancy_op);
  m.def("write_kv_cache(Tensor key, Tensor value, Tensor(a!) key_cache, Tensor(b!) value_cache, "
        "Tensor slot_mapping, float k_scale=1., float v_scale=1.) -> ()");
  m.impl("write_kv_cache", torch::kCUDA, &flash_v100::write_kv_cache);
  m.def("paged_attention(Tensor q, Tensor k_cache, Tensor v_cache, Tensor cu_seqlens_q, Tensor seqlens_k, "
        "Tensor block_table, int max_seqlen_q, float scale, bool causal, int window_left, float softcap, "
        "int num_splits, str path, float k_scale=1., float v_scale=1., int max_decode_q_len=-1) -> (Tensor, Tensor)");
  m.impl("paged_attention", torch::kCUDA, &flash_v100::paged_attention);
  m.def("paged_attention_out(Tensor(a!) out, Tensor q, Tensor k_cache, Tensor v_cache, Tensor cu_seqlens_q, "
        "Tensor seqlens_k, Tensor block_table, int max_seqlen_q, float scale, bool causal, int window_left, "
        "float softcap, int num_splits, str path, float k_scale=1., float v_scale=1., int max_decode_q_len=-1) -> Tensor");
  m.impl("paged_attention_out", torch::kCUDA, &flash_v100::paged_attention_out);
}

PyMODINIT_FUNC PyInit__C(void) {
  static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "flash-attn-v100 CUDA kernels", -1, nullptr};
  return PyModule_Create(&module);
}
