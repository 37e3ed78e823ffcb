"""The reference README's calibration and regression examples, run as
they are written there with only the import lines changed (l0 -> l0_rs).
Where CUDA cannot be used, device="cuda" raises RuntimeError (as
`l0 calibrate --device cuda` fails), and the example runs with
device="auto", the way to ask for the CPU then."""

import warnings

import numpy as np
import pytest

from conftest import gpu_unusable

CALIBRATION = '''
import numpy as np
from scipy import sparse as sp
from l0_rs.calibration import SparseCalibrationWeights

# Setup: Q targets, N households
Q, N = 200, 10000
M = sp.random(Q, N, density=0.3, format="csr")  # Household characteristics
y = np.random.uniform(1e6, 1e8, size=Q)          # Population targets

# Initialize model
model = SparseCalibrationWeights(
    n_features=N,
    beta=0.35,
    gamma=-0.1,
    zeta=1.1,
    init_keep_prob=0.5,
    init_weights=1.0,
    log_weight_jitter_sd=0.05,
    device="cuda",
)

# Train with L0+L2 regularization
model.fit(
    M=M,
    y=y,
    lambda_l0=1e-6,
    lambda_l2=1e-8,
    lr=0.15,
    epochs=2000,
    loss_type="relative",
    verbose=True,
)

# Get results
active = model.get_active_weights()
print(f"Selected {active['count']} of {N} households")
print(f"Sparsity: {model.get_sparsity():.1%}")
'''

REGRESSION = '''
from scipy import sparse as sp
from l0_rs.sparse import SparseL0Linear

# Sparse design matrix
X = sp.random(1000, 500, density=0.1, format="csr")
y = np.random.randn(1000)

model = SparseL0Linear(n_features=500)
model.fit(X, y, lambda_l0=0.001, epochs=1000)

# Get sparse coefficients
coef = model.get_coefficients(threshold=0.01)
'''


def test_readme_examples(capsys):
    ns = {}
    code = CALIBRATION
    why = gpu_unusable()
    if why is not None:
        with pytest.raises(RuntimeError) as e:
            exec(CALIBRATION, {})
        assert str(e.value).startswith(why)
        capsys.readouterr()
        code = CALIBRATION.replace('device="cuda"', 'device="auto"')
        assert code != CALIBRATION
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(code, ns)
    # The reference's example ends far from its targets, held down by its
    # L2 penalty (weights near 1 against totals of 1e6..1e8), and says so.
    far = [str(w.message) for w in caught if w.category is UserWarning]
    assert len(far) == 1 and far[0].startswith("the fit is far from its targets (mean |rel err| 9"), far
    assert far[0].endswith("the lambda_l2 penalty holds them down; lower lambda_l2 (now 1e-8)"), far
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Groups: none (uniform weights)"
    # verbose_freq=100: one two-line report per 100 epochs.
    epochs = [line for line in out if line.startswith("Epoch ")]
    assert [int(line.split(":")[0].split()[1]) for line in epochs] == list(range(100, 2001, 100))
    assert sum(line.startswith("         Weight dist: [") for line in out) == 20
    model, n = ns["model"], ns["N"]
    count = model.get_active_weights()["count"]
    assert out[-2] == f"Selected {count} of {n} households"
    assert out[-1] == f"Sparsity: {model.get_sparsity():.1%}"
    assert 0 < count <= n
    # The last progress line is that of the fit's own report.
    assert "\n".join(out[-4:-2]) == model.fit_report_["last"]["line"]

    exec(REGRESSION, ns)
    coef = ns["coef"]
    assert coef.shape == (500,) and coef.dtype == np.float64
    assert np.all(np.isfinite(coef))
    assert ns["model"].fit_report_["epochs"] == 1000


def readme_python_example():
    """This project's README's Python example (the block after "Change only
    the import line")."""
    import pathlib

    text = (pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = text.index("```python\n", text.index("Change only the import line of l0-python code"))
    return text[start + len("```python\n"):text.index("```\n", start + 1)]


def test_this_readmes_python_example_fits_its_targets(capsys):
    ns = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(readme_python_example(), ns)
    assert [str(w.message) for w in caught] == []
    model, M, y = ns["model"], ns["M"], ns["y"]
    r = model.target_report(M, y)
    # The README says: about 480 of 10,000 records, 0.6% mean, 1.2% max.
    assert 400 < ns["active"]["count"] < 560, ns["active"]["count"]
    assert r["mean_abs_rel_err"] < 0.007 and r["max_abs_rel_err"] < 0.015, r
    assert type(ns["w"].cpu().numpy()) is np.ndarray
    assert ns["saved"]["step"] == 2500
