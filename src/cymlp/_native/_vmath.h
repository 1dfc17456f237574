/* _vmath.h: the float exponential and the softmax of the output layer, compiled once
 * per SIMD variant like the matrix products (_gemm.h includes this file and dispatches
 * them with the products), so that their loops vectorise to the width of the CPU's
 * vectors instead of the baseline's. The hidden layers' sigmoid is a matrix product's
 * epilogue (_gemm_epi.h: cymlp_expf1 on the instantiation's vectors).
 *
 * cymlp_expf1 is Cephes' expf: x = n ln2 + r with n = round(x / ln2) (adding and
 * subtracting 1.5 * 2^23 rounds to an integer), ln2 in two parts so that r is exact,
 * e^r by a degree-6 polynomial on |r| <= ln2 / 2, times 2^n built in the exponent bits;
 * within 1 ulp of e^x. x is clamped to [-87.34, 88.8] (below, e^x is about the smallest
 * normal float instead of a denormal or 0; above 88.72, inf as it should); a NaN stays
 * NaN. Variants with FMA contract the multiply-adds, so their last bits may differ. */
#ifndef CYMLP_VMATH_H
#define CYMLP_VMATH_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "_target.h" /* CYMLP_INLINE, restrict, CYMLP_X86 and its target attributes */

/* 2^n as a float, for integer n in [-126, 128] (128 gives inf): the exponent field */
CYMLP_INLINE float cymlp_exp2i(int32_t n)
{
    uint32_t u = (uint32_t)(n + 127) << 23;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Cephes' expf (see the top), written once for every float type T that supports these
 * operators: a float here (cymlp_expf1), a GCC vector of floats in _gemm_epi.h (vexpf).
 * SPLAT(c): c as a T; SEL(m, a, b): m ? a : b, lane by lane; HALVES(n, e1, e2): e1 and
 * e2 such that e1 * e2 = 2^n for the integer-valued n, each a normal float (2^128 alone
 * is not a float). Stores e^x in result. */
#define CYMLP_EXPF(T, x, SPLAT, SEL, HALVES, result)                                     \
    do {                                                                               \
        T xc_ = SEL((x) > SPLAT(-87.33654f), (x), SPLAT(-87.33654f));                 \
        xc_ = SEL(xc_ < SPLAT(88.8f), xc_, SPLAT(88.8f));                             \
        const T n_ = (xc_ * 1.44269504088896341f + 12582912.0f) - 12582912.0f;        \
        T r_ = xc_ - n_ * 0.693359375f + n_ * 2.12194440e-4f;                         \
        r_ = SEL((x) == (x), r_, (x)); /* NaN in, NaN out */                         \
        T p_ = SPLAT(1.9875691500e-4f);                                               \
        p_ = p_ * r_ + 1.3981999507e-3f;                                              \
        p_ = p_ * r_ + 8.3334519073e-3f;                                              \
        p_ = p_ * r_ + 4.1665795894e-2f;                                              \
        p_ = p_ * r_ + 1.6666665459e-1f;                                              \
        p_ = p_ * r_ + 5.0000001201e-1f;                                              \
        T e1_, e2_;                                                                   \
        HALVES(n_, e1_, e2_);                                                         \
        (result) = (p_ * r_ * r_ + r_ + 1.0f) * e1_ * e2_;                            \
    } while (0)

#define CYMLP_SPLAT1(c) (c)
#define CYMLP_SEL1(m, a, b) ((m) ? (a) : (b))
#define CYMLP_HALVES1(n, e1, e2)                                                        \
    do {                                                                               \
        const int32_t ni_ = (int32_t)(n);                                              \
        (e1) = cymlp_exp2i(ni_ >> 1);                                                  \
        (e2) = cymlp_exp2i(ni_ - (ni_ >> 1));                                          \
    } while (0)

CYMLP_INLINE float cymlp_expf1(float x)
{
    float e;
    CYMLP_EXPF(float, x, CYMLP_SPLAT1, CYMLP_SEL1, CYMLP_HALVES1, e);
    return e;
}

/* out[k] = e^x[k] */
CYMLP_INLINE void cymlp_vexpf_body(const float *restrict x, float *restrict out, size_t n)
{
    for (size_t k = 0; k < n; ++k) out[k] = cymlp_expf1(x[k]);
}

/* Softmax of n rows of n_out logits in place, in float, as _kernels.output_forward
 * documents it (max-subtracted, log-sum-exp loss); returns the summed loss of the rows,
 * each weighted by sw[i] (sw NULL: all ones), and stores each row's weighted loss in
 * row_loss[i] (row_loss may be NULL). y NULL: outputs only, returns 0.
 * Short rows (10 logits for MNIST, less than a vector) go through in groups of up to
 * CHUNK logits: each row's shift (its max, then its log-sum-exp) is spread over its
 * logits in a buffer, so that the exponentials of the whole group are one loop that
 * vectorises; a longer row goes through alone, in pieces of CHUNK. Either way each
 * row's exponentials are summed in order, so both give the same bits. */
enum { CYMLP_SOFTMAX_CHUNK = 256 };

/* row i's weighted loss -sum_k y_ik (z_ik - lse) (y NULL: 0), into loss and row_loss */
CYMLP_INLINE void cymlp_softmax_loss(const float *row, const float *y, const float *sw,
                                     size_t i, size_t n_out, float lse, double *loss,
                                     double *row_loss)
{
    if (y == NULL) return;
    const float *yi = y + i * n_out;
    double rl = 0;
    for (size_t k = 0; k < n_out; ++k)
        if (yi[k] != 0) rl -= yi[k] * (row[k] - lse);
    if (sw != NULL) rl = sw[i] * rl;
    *loss += rl;
    if (row_loss != NULL) row_loss[i] = rl;
}

CYMLP_INLINE float cymlp_maxf(const float *row, size_t n)
{
    float m = row[0];
    for (size_t k = 1; k < n; ++k)
        if (row[k] > m) m = row[k];
    return m;
}

CYMLP_INLINE double cymlp_softmaxf_body(float *restrict z, const float *y, const float *sw,
                                        size_t n, size_t n_out, double *row_loss)
{
    enum { CHUNK = CYMLP_SOFTMAX_CHUNK };
    float e[CHUNK], shift[CHUNK], m[CHUNK];
    double loss = 0;
    if (n_out > CHUNK) { /* long rows, one at a time */
        for (size_t i = 0; i < n; ++i) {
            float *restrict row = z + i * n_out;
            const float mi = cymlp_maxf(row, n_out);
            float s = 0;
            for (size_t k0 = 0; k0 < n_out; k0 += CHUNK) {
                const size_t kn = n_out - k0 < CHUNK ? n_out - k0 : CHUNK;
                for (size_t k = 0; k < kn; ++k) e[k] = cymlp_expf1(row[k0 + k] - mi);
                for (size_t k = 0; k < kn; ++k) s += e[k];
            }
            const float lse = mi + logf(s);
            cymlp_softmax_loss(row, y, sw, i, n_out, lse, &loss, row_loss);
            for (size_t k = 0; k < n_out; ++k) row[k] = cymlp_expf1(row[k] - lse);
        }
        return loss;
    }
    const size_t group = CHUNK / n_out;
    for (size_t i0 = 0; i0 < n; i0 += group) {
        const size_t g = n - i0 < group ? n - i0 : group, len = g * n_out;
        float *restrict rows = z + i0 * n_out;
        for (size_t r = 0; r < g; ++r) {
            m[r] = cymlp_maxf(rows + r * n_out, n_out);
            for (size_t k = 0; k < n_out; ++k) shift[r * n_out + k] = m[r];
        }
        for (size_t k = 0; k < len; ++k) e[k] = cymlp_expf1(rows[k] - shift[k]);
        for (size_t r = 0; r < g; ++r) {
            float s = 0;
            for (size_t k = 0; k < n_out; ++k) s += e[r * n_out + k];
            const float lse = m[r] + logf(s);
            cymlp_softmax_loss(rows + r * n_out, y, sw, i0 + r, n_out, lse, &loss, row_loss);
            for (size_t k = 0; k < n_out; ++k) shift[r * n_out + k] = lse;
        }
        for (size_t k = 0; k < len; ++k) rows[k] = cymlp_expf1(rows[k] - shift[k]);
    }
    return loss;
}

typedef void (*cymlp_vexpf_fn)(const float *, float *, size_t);
typedef double (*cymlp_softmaxf_fn)(float *, const float *, const float *, size_t, size_t,
                                    double *);

#define CYMLP_VMATH_VARIANT(suffix, attr)                                                  \
    attr CYMLP_MAYBE_UNUSED static void cymlp_vexpf_##suffix(const float *x, float *out,   \
                                                             size_t n)                     \
    {                                                                                      \
        cymlp_vexpf_body(x, out, n);                                                       \
    }                                                                                      \
    attr CYMLP_MAYBE_UNUSED static double cymlp_softmaxf_##suffix(                         \
        float *z, const float *y, const float *sw, size_t n, size_t n_out, double *row_loss) \
    {                                                                                      \
        return cymlp_softmaxf_body(z, y, sw, n, n_out, row_loss);                          \
    }

CYMLP_VMATH_VARIANT(portable, )
#ifdef CYMLP_X86
CYMLP_VMATH_VARIANT(avx2, CYMLP_AVX2_ATTR)
CYMLP_VMATH_VARIANT(avx512, CYMLP_AVX512_ATTR)
#endif

#endif /* CYMLP_VMATH_H */
