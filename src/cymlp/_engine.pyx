# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The training loop: forward, backward and update for a whole epoch under ``nogil``.

A network is a list of layer widths ``sizes = (n_in, h_1, ..., n_out)``, one hidden
activation and one output activation. All weights and biases live in one flat buffer
``params``, laid out as ``W_0 (n_in, h_1), b_0 (h_1,), W_1, b_1, ...`` (row-major), so
the optimizers and model files see a single vector and ``coefs_`` / ``intercepts_`` are
views into it. Scratch memory (``ws``) is allocated once per fit by the caller, sized by
:func:`workspace_size`; nothing is allocated per batch.

Callers (``cymlp._estimators``) validate everything first: shapes, dtypes, contiguity,
finiteness, batch size >= 1. Nothing here checks again.
"""
from libc.stdint cimport uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy
from cython cimport floating

from cymlp._kernels cimport (activation_backward, activation_forward, dense_backward,
                             dense_forward, gemm_work_size, output_forward, output_log_proba)
from cymlp._optim cimport SGD, adam_step, sgd_step


cdef struct Layout:
    int n_layers            # weight layers = len(sizes) - 1
    Py_ssize_t *sizes       # (n_layers + 1,) widths
    Py_ssize_t *w_off       # (n_layers,) offset of W_l in params
    Py_ssize_t *b_off       # (n_layers,) offset of b_l in params
    Py_ssize_t *a_off       # (n_layers + 1,) offset of activation l in ws (0 unused)
    Py_ssize_t rows         # rows the workspace holds
    Py_ssize_t x_off, y_off, d0_off, d1_off, work_off
    int hidden_act, out_act
    double slope


def workspace_size(sizes, Py_ssize_t rows, int n_threads):
    """Scratch elements for batches of up to ``rows`` rows (see module docstring)."""
    cdef Layout lay
    _layout(&lay, sizes, rows, n_threads, 0, 0, 0.0)
    try:
        return int(lay.work_off + gemm_work_size(n_threads))
    finally:
        _free_layout(&lay)


cdef int _layout(Layout *lay, sizes, Py_ssize_t rows, int n_threads, int hidden_act,
                 int out_act, double slope) except -1:
    cdef int L = len(sizes) - 1
    cdef Py_ssize_t l, off = 0, widest = 0
    lay.n_layers = L
    lay.sizes = <Py_ssize_t *>malloc((L + 1) * sizeof(Py_ssize_t))
    lay.w_off = <Py_ssize_t *>malloc(L * sizeof(Py_ssize_t) + 1)
    lay.b_off = <Py_ssize_t *>malloc(L * sizeof(Py_ssize_t) + 1)
    lay.a_off = <Py_ssize_t *>malloc((L + 1) * sizeof(Py_ssize_t))
    if not (lay.sizes and lay.w_off and lay.b_off and lay.a_off):
        _free_layout(lay)
        raise MemoryError()
    for l in range(L + 1):
        lay.sizes[l] = sizes[l]
    for l in range(L):
        lay.w_off[l] = off
        off += lay.sizes[l] * lay.sizes[l + 1]
        lay.b_off[l] = off
        off += lay.sizes[l + 1]
        if lay.sizes[l + 1] > widest:
            widest = lay.sizes[l + 1]
    # workspace: x batch | y batch | activations 1..L | delta ping-pong | gemm scratch
    lay.rows = rows
    off = 0
    lay.x_off = off
    off += rows * lay.sizes[0]
    lay.y_off = off
    off += rows * lay.sizes[L]
    lay.a_off[0] = 0
    for l in range(1, L + 1):
        lay.a_off[l] = off
        off += rows * lay.sizes[l]
    lay.d0_off = off
    off += rows * widest
    lay.d1_off = off
    off += rows * widest
    off = (off + 15) // 16 * 16  # keep the gemm scratch 64-byte aligned relative to ws
    lay.work_off = off
    lay.hidden_act = hidden_act
    lay.out_act = out_act
    lay.slope = slope
    return 0


cdef void _free_layout(Layout *lay) noexcept:
    free(lay.sizes)
    free(lay.w_off)
    free(lay.b_off)
    free(lay.a_off)
    lay.sizes = lay.w_off = lay.b_off = lay.a_off = NULL


cdef double _forward(const Layout *lay, const floating *x, const floating *y, Py_ssize_t n,
                     const floating *params, floating *ws, floating *out,
                     int n_threads) noexcept nogil:
    """Forward pass of n rows (paper §4.3.2): a_0 = x, z_l = a_{l-1}.W_l + b_l,
    a_l = f(z_l), output = softmax / logistic / identity of the last z.

    Activations go to ws; the last layer goes to ``out`` (n, n_out) when given.
    Returns the summed data loss when y is given, else 0.
    """
    cdef int l, L = lay.n_layers
    cdef const floating *a = x
    cdef floating *z = NULL
    for l in range(L):
        z = out if (l == L - 1 and out != NULL) else ws + lay.a_off[l + 1]
        dense_forward(a, params + lay.w_off[l], params + lay.b_off[l], z, n, lay.sizes[l],
                      lay.sizes[l + 1], ws + lay.work_off, n_threads)
        if l < L - 1:
            activation_forward(lay.hidden_act, z, n * lay.sizes[l + 1], <floating>lay.slope)
        a = z
    if y == NULL:
        return 0
    return output_forward(lay.out_act, z, y, n, lay.sizes[L])


cdef double _loss_grad(const Layout *lay, const floating *x, const floating *y, Py_ssize_t n,
                       const floating *params, floating *grads, floating *ws, double alpha,
                       int n_threads) noexcept nogil:
    """Mean loss of n rows and its gradient in ``grads`` (paper §4.3.3).

    loss = (sum_i loss_i + alpha/2 * sum_l ||W_l||^2) / n   (scikit-learn's scaling)
    delta_L = output - y  (softmax + cross-entropy, logistic + log-loss and identity +
    squared error all give this), delta_{l-1} = (delta_l . W_l^T) * f'(a_{l-1}),
    grad W_l = (a_{l-1}^T . delta_l + alpha W_l) / n, grad b_l = sum_i delta_l / n.
    """
    cdef int l, L = lay.n_layers
    cdef Py_ssize_t k, n_out = lay.sizes[L]
    cdef floating *delta = ws + lay.d0_off
    cdef floating *prev = ws + lay.d1_off
    cdef floating *tmp
    cdef floating *a_L
    cdef const floating *a_prev
    cdef double loss, sq = 0
    loss = _forward(lay, x, y, n, params, ws, <floating *>NULL, n_threads)
    a_L = ws + lay.a_off[L]
    for k in range(n * n_out):
        delta[k] = a_L[k] - y[k]
    for l in range(L - 1, -1, -1):
        a_prev = x if l == 0 else ws + lay.a_off[l]
        dense_backward(a_prev, params + lay.w_off[l], delta, grads + lay.w_off[l],
                       grads + lay.b_off[l], prev if l > 0 else <floating *>NULL, n,
                       lay.sizes[l], lay.sizes[l + 1], <floating>(1.0 / n), <floating>alpha,
                       ws + lay.work_off, n_threads)
        if l > 0:
            activation_backward(lay.hidden_act, a_prev, prev, n * lay.sizes[l],
                                <floating>lay.slope)
            tmp = delta
            delta = prev
            prev = tmp
    if alpha != 0:
        for l in range(L):
            for k in range(lay.sizes[l] * lay.sizes[l + 1]):
                sq += params[lay.w_off[l] + k] * params[lay.w_off[l] + k]
    return (loss + 0.5 * alpha * sq) / n


cdef inline uint64_t _splitmix64(uint64_t *state) noexcept nogil:
    """splitmix64 (Steele, Lea & Flood 2014): the seeded PRNG behind shuffling."""
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


def train_epoch(sizes, int hidden_act, int out_act, double slope,
                floating[:, ::1] X, floating[:, ::1] Y, floating[::1] params,
                floating[::1] grads, floating[::1] ws, Py_ssize_t batch_size, bint shuffle,
                uint64_t[::1] rng, int solver, double lr, double momentum, bint nesterov,
                floating[::1] state1, floating[::1] state2, double beta_1, double beta_2,
                double epsilon, long long step, double alpha, int n_threads):
    """One pass over X (n, n_in) / Y (n, n_out) in minibatches: forward, backward, update.

    ``solver`` is SGD (0: lr, momentum, nesterov, velocity in state1) or ADAM (1: lr,
    beta_1, beta_2, epsilon, m in state1, v in state2, ``step`` = updates done so far).
    With ``shuffle`` the row order is a fresh permutation from ``rng`` (advanced in place).
    Returns ``(mean loss over the epoch, number of updates made)``, the loss of each batch
    weighted by its size as scikit-learn's ``loss_curve_``.
    """
    cdef Layout lay
    cdef Py_ssize_t n = X.shape[0], n_in = X.shape[1], n_out = Y.shape[1]
    cdef Py_ssize_t start, stop, nb, i, r, n_batches = 0
    cdef Py_ssize_t size = params.shape[0]
    cdef double total = 0
    cdef floating *xb
    cdef floating *yb
    cdef floating *w = &ws[0]
    cdef Py_ssize_t *order = NULL
    _layout(&lay, sizes, batch_size, n_threads, hidden_act, out_act, slope)
    try:
        if shuffle:
            order = <Py_ssize_t *>malloc(n * sizeof(Py_ssize_t))
            if order == NULL:
                raise MemoryError()
        with nogil:
            if shuffle:
                for i in range(n):
                    order[i] = i
                _shuffle(order, n, &rng[0])
            start = 0
            while start < n:
                stop = start + batch_size if start + batch_size < n else n
                nb = stop - start
                if shuffle:
                    xb = w + lay.x_off
                    yb = w + lay.y_off
                    for r in range(nb):
                        memcpy(xb + r * n_in, &X[order[start + r], 0], n_in * sizeof(floating))
                        memcpy(yb + r * n_out, &Y[order[start + r], 0],
                               n_out * sizeof(floating))
                else:
                    xb = &X[start, 0]
                    yb = &Y[start, 0]
                total += nb * _loss_grad(&lay, xb, yb, nb, &params[0], &grads[0], w, alpha,
                                         n_threads)
                n_batches += 1
                if solver == SGD:
                    sgd_step(&params[0], &grads[0], &state1[0], size, lr, momentum, nesterov)
                else:
                    adam_step(&params[0], &grads[0], &state1[0], &state2[0], size, lr, beta_1,
                              beta_2, epsilon, step + n_batches)
                start = stop
    finally:
        free(order)
        _free_layout(&lay)
    return total / n, n_batches


def loss_and_grad(sizes, int hidden_act, int out_act, double slope, floating[:, ::1] X,
                  floating[:, ::1] Y, floating[::1] params, floating[::1] grads,
                  floating[::1] ws, double alpha, int n_threads):
    """Mean loss over all rows of X and its gradient w.r.t. params (written to grads).

    ``ws`` must hold ``workspace_size(sizes, len(X), n_threads)`` elements.
    """
    cdef Layout lay
    cdef double loss
    _layout(&lay, sizes, X.shape[0], n_threads, hidden_act, out_act, slope)
    try:
        with nogil:
            loss = _loss_grad(&lay, &X[0, 0], &Y[0, 0], X.shape[0], &params[0], &grads[0],
                              &ws[0], alpha, n_threads)
    finally:
        _free_layout(&lay)
    return loss


def forward(sizes, int hidden_act, int out_act, double slope, floating[:, ::1] X,
            floating[::1] params, floating[:, ::1] out, floating[::1] ws, Py_ssize_t chunk,
            int mode, int n_threads):
    """Network outputs for X (n, n_in) into out (n, n_out), ``chunk`` rows at a time.

    mode 0: raw last-layer values (logits); 1: outputs (probabilities for softmax /
    logistic); 2: log-probabilities. ``ws`` holds ``workspace_size(sizes, chunk, ...)``.
    """
    cdef Layout lay
    cdef Py_ssize_t n = X.shape[0], n_out = out.shape[1], start, nb
    cdef floating *o
    _layout(&lay, sizes, chunk, n_threads, hidden_act, out_act, slope)
    try:
        with nogil:
            start = 0
            while start < n:
                nb = chunk if start + chunk < n else n - start
                o = &out[start, 0]
                _forward(&lay, &X[start, 0], <floating *>NULL, nb, &params[0], &ws[0], o,
                         n_threads)
                if mode == 1:
                    output_forward(out_act, o, <floating *>NULL, nb, n_out)
                elif mode == 2:
                    output_log_proba(out_act, o, nb, n_out)
                start += nb
    finally:
        _free_layout(&lay)
