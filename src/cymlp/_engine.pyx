# cython: language_level=3, cdivision=True
"""The training loop: forward, backward and update for a whole epoch under ``nogil``.

A network is a list of layer widths ``sizes = (n_in, h_1, ..., n_out)``, one hidden
activation and one output activation. All weights and biases live in one flat buffer
``params``, laid out as ``W_0 (n_in, h_1), b_0 (h_1,), W_1, b_1, ...`` (row-major), so
the optimizers, L-BFGS and model files see a single vector and ``coefs_`` /
``intercepts_`` are views into it. Scratch memory (``ws``) is allocated once per fit by
the engine object, sized by its layout; nothing is allocated per batch.

Input rows come either from a dense C-contiguous ``X`` or from a CSR matrix
(``data, indices, indptr``); CSR rows are scattered into a dense batch buffer one
batch at a time, so a sparse data set is never densified whole.

The entry points are the methods of :class:`Engine`. They check the arrays' dtypes,
shapes and contiguity (so that no call from Python can crash here); the values
(finiteness, labels) are the callers' to validate, in ``cymlp._estimators``.
"""
from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBuffer_Release, PyObject_GetBuffer
from libc.float cimport DBL_MIN, FLT_MIN
from libc.math cimport sqrt
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset
from cython cimport floating

from cymlp._kernels cimport (GEMM_DENSE_A, IDENTITY, LOGISTIC, RELU, SOFTMAX,
                             activation_derivative,
                             dense_backward, dense_forward, derivative_op, fp_enter, fp_leave,
                             gemm, gemm_epilogue, gemm_small_m, gemm_work_size,
                             output_forward, output_log_proba, pack_rows, packed_size,
                             parallel_for)
from cymlp._optim cimport (PER_EPOCH, SGD, Optimizer, optimizer_step, scheduled_lr,
                           sgd_outer_row)

import os

import numpy as np


cdef struct Layout:
    int n_layers            # weight layers = len(sizes) - 1
    Py_ssize_t *sizes       # (n_layers + 1,) widths
    Py_ssize_t *w_off       # (n_layers,) offset of W_l in params
    Py_ssize_t *b_off       # (n_layers,) offset of b_l in params
    Py_ssize_t *a_off       # (n_layers + 1,) offset of activation l in ws (0 unused)
    Py_ssize_t *m_off       # (n_layers + 1,) offset of dropout mask l in ws (0 unused)
    Py_ssize_t *d_off       # (n_layers + 1,) offset of delta l (dLoss/dz_l) in ws (0 unused)
    Py_ssize_t *wp_off      # (n_layers,) offset in ws of W_l packed for the forward
    #                         product, or -1 when W_l is too large to keep a packed copy of
    Py_ssize_t *dp_off      # (n_layers + 1,) (training) offset in ws of delta l packed as
    #                         the B of the weight gradient a_{l-1}^T . delta_l (0 unused)
    double *drop            # (n_layers + 1,) dropout rate of layer l's output (0 = off)
    Py_ssize_t n_params
    Py_ssize_t widest       # widest layer after the input (the largest N of any product)
    Py_ssize_t rows         # rows the workspace holds
    Py_ssize_t x_off, y_off, sw_off, d0_off, d1_off, g_off, work_off
    Py_ssize_t x_alt        # the batch inputs' second copy (training on several threads:
    #                         batches alternate between the two), else x_off
    int hidden_act, out_act
    double slope
    bint dropout            # any hidden layer has dropout


# Where minibatch rows come from: dense X or CSR, targets Y, optional weights.
cdef struct Rows:
    const void *X           # dense (n, n_in) or NULL
    const void *data        # CSR values, or NULL
    const Py_ssize_t *indices
    const Py_ssize_t *indptr
    const void *Y           # (n, n_out) or NULL
    const void *sw          # (n,) or NULL
    bint dense              # X (not CSR) has few zeros (see _dense_rows)


# The arguments of a training step's two phases, for their tasks (_rows_task,
# _features_task: task t of T, whichever thread runs it, see _kernels.parallel_for).
# Pointers to float or double data, as f64 says.
cdef struct RowsJob:
    const Layout *lay
    const Rows *src
    const Py_ssize_t *order
    Py_ssize_t start, nb    # the batch: rows start..start+nb of the epoch
    const void *params
    void *ws                # the (aligned) workspace
    double *row_loss
    unsigned char *row_hit  # (classifiers) 1 where a row's output predicts its target
    double *busy            # (profile) each task's seconds in the last region
    uint64_t drop_seed
    bint dropout, packed, f64
    bint x_alt              # gather into the inputs' second copy (lay.x_alt)
    int *next               # (several tasks) the chunk counters, see cymlp_chunk_next
    int n_chunks            # (several tasks) chunks of rows


cdef struct FeaturesJob:
    const Layout *lay
    const void *x           # the batch's inputs (n, n_in)
    Py_ssize_t n
    void *params
    void *grads
    void *ws
    Optimizer opt
    long long step          # the number of this update (>= 1)
    double scale, alpha
    bint packed, f64
    int stage               # GRADIENT_AND_STEP, or (clipping) GRADIENT_ONLY then STEP_ONLY
    int *next               # (several tasks) the chunk counters, see cymlp_chunk_next
    int n_chunks            # (several tasks) chunks of weight rows, see _feature_chunks
    double *busy            # (profile) each task's seconds in the last region
    double *sq_blocks
    double *gsq_blocks      # (clipping) ||g||^2 of each block of ROW_BLOCK weight rows
    bint x_dense            # the inputs have few zeros (Rows.dense)


cdef enum:
    GRADIENT_AND_STEP = 0
    GRADIENT_ONLY = 1
    STEP_ONLY = 2


# ---- which products look for zero steps -------------------------------------------------
#
# A product skips the steps of its sum where a tile's rows of A are all zero (MNIST's
# blank pixels, relu's inactive units), which gives the same bits as summing them. Finding
# them is a scan of A that costs 5-7% of a product and finds nothing on dense operands,
# so products whose A has few zeros pass GEMM_DENSE_A: the inputs X when a sample of
# their rows is dense (_dense_rows), and the activations and deltas of hidden layers
# without relu or dropout (a logistic or tanh unit is exactly 0 only when it
# underflows), and the output layer's delta.

cdef enum:
    DENSE_SAMPLE_ROWS = 256  # rows of X sampled (spread over X) for its share of zeros
    DENSE_ZEROS_MAX = 32     # X is dense when under 1 in this many sampled values is 0

cdef int _scan_policy = 0  # tests (_set_scan_policy): 0 decide, 1 always scan, 2 never


def _set_scan_policy(int policy):
    """Tests: 0, products scan A for zero steps where it pays (the default); 1, always;
    2, never. Results are the same bits in every case."""
    global _scan_policy
    if policy not in (0, 1, 2):
        raise ValueError(f"scan policy must be 0, 1 or 2, not {policy}")
    _scan_policy = policy


cdef bint _dense_rows(const void *X, bint f64, Py_ssize_t n, Py_ssize_t n_in) noexcept nogil:
    """Whether under 1 in DENSE_ZEROS_MAX of the values in up to DENSE_SAMPLE_ROWS rows
    of X, spread over it, are zero: the work the scans could skip is at most the zeros'
    share, less than the scans cost."""
    cdef Py_ssize_t k, j, r, rows = n if n < DENSE_SAMPLE_ROWS else DENSE_SAMPLE_ROWS
    cdef Py_ssize_t zeros = 0
    cdef const float *xf
    cdef const double *xd
    if X == NULL or rows == 0 or n_in == 0:
        return False
    for k in range(rows):
        if zeros * DENSE_ZEROS_MAX >= rows * n_in:
            return False  # (sparse inputs: known after a row or two)
        r = k * n // rows
        if f64:
            xd = <const double *>X + r * n_in
            for j in range(n_in):
                zeros += xd[j] == 0
        else:
            xf = <const float *>X + r * n_in
            for j in range(n_in):
                zeros += xf[j] == 0
    return zeros * DENSE_ZEROS_MAX < rows * n_in


def _inputs_dense(X) -> bool:
    """Tests: whether training on the C-contiguous float array X would pass it to the
    products as dense (no scan for zero steps; see _dense_rows)."""
    X = np.asarray(X)
    if X.ndim != 2 or X.dtype not in (np.float32, np.float64) or not X.flags.c_contiguous:
        raise ValueError("X must be a 2-d C-contiguous float32 or float64 array")
    cdef const unsigned char[:, ::1] raw = X.view(np.uint8)
    return _dense_rows(&raw[0, 0] if X.size else NULL, X.dtype == np.float64, X.shape[0],
                       X.shape[1])


cdef inline int _a_flags(const Layout *lay, int l, bint x_dense) noexcept nogil:
    """The gemm flags of a product whose A is a_l (l = 0: the inputs, dense as x_dense
    says) or delta_l (0 < l <= L; l = L: the output layer's): GEMM_DENSE_A where it has
    few zeros, so the product does not scan it."""
    if _scan_policy:
        return GEMM_DENSE_A if _scan_policy == 2 else 0
    if l == 0:
        return GEMM_DENSE_A if x_dense else 0
    if l == lay.n_layers or (lay.hidden_act != RELU and lay.drop[l] == 0):
        return GEMM_DENSE_A
    return 0


cdef int _layout(Layout *lay, sizes, Py_ssize_t rows, int hidden_act, int out_act,
                 double slope, dropout, bint training, int n_threads) except -1:
    """Offsets of every layer's parameters and of every scratch buffer (training on
    several threads: two copies of the batch's inputs, see x_alt)."""
    cdef int L = len(sizes) - 1
    cdef Py_ssize_t l, off = 0, widest = 0
    lay.n_layers = L
    lay.sizes = <Py_ssize_t *>malloc((L + 1) * sizeof(Py_ssize_t))
    lay.w_off = <Py_ssize_t *>malloc((L + 1) * sizeof(Py_ssize_t))
    lay.b_off = <Py_ssize_t *>malloc((L + 1) * sizeof(Py_ssize_t))
    lay.a_off = <Py_ssize_t *>malloc((L + 1) * sizeof(Py_ssize_t))
    lay.m_off = <Py_ssize_t *>malloc((L + 1) * sizeof(Py_ssize_t))
    lay.d_off = <Py_ssize_t *>malloc((L + 1) * sizeof(Py_ssize_t))
    lay.wp_off = <Py_ssize_t *>malloc((L + 1) * sizeof(Py_ssize_t))
    lay.dp_off = <Py_ssize_t *>malloc((L + 1) * sizeof(Py_ssize_t))
    lay.drop = <double *>malloc((L + 1) * sizeof(double))
    if not (lay.sizes and lay.w_off and lay.b_off and lay.a_off and lay.m_off and lay.d_off
            and lay.wp_off and lay.dp_off and lay.drop):
        _free_layout(lay)
        raise MemoryError()
    lay.dropout = False
    for l in range(L + 1):
        lay.sizes[l] = sizes[l]
        lay.drop[l] = 0
        if dropout is not None and 0 < l < L:
            lay.drop[l] = dropout[l - 1]
            lay.dropout = lay.dropout or lay.drop[l] > 0
    for l in range(L):
        lay.w_off[l] = off
        off += lay.sizes[l] * lay.sizes[l + 1]
        lay.b_off[l] = off
        off += lay.sizes[l + 1]
        if lay.sizes[l + 1] > widest:
            widest = lay.sizes[l + 1]
    lay.n_params = off
    lay.widest = widest
    # workspace: x | y | sw | activations 1..L | masks | delta ping-pong | grads |
    # packed weights | packed deltas | gemm scratch, each region starting on a multiple
    # of 16 elements
    # (64-byte aligned once ws is, see Engine)
    lay.rows = rows
    off = 0
    lay.x_off = off
    off = _up16(off + rows * lay.sizes[0])
    lay.x_alt = lay.x_off
    if training and n_threads > 1:
        lay.x_alt = off
        off = _up16(off + rows * lay.sizes[0])
    lay.y_off = off
    off = _up16(off + rows * lay.sizes[L])
    lay.sw_off = off
    off = _up16(off + rows)
    lay.a_off[0] = lay.m_off[0] = lay.m_off[L] = 0
    for l in range(1, L + 1):
        lay.a_off[l] = off
        off = _up16(off + rows * lay.sizes[l])
    for l in range(1, L):
        lay.m_off[l] = off
        if lay.drop[l] > 0:
            off = _up16(off + rows * lay.sizes[l])
    lay.d_off[0] = 0
    for l in range(1, L + 1):
        lay.d_off[l] = off
        off = _up16(off + rows * lay.sizes[l])
    lay.d0_off = off
    off = _up16(off + rows * widest)
    lay.d1_off = off
    off = _up16(off + rows * widest)
    lay.g_off = off
    off = _up16(off + lay.n_params)
    for l in range(L):  # (packed sizes are not all multiples of 16 elements: rounded up)
        lay.wp_off[l] = -1
        if training and packed_size(lay.sizes[l], lay.sizes[l + 1]) <= PACKED_MAX:
            lay.wp_off[l] = off
            off = _up16(off + packed_size(lay.sizes[l], lay.sizes[l + 1]))
    lay.dp_off[0] = 0
    for l in range(1, L + 1):
        lay.dp_off[l] = off
        if training:
            off = _up16(off + packed_size(rows, lay.sizes[l]))
    lay.work_off = off
    lay.hidden_act = hidden_act
    lay.out_act = out_act
    lay.slope = slope
    return 0


cdef enum:
    # Largest weight matrix (elements) of which training keeps a packed copy, kept up to
    # date by phase 2 and read by phase 1: it pays while the copy stays in L2
    # (docs/performance.md, "Engine").
    PACKED_MAX = 160000


cdef inline Py_ssize_t _up16(Py_ssize_t k) noexcept nogil:
    return (k + 15) // 16 * 16


cdef inline Py_ssize_t _thread_work(const Layout *lay) noexcept nogil:
    """Scratch of one thread: a product's packed B and A panels."""
    return gemm_work_size(1, lay.widest)


cdef inline Py_ssize_t _work_size(const Layout *lay, int n_threads) noexcept nogil:
    """Scratch after work_off: one training thread's worth per thread, which also covers
    one product split over n_threads; plus 64 bytes of slack for the alignment (Engine)."""
    return (n_threads if n_threads > 1 else 1) * _thread_work(lay) + 16


cdef void _free_layout(Layout *lay) noexcept:
    free(lay.sizes)
    free(lay.w_off)
    free(lay.b_off)
    free(lay.a_off)
    free(lay.m_off)
    free(lay.d_off)
    free(lay.wp_off)
    free(lay.dp_off)
    free(lay.drop)
    lay.sizes = lay.w_off = lay.b_off = lay.a_off = lay.m_off = lay.d_off = lay.wp_off = NULL
    lay.dp_off = NULL
    lay.drop = NULL


cdef inline uint64_t _splitmix64(uint64_t *state) noexcept nogil:
    """splitmix64 (Steele, Lea & Flood 2014): the seeded PRNG for shuffling and dropout."""
    state[0] += 0x9E3779B97F4A7C15ULL
    cdef uint64_t z = state[0]
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef void _shuffle(Py_ssize_t *order, Py_ssize_t n, uint64_t *state) noexcept nogil:
    """Fisher-Yates shuffle of order[:n]."""
    cdef Py_ssize_t i, j, t
    for i in range(n - 1, 0, -1):
        j = <Py_ssize_t>(_splitmix64(state) % <uint64_t>(i + 1))
        t = order[i]
        order[i] = order[j]
        order[j] = t


cdef void _dropout(floating *a, floating *mask, Py_ssize_t size, double rate,
                   uint64_t *state) noexcept nogil:
    """Inverted dropout: a *= mask, mask = 0 with probability rate, else 1 / (1 - rate)."""
    cdef Py_ssize_t k
    cdef floating keep = <floating>(1.0 / (1.0 - rate))
    cdef uint64_t threshold = <uint64_t>(rate * 18446744073709551616.0)
    for k in range(size):
        mask[k] = 0 if _splitmix64(state) < threshold else keep
        a[k] *= mask[k]


cdef extern from *:
    """
    /* a hint to bring the line of p into L2 (GCC/Clang, clang-cl; nothing elsewhere) */
    #if defined(__GNUC__) || defined(__clang__)
    #define _prefetch_l2(p) __builtin_prefetch((p), 0, 2)
    #else
    #define _prefetch_l2(p) ((void)(p))
    #endif
    """
    void _prefetch_l2(const char *p) nogil


cdef enum:
    # rows ahead of the one being copied whose lines the gather asks for: a random row
    # of a large X comes from memory, and copying rows one by one waits on each
    GATHER_AHEAD = 2


cdef const floating *_gather(const Layout *lay, const Rows *src, const Py_ssize_t *order,
                             Py_ssize_t start, Py_ssize_t n, Py_ssize_t dst, floating *ws,
                             const floating **y, const floating **sw,
                             bint alt) noexcept nogil:
    """Rows start..start+n of the epoch (through ``order`` when given) as a dense (n, n_in)
    block at rows dst..dst+n of the batch buffers (the inputs in their second copy with
    ``alt``), with their targets and weights; copies only when the rows are not already
    contiguous. Returns the block's first row."""
    cdef Py_ssize_t r, i, j, n_in = lay.sizes[0], n_out = lay.sizes[lay.n_layers]
    cdef const floating *X = <const floating *>src.X
    cdef const floating *Y = <const floating *>src.Y
    cdef const floating *W = <const floating *>src.sw
    cdef const floating *data = <const floating *>src.data
    cdef floating *xb = ws + (lay.x_alt if alt else lay.x_off) + dst * n_in
    cdef floating *yb = ws + lay.y_off + dst * n_out
    cdef floating *swb = ws + lay.sw_off + dst
    if order == NULL:
        y[0] = Y + start * n_out if Y != NULL else NULL
        sw[0] = W + start if W != NULL else NULL
        if X != NULL:
            return X + start * n_in
    else:
        y[0] = yb if Y != NULL else NULL
        sw[0] = swb if W != NULL else NULL
        for r in range(n):
            if r + GATHER_AHEAD < n:  # later rows start on their way from memory
                i = order[start + r + GATHER_AHEAD]
                if X != NULL:
                    for j in range(0, n_in * <Py_ssize_t>sizeof(floating), 64):
                        _prefetch_l2(<const char *>(X + i * n_in) + j)
                    _prefetch_l2(<const char *>(X + i * n_in + n_in) - 1)
                if Y != NULL:
                    _prefetch_l2(<const char *>(Y + i * n_out))
                    _prefetch_l2(<const char *>(Y + i * n_out + n_out) - 1)
                if W != NULL:
                    _prefetch_l2(<const char *>(W + i))
            i = order[start + r]
            if X != NULL:
                memcpy(xb + r * n_in, X + i * n_in, n_in * sizeof(floating))
            if Y != NULL:
                memcpy(yb + r * n_out, Y + i * n_out, n_out * sizeof(floating))
            if W != NULL:
                swb[r] = W[i]
        if X != NULL:
            return xb
    memset(xb, 0, n * n_in * sizeof(floating))  # CSR: scatter the batch's rows
    for r in range(n):
        i = order[start + r] if order != NULL else start + r
        for j in range(src.indptr[i], src.indptr[i + 1]):
            xb[r * n_in + src.indices[j]] = data[j]
    return xb


# ---- debug counters (tests only) ----------------------------------------------------------
# Parallel regions split into more than one task, per site, so that tests can assert that
# a threaded path ran (issue 19) and cannot silently shrink below it. Which threads ran
# the tasks is the backend's business (a pool under load may run them all in the caller)
# and the results do not depend on it: they depend only on the split. train_epoch adds its
# counts once per call, holding the GIL, so concurrent fits do not race on them. The
# products' own parallel region (gemm in _gemm_impl.h: forward, loss_and_grad) is not
# counted here: it splits when M > GEMM_SMALL_M and M * N * K >= GEMM_PARALLEL_MIN,
# exported for tests.
cdef enum:
    SITE_ROWS = 0       # train_epoch phase 1: batch rows split over threads
    SITE_FEATURES = 1   # train_epoch phase 2: weight rows split over threads
    SITE_FORWARD = 2    # Engine.forward: a chunk's rows split over threads
    N_SITES = 3

cdef long long _parallel_counts[N_SITES]  # (static storage: starts at zero)

# Profile of train_epoch's time (for benchmarks/bench_threads.py): seconds in epochs, in
# their parallel regions (wall time from the call to the last task's end), the tasks'
# busy time summed over threads, and the threads' waiting (region wall - task busy,
# summed over the region's tasks), added once per call under the GIL as the counts are.
cdef double _profile[6]

cdef extern from "_gemm.h":
    double CYMLP_GEMM_PARALLEL_MIN
    int CYMLP_GEMM_SMALL_M

GEMM_PARALLEL_MIN = CYMLP_GEMM_PARALLEL_MIN
GEMM_SMALL_M = CYMLP_GEMM_SMALL_M


def parallel_counts():
    """{'rows': n, 'features': n, 'forward': n}: the parallel regions of train_epoch and
    forward split into more than one task since the last :func:`reset_parallel_counts`
    (a debug aid for tests)."""
    return {"rows": _parallel_counts[SITE_ROWS], "features": _parallel_counts[SITE_FEATURES],
            "forward": _parallel_counts[SITE_FORWARD]}


def reset_parallel_counts():
    """Set every :func:`parallel_counts` counter, and the :func:`profile`, back to zero."""
    cdef int i
    for i in range(N_SITES):
        _parallel_counts[i] = 0
    for i in range(6):
        _profile[i] = 0


def profile():
    """train_epoch's time since :func:`reset_parallel_counts`: {'epoch': seconds in
    epochs, 'parallel': seconds inside parallel regions (wall), 'busy': the tasks' work
    summed over threads, 'waiting': the threads' idle time at the regions' ends (region
    wall - task time, summed over tasks), 'batches': full batches of engines with
    several threads that the thread-count chooser counted, 'fewer': of them, those run
    on fewer threads than n_jobs}. 'epoch' - 'parallel' is the serial part."""
    return {"epoch": _profile[0], "parallel": _profile[1], "busy": _profile[2],
            "waiting": _profile[3], "batches": _profile[4], "fewer": _profile[5]}


cdef extern from "Python.h":
    int PyErr_CheckSignals() except -1


cdef extern from "_clock.h":
    # monotonic seconds (QueryPerformanceCounter on Windows: the thread-count chooser
    # times batches of a fraction of a millisecond)
    double cymlp_now "cymlp_clock_now"() nogil


cdef inline double _weight_sum(const floating *sw, Py_ssize_t n) noexcept nogil:
    """sum of the rows' sample weights (n when there are none)."""
    cdef Py_ssize_t r
    cdef double total = 0
    if sw == NULL:
        return n
    for r in range(n):
        total += sw[r]
    return total


cdef double _forward(const Layout *lay, const floating *x, const floating *y,
                     const floating *sw, Py_ssize_t n, const floating *params, floating *ws,
                     floating *out, int n_threads, bint x_dense) noexcept nogil:
    """Forward pass of n rows (paper §4.3.2): a_0 = x, a_l = f(a_{l-1}.W_l + b_l) (one
    fused product per layer), and the output layer (no dropout: that is training's
    _rows_phase).

    Activations go to ws; the last layer goes to ``out`` (n, n_out) when given.
    Returns the summed, sw-weighted data loss when y is given, else 0 (then the last
    layer holds the raw values z_L).
    """
    cdef floating *z = _forward_rows(lay, x, n, 0, params, ws, ws + lay.work_off, n_threads,
                                     out, IDENTITY, x_dense)
    if y == NULL:
        return 0
    return output_forward(lay.out_act, z, y, sw, n, lay.sizes[lay.n_layers], NULL)


cdef floating *_forward_rows(const Layout *lay, const floating *x, Py_ssize_t n,
                             Py_ssize_t r0, const floating *params, floating *ws,
                             floating *work, int n_threads, floating *out,
                             int last_act, bint x_dense) noexcept nogil:
    """The layers of _forward for n rows stored from row r0 of the activation buffers,
    products with scratch ``work``; returns the last layer's z_L (``out`` when given),
    with ``last_act`` applied to it (IDENTITY: the logits). x_dense: x has few zeros."""
    cdef int l, L = lay.n_layers
    cdef const floating *a = x
    cdef floating *z = NULL
    for l in range(L):
        z = out if (l == L - 1 and out != NULL) else ws + lay.a_off[l + 1] + r0 * lay.sizes[l + 1]
        dense_forward(a, params + lay.w_off[l], params + lay.b_off[l], z, n, lay.sizes[l],
                      lay.sizes[l + 1], NULL, work, n_threads,
                      lay.hidden_act if l < L - 1 else last_act, <floating>lay.slope,
                      _a_flags(lay, l, x_dense))
        a = z
    return z


# Engine.forward's task: rows of one chunk split over threads, as training's phase 1
cdef enum:
    HIDDEN = 3  # Engine.forward's mode that ends on a hidden layer's activations


cdef struct ForwardJob:
    const Layout *lay
    const void *x           # the chunk's inputs (nb, n_in)
    Py_ssize_t nb
    const void *params
    void *out               # the chunk's outputs (nb, n_out)
    void *ws
    int mode
    bint f64
    bint x_dense            # the inputs have few zeros (Rows.dense)


cdef void _forward_task(void *job, int t, int T) noexcept nogil:
    """Task t of T of a forward chunk: rows nb*t//T .. nb*(t+1)//T, in scratch t."""
    cdef const ForwardJob *j = <const ForwardJob *>job
    if j.f64:
        _forward_part(j, t, T, <const double *>j.params, <double *>j.out, <double *>j.ws)
    else:
        _forward_part(j, t, T, <const float *>j.params, <float *>j.out, <float *>j.ws)


cdef inline void _forward_part(const ForwardJob *j, int t, int T, const floating *params,
                               floating *out, floating *ws) noexcept nogil:
    cdef const Layout *lay = j.lay
    cdef Py_ssize_t r0 = j.nb * t // T, r1 = j.nb * (t + 1) // T
    cdef Py_ssize_t n_in = lay.sizes[0], n_out = lay.sizes[lay.n_layers]
    if r1 > r0:
        _forward_rows(lay, <const floating *>j.x + r0 * n_in, r1 - r0, r0, params, ws,
                      ws + lay.work_off + t * _thread_work(lay), 1, out + r0 * n_out,
                      lay.hidden_act if j.mode == HIDDEN else IDENTITY, j.x_dense)
        _outputs(lay, out + r0 * n_out, r1 - r0, j.mode)


cdef void _outputs(const Layout *lay, floating *o, Py_ssize_t n, int mode) noexcept nogil:
    """Engine.forward's modes on the logits o (n, n_out), in place (see forward)."""
    cdef Py_ssize_t k, n_out = lay.sizes[lay.n_layers]
    cdef floating tiny = FLT_MIN if floating is float else DBL_MIN
    if mode == 1:
        output_forward(lay.out_act, o, <floating *>NULL, NULL, n, n_out, NULL)
        if lay.out_act == SOFTMAX or lay.out_act == LOGISTIC:
            for k in range(n * n_out):
                o[k] = tiny if o[k] < tiny else o[k]  # (a NaN stays NaN)
    elif mode == 2:
        output_log_proba(lay.out_act, o, n, n_out)


cdef inline void _output_delta(const floating *a, const floating *y, const floating *sw,
                               Py_ssize_t n, Py_ssize_t n_out, floating *d) noexcept nogil:
    """The output layer's delta, d = sw * (a - y) (n, n_out): softmax + cross-entropy,
    logistic + log-loss, exp + Poisson deviance and identity + squared error all give
    output - y (paper §4.3.3)."""
    cdef Py_ssize_t r, k
    for r in range(n):
        for k in range(n_out):
            d[r * n_out + k] = a[r * n_out + k] - y[r * n_out + k]
            if sw != NULL:
                d[r * n_out + k] *= sw[r]


cdef double _loss_grad(const Layout *lay, const floating *x, const floating *y,
                       const floating *sw, Py_ssize_t n, const floating *params,
                       floating *grads, floating *ws, int n_threads,
                       bint x_dense) noexcept nogil:
    """Summed data loss of n rows and the summed gradient in grads (§4.3.3), for the
    full-batch objective (L-BFGS, gradient tests).

    delta_L = sw * (output - y) (_output_delta), delta_{l-1} = (delta_l . W_l^T) * f'(a_{l-1}),
    grad W_l = a_{l-1}^T . delta_l,  grad b_l = sum_i delta_l. The average over the rows
    and the L2 term are applied by the caller.
    """
    cdef int l, L = lay.n_layers
    cdef Py_ssize_t n_out = lay.sizes[L]
    cdef floating *delta = ws + lay.d0_off
    cdef floating *prev = ws + lay.d1_off
    cdef floating *tmp
    cdef const floating *a_prev
    cdef double loss
    loss = _forward(lay, x, y, sw, n, params, ws, <floating *>NULL, n_threads, x_dense)
    _output_delta(ws + lay.a_off[L], y, sw, n, n_out, delta)
    for l in range(L - 1, -1, -1):
        a_prev = x if l == 0 else ws + lay.a_off[l]
        dense_backward(a_prev, params + lay.w_off[l], delta, grads + lay.w_off[l],
                       grads + lay.b_off[l], prev if l > 0 else <floating *>NULL, n,
                       lay.sizes[l], lay.sizes[l + 1], ws + lay.work_off, n_threads,
                       lay.hidden_act, <floating>lay.slope, _a_flags(lay, l, x_dense),
                       _a_flags(lay, l + 1, False))
        if l > 0:
            tmp = delta
            delta = prev
            prev = tmp
    return loss


cdef inline double _sum_squares(const floating *w, Py_ssize_t size) noexcept nogil:
    """sum_k w[k]^2 in a fixed order: 16 interleaved partial sums in w's precision (they
    vectorise, and the additions do not wait on each other; scikit-learn sums these in
    w's precision too), combined pairwise in double. Used per block of a few thousand
    weights, for the reported loss only."""
    cdef Py_ssize_t k = 0
    cdef floating s[16]
    cdef double h[8]
    cdef int j
    for j in range(16):
        s[j] = 0
    while k + 16 <= size:
        for j in range(16):
            s[j] += w[k + j] * w[k + j]
        k += 16
    while k < size:
        s[0] += w[k] * w[k]
        k += 1
    for j in range(8):
        h[j] = <double>s[j] + <double>s[j + 8]
    return ((h[0] + h[1]) + (h[2] + h[3])) + ((h[4] + h[5]) + (h[6] + h[7]))


cdef double _sq_weights(const Layout *lay, const floating *params) noexcept nogil:
    """sum_l ||W_l||^2 (biases are not penalised), in blocks of 4096 weights summed in
    double (_sum_squares' partial sums are in the weights' precision)."""
    cdef int l
    cdef double sq = 0
    cdef Py_ssize_t k, size
    for l in range(lay.n_layers):
        size = lay.sizes[l] * lay.sizes[l + 1]
        for k in range(0, size, 4096):
            sq += _sum_squares(params + lay.w_off[l] + k, size - k if size - k < 4096 else 4096)
    return sq


cdef inline void _column_sums(const floating *d, Py_ssize_t n, Py_ssize_t n_out,
                              Py_ssize_t j0, Py_ssize_t j1, floating *out) noexcept nogil:
    """out[j] = sum_r d[r, j] for j in j0..j1, each summed in double in row order; rows
    outside, 64 columns at a time, so that the additions run along contiguous memory."""
    cdef double acc[64]
    cdef Py_ssize_t r, j, jj = j0, je
    cdef const floating *row
    while jj < j1:
        je = jj + 64 if jj + 64 < j1 else j1
        for j in range(je - jj):
            acc[j] = 0
        for r in range(n):
            row = d + r * n_out + jj
            for j in range(je - jj):
                acc[j] += row[j]
        for j in range(je - jj):
            out[jj + j] = <floating>acc[j]
        jj = je


cdef enum:
    # rows of a weight matrix per unit of work in the feature phase, and units per chunk
    # a thread computes at once (160 rows: whole micro-tiles of 10, 4 and nearly of 6)
    ROW_BLOCK = 10
    CHUNK_BLOCKS = 16
    DYN_BLOCKS = 4  # blocks per chunk of phase 2 with several tasks (cymlp_chunk_next)
    ROW_CHUNKS = 2  # phase 1's chunks of batch rows per task, with several tasks (packed)
    # the least work a step splits over threads (waking a thread costs more than it saves
    # below it): phase 1's batch rows per thread (and prediction's, _chunks), phase 2's
    # multiply-adds, (rows + 1) x parameters (one row of the paper's network is ~80,000)
    ROWS_PER_THREAD_MIN = 16
    STEP_WORK_MIN = 400000


def thread_thresholds():
    """The least work a training step splits over threads: ``rows_per_thread`` (phase 1,
    the forward and backward passes split by batch rows) and ``step_work`` (phase 2, the
    weight gradients and update split by weight rows: (batch rows + 1) x parameters).
    Below them the phase runs on one thread, as it is faster there (show_config).
    Prediction splits a chunk's rows over threads from the same ``rows_per_thread``."""
    return {"rows_per_thread": ROWS_PER_THREAD_MIN, "step_work": STEP_WORK_MIN}


cdef extern from *:
    """
    /* Chunks 0..n-1 of a parallel region's work, split into T owned ranges: task u owns
     * [n*u/T, n*(u+1)/T) and takes its chunks in order from its counter, next[u*16]
     * (one 64-byte line per counter). A task that has run out takes what is left of the
     * others' ranges, from their counters, so a thread the host holds up keeps at most
     * its current chunk. Which thread runs a chunk never changes its numbers. */
    #define CYMLP_COUNTER_STRIDE 16
    #if defined(_MSC_VER) && !defined(__clang__)
    #include <intrin.h>
    static int cymlp_take(int *p) { return (int)_InterlockedExchangeAdd((volatile long *)p, 1); }
    #else
    static int cymlp_take(int *p) { return __atomic_fetch_add(p, 1, __ATOMIC_RELAXED); }
    #endif
    static void cymlp_chunks_reset(int *next, int n, int T)
    {
        for (int u = 0; u < T; ++u)
            next[u * CYMLP_COUNTER_STRIDE] = (int)((long long)n * u / T);
    }
    /* task t's next chunk, -1 when none is left; *u (0 at the task's start) is the
     * range it is taking from, counted from its own */
    static int cymlp_chunk_next(int *next, int n, int t, int T, int *u)
    {
        while (*u < T) {
            const int v = (t + *u) % T;
            const int k = cymlp_take(&next[v * CYMLP_COUNTER_STRIDE]);
            if (k < (int)((long long)n * (v + 1) / T)) return k;
            ++*u;
        }
        return -1;
    }
    """
    enum: CYMLP_COUNTER_STRIDE
    void cymlp_chunks_reset(int *next, int n, int T) noexcept nogil
    int cymlp_chunk_next(int *next, int n, int t, int T, int *u) noexcept nogil


cdef inline unsigned char _hit(const floating *p, const floating *y, Py_ssize_t n_out,
                               int act) noexcept nogil:
    """1 when a row's outputs p predict its target y as predict() would: the first argmax
    of a softmax is the target's, or every logistic output is on the target's side of
    1/2."""
    cdef Py_ssize_t k, best = 0, target = 0
    if act == SOFTMAX:
        for k in range(1, n_out):
            if p[k] > p[best]:
                best = k
            if y[k] > y[target]:
                target = k
        return best == target
    for k in range(n_out):
        if (p[k] > 0.5) != (y[k] > 0.5):
            return 0
    return 1


cdef void _rows_phase(const Layout *lay, const Rows *src, const Py_ssize_t *order,
                      Py_ssize_t start, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t nb,
                      const floating *params, floating *ws, floating *work, double *row_loss,
                      unsigned char *row_hit, uint64_t drop_seed, bint dropout,
                      bint packed, bint x_alt) noexcept nogil:
    """Phase 1 of a training step, for batch rows r0..r1 (one thread): gather, forward
    (§4.3.2), each row's loss, and every layer's delta (§4.3.3):
    delta_L = sw (output - y),  delta_l = (delta_{l+1} . W_l^T) * f'(a_l) (* dropout mask).
    Rows are independent, so any split of the batch gives the same numbers. With
    ``packed`` the forward products read the weights packed by the previous phase 2.
    Each thread also packs its rows of every delta (of a batch of nb rows) where phase 2's
    weight gradients read them (``dp_off``), so no thread there packs the whole of one.
    (With plain stores: streamed, as phase 2 streams the packed weights, they made the
    wide network's 2-thread epoch 8% slower on AVX2, docs/performance.md.)"""
    cdef int l, L = lay.n_layers
    cdef Py_ssize_t n = r1 - r0, r, k, width, n_out = lay.sizes[L]
    cdef const floating *x
    cdef const floating *y
    cdef const floating *sw
    cdef const floating *a
    cdef floating *z = NULL
    cdef floating *d
    cdef floating *mask
    cdef floating slope = <floating>lay.slope
    cdef uint64_t state
    cdef bint masked
    if n <= 0:
        return
    cdef unsigned long mode = fp_enter()
    x = _gather(lay, src, order, start + r0, n, r0, ws, &y, &sw, x_alt)
    a = x
    for l in range(L):
        width = lay.sizes[l + 1]
        z = ws + lay.a_off[l + 1] + r0 * width
        dense_forward(a, params + lay.w_off[l], params + lay.b_off[l], z, n, lay.sizes[l],
                      width, ws + lay.wp_off[l] if packed and lay.wp_off[l] >= 0 else NULL,
                      work, 1, lay.hidden_act if l < L - 1 else IDENTITY, slope,
                      _a_flags(lay, l, src.dense))
        if l < L - 1:
            if dropout and lay.drop[l + 1] > 0:
                for r in range(n):  # each row's mask from its own stream: split-independent
                    state = drop_seed ^ (<uint64_t>(start + r0 + r + 1) * 0x9E3779B97F4A7C15ULL)
                    state ^= <uint64_t>(l + 1) * 0xD1B54A32D192ED03ULL
                    _dropout(z + r * width, ws + lay.m_off[l + 1] + (r0 + r) * width, width,
                             lay.drop[l + 1], &state)
        a = z
    d = ws + lay.d_off[L] + r0 * n_out
    output_forward(lay.out_act, z, y, sw, n, n_out, row_loss + r0)
    if row_hit != NULL:
        for r in range(n):
            row_hit[r0 + r] = _hit(z + r * n_out, y + r * n_out, n_out, lay.out_act)
    _output_delta(z, y, sw, n, n_out, d)
    if nb > 1:
        pack_rows(nb, n_out, r0, r1, ws + lay.d_off[L], n_out, 1, ws + lay.dp_off[L])
    for l in range(L - 1, 0, -1):
        width = lay.sizes[l]
        d = ws + lay.d_off[l] + r0 * width
        a = ws + lay.a_off[l] + r0 * width
        masked = dropout and lay.drop[l] > 0
        # d = (delta_{l+1} . W_l^T) * f'(a_l), the derivative in the product's epilogue
        gemm_epilogue(n, width, lay.sizes[l + 1], ws + lay.d_off[l + 1] + r0 * lay.sizes[l + 1],
                      lay.sizes[l + 1], 1, params + lay.w_off[l], 1, lay.sizes[l + 1], NULL,
                      d, width, _a_flags(lay, l + 1, False), work, 1, NULL,
                      IDENTITY if masked else derivative_op(lay.hidden_act), a, width, slope)
        if masked:
            mask = ws + lay.m_off[l] + r0 * width  # a holds f(z) * mask
            for k in range(n * width):
                if mask[k] == 0:
                    d[k] = 0
                else:
                    d[k] *= mask[k] * activation_derivative(lay.hidden_act, a[k] / mask[k],
                                                            slope)
        if nb > 1:
            pack_rows(nb, width, r0, r1, ws + lay.d_off[l], width, 1, ws + lay.dp_off[l])
    fp_leave(mode)


cdef inline Py_ssize_t _row_blocks(const Layout *lay, int l) noexcept nogil:
    """Blocks of ROW_BLOCK weight rows of layer l (the last may be shorter)."""
    return (lay.sizes[l] + ROW_BLOCK - 1) // ROW_BLOCK


cdef inline Py_ssize_t _dyn_chunks(Py_ssize_t nblk) noexcept nogil:
    """Phase 2's chunks of DYN_BLOCKS blocks in a layer of nblk blocks (several tasks)."""
    return (nblk + DYN_BLOCKS - 1) // DYN_BLOCKS


cdef inline int _feature_chunks(const Layout *lay) noexcept nogil:
    """Phase 2's chunks with several tasks, layer by layer (see _features_phase)."""
    cdef int l, n = 0
    for l in range(lay.n_layers):
        n += _dyn_chunks(_row_blocks(lay, l))
    return n


cdef void _features_phase(const FeaturesJob *j, int t, int T, const floating *x,
                          floating *params, floating *grads, floating *ws,
                          floating *work) noexcept nogil:
    """Phase 2 of a training step, for task t of T: the weight-gradient rows
    grad W_l[i0:i1] = a_l[:, i0:i1]^T . delta_{l+1} and bias columns grad b_l[j0:j1] =
    sum_i delta_{l+1}[i, j0:j1] of every layer, each summed over the batch in row order,
    and the optimizer step on exactly those parameters (§4.3.4), in blocks of ROW_BLOCK
    weight rows. With one task the blocks go CHUNK_BLOCKS at a time: gradient, ||W||^2,
    step and repacking follow one another while the chunk is in L2. With several, the
    work is chunks of DYN_BLOCKS, each task owning a range of them and then taking the
    others' leftovers (cymlp_chunk_next on j.next): a task keeps the same weight rows
    from batch to batch (in its core's cache) while no thread is held up, and a thread
    slowed down by the host holds the others up by one small chunk at most. Every
    block's numbers depend only on the block, whatever T is and whichever thread takes
    it; the bias columns are split by t."""
    cdef const Layout *lay = j.lay
    cdef int l, L = lay.n_layers
    cdef Py_ssize_t width, nblk, c, c1, j0, j1, chunk, blk = 0
    cdef floating scale = <floating>j.scale
    cdef int u = 0
    cdef unsigned long mode = fp_enter()
    if T == 1:
        for l in range(L):
            nblk = _row_blocks(lay, l)
            c = 0
            while c < nblk:
                c1 = c + CHUNK_BLOCKS if c + CHUNK_BLOCKS < nblk else nblk
                _features_chunk(j, l, c, c1, blk, x, params, grads, ws, work, False)
                c = c1
            blk += nblk
    else:
        while True:
            chunk = cymlp_chunk_next(j.next, j.n_chunks, t, T, &u)
            if chunk < 0:
                break
            blk = 0
            l = 0
            while l < L:  # the chunk's layer and blocks
                nblk = _row_blocks(lay, l)
                if chunk < _dyn_chunks(nblk):
                    break
                chunk -= _dyn_chunks(nblk)
                blk += nblk
                l += 1
            if l == L:
                break
            c = chunk * DYN_BLOCKS
            c1 = c + DYN_BLOCKS if c + DYN_BLOCKS < nblk else nblk
            _features_chunk(j, l, c, c1, blk, x, params, grads, ws, work, True)
    for l in range(L):
        width = lay.sizes[l + 1]
        j0 = width * t // T
        j1 = width * (t + 1) // T
        if j1 > j0:
            if j.stage != STEP_ONLY:
                _column_sums(ws + lay.d_off[l + 1], j.n, width, j0, j1, grads + lay.b_off[l])
            if j.stage != GRADIENT_ONLY:
                optimizer_step(&j.opt, params, grads, lay.b_off[l] + j0, j1 - j0, j.step,
                               scale, 0, False)
    fp_leave(mode)


cdef inline void _features_chunk(const FeaturesJob *j, int l, Py_ssize_t c, Py_ssize_t c1,
                                 Py_ssize_t blk, const floating *x, floating *params,
                                 floating *grads, floating *ws, floating *work,
                                 bint stream) noexcept nogil:
    """Phase 2 on blocks c..c1 of layer l's weight rows (blk: the layer's first block
    in the sq_blocks numbering): their gradient, ||W||^2, step and repacking (``stream``,
    with several tasks: with non-temporal stores, as the other threads read the packed
    rows in the next step's forward pass)."""
    cdef const Layout *lay = j.lay
    cdef const Optimizer *opt = &j.opt
    cdef Py_ssize_t n = j.n, n_in = lay.sizes[l], n_out = lay.sizes[l + 1], i0, i1, k, rows
    cdef Py_ssize_t off
    cdef const floating *a = x if l == 0 else ws + lay.a_off[l]
    cdef const floating *d = ws + lay.d_off[l + 1]
    cdef floating scale = <floating>j.scale, alpha = <floating>j.alpha
    cdef bint stepped = False
    cdef bint gradient = j.stage != STEP_ONLY, step = j.stage != GRADIENT_ONLY
    i0 = c * ROW_BLOCK
    i1 = c1 * ROW_BLOCK if c1 * ROW_BLOCK < n_in else n_in
    off = lay.w_off[l] + i0 * n_out
    if gradient and n == 1:  # one row: the gradient is the outer product a^T d
        stepped = _outer_step(a + i0, d, i1 - i0, n_out, params + off, grads + off,
                              step and opt.kind == SGD and opt.momentum == 0
                              and alpha == 0, opt.lr, scale)
    elif gradient:
        gemm(i1 - i0, n_out, n, a + i0, 1, n_in, d, n_out, 1, ws + lay.dp_off[l + 1],
             grads + off, n_out, _a_flags(lay, l, j.x_dense), work, 1)
    if gradient and not stepped:
        for k in range(c, c1):
            rows = ROW_BLOCK if (k + 1) * ROW_BLOCK <= n_in else n_in - k * ROW_BLOCK
            if alpha != 0:
                j.sq_blocks[blk + k] = _sum_squares(
                    params + lay.w_off[l] + k * ROW_BLOCK * n_out, rows * n_out)
            if not step:  # (clipping) this block's share of ||g||^2
                j.gsq_blocks[blk + k] = _grad_squares(
                    params + lay.w_off[l] + k * ROW_BLOCK * n_out,
                    grads + lay.w_off[l] + k * ROW_BLOCK * n_out, rows * n_out, scale, alpha)
    if step and not stepped:
        optimizer_step(opt, params, grads, off, (i1 - i0) * n_out, j.step, scale, alpha,
                       True)
    if step and j.packed and lay.wp_off[l] >= 0:
        pack_rows(n_in, n_out, i0, i1, params + lay.w_off[l], n_out, 1, ws + lay.wp_off[l],
                  stream)


cdef inline double _grad_squares(const floating *w, const floating *grads, Py_ssize_t size,
                                 floating scale, floating l2) noexcept nogil:
    """sum_k g_k^2 of the gradient the step takes, g = scale * (grads + l2 * W), each g
    rounded as the step rounds it, summed in double in index order."""
    cdef Py_ssize_t k
    cdef double total = 0
    cdef floating g
    for k in range(size):
        g = scale * (grads[k] + l2 * w[k])
        total += <double>g * g
    return total


cdef inline Py_ssize_t _row_bound(Py_ssize_t nb, int k, int n_chunks) noexcept nogil:
    """First batch row of phase 1's chunk k of n_chunks (whole 4-row tiles but the last)."""
    if k >= n_chunks:
        return nb
    return (nb * k // n_chunks) & ~(<Py_ssize_t>3)


cdef void _rows_task(void *job, int t, int T) noexcept nogil:
    """Task t of T of phase 1, in scratch t (see _rows_chunks)."""
    cdef const RowsJob *j = <const RowsJob *>job
    cdef double t0 = cymlp_now()
    if j.f64:
        _rows_chunks(j, t, T, <const double *>j.params, <double *>j.ws)
    else:
        _rows_chunks(j, t, T, <const float *>j.params, <float *>j.ws)
    j.busy[t] = cymlp_now() - t0


cdef inline void _rows_chunks(const RowsJob *j, int t, int T, const floating *params,
                              floating *ws) noexcept nogil:
    """Chunks of the batch's rows, task t's own range first, then the others' leftovers
    (cymlp_chunk_next on j.next: the counters were reset for j.n_chunks, 1 with one
    task)."""
    cdef int k, u = 0
    cdef floating *work = ws + j.lay.work_off + t * _thread_work(j.lay)
    while True:
        k = cymlp_chunk_next(j.next, j.n_chunks, t, T, &u)
        if k < 0:
            break
        _rows_phase(j.lay, j.src, j.order, j.start, _row_bound(j.nb, k, j.n_chunks),
                    _row_bound(j.nb, k + 1, j.n_chunks), j.nb, params, ws, work,
                    j.row_loss, j.row_hit, j.drop_seed, j.dropout, j.packed, j.x_alt)


cdef void _features_task(void *job, int t, int T) noexcept nogil:
    """Task t of T of phase 2 (its blocks of weight rows, see _features_phase), in
    scratch t."""
    cdef const FeaturesJob *j = <const FeaturesJob *>job
    cdef double t0 = cymlp_now()
    if j.f64:
        _features_part(j, t, T, <double *>j.ws)
    else:
        _features_part(j, t, T, <float *>j.ws)
    j.busy[t] = cymlp_now() - t0


cdef inline void _features_part(const FeaturesJob *j, int t, int T,
                                floating *ws) noexcept nogil:
    _features_phase(j, t, T, <const floating *>j.x, <floating *>j.params,
                    <floating *>j.grads, ws, ws + j.lay.work_off + t * _thread_work(j.lay))


cdef inline bint _outer_step(const floating *a, const floating *d, Py_ssize_t rows,
                             Py_ssize_t n_out, floating *params, floating *grads,
                             bint plain_sgd, double lr, floating scale) noexcept nogil:
    """Gradient rows of a one-row batch, grads[i, :] = a[i] d (the same bits as the
    product with K = 1). For plain SGD (no momentum, no L2) the step is applied here and
    rows with a[i] == 0 are skipped: their gradient is zero and W - lr * 0 = W exactly
    (most of an MNIST image's pixels are 0). Returns True when the step was applied."""
    cdef Py_ssize_t i, j
    cdef floating ai
    for i in range(rows):
        ai = a[i]
        if plain_sgd:
            if ai != 0:
                sgd_outer_row(params + i * n_out, ai, d, n_out, lr, scale)
        else:
            for j in range(n_out):
                grads[i * n_out + j] = ai * d[j]
    return plain_sgd


cdef int _refuse(name, dtype, tuple shape) except -1:
    raise TypeError(f"engine: {name} must be a C-contiguous {np.dtype(dtype)} array of "
                    f"shape {shape}")


cdef const void *_data(name, arr, dtype, Py_ssize_t rows, Py_ssize_t cols) except? NULL:
    """Data pointer of a C-contiguous numpy array of this dtype and shape (rows,) when
    cols < 0, else (rows, cols); TypeError otherwise. The caller keeps arr alive."""
    cdef Py_buffer view
    cdef tuple shape
    if cols < 0:
        shape = (rows,)
    else:
        shape = (rows, cols)
    if not isinstance(arr, np.ndarray) or arr.dtype != dtype or arr.shape != shape:
        _refuse(name, dtype, shape)
    try:
        PyObject_GetBuffer(arr, &view, PyBUF_C_CONTIGUOUS)  # fails if not C-contiguous
    except ValueError:
        _refuse(name, dtype, shape)
    cdef const void *ptr = view.buf
    PyBuffer_Release(&view)  # (a numpy array's memory lives as long as the array)
    return ptr


_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)


cdef int _rows(Rows *src, const Layout *lay, Py_ssize_t n, dtype, X, data, indices, indptr,
               Y, sw) except -1:
    """Fill src with the arrays' data pointers after checking their dtype, layout and
    shapes (once per call, so that the nogil loops can trust them)."""
    cdef Py_ssize_t n_in = lay.sizes[0], n_out = lay.sizes[lay.n_layers], nnz
    src.X = src.data = src.Y = src.sw = NULL
    src.indices = src.indptr = NULL
    src.dense = False
    if X is not None:
        src.X = _data("X", X, dtype, n, n_in)
    else:
        src.indptr = <const Py_ssize_t *>_data("indptr", indptr, np.intp, n + 1, -1)
        nnz = src.indptr[n] if n else 0
        src.data = _data("data", data, dtype, nnz, -1)
        src.indices = <const Py_ssize_t *>_data("indices", indices, np.intp, nnz, -1)
    if Y is not None:
        src.Y = _data("Y", Y, dtype, n, n_out)
    if sw is not None:
        src.sw = _data("sw", sw, dtype, n, -1)
    return 0


# ---- adaptive thread count (training) --------------------------------------------------
#
# Results do not depend on how many threads run a step (phase 1 splits rows, phase 2
# blocks of weight rows, each summed the same way), so the count can change from one
# batch to the next. On a shared machine two threads can be slower than one: when the
# host puts the two vCPUs far apart every line that crosses between them costs several
# times more (docs/performance.md), and a core taken by another program holds the other
# at every barrier. With several threads the engine therefore times its steps (the median
# of ADAPT_WINDOW full batches) and now and then runs a window at a neighbouring count
# of 1, 2, 4, ..., n_jobs (a trial), keeping the faster: on 2 cores that is 1 or 2, on
# 16 it climbs down from 16 to wherever more threads stop paying. A trial of a count
# never measured comes ADAPT_FIRST batches after the last move, then every `interval`
# batches (doubled each time the trial loses, up to ADAPT_MAX_DOWN / ADAPT_MAX_UP), and
# at once when the current count's time has risen above the other's last measurement.
# CYMLP_ADAPTIVE_THREADS=0 turns it off (the engine then always runs n_jobs threads
# where the step is large enough).

cdef enum:
    ADAPT_WINDOW = 8           # timed full batches per measurement (their median)
    ADAPT_FIRST = 16           # batches before a trial of a count not yet measured
    ADAPT_EARLY = 3            # a trial ends after this many if all were much slower
    ADAPT_RECHECK = 32         # batches after a trial before a slow-down may call one
    # batches not timed after a change of count (on this host the first two after one
    # are 20-80% slower, while the caches refill)
    ADAPT_WARM = 2
    # batches between trials of the next count down (the first interval, and the most
    # it doubles to; a slow-down calls a trial sooner) and of the next count up
    ADAPT_START_DOWN = 1024
    ADAPT_MAX_DOWN = 4096
    ADAPT_START_UP = 128
    ADAPT_MAX_UP = 1024
    # the counts tried: 1, 2, 4, ... and n_jobs (the pool has at most 4096 threads)
    ADAPT_LEVELS = 16

cdef double ADAPT_MARGIN = 0.03  # a trial switches when this much faster
cdef double ADAPT_MUCH = 0.25    # ... and ends early when ADAPT_EARLY batches were this slower
cdef long long _adapt_alternate = 0  # tests: > 0 switches count every that many batches


def _set_adapt_alternate(long long period):
    """Tests: with period > 0, every engine with several threads (adaptation on) steps
    down its counts (n_jobs, ..., 4, 2, 1, then n_jobs again) every ``period`` full
    batches, whatever the timings; 0 restores the chooser."""
    global _adapt_alternate
    _adapt_alternate = period if period > 0 else 0


cdef struct Adapt:
    int most              # the engine's thread count; 0: adaptation off
    int nlev              # the counts it runs: count[0] = 1 < 2 < 4 < ... < count[nlev-1]
    int count[ADAPT_LEVELS]  # ... = most
    int cur               # the level steps run at outside trials
    int at                # the level of the batches being run now (cur, or a trial's)
    int skip              # batches left before timing again (a change of count's warm-up)
    int n                 # timed batches in the window so far
    double times[ADAPT_WINDOW]
    double est[ADAPT_LEVELS]  # the last window's median s/batch at each level (0: none)
    long long since[2]    # batches since a trial of the count down / up from cur ended
    long long interval[2]  # batches between trials down / up
    long long batches     # batches timed or skipped, in all
    long long fewer       # of them, run at fewer threads than `most`


cdef void _adapt_init(Adapt *a, int most, bint on) noexcept nogil:
    cdef int c = 1
    memset(a, 0, sizeof(Adapt))
    a.most = most if on and most > 1 else 0
    while c < most and a.nlev < ADAPT_LEVELS - 1:
        a.count[a.nlev] = c
        a.nlev += 1
        c *= 2
    a.count[a.nlev] = most if most > 1 else 1
    a.nlev += 1
    a.cur = a.nlev - 1  # n_jobs first
    a.at = a.cur
    a.skip = ADAPT_WARM  # the fit's first batches fill the caches too
    a.interval[0] = ADAPT_START_DOWN
    a.interval[1] = ADAPT_START_UP


cdef double _median(double *v, int n) noexcept nogil:
    """The median of v[0..n) (sorts v)."""
    cdef int i, k
    cdef double x
    for i in range(1, n):
        x = v[i]
        k = i - 1
        while k >= 0 and v[k] > x:
            v[k + 1] = v[k]
            k -= 1
        v[k + 1] = x
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


cdef inline int _adapt_threads(const Adapt *a) noexcept nogil:
    """The thread count of the batches being run now."""
    return a.count[a.at]


cdef inline void _adapt_run(Adapt *a, int level) noexcept nogil:
    """Run the next batches at ``level`` (a trial when it is not a.cur), untimed at first."""
    a.at = level
    a.skip = ADAPT_WARM
    a.n = 0


cdef void _adapt_record(Adapt *a, double seconds) noexcept nogil:
    """One full batch took ``seconds`` at _adapt_threads(a) threads: sets the count of the
    next.

    A hill climb over the counts 1, 2, 4, ..., n_jobs: from the current count it tries
    the next one down and the next one up (each on its own schedule: soon when that
    count was never measured, at once when the current count has become slower than
    that count's last measurement, else at intervals that double while trials lose),
    and moves there when a trial's window is faster."""
    cdef int k, d, nb
    cdef double m
    cdef bint much_slower
    if a.most == 0:
        return
    a.batches += 1
    a.fewer += a.at < a.nlev - 1
    a.since[0] += 1
    a.since[1] += 1
    if _adapt_alternate > 0:
        if a.batches % _adapt_alternate == 0:
            a.cur = a.at - 1 if a.at > 0 else a.nlev - 1
            _adapt_run(a, a.cur)
        return
    if a.skip > 0:
        a.skip -= 1
        return
    a.times[a.n] = seconds
    a.n += 1
    if a.at != a.cur and a.n == ADAPT_EARLY:  # a trial clearly lost: end it now
        much_slower = True
        for k in range(ADAPT_EARLY):
            much_slower = much_slower and a.times[k] > a.est[a.cur] * (1 + ADAPT_MUCH)
        if much_slower:
            a.est[a.at] = _median(a.times, ADAPT_EARLY)
            _adapt_lost(a)
            return
    if a.n < ADAPT_WINDOW:
        return
    a.n = 0
    m = _median(a.times, ADAPT_WINDOW)
    a.est[a.at] = m
    if a.at != a.cur:  # a trial's window: keep the faster count
        if m < a.est[a.cur] * (1 - ADAPT_MARGIN):
            d = a.at > a.cur  # (the way it moved: 0 down, 1 up)
            a.cur = a.at
            # trials back the way it came start over at the shortest interval
            a.interval[1 - d] = ADAPT_START_UP if d == 0 else ADAPT_START_DOWN
            a.since[0] = 0
            a.since[1] = 0
        else:
            _adapt_lost(a)
        return
    for d in range(2):  # the next count down, then the next count up
        nb = a.cur - 1 if d == 0 else a.cur + 1
        if nb < 0 or nb >= a.nlev:
            continue
        if (a.since[d] >= a.interval[d]
                or (a.est[nb] == 0 and a.since[d] >= ADAPT_FIRST)
                or (a.est[nb] > 0 and a.since[d] >= ADAPT_RECHECK
                    and m > a.est[nb] * (1 + ADAPT_MARGIN))):
            _adapt_run(a, nb)
            return


cdef inline void _adapt_lost(Adapt *a) noexcept nogil:
    """A trial lost: back to the current count, the next trial that way twice as far."""
    cdef int d = a.at > a.cur
    cdef long long most = ADAPT_MAX_UP if d else ADAPT_MAX_DOWN
    a.interval[d] = 2 * a.interval[d] if 2 * a.interval[d] < most else most
    a.since[d] = 0
    _adapt_run(a, a.cur)


def _adapt_trace(int most, seconds_at, Py_ssize_t batches):
    """The thread count the chooser runs each of ``batches`` full batches at, when a
    batch at c threads takes ``seconds_at(i, c)`` seconds (i: the batch's index): a
    test of the rule above without timing real steps."""
    cdef Adapt a
    cdef Py_ssize_t i
    out = np.empty(batches, np.intc)
    _adapt_init(&a, most, True)
    for i in range(batches):
        out[i] = _adapt_threads(&a)
        _adapt_record(&a, seconds_at(i, out[i]))
    return out


def adaptive_threads_enabled() -> bool:
    """False when the environment sets CYMLP_ADAPTIVE_THREADS to 0, false, no or off
    (read by every new Engine): training then never runs fewer threads than n_jobs."""
    return os.environ.get("CYMLP_ADAPTIVE_THREADS", "1").strip().lower() not in (
        "0", "false", "no", "off")


cdef class Engine:
    """One network's layout and scratch, set up once and used for the life of a fit (or
    of a predictor): the offsets of every parameter and scratch buffer (``Layout``), the
    64-byte aligned workspace for batches of up to ``rows`` rows, and per-batch buffers.

    ``sizes`` are the layer widths, ``hidden_act`` / ``out_act`` activation codes (see
    ``cymlp._model.ACTIVATIONS``), ``slope`` leaky_relu's, ``dropout`` None or one rate
    per hidden layer, ``dtype`` float32 or float64. ``training=False`` lays out only what
    forward, data_loss and loss_and_grad need (no packed weights or deltas).

    Entry points take their rows as ``source = (X, data, indices, indptr)``: a dense
    C-contiguous ``X`` (n, n_in), or X None and a CSR triplet (intp indices); targets ``Y``
    (n, n_out) and sample weights ``sw`` (n,) or None, all of the engine's dtype. Each
    checks every array's dtype, shape and contiguity, then runs under ``nogil`` without
    checking again. An Engine is not for two threads at once (its scratch is shared).
    """
    cdef Layout lay
    cdef readonly object dtype
    cdef readonly Py_ssize_t rows
    cdef readonly int n_threads
    cdef readonly bint training
    cdef object _ws             # the workspace (numpy, owned)
    cdef void *w                # its 64-byte aligned start
    cdef double *row_loss       # (rows,) each row's loss (training)
    cdef unsigned char *row_hit  # (rows,) each row's hit, for classifiers (training)
    cdef double *sq_blocks      # ||W||^2 per block of ROW_BLOCK weight rows (training)
    cdef double *gsq_blocks     # ||g||^2 per such block (training, for clipping)
    cdef double *busy           # (n_threads,) each task's seconds (training, profile)
    cdef int *counters          # chunk counters, one cache line each (cymlp_chunk_next)
    cdef int *_counters         # (their allocation)
    cdef Py_ssize_t n_blocks
    cdef bint f64
    cdef Adapt adapt            # the thread count of training steps (see _adapt_record)

    def __cinit__(self, sizes, int hidden_act, int out_act, double slope, dropout,
                  Py_ssize_t rows, int n_threads, dtype, bint training=True):
        cdef int l
        cdef Py_ssize_t size
        if rows < 1 or len(sizes) < 2 or any(s < 1 for s in sizes):
            raise ValueError("engine: needs rows >= 1 and layer sizes >= 1")
        self.dtype = np.dtype(dtype)
        if self.dtype != _F32 and self.dtype != _F64:
            raise TypeError(f"engine: dtype must be float32 or float64, not {self.dtype}")
        self.f64 = self.dtype == _F64
        self.rows = rows
        self.n_threads = n_threads if n_threads > 1 else 1
        self.training = training
        _adapt_init(&self.adapt, self.n_threads, training and adaptive_threads_enabled())
        _layout(&self.lay, sizes, rows, hidden_act, out_act, slope, dropout, training,
                self.n_threads)
        size = self.lay.work_off + _work_size(&self.lay, self.n_threads)
        self._ws = np.empty(size, self.dtype)
        # every layout offset is a multiple of 16 elements, so from a 64-byte boundary
        # packed panels and activation rows start on cache lines (numpy's large arrays
        # start 16 bytes past one; an unaligned 64-byte load costs two)
        self.w = <void *>((<size_t>_data("ws", self._ws, self.dtype, size, -1) + 63)
                          & ~(<size_t>63))
        for l in range(self.lay.n_layers):
            self.n_blocks += _row_blocks(&self.lay, l)
        if training:
            self.row_loss = <double *>malloc(rows * sizeof(double))
            if out_act == SOFTMAX or out_act == LOGISTIC:
                self.row_hit = <unsigned char *>malloc(rows)
                if self.row_hit == NULL:
                    raise MemoryError()
            self.sq_blocks = <double *>malloc(self.n_blocks * sizeof(double))
            self.gsq_blocks = <double *>malloc(self.n_blocks * sizeof(double))
            self.busy = <double *>malloc(self.n_threads * sizeof(double))
            self._counters = <int *>malloc((self.n_threads + 1) * CYMLP_COUNTER_STRIDE
                                           * sizeof(int))
            self.counters = <int *>((<size_t>self._counters + 63) & ~(<size_t>63))
            if self.gsq_blocks == NULL or self.busy == NULL or self._counters == NULL:
                raise MemoryError()
            if self.row_loss == NULL or self.sq_blocks == NULL:
                raise MemoryError()

    def __dealloc__(self):
        free(self.row_loss)
        free(self.row_hit)
        free(self.sq_blocks)
        free(self.gsq_blocks)
        free(self.busy)
        free(self._counters)
        _free_layout(&self.lay)

    @property
    def n_params(self):
        """Length of the flat parameter buffer."""
        return self.lay.n_params

    @property
    def workspace_size(self):
        """Elements of scratch this engine holds (its dtype)."""
        return self._ws.shape[0]

    cdef Py_ssize_t _source(self, Rows *src, source, Y, sw) except -1:
        """src from the arrays of ``source`` (see the class docstring); returns n."""
        X, data, indices, indptr = source
        cdef Py_ssize_t n
        if X is not None:
            n = X.shape[0] if isinstance(X, np.ndarray) and X.ndim == 2 else -1
        else:
            n = indptr.shape[0] - 1 if isinstance(indptr, np.ndarray) else -1
        if n < 0:
            raise TypeError("engine: X must be a 2-d array, or CSR with an intp indptr")
        _rows(src, &self.lay, n, self.dtype, X, data, indices, indptr, Y, sw)
        src.dense = _dense_rows(src.X, self.f64, n, self.lay.sizes[0])
        return n

    cdef void *_params(self, name, arr) except NULL:
        return <void *>_data(name, arr, self.dtype, self.lay.n_params, -1)

    def train_epoch(self, source, Y, sw, params, grads, optimizer, bint shuffle,
                    uint64_t[::1] rng, double alpha, double loss_scale):
        """One pass over the rows in minibatches of ``rows``: forward, backward, update.

        ``optimizer`` (see cymlp._optimizers) gives its ``kind``, hyperparameters, state
        vectors ``m`` / ``v`` (params' shape) and ``step`` (updates made so far); the
        state vectors are updated in place, ``step`` is left to the caller. With
        ``shuffle`` the row order is a fresh permutation from ``rng`` (advanced in
        place, as it is by dropout). Needs a training engine.

        A batch's loss is scikit-learn's: (loss_scale * sum_i sw_i loss_i
        + alpha/2 sum ||W||^2) / sum_i sw_i. Returns ``(mean over batches weighted by
        their size, number of updates made, hits)``: hits, for a softmax or logistic
        output, counts the rows whose outputs (before their batch's update) predicted
        their targets, as predict() would; None for other outputs.
        """
        cdef Rows src
        cdef Optimizer opt
        cdef Py_ssize_t n
        cdef void *p
        cdef void *g
        cdef long long step
        if not self.training:
            raise ValueError("engine: train_epoch needs an Engine made with training=True")
        n = self._source(&src, source, Y, sw)
        if src.Y == NULL:
            raise TypeError("engine: training needs targets Y")
        opt.kind = optimizer.kind
        opt.lr = optimizer.lr
        opt.momentum = optimizer.momentum
        opt.nesterov = optimizer.nesterov
        opt.beta_1 = optimizer.beta_1
        opt.beta_2 = optimizer.beta_2
        opt.epsilon = optimizer.epsilon
        opt.weight_decay = optimizer.weight_decay
        opt.schedule = optimizer.schedule_code
        opt.lr_max = optimizer.lr
        opt.total_steps = optimizer.total_steps
        opt.warmup_steps = optimizer.warmup_steps
        opt.max_grad_norm = optimizer.max_grad_norm
        opt.m = self._params("optimizer state", optimizer.m)
        opt.v = self._params("optimizer state", optimizer.v) if opt.kind != SGD else NULL
        p = self._params("params", params)
        g = self._params("grads", grads)
        step = optimizer.step
        if self.f64:
            return _train[double](self, &src, n, <double *>p, <double *>g, &opt, step,
                                  shuffle, &rng[0], alpha, loss_scale)
        return _train[float](self, &src, n, <float *>p, <float *>g, &opt, step, shuffle,
                             &rng[0], alpha, loss_scale)

    def loss_and_grad(self, source, Y, sw, params, grads, double alpha, double loss_scale):
        """Loss over all rows and its gradient w.r.t. params (written to grads), as
        scikit-learn's full-batch objective (L-BFGS, the gradient tests):
        (loss_scale * sum_i sw_i loss_i + alpha/2 sum ||W||^2) / sum_i sw_i, ``rows``
        rows at a time (no dropout, no shuffling)."""
        cdef Rows src
        cdef Py_ssize_t n = self._source(&src, source, Y, sw)
        cdef void *p = self._params("params", params)
        cdef void *g = self._params("grads", grads)
        cdef double loss
        if src.Y == NULL:
            raise TypeError("engine: loss_and_grad needs targets Y")
        with nogil:
            if self.f64:
                loss = _loss_and_grad(&self.lay, &src, n, <double *>p, <double *>g,
                                      <double *>self.w, self.n_threads, alpha, loss_scale)
            else:
                loss = _loss_and_grad(&self.lay, &src, n, <float *>p, <float *>g,
                                      <float *>self.w, self.n_threads, alpha, loss_scale)
        return loss

    def data_loss(self, source, Y, sw, params, double loss_scale):
        """Weighted mean data loss over the rows (no L2 term): a validation loss."""
        cdef Rows src
        cdef Py_ssize_t n = self._source(&src, source, Y, sw)
        cdef void *p = self._params("params", params)
        cdef double loss, sw_sum = 0
        if src.Y == NULL:
            raise TypeError("engine: data_loss needs targets Y")
        with nogil:
            if self.f64:
                loss = _chunks(&self.lay, &src, n, <double *>p, NULL, NULL, 0,
                               <double *>self.w, self.n_threads, &sw_sum, NULL)
            else:
                loss = _chunks(&self.lay, &src, n, <float *>p, NULL, NULL, 0,
                               <float *>self.w, self.n_threads, &sw_sum, NULL)
        return loss_scale * loss / sw_sum

    def forward(self, source, params, out, int mode):
        """Network outputs for the rows into ``out`` (n, n_out), ``rows`` rows at a time.
        mode 0: raw last-layer values (logits); 1: outputs (probabilities for softmax /
        logistic, raised to at least the smallest normal float so that none is exactly 0;
        e^z for exp); 2: log-probabilities; 3 (HIDDEN): the hidden activation applied to
        the last layer too, for an engine made on the layers up to a hidden one (its
        activations: MLP.transform).

        Returns -1 when dense X holds a NaN or an infinity (out is then incomplete); else
        the number of non-finite values in out (overflow), 0 when all is well.
        """
        cdef Rows src
        cdef Py_ssize_t n = self._source(&src, source, None, None)
        cdef void *p = self._params("params", params)
        cdef void *o = <void *>_data("out", out, self.dtype, n, self.lay.sizes[self.lay.n_layers])
        cdef double status
        cdef long long splits = 0
        with nogil:
            if self.f64:
                status = _chunks(&self.lay, &src, n, <double *>p, NULL, <double *>o, mode,
                                 <double *>self.w, self.n_threads, NULL, &splits)
            else:
                status = _chunks(&self.lay, &src, n, <float *>p, NULL, <float *>o, mode,
                                 <float *>self.w, self.n_threads, NULL, &splits)
        _parallel_counts[SITE_FORWARD] += splits  # (debug counters, under the GIL)
        return int(status)


cdef object _train(Engine e, const Rows *src, Py_ssize_t n, floating *p, floating *g,
                   Optimizer *opt, long long step, bint shuffle, uint64_t *state,
                   double alpha, double loss_scale):
    """Engine.train_epoch for one dtype: each batch in two phases split over threads,
    phase 1 by rows (forward, losses, deltas) and phase 2 by weight rows (gradients,
    then the optimizer's step on them)."""
    cdef const Layout *lay = &e.lay
    cdef RowsJob rows
    cdef FeaturesJob feats
    cdef Py_ssize_t start, stop, nb, i, r, n_batches = 0, hits = 0, batch_size = e.rows
    cdef int T_rows, T_feat, T, l  # (T: each batch's, from the chooser)
    cdef long long par_rows = 0, par_feat = 0  # (debug counters, see parallel_counts)
    cdef double total = 0, batch_loss, sw_sum, sq, checked, w0, t_batch
    cdef double started = cymlp_now()
    cdef double prof[4]
    cdef long long adapt_batches = e.adapt.batches, adapt_fewer = e.adapt.fewer
    cdef const floating *x
    cdef const floating *yb
    cdef const floating *swb
    cdef floating *w = <floating *>e.w
    cdef Py_ssize_t *order = NULL
    cdef uint64_t drop_seed = 0
    cdef unsigned long fp_mode = 0
    cdef bint packed = batch_size > gemm_small_m()  # (single rows read the weights as they are)
    # phase 1 splits rows finer than one chunk per task only where every layer's
    # weights are packed already: each forward product would pack the others again
    # (the backward delta . W^T packs W^T in every chunk regardless: small next to
    # the forward for the networks whose weights fit PACKED_MAX)
    cdef bint all_packed = packed
    for l in range(lay.n_layers):
        all_packed = all_packed and lay.wp_off[l] >= 0
    memset(prof, 0, sizeof(prof))
    if shuffle:
        order = <Py_ssize_t *>malloc(n * sizeof(Py_ssize_t) if n > 0 else 1)
        if order == NULL:
            raise MemoryError()
    rows = RowsJob(lay=lay, src=src, order=order, start=0, nb=0, params=p, ws=w,
                   row_loss=e.row_loss, row_hit=e.row_hit, busy=e.busy, drop_seed=0,
                   dropout=lay.dropout, packed=packed, f64=floating is double, x_alt=False,
                   next=e.counters, n_chunks=1)
    feats = FeaturesJob(lay=lay, x=NULL, n=0, params=p, grads=g, ws=w, opt=opt[0], step=0,
                        scale=1, alpha=alpha, packed=packed, f64=floating is double,
                        stage=GRADIENT_AND_STEP, next=e.counters,
                        n_chunks=_feature_chunks(lay), busy=e.busy,
                        sq_blocks=e.sq_blocks,
                        gsq_blocks=e.gsq_blocks, x_dense=src.dense)
    try:
        fp_mode = fp_enter()
        checked = cymlp_now()
        with nogil:
            if packed:  # phase 2 keeps these up to date as it updates the weights
                for l in range(lay.n_layers):
                    if lay.wp_off[l] >= 0:
                        pack_rows(lay.sizes[l], lay.sizes[l + 1], 0, lay.sizes[l],
                                  p + lay.w_off[l], lay.sizes[l + 1], 1, w + lay.wp_off[l])
            if shuffle:
                for i in range(n):
                    order[i] = i
                _shuffle(order, n, state)
            start = 0
            while start < n:
                if cymlp_now() - checked > 0.05:  # Ctrl-C: at most every 50 ms, take
                    checked = cymlp_now()         # the GIL and let Python's handlers run
                    with gil:
                        PyErr_CheckSignals()      # raises KeyboardInterrupt out of here
                stop = start + batch_size if start + batch_size < n else n
                nb = stop - start
                t_batch = cymlp_now()
                T = _adapt_threads(&e.adapt)  # n_jobs, or fewer while the chooser finds that faster
                if lay.dropout:
                    drop_seed = _splitmix64(state)
                # phase 1: rows split over threads; a few rows are not worth waking one for
                T_rows = T if nb >= ROWS_PER_THREAD_MIN * T else 1
                rows.start = start
                rows.nb = nb
                rows.n_chunks = (T_rows * ROW_CHUNKS if T_rows > 1 and all_packed
                                 and nb >= ROWS_PER_THREAD_MIN * T_rows * ROW_CHUNKS
                                 else T_rows)
                cymlp_chunks_reset(e.counters, rows.n_chunks, T_rows)
                rows.drop_seed = drop_seed
                # with several threads, batches alternate between two copies of the
                # inputs: the gather's stores then go to lines the other core last read
                # two steps ago rather than in the last phase 2 (docs/performance.md)
                rows.x_alt = lay.x_alt != lay.x_off and n_batches % 2 == 1
                w0 = cymlp_now()
                parallel_for(T_rows, _rows_task, &rows)  # (one task: run in this thread)
                _account(prof, cymlp_now() - w0, rows.busy, T_rows)
                par_rows += T_rows > 1
                # (pointers only, to the block phase 1 gathered)
                x = _gather(lay, src, order, start, 0, 0, w, &yb, &swb, rows.x_alt)
                if e.row_hit != NULL:
                    for r in range(nb):
                        hits += e.row_hit[r]
                sw_sum = _weight_sum(swb, nb)
                if sw_sum <= 0:  # all weights zero: nothing to learn from this batch
                    start = stop
                    continue
                batch_loss = 0
                for r in range(nb):  # in row order: the same sum for any thread count
                    batch_loss += e.row_loss[r]
                # phase 2: weight rows split over threads, from STEP_WORK_MIN
                T_feat = T if (nb + 1) * lay.n_params >= STEP_WORK_MIN else 1
                feats.x = x
                feats.n = nb
                feats.step = step + n_batches + 1
                if opt.schedule != PER_EPOCH:
                    feats.opt.lr = scheduled_lr(opt, feats.step)
                feats.scale = 1.0 / sw_sum
                if opt.max_grad_norm > 0:  # the gradient first, then the clipped step
                    feats.stage = GRADIENT_ONLY
                    cymlp_chunks_reset(e.counters, feats.n_chunks, T_feat)
                    w0 = cymlp_now()
                    parallel_for(T_feat, _features_task, &feats)
                    _account(prof, cymlp_now() - w0, feats.busy, T_feat)
                    par_feat += T_feat > 1
                    feats.scale *= _clip_coef(lay, &feats, e.n_blocks, g, opt.max_grad_norm)
                    feats.stage = STEP_ONLY
                cymlp_chunks_reset(e.counters, feats.n_chunks, T_feat)
                w0 = cymlp_now()
                parallel_for(T_feat, _features_task, &feats)
                _account(prof, cymlp_now() - w0, feats.busy, T_feat)
                par_feat += T_feat > 1
                feats.stage = GRADIENT_AND_STEP
                batch_loss *= loss_scale
                if alpha != 0:
                    sq = 0
                    for i in range(e.n_blocks):
                        sq += e.sq_blocks[i]
                    batch_loss += 0.5 * alpha * sq
                total += nb * batch_loss / sw_sum
                n_batches += 1
                start = stop
                if nb == batch_size:  # (a short last batch is no measure of the others)
                    _adapt_record(&e.adapt, cymlp_now() - t_batch)
    finally:
        fp_leave(fp_mode)
        free(order)
        _parallel_counts[SITE_ROWS] += par_rows  # (debug counters, under the GIL)
        _parallel_counts[SITE_FEATURES] += par_feat
        prof[0] = cymlp_now() - started
        for i in range(4):
            _profile[i] += prof[i]
        _profile[4] += e.adapt.batches - adapt_batches
        _profile[5] += e.adapt.fewer - adapt_fewer
    return total / n, n_batches, hits if e.row_hit != NULL else None


cdef inline void _account(double *prof, double wall, const double *busy,
                          int T) noexcept nogil:
    """Adds one parallel region to the profile (see profile())."""
    cdef int t
    prof[1] += wall
    for t in range(T):
        prof[2] += busy[t]
        prof[3] += wall - busy[t]


cdef double _clip_coef(const Layout *lay, const FeaturesJob *j, Py_ssize_t n_blocks,
                       const floating *grads, double max_norm) noexcept nogil:
    """min(1, max_norm / (||g|| + 1e-6)) for the whole gradient g of the step (as
    torch.nn.utils.clip_grad_norm_): the weight blocks' sums of squares in block order,
    then the biases' in index order, so that the norm does not depend on the threads."""
    cdef Py_ssize_t i, k
    cdef int l
    cdef double sq = 0, coef
    cdef floating scale = <floating>j.scale
    cdef floating gk
    for i in range(n_blocks):
        sq += j.gsq_blocks[i]
    for l in range(lay.n_layers):
        for k in range(lay.sizes[l + 1]):
            gk = scale * grads[lay.b_off[l] + k]
            sq += <double>gk * gk
    coef = max_norm / (sqrt(sq) + 1e-6)
    return coef if coef < 1 else 1


cdef double _chunks(const Layout *lay, const Rows *src, Py_ssize_t n, const floating *params,
                    floating *grads, floating *out, int mode, floating *ws, int n_threads,
                    double *sw_sum, long long *splits) noexcept nogil:
    """The full-batch passes, lay.rows rows at a time: with ``out``, the outputs of
    Engine.forward (returns its status); else with ``grads``, the summed loss and its
    gradient added to grads; else the summed data loss. sw_sum (when not NULL) gets the
    sum of the sample weights added; splits (forward) the chunks split over threads."""
    cdef Py_ssize_t start = 0, nb, k, bad = 0
    cdef Py_ssize_t n_in = lay.sizes[0], n_out = lay.sizes[lay.n_layers]
    cdef const floating *xb
    cdef const floating *yb
    cdef const floating *swb
    cdef floating *o
    cdef floating *gc = ws + lay.g_off
    cdef double loss = 0
    cdef ForwardJob job
    while start < n:
        nb = lay.rows if start + lay.rows < n else n - start
        if out != NULL and src.X != NULL and not _all_finite(
                <const floating *>src.X + start * n_in, nb * n_in):
            return -1  # checked chunk by chunk, while the rows come into the cache
        xb = _gather(lay, src, NULL, start, nb, 0, ws, &yb, &swb, False)
        if out != NULL and n_threads > 1 and nb >= ROWS_PER_THREAD_MIN * n_threads:
            # rows split over threads, each running whole products on its own (one
            # parallel region per chunk, not one per product)
            job = ForwardJob(lay=lay, x=xb, nb=nb, params=params, out=out + start * n_out,
                             ws=ws, mode=mode, f64=floating is double, x_dense=src.dense)
            parallel_for(n_threads, _forward_task, &job)
            splits[0] += 1
        elif out != NULL:
            o = out + start * n_out
            _forward_rows(lay, xb, nb, 0, params, ws, ws + lay.work_off, n_threads, o,
                          lay.hidden_act if mode == HIDDEN else IDENTITY, src.dense)
            _outputs(lay, o, nb, mode)
        elif grads != NULL:
            loss += _loss_grad(lay, xb, yb, swb, nb, params, gc, ws, n_threads, src.dense)
            for k in range(lay.n_params):
                grads[k] += gc[k]
        else:
            loss += _forward(lay, xb, yb, swb, nb, params, ws, <floating *>NULL, n_threads,
                             src.dense)
        if sw_sum != NULL:
            sw_sum[0] += _weight_sum(swb, nb)
        start += nb
    if out == NULL:
        return loss
    for k in range(n * n_out):
        if out[k] - out[k] != 0:
            bad += 1
    return bad


cdef double _loss_and_grad(const Layout *lay, const Rows *src, Py_ssize_t n,
                           const floating *p, floating *g, floating *ws, int n_threads,
                           double alpha, double loss_scale) noexcept nogil:
    """Engine.loss_and_grad for one dtype: the summed pass of _chunks, then the L2 term
    and the average over the sample weights."""
    cdef Py_ssize_t k, l
    cdef double loss, sw_sum = 0
    memset(g, 0, lay.n_params * sizeof(floating))
    loss = _chunks(lay, src, n, p, g, <floating *>NULL, 0, ws, n_threads, &sw_sum, NULL)
    for l in range(lay.n_layers):
        for k in range(lay.sizes[l] * lay.sizes[l + 1]):
            g[lay.w_off[l] + k] += alpha * p[lay.w_off[l] + k]
    for k in range(lay.n_params):
        g[k] /= sw_sum
    return (loss_scale * loss + 0.5 * alpha * _sq_weights(lay, p)) / sw_sum


cdef bint _all_finite(const floating *x, Py_ssize_t n) noexcept nogil:
    """True when none of x[0..n) is NaN or +-inf: their exponent bits are all ones. An OR
    over every element, with no early exit, so that the loop vectorises (the bits are
    read by memcpy, which compilers turn into a plain load without breaking aliasing)."""
    cdef Py_ssize_t k
    cdef uint32_t u32, bad32 = 0
    cdef uint64_t u64, bad64 = 0
    if floating is float:
        for k in range(n):
            memcpy(&u32, &x[k], sizeof(uint32_t))
            bad32 |= (u32 & 0x7f800000u) == 0x7f800000u
        return bad32 == 0
    else:
        for k in range(n):
            memcpy(&u64, &x[k], sizeof(uint64_t))
            bad64 |= (u64 & 0x7ff0000000000000ULL) == 0x7ff0000000000000ULL
        return bad64 == 0


cdef enum:
    FINITE_PER_THREAD_MIN = 1 << 20  # values a thread of all_finite checks at least


cdef struct FiniteJob:
    const void *x
    Py_ssize_t n
    bint f64
    unsigned char *ok  # one per task


cdef void _finite_task(void *job, int t, int T) noexcept nogil:
    """Task t of T of all_finite: its contiguous share of the values."""
    cdef FiniteJob *j = <FiniteJob *>job
    cdef Py_ssize_t k0 = j.n * t // T, k1 = j.n * (t + 1) // T
    if j.f64:
        j.ok[t] = _all_finite(<const double *>j.x + k0, k1 - k0)
    else:
        j.ok[t] = _all_finite(<const float *>j.x + k0, k1 - k0)


def all_finite(const floating[::1] x not None, int n_threads=1) -> bool:
    """True when no value of the 1-D contiguous float32/float64 array x is NaN or +-inf,
    checked on up to n_threads threads (one per FINITE_PER_THREAD_MIN values at least):
    the estimators' finiteness check of a dense X in fit, which is memory-bound (MNIST's
    188 MB: ~10 ms on one thread)."""
    cdef Py_ssize_t n = x.shape[0]
    cdef int t, T = n_threads if n_threads > 1 else 1
    cdef unsigned char ok_small[8]
    cdef unsigned char *ok = ok_small
    cdef FiniteJob job
    cdef bint result = True
    if n == 0:
        return True
    if T > n // FINITE_PER_THREAD_MIN:
        T = <int>(n // FINITE_PER_THREAD_MIN) if n >= FINITE_PER_THREAD_MIN else 1
    if T > 8:
        ok = <unsigned char *>malloc(T)
        if ok == NULL:
            raise MemoryError()
    job = FiniteJob(x=&x[0], n=n, f64=floating is double, ok=ok)
    with nogil:
        parallel_for(T, _finite_task, &job)
    for t in range(T):
        result = result and ok[t]
    if ok != ok_small:
        free(ok)
    return result
