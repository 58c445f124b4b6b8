// Native CPU exact Hamming top-k over packed binary codes, called from jit through the XLA FFI.
//
// Compiled on first use by vision_jax/hashing/native.py. One handler, vj_hamming_topk:
//   queries [Q, W] and database [N, W] of uint8 or uint32 words (B = W * word bytes per code),
//   outputs distances and indices int32 [Q, k], sorted by (distance, database index).
//
// The distance is popcount(q XOR b) summed over the code's bytes, so the word size and byte order
// do not matter. Work is split over threads by queries (contiguous ranges); each thread scans the
// database in blocks of ~256 KiB that stay in L2 while all of its queries pass over them, four
// queries per pass so one load feeds four XOR + popcount + compare chains.
//
// Variants (picked at run time from the CPU's features, or forced by the `variant` attribute):
//   1 scalar : portable C++ (__builtin_popcountll), any code length.
//   2 avx2   : B = 4, 8, 16, 32: 256-bit XOR + nibble-table popcount (pshufb) + byte sums per
//              lane; other lengths: the scalar loop with the popcnt instruction.
//   3 avx512 : B = 4, 8, 16, 32: 512-bit XOR + VPOPCNTD/Q + mask compare (AVX-512F +
//              VPOPCNTDQ); other lengths as avx2.
// All compute the same integers, so they return the same results.
//
// Selection: a candidate is one uint64 key, distance << 32 | index, smaller is better. Each query
// keeps a buffer of 2k + 32 keys, cut back to the best k with nth_element when full; the k-th
// best key's distance then becomes a threshold thr, and since the scan visits indices in
// increasing order a new code can only enter with distance < thr (an equal distance has a larger
// index and loses the tie). The SIMD loops test exactly that, so hits are rare after the first
// few thousand codes.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "native_cpu.h"

#ifdef VJ_X86
#include <immintrin.h>
#define VJ_POPCNT __attribute__((target("popcnt")))
#define VJ_AVX2 __attribute__((target("avx2,popcnt")))
#define VJ_AVX512 __attribute__((target("avx512f,avx512vpopcntdq,popcnt")))
#endif

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using vj::kAvx2;
using vj::kAvx512;

class TopK {
 public:
  explicit TopK(int64_t k) : k_(k), cap_(2 * k + 32) { buf_.reserve(cap_); }
  // A code enters only with distance < Threshold() (see the header comment).
  inline uint64_t Threshold() const { return thr_; }
  inline void Push(uint64_t d, int64_t i) {
    buf_.push_back((d << 32) | static_cast<uint32_t>(i));
    if (static_cast<int64_t>(buf_.size()) == cap_) Compact();
  }
  void Write(int32_t* dist, int32_t* idx) {
    if (static_cast<int64_t>(buf_.size()) > k_) Compact();
    std::sort(buf_.begin(), buf_.end());
    for (int64_t j = 0; j < k_; ++j) {
      dist[j] = static_cast<int32_t>(buf_[j] >> 32);
      idx[j] = static_cast<int32_t>(static_cast<uint32_t>(buf_[j]));
    }
  }

 private:
  void Compact() {
    std::nth_element(buf_.begin(), buf_.begin() + (k_ - 1), buf_.end());
    thr_ = buf_[k_ - 1] >> 32;
    buf_.resize(k_);
  }
  int64_t k_, cap_;
  uint64_t thr_ = ~uint64_t{0};
  std::vector<uint64_t> buf_;
};

// Scans database codes [i0, i1) for nq <= 4 queries, pushing every code with distance below its
// query's threshold. db and queries are B bytes per code.
using ScanFn = void (*)(const uint8_t* db, int64_t nbytes, int64_t i0, int64_t i1,
                        const uint8_t* const* qs, int nq, TopK* const* tops);

// Generic length, one code at a time. The body is compiled twice: portable and with popcnt.
#define VJ_DEFINE_SCAN_GENERIC(NAME, ATTR)                                                     \
  ATTR void NAME(const uint8_t* db, int64_t nbytes, int64_t i0, int64_t i1,                   \
                 const uint8_t* const* qs, int nq, TopK* const* tops) {                       \
    for (int t = 0; t < nq; ++t) {                                                            \
      const uint8_t* q = qs[t];                                                               \
      uint64_t thr = tops[t]->Threshold();                                                    \
      for (int64_t i = i0; i < i1; ++i) {                                                     \
        const uint8_t* c = db + i * nbytes;                                                   \
        uint64_t d = 0;                                                                       \
        int64_t j = 0;                                                                        \
        for (; j + 8 <= nbytes; j += 8) {                                                     \
          uint64_t x, y;                                                                      \
          std::memcpy(&x, q + j, 8);                                                          \
          std::memcpy(&y, c + j, 8);                                                          \
          d += __builtin_popcountll(x ^ y);                                                   \
        }                                                                                     \
        for (; j + 4 <= nbytes; j += 4) {                                                     \
          uint32_t x, y;                                                                      \
          std::memcpy(&x, q + j, 4);                                                          \
          std::memcpy(&y, c + j, 4);                                                          \
          d += __builtin_popcount(x ^ y);                                                     \
        }                                                                                     \
        for (; j < nbytes; ++j) d += __builtin_popcount(static_cast<unsigned>(q[j] ^ c[j])); \
        if (d < thr) {                                                                        \
          tops[t]->Push(d, i);                                                                \
          thr = tops[t]->Threshold();                                                         \
        }                                                                                     \
      }                                                                                       \
    }                                                                                         \
  }

VJ_DEFINE_SCAN_GENERIC(ScanScalar, )
#ifdef VJ_X86
VJ_DEFINE_SCAN_GENERIC(ScanPopcnt, VJ_POPCNT)

// Threshold as a signed lane value of type T (the compares are signed; distances are small).
template <typename T>
inline T LaneThreshold(const TopK* top) {
  return static_cast<T>(std::min<uint64_t>(top->Threshold(), std::numeric_limits<T>::max()));
}

// Pushes lane b of `dist` (code i + b / LANES, LANES lanes per code) for each bit b of `mask`.
// The live threshold is re-tested: an earlier push from the same vector may have lowered it.
template <int LANES, typename T>
inline void PushLanes(uint32_t mask, const T* dist, int64_t i, TopK* top) {
  while (mask) {
    const int b = __builtin_ctz(mask);
    mask &= mask - 1;
    const uint64_t d = static_cast<uint64_t>(dist[b]);
    if (d < top->Threshold()) top->Push(d, i + b / LANES);
  }
}

// ---- SIMD loops for B = 4, 8, 16 and 32 bytes. B = 4 uses 32-bit lanes (one code each); the
// others 64-bit lanes, B / 8 per code, whose sums are folded into the code's first lane (the
// other lanes are masked off). The database tail (< one vector) takes the popcnt loop.

template <int B>
VJ_AVX512 inline __m512i Threshold512(const TopK* top) {
  return B == 4 ? _mm512_set1_epi32(LaneThreshold<int32_t>(top))
                : _mm512_set1_epi64(LaneThreshold<int64_t>(top));
}

template <int NQ, int B>
VJ_AVX512 void ScanAvx512T(const uint8_t* db, int64_t i0, int64_t i1, const uint8_t* const* qs,
                           TopK* const* tops) {
  using Lane = std::conditional_t<B == 4, int32_t, int64_t>;
  constexpr int kCodes = 64 / B;                   // codes per 512-bit vector
  constexpr int kLanes = B == 4 ? 1 : B / 8;       // lanes per code
  constexpr uint32_t kFirst = B == 4 ? 0xffff : B == 8 ? 0xff : B == 16 ? 0x55 : 0x11;
  __m512i qv[NQ], tv[NQ];
  for (int t = 0; t < NQ; ++t) {
    const uint8_t* q = qs[t];
    if constexpr (B == 4) qv[t] = _mm512_set1_epi32(*reinterpret_cast<const int32_t*>(q));
    if constexpr (B == 8) qv[t] = _mm512_set1_epi64(*reinterpret_cast<const int64_t*>(q));
    if constexpr (B == 16) {
      qv[t] = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)));
    }
    if constexpr (B == 32) {
      qv[t] = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q)));
    }
    tv[t] = Threshold512<B>(tops[t]);
  }
  alignas(64) Lane dist[64 / sizeof(Lane)];
  int64_t i = i0;
  for (; i + kCodes <= i1; i += kCodes) {
    const __m512i x = _mm512_loadu_si512(db + i * B);
#pragma GCC unroll 4
    for (int t = 0; t < NQ; ++t) {
      const __m512i v = _mm512_xor_si512(x, qv[t]);
      uint32_t m;
      __m512i d;
      if constexpr (B == 4) {
        d = _mm512_popcnt_epi32(v);
        m = _mm512_cmplt_epi32_mask(d, tv[t]);
      } else {
        d = _mm512_popcnt_epi64(v);
        if constexpr (B >= 16) d = _mm512_add_epi64(d, _mm512_shuffle_epi32(d, _MM_PERM_BADC));
        if constexpr (B == 32) d = _mm512_add_epi64(d, _mm512_shuffle_i64x2(d, d, 0xb1));
        m = _mm512_mask_cmplt_epi64_mask(kFirst, d, tv[t]);
      }
      if (__builtin_expect(m != 0, 0)) {
        _mm512_store_si512(dist, d);
        PushLanes<kLanes>(m, dist, i, tops[t]);
        tv[t] = Threshold512<B>(tops[t]);
      }
    }
  }
  if (i < i1) ScanPopcnt(db, B, i, i1, qs, NQ, tops);
}

// AVX2: popcount by nibble-table lookups (pshufb), then byte sums per 32-bit lane (maddubs +
// madd) for B = 4 or per 64-bit lane (sad_epu8) otherwise.
VJ_AVX2 inline __m256i ByteCountsAvx2(__m256i v) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1,
                                       2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low = _mm256_set1_epi8(0x0f);
  const __m256i lo = _mm256_and_si256(v, low);
  const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
  return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
}

template <int B>
VJ_AVX2 inline __m256i Threshold256(const TopK* top) {
  return B == 4 ? _mm256_set1_epi32(LaneThreshold<int32_t>(top))
                : _mm256_set1_epi64x(LaneThreshold<int64_t>(top));
}

template <int NQ, int B>
VJ_AVX2 void ScanAvx2T(const uint8_t* db, int64_t i0, int64_t i1, const uint8_t* const* qs,
                       TopK* const* tops) {
  using Lane = std::conditional_t<B == 4, int32_t, int64_t>;
  constexpr int kCodes = 32 / B;
  constexpr int kLanes = B == 4 ? 1 : B / 8;
  constexpr uint32_t kFirst = B == 4 ? 0xff : B == 8 ? 0xf : B == 16 ? 0x5 : 0x1;
  __m256i qv[NQ], tv[NQ];
  for (int t = 0; t < NQ; ++t) {
    const uint8_t* q = qs[t];
    if constexpr (B == 4) qv[t] = _mm256_set1_epi32(*reinterpret_cast<const int32_t*>(q));
    if constexpr (B == 8) qv[t] = _mm256_set1_epi64x(*reinterpret_cast<const int64_t*>(q));
    if constexpr (B == 16) {
      qv[t] = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)));
    }
    if constexpr (B == 32) qv[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
    tv[t] = Threshold256<B>(tops[t]);
  }
  alignas(32) Lane dist[32 / sizeof(Lane)];
  int64_t i = i0;
  for (; i + kCodes <= i1; i += kCodes) {
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(db + i * B));
#pragma GCC unroll 4
    for (int t = 0; t < NQ; ++t) {
      const __m256i c = ByteCountsAvx2(_mm256_xor_si256(x, qv[t]));
      __m256i d;
      uint32_t m;
      if constexpr (B == 4) {
        d = _mm256_madd_epi16(_mm256_maddubs_epi16(c, _mm256_set1_epi8(1)), _mm256_set1_epi16(1));
        m = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(tv[t], d)));
      } else {
        d = _mm256_sad_epu8(c, _mm256_setzero_si256());
        if constexpr (B >= 16) d = _mm256_add_epi64(d, _mm256_shuffle_epi32(d, 0x4e));
        if constexpr (B == 32) d = _mm256_add_epi64(d, _mm256_permute4x64_epi64(d, 0x4e));
        m = _mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(tv[t], d))) & kFirst;
      }
      if (__builtin_expect(m != 0, 0)) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(dist), d);
        PushLanes<kLanes>(m, dist, i, tops[t]);
        tv[t] = Threshold256<B>(tops[t]);
      }
    }
  }
  if (i < i1) ScanPopcnt(db, B, i, i1, qs, NQ, tops);
}

// ScanFn adapters: the query count picks the unrolled instance.
#define VJ_DEFINE_SCAN_SIMD(NAME, TEMPLATE, ATTR)                                             \
  template <int B>                                                                            \
  ATTR void NAME(const uint8_t* db, int64_t, int64_t i0, int64_t i1, const uint8_t* const* qs, \
                 int nq, TopK* const* tops) {                                                 \
    switch (nq) {                                                                             \
      case 4: return TEMPLATE<4, B>(db, i0, i1, qs, tops);                                    \
      case 3: return TEMPLATE<3, B>(db, i0, i1, qs, tops);                                    \
      case 2: return TEMPLATE<2, B>(db, i0, i1, qs, tops);                                    \
      default: return TEMPLATE<1, B>(db, i0, i1, qs, tops);                                   \
    }                                                                                         \
  }
VJ_DEFINE_SCAN_SIMD(ScanAvx512, ScanAvx512T, VJ_AVX512)
VJ_DEFINE_SCAN_SIMD(ScanAvx2, ScanAvx2T, VJ_AVX2)

#define VJ_PICK(NAME, nbytes)                                                      \
  ((nbytes) == 4    ? NAME<4>                                                      \
   : (nbytes) == 8  ? NAME<8>                                                      \
   : (nbytes) == 16 ? NAME<16>                                                     \
   : (nbytes) == 32 ? NAME<32>                                                     \
                    : ScanPopcnt)
#endif  // VJ_X86

ScanFn Pick(int64_t variant, int64_t nbytes) {
#ifdef VJ_X86
  if (variant == kAvx512) return VJ_PICK(ScanAvx512, nbytes);
  if (variant == kAvx2) return VJ_PICK(ScanAvx2, nbytes);
#endif
  return ScanScalar;
}

// Queries [q0, q1) over the whole database; the block keeps ~256 KiB of codes in L2 while every
// query of the range passes over it.
void SearchRange(ScanFn scan, const uint8_t* db, int64_t n, int64_t nbytes, const uint8_t* q,
                 int64_t q0, int64_t q1, int64_t k, int32_t* out_d, int32_t* out_i) {
  const int64_t nq = q1 - q0;
  std::vector<TopK> tops(nq, TopK(k));
  const int64_t block = std::max<int64_t>(1024, (int64_t{256} << 10) / nbytes);
  for (int64_t b0 = 0; b0 < n; b0 += block) {
    const int64_t b1 = std::min(n, b0 + block);
    for (int64_t t0 = 0; t0 < nq; t0 += 4) {
      const int m = static_cast<int>(std::min<int64_t>(4, nq - t0));
      const uint8_t* qs[4];
      TopK* tp[4];
      for (int j = 0; j < m; ++j) {
        qs[j] = q + (q0 + t0 + j) * nbytes;
        tp[j] = &tops[t0 + j];
      }
      scan(db, nbytes, b0, b1, qs, m, tp);
    }
  }
  for (int64_t j = 0; j < nq; ++j) tops[j].Write(out_d + (q0 + j) * k, out_i + (q0 + j) * k);
}

int64_t BytesPerWord(ffi::DataType t) {
  return t == ffi::DataType::U8 ? 1 : t == ffi::DataType::U32 ? 4 : 0;
}

ffi::Error HammingTopk(ffi::AnyBuffer queries, ffi::AnyBuffer database,
                       ffi::ResultBuffer<ffi::S32> out_dist, ffi::ResultBuffer<ffi::S32> out_idx,
                       int64_t num_threads, int64_t variant) {
  auto qd = queries.dimensions();
  auto dd = database.dimensions();
  const int64_t wq = BytesPerWord(queries.element_type());
  if (qd.size() != 2 || dd.size() != 2 || wq == 0 ||
      database.element_type() != queries.element_type() || qd[1] != dd[1]) {
    return ffi::Error::InvalidArgument(
        "hamming_topk: queries [Q, W] and database [N, W] must be uint8 or uint32 of one dtype");
  }
  const int64_t nq = qd[0], n = dd[0], nbytes = qd[1] * wq;
  const int64_t k = out_dist->dimensions()[1];
  if (k < 1 || k > n) {
    return ffi::Error::InvalidArgument("hamming_topk: k=" + std::to_string(k) +
                                       " must be in [1, N=" + std::to_string(n) + "]");
  }
  if (n >= (int64_t{1} << 31)) {
    return ffi::Error::InvalidArgument("hamming_topk: database exceeds int32 indices");
  }
  const int64_t requested = variant;
  variant = vj::Resolve(requested, vj::HasAvx512Vpopcntdq());
  if (variant < 0) {
    return ffi::Error::InvalidArgument("hamming_topk: variant " + std::to_string(requested) +
                                       " is not supported by this CPU");
  }
  if (nq == 0) return ffi::Error::Success();
  const ScanFn scan = Pick(variant, nbytes);
  const auto* q = static_cast<const uint8_t*>(queries.untyped_data());
  const auto* db = static_cast<const uint8_t*>(database.untyped_data());
  int32_t* od = out_dist->typed_data();
  int32_t* oi = out_idx->typed_data();
  // Contiguous ranges of whole 4-query tiles, one per thread.
  vj::ParallelFor(nq, num_threads, 4, [&](int64_t q0, int64_t q1) {
    SearchRange(scan, db, n, nbytes, q, q0, q1, k, od, oi);
  });
  return ffi::Error::Success();
}

}  // namespace

extern "C" int64_t vj_hamming_supported(int64_t variant) {
  return vj::Supported(variant, vj::HasAvx512Vpopcntdq()) ? 1 : 0;
}
extern "C" int64_t vj_hamming_best_variant() {
  return vj::Resolve(vj::kAuto, vj::HasAvx512Vpopcntdq());
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(vj_hamming_topk, HammingTopk,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()         // queries [Q, W] u8/u32
                                  .Arg<ffi::AnyBuffer>()         // database [N, W] same dtype
                                  .Ret<ffi::Buffer<ffi::S32>>()  // distances [Q, k]
                                  .Ret<ffi::Buffer<ffi::S32>>()  // indices [Q, k]
                                  .Attr<int64_t>("num_threads")
                                  .Attr<int64_t>("variant"));
