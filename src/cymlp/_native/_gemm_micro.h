/* _gemm_micro.h: the micro-kernel of a _gemm_impl.h instantiation. A part of that
 * template: it takes the same parameters (see the top of _gemm_impl.h), which includes
 * it once per instantiation.
 *
 * t (mr, nr) = op(A)[:mr, :kc] . b (kc x nr, the first nr columns of a packed sliver
 * of GEMM_NR); then C[:mr, :nr] = t + add, add[r * ldadd + j] (add NULL: 0): C itself
 * (ldadd = ldc) when accumulating, or the bias row (ldadd = 0) on the first block of a
 * product with a bias (see _gemm_epi.h). The tile of C stays in registers for the whole
 * loop over p.
 * A is read in place or packed by the caller: element (r,p) is a[r*rsa + p*csa] (the
 * rows of a tile stay in L1 across the slivers of B). Rows r >= mr alias row 0, so
 * nothing past the matrix is read; they are not stored.
 * idx: NULL (every p in [0, kc)), or the nidx values of p, ascending, at which some row
 * of the tile is not zero (see nonzero): the skipped steps would add exactly 0 to every
 * sum when B is finite, so both give the same bits (0 * inf or 0 * NaN in B would have
 * made a NaN; weights get there only after training diverged, which the loss shows).
 *
 * Vector builds: micro_nv, for nv vectors of columns, the last of them narrowed to
 * tail lanes (nv and tail constants where it is inlined: _gemm_impl.h makes micro,
 * micro_half or a dispatch on nv and tail of it). Plain C
 * (GEMM_VB == 0): micro, a whole sliver. */

#include <stddef.h>
#include <string.h>
#include "_gemm_params.h" /* the parameters, checked; restrict, CYMLP_UNROLL */

#if GEMM_VB
GEMM_ATTR static inline __attribute__((always_inline)) void
GEMM_FN(micro_nv)(const int nv, const int tail, size_t kc, const GEMM_T *a, ptrdiff_t rsa,
                  ptrdiff_t csa, const GEMM_T *restrict b, const unsigned short *idx,
                  size_t nidx, GEMM_T *c, size_t ldc, const GEMM_T *add, size_t ldadd,
                  size_t mr, size_t nr)
{
    typedef GEMM_T vec __attribute__((vector_size(GEMM_VB)));
    enum { V = GEMM_VB / sizeof(GEMM_T), NVMAX = GEMM_NR / V };
    /* tail: the lanes of the last of the nv vectors, V or (GEMM_TAIL) V / 2 or V / 4:
     * a narrower vector for a ragged last few columns, as many FMAs per lane */
    const int nfull = tail == V ? nv : nv - 1;
#if GEMM_TAIL
    typedef GEMM_T hvec __attribute__((vector_size(GEMM_VB / 2)));
    typedef GEMM_T qvec __attribute__((vector_size(GEMM_VB / 4)));
    hvec th[GEMM_MR];
    qvec tq[GEMM_MR];
    CYMLP_UNROLL
    for (int r = 0; r < GEMM_MR; ++r) {
        th[r] = (hvec){0};
        tq[r] = (qvec){0};
    }
#define TAIL_STEP(bp, r, av)                                                            \
    do {                                                                                \
        if (tail == V / 2) {                                                            \
            hvec bh;                                                                    \
            memcpy(&bh, (bp) + nfull * V, sizeof(hvec));                                \
            th[r] += (av) * bh;                                                         \
        } else if (tail == V / 4) {                                                     \
            qvec bq;                                                                    \
            memcpy(&bq, (bp) + nfull * V, sizeof(qvec));                                \
            tq[r] += (av) * bq;                                                         \
        }                                                                               \
    } while (0)
#else
#define TAIL_STEP(bp, r, av) ((void)0)
#endif
    const GEMM_T *ar[GEMM_MR];
    CYMLP_UNROLL
    for (int r = 0; r < GEMM_MR; ++r) ar[r] = a + ((size_t)r < mr ? r : 0) * rsa;
    vec t[GEMM_MR][NVMAX];
    CYMLP_UNROLL
    for (int r = 0; r < GEMM_MR; ++r)
        CYMLP_UNROLL
        for (int v = 0; v < nfull; ++v) t[r][v] = (vec){0};
#define NV_STEP(p)                                                                  \
    do {                                                                                \
        vec bv[NVMAX];                                                                  \
        const GEMM_T *bp = b + (p) * GEMM_NR;                                           \
        CYMLP_UNROLL                                                                    \
        for (int v = 0; v < nfull; ++v) memcpy(&bv[v], bp + v * V, sizeof(vec));       \
        const ptrdiff_t off = (ptrdiff_t)(p) * csa;                                     \
        CYMLP_UNROLL                                                                    \
        for (int r = 0; r < GEMM_MR; ++r) {                                             \
            const GEMM_T av = ar[r][off];                                               \
            CYMLP_UNROLL                                                                \
            for (int v = 0; v < nfull; ++v) t[r][v] += av * bv[v];                      \
            TAIL_STEP(bp, r, av);                                                       \
        }                                                                               \
    } while (0)
    if (idx)
        for (size_t q = 0; q < nidx; ++q) NV_STEP((size_t)idx[q]);
    else
        for (size_t p = 0; p < kc; ++p) NV_STEP(p);
#undef NV_STEP
#undef TAIL_STEP
    CYMLP_UNROLL
    for (int r = 0; r < GEMM_MR; ++r) {
        if ((size_t)r >= mr) break;
        GEMM_T *cr = c + (size_t)r * ldc;
        const GEMM_T *ar_ = add ? add + (size_t)r * ldadd : NULL;
#if GEMM_TAIL
        if (tail != V)
            for (int l = 0; l < tail && (size_t)(nfull * V + l) < nr; ++l) {
                const GEMM_T x = tail == V / 2 ? th[r][l] : tq[r][l % (V / 4)];
                cr[nfull * V + l] = add ? ar_[nfull * V + l] + x : x;
            }
#endif
        CYMLP_UNROLL
        for (int v = 0; v < nfull; ++v) {
            if ((size_t)(v + 1) * V <= nr) {
                vec out = t[r][v];
                if (add) {
                    vec old;
                    memcpy(&old, ar_ + v * V, sizeof(vec));
                    out += old;
                }
                memcpy(cr + v * V, &out, sizeof(vec));
            } else {
                for (int l = 0; l < V && (size_t)(v * V + l) < nr; ++l)
                    cr[v * V + l] = add ? ar_[v * V + l] + t[r][v][l] : t[r][v][l];
            }
        }
    }
}
#else
GEMM_ATTR CYMLP_MAYBE_UNUSED static void
GEMM_FN(micro)(size_t kc, const GEMM_T *a, ptrdiff_t rsa, ptrdiff_t csa, const GEMM_T *restrict b,
               const unsigned short *idx, size_t nidx, GEMM_T *c, size_t ldc, const GEMM_T *add,
               size_t ldadd, size_t mr, size_t nr)
{
    const GEMM_T *ar[GEMM_MR];
    for (int r = 0; r < GEMM_MR; ++r) ar[r] = a + ((size_t)r < mr ? r : 0) * rsa;
    GEMM_T buf[GEMM_MR][GEMM_NR];
    for (int r = 0; r < GEMM_MR; ++r)
        for (int j = 0; j < GEMM_NR; ++j) buf[r][j] = 0;
    for (size_t q = 0; q < (idx ? nidx : kc); ++q) {
        const size_t p = idx ? idx[q] : q;
        for (int r = 0; r < GEMM_MR; ++r) {
            const GEMM_T av = ar[r][(ptrdiff_t)p * csa];
            for (int j = 0; j < GEMM_NR; ++j) buf[r][j] += av * b[p * GEMM_NR + j];
        }
    }
    for (size_t r = 0; r < mr; ++r)
        for (size_t j = 0; j < nr; ++j)
            c[r * ldc + j] = add ? add[r * ldadd + j] + buf[r][j] : buf[r][j];
}
#endif
