// Portable 16-float vectors for the CPU kernels (core/gemv.cpp, core/rms_norm.cpp): GCC's vector
// extension, split by the compiler into AVX-512, AVX2 or SSE registers as the target allows, and
// GRAFT_KERNEL, which builds one copy of a kernel per instruction set and picks at load time.
#pragma once

#include <cstdint>
#include <cstring>

namespace graft::simd {

// The helpers below are always inlined: no v16 crosses a call, so GCC's -Wpsabi note is moot. It
// is silenced for the rest of the including file (it fires where the helpers are used, too): include
// this header only from kernel sources.
#pragma GCC diagnostic ignored "-Wpsabi"

typedef float v16 __attribute__((vector_size(64)));

// Loads and stores go through memcpy (unaligned).
__attribute__((always_inline)) inline v16 load(const float* p) {
  v16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
__attribute__((always_inline)) inline void store(float* p, v16 v) { std::memcpy(p, &v, sizeof v); }
__attribute__((always_inline)) inline float reduce(v16 v) {
  float s = 0;
  for (int k = 0; k < 16; ++k) s += v[k];
  return s;
}
// sum_j a_j b_j over n floats: 16 lanes, then the lanes in order, then the tail.
__attribute__((always_inline)) inline float dot(const float* __restrict a, const float* __restrict b, int64_t n) {
  const int64_t nv = n / 16 * 16;
  v16 acc = {};
  for (int64_t j = 0; j < nv; j += 16) acc += load(a + j) * load(b + j);
  float s = reduce(acc);
  for (int64_t j = nv; j < n; ++j) s += a[j] * b[j];
  return s;
}

}  // namespace graft::simd

// Linux x86-64 with GCC: one clone per instruction set, chosen by the loader.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define GRAFT_KERNEL __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define GRAFT_KERNEL
#endif
