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
/* The int8 kernels' AVX2 path (bit-identical to their portable C): acc + the sums of the products of
 * adjacent int16 pairs, exact in 32 bits, in one instruction where AVX-512 VNNI has it. */
#if defined(__AVX2__)
#include <immintrin.h>
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define KILN_DPWSSD(acc, a, b) _mm256_dpwssd_epi32(acc, a, b)
#else
#define KILN_DPWSSD(acc, a, b) _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
#endif
/* two adjacent int16 in every 32-bit lane */
static inline __m256i kiln_pair16(const int16_t *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm256_set1_epi32(v);
}
#endif
