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
#include <chrono>
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
  inline int64_t R() const { return r_; }
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
  // The kept candidates in no particular order: ids[i] = id_of(seq), seqs[i] = seq; missing
  // slots get id -1. For a candidate set that is ranked again anyway (no sort).
  template <typename F>
  void WriteUnordered(F id_of, int32_t* ids, int64_t* seqs) {
    if (static_cast<int64_t>(buf_.size()) > r_) Compact();
    int64_t i = 0;
    for (; i < static_cast<int64_t>(buf_.size()); ++i) {
      seqs[i] = KeySeq(buf_[i]);
      ids[i] = id_of(seqs[i]);
    }
    for (; i < r_; ++i) ids[i] = -1;
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
// Per-query pieces, shared by the stage kernels below and the fused search.

using GroupScoresFn = void (*)(const uint8_t*, const uint8_t*, int64_t, float, float, float*);
using DotFn = float (*)(const float*, const float*, int64_t);
// Leaf scores of up to 4 queries (rows of q) against the transposed centres [d, nlp]: out[i*nlp+c].
using LeafFn = void (*)(const float*, int64_t, int64_t, const float*, int64_t, float*);
// One query's float LUT [K, C] from the transposed codebooks [K, dk, C].
using LutFn = void (*)(const float*, const float*, int64_t, int64_t, int64_t, float*);

// float32 LUT [K, C] over uint8 codes [n, K] in leaf order: every probed point into `top`.
void F32Query(const float* lut, int64_t nb, int64_t nc, const float* bias, const int32_t* leaves,
              int64_t np, const int32_t* off, const uint8_t* cp, TopR& top, ProbeMap& map) {
  int64_t seq = 0;
  for (int64_t l = 0; l < np; ++l) {
    const int32_t leaf = leaves[l];
    const float base = bias[l];
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
}

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
      F32Query(lut_all + q * nb * nc, nb, nc, bs + q * np, lv + q * np, np, off, cp, top, map);
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

// Per group of 32 points: the scores base + delta * sum_k qlut[k][code_k] into out[bit], in the
// order the AVX2 accumulators produce: bit 8j + e holds point PointOf(bit) = 2e + (j & 1) +
// 16 (j >> 1). Every variant forms the same integer sums, then the same float multiply and add.
inline int PointOf(int bit) { return 2 * (bit & 7) + ((bit >> 3) & 1) + 16 * (bit >> 4); }

void GroupScoresScalar(const uint8_t* grp, const uint8_t* qlut, int64_t npairs, float base,
                       float delta, float* out) {
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
  for (int bit = 0; bit < 32; ++bit) {
    out[bit] = base + delta * static_cast<float>(static_cast<uint16_t>(acc[PointOf(bit)]));
  }
}

#ifdef VJ_X86
// Folds the two 128-bit lanes of the AVX2 accumulators and writes the 32 scores.
__attribute__((target("avx2"))) inline void FinishGroupAvx2(const __m256i* accs, float base,
                                                            float delta, float* out) {
  const __m256 vb = _mm256_set1_ps(base), vd = _mm256_set1_ps(delta);
  for (int j = 0; j < 4; ++j) {
    const __m128i v = _mm_add_epi16(_mm256_castsi256_si128(accs[j]),
                                    _mm256_extracti128_si256(accs[j], 1));
    const __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(v));
    _mm256_storeu_ps(out + 8 * j, _mm256_add_ps(vb, _mm256_mul_ps(vd, f)));
  }
}

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

__attribute__((target("avx2"))) void GroupScoresAvx2(const uint8_t* grp, const uint8_t* qlut,
                                                     int64_t npairs, float base, float delta,
                                                     float* out) {
  __m256i a[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                  _mm256_setzero_si256()};
  for (int64_t p = 0; p < npairs; ++p) AccumulatePairAvx2(qlut + p * 32, grp + p * 32, a);
  FinishGroupAvx2(a, base, delta, out);
}

// Two block pairs per 512-bit shuffle (the 128-bit lanes are blocks 2p .. 2p+3); the upper half
// of each accumulator is added onto the lower one, giving the AVX2 accumulators' layout.
__attribute__((target("avx512f,avx512bw,avx2"))) void GroupScoresAvx512(
    const uint8_t* grp, const uint8_t* qlut, int64_t npairs, float base, float delta,
    float* out) {
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
  FinishGroupAvx2(a, base, delta, out);
}
#endif  // VJ_X86


// Bit b set where x[b] >= t, for 32 floats (exact compares: every variant gives the same mask).
using MaskGeFn = uint32_t (*)(const float*, float);
uint32_t MaskGeScalar(const float* x, float t) {
  uint32_t mask = 0;
  for (int bit = 0; bit < 32; ++bit) mask |= static_cast<uint32_t>(x[bit] >= t) << bit;
  return mask;
}
#ifdef VJ_X86
__attribute__((target("avx2"))) uint32_t MaskGeAvx2(const float* x, float t) {
  const __m256 v = _mm256_set1_ps(t);
  uint32_t mask = 0;
  for (int j = 0; j < 4; ++j) {
    const __m256 ge = _mm256_cmp_ps(_mm256_loadu_ps(x + 8 * j), v, _CMP_GE_OQ);
    mask |= static_cast<uint32_t>(_mm256_movemask_ps(ge)) << (8 * j);
  }
  return mask;
}
__attribute__((target("avx512f,avx2"))) uint32_t MaskGeAvx512(const float* x, float t) {
  const __m512 v = _mm512_set1_ps(t);
  const uint32_t lo = _mm512_cmp_ps_mask(_mm512_loadu_ps(x), v, _CMP_GE_OQ);
  const uint32_t hi = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + 16), v, _CMP_GE_OQ);
  return lo | (hi << 16);
}
#endif  // VJ_X86

MaskGeFn PickMaskGe(int64_t resolved) {
#ifdef VJ_X86
  if (resolved == vj::kAvx2) return MaskGeAvx2;
  if (resolved == vj::kAvx512) return MaskGeAvx512;
#endif
  return MaskGeScalar;
}

GroupScoresFn PickGroupScores(int64_t resolved) {
#ifdef VJ_X86
  if (resolved == vj::kAvx2) return GroupScoresAvx2;
  if (resolved == vj::kAvx512) return GroupScoresAvx512;
#endif
  return GroupScoresScalar;
}

// One query's float LUT [K, 16] -> uint8 qlut [ceil(K/2) * 32] (odd K: last half stays 0) with
// one scale for all blocks, so integer sums are comparable: delta = max_k range_k / 255.
// Returns delta; *summin = sum_k min_k.
float QuantizeLut16Scalar(const float* lut, int64_t nb, uint8_t* qlut, float* mins,
                          float* summin) {
  float delta = 0.f, sm = 0.f;
  for (int64_t k = 0; k < nb; ++k) {
    float mn = lut[k * 16], mx = mn;
    for (int c = 1; c < 16; ++c) {
      mn = std::min(mn, lut[k * 16 + c]);
      mx = std::max(mx, lut[k * 16 + c]);
    }
    mins[k] = mn;
    sm += mn;
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
  *summin = sm;
  return delta;
}

#ifdef VJ_X86
// The same per-block min / max (exact in any order), the same sum of minima (block order) and
// the same subtract, multiply, add, clamp and truncation per entry, 8 or 16 lanes at a time.
__attribute__((target("avx2"))) inline float HMinAvx2(__m256 v) {
  __m128 h = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  h = _mm_min_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_min_ss(h, _mm_shuffle_ps(h, h, 1)));
}
__attribute__((target("avx2"))) inline float HMaxAvx2(__m256 v) {
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_max_ss(h, _mm_shuffle_ps(h, h, 1)));
}

__attribute__((target("avx2"))) float QuantizeLut16Avx2(const float* lut, int64_t nb,
                                                       uint8_t* qlut, float* mins, float* summin) {
  float delta = 0.f, sm = 0.f;
  for (int64_t k = 0; k < nb; ++k) {
    const __m256 a = _mm256_loadu_ps(lut + k * 16), b = _mm256_loadu_ps(lut + k * 16 + 8);
    const float mn = HMinAvx2(_mm256_min_ps(a, b)), mx = HMaxAvx2(_mm256_max_ps(a, b));
    mins[k] = mn;
    sm += mn;
    delta = std::max(delta, mx - mn);
  }
  delta = delta > 0.f ? delta / 255.f : 1.f;
  const __m256 inv = _mm256_set1_ps(1.f / delta), half = _mm256_set1_ps(0.5f);
  const __m256 lo = _mm256_setzero_ps(), hi = _mm256_set1_ps(255.f);
  for (int64_t k = 0; k < nb; ++k) {
    const __m256 mn = _mm256_set1_ps(mins[k]);
    __m256i w[2];
    for (int h = 0; h < 2; ++h) {
      __m256 v = _mm256_loadu_ps(lut + k * 16 + 8 * h);
      v = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(v, mn), inv), half);
      w[h] = _mm256_cvttps_epi32(_mm256_min_ps(hi, _mm256_max_ps(lo, v)));
    }
    // 16 int32 in [0, 255] -> 16 bytes (packs work per 128-bit lane: fix the order after).
    const __m256i w16 = _mm256_permute4x64_epi64(_mm256_packus_epi32(w[0], w[1]), 0xd8);
    const __m128i b8 = _mm_packus_epi16(_mm256_castsi256_si128(w16),
                                        _mm256_extracti128_si256(w16, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qlut + k * 16), b8);
  }
  *summin = sm;
  return delta;
}

__attribute__((target("avx512f,avx512bw,avx2"))) float QuantizeLut16Avx512(
    const float* lut, int64_t nb, uint8_t* qlut, float* mins, float* summin) {
  float delta = 0.f, sm = 0.f;
  for (int64_t k = 0; k < nb; ++k) {
    const __m512 v = _mm512_loadu_ps(lut + k * 16);
    const float mn = _mm512_reduce_min_ps(v), mx = _mm512_reduce_max_ps(v);
    mins[k] = mn;
    sm += mn;
    delta = std::max(delta, mx - mn);
  }
  delta = delta > 0.f ? delta / 255.f : 1.f;
  const __m512 inv = _mm512_set1_ps(1.f / delta), half = _mm512_set1_ps(0.5f);
  const __m512 lo = _mm512_setzero_ps(), hi = _mm512_set1_ps(255.f);
  for (int64_t k = 0; k < nb; ++k) {
    __m512 v = _mm512_loadu_ps(lut + k * 16);
    v = _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(v, _mm512_set1_ps(mins[k])), inv), half);
    const __m512i w = _mm512_cvttps_epi32(_mm512_min_ps(hi, _mm512_max_ps(lo, v)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qlut + k * 16), _mm512_cvtepi32_epi8(w));
  }
  *summin = sm;
  return delta;
}
#endif  // VJ_X86

using QuantizeFn = float (*)(const float*, int64_t, uint8_t*, float*, float*);
QuantizeFn PickQuantize(int64_t resolved) {
#ifdef VJ_X86
  if (resolved == vj::kAvx2) return QuantizeLut16Avx2;
  if (resolved == vj::kAvx512) return QuantizeLut16Avx512;
#endif
  return QuantizeLut16Scalar;
}

// A lower bound of the r-th largest of x[0, n) (n a multiple of 16; -inf entries allowed): the
// r-th largest of ~2r maxima of disjoint chunks (vertical maxima over blocks of 16-float rows),
// since r chunk maxima >= it are r distinct elements >= it. -inf when fewer than r chunks.
float RthLowerBound(const float* x, int64_t n, int64_t r, std::vector<float>& maxima) {
  const int64_t rows = n / 16;
  const int64_t per = std::max<int64_t>(1, n / (2 * r));  // rows per block
  maxima.clear();
  for (int64_t r0 = 0; r0 < rows; r0 += per) {
    float m[16];
    std::copy(x + r0 * 16, x + r0 * 16 + 16, m);
    for (int64_t row = r0 + 1; row < std::min(rows, r0 + per); ++row) {
      for (int c = 0; c < 16; ++c) m[c] = std::max(m[c], x[row * 16 + c]);
    }
    maxima.insert(maxima.end(), m, m + 16);
  }
  if (static_cast<int64_t>(maxima.size()) < r) return -std::numeric_limits<float>::infinity();
  std::nth_element(maxima.begin(), maxima.begin() + (r - 1), maxima.end(), std::greater<float>());
  return maxima[r - 1];
}

// Packed-code scan of one query's probed leaves with its quantized LUT, in two passes: all
// scores first (SIMD, no branches), then only those >= a lower bound of the R-th best go into
// `top`, so selection touches ~R candidates instead of every point that beats a running bound.
// `scores`, `maxima`: scratch.
void Lut16Scan(const uint8_t* qlut, float delta, float summin, int64_t npairs, const float* bias,
               const int32_t* leaves, int64_t np, const int32_t* off, const int32_t* goff,
               const uint8_t* pk, GroupScoresFn group_scores, MaskGeFn mask_ge, TopR& top,
               ProbeMap& map, std::vector<float>& scores, std::vector<float>& maxima) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  int64_t ngroups = 0, seq = 0;
  for (int64_t l = 0; l < np; ++l) ngroups += goff[leaves[l] + 1] - goff[leaves[l]];
  if (static_cast<int64_t>(scores.size()) < ngroups * 32) scores.resize(ngroups * 32);
  float* sc = scores.data();
  for (int64_t l = 0; l < np; ++l) {
    const int32_t leaf = leaves[l];
    const float base = bias[l] + summin;
    const int32_t size = off[leaf + 1] - off[leaf];
    map.start[l] = seq;
    map.delta[l] = off[leaf] - seq;
    seq += size;
    for (int32_t g = goff[leaf], j0 = 0; g < goff[leaf + 1]; ++g, j0 += 32, sc += 32) {
      group_scores(pk + static_cast<int64_t>(g) * npairs * 32, qlut, npairs, base, delta, sc);
      if (size - j0 < 32) {
        for (int bit = 0; bit < 32; ++bit) {
          if (PointOf(bit) >= size - j0) sc[bit] = kNegInf;
        }
      }
    }
  }
  const float t0 = seq > top.R() ? RthLowerBound(scores.data(), ngroups * 32, top.R(), maxima)
                                 : kNegInf;
  sc = scores.data();
  seq = 0;
  for (int64_t l = 0; l < np; ++l) {
    const int32_t leaf = leaves[l];
    for (int32_t g = goff[leaf]; g < goff[leaf + 1]; ++g, sc += 32, seq += 32) {
      uint32_t mask = mask_ge(sc, t0);
      while (mask) {
        const int bit = __builtin_ctz(mask);
        mask &= mask - 1;
        if (sc[bit] > kNegInf) top.Push(sc[bit], seq + PointOf(bit));
      }
    }
    seq -= 32 * (goff[leaf + 1] - goff[leaf]) - (off[leaf + 1] - off[leaf]);
  }
}

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
  const int64_t resolved = vj::Resolve(variant, vj::HasAvx512Bw());
  if (resolved < 0) {
    return ffi::Error::InvalidArgument("adc_topk_lut16: variant " + std::to_string(variant) +
                                       " is not supported by this CPU");
  }
  const GroupScoresFn group_scores = PickGroupScores(resolved);
  const QuantizeFn quantize = PickQuantize(resolved);
  const MaskGeFn mask_ge = PickMaskGe(resolved);
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
    std::vector<float> scores, maxima;
    TopR top(r);
    ProbeMap map{std::vector<int64_t>(np), std::vector<int64_t>(np), pm};
    for (int64_t q = q0; q < q1; ++q) {
      top.Reset();
      float summin;
      const float delta = quantize(lut_all + q * nb * 16, nb, qlut.data(), mins.data(), &summin);
      Lut16Scan(qlut.data(), delta, summin, npairs, bs + q * np, lv + q * np, np, off, goff, pk,
                group_scores, mask_ge, top, map, scores, maxima);
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


DotFn PickDot(int64_t resolved) {
#ifdef VJ_X86
  if (resolved != vj::kScalar) return DotAvx2;  // "avx512" runs it too (the gather is the bound)
#endif
  return DotScalar;
}

// Exact scores of one query's candidate ids [r] (-1 = none) into `top` (seq = candidate
// position); row_ids[j] keeps candidate j's id for the write-out. All rows are prefetched first
// so their cache misses overlap. (Spreading the prefetches over the next query's scan instead
// was measured slower: they stall on the line-fill buffers wherever they are issued.)
void RerankQuery(const float* q, const float* xp, int64_t d, const int32_t* cand, int64_t r,
                 DotFn dot, TopR& top, int32_t* row_ids) {
  for (int64_t j = 0; j < r; ++j) {
    if (cand[j] < 0) continue;
    const char* x = reinterpret_cast<const char*>(xp + static_cast<int64_t>(cand[j]) * d);
    for (int64_t byte = 0; byte < d * 4; byte += 64) __builtin_prefetch(x + byte);
    __builtin_prefetch(x + d * 4 - 1);
  }
  for (int64_t j = 0; j < r; ++j) {
    const int32_t id = cand[j];
    if (id < 0) continue;
    row_ids[j] = id;
    top.Push(dot(q, xp + static_cast<int64_t>(id) * d, d), j);
  }
}

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
  const int64_t resolved = vj::Resolve(variant, vj::HasAvx512Bw());
  if (resolved < 0) {
    return ffi::Error::InvalidArgument("rerank: variant " + std::to_string(variant) +
                                       " is not supported by this CPU");
  }
  const DotFn dot = PickDot(resolved);
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
      RerankQuery(qp + q * d, xp, d, ip + q * r, r, dot, top, row_ids.data());
      top.Write([&](int64_t j) { return row_ids[j]; }, oi + q * k, os + q * k);
    }
  });
  return ffi::Error::Success();
}

// ------------------------------------------------------------------------------------------------
// Leaf scores and LUTs inside the kernel. Every variant computes each output as the same chain
// acc = fma(q_j, w_j, acc) over j = 0, 1, ... from acc = 0 (one lane per output), so scalar, AVX2
// and AVX-512 give identical floats.

constexpr int64_t kLeafQueries = 4;  // queries scored together (each centre row loaded once)
constexpr int64_t kLeafPad = 32;     // the transposed centres' row length is a multiple of this

void LeafScoresScalar(const float* q, int64_t nq, int64_t d, const float* ct, int64_t nlp,
                      float* out) {
  for (int64_t i = 0; i < nq; ++i) {
    float* o = out + i * nlp;
    std::fill(o, o + nlp, 0.f);
    for (int64_t j = 0; j < d; ++j) {
      const float qj = q[i * d + j];
      const float* row = ct + j * nlp;
      for (int64_t c = 0; c < nlp; ++c) o[c] = std::fma(qj, row[c], o[c]);
    }
  }
}

void LutScalar(const float* q, const float* cbt, int64_t nb, int64_t dk, int64_t nc, float* lut) {
  for (int64_t k = 0; k < nb; ++k) {
    float* o = lut + k * nc;
    std::fill(o, o + nc, 0.f);
    for (int64_t j = 0; j < dk; ++j) {
      const float qj = q[k * dk + j];
      const float* w = cbt + (k * dk + j) * nc;
      for (int64_t c = 0; c < nc; ++c) o[c] = std::fma(qj, w[c], o[c]);
    }
  }
}

#ifdef VJ_X86
// 4 queries x 16 centres per step: 8 accumulators, each centre row loaded once for 4 queries.
__attribute__((target("avx2,fma"))) void LeafScoresAvx2(const float* q, int64_t nq, int64_t d,
                                                        const float* ct, int64_t nlp,
                                                        float* out) {
  const float* qs[kLeafQueries];
  for (int64_t i = 0; i < kLeafQueries; ++i) qs[i] = q + std::min(i, nq - 1) * d;
  for (int64_t c = 0; c < nlp; c += 16) {
    __m256 a[kLeafQueries][2];
    for (auto& ai : a) ai[0] = ai[1] = _mm256_setzero_ps();
    for (int64_t j = 0; j < d; ++j) {
      const __m256 x0 = _mm256_loadu_ps(ct + j * nlp + c);
      const __m256 x1 = _mm256_loadu_ps(ct + j * nlp + c + 8);
      for (int64_t i = 0; i < kLeafQueries; ++i) {
        const __m256 qb = _mm256_set1_ps(qs[i][j]);
        a[i][0] = _mm256_fmadd_ps(qb, x0, a[i][0]);
        a[i][1] = _mm256_fmadd_ps(qb, x1, a[i][1]);
      }
    }
    for (int64_t i = 0; i < nq; ++i) {
      _mm256_storeu_ps(out + i * nlp + c, a[i][0]);
      _mm256_storeu_ps(out + i * nlp + c + 8, a[i][1]);
    }
  }
}

// 4 queries x 32 centres per step.
__attribute__((target("avx512f,avx2,fma"))) void LeafScoresAvx512(const float* q, int64_t nq,
                                                                  int64_t d, const float* ct,
                                                                  int64_t nlp, float* out) {
  const float* qs[kLeafQueries];
  for (int64_t i = 0; i < kLeafQueries; ++i) qs[i] = q + std::min(i, nq - 1) * d;
  for (int64_t c = 0; c < nlp; c += 32) {
    __m512 a[kLeafQueries][2];
    for (auto& ai : a) ai[0] = ai[1] = _mm512_setzero_ps();
    for (int64_t j = 0; j < d; ++j) {
      const __m512 x0 = _mm512_loadu_ps(ct + j * nlp + c);
      const __m512 x1 = _mm512_loadu_ps(ct + j * nlp + c + 16);
      for (int64_t i = 0; i < kLeafQueries; ++i) {
        const __m512 qb = _mm512_set1_ps(qs[i][j]);
        a[i][0] = _mm512_fmadd_ps(qb, x0, a[i][0]);
        a[i][1] = _mm512_fmadd_ps(qb, x1, a[i][1]);
      }
    }
    for (int64_t i = 0; i < nq; ++i) {
      _mm512_storeu_ps(out + i * nlp + c, a[i][0]);
      _mm512_storeu_ps(out + i * nlp + c + 16, a[i][1]);
    }
  }
}

__attribute__((target("avx2,fma"))) void LutAvx2(const float* q, const float* cbt, int64_t nb,
                                                 int64_t dk, int64_t nc, float* lut) {
  for (int64_t k = 0; k < nb; ++k) {
    int64_t c = 0;
    for (; c + 8 <= nc; c += 8) {
      __m256 acc = _mm256_setzero_ps();
      for (int64_t j = 0; j < dk; ++j) {
        acc = _mm256_fmadd_ps(_mm256_set1_ps(q[k * dk + j]),
                              _mm256_loadu_ps(cbt + (k * dk + j) * nc + c), acc);
      }
      _mm256_storeu_ps(lut + k * nc + c, acc);
    }
    for (; c < nc; ++c) {
      float acc = 0.f;
      for (int64_t j = 0; j < dk; ++j) acc = std::fma(q[k * dk + j], cbt[(k * dk + j) * nc + c], acc);
      lut[k * nc + c] = acc;
    }
  }
}

__attribute__((target("avx512f,avx2,fma"))) void LutAvx512(const float* q, const float* cbt,
                                                           int64_t nb, int64_t dk, int64_t nc,
                                                           float* lut) {
  for (int64_t k = 0; k < nb; ++k) {
    int64_t c = 0;
    for (; c + 16 <= nc; c += 16) {
      __m512 acc = _mm512_setzero_ps();
      for (int64_t j = 0; j < dk; ++j) {
        acc = _mm512_fmadd_ps(_mm512_set1_ps(q[k * dk + j]),
                              _mm512_loadu_ps(cbt + (k * dk + j) * nc + c), acc);
      }
      _mm512_storeu_ps(lut + k * nc + c, acc);
    }
    for (; c < nc; ++c) {
      float acc = 0.f;
      for (int64_t j = 0; j < dk; ++j) acc = std::fma(q[k * dk + j], cbt[(k * dk + j) * nc + c], acc);
      lut[k * nc + c] = acc;
    }
  }
}
#endif  // VJ_X86

// ------------------------------------------------------------------------------------------------
// Fused search: per query, leaf scores + top-L, LUT build (+ uint8 quantization), ADC + top-R,
// exact re-ranking + top-k, all inside the thread that owns the query.

enum Stage { kStageLeaves, kStageLut, kStageQuantize, kStageScan, kStageRerank, kNumStages };

struct Searcher {
  const float* queries;
  int64_t d;
  const float* centers_t;  // [d, nlp]
  int64_t nl, nlp;
  const float* cbt;  // [K, dk, C]
  int64_t nb, dk, nc;
  const float* database;
  const uint8_t* codes;  // packed [G, ceil(K/2), 32] (lut16) or leaf-sorted [n, K]
  const int32_t *off, *goff, *perm;
  int64_t np, reorder, k;
  bool lut16;
  LeafFn leaf_fn;
  LutFn lut_fn;
  QuantizeFn quantize;
  MaskGeFn mask_ge;
  GroupScoresFn group_scores;
  DotFn dot;
  int32_t* out_ids;
  float* out_scores;

  // Queries [q0, q1); stage_ns (if not null) accumulates nanoseconds per Stage.
  void Run(int64_t q0, int64_t q1, double* stage_ns) const {
    using Clock = std::chrono::steady_clock;
    auto tick = [&](Clock::time_point& t0, int stage) {
      if (!stage_ns) return;
      const Clock::time_point t1 = Clock::now();
      stage_ns[stage] += std::chrono::duration<double, std::nano>(t1 - t0).count();
      t0 = t1;
    };
    const int64_t topn = reorder ? reorder : k;
    const int64_t npairs = (nb + 1) / 2;
    std::vector<float> leaf_scores(kLeafQueries * nlp), lut(nb * nc), bias(np), mins(nb);
    std::vector<int32_t> leaves(np), cand(topn);
    std::vector<int64_t> cand_seq(topn);
    std::vector<uint8_t> qlut(npairs * 32, 0);
    std::vector<float> scores, maxima;
    TopR leaf_top(np), top(topn), final_top(k);
    ProbeMap map{std::vector<int64_t>(np), std::vector<int64_t>(np), perm};
    Clock::time_point t0 = stage_ns ? Clock::now() : Clock::time_point();
    for (int64_t qb = q0; qb < q1; qb += kLeafQueries) {
      const int64_t nq = std::min(kLeafQueries, q1 - qb);
      leaf_fn(queries + qb * d, nq, d, centers_t, nlp, leaf_scores.data());
      for (int64_t i = 0; i < nq; ++i) {
        std::fill(leaf_scores.begin() + i * nlp + nl, leaf_scores.begin() + (i + 1) * nlp,
                  -std::numeric_limits<float>::infinity());
      }
      tick(t0, kStageLeaves);
      for (int64_t i = 0; i < nq; ++i) {
        const int64_t q = qb + i;
        const float* qv = queries + q * d;
        const float* ls = leaf_scores.data() + i * nlp;
        // Only scores >= a lower bound of the L-th best reach the selection buffer (the padded
        // columns were set to -inf).
        const float bound = RthLowerBound(ls, nlp, np, maxima);
        leaf_top.Reset();
        for (int64_t c0 = 0; c0 < nlp; c0 += 32) {
          for (uint32_t m = mask_ge(ls + c0, bound); m; m &= m - 1) {
            const int64_t c = c0 + __builtin_ctz(m);
            if (c < nl) leaf_top.Push(ls[c], c);
          }
        }
        leaf_top.Write([](int64_t c) { return static_cast<int32_t>(c); }, leaves.data(),
                       bias.data());
        tick(t0, kStageLeaves);
        lut_fn(qv, cbt, nb, dk, nc, lut.data());
        tick(t0, kStageLut);
        top.Reset();
        if (lut16) {
          float summin;
          const float delta = quantize(lut.data(), nb, qlut.data(), mins.data(), &summin);
          tick(t0, kStageQuantize);
          Lut16Scan(qlut.data(), delta, summin, npairs, bias.data(), leaves.data(), np, off, goff,
                    codes, group_scores, mask_ge, top, map, scores, maxima);
        } else {
          F32Query(lut.data(), nb, nc, bias.data(), leaves.data(), np, off, codes, top, map);
        }
        if (!reorder) {
          top.Write(map, out_ids + q * k, out_scores + q * k);
          tick(t0, kStageScan);
          continue;
        }
        // The ADC top R unsorted; exact-score ties in the re-ranking go to the earlier probe
        // position (seq), so the order of the candidates does not matter.
        top.WriteUnordered(map, cand.data(), cand_seq.data());
        tick(t0, kStageScan);
        for (int64_t j = 0; j < topn; ++j) {
          if (cand[j] < 0) continue;
          const char* x = reinterpret_cast<const char*>(database + int64_t{cand[j]} * d);
          for (int64_t byte = 0; byte < d * 4; byte += 64) __builtin_prefetch(x + byte);
          __builtin_prefetch(x + d * 4 - 1);
        }
        final_top.Reset();
        for (int64_t j = 0; j < topn; ++j) {
          if (cand[j] >= 0) final_top.Push(dot(qv, database + int64_t{cand[j]} * d, d), cand_seq[j]);
        }
        final_top.Write(map, out_ids + q * k, out_scores + q * k);
        tick(t0, kStageRerank);
      }
    }
  }
};

// Fills the searcher's function pointers for `variant`; false if this CPU lacks it.
bool PickVariant(int64_t variant, Searcher* s) {
  const int64_t resolved = vj::Resolve(variant, vj::HasAvx512Bw());
  if (resolved < 0) return false;
  s->leaf_fn = LeafScoresScalar;
  s->lut_fn = LutScalar;
#ifdef VJ_X86
  if (resolved == vj::kAvx2) s->leaf_fn = LeafScoresAvx2, s->lut_fn = LutAvx2;
  if (resolved == vj::kAvx512) s->leaf_fn = LeafScoresAvx512, s->lut_fn = LutAvx512;
#endif
  s->group_scores = PickGroupScores(resolved);
  s->dot = PickDot(resolved);
  s->quantize = PickQuantize(resolved);
  s->mask_ge = PickMaskGe(resolved);
  return true;
}

// Shape checks shared by the FFI handler and the profiling entry; "" when consistent.
std::string CheckSearcher(const Searcher& s, int64_t n, int64_t code_rows, int64_t code_cols,
                          int64_t code_bytes, int64_t goff_len) {
  if (s.nl < 1 || s.nlp < s.nl || s.nlp % kLeafPad) {
    return "centres must be transposed to [d, nlp], nlp >= num_leaves a multiple of 32";
  }
  if (s.nb * s.dk != s.d) return "codebooks must be [K, dk, C] with K * dk = d";
  if (s.off[0] != 0 || s.off[s.nl] != n) return "offsets must start at 0 and end at n";
  if (s.np < 1 || s.np > s.nl) return "leaves must be in [1, num_leaves]";
  if (s.k < 1 || (s.reorder && s.reorder < s.k)) return "need k >= 1 and reorder 0 or >= k";
  if (s.lut16) {
    if (s.nc != 16 || s.nb > 256) return "uint8 LUTs need C = 16 and K <= 256";
    if (goff_len != s.nl + 1 || s.goff[0] != 0 || s.goff[s.nl] != code_rows ||
        code_cols != (s.nb + 1) / 2 || code_bytes != 32) {
      return "packed codes must be [G, ceil(K/2), 32] with goffsets [num_leaves + 1] ending at G";
    }
  } else if (code_rows != n || code_cols != s.nb || code_bytes != 1) {
    return "codes must be [n, K] in leaf order";
  }
  return "";
}

ffi::Error Search(ffi::Buffer<ffi::F32> queries, ffi::Buffer<ffi::F32> centers_t,
                  ffi::Buffer<ffi::F32> cbt, ffi::Buffer<ffi::F32> database,
                  ffi::Buffer<ffi::U8> codes, ffi::Buffer<ffi::S32> offsets,
                  ffi::Buffer<ffi::S32> goffsets, ffi::Buffer<ffi::S32> perm,
                  ffi::ResultBuffer<ffi::S32> out_ids, ffi::ResultBuffer<ffi::F32> out_scores,
                  int64_t leaves, int64_t reorder, int64_t lut16, int64_t variant,
                  int64_t num_threads) {
  auto qd = queries.dimensions();
  auto cd = centers_t.dimensions();
  auto bd = cbt.dimensions();
  auto dd = database.dimensions();
  auto kd = codes.dimensions();
  if (qd.size() != 2 || cd.size() != 2 || bd.size() != 3 || dd.size() != 2 || cd[0] != qd[1] ||
      dd[1] != qd[1] || (kd.size() != 2 && kd.size() != 3) ||
      codes.element_type() != ffi::DataType::U8 ||
      static_cast<int64_t>(perm.element_count()) != dd[0]) {
    return ffi::Error::InvalidArgument(
        "search: queries [b, d], centres [d, nlp], codebooks [K, dk, C], database [n, d], "
        "uint8 codes, perm [n]");
  }
  Searcher s{};
  s.queries = queries.typed_data();
  s.d = qd[1];
  s.centers_t = centers_t.typed_data();
  s.nl = static_cast<int64_t>(offsets.element_count()) - 1;
  s.nlp = cd[1];
  s.cbt = cbt.typed_data();
  s.nb = bd[0], s.dk = bd[1], s.nc = bd[2];
  s.database = database.typed_data();
  s.codes = codes.typed_data();
  s.off = offsets.typed_data(), s.goff = goffsets.typed_data(), s.perm = perm.typed_data();
  s.np = leaves, s.reorder = reorder, s.k = out_ids->dimensions()[1], s.lut16 = lut16 != 0;
  s.out_ids = out_ids->typed_data();
  s.out_scores = out_scores->typed_data();
  if (s.nl < 1) return ffi::Error::InvalidArgument("search: offsets need num_leaves + 1 entries");
  const std::string bad =
      CheckSearcher(s, dd[0], kd[0], kd[1], kd.size() == 3 ? kd[2] : 1,
                    static_cast<int64_t>(goffsets.element_count()));
  if (!bad.empty()) return ffi::Error::InvalidArgument("search: " + bad);
  if (!PickVariant(variant, &s)) {
    return ffi::Error::InvalidArgument("search: variant " + std::to_string(variant) +
                                       " is not supported by this CPU");
  }
  const int64_t b = qd[0];
  // Queries cost unevenly (their probed leaves hold 0 ... 1,044 points): dynamic chunks.
  vj::ParallelForDynamic(b, num_threads, 4, [&](int64_t q0, int64_t q1) {
    s.Run(q0, q1, nullptr);
  });
  return ffi::Error::Success();
}

}  // namespace

// Profiling entry (ctypes, one thread): the fused search over raw arrays with per-stage clocks.
// stage_ns[5] receives nanoseconds summed over queries: leaf scores + top-L, LUT build, uint8
// quantization, ADC + top-R, exact re-ranking. Returns 0, or -1 on a shape / variant error.
extern "C" int64_t vj_search_profile(const float* queries, int64_t b, int64_t d,
                                     const float* centers_t, int64_t nlp, const float* cbt,
                                     int64_t nb, int64_t dk, int64_t nc, const float* database,
                                     int64_t n, const uint8_t* codes, int64_t code_rows,
                                     const int32_t* offsets, int64_t nl, const int32_t* goffsets,
                                     const int32_t* perm, int64_t leaves, int64_t reorder,
                                     int64_t k, int64_t lut16, int64_t variant, int32_t* out_ids,
                                     float* out_scores, double* stage_ns) {
  Searcher s{};
  s.queries = queries, s.d = d, s.centers_t = centers_t, s.nl = nl, s.nlp = nlp, s.cbt = cbt;
  s.nb = nb, s.dk = dk, s.nc = nc, s.database = database, s.codes = codes;
  s.off = offsets, s.goff = goffsets, s.perm = perm;
  s.np = leaves, s.reorder = reorder, s.k = k, s.lut16 = lut16 != 0;
  s.out_ids = out_ids, s.out_scores = out_scores;
  const int64_t cols = lut16 ? (nb + 1) / 2 : nb;
  if (nl < 1 || !CheckSearcher(s, n, code_rows, cols, lut16 ? 32 : 1, nl + 1).empty() ||
      !PickVariant(variant, &s)) {
    return -1;
  }
  for (int i = 0; i < kNumStages; ++i) stage_ns[i] = 0.0;
  s.Run(0, b, stage_ns);
  return 0;
}

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

XLA_FFI_DEFINE_HANDLER_SYMBOL(vj_search, Search,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // queries [b, d]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // centres, transposed [d, nlp]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // codebooks [K, dk, C]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // database [n, d]
                                  .Arg<ffi::Buffer<ffi::U8>>()   // packed or leaf-sorted codes
                                  .Arg<ffi::Buffer<ffi::S32>>()  // offsets [nl + 1]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // goffsets [nl + 1]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // perm [n]
                                  .Ret<ffi::Buffer<ffi::S32>>()  // ids [b, k]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // scores [b, k]
                                  .Attr<int64_t>("leaves")
                                  .Attr<int64_t>("reorder")
                                  .Attr<int64_t>("lut16")
                                  .Attr<int64_t>("variant")
                                  .Attr<int64_t>("num_threads"));

extern "C" int64_t vj_adc_lut16_variant() { return vj::Resolve(vj::kAuto, vj::HasAvx512Bw()); }
extern "C" int64_t vj_adc_supported(int64_t variant) {
  return vj::Supported(variant, vj::HasAvx512Bw()) ? 1 : 0;
}
