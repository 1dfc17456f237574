# cython: language_level=3, cdivision=True
"""The native code's Cython face: the products' run-time SIMD dispatch, the threads, and
the cdef wrappers the engine calls (see _kernels.pxd). Python entry points for tests
live in cymlp._testing."""
import os


cdef extern from "_gemm.h" nogil:
    int CYMLP_N_VARIANTS
    const char *cymlp_variant_names[]
    int cymlp_variant
    void cymlp_sgemm_impl(size_t M, size_t N, size_t K, const float *A, Py_ssize_t rsa,
                          Py_ssize_t csa, const float *B, Py_ssize_t rsb, Py_ssize_t csb,
                          const float *bpacked, float *C, size_t ldc, int flags,
                          float *work, int nthreads, const float *bias, int op,
                          const float *aux, size_t ldaux, float slope)
    void cymlp_dgemm_impl(size_t M, size_t N, size_t K, const double *A, Py_ssize_t rsa,
                          Py_ssize_t csa, const double *B, Py_ssize_t rsb, Py_ssize_t csb,
                          const double *bpacked, double *C, size_t ldc, int flags,
                          double *work, int nthreads, const double *bias, int op,
                          const double *aux, size_t ldaux, double slope)
    void cymlp_sapply_impl(float *z, size_t n, int op, const float *aux, float slope)
    void cymlp_dapply_impl(double *z, size_t n, int op, const double *aux, double slope)
    void cymlp_spack_rows_impl(size_t K, size_t N, size_t p0, size_t p1, const float *B,
                               Py_ssize_t rsb, Py_ssize_t csb, float *bp, int stream)
    void cymlp_dpack_rows_impl(size_t K, size_t N, size_t p0, size_t p1, const double *B,
                               Py_ssize_t rsb, Py_ssize_t csb, double *bp, int stream)
    size_t cymlp_packed_size(size_t K, size_t N)
    int CYMLP_GEMM_SMALL_M
    size_t cymlp_gemm_work_size(int nthreads, size_t max_n)
    int cymlp_variant_available(int v)
    void cymlp_set_variant(int v)
    int cymlp_best_variant()
    int cymlp_have_openmp()
    int cymlp_max_threads()
    ctypedef void (*cymlp_task_fn)(void *ctx, int t, int n) noexcept nogil
    int cymlp_parallel_for(int n, cymlp_task_fn fn, void *ctx)
    const char *cymlp_threads_backend()
    unsigned long cymlp_fp_enter()
    void cymlp_fp_leave(unsigned long old)
    void cymlp_vexpf_impl(const float *x, float *out, size_t n)
    double cymlp_softmaxf_impl(float *z, const float *y, const float *sw, size_t n,
                               size_t n_out, double *row_loss)
    void cymlp_ssgd_step_impl(float *params, const float *grads, float *velocity,
                              Py_ssize_t size, float eta, float mu, int nesterov, float scale,
                              float l2)
    void cymlp_dsgd_step_impl(double *params, const double *grads, double *velocity,
                              Py_ssize_t size, double eta, double mu, int nesterov,
                              double scale, double l2)
    void cymlp_sadam_step_impl(float *params, const float *grads, float *m, float *v,
                               Py_ssize_t size, float step, float b1, float b2, float c1,
                               float c2, float eps, float scale, float l2, float decay)
    void cymlp_dadam_step_impl(double *params, const double *grads, double *m, double *v,
                               Py_ssize_t size, double step, double b1, double b2,
                               double c1, double c2, double eps, double scale, double l2,
                               double decay)


cdef void sgemm(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float *A, Py_ssize_t rsa,
                Py_ssize_t csa, const float *B, Py_ssize_t rsb, Py_ssize_t csb,
                const float *bpacked, float *C, Py_ssize_t ldc, int flags, float *work,
                int n_threads, const float *bias, int op, const float *aux,
                Py_ssize_t ldaux, float slope) noexcept nogil:
    cymlp_sgemm_impl(M, N, K, A, rsa, csa, B, rsb, csb, bpacked, C, ldc, flags, work,
                     n_threads, bias, op, aux, ldaux, slope)


cdef void dgemm(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const double *A, Py_ssize_t rsa,
                Py_ssize_t csa, const double *B, Py_ssize_t rsb, Py_ssize_t csb,
                const double *bpacked, double *C, Py_ssize_t ldc, int flags,
                double *work, int n_threads, const double *bias, int op, const double *aux,
                Py_ssize_t ldaux, double slope) noexcept nogil:
    cymlp_dgemm_impl(M, N, K, A, rsa, csa, B, rsb, csb, bpacked, C, ldc, flags, work,
                     n_threads, bias, op, aux, ldaux, slope)


cdef void sapply(float *z, Py_ssize_t n, int op, const float *aux, float slope) noexcept nogil:
    cymlp_sapply_impl(z, n, op, aux, slope)


cdef void dapply(double *z, Py_ssize_t n, int op, const double *aux,
                 double slope) noexcept nogil:
    cymlp_dapply_impl(z, n, op, aux, slope)


cdef double softmaxf(float *z, const float *y, const float *sw, Py_ssize_t n,
                     Py_ssize_t n_out, double *row_loss) noexcept nogil:
    return cymlp_softmaxf_impl(z, y, sw, n, n_out, row_loss)


cdef void vexpf(const float *x, float *out, Py_ssize_t n) noexcept nogil:
    cymlp_vexpf_impl(x, out, n)


cdef void ssgd_step(float *params, const float *grads, float *velocity, Py_ssize_t size,
                    float eta, float mu, bint nesterov, float scale,
                    float l2) noexcept nogil:
    cymlp_ssgd_step_impl(params, grads, velocity, size, eta, mu, nesterov, scale, l2)


cdef void dsgd_step(double *params, const double *grads, double *velocity, Py_ssize_t size,
                    double eta, double mu, bint nesterov, double scale,
                    double l2) noexcept nogil:
    cymlp_dsgd_step_impl(params, grads, velocity, size, eta, mu, nesterov, scale, l2)


cdef void sadam_step(float *params, const float *grads, float *m, float *v, Py_ssize_t size,
                     float step, float b1, float b2, float c1, float c2, float eps,
                     float scale, float l2, float decay) noexcept nogil:
    cymlp_sadam_step_impl(params, grads, m, v, size, step, b1, b2, c1, c2, eps, scale, l2,
                          decay)


cdef void dadam_step(double *params, const double *grads, double *m, double *v,
                     Py_ssize_t size, double step, double b1, double b2, double c1, double c2,
                     double eps, double scale, double l2, double decay) noexcept nogil:
    cymlp_dadam_step_impl(params, grads, m, v, size, step, b1, b2, c1, c2, eps, scale, l2,
                          decay)


cdef void spack_rows(Py_ssize_t K, Py_ssize_t N, Py_ssize_t p0, Py_ssize_t p1, const float *B,
                     Py_ssize_t rsb, Py_ssize_t csb, float *bp, bint stream) noexcept nogil:
    cymlp_spack_rows_impl(K, N, p0, p1, B, rsb, csb, bp, stream)


cdef void dpack_rows(Py_ssize_t K, Py_ssize_t N, Py_ssize_t p0, Py_ssize_t p1,
                     const double *B, Py_ssize_t rsb, Py_ssize_t csb, double *bp,
                     bint stream) noexcept nogil:
    cymlp_dpack_rows_impl(K, N, p0, p1, B, rsb, csb, bp, stream)


cdef Py_ssize_t packed_size(Py_ssize_t K, Py_ssize_t N) noexcept nogil:
    return cymlp_packed_size(K, N)


cdef Py_ssize_t gemm_small_m() noexcept nogil:
    return CYMLP_GEMM_SMALL_M


cdef Py_ssize_t gemm_work_size(int n_threads, Py_ssize_t max_n) noexcept nogil:
    return cymlp_gemm_work_size(n_threads, max_n)


cdef int parallel_for(int n, task_fn fn, void *ctx) noexcept nogil:
    return cymlp_parallel_for(n, <cymlp_task_fn>fn, ctx)


cdef unsigned long fp_enter() noexcept nogil:
    return cymlp_fp_enter()


cdef void fp_leave(unsigned long old) noexcept nogil:
    cymlp_fp_leave(old)


def simd_variants():
    """Names of the matrix-product variants compiled in and runnable on this CPU."""
    return [cymlp_variant_names[v].decode() for v in range(CYMLP_N_VARIANTS)
            if cymlp_variant_available(v)]


def simd_variant():
    """Name of the matrix-product variant in use."""
    return cymlp_variant_names[cymlp_variant].decode()


def set_simd_variant(name=None):
    """Use the named variant (see :func:`simd_variants`); None picks the best for this CPU.

    Not thread-safe with respect to running fits: call it before training.
    """
    if name is None:
        cymlp_set_variant(cymlp_best_variant())
        return simd_variant()
    names = [cymlp_variant_names[v].decode() for v in range(CYMLP_N_VARIANTS)]
    if name not in names:
        raise ValueError(f"unknown SIMD variant {name!r}; expected one of {names}")
    v = names.index(name)
    if not cymlp_variant_available(v):
        raise ValueError(f"SIMD variant {name!r} is not available on this CPU or build; "
                         f"available: {simd_variants()}")
    cymlp_set_variant(v)
    return name


def openmp_enabled():
    """True when the threads are OpenMP's (threads_backend() == "openmp")."""
    return bool(cymlp_have_openmp())


def threads_backend():
    """The threading backend compiled in: "openmp", "pthreads" (a pool of POSIX threads),
    "win32" (the same pool on Windows threads) or "none" (one thread)."""
    return cymlp_threads_backend().decode()


def max_threads():
    """The default thread count (n_jobs=None): OpenMP's (omp_get_max_threads:
    OMP_NUM_THREADS, threadpoolctl's limit, or the cores) with OpenMP; with the pools,
    OMP_NUM_THREADS when set, else the CPUs this process may run on; 1 without threads."""
    return cymlp_max_threads()


def _init_variant():
    forced = os.environ.get("CYMLP_SIMD", "").strip()
    if forced:
        set_simd_variant(forced)
    else:
        set_simd_variant(None)


_init_variant()
