# cython: language_level=3
"""In-place optimizer steps on the flat parameter buffer (paper §3.6 and §4.3.4).

``params``, ``grads`` and the state vectors all have ``size`` elements and the same
layout (cymlp keeps every weight and bias in one contiguous buffer). The loops are in
``_optim.h``, compiled without fused multiply-adds so that they round as scikit-learn's
optimizers do on every architecture, once per SIMD variant (the run-time dispatch of
``_kernels`` picks the one in use; every variant gives the same bits); here the
constants are rounded to the dtype.
"""
from libc.math cimport cos, sqrt
from cython cimport floating

# The optimizers, one entry each: its kind here, its step below and in _optim.h, its
# hyperparameters, state and schedule in cymlp/_optimizers.py (which names the kind).
cdef enum:
    SGD = 0
    ADAM = 1
    ADAMW = 2  # Adam's step with decoupled weight decay

# Learning-rate schedules computed per step (the others change lr between epochs, in
# cymlp/_optimizers.py)
cdef enum:
    PER_EPOCH = 0   # lr as given
    COSINE = 1
    ONECYCLE = 2


cdef struct Optimizer:
    int kind                # SGD or ADAM
    double lr, momentum, beta_1, beta_2, epsilon
    double weight_decay     # AdamW's (0 for the others)
    int schedule            # PER_EPOCH, COSINE or ONECYCLE
    double lr_max           # COSINE, ONECYCLE: the peak rate (lr is then this step's)
    double total_steps      # ... the steps of the whole run (max_iter epochs)
    double warmup_steps     # ... the linear warm-up's steps
    double max_grad_norm    # clip the step's whole gradient to this L2 norm (0: off)
    bint nesterov
    void *m                 # first state vector (SGD: the velocity), params' dtype
    void *v                 # second state vector (Adam), or NULL


from cymlp._kernels cimport dadam_step, dsgd_step, sadam_step, ssgd_step


cdef extern from "_optim.h" nogil:
    void cymlp_sgd_outer_row_f(float *params_row, float a_i, const float *d, Py_ssize_t n,
                               float eta, float scale)
    void cymlp_sgd_outer_row_d(double *params_row, double a_i, const double *d,
                               Py_ssize_t n, double eta, double scale)


cdef inline void sgd_step(floating *params, const floating *grads, floating *velocity,
                          Py_ssize_t size, double lr, double momentum, bint nesterov,
                          floating scale, floating l2) noexcept nogil:
    """Gradient descent with momentum, as scikit-learn's SGDOptimizer, on the gradient
    g = scale * (grads + l2 * W) (the batch average and the L2 term, fused here).
    v <- momentum * v - lr * g;  W <- W + v            (classical momentum)
    W <- W + momentum * v - lr * g  after updating v   (Nesterov)
    With momentum = 0 this is the paper's W_new = W_old - lr * dE/dW (§3.6, §4.3.4).
    Elementwise, in the caller's thread: the engine's threads each step the parameters
    whose gradients they computed.
    """
    if floating is float:
        ssgd_step(params, grads, velocity, size, <float>lr, <float>momentum, nesterov, scale,
                  l2)
    else:
        dsgd_step(params, grads, velocity, size, lr, momentum, nesterov, scale, l2)


cdef inline void sgd_outer_row(floating *params_row, floating a_i, const floating *d,
                               Py_ssize_t n, double lr, floating scale) noexcept nogil:
    """Plain SGD on one weight row of a one-row batch: W_i <- W_i - lr * scale * a_i d,
    the bits of sgd_step on the gradient row a_i d (momentum 0, no L2)."""
    if floating is float:
        cymlp_sgd_outer_row_f(params_row, a_i, d, n, <float>lr, scale)
    else:
        cymlp_sgd_outer_row_d(params_row, a_i, d, n, lr, scale)


cdef inline void adam_step(floating *params, const floating *grads, floating *m, floating *v,
                           Py_ssize_t size, double lr, double beta_1, double beta_2,
                           double epsilon, long long t, floating scale, floating l2,
                           double weight_decay=0) noexcept nogil:
    """Adam (Kingma & Ba), as scikit-learn's AdamOptimizer; t is the step number (>= 1),
    on the gradient g = scale * (grads + l2 * W).
    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    W <- W - lr_t m / (sqrt(v) + eps),  lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)
    AdamW (weight_decay > 0, Loshchilov & Hutter): W <- (1 - lr wd) W - lr_t m / (...),
    the decay decoupled from g (torch.optim.AdamW's order: decay, then the Adam step).
    Elementwise, in the caller's thread (see sgd_step).
    """
    cdef double step = lr * sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
    # 1 - beta in double, then rounded, as scikit-learn (numpy computes the Python float
    # 1 - beta before it meets a float32 array): 1 - float32(0.999) would be 0.00099998713
    if floating is float:
        sadam_step(params, grads, m, v, size, <float>step, <float>beta_1, <float>beta_2,
                   <float>(1 - beta_1), <float>(1 - beta_2), <float>epsilon, scale, l2,
                   <float>(1 - lr * weight_decay))
    else:
        dadam_step(params, grads, m, v, size, step, beta_1, beta_2, 1 - beta_1, 1 - beta_2,
                   epsilon, scale, l2, 1 - lr * weight_decay)


cdef inline void optimizer_step(const Optimizer *opt, floating *params, const floating *grads,
                                Py_ssize_t off, Py_ssize_t size, long long t, floating scale,
                                floating l2, bint weights) noexcept nogil:
    """The step of ``opt`` on params[off:off + size], whose state is at the same offsets;
    ``t`` (>= 1) is the number of this update, the gradient scale * (grads + l2 * W).
    ``weights``: these are weights, not biases (AdamW decays weights only, as the L2
    term alpha applies to weights only)."""
    if opt.kind == SGD:
        sgd_step(params + off, grads + off, <floating *>opt.m + off, size, opt.lr,
                 opt.momentum, opt.nesterov, scale, l2)
    else:  # ADAM, ADAMW
        adam_step(params + off, grads + off, <floating *>opt.m + off, <floating *>opt.v + off,
                  size, opt.lr, opt.beta_1, opt.beta_2, opt.epsilon, t, scale, l2,
                  opt.weight_decay if weights else 0)


cdef inline double scheduled_lr(const Optimizer *opt, long long t) noexcept nogil:
    """The learning rate of update t (>= 1) under opt.schedule; k = t - 1 counts the
    updates before it, T = total_steps, W = warmup_steps, lr = lr_max:
    warm-up (k < W): from s to lr linearly, s + (lr - s) (k + 1) / W, s = 0 for
    COSINE and lr / 25 for ONECYCLE;
    then COSINE: lr (1 + cos(pi (k - W) / (T - W))) / 2, down to 0 at k = T;
    ONECYCLE: f + (lr - f) (1 + cos(pi (k - W) / (T - W))) / 2, f = lr / (25 * 1e4)
    (PyTorch's OneCycleLR's start and end, with a linear warm-up).
    Past T (more partial_fit epochs than max_iter) the rate stays at its end value."""
    cdef double k = t - 1, T = opt.total_steps, W = opt.warmup_steps, lr = opt.lr_max
    cdef double start = 0, low = 0
    if opt.schedule == PER_EPOCH:
        return opt.lr
    if opt.schedule == ONECYCLE:
        start = lr / 25
        low = lr / (25 * 1e4)
    if k >= T:  # (also when the warm-up is the whole run: no 0 / 0)
        return low
    if k < W:
        return start + (lr - start) * (k + 1) / W
    return low + (lr - low) * (1 + cos(3.141592653589793 * (k - W) / (T - W))) / 2
