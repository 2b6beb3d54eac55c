/* kiln runtime: the few portable helpers every generated file carries. */
#if defined(__GNUC__) || defined(__clang__)
#define KILN_ALIGNED __attribute__((aligned(64)))
#else
#define KILN_ALIGNED
#endif
/* Weights are stored as little-endian bytes. */
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "kiln: this file holds little-endian weights; compile it for a little-endian target"
#endif
/* Columns of an output row computed at once by the packed kernels: one 512-bit vector where there
 * is one, else two 256-bit ones. */
#if defined(__AVX512F__)
#define KILN_TILE 16
#else
#define KILN_TILE 8
#endif
/* GCC and clang vector types: the packed kernels keep their tiles in them so the tile stays in
 * registers; other compilers get plain arrays (the same arithmetic, slower). */
#if defined(__GNUC__) || defined(__clang__)
#define KILN_VECTORS 1
typedef float kiln_vf __attribute__((vector_size(KILN_TILE * 4)));
#else
#define KILN_VECTORS 0
#endif
/* The int8 kernels' SIMD paths, bit-identical to their portable C: AVX-512 VNNI (vpdpbusd), else
 * AVX2 (vpmaddwd). The band of a packed integer convolution holds bytes for the first, int16 else. */
#if defined(__AVX512VNNI__) && defined(__AVX512F__)
#define KILN_VNNI512 1
#define KILN_BAND_T uint8_t
#else
#define KILN_VNNI512 0
#define KILN_BAND_T int16_t
#endif
#if defined(__AVX2__)
#include <immintrin.h>
/* unaligned loads of 4 and 8 bytes (memcpy: no aliasing or alignment assumptions) */
static inline int32_t kiln_load32(const void *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline long long kiln_load64(const void *p)
{
    long long v;
    memcpy(&v, p, sizeof v);
    return v;
}
/* x / 2^s rounded as kiln_requant does (+ 2^(s-1), then floor) on four int64 lanes, 0 <= s <= 62:
 * a negative x shifts as ~(~x >> s), which AVX2's logical shift can do */
static inline __m256i kiln_round_shift4(__m256i x, __m256i s)
{
    const __m256i half = _mm256_srli_epi64(_mm256_sllv_epi64(_mm256_set1_epi64x(1), s), 1);
    const __m256i v = _mm256_add_epi64(x, half);
    const __m256i sign = _mm256_cmpgt_epi64(_mm256_setzero_si256(), v);
    return _mm256_xor_si256(_mm256_srlv_epi64(_mm256_xor_si256(v, sign), s), sign);
}
/* kiln_requant on eight int32 lanes, each with its own multiplier m and shift s: the same 64-bit
 * arithmetic, even and odd lanes apart */
static inline __m256i kiln_requant8(__m256i acc, __m256i m, __m256i s, int32_t zp, int32_t lo, int32_t hi)
{
    const __m256i low = _mm256_set1_epi64x(0xffffffff), z = _mm256_set1_epi64x(zp);
    const __m256i l = _mm256_set1_epi64x(lo), h = _mm256_set1_epi64x(hi);
    __m256i r[2];
    for (int odd = 0; odd < 2; ++odd) {
        const __m256i a = odd ? _mm256_srli_epi64(acc, 32) : acc, mm = odd ? _mm256_srli_epi64(m, 32) : m;
        const __m256i ss = odd ? _mm256_srli_epi64(s, 32) : _mm256_and_si256(s, low);
        __m256i v = _mm256_add_epi64(kiln_round_shift4(_mm256_mul_epi32(a, mm), ss), z);
        v = _mm256_blendv_epi8(v, l, _mm256_cmpgt_epi64(l, v));
        r[odd] = _mm256_blendv_epi8(v, h, _mm256_cmpgt_epi64(v, h));
    }
    return _mm256_blend_epi32(r[0], _mm256_slli_epi64(r[1], 32), 0xaa);
}
#endif
