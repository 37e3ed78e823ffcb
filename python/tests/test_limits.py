"""Hostile sizes at the Python border: counts, columns, models and threads
beyond what fits are refused with ValueError or MemoryError naming the
argument, before anything is allocated; a panic inside the engine reaches
Python as RuntimeError."""

import os
import re
import resource

import numpy as np
import pytest
import scipy.sparse as sp

import l0_rs
from l0_rs import _native
from l0_rs.calibration import SparseCalibrationWeights
from l0_rs.sparse import SparseL0Linear


def max_rss_mb():
    """This process's peak resident memory so far, in MB (Linux: KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def raises(exc, f, *args, **kw):
    with pytest.raises(exc) as info:
        f(*args, **kw)
    return str(info.value)


def test_a_grid_count_beyond_the_bound_is_refused():
    before = max_rss_mb()
    for n in (10**19, 2**64 - 1, 1_000_001):
        assert raises(ValueError, l0_rs.lambda_grid, 1e-6, 1e-3, n) == (
            f"invalid configuration: a lambda grid holds at most 1000000 values (one model each), got {n}"
        )
    assert raises(ValueError, l0_rs.lambda_grid, 1e-6, 1e-3, 10**30) == (
        "n must be at most 18446744073709551615, got 1000000000000000000000000000000"
    )
    # The engine's own border names the argument too.
    assert raises(ValueError, _native.lambda_grid, 1e-6, 1e-3, 10**30) == (
        "n is out of range: 1000000000000000000000000000000"
    )
    assert max_rss_mb() - before < 100


@pytest.mark.parametrize("cls", [SparseCalibrationWeights, SparseL0Linear])
def test_columns_beyond_memory_are_a_memory_error(cls):
    before = max_rss_mb()
    msg = raises(MemoryError, cls, n_features=2**40)
    assert msg.startswith("n_features = 1099511627776 needs 70.4 TB of memory, more than the "), msg
    assert msg.endswith(" available"), msg
    assert max_rss_mb() - before < 100
    assert raises(ValueError, cls, n_features=2**70) == (
        "n_features is out of range: 1180591620717411303424"
    )


def test_a_sweep_beyond_memory_is_refused_with_the_figure():
    m = sp.csr_matrix(([1.0, 2.0], ([0, 1], [0, 99_999])), shape=(2, 100_000))
    y = np.array([1.0, 2.0])
    before = max_rss_mb()
    msg = raises(MemoryError, l0_rs.sweep, m, y, np.full(200_000, 1e-3), epochs=1, seed=0)
    assert msg.startswith(
        "a sweep of 200000 models x 100000 columns needs 1.3 TB of memory, more than the "
    ), msg
    assert max_rss_mb() - before < 100


@pytest.fixture
def small():
    m = sp.csr_matrix(np.array([[1.0, 0, 2.0], [0, 3.0, 1.0]]))
    return SparseCalibrationWeights(n_features=3, seed=0), m, np.array([3.0, 4.0])


def test_counts_beyond_64_bits_name_the_argument(small):
    model, m, y = small
    assert raises(ValueError, model.fit, m, y, epochs=2**70) == (
        "epochs must be at most 18446744073709551615, got 1180591620717411303424"
    )
    assert raises(ValueError, model.fit, m, y, epochs=1, verbose=True, verbose_freq=2**64) == (
        "verbose_freq must be at most 18446744073709551615, got 18446744073709551616"
    )
    assert model.state_dict()["step"] == 0


def test_threads_beyond_the_bound_are_refused(small):
    model, m, y = small
    msg = raises(ValueError, model.fit, m, y, epochs=1, threads=10**6)
    found = re.fullmatch(
        r"invalid configuration: threads must be at most (\d+) \(4 x the (\d+) logical CPUs: "
        r"more threads only share the same cores\), got 1000000",
        msg,
    )
    assert found, msg
    most, cpus = int(found[1]), int(found[2])
    assert most == 4 * cpus and 1 <= cpus <= os.cpu_count()
    assert raises(ValueError, model.fit, m, y, epochs=1, threads=most + 1).endswith(f"got {most + 1}")
    model.fit(m, y, epochs=1, threads=most)
    assert model.state_dict()["step"] == 1


def test_a_panic_is_a_runtime_error():
    with pytest.raises(RuntimeError) as info:
        _native._panic_for_tests("boom")
    assert str(info.value) == "internal error in l0 (please report it): boom"
    # An ordinary `except Exception` catches it.
    try:
        _native._panic_for_tests("again")
    except Exception as e:  # noqa: BLE001
        assert type(e) is RuntimeError
