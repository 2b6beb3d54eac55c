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
