"""ONNX export of fitted cymlp estimators (needs the ``onnx`` extra).

``to_onnx(estimator)`` returns an ``onnx.ModelProto`` that onnxruntime (or any ONNX
runtime) runs without cymlp. The graph is the forward pass written with standard
operators, the weights stored as initializers in the model's dtype:

    X (N, n_features) -> [MatMul, Add, activation] per hidden layer -> MatMul, Add,
    output activation -> outputs

Outputs follow skl2onnx's conventions, so code that serves scikit-learn models through
ONNX needs no change:

- classifiers: ``label`` (N,) with the classes' values (int64, or strings), or (N,
  n_labels) int64 indicators for multilabel; ``probabilities`` (N, n_classes), as
  ``predict_proba``;
- regressors: ``variable`` (N, n_outputs), as ``predict`` (not raveled for one output).

Importing this module registers a converter for both estimators with skl2onnx (when it
is installed), so a scikit-learn ``Pipeline`` holding a cymlp estimator converts with
``skl2onnx.to_onnx``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "cymlp's ONNX export needs the 'onnx' package: pip install 'cymlp[onnx]'"
    ) from e

__all__ = ["OPSET", "to_onnx"]

OPSET = 15  # every operator below exists unchanged from opset 13 (Softmax's axis rule) on

# hidden-layer activations: a function of (graph builder, input name) -> output name
_HIDDEN: dict[str, Callable[[Any, str, float], str]] = {
    "identity": lambda g, x, s: x,
    "logistic": lambda g, x, s: g.node("Sigmoid", [x]),
    "tanh": lambda g, x, s: g.node("Tanh", [x]),
    "relu": lambda g, x, s: g.node("Relu", [x]),
    # max(z, s z) for any s >= 0 as cymlp computes it: z where z > 0, else s z
    "leaky_relu": lambda g, x, s: g.node(
        "Where", [g.node("Greater", [x, g.const(np.zeros((), g.dtype))]), x,
                  g.node("Mul", [x, g.const(np.asarray(s, g.dtype))])]),
}
_OUTPUT: dict[str, Callable[[Any, str], str]] = {
    "identity": lambda g, x: x,
    "logistic": lambda g, x: g.node("Sigmoid", [x]),
    "softmax": lambda g, x: g.node("Softmax", [x], axis=1),
    "exp": lambda g, x: g.node("Exp", [x]),
}


class _Graph:
    """Collects nodes and initializers with unique names; ``name`` makes a new one.

    Subclassed below for skl2onnx, whose container and scope own the names."""

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._n = 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def const(self, value: np.ndarray, hint: str = "c") -> str:
        name = self.name(hint)
        value = np.asarray(value)
        if value.dtype.kind in "US":
            tensor = helper.make_tensor(name, TensorProto.STRING, value.shape,
                                        [str(v).encode("utf-8") for v in value.ravel()])
        else:
            tensor = numpy_helper.from_array(value, name)
        self.initializers.append(tensor)
        return name

    def node(self, op: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        out = out or self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.name(op), **attrs))
        return out


def _fitted(est) -> None:
    from cymlp._estimators import MLPClassifier, MLPRegressor

    if not isinstance(est, (MLPClassifier, MLPRegressor)):
        raise TypeError(f"to_onnx takes a cymlp MLPClassifier or MLPRegressor, "
                        f"not {type(est).__name__}")
    if not hasattr(est, "coefs_"):
        raise ValueError(f"This {type(est).__name__} instance is not fitted yet: call "
                         "'fit' before exporting it")
    if est.activation not in _HIDDEN or est.out_activation_ not in _OUTPUT:
        raise ValueError(f"no ONNX form for activation={est.activation!r} / "
                         f"out_activation_={est.out_activation_!r}")


def _forward(g: _Graph, est, x: str) -> str:
    """The network's output activations (N, n_outputs) from input ``x``."""
    a = x
    last = len(est.coefs_) - 1
    for i, (W, b) in enumerate(zip(est.coefs_, est.intercepts_)):
        z = g.node("Add", [g.node("MatMul", [a, g.const(W.astype(g.dtype), "coef")]),
                           g.const(b.astype(g.dtype), "intercept")])
        a = (_OUTPUT[est.out_activation_](g, z) if i == last
             else _HIDDEN[est.activation](g, z, float(est.negative_slope)))
    return a


def _classifier_outputs(g: _Graph, est, p: str, label: str, proba: str) -> None:
    """``label`` and ``probabilities`` from the output activations ``p``, as predict and
    predict_proba: argmax (first of ties) for one label per row, p > 0.5 per label for
    multilabel; the binary case's one logistic output becomes the columns [1 - p, p]."""
    multilabel = est.out_activation_ == "logistic" and est.n_outputs_ > 1
    if est.n_outputs_ == 1:
        q = g.node("Sub", [g.const(np.ones((), g.dtype)), p])
        g.node("Concat", [q, p], proba, axis=1)
    else:
        g.node("Identity", [p], proba)
    if multilabel:
        over = g.node("Greater", [p, g.const(np.asarray(0.5, g.dtype))])
        g.node("Cast", [over], label, to=TensorProto.INT64)
        return
    index = g.node("ArgMax", [proba], axis=1, keepdims=0)
    classes = np.asarray(est.classes_)
    if classes.dtype.kind in "iu":
        classes = classes.astype(np.int64)
    elif classes.dtype.kind == "O":
        classes = classes.astype(str)
    g.node("Gather", [g.const(classes, "classes"), index], label, axis=0)


def to_onnx(estimator, *, name: str | None = None) -> onnx.ModelProto:
    """An ONNX model of a fitted ``MLPClassifier`` or ``MLPRegressor``.

    The input ``X`` takes rows of ``n_features_in_`` values in the model's dtype
    (float32 or float64: the dtype of ``coefs_``). Classifiers give ``label`` and
    ``probabilities``, regressors ``variable`` (see the module docstring). Every hidden
    activation (``leaky_relu`` included) and output activation (softmax, logistic,
    identity, and exp for ``loss='poisson'``) has its ONNX form.

    >>> import onnxruntime as ort                                    # doctest: +SKIP
    >>> sess = ort.InferenceSession(to_onnx(clf).SerializeToString())
    >>> labels, proba = sess.run(None, {"X": X.astype(np.float32)})
    """
    _fitted(estimator)
    dtype = estimator.coefs_[0].dtype
    g = _Graph(dtype)
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    n_out = estimator.n_outputs_
    p = _forward(g, estimator, "X")
    inputs = [helper.make_tensor_value_info("X", elem, [None, estimator.n_features_in_])]
    if hasattr(estimator, "classes_"):
        _classifier_outputs(g, estimator, p, "label", "probabilities")
        multilabel = estimator.out_activation_ == "logistic" and n_out > 1
        classes = np.asarray(estimator.classes_)
        if multilabel or classes.dtype.kind in "iu":
            label_elem = TensorProto.INT64
        elif classes.dtype.kind in "fb":
            label_elem = helper.np_dtype_to_tensor_dtype(classes.dtype)
        else:
            label_elem = TensorProto.STRING
        n_cols = max(n_out, 2)
        outputs = [
            helper.make_tensor_value_info("label", label_elem,
                                          [None, n_out] if multilabel else [None]),
            helper.make_tensor_value_info("probabilities", elem, [None, n_cols]),
        ]
    else:
        g.node("Identity", [p], "variable")
        outputs = [helper.make_tensor_value_info("variable", elem, [None, n_out])]
    graph = helper.make_graph(g.nodes, name or type(estimator).__name__, inputs, outputs,
                              g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="cymlp")
    from cymlp._version import __version__

    model.producer_version = __version__
    onnx.checker.check_model(model)
    return model


# ---- skl2onnx: converters so that Pipelines holding cymlp estimators convert ----------

def _register_skl2onnx() -> bool:
    """Register cymlp's estimators with skl2onnx; False when it is not installed."""
    try:
        from skl2onnx import update_registered_converter
        from skl2onnx.common.data_types import DoubleTensorType, guess_proto_type
        from skl2onnx.common.shape_calculator import (
            calculate_linear_classifier_output_shapes,
            calculate_linear_regressor_output_shapes,
        )
    except ImportError:
        return False
    from cymlp._estimators import MLPClassifier, MLPRegressor

    class _Container(_Graph):
        def __init__(self, scope, container, dtype):
            super().__init__(dtype)
            self.scope, self.container = scope, container

        def name(self, hint):
            return self.scope.get_unique_variable_name(hint)

        def const(self, value, hint="c"):
            name = self.name(hint)
            value = np.asarray(value)
            if value.dtype.kind in "US":
                self.container.add_initializer(name, TensorProto.STRING, value.shape,
                                               [str(v).encode("utf-8") for v in value])
            else:
                self.container.add_initializer(
                    name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape,
                    value.ravel().tolist())
            return name

        def node(self, op, inputs, out=None, **attrs):
            out = out or self.name(op.lower())
            self.container.add_node(op, inputs, out,
                                    name=self.scope.get_unique_operator_name(op), **attrs)
            return out

    def _dtype(operator):
        is_double = guess_proto_type(operator.inputs[0].type) == TensorProto.DOUBLE
        return np.float64 if is_double else np.float32

    def _input(g, operator):
        x = operator.inputs[0].full_name
        return g.node("Cast", [x], to=helper.np_dtype_to_tensor_dtype(g.dtype))

    def convert_classifier(scope, operator, container):
        est = operator.raw_operator
        g = _Container(scope, container, _dtype(operator))
        p = _forward(g, est, _input(g, operator))
        _classifier_outputs(g, est, p, operator.outputs[0].full_name,
                            operator.outputs[1].full_name)

    def convert_regressor(scope, operator, container):
        est = operator.raw_operator
        g = _Container(scope, container, _dtype(operator))
        p = _forward(g, est, _input(g, operator))
        g.node("Identity", [p], operator.outputs[0].full_name)

    del DoubleTensorType  # (imported to fail early on a too-old skl2onnx)
    update_registered_converter(MLPClassifier, "CymlpMLPClassifier",
                                calculate_linear_classifier_output_shapes,
                                convert_classifier,
                                options={"zipmap": [True, False, "columns"],
                                         "nocl": [True, False]})
    update_registered_converter(MLPRegressor, "CymlpMLPRegressor",
                                calculate_linear_regressor_output_shapes, convert_regressor)
    return True


SKL2ONNX_REGISTERED = _register_skl2onnx()
