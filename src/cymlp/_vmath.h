/* _vmath.h: the float exponential and the logistic sigmoid of the hidden layers,
 * compiled once per SIMD variant like the matrix products (_gemm.h includes this file
 * and dispatches them with the products), so that their loops vectorise to the width
 * of the CPU's vectors instead of the baseline's.
 *
 * cymlp_expf1 is Cephes' expf: x = n ln2 + r with n = round(x / ln2) (adding and
 * subtracting 1.5 * 2^23 rounds to an integer), ln2 in two parts so that r is exact,
 * e^r by a degree-6 polynomial on |r| <= ln2 / 2, times 2^n built in the exponent bits;
 * within 1 ulp of e^x. x is clamped to [-87.34, 88.8] (below, e^x is about the smallest
 * normal float instead of a denormal or 0; above 88.72, inf as it should); a NaN stays
 * NaN. Variants with FMA contract the multiply-adds, so their last bits may differ. */
#ifndef CYMLP_VMATH_H
#define CYMLP_VMATH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__)
#define CYMLP_INLINE static inline __attribute__((always_inline))
#else
#define CYMLP_INLINE static inline
#endif

/* 2^n as a float, for integer n in [-126, 128] (128 gives inf): the exponent field */
CYMLP_INLINE float cymlp_exp2i(int32_t n)
{
    uint32_t u = (uint32_t)(n + 127) << 23;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

CYMLP_INLINE float cymlp_expf1(float x)
{
    float xc = x > -87.33654f ? x : -87.33654f;
    xc = xc < 88.8f ? xc : 88.8f;
    const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
    r = x == x ? r : x; /* NaN in, NaN out */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const int32_t ni = (int32_t)n; /* 2^n in two normal halves: 2^128 alone is not a float */
    return (p * r * r + r + 1.0f) * cymlp_exp2i(ni >> 1) * cymlp_exp2i(ni - (ni >> 1));
}

/* out[k] = e^x[k] */
CYMLP_INLINE void cymlp_vexpf_body(const float *restrict x, float *restrict out, size_t n)
{
    for (size_t k = 0; k < n; ++k) out[k] = cymlp_expf1(x[k]);
}

/* z[k] = 1 / (1 + e^-z[k]) in place (paper section 2.2.3) */
CYMLP_INLINE void cymlp_sigmoidf_body(float *restrict z, size_t n)
{
    for (size_t k = 0; k < n; ++k) z[k] = 1.0f / (1.0f + cymlp_expf1(-z[k]));
}

typedef void (*cymlp_vexpf_fn)(const float *, float *, size_t);
typedef void (*cymlp_sigmoidf_fn)(float *, size_t);

#define CYMLP_VMATH_VARIANT(suffix, attr)                                                  \
    attr static void cymlp_vexpf_##suffix(const float *x, float *out, size_t n)            \
    {                                                                                      \
        cymlp_vexpf_body(x, out, n);                                                       \
    }                                                                                      \
    attr static void cymlp_sigmoidf_##suffix(float *z, size_t n) { cymlp_sigmoidf_body(z, n); }

CYMLP_VMATH_VARIANT(portable, )
#ifdef CYMLP_X86
CYMLP_VMATH_VARIANT(avx2, CYMLP_AVX2_ATTR)
CYMLP_VMATH_VARIANT(avx512, CYMLP_AVX512_ATTR)
#endif

#endif /* CYMLP_VMATH_H */
