// Architecture tags. A kernel path is chosen by a tag type, never only by __CUDA_ARCH__, so one
// build for a newer GPU (sm_90 on the H100 we test on) carries and can run both SM7x paths.
#pragma once

namespace sm7x {

// Compute capabilities [Begin, End) whose native path is this one (as major*100 + minor*10).
template <int Begin, int End>
struct Arch {
  static constexpr int kBegin = Begin;
  static constexpr int kEnd = End;
  static constexpr bool is_native_for(int cc) { return Begin <= cc && cc < End; }
  // Newer GPUs can still run this path (Volta mma.sync runs on Turing and Hopper).
  static constexpr bool can_run_on(int cc) { return cc >= Begin; }
};

// Volta (V100, Titan V): mma.sync m8n8k4, 96 KB shared memory per SM, no ldmatrix/cp.async.
struct Sm70 : Arch<700, 750> {
  static constexpr const char* kName = "sm70";
  static constexpr int kMaxSharedBytesPerBlock = 96 * 1024;
  static constexpr int kSharedBytesPerSm = 96 * 1024;
  static constexpr int kMaxThreadsPerSm = 2048;
  static constexpr int kMaxCtasPerSm = 32;
};

// Turing (T4, RTX 2080 Ti): mma.sync m16n8k8 + ldmatrix, 64 KB shared memory per SM, no cp.async.
struct Sm75 : Arch<750, 800> {
  static constexpr const char* kName = "sm75";
  static constexpr int kMaxSharedBytesPerBlock = 64 * 1024;
  static constexpr int kSharedBytesPerSm = 64 * 1024;
  static constexpr int kMaxThreadsPerSm = 1024;
  static constexpr int kMaxCtasPerSm = 16;
};

// Both: 64K 32-bit registers per SM, allocated per warp in units of 256.
constexpr int kRegistersPerSm = 64 * 1024;
constexpr int kRegisterUnitPerWarp = 256;

enum class ArchPath { kSm70, kSm75 };

}  // namespace sm7x
