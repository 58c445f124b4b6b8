// Run-time CPU feature dispatch and a query-splitting thread helper, shared by the vision_jax FFI
// kernels.
//
// A kernel compiles each variant with __attribute__((target(...))) in one translation unit (so no
// wide instruction can leak into code the baseline CPU runs) and picks one per call: `requested`
// is the `variant` attribute the Python side passes (0 auto, 1 scalar, 2 avx2, 3 avx512, the
// order of vision_jax.utils.native_build.CPU_VARIANTS). What "avx512" needs is the kernel's own
// choice (VPOPCNTDQ for Hamming, BW for byte shuffles), passed as `avx512_ok`.
#ifndef VISION_JAX_UTILS_NATIVE_CPU_H_
#define VISION_JAX_UTILS_NATIVE_CPU_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#define VJ_X86 1
#endif

namespace vj {

enum Variant : int64_t { kAuto = 0, kScalar = 1, kAvx2 = 2, kAvx512 = 3 };

inline bool HasAvx2() {
#ifdef VJ_X86
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("popcnt");
#else
  return false;
#endif
}

inline bool HasAvx512Bw() {
#ifdef VJ_X86
  __builtin_cpu_init();
  return HasAvx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
#else
  return false;
#endif
}

inline bool HasAvx512Vpopcntdq() {
#ifdef VJ_X86
  __builtin_cpu_init();
  return HasAvx2() && __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512vpopcntdq");
#else
  return false;
#endif
}

inline bool Supported(int64_t v, bool avx512_ok) {
  return v == kScalar || (v == kAvx2 && HasAvx2()) || (v == kAvx512 && avx512_ok);
}

// The variant to run, or -1 when `requested` is unknown or this CPU lacks it.
inline int64_t Resolve(int64_t requested, bool avx512_ok) {
  if (requested == kAuto) return avx512_ok ? kAvx512 : HasAvx2() ? kAvx2 : kScalar;
  return Supported(requested, avx512_ok) ? requested : -1;
}

// Runs fn(begin, end) over contiguous ranges of [0, n) on up to num_threads threads, the calling
// thread taking the first range; range sizes are multiples of `grain` (the last aside) and as even
// as the grain count allows. A range whose thread cannot be started runs on the calling thread.
template <typename F>
void ParallelFor(int64_t n, int64_t num_threads, int64_t grain, F&& fn) {
  const int64_t chunks = (n + grain - 1) / grain;
  const int64_t nt = std::max<int64_t>(1, std::min(num_threads, chunks));
  auto bound = [&](int64_t t) { return std::min(n, grain * (chunks * t / nt)); };
  std::vector<std::thread> workers;
  std::vector<int64_t> inline_ranges;
  for (int64_t t = 1; t < nt; ++t) {
    try {
      workers.emplace_back([&fn, &bound, t] { fn(bound(t), bound(t + 1)); });
    } catch (...) {  // std::system_error: no more threads
      inline_ranges.push_back(t);
    }
  }
  fn(bound(0), bound(1));
  for (int64_t t : inline_ranges) fn(bound(t), bound(t + 1));
  for (auto& w : workers) w.join();
}

// Like ParallelFor, but the range is cut into about 16 chunks per thread (each a multiple of
// `grain`) that the threads take from a shared counter as they finish, so work items of uneven
// cost (queries probing leaves of different sizes) do not leave one thread idle at the end. `fn`
// may be called several times per thread; results must not depend on the cut (they do not when
// every item is computed on its own).
template <typename F>
void ParallelForDynamic(int64_t n, int64_t num_threads, int64_t grain, F&& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t nt = std::max<int64_t>(1, std::min(num_threads, (n + grain - 1) / grain));
  if (nt == 1) {
    fn(0, n);
    return;
  }
  int64_t per = (n + nt * 16 - 1) / (nt * 16);
  per = std::max<int64_t>(grain, (per + grain - 1) / grain * grain);
  const int64_t chunks = (n + per - 1) / per;
  std::atomic<int64_t> next{0};
  auto work = [&] {
    for (int64_t c = next.fetch_add(1); c < chunks; c = next.fetch_add(1)) {
      fn(c * per, std::min(n, (c + 1) * per));
    }
  };
  std::vector<std::thread> workers;
  for (int64_t t = 1; t < nt; ++t) {
    try {
      workers.emplace_back(work);
    } catch (...) {  // std::system_error: no more threads; the others take its chunks
      break;
    }
  }
  work();
  for (auto& w : workers) w.join();
}

}  // namespace vj

#endif  // VISION_JAX_UTILS_NATIVE_CPU_H_
