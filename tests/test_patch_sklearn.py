"""cymlp.patch_sklearn(): scikit-learn's own MLP test-suite, unmodified, runs on cymlp.

The tests listed in PRIVATE read or build scikit-learn's private fitting state; every
other test of ``sklearn/neural_network/tests/test_mlp.py`` must pass under the patch, and
the listed ones must still fail (so the list cannot go stale)."""

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import sklearn
import sklearn.neural_network
from sklearn.neural_network import _multilayer_perceptron

import cymlp

SUITE = Path(sklearn.__file__).parent / "neural_network" / "tests" / "test_mlp.py"

# test name -> the scikit-learn private attribute it reads or sets
PRIVATE = {
    "test_fit": "_coef_velocity, _no_improvement_count, ... set by hand before partial_fit",
    "test_gradient": "_loss_grad_lbfgs",
    "test_learning_rate_warmstart": "_optimizer.learning_rate",
    "test_adaptive_learning_rate": "_optimizer.learning_rate",
}

RUNNER = """
import sys
import cymlp
cymlp.patch_sklearn()
from sklearn.neural_network import MLPClassifier, MLPRegressor
assert MLPClassifier is cymlp.MLPClassifier and MLPRegressor is cymlp.MLPRegressor
import pytest
sys.exit(pytest.main(sys.argv[1:]))
"""


def test_patch_and_unpatch_swap_the_classes_both_ways():
    originals = (sklearn.neural_network.MLPClassifier, _multilayer_perceptron.MLPRegressor)
    assert originals[0].__module__.startswith("sklearn")
    try:
        cymlp.patch_sklearn()
        cymlp.patch_sklearn()  # twice: still one set of originals kept
        from sklearn.neural_network import MLPClassifier, MLPRegressor

        assert MLPClassifier is cymlp.MLPClassifier and MLPRegressor is cymlp.MLPRegressor
        assert _multilayer_perceptron.MLPClassifier is cymlp.MLPClassifier
    finally:
        cymlp.unpatch_sklearn()
    assert sklearn.neural_network.MLPClassifier is originals[0]
    assert _multilayer_perceptron.MLPRegressor is originals[1]
    cymlp.unpatch_sklearn()  # a second undo changes nothing
    assert sklearn.neural_network.MLPClassifier is originals[0]


def test_scikit_learns_mlp_suite_passes_under_the_patch(tmp_path):
    assert SUITE.is_file(), f"scikit-learn's test suite is not installed: {SUITE}"
    report = tmp_path / "report.xml"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    # scikit-learn's conftest.py (its fixtures) is found by walking up from the suite to
    # --confcutdir; an empty ini file keeps any pytest settings around the venv out
    ini = tmp_path / "pytest.ini"
    ini.write_text("[pytest]\n")
    package = SUITE.parents[2]
    r = subprocess.run(
        [sys.executable, "-c", RUNNER, "-q", "-p", "no:cacheprovider", "-c", str(ini),
         f"--rootdir={package}", f"--confcutdir={package.parent}",
         f"--junitxml={report}", "-W", "ignore", str(SUITE)],
        capture_output=True, text=True, cwd=tmp_path, env=env)
    assert report.is_file(), r.stdout[-3000:] + r.stderr[-3000:]
    outcome = {}
    for case in ET.parse(report).iter("testcase"):
        name = case.get("name").split("[")[0]
        failed = case.find("failure") is not None or case.find("error") is not None
        skipped = case.find("skipped") is not None
        state = "failed" if failed else "skipped" if skipped else "passed"
        if outcome.get(name) != "failed":
            outcome[name] = state
    assert len(outcome) >= 40, outcome  # the whole suite ran
    unexpected = {n: s for n, s in outcome.items() if n not in PRIVATE and s != "passed"}
    assert not unexpected, (unexpected, r.stdout[-4000:])
    stale = [n for n in PRIVATE if outcome.get(n) != "failed"]
    assert not stale, f"now passing or gone, drop from PRIVATE and the README: {stale}"


@pytest.mark.parametrize("name", ["patch_sklearn", "unpatch_sklearn"])
def test_public_and_documented(name):
    assert name in cymlp.__all__
    assert getattr(cymlp, name).__doc__
