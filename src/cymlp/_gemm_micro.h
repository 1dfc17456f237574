/* One micro-kernel of a _gemm_impl.h instantiation, included with MICRO_NAME (symbol)
 * and MICRO_NR (columns it computes: GEMM_NR, or half of it for the ragged last sliver
 * of B, e.g. the 4 columns left of N = 100 in 16-wide slivers) defined (not for
 * GEMM_NV_MICRO instantiations, whose micro_nv in _gemm_impl.h is this kernel for a
 * number of vectors chosen at run time).
 *
 * micro: t (MR,MICRO_NR) = op(A)[:mr, :kc] . b (kc, first MICRO_NR of each packed row of
 * GEMM_NR); then C[:mr,:nr] (+)= t.
 * A is read in place or packed by the caller: element (r,p) is a[r*rsa + p*csa] (the
 * rows of a tile stay in L1 across the slivers of B). Rows r >= mr alias row 0, so nothing past the matrix is read; they are not stored.
 * idx: NULL (every p in [0, kc)), or the nidx values of p, ascending, at which some row
 * of the tile is not zero (see nonzero): the skipped steps would add exactly 0 to every
 * sum when B is finite, so both give the same bits (0 * inf or 0 * NaN in B would have
 * made a NaN; weights get there only after training diverged, which the loss shows). */
GEMM_ATTR static void GEMM_FN_EXPAND(MICRO_NAME)(size_t kc, const GEMM_T *a, ptrdiff_t rsa, ptrdiff_t csa,
                                     const GEMM_T *restrict b, const unsigned short *idx,
                                     size_t nidx, GEMM_T *restrict c, size_t ldc,
                                     int accumulate, size_t mr, size_t nr)
{
    const GEMM_T *ar[GEMM_MR];
    CYMLP_UNROLL
    for (int r = 0; r < GEMM_MR; ++r) ar[r] = a + ((size_t)r < mr ? r : 0) * rsa;
#if GEMM_VB
    typedef GEMM_T vec __attribute__((vector_size(GEMM_VB)));
    enum { V = GEMM_VB / sizeof(GEMM_T), NV = MICRO_NR / V };
    vec t[GEMM_MR][NV];
    CYMLP_UNROLL
    for (int r = 0; r < GEMM_MR; ++r)
        CYMLP_UNROLL
        for (int v = 0; v < NV; ++v) t[r][v] = (vec){0};
#define MICRO_STEP(p)                                                                   \
    do {                                                                                \
        vec bv[NV];                                                                     \
        CYMLP_UNROLL                                                                    \
        for (int v = 0; v < NV; ++v) memcpy(&bv[v], b + (p) * GEMM_NR + v * V, sizeof(vec)); \
        const ptrdiff_t off = (ptrdiff_t)(p) * csa;                                     \
        CYMLP_UNROLL                                                                    \
        for (int r = 0; r < GEMM_MR; ++r) {                                             \
            const GEMM_T av = ar[r][off];                                               \
            CYMLP_UNROLL                                                                \
            for (int v = 0; v < NV; ++v) t[r][v] += av * bv[v];                         \
        }                                                                               \
    } while (0)
    if (idx)
        for (size_t q = 0; q < nidx; ++q) MICRO_STEP((size_t)idx[q]);
    else
        for (size_t p = 0; p < kc; ++p) MICRO_STEP(p);
#undef MICRO_STEP
    if (mr == GEMM_MR && nr == MICRO_NR) {
        CYMLP_UNROLL
        for (int r = 0; r < GEMM_MR; ++r)
            CYMLP_UNROLL
            for (int v = 0; v < NV; ++v) {
                GEMM_T *cp = c + r * ldc + v * V;
                if (accumulate) {
                    vec old;
                    memcpy(&old, cp, sizeof(vec));
                    t[r][v] += old;
                }
                memcpy(cp, &t[r][v], sizeof(vec));
            }
        return;
    }
    GEMM_T buf[GEMM_MR][MICRO_NR];
    CYMLP_UNROLL
    for (int r = 0; r < GEMM_MR; ++r)
        CYMLP_UNROLL
        for (int v = 0; v < NV; ++v) memcpy(&buf[r][v * V], &t[r][v], sizeof(vec));
#else
    GEMM_T buf[GEMM_MR][MICRO_NR];
    for (int r = 0; r < GEMM_MR; ++r)
        for (int j = 0; j < MICRO_NR; ++j) buf[r][j] = 0;
    for (size_t q = 0; q < (idx ? nidx : kc); ++q) {
        const size_t p = idx ? idx[q] : q;
        for (int r = 0; r < GEMM_MR; ++r) {
            const GEMM_T av = ar[r][(ptrdiff_t)p * csa];
            for (int j = 0; j < MICRO_NR; ++j) buf[r][j] += av * b[p * GEMM_NR + j];
        }
    }
#endif
    for (size_t r = 0; r < mr; ++r)
        for (size_t j = 0; j < nr; ++j)
            c[r * ldc + j] = accumulate ? c[r * ldc + j] + buf[r][j] : buf[r][j];
}

#undef MICRO_NAME
#undef MICRO_NR
