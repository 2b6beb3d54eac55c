/* Vector primitives of the packed kernels, one set per instruction set, chosen by the compiler's own
 * target macros: kiln_v holds KILN_LANES floats; kiln_vfma(acc, a, b) is acc + a * b; kiln_vlane(v, j)
 * is lane j, an lvalue. The convolutions compute KILN_TILE output columns (whole vectors) at once.
 * Vectors need GCC or clang, whose vector types (the intrinsics' types among them) let single lanes be
 * written in registers. Define KILN_NO_INTRINSICS for those vector types on any target, KILN_NO_VECTORS
 * for plain floats (what other compilers get). */
#if (defined(__GNUC__) || defined(__clang__)) && !defined(KILN_NO_VECTORS)
#define KILN_VECTORS 1
#define kiln_vlane(v, j) ((v)[j])
#else
#define KILN_VECTORS 0
#endif
#if KILN_VECTORS && defined(__AVX512F__) && !defined(KILN_NO_INTRINSICS)
#include <immintrin.h>
#define KILN_LANES 16
typedef __m512 kiln_v;
#define kiln_vzero() _mm512_setzero_ps()
#define kiln_vset(x) _mm512_set1_ps(x)
#define kiln_vload(p) _mm512_loadu_ps(p)
#define kiln_vstore(p, v) _mm512_storeu_ps(p, v)
#define kiln_vfma(acc, a, b) _mm512_fmadd_ps(a, b, acc)
#elif KILN_VECTORS && defined(__AVX2__) && defined(__FMA__) && !defined(KILN_NO_INTRINSICS)
#include <immintrin.h>
#define KILN_LANES 8
typedef __m256 kiln_v;
#define kiln_vzero() _mm256_setzero_ps()
#define kiln_vset(x) _mm256_set1_ps(x)
#define kiln_vload(p) _mm256_loadu_ps(p)
#define kiln_vstore(p, v) _mm256_storeu_ps(p, v)
#define kiln_vfma(acc, a, b) _mm256_fmadd_ps(a, b, acc)
#elif KILN_VECTORS && defined(__ARM_NEON) && !defined(KILN_NO_INTRINSICS)
#include <arm_neon.h>
#define KILN_LANES 4
typedef float32x4_t kiln_v;
#define kiln_vzero() vdupq_n_f32(0.0f)
#define kiln_vset(x) vdupq_n_f32(x)
#define kiln_vload(p) vld1q_f32(p)
#define kiln_vstore(p, v) vst1q_f32(p, v)
#if defined(__aarch64__) || defined(__ARM_FEATURE_FMA)
#define kiln_vfma(acc, a, b) vfmaq_f32(acc, a, b)
#else
#define kiln_vfma(acc, a, b) vmlaq_f32(acc, a, b)      /* 32-bit Arm without VFPv4: multiply, then add */
#endif
#elif KILN_VECTORS
/* the compiler lowers these to what the target has: two halves, or scalars */
#if defined(__AVX512F__)
#define KILN_LANES 16
#else
#define KILN_LANES 8
#endif
typedef float kiln_v __attribute__((vector_size(KILN_LANES * 4)));
/* loads and stores through an unaligned type that may alias floats (as immintrin.h's __m256_u) */
typedef float kiln_vu __attribute__((vector_size(KILN_LANES * 4), aligned(4), may_alias));
#define kiln_vzero() ((kiln_v){0})
#define kiln_vset(x) ((x) - (kiln_v){0})     /* x - 0 is x, so this folds to a broadcast (x + 0 would not, for x = -0) */
#define kiln_vload(p) (*(const kiln_vu *)(const void *)(p))
#define kiln_vstore(p, v) (*(kiln_vu *)(void *)(p) = (v))
#define kiln_vfma(acc, a, b) ((acc) + (a) * (b))
#else
#define KILN_LANES 1
typedef float kiln_v;
#define kiln_vlane(v, j) ((&(v))[j])
#define kiln_vzero() 0.0f
#define kiln_vset(x) (x)
#define kiln_vload(p) (*(p))
#define kiln_vstore(p, v) (*(p) = (v))
#define kiln_vfma(acc, a, b) ((acc) + (a) * (b))
#endif
/* whether kiln_v is an instruction set's own register (else the compiler splits it, through memory) */
#if KILN_VECTORS && !defined(KILN_NO_INTRINSICS) && (defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__)) || defined(__ARM_NEON))
#define KILN_NATIVE 1
#else
#define KILN_NATIVE 0
#endif
#define KILN_TILE (KILN_LANES > 8 ? KILN_LANES : 8)
#define KILN_TILE_VECTORS (KILN_TILE / KILN_LANES)
/* a hint to fetch the cache line at address p (an integer: p may lie past the array, and is never read) */
#if defined(__GNUC__) || defined(__clang__)
#define kiln_prefetch(p) __builtin_prefetch((const void *)(p))
#else
#define kiln_prefetch(p) ((void)(p))
#endif
