# cython: language_level=3
"""In-place optimizer steps on the flat parameter buffer (paper §3.6 and §4.3.4).

``params``, ``grads`` and the state vectors all have ``size`` elements and the same
layout (cymlp keeps every weight and bias in one contiguous buffer).
"""
from libc.math cimport sqrt
from cython cimport floating

cdef enum:
    SGD = 0
    ADAM = 1


cdef inline void sgd_step(floating *params, const floating *grads, floating *velocity,
                          Py_ssize_t size, double lr, double momentum,
                          bint nesterov) noexcept nogil:
    """Gradient descent with momentum, as scikit-learn's SGDOptimizer.

    v <- momentum * v - lr * g;  W <- W + v            (classical momentum)
    W <- W + momentum * v - lr * g  after updating v   (Nesterov)
    With momentum = 0 this is the paper's W_new = W_old - lr * dE/dW (§3.6, §4.3.4).
    """
    cdef Py_ssize_t k
    cdef floating v
    if momentum == 0:
        for k in range(size):
            params[k] -= <floating>lr * grads[k]
        return
    for k in range(size):
        v = <floating>momentum * velocity[k] - <floating>lr * grads[k]
        velocity[k] = v
        if nesterov:
            params[k] += <floating>momentum * v - <floating>lr * grads[k]
        else:
            params[k] += v


cdef inline void adam_step(floating *params, const floating *grads, floating *m, floating *v,
                           Py_ssize_t size, double lr, double beta_1, double beta_2,
                           double epsilon, long long t) noexcept nogil:
    """Adam (Kingma & Ba), as scikit-learn's AdamOptimizer; t is the step number (>= 1).

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    W <- W - lr_t m / (sqrt(v) + eps),  lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)
    """
    cdef Py_ssize_t k
    cdef double lr_t = lr * sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
    cdef floating b1 = <floating>beta_1, b2 = <floating>beta_2
    cdef floating g
    for k in range(size):
        g = grads[k]
        m[k] = b1 * m[k] + (1 - b1) * g
        v[k] = b2 * v[k] + (1 - b2) * g * g
        params[k] -= <floating>lr_t * m[k] / (sqrt(v[k]) + <floating>epsilon)
