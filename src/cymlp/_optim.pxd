# cython: language_level=3
"""In-place optimizer steps on the flat parameter buffer (paper §3.6 and §4.3.4).

``params``, ``grads`` and the state vectors all have ``size`` elements and the same
layout (cymlp keeps every weight and bias in one contiguous buffer).
"""
from libc.math cimport sqrt, sqrtf
cimport cython
from cython cimport floating

cdef enum:
    SGD = 0
    ADAM = 1


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
    cdef Py_ssize_t k
    cdef floating v, g, eta = <floating>lr, mu = <floating>momentum
    if mu == 0:
        for k in range(size):
            params[k] -= eta * (scale * (grads[k] + l2 * params[k]))
    elif nesterov:
        for k in range(size):
            g = scale * (grads[k] + l2 * params[k])
            v = mu * velocity[k] - eta * g
            velocity[k] = v
            params[k] += mu * v - eta * g
    else:
        for k in range(size):
            g = scale * (grads[k] + l2 * params[k])
            v = mu * velocity[k] - eta * g
            velocity[k] = v
            params[k] += v


@cython.cdivision(True)
cdef inline void adam_step(floating *params, const floating *grads, floating *m, floating *v,
                           Py_ssize_t size, double lr, double beta_1, double beta_2,
                           double epsilon, long long t, floating scale,
                           floating l2) noexcept nogil:
    """Adam (Kingma & Ba), as scikit-learn's AdamOptimizer; t is the step number (>= 1),
    on the gradient g = scale * (grads + l2 * W).

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    W <- W - lr_t m / (sqrt(v) + eps),  lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)
    Elementwise, in the caller's thread (see sgd_step).
    """
    cdef Py_ssize_t k
    cdef floating step = <floating>(lr * sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t))
    cdef floating b1 = <floating>beta_1, b2 = <floating>beta_2, eps = <floating>epsilon
    # 1 - beta in double, then rounded, as scikit-learn (numpy computes the Python float
    # 1 - beta before it meets a float32 array): 1 - float32(0.999) would be 0.00099998713
    cdef floating c1 = <floating>(1 - beta_1), c2 = <floating>(1 - beta_2)
    cdef floating g, mk, vk
    for k in range(size):
        g = scale * (grads[k] + l2 * params[k])
        mk = b1 * m[k] + c1 * g
        vk = b2 * v[k] + c2 * g * g
        m[k] = mk
        v[k] = vk
        if floating is float:
            params[k] -= step * mk / (sqrtf(vk) + eps)
        else:
            params[k] -= step * mk / (sqrt(vk) + eps)
