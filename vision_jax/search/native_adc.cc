// Native CPU kernels for AVQIndex search: ADC over the probed leaves + top-R selection.
//
// Called from jit through the XLA FFI (see vision_jax/search/native.py, which compiles this file
// on first use). Written for vision_jax; the LUT16 layout follows the idea published in
// André et al., "Cache locality is not enough: high-performance nearest neighbor search with
// product quantization fast scan", VLDB 2015 and Guo et al., ScaNN (ICML 2020): 4-bit codes of
// 32 points packed per block so one byte shuffle does 32 table lookups.
//
// Three handlers, one query at a time, the batch's queries split over `num_threads` threads
// (contiguous ranges; each thread has its own selection buffers, so results do not depend on it):
//   vj_adc_topk_f32   : float32 LUTs, one uint8 code per (point, block), any C <= 256.
//   vj_adc_topk_lut16 : C = 16, LUTs quantized per query to uint8 with one scale (so integer sums
//                       are comparable across blocks), 4-bit codes packed 32 points per group,
//                       byte-shuffle accumulate: AVX-512BW (two block pairs per 512-bit
//                       shuffle) or AVX2 (one pair per 256-bit shuffle), picked at run time;
//                       the scalar fallback gives the same integers, hence the same results.
//   vj_rerank         : exact <q, x> over candidate ids and their top k (AVX2+FMA dot products).
// The `variant` attribute (vision_jax/utils/native_cpu.h) forces scalar / avx2 / avx512 or, at 0,
// lets the CPU's features decide.
// All keep the best R candidates per query (ties: earlier probe position wins, like lax.top_k)
// and write them best-first; missing slots get id -1 and score -inf.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "native_cpu.h"

#ifdef VJ_X86
#include <immintrin.h>
#endif

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// A candidate is one uint64: order-preserving bits of its score in the high half and
// (2^32 - 1 - seq) in the low half, so one integer compare ranks by score, then by earlier probe
// position (seq) like lax.top_k, and selection moves 8-byte keys only.
inline uint64_t RankKey(float s, int64_t seq) {
  uint32_t u;
  std::memcpy(&u, &s, sizeof(u));
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return (static_cast<uint64_t>(u) << 32) | (0xffffffffu - static_cast<uint32_t>(seq));
}
inline float KeyScore(uint64_t key) {
  uint32_t u = static_cast<uint32_t>(key >> 32);
  u = (u & 0x80000000u) ? (u & 0x7fffffffu) : ~u;
  float s;
  std::memcpy(&s, &u, sizeof(s));
  return s;
}
inline int64_t KeySeq(uint64_t key) { return 0xffffffffu - static_cast<uint32_t>(key); }

// Best-R selection with amortised O(1) pushes: candidates scoring >= a lower bound of the current
// R-th best go into a buffer of 4R; when it fills, nth_element keeps the best R and raises the
// bound. Exact: anything below the bound has R better candidates already kept.
class TopR {
 public:
  explicit TopR(int64_t r) : r_(r), cap_(4 * r + 16) { buf_.reserve(cap_); }
  void Reset() {
    buf_.clear();
    thr_ = -std::numeric_limits<float>::infinity();
  }
  inline float Threshold() const { return thr_; }
  inline void Push(float s, int64_t seq) {
    if (s < thr_) return;
    buf_.push_back(RankKey(s, seq));
    if (static_cast<int64_t>(buf_.size()) == cap_) Compact();
  }
  // Writes the kept candidates best-first; id_of(seq) maps a probe position to the output id.
  template <typename F>
  void Write(F id_of, int32_t* ids, float* scores) {
    if (static_cast<int64_t>(buf_.size()) > r_) Compact();
    std::sort(buf_.begin(), buf_.end(), std::greater<uint64_t>());
    int64_t i = 0;
    for (; i < static_cast<int64_t>(buf_.size()); ++i) {
      ids[i] = id_of(KeySeq(buf_[i]));
      scores[i] = KeyScore(buf_[i]);
    }
    for (; i < r_; ++i) {
      ids[i] = -1;
      scores[i] = -std::numeric_limits<float>::infinity();
    }
  }

 private:
  void Compact() {
    std::nth_element(buf_.begin(), buf_.begin() + (r_ - 1), buf_.end(), std::greater<uint64_t>());
    thr_ = KeyScore(buf_[r_ - 1]);
    buf_.resize(r_);
  }
  int64_t r_, cap_;
  float thr_ = -std::numeric_limits<float>::infinity();
  std::vector<uint64_t> buf_;
};

// Probe position (seq) -> datapoint id: leaf l of the probe covers seq in [start[l], start[l+1])
// and its points sit at positions off[leaf_l] + (seq - start[l]) of the leaf-sorted order.
struct ProbeMap {
  std::vector<int64_t> start, delta;
  const int32_t* perm;
  int32_t operator()(int64_t seq) const {
    const int64_t l = std::upper_bound(start.begin(), start.end(), seq) - start.begin() - 1;
    return perm[seq + delta[l]];
  }
};

ffi::Error CheckCommon(ffi::Buffer<ffi::F32> bias, ffi::Buffer<ffi::S32> leaves,
                       ffi::Buffer<ffi::S32> offsets, ffi::Buffer<ffi::S32> perm,
                       int64_t* b, int64_t* nprobe, int64_t* nleaves) {
  auto bd = bias.dimensions();
  auto ld = leaves.dimensions();
  if (bd.size() != 2 || ld.size() != 2 || bd[0] != ld[0] || bd[1] != ld[1]) {
    return ffi::Error::InvalidArgument("bias and leaves must both be [b, L]");
  }
  *b = bd[0];
  *nprobe = bd[1];
  *nleaves = static_cast<int64_t>(offsets.element_count()) - 1;
  if (*nleaves < 1) return ffi::Error::InvalidArgument("offsets must have num_leaves + 1 entries");
  const int32_t* off = offsets.typed_data();
  if (off[0] != 0 || off[*nleaves] != static_cast<int64_t>(perm.element_count())) {
    return ffi::Error::InvalidArgument("offsets must start at 0 and end at len(perm)");
  }
  const int32_t* lv = leaves.typed_data();
  for (int64_t i = 0; i < (*b) * (*nprobe); ++i) {
    if (lv[i] < 0 || lv[i] >= *nleaves) {
      return ffi::Error::InvalidArgument("leaf id out of range: " + std::to_string(lv[i]));
    }
  }
  return ffi::Error::Success();
}

// ------------------------------------------------------------------------------------------------
// float32 LUTs.

ffi::Error AdcTopkF32(ffi::Buffer<ffi::F32> bias, ffi::Buffer<ffi::S32> leaves,
                      ffi::Buffer<ffi::F32> luts, ffi::Buffer<ffi::U8> codes,
                      ffi::Buffer<ffi::S32> offsets, ffi::Buffer<ffi::S32> perm,
                      ffi::ResultBuffer<ffi::S32> out_ids, ffi::ResultBuffer<ffi::F32> out_scores,
                      int64_t num_threads) {
  int64_t b, np, nl;
  ffi::Error err = CheckCommon(bias, leaves, offsets, perm, &b, &np, &nl);
  if (err.failure()) return err;
  auto lt = luts.dimensions();
  auto cd = codes.dimensions();
  if (lt.size() != 3 || lt[0] != b || cd.size() != 2 || cd[1] != lt[1] ||
      cd[0] != static_cast<int64_t>(perm.element_count())) {
    return ffi::Error::InvalidArgument("luts must be [b, K, C] and codes [n, K]");
  }
  const int64_t nb = lt[1], nc = lt[2];
  const int64_t r = out_ids->dimensions()[1];
  const float* bs = bias.typed_data();
  const int32_t* lv = leaves.typed_data();
  const float* lut_all = luts.typed_data();
  const uint8_t* cp = codes.typed_data();
  const int32_t* off = offsets.typed_data();
  const int32_t* pm = perm.typed_data();
  int32_t* oi = out_ids->typed_data();
  float* os = out_scores->typed_data();
  vj::ParallelFor(b, num_threads, 1, [&](int64_t q0, int64_t q1) {
    TopR top(r);
    ProbeMap map{std::vector<int64_t>(np), std::vector<int64_t>(np), pm};
    for (int64_t q = q0; q < q1; ++q) {
      top.Reset();
      const float* lut = lut_all + q * nb * nc;
      int64_t seq = 0;
      for (int64_t l = 0; l < np; ++l) {
        const int32_t leaf = lv[q * np + l];
        const float base = bs[q * np + l];
        map.start[l] = seq;
        map.delta[l] = off[leaf] - seq;
        for (int32_t pos = off[leaf]; pos < off[leaf + 1]; ++pos, ++seq) {
          const uint8_t* c = cp + static_cast<int64_t>(pos) * nb;
          // Four independent partial sums: one add chain would bound this loop by FP-add latency.
          float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
          int64_t k = 0;
          for (; k + 4 <= nb; k += 4) {
            a0 += lut[k * nc + c[k]];
            a1 += lut[(k + 1) * nc + c[k + 1]];
            a2 += lut[(k + 2) * nc + c[k + 2]];
            a3 += lut[(k + 3) * nc + c[k + 3]];
          }
          for (; k < nb; ++k) a0 += lut[k * nc + c[k]];
          top.Push(((a0 + a1) + (a2 + a3)) + base, seq);
        }
      }
      top.Write(map, oi + q * r, os + q * r);
    }
  });
  return ffi::Error::Success();
}

// ------------------------------------------------------------------------------------------------
// LUT16: uint8-quantized LUTs over packed 4-bit codes.
//
// packed: [G, P, 32] uint8, P = ceil(K / 2) block pairs. Group g holds up to 32 points of one
// leaf (leaf l owns groups goff[l] .. goff[l+1]); for block pair p, bytes [0, 16) are block 2p and
// bytes [16, 32) block 2p+1; byte i of a half is code(point i) | code(point i + 16) << 4.

// Per group of 32 points: sums over blocks of qlut[k][code] into sums[j][e] (point
// 2e + (j & 1) + 16 (j >> 1), the order the AVX2 accumulators produce), and a mask with bit
// 8j + e set where sums[j][e] >= tint (a conservative integer form of the float threshold).
inline int PointOf(int bit) { return 2 * (bit & 7) + ((bit >> 3) & 1) + 16 * (bit >> 4); }

uint32_t GroupSumsScalar(const uint8_t* grp, const uint8_t* qlut, int64_t npairs, uint32_t tint,
                         uint16_t (*sums)[8]) {
  uint32_t acc[32] = {0};
  for (int64_t p = 0; p < npairs; ++p) {
    for (int h = 0; h < 2; ++h) {
      const uint8_t* t = qlut + (2 * p + h) * 16;
      const uint8_t* c = grp + p * 32 + h * 16;
      for (int i = 0; i < 16; ++i) {
        acc[i] += t[c[i] & 15];
        acc[i + 16] += t[c[i] >> 4];
      }
    }
  }
  uint32_t mask = 0;
  for (int bit = 0; bit < 32; ++bit) {
    const uint32_t v = acc[PointOf(bit)];
    sums[bit >> 3][bit & 7] = static_cast<uint16_t>(v);
    mask |= static_cast<uint32_t>(v >= tint) << bit;
  }
  return mask;
}

#ifdef VJ_X86
// Folds the two 128-bit lanes of the AVX2 accumulators, stores the sums and returns the mask.
__attribute__((target("avx2"))) inline uint32_t FinishGroupAvx2(const __m256i* accs,
                                                                uint32_t tint,
                                                                uint16_t (*sums)[8]) {
  const __m128i thr = _mm_set1_epi16(static_cast<int16_t>(static_cast<uint16_t>(tint)));
  __m128i ge[4];
  for (int j = 0; j < 4; ++j) {
    const __m128i v = _mm_add_epi16(_mm256_castsi256_si128(accs[j]),
                                    _mm256_extracti128_si256(accs[j], 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(sums[j]), v);
    ge[j] = _mm_cmpeq_epi16(_mm_max_epu16(v, thr), v);  // unsigned v >= tint
  }
  const uint32_t m01 = _mm_movemask_epi8(_mm_packs_epi16(ge[0], ge[1]));
  const uint32_t m23 = _mm_movemask_epi8(_mm_packs_epi16(ge[2], ge[3]));
  return m01 | (m23 << 16);
}

// One block pair into the four 16-bit accumulators (even/odd bytes of the low and high nibbles'
// lookups; K * 255 <= 65535 is checked by the caller).
__attribute__((target("avx2"))) inline void AccumulatePairAvx2(const uint8_t* t8,
                                                               const uint8_t* c8, __m256i* a) {
  const __m256i lo_mask = _mm256_set1_epi8(0x0f);
  const __m256i byte_mask = _mm256_set1_epi16(0x00ff);
  // lane 0: block 2p, lane 1: block 2p+1 (both for the table and the codes).
  const __m256i t = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t8));
  const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c8));
  const __m256i lo = _mm256_and_si256(c, lo_mask);
  const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(c, 4), lo_mask);
  const __m256i rl = _mm256_shuffle_epi8(t, lo);  // points 0..15
  const __m256i rh = _mm256_shuffle_epi8(t, hi);  // points 16..31
  a[0] = _mm256_add_epi16(a[0], _mm256_and_si256(rl, byte_mask));
  a[1] = _mm256_add_epi16(a[1], _mm256_srli_epi16(rl, 8));
  a[2] = _mm256_add_epi16(a[2], _mm256_and_si256(rh, byte_mask));
  a[3] = _mm256_add_epi16(a[3], _mm256_srli_epi16(rh, 8));
}

__attribute__((target("avx2"))) uint32_t GroupSumsAvx2(const uint8_t* grp, const uint8_t* qlut,
                                                       int64_t npairs, uint32_t tint,
                                                       uint16_t (*sums)[8]) {
  __m256i a[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                  _mm256_setzero_si256()};
  for (int64_t p = 0; p < npairs; ++p) AccumulatePairAvx2(qlut + p * 32, grp + p * 32, a);
  return FinishGroupAvx2(a, tint, sums);
}

// Two block pairs per 512-bit shuffle (the 128-bit lanes are blocks 2p .. 2p+3); the upper half
// of each accumulator is added onto the lower one, giving the AVX2 accumulators' layout.
__attribute__((target("avx512f,avx512bw,avx2"))) uint32_t GroupSumsAvx512(
    const uint8_t* grp, const uint8_t* qlut, int64_t npairs, uint32_t tint,
    uint16_t (*sums)[8]) {
  const __m512i lo_mask = _mm512_set1_epi8(0x0f);
  const __m512i byte_mask = _mm512_set1_epi16(0x00ff);
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  int64_t p = 0;
  for (; p + 2 <= npairs; p += 2) {
    const __m512i t = _mm512_loadu_si512(qlut + p * 32);
    const __m512i c = _mm512_loadu_si512(grp + p * 32);
    const __m512i lo = _mm512_and_si512(c, lo_mask);
    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(c, 4), lo_mask);
    const __m512i rl = _mm512_shuffle_epi8(t, lo);
    const __m512i rh = _mm512_shuffle_epi8(t, hi);
    a0 = _mm512_add_epi16(a0, _mm512_and_si512(rl, byte_mask));
    a1 = _mm512_add_epi16(a1, _mm512_srli_epi16(rl, 8));
    a2 = _mm512_add_epi16(a2, _mm512_and_si512(rh, byte_mask));
    a3 = _mm512_add_epi16(a3, _mm512_srli_epi16(rh, 8));
  }
  const __m512i wide[4] = {a0, a1, a2, a3};
  __m256i a[4];
  for (int j = 0; j < 4; ++j) {
    a[j] = _mm256_add_epi16(_mm512_castsi512_si256(wide[j]), _mm512_extracti64x4_epi64(wide[j], 1));
  }
  if (p < npairs) AccumulatePairAvx2(qlut + p * 32, grp + p * 32, a);  // odd pair count
  return FinishGroupAvx2(a, tint, sums);
}
#endif  // VJ_X86

ffi::Error AdcTopkLut16(ffi::Buffer<ffi::F32> bias, ffi::Buffer<ffi::S32> leaves,
                        ffi::Buffer<ffi::F32> luts, ffi::Buffer<ffi::U8> packed,
                        ffi::Buffer<ffi::S32> offsets, ffi::Buffer<ffi::S32> goffsets,
                        ffi::Buffer<ffi::S32> perm, ffi::ResultBuffer<ffi::S32> out_ids,
                        ffi::ResultBuffer<ffi::F32> out_scores, int64_t variant,
                        int64_t num_threads) {
  int64_t b, np, nl;
  ffi::Error err = CheckCommon(bias, leaves, offsets, perm, &b, &np, &nl);
  if (err.failure()) return err;
  auto lt = luts.dimensions();
  auto pd = packed.dimensions();
  if (lt.size() != 3 || lt[0] != b || lt[2] != 16) {
    return ffi::Error::InvalidArgument("luts must be [b, K, 16]");
  }
  const int64_t nb = lt[1];
  const int64_t npairs = (nb + 1) / 2;
  if (nb > 256) return ffi::Error::InvalidArgument("LUT16 kernel supports at most 256 blocks");
  if (pd.size() != 3 || pd[1] != npairs || pd[2] != 32) {
    return ffi::Error::InvalidArgument("packed codes must be [G, ceil(K/2), 32]");
  }
  if (static_cast<int64_t>(goffsets.element_count()) != nl + 1) {
    return ffi::Error::InvalidArgument("goffsets must have num_leaves + 1 entries");
  }
  const int64_t requested = variant;
  variant = vj::Resolve(requested, vj::HasAvx512Bw());
  if (variant < 0) {
    return ffi::Error::InvalidArgument("adc_topk_lut16: variant " + std::to_string(requested) +
                                       " is not supported by this CPU");
  }
  auto group_sums = GroupSumsScalar;
#ifdef VJ_X86
  if (variant == vj::kAvx2) group_sums = GroupSumsAvx2;
  if (variant == vj::kAvx512) group_sums = GroupSumsAvx512;
#endif
  const int64_t r = out_ids->dimensions()[1];
  const float* bs = bias.typed_data();
  const int32_t* lv = leaves.typed_data();
  const float* lut_all = luts.typed_data();
  const uint8_t* pk = packed.typed_data();
  const int32_t* off = offsets.typed_data();
  const int32_t* goff = goffsets.typed_data();
  const int32_t* pm = perm.typed_data();
  int32_t* oi = out_ids->typed_data();
  float* os = out_scores->typed_data();
  vj::ParallelFor(b, num_threads, 1, [&](int64_t q0, int64_t q1) {
    std::vector<uint8_t> qlut(npairs * 32, 0);
    std::vector<float> mins(nb);
    alignas(16) uint16_t sums[4][8];
    TopR top(r);
    ProbeMap map{std::vector<int64_t>(np), std::vector<int64_t>(np), pm};
    for (int64_t q = q0; q < q1; ++q) {
      top.Reset();
      const float* lut = lut_all + q * nb * 16;
      // One scale for all blocks so integer sums are comparable: delta = max_k range_k / 255.
      float delta = 0.f, summin = 0.f;
      for (int64_t k = 0; k < nb; ++k) {
        float mn = lut[k * 16], mx = mn;
        for (int c = 1; c < 16; ++c) {
          mn = std::min(mn, lut[k * 16 + c]);
          mx = std::max(mx, lut[k * 16 + c]);
        }
        mins[k] = mn;
        summin += mn;
        delta = std::max(delta, mx - mn);
      }
      delta = delta > 0.f ? delta / 255.f : 1.f;
      const float inv = 1.f / delta;
      for (int64_t k = 0; k < nb; ++k) {
        for (int c = 0; c < 16; ++c) {
          // Round half up (the argument is >= 0); clamp guards the top entry against rounding.
          const float v = (lut[k * 16 + c] - mins[k]) * inv + 0.5f;
          qlut[k * 16 + c] = static_cast<uint8_t>(std::min(255.f, std::max(0.f, v)));
        }
      }
      int64_t seq = 0;
      for (int64_t l = 0; l < np; ++l) {
        const int32_t leaf = lv[q * np + l];
        const float base = bs[q * np + l] + summin;
        const int32_t size = off[leaf + 1] - off[leaf];
        map.start[l] = seq;
        map.delta[l] = off[leaf] - seq;
        for (int32_t g = goff[leaf], j0 = 0; g < goff[leaf + 1]; ++g, j0 += 32) {
          const uint8_t* grp = pk + static_cast<int64_t>(g) * npairs * 32;
          const int32_t cnt = std::min(32, size - j0);
          const float thr = top.Threshold();
          // Integer pre-filter, loose by > 1 unit so it never drops a point the float test keeps.
          const double t = std::floor((static_cast<double>(thr) - base) / delta) - 2.0;
          if (t > 65535.0) {
            seq += cnt;
            continue;
          }
          const uint32_t tint = t > 0.0 ? static_cast<uint32_t>(t) : 0u;
          uint32_t mask = group_sums(grp, qlut.data(), npairs, tint, sums);
          while (mask) {
            const int bit = __builtin_ctz(mask);
            mask &= mask - 1;
            const int32_t i = PointOf(bit);
            if (i >= cnt) continue;
            const float s = base + delta * static_cast<float>(sums[bit >> 3][bit & 7]);
            if (s >= thr) top.Push(s, seq + i);
          }
          seq += cnt;
        }
      }
      top.Write(map, oi + q * r, os + q * r);
    }
  });
  return ffi::Error::Success();
}

// ------------------------------------------------------------------------------------------------
// Exact re-ranking: top-k of <q, x_id> over each query's candidate ids (-1 = none).

float DotScalar(const float* a, const float* b, int64_t d) {
  float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  int64_t i = 0;
  for (; i + 8 <= d; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  }
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < d; ++i) s += a[i] * b[i];
  return s;
}

#ifdef VJ_X86
__attribute__((target("avx2,fma"))) float DotAvx2(const float* a, const float* b, int64_t d) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= d; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= d; i += 8) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  }
  const __m256 v = _mm256_add_ps(acc0, acc1);
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
  float s = _mm_cvtss_f32(h);
  for (; i < d; ++i) s += a[i] * b[i];
  return s;
}
#endif  // VJ_X86

ffi::Error Rerank(ffi::Buffer<ffi::F32> queries, ffi::Buffer<ffi::F32> database,
                  ffi::Buffer<ffi::S32> cand, ffi::ResultBuffer<ffi::S32> out_ids,
                  ffi::ResultBuffer<ffi::F32> out_scores, int64_t variant,
                  int64_t num_threads) {
  auto qd = queries.dimensions();
  auto dd = database.dimensions();
  auto cd = cand.dimensions();
  if (qd.size() != 2 || dd.size() != 2 || cd.size() != 2 || qd[1] != dd[1] || cd[0] != qd[0]) {
    return ffi::Error::InvalidArgument("rerank: queries [b, d], database [n, d], ids [b, R]");
  }
  const int64_t b = qd[0], d = qd[1], n = dd[0], r = cd[1];
  const int64_t k = out_ids->dimensions()[1];
  // The dot products have one AVX2+FMA form; "avx512" runs it too (the gather is the bound).
  const int64_t resolved = vj::Resolve(variant, vj::HasAvx512Bw());
  if (resolved < 0) {
    return ffi::Error::InvalidArgument("rerank: variant " + std::to_string(variant) +
                                       " is not supported by this CPU");
  }
  auto dot = DotScalar;
#ifdef VJ_X86
  if (resolved != vj::kScalar) dot = DotAvx2;
#endif
  const float* qp = queries.typed_data();
  const float* xp = database.typed_data();
  const int32_t* ip = cand.typed_data();
  int32_t* oi = out_ids->typed_data();
  float* os = out_scores->typed_data();
  for (int64_t j = 0; j < b * r; ++j) {
    if (ip[j] >= n) return ffi::Error::InvalidArgument("rerank: id out of range");
  }
  vj::ParallelFor(b, num_threads, 1, [&](int64_t q0, int64_t q1) {
    TopR top(k);
    std::vector<int32_t> row_ids(r);
    for (int64_t q = q0; q < q1; ++q) {
      top.Reset();
      for (int64_t j = 0; j < r; ++j) {
        const int32_t id = ip[q * r + j];
        if (id < 0) continue;
        const float* x = xp + static_cast<int64_t>(id) * d;
        row_ids[j] = id;
        top.Push(dot(qp + q * d, x, d), j);
      }
      top.Write([&](int64_t j) { return row_ids[j]; }, oi + q * k, os + q * k);
    }
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(vj_adc_topk_f32, AdcTopkF32,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // bias [b, L]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // leaves [b, L]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // luts [b, K, C]
                                  .Arg<ffi::Buffer<ffi::U8>>()   // codes [n, K], leaf-sorted
                                  .Arg<ffi::Buffer<ffi::S32>>()  // offsets [nl + 1]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // perm [n]
                                  .Ret<ffi::Buffer<ffi::S32>>()  // ids [b, R]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // scores [b, R]
                                  .Attr<int64_t>("num_threads"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(vj_adc_topk_lut16, AdcTopkLut16,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // bias [b, L]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // leaves [b, L]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // luts [b, K, 16]
                                  .Arg<ffi::Buffer<ffi::U8>>()   // packed [G, ceil(K/2), 32]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // offsets [nl + 1]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // goffsets [nl + 1]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // perm [n]
                                  .Ret<ffi::Buffer<ffi::S32>>()  // ids [b, R]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // scores [b, R]
                                  .Attr<int64_t>("variant")
                                  .Attr<int64_t>("num_threads"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(vj_rerank, Rerank,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // queries [b, d]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // database [n, d]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // candidate ids [b, R]
                                  .Ret<ffi::Buffer<ffi::S32>>()  // ids [b, k]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // exact scores [b, k]
                                  .Attr<int64_t>("variant")
                                  .Attr<int64_t>("num_threads"));

extern "C" int64_t vj_adc_lut16_variant() { return vj::Resolve(vj::kAuto, vj::HasAvx512Bw()); }
extern "C" int64_t vj_adc_supported(int64_t variant) {
  return vj::Supported(variant, vj::HasAvx512Bw()) ? 1 : 0;
}
