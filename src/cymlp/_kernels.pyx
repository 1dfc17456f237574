# cython: language_level=3, cdivision=True
"""Matrix-product dispatch and Python entry points to the kernels, for tests and tools."""
import os

import numpy as np

from cython cimport floating


cdef extern from "_gemm.h" nogil:
    int CYMLP_N_VARIANTS
    const char *cymlp_variant_names[]
    int cymlp_variant
    void cymlp_sgemm_impl(size_t M, size_t N, size_t K, const float *A, Py_ssize_t rsa,
                          Py_ssize_t csa, const float *B, Py_ssize_t rsb, Py_ssize_t csb,
                          const float *bpacked, float *C, size_t ldc, int accumulate,
                          float *work, int nthreads, const float *bias, int op,
                          const float *aux, size_t ldaux, float slope)
    void cymlp_dgemm_impl(size_t M, size_t N, size_t K, const double *A, Py_ssize_t rsa,
                          Py_ssize_t csa, const double *B, Py_ssize_t rsb, Py_ssize_t csb,
                          const double *bpacked, double *C, size_t ldc, int accumulate,
                          double *work, int nthreads, const double *bias, int op,
                          const double *aux, size_t ldaux, double slope)
    void cymlp_sapply_impl(float *z, size_t n, int op, const float *aux, float slope)
    void cymlp_dapply_impl(double *z, size_t n, int op, const double *aux, double slope)
    void cymlp_spack_rows_impl(size_t K, size_t N, size_t p0, size_t p1, const float *B,
                               Py_ssize_t rsb, Py_ssize_t csb, float *bp)
    void cymlp_dpack_rows_impl(size_t K, size_t N, size_t p0, size_t p1, const double *B,
                               Py_ssize_t rsb, Py_ssize_t csb, double *bp)
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


cdef void sgemm(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float *A, Py_ssize_t rsa,
                Py_ssize_t csa, const float *B, Py_ssize_t rsb, Py_ssize_t csb,
                const float *bpacked, float *C, Py_ssize_t ldc, bint accumulate, float *work,
                int n_threads, const float *bias, int op, const float *aux,
                Py_ssize_t ldaux, float slope) noexcept nogil:
    cymlp_sgemm_impl(M, N, K, A, rsa, csa, B, rsb, csb, bpacked, C, ldc, accumulate, work,
                     n_threads, bias, op, aux, ldaux, slope)


cdef void dgemm(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const double *A, Py_ssize_t rsa,
                Py_ssize_t csa, const double *B, Py_ssize_t rsb, Py_ssize_t csb,
                const double *bpacked, double *C, Py_ssize_t ldc, bint accumulate,
                double *work, int n_threads, const double *bias, int op, const double *aux,
                Py_ssize_t ldaux, double slope) noexcept nogil:
    cymlp_dgemm_impl(M, N, K, A, rsa, csa, B, rsb, csb, bpacked, C, ldc, accumulate, work,
                     n_threads, bias, op, aux, ldaux, slope)


cdef void sapply(float *z, Py_ssize_t n, int op, const float *aux, float slope) noexcept nogil:
    cymlp_sapply_impl(z, n, op, aux, slope)


cdef void dapply(double *z, Py_ssize_t n, int op, const double *aux,
                 double slope) noexcept nogil:
    cymlp_dapply_impl(z, n, op, aux, slope)


cdef double softmaxf(float *z, const float *y, const float *sw, Py_ssize_t n,
                     Py_ssize_t n_out, double *row_loss) noexcept nogil:
    return cymlp_softmaxf_impl(z, y, sw, n, n_out, row_loss)


cdef void spack_rows(Py_ssize_t K, Py_ssize_t N, Py_ssize_t p0, Py_ssize_t p1, const float *B,
                     Py_ssize_t rsb, Py_ssize_t csb, float *bp) noexcept nogil:
    cymlp_spack_rows_impl(K, N, p0, p1, B, rsb, csb, bp)


cdef void dpack_rows(Py_ssize_t K, Py_ssize_t N, Py_ssize_t p0, Py_ssize_t p1,
                     const double *B, Py_ssize_t rsb, Py_ssize_t csb, double *bp) noexcept nogil:
    cymlp_dpack_rows_impl(K, N, p0, p1, B, rsb, csb, bp)


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


def matmul(floating[:, :] A, floating[:, :] B, int n_threads=1, int repeat=1,
           bint prepack=False, bias=None, int op=IDENTITY, aux=None, double slope=0.01):
    """A @ B through cymlp's kernels (any strides, e.g. transposed views); for tests and
    benchmarks (``repeat`` runs the product that many times, to time the kernel alone;
    ``prepack`` packs B once, row by row, and passes it packed, as training does with
    its weights). ``bias``, ``op``, ``aux`` and ``slope``: the epilogue fused into the
    product (see gemm_epilogue in _kernels.pxd): f(A @ B + bias) for an activation code
    ``op``, or (A @ B) * f'(aux) for DERIVATIVE + code (aux's rows may be strided)."""
    if A.shape[1] != B.shape[0]:
        raise ValueError(f"shapes ({A.shape[0]}, {A.shape[1]}) and "
                         f"({B.shape[0]}, {B.shape[1]}) do not align")
    dtype = np.float32 if floating is float else np.float64
    cdef Py_ssize_t M = A.shape[0], N = B.shape[1], K = A.shape[1]
    _check_op(op, aux, (M, N))
    C = np.empty((M, N), dtype=dtype)
    cdef floating[:, ::1] c = C
    cdef floating[::1] work = np.empty(gemm_work_size(n_threads, N), dtype=dtype)
    cdef const floating[::1] b = np.ascontiguousarray(bias if bias is not None else [0],
                                                      dtype=dtype)
    if aux is not None:
        aux = np.asarray(aux, dtype=dtype)
        if (aux.strides[1] != aux.itemsize or aux.strides[0] < 0
                or aux.strides[0] % aux.itemsize):
            aux = np.ascontiguousarray(aux)
    cdef const floating[:, :] x = aux if aux is not None else np.zeros((1, 1), dtype)
    cdef Py_ssize_t isz = sizeof(floating)
    if bias is not None and b.shape[0] != N:
        raise ValueError(f"bias must have {N} values, not {b.shape[0]}")
    if M == 0 or N == 0:
        return C
    cdef floating[::1] packed = np.empty(packed_size(K, N) if prepack and K else 1,
                                         dtype=dtype)
    # (an empty sum, K == 0, reads neither A nor B)
    cdef const floating *ap = &A[0, 0] if K else NULL
    cdef const floating *bp0 = &B[0, 0] if K else NULL
    cdef const floating *bp = NULL
    cdef int _r
    with nogil:
        if prepack and K:
            pack_rows(K, N, 0, K, bp0, B.strides[0] // isz, B.strides[1] // isz, &packed[0])
            bp = &packed[0]
        for _r in range(repeat):
            gemm_epilogue(M, N, K, ap, A.strides[0] // isz, A.strides[1] // isz, bp0,
                          B.strides[0] // isz, B.strides[1] // isz, bp, &c[0, 0], N, False,
                          &work[0], n_threads, &b[0] if bias is not None else NULL, op,
                          &x[0, 0] if aux is not None else NULL, x.strides[0] // isz,
                          <floating>slope)
    return C


def _check_op(int op, aux, shape):
    cdef int act = op - DERIVATIVE if op >= DERIVATIVE else op
    if act not in (IDENTITY, LOGISTIC, TANH, RELU, LEAKY_RELU):
        raise ValueError(f"unknown epilogue op {op}")
    if (op >= DERIVATIVE) != (aux is not None):
        raise ValueError("aux is needed by, and only by, a DERIVATIVE op")
    if aux is not None and np.shape(aux) != shape:
        raise ValueError(f"aux must have shape {shape}, not {np.shape(aux)}")


def apply_array(floating[:, ::1] z, int op, aux=None, double slope=0.01):
    """A copy of z with an epilogue op applied on its own (the variant's _gemm_epi.h code,
    as the products apply it): an activation code, or DERIVATIVE + code with aux = f(z')
    of z's shape (z * f'(aux)). For tests."""
    _check_op(op, aux, (z.shape[0], z.shape[1]))
    out = np.array(z, order="C")
    cdef floating[:, ::1] o = out
    cdef const floating[:, ::1] x = np.ascontiguousarray(aux if aux is not None else [[0]],
                                                         dtype=out.dtype)
    if o.shape[0] == 0 or o.shape[1] == 0:
        return out
    cdef const floating *a = &x[0, 0] if aux is not None else NULL
    if floating is float:
        sapply(&o[0, 0], o.shape[0] * o.shape[1], op, a, <float>slope)
    else:
        dapply(&o[0, 0], o.shape[0] * o.shape[1], op, a, slope)
    return out


def _init_variant():
    forced = os.environ.get("CYMLP_SIMD", "").strip()
    if forced:
        set_simd_variant(forced)
    else:
        set_simd_variant(None)


_init_variant()


def vexp_array(floating[::1] x):
    """e^x elementwise: for float, the vectorised exponential of the variant in use
    (_vmath.h's cymlp_expf1, the softmax's; the sigmoid's is the same on vectors); for
    double, libm's exp. For tests."""
    out = np.empty(x.shape[0], dtype=np.float32 if floating is float else np.float64)
    cdef floating[::1] o = out
    cdef Py_ssize_t k
    if x.shape[0] == 0:
        return out
    if floating is float:
        cymlp_vexpf_impl(&x[0], &o[0], x.shape[0])
    else:
        for k in range(x.shape[0]):
            o[k] = exp(x[k])
    return out


def sigmoid_array(float[::1] z):
    """1 / (1 + e^-z) elementwise, in float, as the hidden layers compute it; for tests."""
    return apply_array(np.reshape(z, (1, -1)), LOGISTIC)[0]


def softmax_array(float[:, ::1] z, float[:, ::1] y=None):
    """Softmax of each row of z and the rows' cross-entropy losses against y (or None),
    in float, as the output layer computes them; for tests."""
    out = np.array(z, dtype=np.float32)
    losses = np.zeros(z.shape[0], dtype=np.float64)
    cdef float[:, ::1] o = out
    cdef double[::1] rl = losses
    if y is not None and (y.shape[0] != z.shape[0] or y.shape[1] != z.shape[1]):
        raise ValueError("y must have z's shape")
    if o.shape[0] and o.shape[1]:
        softmaxf(&o[0, 0], &y[0, 0] if y is not None else NULL, NULL, o.shape[0],
                 o.shape[1], &rl[0])
    return out, losses
