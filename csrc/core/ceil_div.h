// Host-side integer ceiling division, for grid, tile and split counts.
#pragma once
#include <cstdint>

namespace sm7x {

constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace sm7x
