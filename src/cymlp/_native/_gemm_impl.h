/* _gemm_impl.h: one instantiation of the packed, register-tiled matrix product.
 *
 * A template, not a normal header (no include guard): _gemm.h includes it once per
 * (scalar type, SIMD variant) with these parameter macros defined, and it undefines
 * them at its end. Required (#error when missing, see _gemm_params.h):
 *   GEMM_T      scalar type (float or double)
 *   GEMM_T_SIZE sizeof(GEMM_T), for the preprocessor (4 or 8)
 *   GEMM_FN(x)  name of symbol x for this instantiation (token pasting)
 *   GEMM_ATTR   function attributes (e.g. CYMLP_AVX2_ATTR from _target.h), or empty
 *   GEMM_VB     vector width in bytes for GCC/Clang vector extensions (16, 32, 64);
 *               0 = plain C
 *   GEMM_MR     rows of C per micro-tile
 *   GEMM_NR     columns of C per micro-tile (a multiple of GEMM_VB / sizeof(GEMM_T),
 *               dividing 64, or 24: cymlp_npad's packed widths)
 * Optional:
 *   GEMM_KC       steps per block of the sum (default and at most CYMLP_GEMM_KC)
 *   GEMM_NV_MICRO 1: the micro-kernel dispatches on the vectors a sliver has (default 0)
 *   GEMM_TAIL     1: (with GEMM_NV_MICRO) a ragged last vector of columns may be a half or
 *                 quarter vector (default 0)
 * Its parts _gemm_epi.h (the epilogue) and _gemm_micro.h (the micro-kernel) take the
 * same parameters.
 *
 * C (M,N) = [C +] op(A) (M,K) . op(B) (K,N), where element (i,p) of op(A) is
 * A[i*rsa + p*csa] and element (p,j) of op(B) is B[p*rsb + j*csb]; strides make the
 * three products of training (A.W, delta.W^T, A^T.delta) one routine.
 *
 * Blocking (BLIS style): B is packed into KC x NR slivers shared by all threads (or
 * comes packed already: bpacked, laid out by pack_rows, e.g. weights packed once after
 * their update instead of by every thread in every product that reads them); A is read
 * in place when its rows are contiguous (csa == 1: a tile's MR rows are MR streams the
 * prefetchers follow) and, on AVX-512 and AVX2 float, when it is the transpose of a
 * row-major matrix (rsa == 1: a step's MR values share a line; see nonzero_cols), else each
 * thread packs its block of A into MR-row tiles; the
 * micro-kernel keeps an MR x NR tile of C in registers for the whole KC loop. Every element of C
 * is summed over p in the same order whatever the thread count, so results do not
 * depend on the number of threads.
 */

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "_gemm_params.h" /* checks the parameters above; defaults, GEMM_AVX512, GEMM_AVX2 */
#include "_threads.h"     /* cymlp_parallel_for, CYMLP_THREADS_PARALLEL */

#include "_gemm_epi.h"   /* the CYMLP_OP_* codes; bias, op on the way out of a tile */
#include "_gemm_micro.h" /* micro_nv (vector builds) or micro (plain C) */
#if GEMM_VB && GEMM_NV_MICRO
/* GEMM_NV_MICRO: micro dispatches micro_nv on the nv vectors of columns a sliver really
 * has, so a ragged last sliver of wide slivers (36 of 100 columns in 64-column slivers)
 * costs its own vectors only (see _gemm.h's AVX-512 float instantiation). */
GEMM_ATTR static void GEMM_FN(micro)(size_t kc, const GEMM_T *a, ptrdiff_t rsa, ptrdiff_t csa,
                                     const GEMM_T *restrict b, const unsigned short *idx,
                                     size_t nidx, GEMM_T *c, size_t ldc, const GEMM_T *add,
                                     size_t ldadd, size_t mr, size_t nr)
{
    enum { V = GEMM_VB / sizeof(GEMM_T) };
    _Static_assert(GEMM_NR / V <= 8 && GEMM_NR / V != 5 && GEMM_NR / V != 6
                       && GEMM_NR / V != 7, "slivers of 1-4 or 8 vectors");
#if GEMM_TAIL
    /* the last vector's lanes: a ragged last 1-4 (1-8) columns take a quarter (half)
     * vector, which costs half the FMA slots of a whole one where the 512-bit FMA is
     * two 256-bit halves (AMD Zen 4) and the same elsewhere */
    const size_t last = nr - (nr - 1) / V * V;
    const int tail = last <= V / 4 ? V / 4 : last <= V / 2 ? V / 2 : V;
#define NV_CASE(k)                                                                  \
    case k:                                                                             \
        if (tail == V / 4)                                                              \
            GEMM_FN(micro_nv)(k, V / 4, kc, a, rsa, csa, b, idx, nidx, c, ldc, add, ldadd, \
                              mr, nr);                                                  \
        else if (tail == V / 2)                                                         \
            GEMM_FN(micro_nv)(k, V / 2, kc, a, rsa, csa, b, idx, nidx, c, ldc, add, ldadd, \
                              mr, nr);                                                  \
        else                                                                            \
            GEMM_FN(micro_nv)(k, V, kc, a, rsa, csa, b, idx, nidx, c, ldc, add, ldadd, mr, \
                              nr);                                                      \
        break
#else
#define NV_CASE(k)                                                                  \
    case k:                                                                             \
        GEMM_FN(micro_nv)(k, V, kc, a, rsa, csa, b, idx, nidx, c, ldc, add, ldadd, mr, nr); \
        break
#endif
#define SLIVER_NV (GEMM_NR * GEMM_T_SIZE / GEMM_VB) /* vectors of a whole sliver */
    switch ((nr + V - 1) / V) {
#if SLIVER_NV > 1
        NV_CASE(1);
#endif
#if SLIVER_NV > 2
        NV_CASE(2);
#endif
#if SLIVER_NV > 3
        NV_CASE(3);
#endif
#if SLIVER_NV > 4
        NV_CASE(4);
        NV_CASE(5);
        NV_CASE(6);
        NV_CASE(7);
#endif
    default:
        NV_CASE(SLIVER_NV);
    }
#undef SLIVER_NV
#undef NV_CASE
}
#define GEMM_HALF 0
#elif GEMM_VB
/* micro: a whole sliver; micro_half: half of one, for a ragged last sliver of B (e.g.
 * the 4 columns left of N = 100 in 16-wide slivers), half the FMAs */
GEMM_ATTR static void GEMM_FN(micro)(size_t kc, const GEMM_T *a, ptrdiff_t rsa, ptrdiff_t csa,
                                     const GEMM_T *restrict b, const unsigned short *idx,
                                     size_t nidx, GEMM_T *c, size_t ldc, const GEMM_T *add,
                                     size_t ldadd, size_t mr, size_t nr)
{
    GEMM_FN(micro_nv)(GEMM_NR * GEMM_T_SIZE / GEMM_VB, GEMM_VB / GEMM_T_SIZE, kc, a, rsa, csa,
                      b, idx, nidx, c, ldc, add, ldadd, mr, nr);
}
#if GEMM_NR * GEMM_T_SIZE >= 2 * GEMM_VB
#define GEMM_HALF 1
GEMM_ATTR static void GEMM_FN(micro_half)(size_t kc, const GEMM_T *a, ptrdiff_t rsa,
                                          ptrdiff_t csa, const GEMM_T *restrict b,
                                          const unsigned short *idx, size_t nidx,
                                          GEMM_T *c, size_t ldc, const GEMM_T *add,
                                          size_t ldadd, size_t mr, size_t nr)
{
    GEMM_FN(micro_nv)(GEMM_NR * GEMM_T_SIZE / GEMM_VB / 2, GEMM_VB / GEMM_T_SIZE, kc, a, rsa,
                      csa, b, idx, nidx, c, ldc, add, ldadd, mr, nr);
}
#else
#define GEMM_HALF 0
#endif
#else
#define GEMM_HALF 0
#endif


/* pack_a: rows [0, mc) x cols [0, kc) of op(A) into MR-row tiles (tile i at ap + i * kc,
 * element (r, p) at [p * MR + r]; a last partial tile leaves its missing rows unwritten:
 * the micro-kernel reads rows past mr from row 0). Used when A's columns are far
 * apart (csa != 1, e.g. A^T in the weight gradient a^T . delta) and nonzero_cols does
 * not apply: read in place, each step of p would touch a new cache line.
 * Also lists each tile's non-zero steps, as nonzero does: tile t's at
 * idx + t * CYMLP_GEMM_IDX_STRIDE, their count in cnt[t]. */
GEMM_ATTR static void GEMM_FN(pack_a)(size_t mc, size_t kc, const GEMM_T *A, ptrdiff_t rsa,
                                      ptrdiff_t csa, GEMM_T *restrict ap,
                                      unsigned short *restrict idx, size_t *restrict cnt)
{
    for (size_t i = 0; i < mc; i += GEMM_MR, ap += GEMM_MR * kc, idx += CYMLP_GEMM_IDX_STRIDE) {
        const size_t mr = mc - i < GEMM_MR ? mc - i : GEMM_MR;
        const GEMM_T *src = A + (ptrdiff_t)i * rsa;
        size_t n = 0;
#if GEMM_AVX512
        if (rsa == 1) { /* A^T of a row-major A: a step's mr values are contiguous */
            const GEMM_MASK m = (GEMM_MASK)((1u << mr) - 1);
            for (size_t p = 0; p < kc; ++p) {
                const __typeof__(GEMM_MASKZ_LOAD(m, src)) v =
                    GEMM_MASKZ_LOAD(m, src + (ptrdiff_t)p * csa);
                GEMM_MASK_STORE(ap + p * GEMM_MR, m, v);
                idx[n] = (unsigned short)p;
                n += GEMM_CMPNEQ(v) != 0;
            }
            *cnt++ = n;
            continue;
        }
#endif
        for (size_t p = 0; p < kc; ++p) {
            int any = 0;
            if (mr == GEMM_MR) {
                CYMLP_UNROLL /* fixed trip count: no memcpy call per MR elements */
                for (int r = 0; r < GEMM_MR; ++r) {
                    const GEMM_T v = src[(ptrdiff_t)r * rsa + (ptrdiff_t)p * csa];
                    ap[p * GEMM_MR + r] = v;
                    any |= v != 0;
                }
            } else {
                for (size_t r = 0; r < mr; ++r) {
                    const GEMM_T v = src[(ptrdiff_t)r * rsa + (ptrdiff_t)p * csa];
                    ap[p * GEMM_MR + r] = v;
                    any |= v != 0;
                }
            }
            idx[n] = (unsigned short)p;
            n += (size_t)any;
        }
        *cnt++ = n;
    }
}

/* GEMM_SPARSE: a tile with n of its kc steps not zero skips the others (the micro-kernel
 * reads its list); denser tiles run every step, the list unused */
#define GEMM_SPARSE(n, kc) ((n) < (kc) - (kc) / 8)

#if GEMM_AVX2
/* AVX2 has no compress instruction: a tile's steps are collected as bits, 64 steps to a
 * word (words[k] bit b: step 64 k + b), counted, and listed only when the list will be
 * read (GEMM_SPARSE), a bit scan per set bit. */
enum { GEMM_FN(nwords) = (GEMM_KC + 63) / 64 };

static inline __attribute__((always_inline)) size_t GEMM_FN(popcount64)(uint64_t w)
{ /* (popcnt is not part of AVX2; GCC makes this one instruction where it is implied) */
    w -= (w >> 1) & 0x5555555555555555ull;
    w = (w & 0x3333333333333333ull) + ((w >> 2) & 0x3333333333333333ull);
    w = (w + (w >> 4)) & 0x0F0F0F0F0F0F0F0Full;
    return (size_t)((w * 0x0101010101010101ull) >> 56);
}

/* words_out: the count of the set bits of words[0:nw); the steps they stand for,
 * ascending, into out when the tile is sparse (kc steps) */
static inline __attribute__((always_inline)) size_t
GEMM_FN(words_out)(const uint64_t *words, size_t nw, size_t kc, unsigned short *restrict out)
{
    size_t n = 0;
    for (size_t k = 0; k < nw; ++k) n += GEMM_FN(popcount64)(words[k]);
    if (!GEMM_SPARSE(n, kc)) return n;
    n = 0;
    for (size_t k = 0; k < nw; ++k)
        for (uint64_t w = words[k]; w; w &= w - 1)
            out[n++] = (unsigned short)(64 * k + (size_t)__builtin_ctzll(w));
    return n;
}
#endif

/* nonzero: the p in [0, kc), ascending, at which some row r < mr of a tile of op(A) is
 * not zero (element (r, p) at a[r * rsa + p]: rows contiguous), into idx (room for
 * CYMLP_GEMM_IDX_STRIDE); returns their count. The micro-kernel skips the other steps,
 * which add exactly 0 (most of an MNIST image is 0, and the images of a tile share
 * their blank borders). (AVX2 leaves idx unwritten when the tile is not GEMM_SPARSE.) */
GEMM_ATTR static size_t GEMM_FN(nonzero)(size_t kc, const GEMM_T *a, ptrdiff_t rsa, size_t mr,
                                         unsigned short *restrict idx)
{
    size_t n = 0, p = 0;
#if GEMM_AVX512
    enum { V = 64 / sizeof(GEMM_T) };
    const __m512i step = _mm512_set1_epi32(V);
    __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (; p < kc; p += V, iota = _mm512_add_epi32(iota, step)) {
        const GEMM_MASK live = kc - p >= V ? (GEMM_MASK)~0u : (GEMM_MASK)((1u << (kc - p)) - 1);
        GEMM_MASK m = 0;
        for (size_t r = 0; r < mr; ++r)
            m |= GEMM_CMPNEQ(GEMM_MASKZ_LOAD(live, a + (ptrdiff_t)r * rsa + p));
        /* the p of the set lanes, packed to the front, as 16-bit numbers */
        _mm256_storeu_si256((__m256i *)(idx + n),
                            _mm512_cvtepi32_epi16(_mm512_maskz_compress_epi32(m, iota)));
        n += (size_t)__builtin_popcount((unsigned)m);
    }
#elif GEMM_AVX2
    /* per vector of steps, the rows ORed bit by bit, compared with 0 and taken as a
     * movemask (a last partial vector by a masked load, which reads no other lanes).
     * The OR of values is a non-zero value exactly when one of them is: NaN, inf and
     * normal values keep a non-zero exponent, and ORed zeros and denormals stay zeros
     * and denormals, which count as zero when denormals-are-zero is on, as the products
     * run (then they also add exactly 0). */
    enum { V = 32 / sizeof(GEMM_T) };
    uint64_t words[GEMM_FN(nwords)] = {0};
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (; p < kc; p += V) {
        const size_t live = kc - p < V ? kc - p : V;
#if GEMM_T_SIZE == 4
        const __m256i lm = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)live), lane);
        __m256 x = _mm256_setzero_ps();
        for (size_t r = 0; r < mr; ++r)
            x = _mm256_or_ps(x, _mm256_maskload_ps(a + (ptrdiff_t)r * rsa + p, lm));
        const unsigned bits = (unsigned)_mm256_movemask_ps(
            _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_NEQ_UQ));
#else
        const __m256i lm = _mm256_cvtepi32_epi64(_mm_cmpgt_epi32(_mm_set1_epi32((int)live),
                                                                 _mm256_castsi256_si128(lane)));
        __m256d x = _mm256_setzero_pd();
        for (size_t r = 0; r < mr; ++r)
            x = _mm256_or_pd(x, _mm256_maskload_pd(a + (ptrdiff_t)r * rsa + p, lm));
        const unsigned bits = (unsigned)_mm256_movemask_pd(
            _mm256_cmp_pd(x, _mm256_setzero_pd(), _CMP_NEQ_UQ));
#endif
        words[p / 64] |= (uint64_t)bits << (p % 64);
    }
    return GEMM_FN(words_out)(words, (kc + 63) / 64, kc, idx);
#elif GEMM_VB
    typedef GEMM_T vec __attribute__((vector_size(GEMM_VB)));
#if GEMM_T_SIZE == 4
    typedef int mvec __attribute__((vector_size(GEMM_VB))); /* comparisons: lanes 0 or -1 */
#else
    typedef long long mvec __attribute__((vector_size(GEMM_VB)));
#endif
    enum { V = GEMM_VB / sizeof(GEMM_T) };
    for (; p + V <= kc; p += V) {
        mvec m = {0};
        for (size_t r = 0; r < mr; ++r) {
            vec x;
            memcpy(&x, a + (ptrdiff_t)r * rsa + p, sizeof(vec));
            m |= x != 0;
        }
        CYMLP_UNROLL
        for (int l = 0; l < V; ++l) {
            idx[n] = (unsigned short)(p + (size_t)l);
            n += (size_t)(m[l] != 0);
        }
    }
#endif
    for (; p < kc; ++p) {
        int any = 0;
        for (size_t r = 0; r < mr; ++r) any |= a[(ptrdiff_t)r * rsa + (ptrdiff_t)p] != 0;
        idx[n] = (unsigned short)p;
        n += (size_t)any;
    }
    return n;
}

#if GEMM_AVX512 && GEMM_T_SIZE == 4 && GEMM_MR == 4
#define GEMM_COLS_LISTS 1
/* nonzero_cols: every tile's list of non-zero steps, as pack_a makes them, for a block
 * of op(A) read in place with its rows contiguous and its steps csa apart (A^T of a
 * row-major A: the weight gradient's a^T, element (r, p) at a[r + p * csa]), without
 * packing it. Per step, one pass over the block's mc values gives each tile's "some row
 * is not zero" bit (a vector of 16 values holds 4 whole tiles of 4); then per tile, 16
 * steps at a time, the steps whose bit is set. The micro-kernel then reads a step's 4
 * values from one line of A, which the 4-row tiles next to it share from L1. (Cheaper
 * than packing A^T: docs/performance.md.) */
GEMM_ATTR static void GEMM_FN(nonzero_cols)(size_t mc, size_t kc, const GEMM_T *a,
                                            ptrdiff_t csa, unsigned short *restrict idx,
                                            size_t *restrict cnt)
{
    uint32_t bits[2][GEMM_KC + 16]; /* step p: bit t of bits[t / 32][p] for tile t */
    const size_t ntiles = (mc + 3) / 4, nvec = (mc + 15) / 16;
    _Static_assert(CYMLP_GEMM_MC + 16 <= 256, "a block's tile bits fit 64 bits");
    for (size_t p = 0; p < kc; ++p) {
        const GEMM_T *row = a + (ptrdiff_t)p * csa;
        uint64_t w = 0;
        for (size_t v = 0; v < nvec; ++v) {
            const __mmask16 live = mc - 16 * v >= 16 ? (__mmask16)0xFFFF
                                                     : (__mmask16)((1u << (mc - 16 * v)) - 1);
            unsigned m = GEMM_CMPNEQ(GEMM_MASKZ_LOAD(live, row + 16 * v));
            m |= m >> 1;
            m |= m >> 2; /* bit 4k: some bit of 4k..4k+3 */
            w |= (uint64_t)_pext_u32(m, 0x1111u) << (4 * v);
        }
        bits[0][p] = (uint32_t)w;
        bits[1][p] = (uint32_t)(w >> 32);
    }
    for (size_t p = kc; p < kc + 16; ++p) bits[0][p] = bits[1][p] = 0;
    const __m512i step = _mm512_set1_epi32(16);
    for (size_t t = 0; t < ntiles; ++t) {
        const uint32_t *bt = bits[t / 32];
        const __m512i sel = _mm512_set1_epi32((int)(1u << (t % 32)));
        unsigned short *out = idx + t * CYMLP_GEMM_IDX_STRIDE;
        size_t n = 0;
        __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        for (size_t p = 0; p < kc; p += 16, iota = _mm512_add_epi32(iota, step)) {
            const __mmask16 m = _mm512_test_epi32_mask(_mm512_loadu_si512(bt + p), sel);
            _mm256_storeu_si256((__m256i *)(out + n),
                                _mm512_cvtepi32_epi16(_mm512_maskz_compress_epi32(m, iota)));
            n += (size_t)__builtin_popcount((unsigned)m);
        }
        cnt[t] = n;
    }
}
#elif GEMM_AVX2 && GEMM_T_SIZE == 4 && GEMM_MR == 4
#define GEMM_COLS_LISTS 1
/* nonzero_cols, AVX2 (see the AVX-512 one above): per step, 32 values (8 tiles of 4)
 * at a time, their compares with 0 packed to bytes so that a tile's 4 make one int32,
 * one more compare giving the tiles' "some row is not zero" bits (the rest of the block
 * a vector of 8 values, 2 tiles, at a time); then per tile, 8 steps' bits at a time
 * (shifted to the sign bits a movemask takes), into words_out's words. */
GEMM_ATTR static void GEMM_FN(nonzero_cols)(size_t mc, size_t kc, const GEMM_T *a,
                                            ptrdiff_t csa, unsigned short *restrict idx,
                                            size_t *restrict cnt)
{
    uint32_t bits[2][GEMM_KC + 8]; /* step p: bit t of bits[t / 32][p] for tile t */
    const size_t ntiles = (mc + 3) / 4, nfull = mc / 8;
    _Static_assert(CYMLP_GEMM_MC + 16 <= 256, "a block's tile bits fit 64 bits");
    /* lanes l < mc % 8 of the last, partial vector (maskload reads no others) */
    const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(mc % 8)),
                                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    /* packs's order of the 8 tiles of 32 values: [t0 t2 t4 t6 | t1 t3 t5 t7] */
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (size_t p = 0; p < kc; ++p) {
        const GEMM_T *row = a + (ptrdiff_t)p * csa;
        uint64_t w = 0;
        size_t v = 0;
        /* 8 tiles at a time: the 4 compares packed to bytes, a tile's 4 in one int32 */
        for (; 8 * v + 32 <= mc; v += 4) {
#define NZ_LANES(k)                                                                    \
    _mm256_castps_si256(                                                               \
        _mm256_cmp_ps(_mm256_loadu_ps(row + 8 * (v + k)), _mm256_setzero_ps(), _CMP_NEQ_UQ))
            const __m256i c0 = NZ_LANES(0), c1 = NZ_LANES(1), c2 = NZ_LANES(2), c3 = NZ_LANES(3);
#undef NZ_LANES
            const __m256i t = _mm256_permutevar8x32_epi32(
                _mm256_packs_epi16(_mm256_packs_epi32(c0, c1), _mm256_packs_epi32(c2, c3)), order);
            const unsigned zero = (unsigned)_mm256_movemask_ps(
                _mm256_castsi256_ps(_mm256_cmpeq_epi32(t, _mm256_setzero_si256())));
            w |= (uint64_t)(~zero & 0xFFu) << (2 * v);
        }
        for (; v < nfull; ++v) {
            unsigned m = (unsigned)_mm256_movemask_ps(
                _mm256_cmp_ps(_mm256_loadu_ps(row + 8 * v), _mm256_setzero_ps(), _CMP_NEQ_UQ));
            m |= m >> 1;
            m |= m >> 2; /* bit 4k: some bit of 4k..4k+3 */
            w |= (uint64_t)((m & 1) | (m >> 3 & 2)) << (2 * v);
        }
        if (mc % 8) {
            unsigned m = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(
                _mm256_maskload_ps(row + 8 * v, tail), _mm256_setzero_ps(), _CMP_NEQ_UQ));
            m |= m >> 1;
            m |= m >> 2;
            w |= (uint64_t)((m & 1) | (m >> 3 & 2)) << (2 * v);
        }
        bits[0][p] = (uint32_t)w;
        bits[1][p] = (uint32_t)(w >> 32);
    }
    for (size_t p = kc; p < kc + 8; ++p) bits[0][p] = bits[1][p] = 0;
    for (size_t t = 0; t < ntiles; ++t) {
        const uint32_t *bt = bits[t / 32];
        const __m128i up = _mm_cvtsi32_si128((int)(31 - t % 32)); /* bit t to the sign */
        uint64_t words[GEMM_FN(nwords)] = {0};
        for (size_t p = 0; p < kc; p += 8) {
            const __m256i x = _mm256_sll_epi32(_mm256_loadu_si256((const __m256i *)(bt + p)), up);
            const unsigned m = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(x));
            words[p / 64] |= (uint64_t)m << (p % 64);
        }
        cnt[t] = GEMM_FN(words_out)(words, (kc + 63) / 64, kc, idx + t * CYMLP_GEMM_IDX_STRIDE);
    }
}
#else
#define GEMM_COLS_LISTS 0
#endif

/* sliver_row: nr (<= NR) elements of a row of op(B), stride csb, to dst, zero-padded to NR */
GEMM_ATTR static inline void GEMM_FN(sliver_row)(const GEMM_T *src, ptrdiff_t csb, size_t nr,
                                                 GEMM_T *restrict dst)
{
    size_t c = 0;
#if GEMM_VB
    if (csb == 1 && nr == GEMM_NR) { /* whole sliver: vector copies, no memcpy call */
        typedef GEMM_T vec __attribute__((vector_size(GEMM_VB)));
        enum { V = GEMM_VB / sizeof(GEMM_T) };
        CYMLP_UNROLL
        for (int v = 0; v < GEMM_NR / V; ++v) {
            vec t;
            memcpy(&t, src + v * V, sizeof(vec));
            memcpy(dst + v * V, &t, sizeof(vec));
        }
        return;
    }
#endif
#if GEMM_AVX512
    if (csb == 1) { /* a ragged sliver: masked loads (zeros past nr), whole stores (a
                     * scalar copy would queue 16 stores per cache line) */
        enum { V = 64 / GEMM_T_SIZE };
        CYMLP_UNROLL
        for (int v = 0; v < GEMM_NR / V; ++v) {
            const int live = (int)nr - V * v;
            const GEMM_MASK m = live >= V ? (GEMM_MASK)~0u
                                : live <= 0 ? (GEMM_MASK)0
                                            : (GEMM_MASK)((1u << live) - 1);
            GEMM_STOREU(dst + V * v, GEMM_MASKZ_LOAD(m, src + V * v));
        }
        return;
    }
#endif
#if GEMM_AVX2 && GEMM_T_SIZE == 4
    if (csb == 1) { /* a ragged sliver: masked loads (zeros past nr), whole stores */
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        CYMLP_UNROLL
        for (int v = 0; v < GEMM_NR / 8; ++v) {
            const __m256i live = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)nr - 8 * v), lane);
            _mm256_storeu_ps(dst + 8 * v, _mm256_maskload_ps(src + 8 * v, live));
        }
        return;
    }
#endif
    for (; c < nr; ++c) dst[c] = src[(ptrdiff_t)c * csb];
    for (; c < GEMM_NR; ++c) dst[c] = 0;
}

/* pack_b: rows [p0, p0+kc) x cols [j0, j0+nc) of op(B) into NR-column slivers, zero-padded */
GEMM_ATTR static void GEMM_FN(pack_b)(size_t kc, size_t nc, const GEMM_T *B, ptrdiff_t rsb,
                                      ptrdiff_t csb, GEMM_T *restrict bp)
{
    for (size_t j = 0; j < nc; j += GEMM_NR) {
        const size_t nr = nc - j < GEMM_NR ? nc - j : GEMM_NR;
        for (size_t p = 0; p < kc; ++p, bp += GEMM_NR)
            GEMM_FN(sliver_row)(B + (ptrdiff_t)p * rsb + (ptrdiff_t)j * csb, csb, nr, bp);
    }
}

#if defined(CYMLP_X86) && GEMM_VB
#define GEMM_STREAMS 1
_Static_assert(GEMM_NR * GEMM_T_SIZE % GEMM_VB == 0, "a sliver row is whole vectors");
/* stream_row: a sliver row from src to dst (aligned to GEMM_VB) with non-temporal stores:
 * they write whole lines without fetching them first, from memory or from the other core
 * that read them last. (src, a buffer on the stack, is read unaligned: GCC does not
 * realign the stack for such vectors on Windows, see the README.) */
GEMM_ATTR static inline void GEMM_FN(stream_row)(GEMM_T *dst, const GEMM_T *src)
{
    char *d = (char *)dst;
    const char *s = (const char *)src;
    CYMLP_UNROLL
    for (int b = 0; b < GEMM_NR * GEMM_T_SIZE; b += GEMM_VB) {
#if GEMM_VB == 64
        _mm512_stream_si512((__m512i *)(d + b), _mm512_loadu_si512((const void *)(s + b)));
#elif GEMM_VB == 32
        _mm256_stream_si256((__m256i *)(d + b), _mm256_loadu_si256((const __m256i *)(s + b)));
#else
        _mm_stream_si128((__m128i *)(d + b), _mm_loadu_si128((const __m128i *)(s + b)));
#endif
    }
}
#else
#define GEMM_STREAMS 0
#endif

/* pack_streams: 1 when pack_rows(..., stream = 1) into bp writes with non-temporal stores
 * (x86-64 vector variants, bp aligned to a vector), 0 when it writes as with stream = 0 */
CYMLP_MAYBE_UNUSED static int GEMM_FN(pack_streams)(const void *bp)
{
#if GEMM_STREAMS
    return (uintptr_t)bp % GEMM_VB == 0;
#else
    (void)bp;
    return 0;
#endif
}

/* pack_rows: rows [p0, p1) of op(B) (K,N) into their places in the packed layout of the
 * whole matrix that gemm's bpacked argument takes: KC blocks of rows one after the other,
 * the block of rows pc.. starting at bp + pc * (N rounded up to NR) and holding its
 * NR-column slivers in turn (each kc x NR, zero-padded), as pack_b lays out one block.
 * Rows are independent, so threads may pack disjoint row ranges of one matrix (e.g. the
 * weight rows each has just updated).
 * stream: write with non-temporal stores where pack_streams(bp) says so, the same values,
 * for a copy that other threads read next (a training step's packed weights with several
 * threads): a store to a line another core holds must first take it from that core,
 * which costs more here than the readers' later fetch from memory (docs/performance.md).
 * With one thread the copy stays in L2: pass stream = 0. (The plain stores go row by row,
 * each row's slivers in turn: taking the streamed path's sliver-by-sliver order for them
 * too made packing the paper's 784 x 100 weights 6.7 -> 8.1 us.) */
GEMM_ATTR CYMLP_MAYBE_UNUSED static void
GEMM_FN(pack_rows)(size_t K, size_t N, size_t p0, size_t p1, const GEMM_T *B, ptrdiff_t rsb,
                   ptrdiff_t csb, GEMM_T *restrict bp, int stream)
{
    const size_t npad = (N + GEMM_NR - 1) / GEMM_NR * GEMM_NR;
#if GEMM_STREAMS
    if (stream && GEMM_FN(pack_streams)(bp)) {
        /* sliver by sliver, its rows in turn: the stores run through consecutive
         * addresses, so each line's write-combining buffer fills before the next one
         * opens, whatever the sliver row's width (96 bytes on AVX2) */
        GEMM_T row[GEMM_NR];
        for (size_t pc = p0 / GEMM_KC * GEMM_KC; pc < p1; pc += GEMM_KC) {
            const size_t kc = K - pc < GEMM_KC ? K - pc : GEMM_KC;
            const size_t a = p0 > pc ? p0 : pc, e = p1 < pc + kc ? p1 : pc + kc;
            for (size_t j = 0; j < N; j += GEMM_NR) {
                const size_t nr = N - j < GEMM_NR ? N - j : GEMM_NR;
                GEMM_T *dst = bp + pc * npad + j * kc + (a - pc) * GEMM_NR;
                for (size_t p = a; p < e; ++p, dst += GEMM_NR) {
                    GEMM_FN(sliver_row)(B + (ptrdiff_t)p * rsb + (ptrdiff_t)j * csb, csb, nr,
                                        row);
                    GEMM_FN(stream_row)(dst, row);
                }
            }
        }
        _mm_sfence(); /* (the stores are ordered before the thread's next ones) */
        return;
    }
#else
    (void)stream;
#endif
    for (size_t p = p0; p < p1; ++p) {
        const size_t pc = p / GEMM_KC * GEMM_KC;
        const size_t kc = K - pc < GEMM_KC ? K - pc : GEMM_KC;
        GEMM_T *dst = bp + pc * npad + (p - pc) * GEMM_NR;
        for (size_t j = 0; j < N; j += GEMM_NR, dst += kc * GEMM_NR)
            GEMM_FN(sliver_row)(B + (ptrdiff_t)p * rsb + (ptrdiff_t)j * csb, csb,
                                N - j < GEMM_NR ? N - j : GEMM_NR, dst);
    }
}

/* small: the same sums for a few rows of C without packing (a single-sample predict or
 * SGD step). Each element is summed over p in the same order, from zero per KC block,
 * as the micro-kernel does, and gets the same epilogue (ep: the whole product's, see
 * gemm), so a row gets the same bits whichever path computes it; zeros of A (most MNIST
 * pixels) are skipped, which adds exactly nothing. */
GEMM_ATTR static void GEMM_FN(small)(size_t M, size_t N, size_t K, const GEMM_T *A,
                                     ptrdiff_t rsa, ptrdiff_t csa, const GEMM_T *B,
                                     ptrdiff_t rsb, ptrdiff_t csb, GEMM_T *C, size_t ldc,
                                     int accumulate, const GEMM_FN(epi) *ep)
{
    GEMM_T t[CYMLP_GEMM_NC];
    for (size_t i = 0; i < M; ++i) {
        GEMM_T *c = C + i * ldc;
        for (size_t jc = 0; jc < N; jc += CYMLP_GEMM_NC) {
            const size_t nc = N - jc < CYMLP_GEMM_NC ? N - jc : CYMLP_GEMM_NC;
            for (size_t pc = 0; pc < K; pc += GEMM_KC) {
                const size_t kc = K - pc < GEMM_KC ? K - pc : GEMM_KC;
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
                else if (ep && ep->bias)
                    for (size_t j = 0; j < nc; ++j) cj[j] = t[j] + ep->bias[jc + j];
                else
                    for (size_t j = 0; j < nc; ++j) cj[j] = t[j];
            }
        }
        if (ep && ep->op != CYMLP_OP_NONE)
            GEMM_FN(block_op)(c, ldc, 1, N, ep->op, ep->aux ? ep->aux + i * ep->ldaux : NULL,
                              ep->ldaux, ep->slope);
    }
}

/* gemm_part: thread tid of nth's share of gemm (its run of the nblocks blocks of mc
 * rows), in the caller's FP mode */
GEMM_ATTR static void GEMM_FN(gemm_part)(int tid, int nth, size_t M, size_t N, size_t K,
                                         const GEMM_T *A, ptrdiff_t rsa, ptrdiff_t csa,
                                         const GEMM_T *B, ptrdiff_t rsb, ptrdiff_t csb,
                                         const GEMM_T *bpacked, GEMM_T *C, size_t ldc,
                                         int accumulate, int scan, const GEMM_FN(epi) *ep,
                                         GEMM_T *work, size_t nblocks, size_t mc)
{
    const size_t npad = (N + GEMM_NR - 1) / GEMM_NR * GEMM_NR;
    const int packa = csa != 1;
    /* work = per thread [B panel][A block][tile lists], see cymlp_gemm_work_size: each thread
     * packs the B it needs itself, so the threads never wait for each other or read
     * what another core just wrote (packing is cheap next to the product) */
    GEMM_T *bwork = work + (size_t)tid * (cymlp_gemm_b_panel(N) + cymlp_gemm_a_block()
                                          + cymlp_gemm_idx_block());
    GEMM_T *apack = bwork + cymlp_gemm_b_panel(N);
    unsigned short *idx = (unsigned short *)(apack + cymlp_gemm_a_block());
    size_t cnt[CYMLP_GEMM_MAX_TILES];
    const ptrdiff_t blk0 = (ptrdiff_t)(nblocks * tid / nth);
    const ptrdiff_t blk1 = (ptrdiff_t)(nblocks * (tid + 1) / nth);
    for (size_t jc = 0; jc < N && blk1 > blk0; jc += GEMM_NC) {
        const size_t nc = N - jc < GEMM_NC ? N - jc : GEMM_NC;
        for (size_t pc = 0; pc < K; pc += GEMM_KC) {
            const size_t kc = K - pc < GEMM_KC ? K - pc : GEMM_KC;
            const int acc = accumulate || pc > 0;
            /* the epilogue: the bias with the first block's sums, the op after the last */
            const GEMM_T *bias = ep && ep->bias && !acc ? ep->bias : NULL;
            const int with_op = ep && ep->op != CYMLP_OP_NONE && pc + kc >= K;
            const GEMM_T *bpack = bpacked ? bpacked + pc * npad + jc * kc : bwork;
            /* the next block of a packed B, asked into L2 a share per micro-kernel call:
             * another core may have written it (training's weights, deltas) */
            const char *pf = NULL, *pf_end = NULL;
            size_t pf_per = 0;
            if (bpacked && pc + kc < K) {
                const size_t kn = K - pc - kc < GEMM_KC ? K - pc - kc : GEMM_KC;
                pf = (const char *)(bpacked + (pc + kc) * npad + jc * kn);
                pf_end = pf + kn * ((nc + GEMM_NR - 1) / GEMM_NR * GEMM_NR) * sizeof(GEMM_T);
                const size_t calls = (size_t)(blk1 - blk0) * ((nc + GEMM_NR - 1) / GEMM_NR)
                                     * ((mc + GEMM_MR - 1) / GEMM_MR);
                pf_per = ((size_t)(pf_end - pf) / 64 + calls - 1) / calls;
            }
            if (!bpacked)
                for (size_t j = 0; j < nc; j += GEMM_NR)
                    GEMM_FN(pack_b)(kc, nc - j < GEMM_NR ? nc - j : GEMM_NR,
                                    B + (ptrdiff_t)pc * rsb + (ptrdiff_t)(jc + j) * csb,
                                    rsb, csb, bwork + j * kc);
            for (ptrdiff_t blk = blk0; blk < blk1; ++blk) {
                const size_t ic = (size_t)blk * mc;
                const size_t mcb = M - ic < mc ? M - ic : mc;
                const GEMM_T *ablk = A + (ptrdiff_t)ic * rsa + (ptrdiff_t)pc * csa;
                ptrdiff_t ars = rsa, acs = csa;
                int apacked = 0;
                /* A read in place (rows, or A^T where nonzero_cols would scan it), dense:
                 * every step, unscanned (packing lists the steps as it copies) */
                if (!scan && (!packa || (GEMM_COLS_LISTS && rsa == 1))) {
                    for (size_t t = 0; t < (mcb + GEMM_MR - 1) / GEMM_MR; ++t) cnt[t] = kc;
                } else
#if GEMM_COLS_LISTS
                if (packa && rsa == 1) /* A^T read in place, see nonzero_cols */
                    GEMM_FN(nonzero_cols)(mcb, kc, ablk, csa, idx, cnt);
                else
#endif
                if (packa) {
                    GEMM_FN(pack_a)(mcb, kc, ablk, rsa, csa, apack, idx, cnt);
                    ablk = apack;
                    ars = 1;
                    acs = GEMM_MR;
                    apacked = 1;
                } else {
                    for (size_t i = 0, t = 0; i < mcb; i += GEMM_MR, ++t)
                        cnt[t] = GEMM_FN(nonzero)(kc, ablk + (ptrdiff_t)i * rsa, rsa,
                                                  mcb - i < GEMM_MR ? mcb - i : GEMM_MR,
                                                  idx + t * CYMLP_GEMM_IDX_STRIDE);
                }
                /* a sliver of B (kc x NR, packed) stays in L1 while every row tile
                 * of the block meets it: B streams from L2 once per block, A once
                 * per sliver (N / NR times), instead of B once per row tile */
                for (size_t j = 0; j < nc; j += GEMM_NR) {
                    const size_t nr = nc - j < GEMM_NR ? nc - j : GEMM_NR;
                    for (size_t i = 0, t = 0; i < mcb; i += GEMM_MR, ++t) {
                        const size_t mr = mcb - i < GEMM_MR ? mcb - i : GEMM_MR;
                        const GEMM_T *a = apacked ? ablk + i * kc : ablk + (ptrdiff_t)i * ars;
                        for (size_t q = 0; q < pf_per && pf < pf_end; ++q, pf += 64)
                            __builtin_prefetch(pf, 0, 2);
                        /* skip the zero steps when they are worth the indirection */
                        const int sparse = GEMM_SPARSE(cnt[t], kc);
                        const unsigned short *ix = sparse ? idx + t * CYMLP_GEMM_IDX_STRIDE : NULL;
                        GEMM_T *ct = C + (ic + i) * ldc + jc + j;
                        /* C += t, or bias + t, or t */
                        const GEMM_T *add = acc ? ct : bias ? bias + jc + j : NULL;
                        const size_t ldadd = acc ? ldc : 0;
#if GEMM_HALF
                        if (nr <= GEMM_NR / 2) { /* ragged edge: half the FMAs */
                            GEMM_FN(micro_half)(kc, a, ars, acs, bpack + j * kc, ix, cnt[t],
                                                ct, ldc, add, ldadd, mr, nr);
                            continue;
                        }
#endif
                        GEMM_FN(micro)(kc, a, ars, acs, bpack + j * kc, ix, cnt[t], ct, ldc,
                                       add, ldadd, mr, nr);
                    }
                }
                /* the op on the block's rows of C, complete now and still in cache */
                if (with_op)
                    GEMM_FN(block_op)(C + ic * ldc + jc, ldc, mcb, nc, ep->op,
                                      ep->aux ? ep->aux + ic * ep->ldaux + jc : NULL,
                                      ep->ldaux, ep->slope);
            }
        }
    }
}

/* gemm_task: task t of n of a product split over threads (cymlp_parallel_for), in
 * cymlp's FP mode (per thread, see _gemm.h) */
typedef struct {
    size_t M, N, K;
    const GEMM_T *A;
    ptrdiff_t rsa, csa;
    const GEMM_T *B;
    ptrdiff_t rsb, csb;
    const GEMM_T *bpacked;
    GEMM_T *C;
    size_t ldc;
    int accumulate, scan;
    const GEMM_FN(epi) *ep;
    GEMM_T *work;
    size_t nblocks, mc;
} GEMM_FN(gemm_args);

GEMM_ATTR static void GEMM_FN(gemm_task)(void *ctx, int t, int n)
{
    const GEMM_FN(gemm_args) *g = (const GEMM_FN(gemm_args) *)ctx;
    const unsigned long fp_mode = cymlp_fp_enter();
    GEMM_FN(gemm_part)(t, n, g->M, g->N, g->K, g->A, g->rsa, g->csa, g->B, g->rsb, g->csb,
                       g->bpacked, g->C, g->ldc, g->accumulate, g->scan, g->ep, g->work,
                       g->nblocks, g->mc);
    cymlp_fp_leave(fp_mode);
}

/* gemm: C = [C +] op(A) . op(B), then the epilogue (see _gemm_epi.h): bias (N values,
 * or NULL; ignored when accumulating) added to every row, then op (CYMLP_OP_*) applied,
 * with aux (M x N, row stride ldaux) the a of a CYMLP_DERIV op. flags: CYMLP_GEMM_*
 * (_gemm_defs.h), ACCUMULATE (C +=) and DENSE_A (no scan for zero steps). */
GEMM_ATTR CYMLP_MAYBE_UNUSED static void
GEMM_FN(gemm)(size_t M, size_t N, size_t K, const GEMM_T *A, ptrdiff_t rsa, ptrdiff_t csa,
              const GEMM_T *B, ptrdiff_t rsb, ptrdiff_t csb, const GEMM_T *bpacked, GEMM_T *C,
              size_t ldc, int flags, GEMM_T *work, int nthreads, const GEMM_T *bias,
              int op, const GEMM_T *aux, size_t ldaux, GEMM_T slope)
{
    const int accumulate = flags & CYMLP_GEMM_ACCUMULATE, scan = !(flags & CYMLP_GEMM_DENSE_A);
    const GEMM_FN(epi) epi = {bias, aux, ldaux, op, slope};
    const GEMM_FN(epi) *ep = bias || op != CYMLP_OP_NONE ? &epi : NULL;
    if (M == 0 || N == 0) return;
    if (K == 0 || M <= CYMLP_GEMM_SMALL_M) { /* (in the FP mode of the other paths) */
        const unsigned long fp_mode = cymlp_fp_enter();
        if (K == 0) { /* an empty sum: C, or 0, plus the bias */
            for (size_t i = 0; i < M; ++i)
                for (size_t j = 0; j < N && !accumulate; ++j)
                    C[i * ldc + j] = bias ? bias[j] : 0;
            GEMM_FN(block_op)(C, ldc, M, N, op, aux, ldaux, slope);
        } else {
            GEMM_FN(small)(M, N, K, A, rsa, csa, B, rsb, csb, C, ldc, accumulate, ep);
        }
        cymlp_fp_leave(fp_mode);
        return;
    }
    /* Split M into blocks of whole micro-tiles, a multiple of the thread count; thread
     * t takes a contiguous run of them. */
    size_t nblocks = (M + CYMLP_GEMM_MC - 1) / CYMLP_GEMM_MC;
    if (nthreads < 1) nthreads = 1;
    if ((double)M * N * K < CYMLP_GEMM_PARALLEL_MIN) nthreads = 1;
#if !CYMLP_THREADS_PARALLEL
    nthreads = 1;
#endif
    nblocks = (nblocks + nthreads - 1) / nthreads * nthreads;
    size_t mc = (M + nblocks - 1) / nblocks;
    mc = (mc + GEMM_MR - 1) / GEMM_MR * GEMM_MR;
    nblocks = (M + mc - 1) / mc;
    if (nthreads == 1) { /* (no parallel region: one task still costs a wake-up) */
        const unsigned long fp_mode = cymlp_fp_enter(); /* per thread, see _gemm.h */
        GEMM_FN(gemm_part)(0, 1, M, N, K, A, rsa, csa, B, rsb, csb, bpacked, C, ldc,
                           accumulate, scan, ep, work, nblocks, mc);
        cymlp_fp_leave(fp_mode);
        return;
    }
    /* task t takes thread t's run of blocks, whichever thread runs it */
    GEMM_FN(gemm_args) args = {M, N, K, A, rsa, csa, B, rsb, csb, bpacked, C, ldc,
                               accumulate, scan, ep, work, nblocks, mc};
    cymlp_parallel_for(nthreads, GEMM_FN(gemm_task), &args);
}

#undef GEMM_T
#undef GEMM_FN
#undef GEMM_ATTR
#undef GEMM_VB
#undef GEMM_MR
#undef GEMM_NR
#undef GEMM_T_SIZE
#undef GEMM_HALF
#undef GEMM_COLS_LISTS
#undef GEMM_NV_MICRO
#undef GEMM_TAIL
#undef GEMM_KC
#undef GEMM_NC
#undef GEMM_AVX512
#undef GEMM_AVX2
#undef GEMM_SPARSE
#undef GEMM_MASK
#undef GEMM_MASKZ_LOAD
#undef GEMM_MASK_STORE
#undef GEMM_STOREU
#undef GEMM_STREAMS
#undef GEMM_CMPNEQ
#undef GEMM_PARAMS_READY
