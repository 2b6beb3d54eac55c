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
#endif
