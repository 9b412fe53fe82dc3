// How a KV cache stores its elements (host side: the op picks the format from the cache's dtype).
#pragma once

namespace flash_v100 {

// kFp8E5m2 (experimental): one byte per element, the high byte of the fp16 value / scale, so the
// cache holds twice the tokens. Reading widens it back exactly (a byte shift); writing rounds to
// nearest even and saturates at E5M2's largest finite value.
enum class KvFormat { kFloat16, kFp8E5m2 };

}  // namespace flash_v100
