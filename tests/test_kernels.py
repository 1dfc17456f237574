"""Matrix products of every SIMD variant against numpy, and the optimizer steps."""

import numpy as np
import pytest

from cymlp import _kernels, _testing
from cymlp._model import ACTIVATIONS

VARIANTS = _kernels.simd_variants()
SHAPES = [(1, 1, 1), (7, 5, 3), (37, 13, 29), (200, 100, 784), (784, 100, 200), (5, 300, 2),
          (13, 1030, 9), (3, 2, 600)]


@pytest.fixture(params=VARIANTS)
def variant(request):
    previous = _kernels.simd_variant()
    _kernels.set_simd_variant(request.param)
    yield request.param
    _kernels.set_simd_variant(previous)


def test_best_variant_is_default():
    assert _kernels.simd_variant() == VARIANTS[-1]
    assert "portable" in VARIANTS


def test_unknown_variant_rejected():
    with pytest.raises(ValueError, match="unknown SIMD variant"):
        _kernels.set_simd_variant("sse9")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layout", ["nn", "tn", "nt"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_matmul_matches_numpy(variant, dtype, shape, layout, n_threads):
    M, N, K = shape
    rng = np.random.RandomState(M * 1000 + N * 10 + K)
    A = rng.uniform(-1, 1, (M, K)).astype(dtype)
    B = rng.uniform(-1, 1, (K, N)).astype(dtype)
    a = np.ascontiguousarray(A.T).T if layout == "tn" else A  # A^T stored row-major
    b = np.ascontiguousarray(B.T).T if layout == "nt" else B
    C = _testing.matmul(a, b, n_threads)
    expected = A.astype(np.float64) @ B.astype(np.float64)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(C, expected, rtol=tol, atol=tol * np.sqrt(K))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layout", ["nn", "nt"])
def test_prepacked_b_gives_the_same_bits(variant, dtype, shape, layout):
    """B packed row by row once (as training packs its weights after each update) and
    B packed inside the product give identical results, including K over several KC
    blocks (600, 784), ragged last slivers (N = 5, 13, 100, 1030) and transposed B."""
    M, N, K = shape
    rng = np.random.RandomState(M + N + K)
    A = rng.uniform(-1, 1, (M, K)).astype(dtype)
    B = rng.uniform(-1, 1, (K, N)).astype(dtype)
    b = np.ascontiguousarray(B.T).T if layout == "nt" else B
    np.testing.assert_array_equal(_testing.matmul(A, b, 2, prepack=True),
                                  _testing.matmul(A, b, 2))


def test_matmul_thread_count_does_not_change_results():
    rng = np.random.RandomState(1)
    A = rng.normal(size=(333, 517)).astype(np.float32)
    B = rng.normal(size=(517, 129)).astype(np.float32)
    np.testing.assert_array_equal(_testing.matmul(A, B, 1), _testing.matmul(A, B, 2))


def test_matmul_shape_mismatch():
    with pytest.raises(ValueError, match="do not align"):
        _testing.matmul(np.ones((2, 3)), np.ones((4, 2)))


def test_sgd_step_plain_and_momentum():
    p = np.array([1.0, -2.0])
    g = np.array([0.5, 0.25])
    v = np.zeros(2)
    _testing.sgd(p, g, v, lr=0.1)
    np.testing.assert_allclose(p, [0.95, -2.025])
    p = np.array([1.0, -2.0])
    v = np.array([0.1, 0.0])
    _testing.sgd(p, g, v, lr=0.1, momentum=0.9, nesterov=False)
    np.testing.assert_allclose(v, [0.9 * 0.1 - 0.05, -0.025])
    np.testing.assert_allclose(p, [1.0 + 0.04, -2.025])
    p = np.array([1.0, -2.0])
    v = np.array([0.1, 0.0])
    _testing.sgd(p, g, v, lr=0.1, momentum=0.9, nesterov=True)
    np.testing.assert_allclose(p, [1.0 + 0.9 * 0.04 - 0.05, -2.0 + 0.9 * -0.025 - 0.025])


def test_adam_step_matches_formula():
    rng = np.random.RandomState(0)
    p, g = rng.normal(size=5), rng.normal(size=5)
    m, v = rng.normal(size=5) * 0.1, rng.uniform(size=5)
    t, lr, b1, b2, eps = 3, 0.01, 0.9, 0.999, 1e-8
    m2 = b1 * m + (1 - b1) * g
    v2 = b2 * v + (1 - b2) * g * g
    p2 = p - lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m2 / (np.sqrt(v2) + eps)
    _testing.adam(p, g, m, v, lr, b1, b2, eps, t)
    np.testing.assert_allclose(m, m2)
    np.testing.assert_allclose(v, v2)
    np.testing.assert_allclose(p, p2)


def _steps(solver, dtype, n, **kw):
    """Three steps of ``solver`` (sgd with Nesterov momentum, or adam) on n random values
    with scaled gradients and an L2 term, in the variant in use: the arrays after them."""
    rng = np.random.RandomState(n)
    p = rng.uniform(-1, 1, n).astype(dtype)
    s1, s2 = np.zeros_like(p), np.zeros_like(p)
    for t in range(1, 4):
        # gradients over 16 decades, and exact zeros (the always-0 inputs' weights)
        g = (rng.normal(size=n) * 10.0 ** rng.uniform(-12, 4, n)).astype(dtype)
        g[rng.uniform(size=n) < 0.2] = 0
        if solver == "sgd":
            _testing.sgd(p, g, s1, 0.01, 0.9, True, scale=0.37, l2=1e-4)
        else:
            _testing.adam(p, g, s1, s2, 0.001, 0.9, 0.999, 1e-8, t, scale=0.37, l2=1e-4, **kw)
    return p, s1, s2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("solver, kw", [("sgd", {}), ("adam", {}),
                                        ("adam", {"weight_decay": 0.01})])
@pytest.mark.parametrize("n", [1, 7, 16, 33, 1000, 79510])
def test_optimizer_steps_same_bits_on_every_variant(variant, dtype, solver, kw, n):
    """The optimizers' steps are compiled per SIMD variant (_optim.h): wider vectors, the
    same operations rounded in the same places, so every variant's arrays are the
    portable variant's bit for bit (lengths with and without ragged vector tails,
    up to the paper network's 79,510 parameters)."""
    got = _steps(solver, dtype, n, **kw)
    _kernels.set_simd_variant("portable")
    try:
        want = _steps(solver, dtype, n, **kw)
    finally:
        _kernels.set_simd_variant(variant)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a.view(f"u{a.itemsize}"), b.view(f"u{b.itemsize}"))


@pytest.mark.parametrize("solver, dtype", [
    ("sgd", np.float32), ("sgd", np.float64), ("adam", np.float64), ("adam", np.float32),
])
def test_optimizer_steps_match_scikit_learns_optimizers(solver, dtype):
    """Five steps of cymlp's optimizers and scikit-learn's (the classes its MLPs use),
    on the same arrays of the same dtype, with gradients from 1e-8 to 1: within 2 ulps
    (the steps are the same formulas, rounded in the same places)."""
    from sklearn.neural_network import _stochastic_optimizers as skopt

    rng = np.random.RandomState(0)
    p0 = rng.uniform(-1, 1, 1000).astype(dtype)
    grads = [(rng.normal(size=1000) * 10.0 ** rng.uniform(-8, 0, 1000)).astype(dtype)
             for _ in range(5)]
    p, s1, s2 = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    ref = [p0.copy()]
    if solver == "sgd":
        opt = skopt.SGDOptimizer(ref, 0.01, "constant", 0.9, True, 0.5)
        for g in grads:
            opt.update_params(ref, [g])
            _testing.sgd(p, g, s1, 0.01, 0.9, True)
        pairs = [(p, ref[0]), (s1, opt.velocities[0])]
    else:
        opt = skopt.AdamOptimizer(ref, 0.001, 0.9, 0.999, 1e-8)
        for t, g in enumerate(grads, 1):
            opt.update_params(ref, [g])
            _testing.adam(p, g, s1, s2, 0.001, 0.9, 0.999, 1e-8, t)
        pairs = [(p, ref[0]), (s1, opt.ms[0]), (s2, opt.vs[0])]
    for ours, theirs in pairs:
        assert ours.dtype == theirs.dtype == dtype
        ulps = np.abs(ours.astype(np.float64) - theirs) / np.spacing(np.abs(theirs))
        assert ulps.max() <= 2, ulps.max()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("K", [5, 300, 784])
def test_single_rows_get_the_same_bits_as_in_a_batch(variant, dtype, K):
    """The unpacked path for 1-2 rows sums in the micro-kernel's order."""
    rng = np.random.RandomState(K)
    A = rng.uniform(-1, 1, (50, K)).astype(dtype)
    A[A < 0.3] = 0  # zeros are skipped by the small path
    B = rng.uniform(-1, 1, (K, 100)).astype(dtype)
    full = _testing.matmul(A, B, 2)
    for rows in (slice(0, 1), slice(7, 9)):
        np.testing.assert_array_equal(_testing.matmul(A[rows], B, 1), full[rows])
    Bt = np.ascontiguousarray(B.T).T  # transposed operand, as in delta . W^T
    np.testing.assert_array_equal(_testing.matmul(A[:1], Bt, 1), _testing.matmul(A, Bt, 1)[:1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(200, 100, 784), (784, 100, 200), (37, 13, 29),
                                   (23, 40, 600), (50, 97, 300), (31, 128, 260),
                                   (20, 96, 140), (20, 129, 140)])
@pytest.mark.parametrize("layout", ["nn", "tn", "strided"])
def test_zero_steps_are_skipped_without_changing_bits(variant, dtype, shape, layout):
    """The micro-kernel skips the steps p at which a whole row tile of A is zero (an
    image batch's blank borders and most of its pixels). Blocks of A here are all zero,
    some tiles dense, some sparse, some empty: every row must get the bits of the
    one-row path (which sums the same terms in the same order) and match numpy."""
    M, N, K = shape
    rng = np.random.RandomState(M + 3 * N + K)
    A = rng.uniform(-1, 1, (M, K)).astype(dtype)
    A[rng.uniform(size=(M, K)) < rng.uniform(0, 1, (M, 1)) ** 0.3] = 0  # sparse rows
    A[:, : K // 5] = 0  # zero border columns
    A[:, K // 2: K // 2 + 40] = 0
    A[: M // 4, :] = 0  # whole zero tiles of rows
    A[M // 2: M // 2 + 3, :] = rng.uniform(-1, 1, (min(3, M - M // 2), K))  # dense rows
    B = rng.uniform(-1, 1, (K, N)).astype(dtype)
    a = np.ascontiguousarray(A.T).T if layout == "tn" else A  # A^T stored row-major
    if layout == "strided":  # neither stride 1: A is packed element by element
        a = np.zeros((2 * M, 2 * K), dtype)[::2, ::2]
        a[...] = A
    full = _testing.matmul(a, B, 2)
    for i in range(M):
        np.testing.assert_array_equal(_testing.matmul(a[i:i + 1], B, 1)[0], full[i])
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(full, A.astype(np.float64) @ B, rtol=tol,
                               atol=tol * np.sqrt(K))
    zero = _testing.matmul(np.zeros_like(a), B, 1)
    assert not zero.any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N", [1, 4, 5, 8, 9, 36, 71, 99, 100, 104, 1030])
@pytest.mark.parametrize("prepack", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_ragged_last_columns_get_the_bits_of_whole_vectors(variant, dtype, N, prepack, bias):
    """A sliver's ragged last columns may run in a narrower vector (GEMM_TAIL, in the
    avx512 variant's float product: a quarter or half vector, e.g. N = 100's last 4
    columns, N = 99's last 3, N = 71's last 7). Each of their sums has the same terms in
    the same order, so the product (with or without the bias added in its first block)
    must give the bits it gives when B is padded with zero columns to whole slivers,
    where every column runs full width. Every variant must keep this; for the others it
    checks their ragged slivers."""
    M, K = 37, 300
    rng = np.random.RandomState(N)
    A = rng.uniform(-1, 1, (M, K)).astype(dtype)
    A[rng.uniform(size=(M, K)) < 0.6] = 0  # sparse tiles take the list of steps
    B = rng.uniform(-1, 1, (K, N)).astype(dtype)
    width = -(-N // 64) * 64
    padded = np.zeros((K, width), dtype)
    padded[:, :N] = B
    b = rng.uniform(-1, 1, width).astype(dtype)
    for a in (A, np.ascontiguousarray(A.T).T):  # as the forward, as the weight gradient
        got = _testing.matmul(a, B, 1, prepack=prepack, bias=b[:N] if bias else None)
        whole = _testing.matmul(a, padded, 1, prepack=prepack, bias=b if bias else None)
        np.testing.assert_array_equal(got, whole[:, :N])


def test_vectorised_exp_within_one_ulp_and_edge_values(variant):
    """The float exponential (_vmath.h, compiled per variant) against exp in
    float64 over the whole range where e^x is a normal float, and at the edges."""
    x = np.linspace(-87.3, 88.72, 400_001).astype(np.float32)
    got = _testing.vexp_array(x).astype(np.float64)
    ref = np.exp(x.astype(np.float64))
    ulps = np.abs(got - ref) / np.spacing(ref.astype(np.float32)).astype(np.float64)
    assert ulps.max() <= 1.0
    edge = _testing.vexp_array(np.array([np.nan, np.inf, 89.0, -np.inf, -200.0, 0.0],
                                        dtype=np.float32))
    assert np.isnan(edge[0])
    assert np.isposinf(edge[1]) and np.isposinf(edge[2])  # overflow is inf
    tiny = 1.0001 * np.finfo(np.float32).tiny  # clamped: about the smallest normal float
    assert 0 < edge[3] <= tiny and 0 < edge[4] <= tiny
    assert edge[5] == 1.0
    x64 = np.array([-700.0, -1.5, 0.0, 3.25, 700.0])
    np.testing.assert_array_equal(_testing.vexp_array(x64), np.exp(x64))  # libm for doubles


def test_sigmoid_within_three_ulp(variant):
    """The hidden layers' float sigmoid 1 / (1 + e^-z), per variant, against float64
    where it is a normal float (below z = -87.3 it stays about the smallest normal)."""
    z = np.linspace(-87.0, 100, 200_001).astype(np.float32)
    got = _testing.sigmoid_array(z).astype(np.float64)
    ref = 1 / (1 + np.exp(-z.astype(np.float64)))
    ulps = np.abs(got - ref) / np.spacing(ref.astype(np.float32)).astype(np.float64)
    assert ulps.max() <= 3.0, (ulps.max(), z[ulps.argmax()])  # exp 1, add and divide
    edge = _testing.sigmoid_array(np.array([0.0, -0.0, np.inf, -np.inf, -200.0], np.float32))
    assert edge[0] == edge[1] == 0.5 and edge[2] == 1.0
    assert 0 <= edge[3] <= 1.0001 * np.finfo(np.float32).tiny
    assert 0 <= edge[4] <= 1.0001 * np.finfo(np.float32).tiny
    assert np.isnan(_testing.sigmoid_array(np.array([np.nan], np.float32))[0])


def test_softmax_and_its_loss_against_float64(variant):
    """The output layer's float softmax (_vmath.h, per variant) and each row's
    cross-entropy against float64, including wide ranges and huge negative logits."""
    rng = np.random.RandomState(0)
    z = (rng.normal(size=(300, 10)) * rng.uniform(0.1, 30, (300, 1))).astype(np.float32)
    z[0] = [1e30, 0, -1e30, 5, 5, 5, -np.inf, 0, 0, 1]
    y = np.eye(10, dtype=np.float32)[rng.randint(0, 10, 300)]
    y[0] = 0
    y[0, 3] = 1
    p, loss = _testing.softmax_array(z, y)
    z64 = z.astype(np.float64)
    e = np.exp(z64 - z64.max(axis=1, keepdims=True))
    ref = e / e.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(p, ref, rtol=1e-5, atol=1e-37)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)
    lse = z64.max(axis=1) + np.log(e.sum(axis=1))
    with np.errstate(invalid="ignore"):  # 0 * -inf where y is 0: skipped, as the layer does
        ref_loss = -np.where(y != 0, y * (z64 - lse[:, None]), 0).sum(axis=1)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5, atol=1e-5)
    assert loss[0] > 1e29 and p[0, 0] == 1.0 and p[0, 6] < 1e-37
    big = np.zeros((2, 300), np.float32)  # rows longer than the 256-element buffer
    big[1, 299] = 50
    pb, _ = _testing.softmax_array(big)
    np.testing.assert_allclose(pb[0], 1 / 300, rtol=1e-6)
    assert pb[1, 299] > 0.999999 and pb[1, :299].max() < 1e-21


@pytest.mark.parametrize("n_out", [1, 3, 10, 100, 256, 257, 600])
def test_softmax_rows_get_the_same_bits_in_any_group(variant, n_out):
    """Short rows go through the float softmax in groups that share one vectorised
    exponential loop: a row's probabilities and loss must not depend on which rows it is
    grouped with, nor on where the last, partial group ends."""
    rng = np.random.RandomState(n_out)
    n = 2 * (256 // n_out if n_out <= 256 else 1) + 3  # two whole groups and part of one
    z = (rng.normal(size=(n, n_out)) * rng.uniform(0.1, 20, (n, 1))).astype(np.float32)
    y = np.eye(n_out, dtype=np.float32)[rng.randint(0, n_out, n)]
    p, loss = _testing.softmax_array(z, y)
    for i in [0, 1, n // 2, n - 2, n - 1]:
        p1, loss1 = _testing.softmax_array(z[i:i + 1], y[i:i + 1])
        np.testing.assert_array_equal(p1[0], p[i])
        assert loss1[0] == loss[i]
    p2, loss2 = _testing.softmax_array(z[1:], y[1:])  # every group shifted by one row
    np.testing.assert_array_equal(p2, p[1:])
    np.testing.assert_array_equal(loss2, loss[1:])


# Epilogue ops of the products (_gemm_epi.h): every hidden activation's code, and the
# same + DERIVATIVE for the backward's x * f'(a) (the identity's derivative is no op).
LOGISTIC, TANH, RELU, LEAKY_RELU = (ACTIVATIONS[a] for a in ("logistic", "tanh", "relu",
                                                             "leaky_relu"))
DERIVATIVE = 16
FORWARD_OPS = sorted(ACTIVATIONS.values())
BACKWARD_OPS = [DERIVATIVE + op for op in FORWARD_OPS if op != ACTIVATIONS["identity"]]
EPI_SHAPES = [(1, 1, 1), (2, 100, 784), (37, 13, 29), (200, 100, 784), (5, 300, 2),
              (13, 1030, 9), (64, 36, 10), (200, 100, 10)]


def _epilogue_operands(shape, dtype, seed=0):
    M, N, K = shape
    rng = np.random.RandomState(seed)
    A = rng.uniform(-1, 1, (M, K)).astype(dtype)
    A[A < -0.3] = 0  # zeros, as in MNIST images, are skipped
    B = rng.uniform(-1, 1, (K, N)).astype(dtype)
    b = rng.uniform(-1, 1, N).astype(dtype)
    act = rng.uniform(-1, 1, (M, N)).astype(dtype)  # activations, for derivatives
    act[act < -0.5] = 0  # (relu's zeros; the sign decides relu')
    return A, B, b, act


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", EPI_SHAPES)
@pytest.mark.parametrize("n_threads", [1, 2])
def test_fused_epilogue_gives_the_bits_of_separate_passes(variant, dtype, shape, n_threads):
    """f(A.B + b) and (A.B) * f'(a) with the bias and op fused into the product give the
    bits of the product followed by the op on its own (the same vector code), for every
    op, ragged shape and thread count; the bias lands as the first block's addend."""
    A, B, b, act = _epilogue_operands(shape, dtype)
    with_bias = _testing.matmul(A, B, n_threads, bias=b)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(with_bias, A.astype(np.float64) @ B + b, rtol=tol,
                               atol=tol * np.sqrt(shape[2]))
    if shape[2] <= 128:  # one block of the sum: t + b, as b written first and t added
        np.testing.assert_array_equal(with_bias, _testing.matmul(A, B, n_threads) + b)
    for op in FORWARD_OPS:
        fused = _testing.matmul(A, B, n_threads, bias=b, op=op, slope=0.05)
        np.testing.assert_array_equal(fused, _testing.apply_array(with_bias, op, slope=0.05))
    plain = _testing.matmul(A, B, n_threads)
    for op in BACKWARD_OPS:
        fused = _testing.matmul(A, B, n_threads, op=op, aux=act, slope=0.05)
        np.testing.assert_array_equal(fused,
                                      _testing.apply_array(plain, op, aux=act, slope=0.05))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_epilogue_single_rows_and_transposed_operands(variant, dtype):
    """The 1-2-row path applies the same epilogue: a row's bits do not depend on the
    batch it is in; delta . W^T (B transposed) takes the derivative too."""
    A, B, b, act = _epilogue_operands((50, 100, 300), dtype, seed=3)
    for op in FORWARD_OPS:
        full = _testing.matmul(A, B, 2, bias=b, op=op)
        for rows in (slice(0, 1), slice(7, 9)):
            np.testing.assert_array_equal(_testing.matmul(A[rows], B, 1, bias=b, op=op),
                                          full[rows])
    Bt = np.ascontiguousarray(B.T).T
    for op in BACKWARD_OPS:
        full = _testing.matmul(A, Bt, 1, op=op, aux=act)
        np.testing.assert_array_equal(full[:1], _testing.matmul(A[:1], Bt, 1, op=op,
                                                                aux=act[:1]))
        np.testing.assert_array_equal(full, _testing.matmul(A, B, 2, op=op, aux=act))
        wide = np.zeros((act.shape[0], act.shape[1] + 7), dtype)  # aux rows 107 apart
        wide[:, 3:-4] = act
        np.testing.assert_array_equal(full, _testing.matmul(A, B, 2, op=op,
                                                            aux=wide[:, 3:-4]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_epilogue_ops_against_their_formulas(variant, dtype):
    """Each op against numpy: the activations (paper section 2.2.3) and x * f'(a)."""
    rng = np.random.RandomState(1)
    x = rng.uniform(-6, 6, (7, 45)).astype(dtype)
    x[0, :5] = [0.0, -0.0, 1e-30, -1e-30, 0.0]
    a = rng.uniform(-1, 1, x.shape).astype(dtype)
    a[a < -0.4] = 0
    s = 0.05
    tol = 4e-7 if dtype == np.float32 else 1e-15
    x64, a64 = x.astype(np.float64), a.astype(np.float64)
    ap = _testing.apply_array
    np.testing.assert_array_equal(ap(x, 0), x)
    np.testing.assert_allclose(ap(x, LOGISTIC, slope=s), 1 / (1 + np.exp(-x64)), rtol=tol)
    np.testing.assert_allclose(ap(x, TANH, slope=s), np.tanh(x64), rtol=tol, atol=tol)
    np.testing.assert_array_equal(ap(x, RELU, slope=s), np.where(x > 0, x, 0))
    np.testing.assert_array_equal(ap(x, LEAKY_RELU, slope=s), np.where(x > 0, x, dtype(s) * x))
    np.testing.assert_allclose(ap(x, DERIVATIVE + LOGISTIC, a, s), x64 * a64 * (1 - a64),
                               rtol=4 * tol, atol=1e-30)
    # 1 - a^2 cancels near |a| = 1: its error is bounded relative to x, not to the result
    err = np.abs(ap(x, DERIVATIVE + TANH, a, s) - x64 * (1 - a64 * a64))
    assert np.all(err <= 3 * np.finfo(dtype).eps * np.abs(x64))
    np.testing.assert_array_equal(ap(x, DERIVATIVE + RELU, a, s), np.where(a > 0, x, 0))
    np.testing.assert_array_equal(ap(x, DERIVATIVE + LEAKY_RELU, a, s),
                                  np.where(a > 0, x, dtype(s) * x))


def test_epilogue_arguments_checked():
    A = np.ones((3, 4), np.float32)
    B = np.ones((4, 5), np.float32)
    with pytest.raises(ValueError, match="unknown epilogue op"):
        _testing.matmul(A, B, op=max(ACTIVATIONS.values()) + 1)
    with pytest.raises(ValueError, match="aux is needed"):
        _testing.matmul(A, B, op=DERIVATIVE + RELU)
    with pytest.raises(ValueError, match="aux is needed"):
        _testing.matmul(A, B, op=RELU, aux=np.ones((3, 5), np.float32))
    with pytest.raises(ValueError, match="aux must have shape"):
        _testing.matmul(A, B, op=DERIVATIVE + RELU, aux=np.ones((5, 3), np.float32))
    with pytest.raises(ValueError, match="bias must have 5 values"):
        _testing.matmul(A, B, bias=np.ones(4, np.float32))
    bias = np.arange(-2, 3, dtype=np.float32)
    for rows in (1, 3):  # an empty sum (K = 0): the bias, then the op
        A0, B0 = np.ones((rows, 0), np.float32), np.ones((0, 5), np.float32)
        np.testing.assert_array_equal(_testing.matmul(A0, B0, bias=bias, op=RELU),
                                      np.tile([0, 0, 0, 1, 2], (rows, 1)))
        np.testing.assert_array_equal(_testing.matmul(A0, B0), np.zeros((rows, 5)))
