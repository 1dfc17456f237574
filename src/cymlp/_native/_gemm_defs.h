/* _gemm_defs.h: what every instantiation of the matrix product (_gemm_impl.h) and its
 * callers share: the blocking and the sizes of packed matrices and of scratch. */
#ifndef CYMLP_GEMM_DEFS_H
#define CYMLP_GEMM_DEFS_H

#include <stddef.h>

/* Blocking shared by every variant (M blocks are rounded to whole micro-tiles). */
#define CYMLP_GEMM_KC 256
#define CYMLP_GEMM_NC 1024
#define CYMLP_GEMM_MC 192
#define CYMLP_GEMM_PARALLEL_MIN 2.0e5 /* M*N*K below this runs on one thread */
#define CYMLP_GEMM_SMALL_M 2             /* rows of C up to which nothing is packed */

/* gemm's flags: ACCUMULATE, C += op(A) . op(B) (else C =); DENSE_A, op(A) has few zeros:
 * do not look for the steps where a tile's rows of A are all zero (the scan costs 5-7%
 * of a product on dense inputs and finds nothing to skip). Either way each element of
 * C is the same sum, bit for bit: a skipped step adds exactly zero. */
#define CYMLP_GEMM_ACCUMULATE 1
#define CYMLP_GEMM_DENSE_A 2

/* Elements of a packed K x N matrix (gemm's bpacked, filled by the pack_rows functions):
 * N rounded up to a whole number of micro-tiles of every variant (64 columns, and 24 for
 * AVX2 float), so one size fits them all. */
static inline size_t cymlp_npad(size_t N)
{
    const size_t n64 = (N + 63) / 64 * 64, n24 = (N + 23) / 24 * 24;
    return n64 > n24 ? n64 : n24;
}
static inline size_t cymlp_packed_size(size_t K, size_t N) { return K * cymlp_npad(N); }

/* Scratch of a product with N <= max_n columns (cymlp_gemm_work_size), per thread: a
 * packed B panel (KC x N rounded up to the widest micro-tile), a packed block of A
 * (up to MC rows rounded up to a tile, x KC) ... */
static inline size_t cymlp_gemm_b_panel(size_t max_n)
{
    return (size_t)CYMLP_GEMM_KC * (max_n < CYMLP_GEMM_NC ? cymlp_npad(max_n) : CYMLP_GEMM_NC);
}
static inline size_t cymlp_gemm_a_block(void) { return (size_t)(CYMLP_GEMM_MC + 16) * CYMLP_GEMM_KC; }
/* ... and, after them, each row tile's list of non-zero steps (up to KC unsigned shorts,
 * + 16 for whole-vector stores, per tile; tiles have at least 4 rows), counted in
 * elements of 4 bytes */
#define CYMLP_GEMM_MAX_TILES ((CYMLP_GEMM_MC + 16) / 4)
#define CYMLP_GEMM_IDX_STRIDE (CYMLP_GEMM_KC + 16)
/* (the steps p < KC of a block are stored as unsigned shorts) */
typedef char cymlp_gemm_kc_fits_ushort[CYMLP_GEMM_IDX_STRIDE <= 65536 ? 1 : -1];
static inline size_t cymlp_gemm_idx_block(void)
{
    return (size_t)CYMLP_GEMM_MAX_TILES * CYMLP_GEMM_IDX_STRIDE * sizeof(unsigned short) / 4;
}
static inline size_t cymlp_gemm_work_size(int nthreads, size_t max_n)
{
    return (size_t)(nthreads < 1 ? 1 : nthreads)
           * (cymlp_gemm_b_panel(max_n) + cymlp_gemm_a_block() + cymlp_gemm_idx_block());
}

#endif /* CYMLP_GEMM_DEFS_H */
