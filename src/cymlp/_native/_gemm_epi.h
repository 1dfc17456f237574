/* _gemm_epi.h: the epilogue of a _gemm_impl.h instantiation, what happens to C on its
 * way out of the product. A part of that template: it takes the same parameters
 * (GEMM_T, GEMM_FN, ...: see the top of _gemm_impl.h), which includes it once per
 * instantiation before the micro-kernel.
 *
 * The bias, on the first block of the sum (when C is not accumulated into): the
 * micro-kernel stores t + b from its registers, the same bits as writing b into C and
 * accumulating t on top, without that pass. The op (the CYMLP_OP_* codes below), on
 * each block of rows of C right after the last block of its sum, while it is in cache
 * (block_op; the few-rows path applies it per row): a hidden activation f(x), or
 * x * f'(a) with a = f(z) read from aux at the same place, the backward's
 * delta_prev = (delta . W^T) * f'(a_prev):
 *   logistic  1 / (1 + e^-x)        a (1 - a)        (paper section 2.2.3)
 *   tanh      tanh x                1 - a^2
 *   relu      x if x > 0 else 0     1 if a > 0 else 0
 *   leaky     x if x > 0 else s x   1 if a > 0 else s
 * (A pass over the block, not per register tile: docs/performance.md.) Vector builds
 * apply an op to whole vectors (epi_vec), the lanes independently, so an element gets
 * the same bits however a block is cut; the float logistic's exponential is _vmath.h's
 * cymlp_expf1 written on vectors (vexpf), step for step. */

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "_gemm_params.h" /* the parameters, checked; GEMM_AVX512's masks */
#include "_vmath.h"       /* cymlp_expf1 */

#ifndef CYMLP_GEMM_OPS
#define CYMLP_GEMM_OPS /* (once, not per instantiation) */
/* The op codes, next to their forward and derivative below: _kernels.pxd's activation
 * codes, CYMLP_DERIV added for the derivative x * f'(a). */
enum {
    CYMLP_OP_NONE = 0,
    CYMLP_OP_LOGISTIC = 1,
    CYMLP_OP_TANH = 2,
    CYMLP_OP_RELU = 3,
    CYMLP_OP_LEAKY_RELU = 4,
    CYMLP_DERIV = 16
};
#endif

typedef struct {
    const GEMM_T *bias; /* N values, or NULL (the micro-kernel gets it as its add row) */
    const GEMM_T *aux;  /* CYMLP_DERIV ops: a, M x N, row stride ldaux */
    size_t ldaux;
    int op;             /* CYMLP_OP_* */
    GEMM_T slope;       /* leaky relu's slope */
} GEMM_FN(epi);

#if GEMM_VB
typedef GEMM_T GEMM_FN(vec) __attribute__((vector_size(GEMM_VB)));
#if GEMM_T_SIZE == 4
typedef int32_t GEMM_FN(ivec) __attribute__((vector_size(GEMM_VB))); /* lane masks, ints */
#else
typedef long long GEMM_FN(ivec) __attribute__((vector_size(GEMM_VB)));
#endif
/* m ? x : y, lane by lane (m from a comparison: lanes all ones or zero) */
#define EPI_SEL(m, x, y)                                                                 \
    ((GEMM_FN(vec))(((GEMM_FN(ivec))(x) & (m)) | ((GEMM_FN(ivec))(y) & ~(m))))

#if GEMM_T_SIZE == 4
/* cymlp_expf1 (_vmath.h) on a vector of floats: the same CYMLP_EXPF */
#define EPI_SPLAT(c) (zero + (c))
#define EPI_HALVES(n, e1, e2)                                                            \
    do {                                                                               \
        const GEMM_FN(ivec) ni_ = __builtin_convertvector(n, GEMM_FN(ivec));           \
        const GEMM_FN(ivec) h_ = ni_ >> 1;                                             \
        (e1) = (GEMM_FN(vec))((h_ + 127) << 23);                                       \
        (e2) = (GEMM_FN(vec))((ni_ - h_ + 127) << 23);                                 \
    } while (0)
GEMM_ATTR static inline __attribute__((always_inline)) GEMM_FN(vec)
    GEMM_FN(vexpf)(GEMM_FN(vec) x)
{
    const GEMM_FN(vec) zero = {0};
    GEMM_FN(vec) e;
    CYMLP_EXPF(GEMM_FN(vec), x, EPI_SPLAT, EPI_SEL, EPI_HALVES, e);
    return e;
}
#undef EPI_SPLAT
#undef EPI_HALVES
#endif

/* the op on one vector x of C; a: the vector of aux at the same place (CYMLP_DERIV) */
GEMM_ATTR static inline __attribute__((always_inline)) GEMM_FN(vec)
    GEMM_FN(epi_vec)(GEMM_FN(vec) x, int op, GEMM_FN(vec) a, GEMM_T slope)
{
    enum { V = GEMM_VB / sizeof(GEMM_T) };
    const GEMM_FN(vec) zero = {0};
    switch (op) {
    case CYMLP_OP_LOGISTIC:
#if GEMM_T_SIZE == 4
        return 1.0f / (1.0f + GEMM_FN(vexpf)(-x));
#else
        for (int l = 0; l < V; ++l) x[l] = 1 / (1 + exp(-x[l]));
        return x;
#endif
    case CYMLP_OP_TANH:
        for (int l = 0; l < V; ++l) x[l] = GEMM_T_SIZE == 4 ? tanhf(x[l]) : tanh(x[l]);
        return x;
    case CYMLP_OP_RELU: return EPI_SEL(x > zero, x, zero);
    case CYMLP_OP_LEAKY_RELU: return EPI_SEL(x > zero, x, slope * x);
    case CYMLP_DERIV | CYMLP_OP_LOGISTIC: return x * (a * (1 - a));
    case CYMLP_DERIV | CYMLP_OP_TANH: return x * (1 - a * a);
    case CYMLP_DERIV | CYMLP_OP_RELU: return EPI_SEL(a > zero, x, zero);
    case CYMLP_DERIV | CYMLP_OP_LEAKY_RELU: return EPI_SEL(a > zero, x, slope * x);
    default: return x;
    }
}
#undef EPI_SEL

/* the first n (< V) elements of p as a vector, the other lanes 0; and the reverse */
GEMM_ATTR static inline __attribute__((always_inline)) GEMM_FN(vec)
    GEMM_FN(load_part)(const GEMM_T *p, size_t n)
{
#if GEMM_AVX512
    return (GEMM_FN(vec))GEMM_MASKZ_LOAD((GEMM_MASK)((1u << n) - 1), p);
#else
    GEMM_FN(vec) x = {0};
    for (size_t l = 0; l < n; ++l) x[l] = p[l];
    return x;
#endif
}

GEMM_ATTR static inline __attribute__((always_inline)) void
GEMM_FN(store_part)(GEMM_T *p, GEMM_FN(vec) x, size_t n)
{
#if GEMM_AVX512
    GEMM_MASK_STORE(p, (GEMM_MASK)((1u << n) - 1), (__typeof__(GEMM_MASKZ_LOAD(0, p)))x);
#else
    for (size_t l = 0; l < n; ++l) p[l] = x[l];
#endif
}

/* apply_op: the op (a constant where this is inlined) on z[0:n), aux a[0:n) */
GEMM_ATTR static inline __attribute__((always_inline)) void
GEMM_FN(apply_op)(GEMM_T *z, size_t n, const int op, const GEMM_T *aux, GEMM_T slope)
{
    enum { V = GEMM_VB / sizeof(GEMM_T) };
    GEMM_FN(vec) x, a = {0};
    size_t k = 0;
    for (; k + V <= n; k += V) {
        memcpy(&x, z + k, sizeof x);
        if (op & CYMLP_DERIV) memcpy(&a, aux + k, sizeof a);
        x = GEMM_FN(epi_vec)(x, op, a, slope);
        memcpy(z + k, &x, sizeof x);
    }
    if (k < n) {
        if (op & CYMLP_DERIV) a = GEMM_FN(load_part)(aux + k, n - k);
        x = GEMM_FN(epi_vec)(GEMM_FN(load_part)(z + k, n - k), op, a, slope);
        GEMM_FN(store_part)(z + k, x, n - k);
    }
}

/* apply: the op on z[0:n) (aux, for CYMLP_DERIV: a[0:n)), in place; each case is a
 * loop of its own with its op's code inlined (a code not listed does nothing) */
GEMM_ATTR static void GEMM_FN(apply)(GEMM_T *z, size_t n, int op, const GEMM_T *aux,
                                     GEMM_T slope)
{
#define EPI_CASE(o)                                                                      \
    case o: GEMM_FN(apply_op)(z, n, o, aux, slope); break
    switch (op) {
        EPI_CASE(CYMLP_OP_LOGISTIC);
        EPI_CASE(CYMLP_OP_TANH);
        EPI_CASE(CYMLP_OP_RELU);
        EPI_CASE(CYMLP_OP_LEAKY_RELU);
        EPI_CASE(CYMLP_DERIV | CYMLP_OP_LOGISTIC);
        EPI_CASE(CYMLP_DERIV | CYMLP_OP_TANH);
        EPI_CASE(CYMLP_DERIV | CYMLP_OP_RELU);
        EPI_CASE(CYMLP_DERIV | CYMLP_OP_LEAKY_RELU);
    default: break;
    }
#undef EPI_CASE
}
#else
/* plain C: the op on one element */
static inline GEMM_T GEMM_FN(epi_one)(GEMM_T x, int op, GEMM_T a, GEMM_T slope)
{
    switch (op) {
#if GEMM_T_SIZE == 4
    case CYMLP_OP_LOGISTIC: return 1.0f / (1.0f + cymlp_expf1(-x));
    case CYMLP_OP_TANH: return tanhf(x);
#else
    case CYMLP_OP_LOGISTIC: return 1 / (1 + exp(-x));
    case CYMLP_OP_TANH: return tanh(x);
#endif
    case CYMLP_OP_RELU: return x > 0 ? x : 0;
    case CYMLP_OP_LEAKY_RELU: return x > 0 ? x : slope * x;
    case CYMLP_DERIV | CYMLP_OP_LOGISTIC: return x * (a * (1 - a));
    case CYMLP_DERIV | CYMLP_OP_TANH: return x * (1 - a * a);
    case CYMLP_DERIV | CYMLP_OP_RELU: return a > 0 ? x : 0;
    case CYMLP_DERIV | CYMLP_OP_LEAKY_RELU: return a > 0 ? x : slope * x;
    default: return x;
    }
}

static void GEMM_FN(apply)(GEMM_T *z, size_t n, int op, const GEMM_T *aux, GEMM_T slope)
{
    if (op == CYMLP_OP_NONE) return;
    for (size_t k = 0; k < n; ++k)
        z[k] = GEMM_FN(epi_one)(z[k], op, op & CYMLP_DERIV ? aux[k] : 0, slope);
}
#endif

/* block_op: the op on rows [0, m) x columns [0, n) of C (row stride ldc; aux: the a of
 * its first element, row stride ldaux), one pass when the rows are contiguous */
GEMM_ATTR CYMLP_MAYBE_UNUSED static void
GEMM_FN(block_op)(GEMM_T *c, size_t ldc, size_t m, size_t n, int op, const GEMM_T *aux,
                  size_t ldaux, GEMM_T slope)
{
    if (op == CYMLP_OP_NONE) return;
    if (ldc == n && (aux == NULL || ldaux == n)) {
        GEMM_FN(apply)(c, m * n, op, aux, slope);
        return;
    }
    for (size_t r = 0; r < m; ++r)
        GEMM_FN(apply)(c + r * ldc, n, op, aux ? aux + r * ldaux : NULL, slope);
}
