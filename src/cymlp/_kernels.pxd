# cython: language_level=3
"""Kernels of training: matrix products, activations and their derivatives, output layer.

Everything here is ``noexcept nogil`` and trusts its inputs (shapes, strides and
finiteness are checked at the Python boundary, in ``cymlp._estimators``). Float and
double share one source through the ``floating`` fused type. The equations refer to
the paper in ``shared/reference`` and are derived in ``docs/math.md``.
"""
from libc.math cimport exp, expf, fabs, fabsf, log, log1p, log1pf, logf
cimport cython
from cython cimport floating

# Activation codes, this layer's table of them (docs/extending.md): cymlp._model.ACTIVATIONS
# maps the names to these codes. The hidden ones are also the matrix products' epilogue
# ops (_native/_gemm_epi.h: forward f, and with DERIVATIVE added x * f'(a)); the scalar
# f'(a) for the dropout path is activation_derivative below.
cdef enum:
    IDENTITY = 0
    LOGISTIC = 1
    TANH = 2
    RELU = 3
    LEAKY_RELU = 4
    SOFTMAX = 5
    EXP = 6  # output only: Poisson regression's log link
    DERIVATIVE = 16  # epilogue op x * f'(a) instead of f(x) (_gemm_epi.h's CYMLP_DERIV)

# Matrix products (implemented in _kernels.pyx over _gemm.h, run-time SIMD dispatch).
# flags: GEMM_ACCUMULATE (C += op(A) . op(B), else C =) | GEMM_DENSE_A (op(A) has few
# zeros: no scan for the steps where a tile's rows are all zero; the same bits either way)
cdef extern from "_gemm_defs.h":
    enum:
        GEMM_ACCUMULATE "CYMLP_GEMM_ACCUMULATE"
        GEMM_DENSE_A "CYMLP_GEMM_DENSE_A"
cdef void sgemm(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float *A, Py_ssize_t rsa,
                Py_ssize_t csa, const float *B, Py_ssize_t rsb, Py_ssize_t csb,
                const float *bpacked, float *C, Py_ssize_t ldc, int flags, float *work,
                int n_threads, const float *bias, int op, const float *aux,
                Py_ssize_t ldaux, float slope) noexcept nogil
cdef void dgemm(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const double *A, Py_ssize_t rsa,
                Py_ssize_t csa, const double *B, Py_ssize_t rsb, Py_ssize_t csb,
                const double *bpacked, double *C, Py_ssize_t ldc, int flags,
                double *work, int n_threads, const double *bias, int op, const double *aux,
                Py_ssize_t ldaux, double slope) noexcept nogil
# an epilogue op on z[0:n) in place (aux: a[0:n) of a DERIVATIVE op), by the variant in use
cdef void sapply(float *z, Py_ssize_t n, int op, const float *aux, float slope) noexcept nogil
cdef void dapply(double *z, Py_ssize_t n, int op, const double *aux,
                 double slope) noexcept nogil
cdef void spack_rows(Py_ssize_t K, Py_ssize_t N, Py_ssize_t p0, Py_ssize_t p1, const float *B,
                     Py_ssize_t rsb, Py_ssize_t csb, float *bp, bint stream) noexcept nogil
cdef void dpack_rows(Py_ssize_t K, Py_ssize_t N, Py_ssize_t p0, Py_ssize_t p1,
                     const double *B, Py_ssize_t rsb, Py_ssize_t csb, double *bp,
                     bint stream) noexcept nogil
# the optimizers' elementwise steps (_optim.h), by the variant in use: the same bits on
# every variant (no fused multiply-adds); _optim.pxd's sgd_step and adam_step call them
cdef void ssgd_step(float *params, const float *grads, float *velocity, Py_ssize_t size,
                    float eta, float mu, bint nesterov, float scale, float l2) noexcept nogil
cdef void dsgd_step(double *params, const double *grads, double *velocity, Py_ssize_t size,
                    double eta, double mu, bint nesterov, double scale,
                    double l2) noexcept nogil
cdef void sadam_step(float *params, const float *grads, float *m, float *v, Py_ssize_t size,
                     float step, float b1, float b2, float c1, float c2, float eps,
                     float scale, float l2, float decay) noexcept nogil
cdef void dadam_step(double *params, const double *grads, double *m, double *v,
                     Py_ssize_t size, double step, double b1, double b2, double c1, double c2,
                     double eps, double scale, double l2, double decay) noexcept nogil
# elements of a packed K x N matrix for gemm's bpacked (any variant)
cdef Py_ssize_t packed_size(Py_ssize_t K, Py_ssize_t N) noexcept nogil
# rows of C up to which gemm reads B directly and ignores bpacked
cdef Py_ssize_t gemm_small_m() noexcept nogil
cdef Py_ssize_t gemm_work_size(int n_threads, Py_ssize_t max_n) noexcept nogil
# Threads (_threads.h): fn(ctx, t, n) once for each t in [0, n), concurrently on up to n
# threads (the caller runs tasks too); returns when all have returned, with the number of
# threads that ran tasks. Split work by t and n only, never by the threads that ran, so
# that results do not depend on the thread count. Each task sets its own FP mode.
ctypedef void (*task_fn)(void *ctx, int t, int n) noexcept nogil
cdef int parallel_for(int n, task_fn fn, void *ctx) noexcept nogil
# flush-to-zero / denormals-are-zero for this thread; returns the mode to restore
cdef unsigned long fp_enter() noexcept nogil
cdef void fp_leave(unsigned long old) noexcept nogil
# softmax rows in place and their loss, in float (see output_forward and _vmath.h);
# row_loss: NULL, or each row's weighted loss
cdef double softmaxf(float *z, const float *y, const float *sw, Py_ssize_t n,
                     Py_ssize_t n_out, double *row_loss) noexcept nogil
# e^x elementwise in float, the variant's vector exponential (_vmath.h)
cdef void vexpf(const float *x, float *out, Py_ssize_t n) noexcept nogil


cdef inline void gemm(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const floating *A,
                      Py_ssize_t rsa, Py_ssize_t csa, const floating *B, Py_ssize_t rsb,
                      Py_ssize_t csb, const floating *bpacked, floating *C, Py_ssize_t ldc,
                      int flags, floating *work, int n_threads) noexcept nogil:
    """C (M,N) [+]= op(A) (M,K) . op(B) (K,N); op(A)[i,p] = A[i*rsa + p*csa], same for B.
    flags: GEMM_ACCUMULATE (+=), GEMM_DENSE_A (no scan of A for zero steps), or 0.

    bpacked: NULL, or op(B) already packed by pack_rows (B is still read directly by the
    path for one or two rows). work: gemm_work_size(n_threads, N) elements, always (A
    may be packed into it when csa != 1)."""
    gemm_epilogue(M, N, K, A, rsa, csa, B, rsb, csb, bpacked, C, ldc, flags, work,
                  n_threads, NULL, IDENTITY, NULL, 0, 0)


cdef inline void gemm_epilogue(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const floating *A,
                               Py_ssize_t rsa, Py_ssize_t csa, const floating *B,
                               Py_ssize_t rsb, Py_ssize_t csb, const floating *bpacked,
                               floating *C, Py_ssize_t ldc, int flags, floating *work,
                               int n_threads, const floating *bias, int op,
                               const floating *aux, Py_ssize_t ldaux,
                               floating slope) noexcept nogil:
    """gemm, with the epilogue fused into the kernel (see _gemm_epi.h): each row of C gets
    ``bias`` (N values, or NULL; not when accumulating) added with the product, then the
    activation ``op`` (IDENTITY: none) applied to each element, or with ``op`` =
    DERIVATIVE + act, each element x becomes x * act'(a), a the element of ``aux`` (M, N,
    row stride ldaux) at the same place. ``slope``: leaky relu's."""
    if floating is float:
        sgemm(M, N, K, A, rsa, csa, B, rsb, csb, bpacked, C, ldc, flags, work, n_threads,
              bias, op, aux, ldaux, slope)
    else:
        dgemm(M, N, K, A, rsa, csa, B, rsb, csb, bpacked, C, ldc, flags, work, n_threads,
              bias, op, aux, ldaux, slope)


cdef inline void pack_rows(Py_ssize_t K, Py_ssize_t N, Py_ssize_t p0, Py_ssize_t p1,
                           const floating *B, Py_ssize_t rsb, Py_ssize_t csb,
                           floating *bp, bint stream=False) noexcept nogil:
    """Rows p0..p1 of op(B) (K,N) into bp (packed_size(K, N) elements), for gemm's bpacked.
    Disjoint row ranges may be packed by different threads. ``stream``: with non-temporal
    stores, for a copy that other threads read next (the same values; see pack_rows in
    _gemm_impl.h)."""
    if floating is float:
        spack_rows(K, N, p0, p1, B, rsb, csb, bp, stream)
    else:
        dpack_rows(K, N, p0, p1, B, rsb, csb, bp, stream)


cdef inline floating _exp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating _log(floating x) noexcept nogil:
    if floating is float:
        return logf(x)
    else:
        return log(x)


cdef inline floating _log1p(floating x) noexcept nogil:
    if floating is float:
        return log1pf(x)
    else:
        return log1p(x)


cdef inline floating _abs(floating x) noexcept nogil:
    if floating is float:
        return fabsf(x)
    else:
        return fabs(x)


cdef inline void dense_forward(const floating *a, const floating *W, const floating *b,
                               floating *z, Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                               const floating *W_packed, floating *work, int n_threads,
                               int act, floating slope, int a_flags=0) noexcept nogil:
    """Dense layer and its activation, z = f(a.W + b) (paper §4.3.2), in one pass: the
    bias and f are the product's epilogue.

    a (n, n_in), W (n_in, n_out), b (n_out,), z (n, n_out); row-major. W_packed: NULL or
    W packed by pack_rows. act: a hidden activation code, or IDENTITY (the output layer's
    logits); slope: leaky relu's. a_flags: GEMM_DENSE_A when a has few zeros.
    """
    gemm_epilogue(n, n_out, n_in, a, n_in, 1, W, n_out, 1, W_packed, z, n_out, a_flags, work,
                  n_threads, b, act, <const floating *>NULL, 0, slope)


cdef inline void dense_backward(const floating *a, const floating *W, const floating *delta,
                                floating *grad_W, floating *grad_b, floating *delta_prev,
                                Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                                floating *work, int n_threads, int act,
                                floating slope, int a_flags=0, int d_flags=0) noexcept nogil:
    """Gradient sums of a dense layer given delta = dLoss/dz (paper §4.3.3).

    a (n, n_in), W (n_in, n_out), delta (n, n_out) -> grad_W (n_in, n_out), grad_b (n_out,)
    grad_W = a^T . delta,   grad_b = sum_i delta[i]   (not yet averaged: the optimizer
    step applies 1 / sum(sample_weight) and the L2 term, see _optim)
    delta_prev (n, n_in) = (delta . W^T) * f'(a), f the activation ``act`` that made a
    (the derivative is the product's epilogue; skipped when delta_prev is NULL)
    a_flags, d_flags: GEMM_DENSE_A when a, delta have few zeros.
    """
    cdef Py_ssize_t i, j
    gemm(n_in, n_out, n, a, 1, n_in, delta, n_out, 1, NULL, grad_W, n_out, a_flags, work,
         n_threads)
    for j in range(n_out):
        grad_b[j] = 0
    for i in range(n):
        for j in range(n_out):
            grad_b[j] += delta[i * n_out + j]
    if delta_prev != NULL:
        gemm_epilogue(n, n_in, n_out, delta, n_out, 1, W, 1, n_out, NULL, delta_prev, n_in,
                      d_flags, work, n_threads, NULL, derivative_op(act), a, n_in, slope)


cdef inline int derivative_op(int act) noexcept nogil:
    """The epilogue op that multiplies by act' (IDENTITY for the identity: nothing)."""
    return DERIVATIVE + act if act != IDENTITY else IDENTITY


cdef inline floating activation_derivative(int act, floating a, floating slope) noexcept nogil:
    """f'(z) from a = f(z), one element (as the backward's epilogue, _gemm_epi.h)."""
    if act == LOGISTIC:
        return a * (<floating>1 - a)
    elif act == TANH:
        return <floating>1 - a * a
    elif act == RELU:
        return 1 if a > 0 else 0
    elif act == LEAKY_RELU:
        return 1 if a > 0 else slope
    return 1


@cython.cdivision(True)
cdef inline double output_forward(int act, floating *z, const floating *y, const floating *sw,
                                  Py_ssize_t n, Py_ssize_t n_out,
                                  double *row_losses) noexcept nogil:
    """Output layer: turns logits z (n, n_out) into outputs in place; returns the summed loss,
    each row weighted by sw[i] (sw NULL = all ones), and stores each row's weighted loss
    in row_losses[i] unless row_losses is NULL.

    softmax: p_k = exp(z_k - max z) / sum_i exp(z_i - max z) (paper §2.2.4, max-subtracted),
             loss = -sum_k y_k log p_k with log p_k = z_k - max z - log sum_i exp(z_i - max z),
             so no log(0) and no overflow for any finite logits;
    logistic: p = sigma(z), loss = -[y log p + (1 - y) log(1 - p)]
              = max(z, 0) - y z + log(1 + e^-|z|);
    exp (Poisson): mu = e^z, loss = y log(y / mu) - y + mu = y log y - y z - y + e^z;
    identity: loss = (z - y)^2 / 2.
    When y is NULL only the outputs are computed (returns 0).
    """
    cdef Py_ssize_t i, k
    cdef floating m, s, zk, lse, yk
    cdef floating *row
    cdef double loss = 0, row_loss
    if floating is float:
        if act == SOFTMAX:
            return softmaxf(z, y, sw, n, n_out, row_losses)  # vectorised exp, _vmath.h
    if act == SOFTMAX:
        for i in range(n):
            row = z + i * n_out
            m = row[0]
            for k in range(1, n_out):
                if row[k] > m:
                    m = row[k]
            s = 0
            for k in range(n_out):
                s += _exp(row[k] - m)
            lse = m + _log(s)
            if y != NULL:
                row_loss = 0
                for k in range(n_out):
                    if y[i * n_out + k] != 0:
                        row_loss -= y[i * n_out + k] * (row[k] - lse)
                if sw != NULL:
                    row_loss = sw[i] * row_loss
                loss += row_loss
                if row_losses != NULL:
                    row_losses[i] = row_loss
            for k in range(n_out):
                row[k] = _exp(row[k] - lse)
        return loss
    for i in range(n):
        row = z + i * n_out
        row_loss = 0
        for k in range(n_out):
            zk = row[k]
            if act == LOGISTIC:
                if y != NULL:
                    row_loss += ((zk if zk > 0 else 0) - y[i * n_out + k] * zk
                                 + _log1p(_exp(-_abs(zk))))
                row[k] = <floating>1 / (<floating>1 + _exp(-zk))
            elif act == EXP:
                row[k] = _exp(zk)
                if y != NULL:
                    yk = y[i * n_out + k]
                    row_loss += (yk * _log(yk) if yk > 0 else 0) - yk * zk - yk + row[k]
            elif y != NULL:
                row_loss += 0.5 * (zk - y[i * n_out + k]) * (zk - y[i * n_out + k])
        if y != NULL:
            if sw != NULL:
                row_loss = sw[i] * row_loss
            loss += row_loss
            if row_losses != NULL:
                row_losses[i] = row_loss
    return loss


cdef inline void output_log_proba(int act, floating *z, Py_ssize_t n,
                                  Py_ssize_t n_out) noexcept nogil:
    """log of the output probabilities from logits z (n, n_out), in place, never -inf
    for finite logits: log-softmax z_k - logsumexp(z); log sigma(z) = -log(1 + e^-z)."""
    cdef Py_ssize_t i, k
    cdef floating m, s, zk
    cdef floating *row
    if act == SOFTMAX:
        for i in range(n):
            row = z + i * n_out
            m = row[0]
            for k in range(1, n_out):
                if row[k] > m:
                    m = row[k]
            s = 0
            for k in range(n_out):
                s += _exp(row[k] - m)
            s = m + _log(s)
            for k in range(n_out):
                row[k] -= s
    elif act == LOGISTIC:
        for k in range(n * n_out):
            zk = z[k]
            z[k] = (zk if zk < 0 else 0) - _log1p(_exp(-_abs(zk)))
