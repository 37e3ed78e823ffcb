"""How a fit behaves while it runs: the reference's progress lines, the GIL
released, and Ctrl-C (KeyboardInterrupt) stopping it between epochs with
the model in that epoch's state."""

import _thread
import threading
import time

import numpy as np
import pytest
import scipy.sparse as sp

from conftest import make_problem
from l0_rs.calibration import SparseCalibrationWeights
from l0_rs.sparse import SparseL0Linear


def test_verbose_prints_the_reference_lines(capsys, problem):
    m, y = problem
    groups = np.arange(len(y)) % 4
    model = SparseCalibrationWeights(n_features=m.shape[1], seed=1)
    model.fit(m, y, epochs=250, verbose=True, verbose_freq=50, target_groups=groups,
              group_multipliers={np.int64(2): 3.0})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Groups: 4 groups, normalize=on, multipliers={np.int64(2): 3.0}" or \
        out[0] == "Groups: 4 groups, normalize=on, multipliers={2: 3.0}"
    heads = out[1::2]
    assert [h[:12] for h in heads] == [f"Epoch {e:4d}: " for e in (50, 100, 150, 200, 250)]
    assert all("mean_group_mare=" in h and "% sparse)" in h for h in heads)
    assert all(d.startswith("         Weight dist: [<0.01: ") for d in out[2::2])
    assert "\n".join(out[-2:]) == model.fit_report_["last"]["line"]
    # A last epoch off the schedule prints nothing (as in the reference).
    model.fit(m, y, epochs=30, verbose=True, verbose_freq=50)
    assert capsys.readouterr().out == "Groups: none (uniform weights)\n"


def test_regression_verbose(capsys):
    x = sp.random(50, 6, density=0.5, format="csr", random_state=0)
    SparseL0Linear(6, seed=0).fit(x, np.ones(50), epochs=20, verbose=True, verbose_freq=10)
    out = capsys.readouterr().out.splitlines()
    assert [line[:12] for line in out] == ["Epoch   10: ", "Epoch   20: "]
    assert all(", mse=" in line and ", l0=" in line and ", active=" in line for line in out)


def big_problem():
    return make_problem(q=50, n=20000, density=0.05, seed=5)


def test_fit_releases_the_gil():
    m, y = big_problem()
    model = SparseCalibrationWeights(n_features=m.shape[1], seed=0)
    t = threading.Thread(target=model.fit, args=(m, y), kwargs={"epochs": 2000})
    ticks = 0
    t.start()
    while t.is_alive():
        ticks += 1
        time.sleep(0.001)
    t.join()
    assert model.state_dict()["step"] == 2000
    # The main thread kept running Python while the engine worked.
    assert ticks > 20, ticks


@pytest.mark.parametrize("kind", ["calibration", "regression"])
def test_keyboard_interrupt_stops_between_epochs(kind):
    m, y = big_problem()
    if kind == "calibration":
        make = lambda: SparseCalibrationWeights(n_features=m.shape[1], seed=6)  # noqa: E731
    else:
        make = lambda: SparseL0Linear(n_features=m.shape[1], seed=6)  # noqa: E731
    model = make()
    timer = threading.Timer(0.5, _thread.interrupt_main)
    timer.start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        model.fit(m, y, epochs=10**8, lr=0.02)
    assert time.monotonic() - started < 5
    step = model.state_dict()["step"]
    assert 0 < step < 10**8
    # The model holds exactly the state after `step` epochs: an
    # uninterrupted fit of that length gives the same state.
    ref = make().fit(m, y, epochs=step, lr=0.02)
    a, b = model.state_dict(), ref.state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    # And it goes on from there.
    model.fit(m, y, epochs=3, lr=0.02)
    assert model.state_dict()["step"] == step + 3


@pytest.mark.parametrize("verbose", [True, False])
def test_keyboard_interrupt_stops_a_sweep(capsys, verbose):
    """A sweep sees Ctrl-C at its progress reports (every verbose_freq
    epochs, printed or not: its models train together in one long call)
    and raises KeyboardInterrupt (the sweep is discarded)."""
    from l0_rs.calibration import sweep

    m, y = big_problem()
    timer = threading.Timer(0.5, _thread.interrupt_main)
    timer.start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        sweep(m, y, [0.01, 0.1], epochs=10**8, lr=0.02, verbose=verbose, verbose_freq=5, seed=1)
    assert time.monotonic() - started < 5
    printed = "[lambda_l0=0.01] Epoch" in capsys.readouterr().out
    assert printed == verbose
