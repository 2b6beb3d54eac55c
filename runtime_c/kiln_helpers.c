/* kiln helpers: each function below is copied into a generated file only when its code calls it.
 * Every function starts at a line "static <type> kiln_<name>(" after its comment and ends at "}". */

/* IEEE binary16 (its bits) -> float, exactly. */
static float kiln_h2f(uint16_t h)
{
    const unsigned e = (h >> 10) & 31u, m = h & 1023u;
    const float v = e == 0 ? ldexpf((float)m, -24)
                  : e == 31 ? (m ? NAN : INFINITY) : ldexpf((float)(m | 1024u), (int)e - 25);
    return (h & 0x8000u) ? -v : v;
}

/* double -> IEEE binary16 bits, rounded to nearest even. A float converts to double exactly, so
 * this is the one correct rounding for either (going through float would round twice). */
static uint16_t kiln_f2h(double x)
{
    const unsigned sign = signbit(x) ? 0x8000u : 0u;
    const double a = fabs(x);
    int e = 0;
    if (isnan(x))
        return (uint16_t)(sign | 0x7e00u);
    if (a >= 65520.0)                       /* at least halfway past 65504: infinity */
        return (uint16_t)(sign | 0x7c00u);
    if (a < 6.103515625e-05)                /* subnormal, in units of 2^-24 (1024 is the first normal) */
        return (uint16_t)(sign | (unsigned)(nearbyint(a * 16777216.0)));
    /* a = f * 2^e, f in [0.5, 1): exponent field e + 14, 10 mantissa bits; a carry out of the
     * mantissa (f rounds up to 2048) moves into the exponent, which is the correct result */
    const double f = frexp(a, &e);
    return (uint16_t)(sign + ((unsigned)(e + 14) << 10) + (unsigned)(nearbyint(f * 2048.0)) - 1024u);
}

/* bfloat16 (its bits) -> float, exactly: they are the high half of the float's bits. */
static float kiln_bf2f(uint16_t b)
{
    const uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* double -> bfloat16 bits, rounded to nearest even in one step (as kiln_f2h). */
static uint16_t kiln_f2bf(double x)
{
    const unsigned sign = signbit(x) ? 0x8000u : 0u;
    const double a = fabs(x);
    int e = 0;
    if (isnan(x))
        return (uint16_t)(sign | 0x7fc0u);
    if (a >= 0x1.ffp127)                    /* at least halfway past the largest finite: infinity */
        return (uint16_t)(sign | 0x7f80u);
    if (a < 0x1p-126)                       /* subnormal, in units of 2^-133 */
        return (uint16_t)(sign | (unsigned)(nearbyint(ldexp(a, 133))));
    const double f = frexp(a, &e);          /* exponent field e + 126, 7 mantissa bits */
    return (uint16_t)(sign + ((unsigned)(e + 126) << 7) + (unsigned)(nearbyint(f * 256.0)) - 128u);
}

/* base^exponent modulo 2^64, exponent >= 0 (numpy's integer power wraps the same way). */
static uint64_t kiln_ipow(uint64_t base, uint64_t exponent)
{
    uint64_t result = 1;
    for (; exponent; exponent >>= 1, base *= base)
        if (exponent & 1u)
            result *= base;
    return result;
}

/* float -> integer, truncating toward zero; out of range saturates, NaN gives 0 (in C the
 * conversion itself is undefined there). */
static int8_t kiln_sat_int8(double v)
{
    return isnan(v) ? 0 : v <= -128.0 ? INT8_MIN : v >= 128.0 ? INT8_MAX : (int8_t)v;
}

static int16_t kiln_sat_int16(double v)
{
    return isnan(v) ? 0 : v <= -32768.0 ? INT16_MIN : v >= 32768.0 ? INT16_MAX : (int16_t)v;
}

static int32_t kiln_sat_int32(double v)
{
    return isnan(v) ? 0 : v <= -2147483648.0 ? INT32_MIN : v >= 2147483648.0 ? INT32_MAX : (int32_t)v;
}

static int64_t kiln_sat_int64(double v)
{
    return isnan(v) ? 0 : v <= -9223372036854775808.0 ? INT64_MIN
         : v >= 9223372036854775808.0 ? INT64_MAX : (int64_t)v;
}

static uint8_t kiln_sat_uint8(double v)
{
    return isnan(v) || v <= -1.0 ? 0 : v >= 256.0 ? UINT8_MAX : (uint8_t)v;
}

static uint16_t kiln_sat_uint16(double v)
{
    return isnan(v) || v <= -1.0 ? 0 : v >= 65536.0 ? UINT16_MAX : (uint16_t)v;
}

static uint32_t kiln_sat_uint32(double v)
{
    return isnan(v) || v <= -1.0 ? 0 : v >= 4294967296.0 ? UINT32_MAX : (uint32_t)v;
}

static uint64_t kiln_sat_uint64(double v)
{
    return isnan(v) || v <= -1.0 ? 0 : v >= 18446744073709551616.0 ? UINT64_MAX : (uint64_t)v;
}

/* The magnitude bits of a small float with m mantissa bits, smallest normal exponent emin and no
 * special values -> float, exactly. The per-format helpers below add the sign, NaN and infinity. */
static float kiln_minifloat_to_f(unsigned bits, unsigned m, int emin)
{
    const unsigned e = bits >> m, f = bits & ((1u << m) - 1u);
    return e == 0 ? ldexpf((float)f, emin - (int)m) : ldexpf((float)(f | (1u << m)), (int)e + emin - 1 - (int)m);
}

/* |x| (not NaN) -> the magnitude bits of that small float, rounded to nearest even (as kiln_f2h);
 * `over` where it is infinite or rounds past max_bits (the largest finite). */
static unsigned kiln_f_to_minifloat(double a, unsigned m, int emin, unsigned max_bits, unsigned over)
{
    int e = 0;
    if (isinf(a))
        return over;
    if (a < ldexp(1.0, emin))               /* subnormal, in units of 2^(emin - m) */
        return (unsigned)(nearbyint(ldexp(a, (int)m - emin)));
    const double f = frexp(a, &e);          /* a = f * 2^e, f in [0.5, 1): exponent field e - emin */
    const unsigned bits = ((unsigned)(e - emin) << m) + (unsigned)(nearbyint(ldexp(f, (int)m + 1))) - (1u << m);
    return bits > max_bits ? over : bits;
}

/* float8 e4m3fn (its bits) -> float: no infinity, 0x7f and 0xff are NaN. */
static float kiln_e4m3fn_to_f(uint8_t b)
{
    const float v = (b & 0x7fu) == 0x7fu ? NAN : kiln_minifloat_to_f(b & 0x7fu, 3, -6);
    return (b & 0x80u) ? -v : v;
}

/* double -> float8 e4m3fn bits, rounded to nearest even; beyond 448 (or infinite) it gives 448
 * when saturating, else NaN. */
static uint8_t kiln_f_to_e4m3fn(double x, int saturate)
{
    const unsigned sign = signbit(x) ? 0x80u : 0u;
    return (uint8_t)(sign | (isnan(x) ? 0x7fu : kiln_f_to_minifloat(fabs(x), 3, -6, 0x7eu, saturate ? 0x7eu : 0x7fu)));
}

/* float8 e4m3fnuz (its bits) -> float: no infinity, no -0, 0x80 is the one NaN. */
static float kiln_e4m3fnuz_to_f(uint8_t b)
{
    const float v = b == 0x80u ? NAN : kiln_minifloat_to_f(b & 0x7fu, 3, -7);
    return (b & 0x80u) ? -v : v;
}

/* double -> float8 e4m3fnuz bits: beyond 240 gives 240 when saturating, else NaN; a negative
 * value that rounds to zero gives +0 (0x80 is the NaN). */
static uint8_t kiln_f_to_e4m3fnuz(double x, int saturate)
{
    const unsigned a = isnan(x) ? 0x80u : kiln_f_to_minifloat(fabs(x), 3, -7, 0x7fu, saturate ? 0x7fu : 0x80u);
    return (uint8_t)(a == 0u || a == 0x80u || !signbit(x) ? a : a | 0x80u);
}

/* float8 e5m2 (its bits) -> float: IEEE-like, 0x7c is infinity, above it NaN. */
static float kiln_e5m2_to_f(uint8_t b)
{
    const unsigned a = b & 0x7fu;
    const float v = a > 0x7cu ? NAN : a == 0x7cu ? INFINITY : kiln_minifloat_to_f(a, 2, -14);
    return (b & 0x80u) ? -v : v;
}

/* double -> float8 e5m2 bits: beyond 57344 (or infinite) gives 57344 when saturating, else
 * infinity. */
static uint8_t kiln_f_to_e5m2(double x, int saturate)
{
    const unsigned sign = signbit(x) ? 0x80u : 0u;
    return (uint8_t)(sign | (isnan(x) ? 0x7eu : kiln_f_to_minifloat(fabs(x), 2, -14, 0x7bu, saturate ? 0x7bu : 0x7cu)));
}

/* float8 e5m2fnuz (its bits) -> float: no infinity, no -0, 0x80 is the one NaN. */
static float kiln_e5m2fnuz_to_f(uint8_t b)
{
    const float v = b == 0x80u ? NAN : kiln_minifloat_to_f(b & 0x7fu, 2, -15);
    return (b & 0x80u) ? -v : v;
}

/* double -> float8 e5m2fnuz bits: beyond 57344 gives 57344 when saturating, else NaN. */
static uint8_t kiln_f_to_e5m2fnuz(double x, int saturate)
{
    const unsigned a = isnan(x) ? 0x80u : kiln_f_to_minifloat(fabs(x), 2, -15, 0x7fu, saturate ? 0x7fu : 0x80u);
    return (uint8_t)(a == 0u || a == 0x80u || !signbit(x) ? a : a | 0x80u);
}

/* float4 e2m1 (its bits, in the low 4) -> float: no infinity, no NaN. */
static float kiln_e2m1_to_f(uint8_t b)
{
    const float v = kiln_minifloat_to_f(b & 7u, 1, 0);
    return (b & 8u) ? -v : v;
}

/* double -> float4 e2m1 bits, rounded to nearest even, saturating at 6 (infinity too). It has
 * no NaN: NaN gives a zero of the opposite sign, as ml_dtypes (the reference) does. */
static uint8_t kiln_f_to_e2m1(double x)
{
    const unsigned sign = signbit(x) ? 8u : 0u;
    return (uint8_t)(isnan(x) ? sign ^ 8u : sign | kiln_f_to_minifloat(fabs(x), 1, 0, 7u, 7u));
}

/* The low `width` bits of an int4 / int2 element, as its signed value. */
static int8_t kiln_sext(unsigned bits, unsigned width)
{
    const int sign = 1 << (width - 1);
    return (int8_t)(((int)(bits & ((1u << width) - 1u)) ^ sign) - sign);
}

/* float -> integer, truncating toward zero; NaN, infinity and anything beyond int64 give 0. The
 * 4-bit and 2-bit types keep the low bits of this, as ml_dtypes (the reference) does. */
static int64_t kiln_trunc_int64(double v)
{
    return isnan(v) || fabs(v) >= 9223372036854775808.0 ? 0 : (int64_t)v;
}

/* An int32 accumulator requantised as the QLinear ops' reference does: rint(acc * multiplier +
 * zero_point), saturated to [lo, hi] (NaN gives lo). */
static double kiln_requantize(int32_t acc, double multiplier, double zero_point, double lo, double hi)
{
    const double d = nearbyint((double)acc * multiplier + zero_point);
    return d >= hi ? hi : d > lo ? d : lo;
}

/* QuantizeLinear of a float quotient q to a type of at most 16 bits: saturate(rint(q) + zp) to
 * [lo, hi], ties to even, NaN to lo; in float and int32 only, without libm (a Cortex-M4F has no
 * double unit). Clamped first (to integers, so rounding commutes with it; both compares made, as a
 * compiler speculates none), then rounded: where floats are evaluated as floats, by adding and
 * taking away 1.5 * 2^23 (exact for |c| < 2^22; a loop of it vectorises), else by truncating and
 * comparing the remainder, which is exact in float. */
static int32_t kiln_quantize_f32(float q, int32_t zp, int32_t lo, int32_t hi)
{
    const float a = (float)(lo - zp), b = (float)(hi - zp);
    const int above = q > a, below = q < b;
    const float c = above ? (below ? q : b) : a;
#if defined(__FLT_EVAL_METHOD__) && __FLT_EVAL_METHOD__ == 0 && !defined(__FAST_MATH__)
    return (int32_t)((c + 12582912.0f) - 12582912.0f) + zp;
#else
    const int32_t t = (int32_t)c, odd = t & 1;
    const float f = c - (float)t;
    const int32_t up = (f > 0.5f) | ((f == 0.5f) & odd), down = (f < -0.5f) | ((f == -0.5f) & odd);
    return t + zp + up - down;
#endif
}

/* exp(x) in float to about 1 ulp, without libm, and with selects on integers only (a compiler
 * keeps float arithmetic out of branches, so loops of it vectorise): |x| clamped to 87 (exp(87) ~
 * 6e37 stands for anything up to 88.72, exp(-87) ~ 1.6e-38 for anything down to -103.97; beyond
 * them +inf and 0, as libm, so that e.g. x * sigmoid(x) at -inf is NaN as onnxruntime's); x = k ln2 + r,
 * |r| <= ln2 / 2 (ln2 in two parts, Cody and Waite; k rounded by adding 1.5 * 2^23); exp(r) by its
 * Taylor series to r^7 (error < 1e-8); 2^k written into the exponent bits. NaN stays NaN. */
static inline float kiln_expf(float x)
{
    uint32_t u, bits;
    float c, scale, y;
    memcpy(&u, &x, sizeof u);
    const uint32_t m = u & 0x7fffffffu, clamped = m > 0x42ae0000u ? (u & 0x80000000u) | 0x42ae0000u : u;
    memcpy(&c, &clamped, sizeof c);
    const int32_t k = (int32_t)((c * 1.44269504f + 12582912.0f) - 12582912.0f);
    const float r = (c - (float)k * 0.693145752f) - (float)k * 1.42860677e-6f;
    const float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720
                    + r * (1.0f / 5040)))))));
    bits = (uint32_t)(k + 127) << 23;
    memcpy(&scale, &bits, sizeof scale);
    y = p * scale;
    const uint32_t nan = 0u - (uint32_t)(m > 0x7f800000u);         /* all ones for NaN: x itself */
    /* compared as bits (integer compares keep the vectorised loop in integer lanes): positive floats order
     * as signed integers, negative ones as unsigned integers in reverse */
    const uint32_t inf = 0u - (uint32_t)((int32_t)u > 0x42b17218);   /* x > 88.7228394f, past FLT_MAX: +inf, as libm */
    const uint32_t zero = 0u - (uint32_t)(u > 0xc2cff1b5u);     /* x < -103.972084f (or a NaN): 0 */
    memcpy(&bits, &y, sizeof bits);
    bits = (bits & ~nan & ~inf & ~zero) | (u & nan) | (0x7f800000u & inf);
    memcpy(&y, &bits, sizeof y);
    return y;
}

/* erf(x) without libm or branches (its loops vectorise): for |x| < 0.5 its Taylor series to x^13 (error
 * < 1e-9), above it sign(x) (1 - (a1 t + ... + a5 t^5) exp(-x^2)), t = 1 / (1 + p |x|) (Abramowitz and
 * Stegun 7.1.26, |error| < 1.5e-7); the sign put back as a bit. NaN stays NaN, erf(+-inf) = +-1. */
static inline float kiln_erff(float x)
{
    const float a = fabsf(x), z = a * a, t = 1.0f / (1.0f + 0.3275911f * a);
    const float series = 1.12837917f * a * (1.0f - z * (1.0f / 3 - z * (1.0f / 10 - z * (1.0f / 42 - z * (1.0f / 216
                         - z * (1.0f / 1320 - z * (1.0f / 9360)))))));
    const float tail = 1.0f - t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f
                       + t * 1.061405429f)))) * kiln_expf(-z);
    uint32_t u, sb, tb;
    float r;
    memcpy(&u, &x, sizeof u);
    const uint32_t small = 0u - (uint32_t)((u & 0x7fffffffu) < 0x3f000000u);  /* |x| < 0.5, as bits: all ones */
    memcpy(&sb, &series, sizeof sb);
    memcpy(&tb, &tail, sizeof tb);
    sb = ((sb & small) | (tb & ~small)) | (u & 0x80000000u);
    memcpy(&r, &sb, sizeof r);
    return r;
}

/* tanh(x) = sign(x) (1 - e) / (1 + e), e = exp(-2 |x|): within 1e-7 of tanh absolutely; the sign
 * put back as a bit (no select). */
static inline float kiln_tanhf(float x)
{
    const float e = kiln_expf(-2.0f * fabsf(x));
    float t = (1.0f - e) / (1.0f + e);
    uint32_t u, bits;
    memcpy(&u, &x, sizeof u);
    memcpy(&bits, &t, sizeof bits);
    bits |= u & 0x80000000u;
    memcpy(&t, &bits, sizeof t);
    return t;
}

/* floor(x / 2^s) for 0 <= s <= 62, without shifting a negative number (implementation-defined in C). */
static int64_t kiln_sra64(int64_t x, int s)
{
    return x >= 0 ? x >> s : ~(~x >> s);
}

/* The integer requantisation of the int8 layers (codegen/quant.py: requant): zp + round(acc * m / 2^s),
 * halves rounding up, saturated to [lo, hi]. m < 2^31 and |acc| < 2^31 keep the product in 62 bits. */
static int32_t kiln_requant(int32_t acc, int32_t m, int s, int32_t zp, int32_t lo, int32_t hi)
{
    const int64_t r = kiln_sra64((int64_t)acc * m + (s > 0 ? (int64_t)1 << (s - 1) : 0), s) + zp;
    return (int32_t)(r < lo ? lo : r > hi ? hi : r);
}

/* v[i] = kiln_requant(v[i], m[i % period], s[i % period], zp, lo, hi) for i < n, period 1 or a multiple
 * of 16: sixteen at a time with AVX-512, eight with AVX2 -- the same 64-bit arithmetic on the even and
 * the odd lanes apart (AVX2 shifts 64-bit lanes only logically: a negative x >> s is ~(~x >> s)). */
static void kiln_requant_n(int32_t *v, size_t n, const int32_t *m, const int32_t *s, size_t period, int32_t zp,
                           int32_t lo, int32_t hi)
{
#if defined(__AVX512F__)
    /* sixteen at a time: AVX-512 has the arithmetic 64-bit shift and 64-bit min / max */
    const size_t done = n - n % 16;
    const __m512i low = _mm512_set1_epi64(0xffffffff), one = _mm512_set1_epi64(1), z = _mm512_set1_epi64(zp);
    const __m512i l = _mm512_set1_epi64(lo), h = _mm512_set1_epi64(hi);
    int narrow = 1;                                  /* every shift >= 32: m < 2^31 makes |acc * m / 2^s| < 2^30 */
    for (size_t i = 0; i < period; ++i)
        narrow &= s[i] >= 32;
    if (narrow) {
        /* the rounded quotients fit 32 bits: the odd lanes shifted by s - 32 leave theirs in the high half,
         * and the zero point and the clamp act on 32-bit lanes */
        const __m512i z32 = _mm512_set1_epi32(zp), l32 = _mm512_set1_epi32(lo), h32 = _mm512_set1_epi32(hi);
        for (size_t i = 0; i < done; i += 16) {
            const __m512i acc = _mm512_loadu_si512(v + i);
            const __m512i mv = period > 1 ? _mm512_loadu_si512(m + i % period) : _mm512_set1_epi32(m[0]);
            const __m512i sv = period > 1 ? _mm512_loadu_si512(s + i % period) : _mm512_set1_epi32(s[0]);
            const __m512i se = _mm512_and_si512(sv, low), so = _mm512_srli_epi64(sv, 32);
            const __m512i even = _mm512_add_epi64(_mm512_mul_epi32(acc, mv), _mm512_sllv_epi64(one, _mm512_sub_epi64(se, one)));
            const __m512i odd = _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(acc, 32), _mm512_srli_epi64(mv, 32)),
                                                 _mm512_sllv_epi64(one, _mm512_sub_epi64(so, one)));
            const __m512i r = _mm512_mask_blend_epi32(0xaaaa, _mm512_srav_epi64(even, se),
                                                      _mm512_srav_epi64(odd, _mm512_sub_epi64(so, _mm512_set1_epi64(32))));
            _mm512_storeu_si512(v + i, _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(r, z32), l32), h32));
        }
    }
    for (size_t i = 0; i < (narrow ? 0 : done); i += 16) {
        const __m512i acc = _mm512_loadu_si512(v + i);
        const __m512i mv = period > 1 ? _mm512_loadu_si512(m + i % period) : _mm512_set1_epi32(m[0]);
        const __m512i sv = period > 1 ? _mm512_loadu_si512(s + i % period) : _mm512_set1_epi32(s[0]);
        __m512i r[2];
        for (int odd = 0; odd < 2; ++odd) {
            const __m512i a = odd ? _mm512_srli_epi64(acc, 32) : acc, mm = odd ? _mm512_srli_epi64(mv, 32) : mv;
            const __m512i sh = odd ? _mm512_srli_epi64(sv, 32) : _mm512_and_si512(sv, low);
            const __m512i half = _mm512_srli_epi64(_mm512_sllv_epi64(one, sh), 1);
            const __m512i x = _mm512_add_epi64(_mm512_mul_epi32(a, mm), half);
            r[odd] = _mm512_min_epi64(_mm512_max_epi64(_mm512_add_epi64(_mm512_srav_epi64(x, sh), z), l), h);
        }
        _mm512_storeu_si512(v + i, _mm512_mask_blend_epi32(0xaaaa, r[0], _mm512_slli_epi64(r[1], 32)));
    }
#elif defined(__AVX2__)
    const size_t done = n - n % 8;
    const __m256i low = _mm256_set1_epi64x(0xffffffff), one = _mm256_set1_epi64x(1), z = _mm256_set1_epi64x(zp);
    const __m256i l = _mm256_set1_epi64x(lo), h = _mm256_set1_epi64x(hi);
    for (size_t i = 0; i < done; i += 8) {
        const __m256i acc = _mm256_loadu_si256((const __m256i *)(const void *)(v + i));
        const __m256i mv = period > 1 ? _mm256_loadu_si256((const __m256i *)(const void *)(m + i % period))
                                      : _mm256_set1_epi32(m[0]);
        const __m256i sv = period > 1 ? _mm256_loadu_si256((const __m256i *)(const void *)(s + i % period))
                                      : _mm256_set1_epi32(s[0]);
        __m256i r[2];
        for (int odd = 0; odd < 2; ++odd) {
            const __m256i a = odd ? _mm256_srli_epi64(acc, 32) : acc, mm = odd ? _mm256_srli_epi64(mv, 32) : mv;
            const __m256i sh = odd ? _mm256_srli_epi64(sv, 32) : _mm256_and_si256(sv, low);
            const __m256i half = _mm256_srli_epi64(_mm256_sllv_epi64(one, sh), 1);
            const __m256i x = _mm256_add_epi64(_mm256_mul_epi32(a, mm), half);
            const __m256i sign = _mm256_cmpgt_epi64(_mm256_setzero_si256(), x);
            __m256i y = _mm256_add_epi64(_mm256_xor_si256(_mm256_srlv_epi64(_mm256_xor_si256(x, sign), sh), sign), z);
            y = _mm256_blendv_epi8(y, l, _mm256_cmpgt_epi64(l, y));
            r[odd] = _mm256_blendv_epi8(y, h, _mm256_cmpgt_epi64(y, h));
        }
        _mm256_storeu_si256((__m256i *)(void *)(v + i), _mm256_blend_epi32(r[0], _mm256_slli_epi64(r[1], 32), 0xaa));
    }
#else
    const size_t done = 0;
#endif
    for (size_t i = done; i < n; ++i)
        v[i] = kiln_requant(v[i], m[i % period], s[i % period], zp, lo, hi);
}

/* A requantised tile of int32 sums [tw][16] (tw <= 16 pixels x 16 channels, each value in its byte
 * type's range) stored channel by channel: y + m * stride gets channel m's tw bytes, for m < ms.
 * With AVX-512BW/VL: bytes by vpmovdb, then a 16 x 16 transpose of bytes in four rounds of unpacks
 * (units of 8, 16, 32, 64 bits); else one byte at a time. */
static void kiln_store_tile8(const int32_t *tile, size_t tw, size_t ms, uint8_t *y, size_t stride)
{
#if defined(__AVX512BW__) && defined(__AVX512VL__)
    __m128i a[16], b[16];
    for (size_t j = 0; j < 16; ++j)                  /* row j: pixel j's 16 channels */
        a[j] = j < tw ? _mm512_cvtepi32_epi8(_mm512_loadu_si512(tile + 16 * j)) : _mm_setzero_si128();
    for (size_t i = 0; i < 8; ++i) {                 /* b[8h + i]: rows 2i, 2i + 1 of channels 8h.. 8h + 7 */
        b[i] = _mm_unpacklo_epi8(a[2 * i], a[2 * i + 1]);
        b[8 + i] = _mm_unpackhi_epi8(a[2 * i], a[2 * i + 1]);
    }
    for (size_t h = 0; h < 2; ++h)                   /* a[8h + 2q + g]: rows 4q.. 4q + 3 of channels 8h + 4g.. */
        for (size_t q = 0; q < 4; ++q) {
            a[8 * h + 2 * q] = _mm_unpacklo_epi16(b[8 * h + 2 * q], b[8 * h + 2 * q + 1]);
            a[8 * h + 2 * q + 1] = _mm_unpackhi_epi16(b[8 * h + 2 * q], b[8 * h + 2 * q + 1]);
        }
    for (size_t g = 0; g < 4; ++g) {                 /* channels 4g.. 4g + 3: b[4g + k], rows 0-7 (k < 2), 8-15 */
        const __m128i *quad = a + 8 * (g / 2) + g % 2;
        b[4 * g] = _mm_unpacklo_epi32(quad[0], quad[2]);
        b[4 * g + 1] = _mm_unpackhi_epi32(quad[0], quad[2]);
        b[4 * g + 2] = _mm_unpacklo_epi32(quad[4], quad[6]);
        b[4 * g + 3] = _mm_unpackhi_epi32(quad[4], quad[6]);
    }
    for (size_t g = 0; g < 4; ++g)                   /* a[m]: channel m, rows 0-15 */
        for (size_t p = 0; p < 2; ++p) {
            a[4 * g + 2 * p] = _mm_unpacklo_epi64(b[4 * g + p], b[4 * g + 2 + p]);
            a[4 * g + 2 * p + 1] = _mm_unpackhi_epi64(b[4 * g + p], b[4 * g + 2 + p]);
        }
    for (size_t m = 0; m < ms; ++m)
        _mm_mask_storeu_epi8(y + m * stride, (__mmask16)(0xffffu >> (16 - tw)), a[m]);
#else
    for (size_t m = 0; m < ms; ++m)
        for (size_t j = 0; j < tw; ++j)
            y[m * stride + j] = (uint8_t)tile[16 * j + m];
#endif
}

/* Two operands rescaled onto one output scale with a single rounding (codegen/quant.py: requant2):
 * zp + round((a * ma + b * mb) / 2^s), saturated to [lo, hi]. The operands are 8-bit (differences of int8 /
 * uint8 and zero points), so |a * ma + b * mb| < 2^41: the floor of the quotient is an unsigned shift of the
 * sum plus 2^62 (a multiple of 2^s), less 2^62 / 2^s -- no branch, so a loop of it vectorises. */
static int32_t kiln_requant2(int32_t a, int32_t ma, int32_t b, int32_t mb, int s, int32_t zp, int32_t lo,
                             int32_t hi)
{
    const uint64_t big = (uint64_t)1 << 62;
    const uint64_t u = (uint64_t)((int64_t)a * ma + (int64_t)b * mb) + (s > 0 ? (uint64_t)1 << (s - 1) : 0) + big;
    const int64_t r = (int64_t)(u >> s) - (int64_t)(big >> s) + zp;
    return (int32_t)(r < lo ? lo : r > hi ? hi : r);
}

/* kiln_requant2 in 32-bit arithmetic, for shifts 17 <= s <= 45 (what Add's scales give): the multipliers split
 * as m = mh 2^16 + ml (0 <= ml < 2^16), so a * ma + b * mb + 2^(s-1) = (h + 2^(s-17)) 2^16 + l with
 * |h| < 2^24, |l| < 2^25, and its floor over 2^s is the floor of (h + 2^(s-17) + floor(l / 2^16)) over 2^(s-16);
 * each floor an unsigned shift of the value plus 2^30 (a multiple of the divisor), less 2^30 over it. Loops
 * of it vectorise on 32-bit lanes. */
static int32_t kiln_requant2_narrow(int32_t a, int32_t mah, int32_t mal, int32_t b, int32_t mbh, int32_t mbl, int s,
                                    int32_t zp, int32_t lo, int32_t hi)
{
    const uint32_t big = (uint32_t)1 << 30;
    const int32_t l = (int32_t)(((uint32_t)(a * mal + b * mbl) + big) >> 16) - (1 << 14);
    const int32_t t = a * mah + b * mbh + (1 << (s - 17)) + l;
    const int32_t r = (int32_t)(((uint32_t)t + big) >> (s - 16)) - (int32_t)(big >> (s - 16)) + zp;
    return r < lo ? lo : r > hi ? hi : r;
}

/* float8 e8m0 (its bits: a biased exponent, no sign, no zero) -> float: 2^(b - 127), 0xff is NaN. */
static float kiln_e8m0_to_f(uint8_t b)
{
    return b == 0xffu ? NAN : ldexpf(1.0f, (int)b - 127);
}

/* float -> float8 e8m0 bits as onnx's reference does it: the float's exponent field, rounded up
 * (mode 0: any fraction), to nearest (mode 1) or down (mode 2); saturating keeps 0xfe from rounding
 * up into 0xff (NaN). NaN and infinity give 0xff; the sign is ignored. */
static uint8_t kiln_f_to_e8m0(float x, int saturate, int mode)
{
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    const unsigned e = (bits >> 23) & 0xffu;
    const int up = mode == 0 ? (bits & 0x7fffffu) != 0
                 : mode == 1 ? (bits & 0x400000u) && ((bits & 0x3fffffu) || e > 0) : 0;
    if (e == 0xffu)
        return 0xffu;
    return (uint8_t)(e + (unsigned)(up && !(saturate && e == 0xfeu)));
}

/* GridSample's reflection of a coordinate into [lo, hi], bouncing off the borders as often as it
 * takes (in double, as the ONNX reference computes it). */
static float kiln_gs_reflect(double x, double lo, double hi)
{
    const double range = hi - lo;
    double dx, k, r;
    if (!(x < lo || x > hi) || !(range > 0.0))
        return (float)(x < lo || x > hi ? lo : x);
    dx = x < lo ? lo - x : x - hi;
    k = floor(dx / range);
    r = dx - k * range;
    if ((fmod(k, 2.0) == 0.0) == (x < lo))
        return (float)(lo + r);
    return (float)(hi - r);
}

/* GridSample: the element index a tap at integer coordinate i reads along an axis of length d,
 * or -1 where zero padding reads 0 (padding 0: zeros, 1: border, 2: reflection into [lo, hi]). */
static ptrdiff_t kiln_gs_tap(ptrdiff_t i, ptrdiff_t d, double lo, double hi, int padding)
{
    if (padding == 1)
        return i < 0 ? 0 : i >= d ? d - 1 : i;
    if (padding == 2) {
        const float r = kiln_gs_reflect((double)i, lo, hi);
        i = (ptrdiff_t)r;
    }
    return i < 0 || i >= d ? -1 : i;
}

/* Slice along an axis of n > 0 elements, step != 0: how many of the indices start, start + step, ...
 * lie before end once ONNX has clamped start and end (negative ones count from the end); the first
 * of them goes to *first. */
static int64_t kiln_slice(int64_t start, int64_t end, int64_t step, int64_t n, int64_t *first)
{
    if (start < 0) start += n;
    if (end < 0) end += n;
    if (step > n) step = n;                 /* a longer step reads one index, as this one does */
    if (step < -n) step = -n;
    if (step > 0) {
        start = start < 0 ? 0 : start > n ? n : start;
        end = end < 0 ? 0 : end > n ? n : end;
        *first = start;
        return end > start ? (end - start - 1) / step + 1 : 0;
    }
    start = start < 0 ? -1 : start > n - 1 ? n - 1 : start;
    end = end < -1 ? -1 : end > n - 1 ? n - 1 : end;
    *first = start;
    return start > end ? (start - end - 1) / -step + 1 : 0;
}

/* How many of the n bools at c are true. */
static size_t kiln_count_true(const uint8_t *c, size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i < n; ++i)
        count += c[i] != 0;
    return count;
}

/* Resize along one axis of n inputs to m outputs by `scale`, as ONNX's reference computes it (in
 * double): for output y, the source coordinate x (ctm 0 half_pixel, 1 half_pixel_symmetric,
 * 2 pytorch_half_pixel, 3 align_corners, 4 asymmetric, 5 tf_crop_and_resize of the region roi0..roi1,
 * where an x outside the input gets a first offset of -1), then the taps around x. mode 0 nearest
 * (rounding 0 round_prefer_floor, 1 round_prefer_ceil, 2 floor, 3 ceil): one offset per output in
 * q; mode 1 linear / 2 cubic (coefficient a): 2 / 4 offsets in q and weights in w per output.
 * Offsets are source index * stride, the index clamped into the axis. */
static void kiln_resize_taps(double scale, int64_t n, int64_t m, ptrdiff_t stride, int ctm, int mode,
                             int rounding, double a, int exclude_outside, double roi0, double roi1,
                             ptrdiff_t *q, float *w)
{
    const double out_w = scale * (double)n;
    const int taps = mode == 2 ? 4 : 2, pad = taps / 2;
    for (int64_t y = 0; y < m; ++y) {
        double x, c[4], total = 0.0;
        int64_t idx[4];
        if (ctm == 0) x = ((double)y + 0.5) / scale - 0.5;
        else if (ctm == 1) x = (double)n / 2 * (1 - (double)m / out_w) + ((double)y + 0.5) / scale - 0.5;
        else if (ctm == 2) x = out_w == 1 ? -0.5 : ((double)y + 0.5) / scale - 0.5;
        else if (ctm == 3) x = out_w == 1 ? 0.0 : (double)y * (double)(n - 1) / (out_w - 1);
        else if (ctm == 4) x = (double)y / scale;
        else {
            x = out_w == 1 ? (roi1 - roi0) * (double)(n - 1) / 2
                           : (double)y * (roi1 - roi0) * (double)(n - 1) / (out_w - 1);
            x = x + roi0 * (double)(n - 1);
            if (!(x >= 0 && x <= (double)(n - 1))) {     /* outside (or NaN): the extrapolation value */
                for (int j = 0; j < (mode == 0 ? 1 : taps); ++j) {
                    q[y * (mode == 0 ? 1 : taps) + j] = j ? 0 : -1;
                    if (mode) w[y * taps + j] = 0.0f;
                }
                continue;
            }
        }
        {
            const double r = x == floor(x) ? 1.0 : x - floor(x);
            const double xp = x + pad, p = floor(xp);
            const int64_t first = (int64_t)p + (xp - p == 0 ? -pad : 1 - pad) - pad;
            if (mode == 0) {
                const int up = r == 1.0 ? 1 : rounding == 0 ? r > 0.5 : rounding == 1 ? r >= 0.5 : rounding == 3;
                const int64_t i = first + up;
                q[y] = (ptrdiff_t)(i < 0 ? 0 : i > n - 1 ? n - 1 : i) * stride;
                continue;
            }
            if (mode == 1) {
                c[0] = 1 - r;
                c[1] = r;
            } else {
                c[0] = ((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a;
                c[1] = ((a + 2) * r - (a + 3)) * r * r + 1;
                c[2] = ((a + 2) * (1 - r) - (a + 3)) * (1 - r) * (1 - r) + 1;
                c[3] = ((a * ((1 - r) + 1) - 5 * a) * ((1 - r) + 1) + 8 * a) * ((1 - r) + 1) - 4 * a;
            }
            for (int j = 0; j < taps; ++j) {
                idx[j] = first + j;
                if (exclude_outside && (idx[j] < 0 || idx[j] >= n)) c[j] = 0.0;
                total += c[j];
            }
            for (int j = 0; j < taps; ++j) {
                const int64_t i = idx[j] < 0 ? 0 : idx[j] > n - 1 ? n - 1 : idx[j];
                q[y * taps + j] = (ptrdiff_t)i * stride;
                w[y * taps + j] = (float)(exclude_outside && total != 0.0 ? c[j] / total : c[j]);
            }
        }
    }
}
