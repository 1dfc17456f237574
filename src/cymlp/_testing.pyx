# cython: language_level=3, cdivision=True
"""Python entry points to single kernels, for tests and benchmarks: products with their
epilogues, the vector exponential, softmax, and the optimizer steps. The estimators and
the engine never import this module."""
import numpy as np

from cymlp._model import ACTIVATIONS

from libc.math cimport exp
from libc.string cimport memset
from cython cimport floating

from cymlp._kernels cimport (DERIVATIVE, GEMM_DENSE_A, IDENTITY, LOGISTIC, dapply,
                             gemm_epilogue, gemm_work_size, pack_rows, packed_size,
                             parallel_for, sapply, softmaxf, vexpf)
from cymlp._optim cimport Optimizer, adam_step, sgd_step
from cymlp._optim cimport scheduled_lr as scheduled_lr_c


def matmul(floating[:, :] A, floating[:, :] B, int n_threads=1, int repeat=1,
           bint prepack=False, bias=None, int op=IDENTITY, aux=None, double slope=0.01,
           bint dense_a=False):
    """A @ B through cymlp's kernels (any strides, e.g. transposed views); for tests and
    benchmarks (``repeat`` runs the product that many times, to time the kernel alone;
    ``prepack`` packs B once, row by row, and passes it packed, as training does with
    its weights). ``bias``, ``op``, ``aux`` and ``slope``: the epilogue fused into the
    product (see gemm_epilogue in _kernels.pxd): f(A @ B + bias) for an activation code
    ``op``, or (A @ B) * f'(aux) for DERIVATIVE + code (aux's rows may be strided).
    ``dense_a``: the GEMM_DENSE_A flag, no scan of A for zero steps (the same bits)."""
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
                          B.strides[0] // isz, B.strides[1] // isz, bp, &c[0, 0], N,
                          GEMM_DENSE_A if dense_a else 0, &work[0], n_threads,
                          &b[0] if bias is not None else NULL, op,
                          &x[0, 0] if aux is not None else NULL, x.strides[0] // isz,
                          <floating>slope)
    return C


def _check_op(int op, aux, shape):
    cdef int act = op - DERIVATIVE if op >= DERIVATIVE else op
    if act not in ACTIVATIONS.values():  # (the hidden activations are the epilogue ops)
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
        vexpf(&x[0], &o[0], x.shape[0])
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


def sgd(floating[::1] params, floating[::1] grads, floating[::1] velocity, double lr,
        double momentum=0.0, bint nesterov=False, double scale=1.0, double l2=0.0):
    """One SGD step in place on g = scale * (grads + l2 * params) (see sgd_step)."""
    if not params.shape[0] == grads.shape[0] == velocity.shape[0]:
        raise ValueError("params, grads and velocity must have the same length")
    with nogil:
        sgd_step(&params[0], &grads[0], &velocity[0], params.shape[0], lr, momentum, nesterov,
                 <floating>scale, <floating>l2)


def adam(floating[::1] params, floating[::1] grads, floating[::1] m, floating[::1] v,
         double lr, double beta_1, double beta_2, double epsilon, long long t,
         double scale=1.0, double l2=0.0, double weight_decay=0.0):
    """One Adam step in place on g = scale * (grads + l2 * params) (see adam_step);
    t >= 1 counts the steps taken; weight_decay > 0: AdamW's decoupled decay."""
    if not params.shape[0] == grads.shape[0] == m.shape[0] == v.shape[0]:
        raise ValueError("params, grads, m and v must have the same length")
    if t < 1:
        raise ValueError("t must be >= 1")
    with nogil:
        adam_step(&params[0], &grads[0], &m[0], &v[0], params.shape[0], lr, beta_1, beta_2,
                  epsilon, t, <floating>scale, <floating>l2, weight_decay)


def scheduled_lr(int schedule, double lr, double total_steps, double warmup_steps,
                 long long t):
    """The learning rate of update t (>= 1) under a per-step schedule code (see
    _optim.scheduled_lr), as the engine computes it."""
    cdef Optimizer opt
    opt.schedule = schedule
    opt.lr = opt.lr_max = lr
    opt.total_steps = total_steps
    opt.warmup_steps = warmup_steps
    return scheduled_lr_c(&opt, t)


cdef extern from *:
    """
    /* Two tasks pass one cache line back and forth (core_to_core_ns). The flag is the
     * 16th of 32 longs so that it shares its line with nothing else written. */
    #include "_clock.h"
    #if defined(_MSC_VER) && !defined(__clang__)
    #include <intrin.h>
    /* x64: volatile loads acquire and volatile stores release (/volatile:ms) */
    static long cymlp_pp_load(volatile long *p) { return *p; }
    static void cymlp_pp_store(volatile long *p, long v) { *p = v; }
    static int cymlp_pp_claim(volatile long *p) {
        return _InterlockedCompareExchange(p, 1, 0) == 0;
    }
    #else
    static long cymlp_pp_load(volatile long *p) {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
    }
    static void cymlp_pp_store(volatile long *p, long v) {
        __atomic_store_n(p, v, __ATOMIC_RELEASE);
    }
    static int cymlp_pp_claim(volatile long *p) {
        long expected = 0;
        return __atomic_compare_exchange_n(p, &expected, 1, 0, __ATOMIC_SEQ_CST,
                                           __ATOMIC_SEQ_CST);
    }
    #endif
    typedef struct {
        volatile long line[32];
        long rounds;
        double seconds, timeout;
    } cymlp_pp;

    /* wait until *flag == want; returns 0 on -1 (abandoned) or after `timeout` seconds */
    static int cymlp_pp_wait(cymlp_pp *c, long want) {
        volatile long *flag = &c->line[16];
        double until = 0;
        for (unsigned long k = 1;; ++k) {
            const long v = cymlp_pp_load(flag);
            if (v == want) return 1;
            if (v < 0) return 0;
            if (k % 4096 == 0) {
                const double now = cymlp_clock_now();
                if (until == 0) until = now + c->timeout;
                else if (now > until) return 0;
            }
        }
    }

    static void cymlp_pp_task(void *ctx, int t, int n) {
        cymlp_pp *c = (cymlp_pp *)ctx;
        volatile long *flag = &c->line[16];
        (void)n;
        if (t == 1) {  /* ready, then answer each odd value with the next even one */
            if (!cymlp_pp_claim(flag)) return;
            for (long i = 0; i < c->rounds; ++i) {
                if (!cymlp_pp_wait(c, 2 * i + 2)) return;
                cymlp_pp_store(flag, 2 * i + 3);
            }
        } else if (t == 0) {
            if (!cymlp_pp_wait(c, 1)) {  /* task 1 is not running alongside */
                cymlp_pp_store(flag, -1);
                return;
            }
            const double t0 = cymlp_clock_now();
            for (long i = 0; i < c->rounds; ++i) {
                cymlp_pp_store(flag, 2 * i + 2);
                if (!cymlp_pp_wait(c, 2 * i + 3)) {
                    cymlp_pp_store(flag, -1);
                    return;
                }
            }
            c->seconds = cymlp_clock_now() - t0;
        }
    }
    """
    ctypedef struct cymlp_pp:
        long rounds
        double seconds, timeout
    void cymlp_pp_task(void *ctx, int t, int n) noexcept nogil


def core_to_core_ns(long rounds=20000, double timeout=0.2):
    """Round trip of one cache line between two of cymlp's threads, in nanoseconds: two
    tasks pass a counter back and forth ``rounds`` times, each waiting for the other's
    store. It measures what the cores' caches charge for the data a second thread shares
    (on a virtual machine it follows where the hypervisor placed the two vCPUs). NaN when
    the two tasks did not run at the same time (one thread, or a wait longer than
    ``timeout`` seconds, for example while a core was taken)."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    cdef cymlp_pp c
    memset(&c, 0, sizeof(c))
    c.rounds = rounds
    c.timeout = timeout
    c.seconds = -1
    with nogil:
        parallel_for(2, cymlp_pp_task, &c)
    return c.seconds / rounds * 1e9 if c.seconds >= 0 else float("nan")
