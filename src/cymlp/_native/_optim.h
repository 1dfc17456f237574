/* Optimizer steps on the flat parameter buffer (paper §3.6 and §4.3.4), as scikit-learn's
 * SGDOptimizer and AdamOptimizer compute them; _optim.pxd is their Cython face.
 *
 * Compiled without contracting a multiply and an add into one fused multiply-add: every
 * product and sum is rounded where numpy rounds it in scikit-learn's optimizers, on every
 * architecture. aarch64 compilers fuse by default (GCC: -ffp-contract=fast; clang within
 * an expression), which moved Adam's steps off scikit-learn's (docs/performance.md), and
 * so would GCC in the AVX2 and AVX-512 instantiations, which may use FMA instructions. The
 * matrix kernels keep their FMAs: this applies to these functions only.
 *
 * The steps are elementwise, so a vector loop of any width gives every element the same
 * bits as the scalar one (no FMA; sqrt and division are correctly rounded in both).
 * They are compiled once per SIMD variant like the matrix products, whose run-time
 * dispatch (_gemm.h) picks them: cymlp_sgd_step_f_<v>, cymlp_adam_step_f_<v> and their
 * double (_d_) twins, v = portable (also the baseline's: the x86-64 baseline's SSE2 is
 * what the compiler vectorises the portable loop to), avx2, avx512. On the baseline's
 * 4-wide vectors Adam's step had a tenth of an Adam fit's samples (docs/performance.md).
 * cymlp_sgd_outer_row_f/_d (one-row batches) has one instantiation.
 *
 * Includes itself once per (type, variant). */
#ifndef CYMLP_OPTIM_H
#define CYMLP_OPTIM_H

#include <math.h>
#include <stddef.h>
#include "_target.h" /* CYMLP_X86 and its target attributes */

#if defined(__clang__)
/* clang ignores GCC's optimize attribute; its pragma holds to the end of the block */
#define CYMLP_NOFUSE_FN static __attribute__((unused))
#define CYMLP_NOFUSE_BLOCK _Pragma("clang fp contract(off)")
#elif defined(__GNUC__)
#define CYMLP_NOFUSE_FN static __attribute__((optimize("fp-contract=off"), unused))
#define CYMLP_NOFUSE_BLOCK
#else /* MSVC's cl.exe contracts only under /fp:contract, which the build never sets */
#define CYMLP_NOFUSE_FN static
#define CYMLP_NOFUSE_BLOCK
#endif

typedef void (*cymlp_ssgd_fn)(float *, const float *, float *, ptrdiff_t, float, float, int,
                              float, float);
typedef void (*cymlp_dsgd_fn)(double *, const double *, double *, ptrdiff_t, double, double,
                              int, double, double);
typedef void (*cymlp_sadam_fn)(float *, const float *, float *, float *, ptrdiff_t, float,
                               float, float, float, float, float, float, float, float);
typedef void (*cymlp_dadam_fn)(double *, const double *, double *, double *, ptrdiff_t,
                               double, double, double, double, double, double, double, double,
                               double);

#define OPTIM_ONE_ROW 1 /* (the one-row step: the portable instantiations only) */
#define OPTIM_T float
#define OPTIM_FN(name) name##_f_portable
#define OPTIM_ROW_FN(name) name##_f
#define OPTIM_ATTR
#define OPTIM_SQRT sqrtf
#include "_optim.h"
#define OPTIM_T double
#define OPTIM_FN(name) name##_d_portable
#define OPTIM_ROW_FN(name) name##_d
#define OPTIM_ATTR
#define OPTIM_SQRT sqrt
#include "_optim.h"
#undef OPTIM_ONE_ROW
#define OPTIM_ONE_ROW 0
#ifdef CYMLP_X86
#define OPTIM_T float
#define OPTIM_FN(name) name##_f_avx2
#define OPTIM_ATTR CYMLP_AVX2_ATTR
#define OPTIM_SQRT sqrtf
#include "_optim.h"
#define OPTIM_T double
#define OPTIM_FN(name) name##_d_avx2
#define OPTIM_ATTR CYMLP_AVX2_ATTR
#define OPTIM_SQRT sqrt
#include "_optim.h"
#define OPTIM_T float
#define OPTIM_FN(name) name##_f_avx512
#define OPTIM_ATTR CYMLP_AVX512_ATTR
#define OPTIM_SQRT sqrtf
#include "_optim.h"
#define OPTIM_T double
#define OPTIM_FN(name) name##_d_avx512
#define OPTIM_ATTR CYMLP_AVX512_ATTR
#define OPTIM_SQRT sqrt
#include "_optim.h"
#endif
#undef OPTIM_ONE_ROW

#undef CYMLP_NOFUSE_FN
#undef CYMLP_NOFUSE_BLOCK
#endif /* CYMLP_OPTIM_H */

#ifdef OPTIM_T
/* SGD with momentum on g = scale * (grads + l2 * W) (the batch average and the L2 term):
 *   mu == 0:   W <- W - eta * g                       (the paper's W_new = W_old - lr dE/dW)
 *   classical: v <- mu * v - eta * g;  W <- W + v
 *   Nesterov:  v <- mu * v - eta * g;  W <- W + mu * v - eta * g
 * params, grads, velocity: (size,) */
OPTIM_ATTR CYMLP_NOFUSE_FN void OPTIM_FN(cymlp_sgd_step)(OPTIM_T *params, const OPTIM_T *grads,
                                             OPTIM_T *velocity, ptrdiff_t size,
                                             OPTIM_T eta, OPTIM_T mu, int nesterov,
                                             OPTIM_T scale, OPTIM_T l2) {
    CYMLP_NOFUSE_BLOCK
    if (mu == 0) {
        for (ptrdiff_t k = 0; k < size; ++k)
            params[k] -= eta * (scale * (grads[k] + l2 * params[k]));
        return;
    }
    for (ptrdiff_t k = 0; k < size; ++k) {
        OPTIM_T g = scale * (grads[k] + l2 * params[k]);
        OPTIM_T v = mu * velocity[k] - eta * g;
        velocity[k] = v;
        params[k] += nesterov ? mu * v - eta * g : v;
    }
}

#if OPTIM_ONE_ROW
/* Plain SGD (mu == 0, l2 == 0) on one weight row of a one-row batch, whose gradient is
 * a_i d: W_i <- W_i - eta * (scale * (a_i d)), the bits cymlp_sgd_step gives on the
 * gradient row a_i d.  params_row, d: (n,) */
CYMLP_NOFUSE_FN void OPTIM_ROW_FN(cymlp_sgd_outer_row)(OPTIM_T *params_row, OPTIM_T a_i,
                                                  const OPTIM_T *d, ptrdiff_t n,
                                                  OPTIM_T eta, OPTIM_T scale) {
    CYMLP_NOFUSE_BLOCK
    for (ptrdiff_t j = 0; j < n; ++j)
        params_row[j] -= eta * (scale * (a_i * d[j]));
}
#undef OPTIM_ROW_FN
#endif

/* Adam (Kingma & Ba) on g = scale * (grads + l2 * W), with the caller's rounded
 * constants: step = lr sqrt(1 - b2^t) / (1 - b1^t), c1 = 1 - b1, c2 = 1 - b2, and
 * AdamW's decoupled weight decay (Loshchilov & Hutter) decay = 1 - lr * weight_decay
 * (1 for Adam: multiplying by 1 is exact, so Adam's bits do not change):
 *   m <- b1 m + c1 g;  v <- b2 v + c2 g^2;  W <- decay W - step m / (sqrt(v) + eps)
 * params, grads, m, v: (size,) */
OPTIM_ATTR CYMLP_NOFUSE_FN void OPTIM_FN(cymlp_adam_step)(OPTIM_T *params, const OPTIM_T *grads,
                                              OPTIM_T *m, OPTIM_T *v, ptrdiff_t size,
                                              OPTIM_T step, OPTIM_T b1, OPTIM_T b2,
                                              OPTIM_T c1, OPTIM_T c2, OPTIM_T eps,
                                              OPTIM_T scale, OPTIM_T l2, OPTIM_T decay) {
    CYMLP_NOFUSE_BLOCK
    for (ptrdiff_t k = 0; k < size; ++k) {
        OPTIM_T g = scale * (grads[k] + l2 * params[k]);
        OPTIM_T mk = b1 * m[k] + c1 * g;
        OPTIM_T vk = b2 * v[k] + c2 * g * g;
        m[k] = mk;
        v[k] = vk;
        params[k] = decay * params[k] - step * mk / (OPTIM_SQRT(vk) + eps);
    }
}

#undef OPTIM_T
#undef OPTIM_FN
#undef OPTIM_ATTR
#undef OPTIM_SQRT
#endif /* OPTIM_T */
