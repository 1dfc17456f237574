# cython: language_level=3, cdivision=True
"""Python entry points to the optimizer steps in _optim.pxd (the engine calls them inline)."""
from cython cimport floating


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
         double scale=1.0, double l2=0.0):
    """One Adam step in place on g = scale * (grads + l2 * params) (see adam_step);
    t >= 1 counts the steps taken."""
    if not params.shape[0] == grads.shape[0] == m.shape[0] == v.shape[0]:
        raise ValueError("params, grads, m and v must have the same length")
    if t < 1:
        raise ValueError("t must be >= 1")
    with nogil:
        adam_step(&params[0], &grads[0], &m[0], &v[0], params.shape[0], lr, beta_1, beta_2,
                  epsilon, t, <floating>scale, <floating>l2)
