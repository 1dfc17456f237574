/* test_kernels.c: cymlp's C kernels (_gemm.h, _vmath.h, _optim.h) against a plain double-precision
 * reference, for every SIMD variant compiled in and runnable on this CPU.
 *
 * A standalone program (no Python): .ci/windows.sh cross-compiles it for Windows and runs
 * it under wine; it also builds natively, e.g.
 *   gcc -O2 -fopenmp -Isrc/cymlp/_native tests/native/test_kernels.c -lm && ./a.out
 * Prints the variants it ran and a last line "N passed, M failed"; exits 1 on a failure.
 *
 * Checked, in float and double, per variant:
 *   gemm      C (M,N) = [C +] op(A) (M,K) . op(B) (K,N), then the epilogue (bias, then
 *             an activation or, CYMLP_DERIV, x * f'(a) with a from aux), against
 *             sum_p A[i,p] B[p,j] in double: shapes with ragged edges, 1-2 rows (the
 *             unpacked path), many row blocks (M > MC), K over several KC blocks, N over
 *             NC; A and B as given, transposed and strided; C with a row stride, padding
 *             untouched; accumulate; bias (ignored when accumulating); every op; aux with
 *             a row stride; dense A and a sparse A (zero rows, zero tiles, zero border
 *             columns: the skipped steps); K = 0 and M = 0.
 *   bits      the same bits for 1 and 2 threads, for B packed by pack_rows (bpacked) and
 *             packed inside the product, for a row computed alone (the few-rows path) and
 *             in a batch, and for the epilogue fused and applied after (apply).
 *   apply     every op on its own, against the formula in double.
 *   stream    pack_rows with non-temporal stores: the bytes of the plain stores, into an
 *             aligned buffer and a misaligned one.
 *   vexpf     e^x against exp in double (range, overflow to inf, the clamp below, NaN).
 *   softmax   outputs, summed and per-row weighted losses against double.
 *   optim     SGD (plain, momentum, Nesterov), Adam and AdamW steps: the portable
 *             instantiation's bits (no fused multiply-adds in any variant).
 * Inputs are multiples of 2^-12 in [-1, 1), so float and double products are exact and
 * one double reference serves both; the tolerance is a bound of the rounding of a sum of
 * K terms (scaled by sqrt(K)), plus a few ulps for the epilogue's own function.
 */
#include "_gemm.h" /* (includes _vmath.h and _optim.h) */

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int n_pass, n_fail;
static const char *variant = "";

static void check(int ok, const char *what, const char *detail)
{
    if (ok) {
        ++n_pass;
        return;
    }
    if (++n_fail <= 40) printf("FAIL [%s] %s: %s\n", variant, what, detail);
}

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (p == NULL) {
        printf("out of memory (%zu bytes)\n", bytes);
        exit(2);
    }
    return p;
}

/* splitmix64: the same numbers on every platform */
static uint64_t rng_state;
static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
/* a multiple of 2^-12 in [-1, 1) (exact in float, products too) */
static double rng_val(void) { return (double)((int)(rng_next() % 8192) - 4096) / 4096.0; }
static double rng_unit(void) { return (double)(rng_next() >> 11) / 9007199254740992.0; }
static size_t rng_int(size_t lo, size_t hi) { return lo + (size_t)(rng_next() % (hi - lo + 1)); }

/* ---- arrays of either type, and the products through the dispatch table ---------- */
static void *to_type(const double *x, size_t n, int dbl)
{
    void *p = xmalloc(n * (dbl ? sizeof(double) : sizeof(float)));
    for (size_t k = 0; k < n; ++k) {
        if (dbl)
            ((double *)p)[k] = x[k];
        else
            ((float *)p)[k] = (float)x[k];
    }
    return p;
}
static double get(const void *p, size_t k, int dbl)
{
    return dbl ? ((const double *)p)[k] : (double)((const float *)p)[k];
}

typedef struct {
    size_t M, N, K;
    const void *A;
    ptrdiff_t rsa, csa;
    const void *B;
    ptrdiff_t rsb, csb;
    const void *bpacked;
    size_t ldc;
    int accumulate; /* gemm's flags: CYMLP_GEMM_ACCUMULATE, | CYMLP_GEMM_DENSE_A */
    const void *bias;
    int op;
    const void *aux;
    size_t ldaux;
    double slope;
} gemm_args;

static void run_gemm(int dbl, const gemm_args *g, void *C, int nthreads)
{
    const size_t wn = cymlp_gemm_work_size(nthreads, g->N);
    void *work = xmalloc(wn * (dbl ? sizeof(double) : sizeof(float)));
    if (dbl)
        cymlp_dgemm_impl(g->M, g->N, g->K, g->A, g->rsa, g->csa, g->B, g->rsb, g->csb,
                         g->bpacked, C, g->ldc, g->accumulate, work, nthreads, g->bias,
                         g->op, g->aux, g->ldaux, g->slope);
    else
        cymlp_sgemm_impl(g->M, g->N, g->K, g->A, g->rsa, g->csa, g->B, g->rsb, g->csb,
                         g->bpacked, C, g->ldc, g->accumulate, work, nthreads, g->bias,
                         g->op, g->aux, g->ldaux, (float)g->slope);
    free(work);
}

/* ---- the epilogue ops in double -------------------------------------------------- */
static const int OPS[] = {
    CYMLP_OP_NONE, CYMLP_OP_LOGISTIC, CYMLP_OP_TANH, CYMLP_OP_RELU, CYMLP_OP_LEAKY_RELU,
    CYMLP_DERIV | CYMLP_OP_LOGISTIC, CYMLP_DERIV | CYMLP_OP_TANH, CYMLP_DERIV | CYMLP_OP_RELU,
    CYMLP_DERIV | CYMLP_OP_LEAKY_RELU};
enum { N_OPS = sizeof OPS / sizeof OPS[0] };
static const double SLOPE = 0.125;

static double op_ref(int op, double x, double a, double slope)
{
    switch (op) {
    case CYMLP_OP_LOGISTIC: return 1 / (1 + exp(-x));
    case CYMLP_OP_TANH: return tanh(x);
    case CYMLP_OP_RELU: return x > 0 ? x : 0;
    case CYMLP_OP_LEAKY_RELU: return x > 0 ? x : slope * x;
    case CYMLP_DERIV | CYMLP_OP_LOGISTIC: return x * a * (1 - a);
    case CYMLP_DERIV | CYMLP_OP_TANH: return x * (1 - a * a);
    case CYMLP_DERIV | CYMLP_OP_RELU: return a > 0 ? x : 0;
    case CYMLP_DERIV | CYMLP_OP_LEAKY_RELU: return a > 0 ? x : slope * x;
    default: return x;
    }
}
/* how much the op can grow an error of its input x (a bound of |f'|) */
static double op_gain(int op, double a, double slope)
{
    switch (op) {
    case CYMLP_OP_LOGISTIC: return 0.25;
    case CYMLP_DERIV | CYMLP_OP_LOGISTIC: return fabs(a * (1 - a));
    case CYMLP_DERIV | CYMLP_OP_TANH: return fabs(1 - a * a);
    case CYMLP_OP_LEAKY_RELU:
    case CYMLP_DERIV | CYMLP_OP_LEAKY_RELU: return slope > 1 ? slope : 1;
    default: return 1;
    }
}
/* a's of the derivative ops: in (0, 1) for logistic and tanh, either sign for relu */
static double aux_val(void) { return (double)(rng_next() % 4095 + 1) / 4096.0; }

static const char *op_name(int op)
{
    static char buf[32];
    const char *names[] = {"none", "logistic", "tanh", "relu", "leaky_relu"};
    snprintf(buf, sizeof buf, "%s%s", op & CYMLP_DERIV ? "d_" : "", names[op & 7]);
    return buf;
}

/* ---- gemm ------------------------------------------------------------------------ */
typedef struct {
    size_t M, N, K;
} shape;

static const shape SHAPES[] = {
    {1, 1, 1},      {2, 7, 5},      {1, 100, 784},  {2, 1030, 9},   {1, 3, 600},
    {3, 5, 7},      {7, 5, 3},      {37, 13, 29},   {5, 300, 2},    {13, 1030, 9},
    {3, 2, 600},    {50, 97, 300},  {31, 128, 260}, {20, 96, 140},  {20, 129, 140},
    {64, 64, 513},  {193, 17, 257}, {4, 64, 128},   {6, 16, 256},   {9, 65, 129},
    {400, 10, 100}, {5, 7, 0},      {1, 3, 0},      {0, 5, 3},      {4, 0, 3},
    {450, 21, 530}, /* 3 row blocks of MC, 3 blocks of KC */
    {200, 100, 784} /* the paper's first layer, a batch of 200 */};
enum { N_SHAPES = sizeof SHAPES / sizeof SHAPES[0], N_RANDOM_SHAPES = 12 };

static const float SENTINEL = -777.25f;

/* storage of a matrix (rows x cols) for layout lay: 0 row-major, 1 its transpose stored
 * row-major, 2 row-major with every other row and column (neither stride 1) */
static size_t layout_size(size_t rows, size_t cols, int lay)
{
    return lay == 2 ? (2 * rows + 1) * (2 * cols + 1) : rows * cols;
}
static void layout_strides(size_t rows, size_t cols, int lay, ptrdiff_t *rs, ptrdiff_t *cs)
{
    if (lay == 0) {
        *rs = (ptrdiff_t)cols;
        *cs = 1;
    } else if (lay == 1) {
        *rs = 1;
        *cs = (ptrdiff_t)rows;
    } else {
        *rs = (ptrdiff_t)(2 * (2 * cols + 1));
        *cs = 2;
    }
}
static double *layout_fill(const double *x, size_t rows, size_t cols, int lay)
{
    const size_t n = layout_size(rows, cols, lay);
    double *s = xmalloc(n * sizeof(double));
    ptrdiff_t rs, cs;
    layout_strides(rows, cols, lay, &rs, &cs);
    for (size_t k = 0; k < n; ++k) s[k] = 1e30; /* never read */
    for (size_t i = 0; i < rows; ++i)
        for (size_t j = 0; j < cols; ++j) s[(ptrdiff_t)i * rs + (ptrdiff_t)j * cs] = x[i * cols + j];
    return s;
}

/* A sparse as an image batch is: rows with few non-zeros, zero border columns, a zero
 * band, whole zero row tiles, a few dense rows */
static void make_sparse(double *A, size_t M, size_t K)
{
    for (size_t i = 0; i < M; ++i) {
        const double keep = pow(rng_unit(), 3.0);
        for (size_t p = 0; p < K; ++p)
            if (rng_unit() > keep) A[i * K + p] = 0;
    }
    for (size_t i = 0; i < M; ++i) {
        for (size_t p = 0; p < K / 5; ++p) A[i * K + p] = 0;
        for (size_t p = K / 2; p < K && p < K / 2 + 40; ++p) A[i * K + p] = 0;
    }
    for (size_t i = 0; i < M / 4; ++i)
        for (size_t p = 0; p < K; ++p) A[i * K + p] = 0;
    for (size_t i = M / 2; i < M && i < M / 2 + 3; ++i)
        for (size_t p = 0; p < K; ++p) A[i * K + p] = rng_val();
}

/* one gemm configuration against the reference, and its bit-identities */
typedef struct {
    int lay_a, lay_b, accumulate, with_bias, op, aux_stride, c_stride;
} config;

static void test_gemm_config(int dbl, const shape *s, const double *A, const double *B,
                             const double *S, const double *ABS, const double *bias,
                             const double *aux, const double *C0, const config *cf,
                             const char *tag)
{
    const size_t M = s->M, N = s->N, K = s->K;
    const size_t ldc = N + (cf->c_stride ? 3 : 0), ldaux = N + (cf->aux_stride ? 1 : 0);
    const size_t csize = M * ldc + 8, esz = dbl ? sizeof(double) : sizeof(float);
    const double eps = dbl ? DBL_EPSILON : FLT_EPSILON;
    char what[160], detail[200];
    snprintf(what, sizeof what, "gemm %s %zux%zux%zu A%d B%d acc=%d bias=%d %s ldc=%zu %s",
             dbl ? "f64" : "f32", M, N, K, cf->lay_a, cf->lay_b, cf->accumulate,
             cf->with_bias, op_name(cf->op), ldc, tag);

    /* operands in their layouts, in the type */
    double *As = layout_fill(A, M, K, cf->lay_a), *Bs = layout_fill(B, K, N, cf->lay_b);
    void *At = to_type(As, layout_size(M, K, cf->lay_a), dbl);
    void *Bt = to_type(Bs, layout_size(K, N, cf->lay_b), dbl);
    double *auxs = xmalloc((M * ldaux + 1) * sizeof(double));
    for (size_t i = 0; i < M; ++i)
        for (size_t j = 0; j < ldaux; ++j) auxs[i * ldaux + j] = j < N ? aux[i * N + j] : 7.0;
    void *auxt = to_type(auxs, M * ldaux + 1, dbl);
    void *biast = to_type(bias, N, dbl);
    double *c0 = xmalloc(csize * sizeof(double));
    for (size_t k = 0; k < csize; ++k) c0[k] = SENTINEL;
    for (size_t i = 0; i < M; ++i)
        for (size_t j = 0; j < N; ++j) c0[i * ldc + j] = cf->accumulate ? C0[i * N + j] : SENTINEL;
    void *Cinit = to_type(c0, csize, dbl);
    gemm_args g = {M, N, K, At, 0, 0, Bt, 0, 0, NULL, ldc, cf->accumulate,
                   cf->with_bias ? biast : NULL, cf->op, auxt, ldaux, SLOPE};
    layout_strides(M, K, cf->lay_a, &g.rsa, &g.csa);
    layout_strides(K, N, cf->lay_b, &g.rsb, &g.csb);

    /* 1 thread, B packed inside: against the reference */
    void *C1 = xmalloc(csize * esz);
    memcpy(C1, Cinit, csize * esz);
    run_gemm(dbl, &g, C1, 1);
    double worst = -1;
    size_t wi = 0, wj = 0;
    int ok = 1;
    detail[0] = 0;
    for (size_t i = 0; i < M; ++i)
        for (size_t j = 0; j < N; ++j) {
            const double add = cf->accumulate ? C0[i * N + j] : cf->with_bias ? bias[j] : 0;
            const double a = aux[i * N + j];
            const double x = add + S[i * N + j];
            const double ref = op_ref(cf->op, x, a, SLOPE);
            const double tol = eps * (4 * sqrt((double)K) + 4) * (ABS[i * N + j] + fabs(add))
                                   * op_gain(cf->op, a, SLOPE)
                               + 8 * eps * fabs(ref) + (dbl ? 1e-300 : 1e-37);
            const double got = get(C1, i * ldc + j, dbl);
            const double err = got == got ? fabs(got - ref) : INFINITY;
            if (!(err <= tol)) {
                ok = 0;
                if (err > worst) {
                    worst = err;
                    wi = i;
                    wj = j;
                }
            }
        }
    for (size_t k = 0; k < csize; ++k)
        if (k >= M * ldc || ldc == 0 || k % ldc >= N)
            if (get(C1, k, dbl) != SENTINEL) {
                ok = 0;
                snprintf(detail, sizeof detail, "wrote outside C at %zu", k);
            }
    if (worst >= 0)
        snprintf(detail, sizeof detail, "C[%zu,%zu] = %.9g, reference %.9g", wi, wj,
                 get(C1, wi * ldc + wj, dbl),
                 op_ref(cf->op, (cf->accumulate ? C0[wi * N + wj] : cf->with_bias ? bias[wj] : 0)
                                    + S[wi * N + wj], aux[wi * N + wj], SLOPE));
    check(ok, what, detail);

    /* 2 threads: the same bits */
    void *C2 = xmalloc(csize * esz);
    memcpy(C2, Cinit, csize * esz);
    run_gemm(dbl, &g, C2, 2);
    snprintf(detail, sizeof detail, "2 threads differ from 1");
    check(memcmp(C1, C2, csize * esz) == 0, what, detail);

    /* CYMLP_GEMM_DENSE_A (every step summed, A not scanned for zero steps): the same bits */
    gemm_args gd = g;
    gd.accumulate |= CYMLP_GEMM_DENSE_A;
    memcpy(C2, Cinit, csize * esz);
    run_gemm(dbl, &gd, C2, 2);
    snprintf(detail, sizeof detail, "DENSE_A (no scan) differs from the scanned product");
    check(memcmp(C1, C2, csize * esz) == 0, what, detail);

    /* B packed once by pack_rows (in two row ranges, as threads pack): the same bits */
    const size_t psize = cymlp_packed_size(K, N);
    void *bp = xmalloc(psize * esz);
    memset(bp, 0xff, psize * esz); /* (NaNs: any element the packing misses shows) */
    if (dbl) {
        cymlp_dpack_rows_impl(K, N, 0, K / 3, Bt, g.rsb, g.csb, bp, 0);
        cymlp_dpack_rows_impl(K, N, K / 3, K, Bt, g.rsb, g.csb, bp, 0);
    } else {
        cymlp_spack_rows_impl(K, N, 0, K / 3, Bt, g.rsb, g.csb, bp, 0);
        cymlp_spack_rows_impl(K, N, K / 3, K, Bt, g.rsb, g.csb, bp, 0);
    }
    gemm_args gp = g;
    gp.bpacked = bp;
    memcpy(C2, Cinit, csize * esz);
    run_gemm(dbl, &gp, C2, 2);
    snprintf(detail, sizeof detail, "bpacked (pack_rows) differs from packing inside");
    check(psize == 0 || memcmp(C1, C2, csize * esz) == 0, what, detail);

    /* the epilogue fused, and applied after on the sums (apply): the same bits */
    if (cf->op != CYMLP_OP_NONE && M > 0 && N > 0) {
        gemm_args gn = g;
        gn.op = CYMLP_OP_NONE;
        memcpy(C2, Cinit, csize * esz);
        run_gemm(dbl, &gn, C2, 1);
        for (size_t i = 0; i < M; ++i) {
            char *row = (char *)C2 + i * ldc * esz;
            const char *arow = (const char *)auxt + i * ldaux * esz;
            if (dbl)
                cymlp_dapply_impl((double *)row, N, cf->op, (const double *)arow, SLOPE);
            else
                cymlp_sapply_impl((float *)row, N, cf->op, (const float *)arow, (float)SLOPE);
        }
        snprintf(detail, sizeof detail, "epilogue fused differs from apply after");
        check(memcmp(C1, C2, csize * esz) == 0, what, detail);
    }

    /* rows alone (the few-rows path, nothing packed): the bits of the batch */
    if (M > CYMLP_GEMM_SMALL_M && N > 0) {
        const size_t rows[3] = {0, M / 2, M - 1};
        int same = 1;
        for (int r = 0; r < 3; ++r) {
            const size_t i = rows[r];
            gemm_args g1 = g;
            g1.M = 1;
            g1.A = (const char *)At + (size_t)((ptrdiff_t)i * g.rsa) * esz;
            g1.aux = (const char *)auxt + i * ldaux * esz;
            void *c1 = xmalloc(ldc * esz);
            memcpy(c1, (const char *)Cinit + i * ldc * esz, ldc * esz);
            run_gemm(dbl, &g1, c1, 1);
            same &= memcmp(c1, (const char *)C1 + i * ldc * esz, ldc * esz) == 0;
            free(c1);
        }
        snprintf(detail, sizeof detail, "a row alone differs from the row in the batch");
        check(same, what, detail);
    }
    free(As);
    free(Bs);
    free(At);
    free(Bt);
    free(auxs);
    free(auxt);
    free(biast);
    free(c0);
    free(Cinit);
    free(C1);
    free(C2);
    free(bp);
}

static void test_gemm_shape(const shape *s, int shape_index)
{
    const size_t M = s->M, N = s->N, K = s->K;
    double *A = xmalloc((M * K + 1) * sizeof(double)), *B = xmalloc((K * N + 1) * sizeof(double));
    double *bias = xmalloc((N + 1) * sizeof(double)), *aux = xmalloc((M * N + 1) * sizeof(double));
    double *C0 = xmalloc((M * N + 1) * sizeof(double));
    double *S = xmalloc((M * N + 1) * sizeof(double)), *ABS = xmalloc((M * N + 1) * sizeof(double));
    rng_state = 1000003u * (uint64_t)shape_index + 17;
    for (size_t k = 0; k < K * N; ++k) B[k] = rng_val();
    for (size_t k = 0; k < N; ++k) bias[k] = rng_val();
    for (size_t k = 0; k < M * N; ++k) C0[k] = rng_val() * 4;
    const double work = (double)M * N * K;
    const int nconf = work > 1e6 ? 3 : work > 2e5 ? 9 : 18; /* (fewer for big shapes) */
    for (int sparse = 0; sparse < 2; ++sparse) {
        for (size_t k = 0; k < M * K; ++k) A[k] = rng_val();
        if (sparse) make_sparse(A, M, K);
        for (size_t i = 0; i < M; ++i)
            for (size_t j = 0; j < N; ++j) {
                double t = 0, ta = 0;
                for (size_t p = 0; p < K; ++p) {
                    t += A[i * K + p] * B[p * N + j];
                    ta += fabs(A[i * K + p] * B[p * N + j]);
                }
                S[i * N + j] = t;
                ABS[i * N + j] = ta;
            }
        for (int c = 0; c < nconf; ++c) {
            const int h = c + 5 * shape_index + 3 * sparse;
            config cf;
            cf.op = OPS[(c + sparse * 4 + shape_index) % N_OPS];
            cf.lay_a = h % 3;
            cf.lay_b = (h / 3) % 3;
            cf.accumulate = (h * 7) % 5 == 0;
            cf.with_bias = (h / 2) % 2;
            cf.aux_stride = h % 2;
            cf.c_stride = (h / 4) % 2;
            /* the derivative ops' a: (0, 1), and for relu's either sign */
            for (size_t k = 0; k < M * N; ++k)
                aux[k] = (cf.op & 7) >= CYMLP_OP_RELU ? rng_val() : aux_val();
            for (int dbl = 0; dbl < 2; ++dbl)
                test_gemm_config(dbl, s, A, B, S, ABS, bias, aux, C0, &cf,
                                 sparse ? "sparse A" : "dense A");
        }
    }
    free(A);
    free(B);
    free(bias);
    free(aux);
    free(C0);
    free(S);
    free(ABS);
}

/* ---- apply: every op on its own ---------------------------------------------------- */
static void test_apply(void)
{
    static const size_t lens[] = {0, 1, 3, 8, 15, 16, 17, 33, 100, 1000};
    char what[96], detail[160];
    rng_state = 99;
    for (int dbl = 0; dbl < 2; ++dbl)
        for (int o = 1; o < N_OPS; ++o)
            for (size_t li = 0; li < sizeof lens / sizeof lens[0]; ++li) {
                const size_t n = lens[li];
                const int op = OPS[o];
                const double eps = dbl ? DBL_EPSILON : FLT_EPSILON;
                double *z = xmalloc((n + 1) * sizeof(double)), *a = xmalloc((n + 1) * sizeof(double));
                for (size_t k = 0; k < n; ++k) {
                    z[k] = rng_val() * 40; /* (into the exponential's clamp, and past it) */
                    a[k] = (op & 7) >= CYMLP_OP_RELU ? rng_val() : aux_val();
                }
                if (n > 2) z[1] = 0; /* (relu at 0) */
                void *zt = to_type(z, n + 1, dbl), *at = to_type(a, n + 1, dbl);
                if (dbl)
                    cymlp_dapply_impl(zt, n, op, at, SLOPE);
                else
                    cymlp_sapply_impl(zt, n, op, at, (float)SLOPE);
                int ok = 1;
                detail[0] = 0;
                for (size_t k = 0; k < n; ++k) {
                    const double ref = op_ref(op, z[k], a[k], SLOPE);
                    const double got = get(zt, k, dbl);
                    if (!(fabs(got - ref) <= 8 * eps * fabs(ref) + (dbl ? 1e-300 : 1e-37))) {
                        if (ok)
                            snprintf(detail, sizeof detail, "z[%zu] = %.9g: %.9g, reference %.9g",
                                     k, z[k], got, ref);
                        ok = 0;
                    }
                }
                snprintf(what, sizeof what, "apply %s %s n=%zu", dbl ? "f64" : "f32",
                         op_name(op), n);
                check(ok, what, detail);
                free(z);
                free(a);
                free(zt);
                free(at);
            }
}

/* ---- vexpf ------------------------------------------------------------------------ */
static void test_vexpf(void)
{
    enum { N = 20000 };
    float *x = xmalloc((N + 64) * sizeof(float)), *y = xmalloc((N + 64) * sizeof(float));
    char detail[160];
    size_t n = 0;
    for (int k = 0; k < N - 40; ++k) x[n++] = -100.0f + 200.0f * (float)k / (N - 40);
    static const float special[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 1.0f, -1.0f, 0.5f,
                                    88.7f, 88.72f, 88.7228f, 88.73f, 88.8f, 89.0f, 1e4f,
                                    -87.0f, -87.33f, -87.3365f, -87.34f, -88.0f, -103.0f,
                                    -1e4f, 87.0f, 20.5f, -20.5f};
    for (size_t k = 0; k < sizeof special / sizeof special[0]; ++k) x[n++] = special[k];
    const float nan = (float)NAN, inf = (float)INFINITY;
    x[n++] = nan;
    x[n++] = inf;
    x[n++] = -inf;
    cymlp_vexpf_impl(x, y, n);
    int in_range = 1, over = 1, under = 1, nan_ok = 1;
    double worst = 0;
    for (size_t k = 0; k < n; ++k) {
        const double xe = x[k];
        if (xe != xe) {
            nan_ok &= y[k] != y[k];
        } else if (xe > 88.7229) { /* e^x past FLT_MAX (ln FLT_MAX = 88.72284) */
            over &= y[k] == inf;
        } else if (xe > 88.72) { /* (rounds to FLT_MAX or inf) */
        } else if (xe < -87.33654) { /* clamped: about FLT_MIN, not a denormal or 0 */
            under &= y[k] >= 0 && y[k] <= 1.2e-38f;
        } else {
            const double rel = fabs(y[k] - exp(xe)) / exp(xe); /* (within [-87.34, 88.72]) */
            if (!(rel <= 2.5 * FLT_EPSILON)) in_range = 0;
            if (rel > worst) worst = rel;
        }
    }
    snprintf(detail, sizeof detail, "largest relative error %.3g (%.2f ulp)", worst,
             worst / FLT_EPSILON);
    check(in_range, "vexpf within 2.5 ulp of exp on [-87.33, 88.72]", detail);
    check(over, "vexpf overflows to inf past 88.72", "");
    check(under, "vexpf clamps below -87.34 (about FLT_MIN)", "");
    check(nan_ok, "vexpf: NaN in, NaN out", "");
    /* every length (the vector loops' tails) */
    int tails = 1;
    for (size_t len = 0; len <= 70; ++len) {
        for (size_t k = 0; k < len + 1; ++k) y[k] = SENTINEL;
        cymlp_vexpf_impl(x + 9000, y, len);
        for (size_t k = 0; k < len; ++k)
            tails &= fabs(y[k] - exp((double)x[9000 + k])) <= 2.5 * FLT_EPSILON * exp((double)x[9000 + k]);
        tails &= y[len] == SENTINEL;
    }
    check(tails, "vexpf: lengths 0-70, nothing written past n", "");
    free(x);
    free(y);
}

/* ---- softmax ---------------------------------------------------------------------- */
static void test_softmax(void)
{
    static const size_t outs[] = {1, 2, 3, 10, 37, 255, 256, 257, 600};
    static const size_t rows[] = {1, 3, 26, 200};
    char what[96], detail[200];
    rng_state = 4242;
    for (size_t oi = 0; oi < sizeof outs / sizeof outs[0]; ++oi)
        for (size_t ri = 0; ri < sizeof rows / sizeof rows[0]; ++ri)
            for (int weighted = 0; weighted < 2; ++weighted) {
                const size_t n_out = outs[oi], n = rows[ri], len = n * n_out;
                float *z = xmalloc((len + 1) * sizeof(float)), *z0 = xmalloc((len + 1) * sizeof(float));
                float *y = xmalloc((len + 1) * sizeof(float)), *sw = xmalloc((n + 1) * sizeof(float));
                double *row_loss = xmalloc((n + 1) * sizeof(double));
                for (size_t k = 0; k < len; ++k) {
                    z0[k] = (float)(rng_val() * 8);
                    y[k] = 0;
                }
                for (size_t i = 0; i < n; ++i) {
                    y[i * n_out + rng_int(0, n_out - 1)] = 1; /* one-hot */
                    if (i % 3 == 1 && n_out > 1) { /* or soft labels */
                        memset(y + i * n_out, 0, n_out * sizeof(float));
                        y[i * n_out] = 0.25f;
                        y[i * n_out + n_out - 1] = 0.75f;
                    }
                    sw[i] = (float)(rng_unit() * 2);
                }
                memcpy(z, z0, len * sizeof(float));
                const double loss = cymlp_softmaxf_impl(z, y, weighted ? sw : NULL, n, n_out,
                                                        row_loss);
                double ref_loss = 0, loss_scale = 0;
                int ok = 1, rows_ok = 1;
                detail[0] = 0;
                for (size_t i = 0; i < n; ++i) {
                    const float *zi = z0 + i * n_out;
                    double m = zi[0], s = 0;
                    for (size_t k = 1; k < n_out; ++k) m = zi[k] > m ? zi[k] : m;
                    for (size_t k = 0; k < n_out; ++k) s += exp(zi[k] - m);
                    const double lse = m + log(s);
                    double rl = 0, scale = 0;
                    for (size_t k = 0; k < n_out; ++k) {
                        const double p = exp(zi[k] - lse), got = z[i * n_out + k];
                        if (!(fabs(got - p) <= 4e-6 * p + 1e-30)) {
                            if (ok)
                                snprintf(detail, sizeof detail, "row %zu, output %zu: %.9g, reference %.9g",
                                         i, k, got, p);
                            ok = 0;
                        }
                        rl -= y[i * n_out + k] * (zi[k] - lse);
                        scale += fabs(y[i * n_out + k] * (zi[k] - lse)) + fabs(y[i * n_out + k] * lse);
                    }
                    const double w = weighted ? sw[i] : 1;
                    rows_ok &= fabs(row_loss[i] - w * rl) <= 4e-6 * w * scale + 1e-12;
                    ref_loss += w * rl;
                    loss_scale += w * scale;
                }
                snprintf(what, sizeof what, "softmax %zu x %zu%s: outputs", n, n_out,
                         weighted ? " weighted" : "");
                check(ok, what, detail);
                snprintf(what, sizeof what, "softmax %zu x %zu%s: loss", n, n_out,
                         weighted ? " weighted" : "");
                snprintf(detail, sizeof detail, "%.12g, reference %.12g", loss, ref_loss);
                check(fabs(loss - ref_loss) <= 4e-6 * loss_scale + 1e-12 && rows_ok, what, detail);
                /* no targets: the same outputs, loss 0 */
                float *z2 = xmalloc((len + 1) * sizeof(float));
                memcpy(z2, z0, len * sizeof(float));
                const double none = cymlp_softmaxf_impl(z2, NULL, NULL, n, n_out, NULL);
                snprintf(what, sizeof what, "softmax %zu x %zu without targets", n, n_out);
                check(none == 0 && memcmp(z, z2, len * sizeof(float)) == 0, what, "");
                free(z);
                free(z0);
                free(z2);
                free(y);
                free(sw);
                free(row_loss);
            }
}

/* pack_rows with stream (non-temporal stores, sliver by sliver) writes the bytes the plain
 * stores write, row range by row range as threads pack, for B as given and transposed:
 * into a buffer aligned to 64 bytes, where the x86-64 vector variants stream
 * (pack_streams says so), and one element past it, where they write as usual */
static void test_pack_stream(int v)
{
    static const size_t KS[] = {1, 5, 130, 300}, NS[] = {1, 7, 24, 36, 100, 130};
    char detail[160];
#ifdef CYMLP_X86
    const int streams = v != CYMLP_PORTABLE_V;
#else
    const int streams = 0;
    (void)v;
#endif
    for (int dbl = 0; dbl < 2; ++dbl) {
        const size_t esz = dbl ? sizeof(double) : sizeof(float);
        for (size_t ik = 0; ik < sizeof KS / sizeof KS[0]; ++ik) {
            for (size_t in = 0; in < sizeof NS / sizeof NS[0]; ++in) {
                const size_t K = KS[ik], N = NS[in], psize = cymlp_packed_size(K, N);
                double *Bd = xmalloc(K * N * sizeof(double));
                for (size_t k = 0; k < K * N; ++k) Bd[k] = rng_val();
                void *B = to_type(Bd, K * N, dbl);
                unsigned char *raw[3];
                unsigned char *buf[3];
                for (int b = 0; b < 3; ++b) { /* plain | streamed, aligned | misaligned */
                    raw[b] = xmalloc((psize + 1) * esz + 64);
                    buf[b] = raw[b] + (64 - (uintptr_t)raw[b] % 64) % 64 + (b == 2 ? esz : 0);
                }
                snprintf(detail, sizeof detail, "aligned: %d, misaligned: %d, expected %d, 0",
                         cymlp_pack_streams_impl(buf[1]), cymlp_pack_streams_impl(buf[2]),
                         streams);
                check(cymlp_pack_streams_impl(buf[1]) == streams
                          && cymlp_pack_streams_impl(buf[2]) == 0,
                      "pack_rows streams where it should", detail);
                for (int t = 0; t < 2; ++t) { /* B (K,N) row-major, then stored as (N,K) */
                    const ptrdiff_t rsb = t ? 1 : (ptrdiff_t)N, csb = t ? (ptrdiff_t)K : 1;
                    for (int b = 0; b < 3; ++b) {
                        memset(buf[b], 0xff, psize * esz);
                        for (size_t p0 = 0; p0 < K; p0 += (K + 2) / 3) {
                            const size_t p1 = p0 + (K + 2) / 3 < K ? p0 + (K + 2) / 3 : K;
                            if (dbl)
                                cymlp_dpack_rows_impl(K, N, p0, p1, B, rsb, csb,
                                                      (double *)buf[b], b > 0);
                            else
                                cymlp_spack_rows_impl(K, N, p0, p1, B, rsb, csb,
                                                      (float *)buf[b], b > 0);
                        }
                    }
                    for (int b = 1; b < 3; ++b) {
                        snprintf(detail, sizeof detail, "%s K=%zu N=%zu%s: %s buffer differs",
                                 dbl ? "double" : "float", K, N, t ? " transposed" : "",
                                 b == 1 ? "aligned" : "misaligned");
                        check(memcmp(buf[0], buf[b], psize * esz) == 0, "pack_rows stream",
                              detail);
                    }
                }
                for (int b = 0; b < 3; ++b) free(raw[b]);
                free(B);
                free(Bd);
            }
        }
    }
}

/* The optimizers' steps (_optim.h) of the variant in use against the portable
 * instantiation's: elementwise, without fused multiply-adds, so the same bits for every
 * length (ragged vector tails), float and double, SGD with and without (Nesterov)
 * momentum, Adam and AdamW. */
static void test_optim(void)
{
    static const size_t LENS[] = {1, 3, 8, 17, 64, 1001};
    char detail[160];
    for (int dbl = 0; dbl < 2; ++dbl)
        for (size_t li = 0; li < sizeof LENS / sizeof LENS[0]; ++li)
            for (int kind = 0; kind < 5; ++kind) {
                const size_t n = LENS[li], esz = dbl ? sizeof(double) : sizeof(float);
                void *w[2][4];
                double *g = xmalloc(n * sizeof(double));
                rng_state = 4242 + n;
                for (size_t k = 0; k < n; ++k)
                    g[k] = k % 5 == 0 ? 0 : rng_val() * pow(10.0, -12.0 + 16.0 * rng_unit());
                void *gr = to_type(g, n, dbl);
                for (int b = 0; b < 2; ++b) {
                    rng_state = 99 + n;
                    double *x = xmalloc(n * sizeof(double));
                    for (int a = 0; a < 4; ++a) {
                        for (size_t k = 0; k < n; ++k)
                            x[k] = a == 3 ? rng_unit() : a == 0 ? rng_val() : 0.1 * rng_val();
                        w[b][a] = to_type(x, n, dbl);
                    }
                    free(x);
                    /* b == 0: the variant in use; b == 1: the portable functions */
                    for (int t = 1; t <= 3; ++t) {
                        if (kind < 3) {
                            const double mu = kind == 0 ? 0 : 0.9;
                            if (dbl)
                                (b ? cymlp_sgd_step_d_portable : cymlp_dsgd_step_impl)(
                                    w[b][0], gr, w[b][1], (ptrdiff_t)n, 0.01, mu, kind == 2,
                                    0.37, 1e-4);
                            else
                                (b ? cymlp_sgd_step_f_portable : cymlp_ssgd_step_impl)(
                                    w[b][0], gr, w[b][1], (ptrdiff_t)n, 0.01f, (float)mu,
                                    kind == 2, 0.37f, 1e-4f);
                        } else {
                            const double decay = kind == 4 ? 1 - 0.001 * 0.01 : 1;
                            const double step = 0.001 * sqrt(1 - pow(0.999, t))
                                                / (1 - pow(0.9, t));
                            if (dbl)
                                (b ? cymlp_adam_step_d_portable : cymlp_dadam_step_impl)(
                                    w[b][0], gr, w[b][2], w[b][3], (ptrdiff_t)n, step, 0.9,
                                    0.999, 1 - 0.9, 1 - 0.999, 1e-8, 0.37, 1e-4, decay);
                            else
                                (b ? cymlp_adam_step_f_portable : cymlp_sadam_step_impl)(
                                    w[b][0], gr, w[b][2], w[b][3], (ptrdiff_t)n, (float)step,
                                    0.9f, 0.999f, (float)(1 - 0.9), (float)(1 - 0.999), 1e-8f,
                                    0.37f, 1e-4f, (float)decay);
                        }
                    }
                }
                int same = 1;
                for (int a = 0; a < 4; ++a) same &= memcmp(w[0][a], w[1][a], n * esz) == 0;
                static const char *const KINDS[] = {"sgd", "sgd momentum", "sgd nesterov",
                                                    "adam", "adamw"};
                snprintf(detail, sizeof detail, "%s, %s, n=%zu", KINDS[kind],
                         dbl ? "double" : "float", n);
                check(same, "optimizer step: the portable one's bits", detail);
                for (int b = 0; b < 2; ++b)
                    for (int a = 0; a < 4; ++a) free(w[b][a]);
                free(gr);
                free(g);
            }
}

/* variant v is compiled into this build (whether or not this CPU runs it) */
static int compiled_in(int v)
{
    switch (v) {
    case CYMLP_PORTABLE_V: return 1;
#ifndef CYMLP_PORTABLE
    case CYMLP_BASELINE_V: return 1;
#endif
#ifdef CYMLP_X86
    case CYMLP_AVX2_V:
    case CYMLP_AVX512_V: return 1;
#endif
    default: return 0;
    }
}

static void append(char *list, size_t size, const char *name)
{
    if (list[0]) strncat(list, ", ", size - strlen(list) - 1);
    strncat(list, name, size - strlen(list) - 1);
}

int main(void)
{
    char ran[96] = "", no_cpu[96] = "", not_built[96] = "";
    for (int v = 0; v < CYMLP_N_VARIANTS; ++v) {
        if (!cymlp_variant_available(v)) {
            append(compiled_in(v) ? no_cpu : not_built, sizeof ran, cymlp_variant_names[v]);
            continue;
        }
        cymlp_set_variant(v);
        variant = cymlp_variant_names[v];
        const int pass0 = n_pass, fail0 = n_fail;
        for (int s = 0; s < N_SHAPES; ++s) test_gemm_shape(&SHAPES[s], s);
        rng_state = 777;
        for (int r = 0; r < N_RANDOM_SHAPES; ++r) {
            const uint64_t keep = rng_state;
            shape s = {rng_int(1, 260), rng_int(1, 150), rng_int(1, 600)};
            test_gemm_shape(&s, N_SHAPES + r);
            rng_state = keep + 1;
        }
        test_apply();
        test_pack_stream(v);
        test_vexpf();
        test_softmax();
        test_optim();
        printf("test_kernels: %s: %d passed, %d failed\n", variant, n_pass - pass0,
               n_fail - fail0);
        append(ran, sizeof ran, variant);
        fflush(stdout);
    }
    cymlp_set_variant(cymlp_best_variant());
    printf("test_kernels: variants run: %s; not on this CPU: %s; not compiled in: %s; "
           "threads: %s%s\n", ran, no_cpu[0] ? no_cpu : "-", not_built[0] ? not_built : "-",
           cymlp_threads_backend(),
           CYMLP_THREADS_PARALLEL ? ", 1 and 2 threads compared" : " (nthreads 2 runs one)");
    printf("test_kernels: %d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
