"""Analytic gradients of the engine against central finite differences (float64)."""

import numpy as np
import pytest
import scipy.sparse as sp

from cymlp import _engine
from cymlp._model import ACTIVATIONS, OUTPUT_ACTIVATIONS, n_params

OUTPUTS = {"softmax": 4, "logistic": 3, "identity": 2, "exp": 2}


def _problem(hidden, out, seed=0, n=11, n_in=5):
    rng = np.random.RandomState(seed)
    n_out = OUTPUTS[out]
    sizes = [n_in, *hidden, n_out]
    X = rng.normal(size=(n, n_in))
    if out == "softmax":
        Y = np.eye(n_out)[rng.randint(0, n_out, n)]
    elif out == "logistic":
        Y = (rng.uniform(size=(n, n_out)) > 0.5).astype(float)
    elif out == "exp":
        Y = rng.poisson(2.0, size=(n, n_out)).astype(float)
    else:
        Y = rng.normal(size=(n, n_out))
    params = rng.normal(scale=0.7, size=n_params(sizes))
    return sizes, OUTPUT_ACTIVATIONS[out], X, Y, params


def _loss(sizes, act, out, X, Y, params, alpha, grads=None, sw=None, chunk=None, rows=None):
    engine = _engine.Engine(sizes, act, out, 0.1, None, chunk or X.shape[0], 1, params.dtype,
                            False)
    g = np.empty_like(params) if grads is None else grads
    return engine.loss_and_grad(rows or (X, None, None, None), Y, sw, params, g, alpha, 1.0)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("hidden", [(), (6,), (6, 5), (4, 7, 3)])
@pytest.mark.parametrize("out", sorted(OUTPUTS))
@pytest.mark.parametrize("alpha", [0.0, 0.3])
@pytest.mark.parametrize("weighted", [False, True])
def test_gradient_matches_finite_differences(activation, hidden, out, alpha, weighted):
    sizes, code, X, Y, params = _problem(hidden, out)
    sw = np.random.RandomState(1).uniform(0, 3, len(X)) if weighted else None
    act = ACTIVATIONS[activation]
    grads = np.empty_like(params)
    _loss(sizes, act, code, X, Y, params, alpha, grads, sw=sw)
    eps = 1e-6
    numeric = np.empty_like(params)
    for k in range(len(params)):
        p = params.copy()
        p[k] += eps
        up = _loss(sizes, act, code, X, Y, p, alpha, sw=sw)
        p[k] -= 2 * eps
        down = _loss(sizes, act, code, X, Y, p, alpha, sw=sw)
        numeric[k] = (up - down) / (2 * eps)
    rel = np.linalg.norm(grads - numeric) / max(np.linalg.norm(numeric), 1e-12)
    assert rel < 1e-6, rel


def test_loss_matches_numpy_reference():
    sizes, code, X, Y, params = _problem((6,), "softmax", seed=3)
    W0 = params[:30].reshape(5, 6)
    b0 = params[30:36]
    W1 = params[36:60].reshape(6, 4)
    b1 = params[60:64]
    a = 1 / (1 + np.exp(-(X @ W0 + b0)))
    z = a @ W1 + b1
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    alpha = 0.2
    expected = (-(Y * logp).sum() + 0.5 * alpha * ((W0**2).sum() + (W1**2).sum())) / len(X)
    got = _loss(sizes, ACTIVATIONS["logistic"], code, X, Y, params, alpha)
    assert got == pytest.approx(expected, rel=1e-12)


def test_chunks_sparse_rows_and_weights_agree():
    sizes, code, X, Y, params = _problem((6, 5), "softmax", n=37)
    X[X < 0.3] = 0  # sparse-ish
    g_full, g_chunk, g_sparse = (np.empty_like(params) for _ in range(3))
    act = ACTIVATIONS["tanh"]
    full = _loss(sizes, act, code, X, Y, params, 0.1, g_full)
    chunked = _loss(sizes, act, code, X, Y, params, 0.1, g_chunk, chunk=5)
    csr = sp.csr_matrix(X)
    rows = (None, csr.data, csr.indices.astype(np.intp), csr.indptr.astype(np.intp))
    sparse = _loss(sizes, act, code, X, Y, params, 0.1, g_sparse, chunk=8, rows=rows)
    assert chunked == pytest.approx(full, rel=1e-12) and sparse == pytest.approx(full, rel=1e-12)
    np.testing.assert_allclose(g_chunk, g_full, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(g_sparse, g_full, rtol=1e-10, atol=1e-14)
    # integer sample weights == repeating rows
    sw = np.random.RandomState(0).randint(0, 4, len(X)).astype(float)
    g_w, g_rep = np.empty_like(params), np.empty_like(params)
    weighted = _loss(sizes, act, code, X, Y, params, 0.1, g_w, sw=sw)
    rep = sw.astype(int)
    repeated = _loss(sizes, act, code, np.repeat(X, rep, 0), np.repeat(Y, rep, 0), params,
                     0.1, g_rep)
    assert weighted == pytest.approx(repeated, rel=1e-12)
    np.testing.assert_allclose(g_w, g_rep, rtol=1e-10, atol=1e-14)


def test_engine_rejects_mismatched_arrays():
    sizes, code, X, Y, params = _problem((6,), "softmax")
    with pytest.raises(TypeError, match="C-contiguous float64"):
        _loss(sizes, 0, code, X.astype(np.float32), Y, params, 0.0)
    with pytest.raises(TypeError, match="shape"):
        _loss(sizes, 0, code, X, Y[:, :2].copy(), params, 0.0)
    with pytest.raises(TypeError, match=rf"params must be .* shape \({len(params)},\)"):
        _loss(sizes, 0, code, X, Y, params[:-1].copy(), 0.0)
    with pytest.raises(TypeError, match="grads must be"):
        _loss(sizes, 0, code, X, Y, params, 0.0, grads=np.empty(len(params) + 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("out", ["softmax", "logistic"])
def test_extreme_logits_stay_finite(dtype, out):
    # no hidden layer, so the logits are X.W; make them +-1e4
    n_out = OUTPUTS[out]
    code = OUTPUT_ACTIVATIONS[out]
    sizes = [2, n_out]
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=dtype)
    params = np.zeros(2 * n_out + n_out, dtype=dtype)
    W = params[: 2 * n_out].reshape(2, n_out)
    W[0, 0], W[1, 0] = 1e4, -1e4
    W[0, 1], W[1, 1] = -1e4, 1e4
    Y = np.zeros((3, n_out), dtype=dtype)
    Y[:, -1] = 1  # the wrong class for row 0: loss ~ 2e4 / 3, large but finite
    grads = np.empty_like(params)
    engine = _engine.Engine(sizes, 0, code, 0.0, None, 3, 1, dtype, False)
    loss = engine.loss_and_grad((X, None, None, None), Y, None, params, grads, 0.0, 1.0)
    assert np.isfinite(loss) and loss > 1000
    assert np.all(np.isfinite(grads))
    for mode in (0, 1, 2):
        out_arr = np.empty((3, n_out), dtype=dtype)
        engine.forward((X, None, None, None), params, out_arr, mode)
        assert np.all(np.isfinite(out_arr)), (mode, out_arr)
        if mode == 1 and out == "softmax":
            np.testing.assert_allclose(out_arr.sum(1), 1, rtol=1e-6)
