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
