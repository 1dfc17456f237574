/* One instantiation of the packed, register-tiled matrix product.
 *
 * Included by _gemm.h once per (scalar type, SIMD variant) with these macros set:
 *   GEMM_T     scalar type (float or double)
 *   GEMM_FN(x) name of symbol x for this instantiation (token pasting)
 *   GEMM_ATTR  function attributes (e.g. __attribute__((target("avx2,fma"))), or empty)
 *   GEMM_VB    vector width in bytes for GCC/Clang vector extensions; 0 = plain C
 *   GEMM_MR    rows of C per micro-tile
 *   GEMM_NR    columns of C per micro-tile (a multiple of GEMM_VB / sizeof(GEMM_T))
 *
 * C (M,N) = [C +] op(A) (M,K) . op(B) (K,N), where element (i,p) of op(A) is
 * A[i*rsa + p*csa] and element (p,j) of op(B) is B[p*rsb + j*csb]; strides make the
 * three products of training (A.W, delta.W^T, A^T.delta) one routine.
 *
 * Blocking (BLIS style): B is packed into KC x NR slivers shared by all threads, A is
 * read in place (one unit stride in every product of training, so a tile's MR rows are
 * a few cache lines that stay in L1 across the slivers), and the micro-kernel keeps an
 * MR x NR tile of C in registers for the whole KC loop. Every element of C
 * is summed over p in the same order whatever the thread count, so results do not
 * depend on the number of threads.
 */

#define MICRO_NAME micro
#define MICRO_NR GEMM_NR
#include "_gemm_micro.h"
#if GEMM_VB && GEMM_NR * GEMM_T_SIZE >= 2 * GEMM_VB
#define GEMM_HALF 1
#define MICRO_NAME micro_half
#define MICRO_NR (GEMM_NR / 2)
#include "_gemm_micro.h"
#else
#define GEMM_HALF 0
#endif

/* pack_b: rows [p0, p0+kc) x cols [j0, j0+nc) of op(B) into NR-column slivers, zero-padded */
GEMM_ATTR static void GEMM_FN(pack_b)(size_t kc, size_t nc, const GEMM_T *B, ptrdiff_t rsb,
                                      ptrdiff_t csb, GEMM_T *restrict bp)
{
    for (size_t j = 0; j < nc; j += GEMM_NR) {
        const size_t nr = nc - j < GEMM_NR ? nc - j : GEMM_NR;
        for (size_t p = 0; p < kc; ++p) {
            const GEMM_T *src = B + (ptrdiff_t)p * rsb + (ptrdiff_t)j * csb;
            size_t c = 0;
#if GEMM_VB
            if (csb == 1 && nr == GEMM_NR) { /* whole sliver: vector copies, no memcpy call */
                typedef GEMM_T vec __attribute__((vector_size(GEMM_VB)));
                enum { V = GEMM_VB / sizeof(GEMM_T) };
                CYMLP_UNROLL
                for (int v = 0; v < GEMM_NR / V; ++v) {
                    vec t;
                    memcpy(&t, src + v * V, sizeof(vec));
                    memcpy(bp + v * V, &t, sizeof(vec));
                }
                bp += GEMM_NR;
                continue;
            }
#endif
            if (csb == 1)
                for (; c < nr; ++c) bp[c] = src[c];
            else
                for (; c < nr; ++c) bp[c] = src[(ptrdiff_t)c * csb];
            for (; c < GEMM_NR; ++c) bp[c] = 0;
            bp += GEMM_NR;
        }
    }
}

/* small: the same sums for a few rows of C without packing (a single-sample predict or
 * SGD step). Each element is summed over p in the same order, from zero per KC block,
 * as the micro-kernel does, so a row gets the same bits whichever path computes it;
 * zeros of A (most MNIST pixels) are skipped, which adds exactly nothing. */
GEMM_ATTR static void GEMM_FN(small)(size_t M, size_t N, size_t K, const GEMM_T *A,
                                     ptrdiff_t rsa, ptrdiff_t csa, const GEMM_T *B,
                                     ptrdiff_t rsb, ptrdiff_t csb, GEMM_T *C, size_t ldc,
                                     int accumulate)
{
    GEMM_T t[CYMLP_GEMM_NC];
    for (size_t i = 0; i < M; ++i) {
        GEMM_T *c = C + i * ldc;
        for (size_t jc = 0; jc < N; jc += CYMLP_GEMM_NC) {
            const size_t nc = N - jc < CYMLP_GEMM_NC ? N - jc : CYMLP_GEMM_NC;
            for (size_t pc = 0; pc < K; pc += CYMLP_GEMM_KC) {
                const size_t kc = K - pc < CYMLP_GEMM_KC ? K - pc : CYMLP_GEMM_KC;
                for (size_t j = 0; j < nc; ++j) t[j] = 0;
                for (size_t p = pc; p < pc + kc; ++p) {
                    const GEMM_T a = A[(ptrdiff_t)i * rsa + (ptrdiff_t)p * csa];
                    if (a == 0) continue;
                    const GEMM_T *b = B + (ptrdiff_t)p * rsb + (ptrdiff_t)jc * csb;
                    if (csb == 1)
                        for (size_t j = 0; j < nc; ++j) t[j] += a * b[j];
                    else
                        for (size_t j = 0; j < nc; ++j) t[j] += a * b[(ptrdiff_t)j * csb];
                }
                GEMM_T *cj = c + jc;
                if (accumulate || pc > 0)
                    for (size_t j = 0; j < nc; ++j) cj[j] += t[j];
                else
                    for (size_t j = 0; j < nc; ++j) cj[j] = t[j];
            }
        }
    }
}

GEMM_ATTR static void GEMM_FN(gemm)(size_t M, size_t N, size_t K, const GEMM_T *A,
                                    ptrdiff_t rsa, ptrdiff_t csa, const GEMM_T *B,
                                    ptrdiff_t rsb, ptrdiff_t csb, GEMM_T *C, size_t ldc,
                                    int accumulate, GEMM_T *work, int nthreads)
{
    if (M == 0 || N == 0) return;
    if (K == 0) {
        if (!accumulate)
            for (size_t i = 0; i < M; ++i) memset(C + i * ldc, 0, N * sizeof(GEMM_T));
        return;
    }
    if (M <= CYMLP_GEMM_SMALL_M) {
        GEMM_FN(small)(M, N, K, A, rsa, csa, B, rsb, csb, C, ldc, accumulate);
        return;
    }
    /* Split M into blocks of whole micro-tiles, a multiple of the thread count. */
    size_t nblocks = (M + CYMLP_GEMM_MC - 1) / CYMLP_GEMM_MC;
    if (nthreads < 1) nthreads = 1;
    if ((double)M * N * K < CYMLP_GEMM_PARALLEL_MIN) nthreads = 1;
    nblocks = (nblocks + nthreads - 1) / nthreads * nthreads;
    size_t mc = (M + nblocks - 1) / nblocks;
    mc = (mc + GEMM_MR - 1) / GEMM_MR * GEMM_MR;
    nblocks = (M + mc - 1) / mc;
    GEMM_T *bpack = work;
    (void)nthreads;

#ifdef _OPENMP
#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
#endif
    {
        const unsigned long fp_mode = cymlp_fp_enter(); /* per thread, see _gemm.h */
        for (size_t jc = 0; jc < N; jc += CYMLP_GEMM_NC) {
            const size_t nc = N - jc < CYMLP_GEMM_NC ? N - jc : CYMLP_GEMM_NC;
            const size_t nslivers = (nc + GEMM_NR - 1) / GEMM_NR;
            for (size_t pc = 0; pc < K; pc += CYMLP_GEMM_KC) {
                const size_t kc = K - pc < CYMLP_GEMM_KC ? K - pc : CYMLP_GEMM_KC;
                const int acc = accumulate || pc > 0;
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
                for (ptrdiff_t s = 0; s < (ptrdiff_t)nslivers; ++s) { /* signed for MSVC */
                    const size_t j = (size_t)s * GEMM_NR;
                    GEMM_FN(pack_b)(kc, nc - j < GEMM_NR ? nc - j : GEMM_NR,
                                    B + (ptrdiff_t)pc * rsb + (ptrdiff_t)(jc + j) * csb, rsb, csb,
                                    bpack + j * kc);
                }
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
                for (ptrdiff_t blk = 0; blk < (ptrdiff_t)nblocks; ++blk) {
                    const size_t ic = (size_t)blk * mc;
                    const size_t mcb = M - ic < mc ? M - ic : mc;
                    /* a row tile of A stays in L1 while it meets every sliver of B */
                    for (size_t i = 0; i < mcb; i += GEMM_MR) {
                        const size_t mr = mcb - i < GEMM_MR ? mcb - i : GEMM_MR;
                        const GEMM_T *a = A + (ptrdiff_t)(ic + i) * rsa + (ptrdiff_t)pc * csa;
                        for (size_t j = 0; j < nc; j += GEMM_NR) {
                            const size_t nr = nc - j < GEMM_NR ? nc - j : GEMM_NR;
#if GEMM_HALF
                            if (nr <= GEMM_NR / 2) { /* ragged edge: half the FMAs */
                                GEMM_FN(micro_half)(kc, a, rsa, csa, bpack + j * kc,
                                                    C + (ic + i) * ldc + jc + j, ldc, acc, mr, nr);
                                continue;
                            }
#endif
                            GEMM_FN(micro)(kc, a, rsa, csa, bpack + j * kc,
                                           C + (ic + i) * ldc + jc + j, ldc, acc, mr, nr);
                        }
                    }
                }
            }
        }
        cymlp_fp_leave(fp_mode);
    }
}

#undef GEMM_T
#undef GEMM_FN
#undef GEMM_ATTR
#undef GEMM_VB
#undef GEMM_MR
#undef GEMM_NR
#undef GEMM_T_SIZE
#undef GEMM_HALF
