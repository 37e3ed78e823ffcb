"""Every input layout the package takes gives the same fit: scipy csr, csc
and coo (matrices and arrays), other scipy formats, int32/int64 indices,
float32/float64 data, dense numpy; vectors as numpy arrays, lists or
columns."""

import numpy as np
import pytest
import scipy.sparse as sp

import l0_rs
from l0_rs.calibration import SparseCalibrationWeights


def fit(m, y, **kw):
    model = SparseCalibrationWeights(n_features=m.shape[1], seed=17)
    return model.fit(m, y, epochs=60, lr=0.05, **kw).get_weights(deterministic=True)


def variants(m):
    """The same matrix (float32-exact values) in every accepted layout."""
    out = {}
    for fmt in ("csr", "csc", "coo"):
        for idx in (np.int32, np.int64):
            for val in (np.float32, np.float64):
                a = m.asformat(fmt).astype(val)
                if fmt == "coo":
                    a.row, a.col = a.row.astype(idx), a.col.astype(idx)
                else:
                    a.indices, a.indptr = a.indices.astype(idx), a.indptr.astype(idx)
                out[f"{fmt}-{np.dtype(idx).name}-{np.dtype(val).name}"] = a
    out["csr_array"] = sp.csr_array(m)
    out["coo_array"] = sp.coo_array(m)
    out["lil"] = m.tolil()
    out["dok"] = m.todok()
    out["bsr"] = m.tobsr()
    out["dense-float64"] = m.toarray().astype(np.float64)
    out["dense-float32"] = m.toarray()
    out["int-data"] = sp.csr_matrix((np.round(m.data).astype(np.int64), m.indices, m.indptr), shape=m.shape)
    out["engine-matrix"] = None
    return out


def test_every_layout_gives_the_same_weights(problem):
    m, y = problem
    want = fit(m, y)
    for name, a in variants(m).items():
        if name == "int-data":
            rounded = sp.csr_matrix((np.round(m.data), m.indices, m.indptr), shape=m.shape)
            assert np.array_equal(fit(a, y), fit(rounded, y)), name
            continue
        if a is None:
            a = l0_rs.Matrix.compressed(False, m.shape, m.indptr, m.indices, m.data)
        assert np.array_equal(fit(a, y), want), name


def test_unsorted_and_duplicate_entries_are_summed():
    # Row 0 holds column 2 twice and its columns out of order.
    indptr = np.array([0, 3, 4], dtype=np.int32)
    indices = np.array([2, 0, 2, 1], dtype=np.int32)
    data = np.array([1.0, 2.0, 3.0, 5.0], dtype=np.float32)
    m = sp.csr_matrix((data, indices, indptr), shape=(2, 3))
    clean = sp.csr_matrix(np.array([[2.0, 0, 4.0], [0, 5.0, 0]], dtype=np.float32))
    y = np.array([10.0, 5.0])
    assert np.array_equal(fit(m, y), fit(clean, y))
    coo = sp.coo_matrix((data, (np.array([0, 0, 0, 1]), indices)), shape=(2, 3))
    assert np.array_equal(fit(coo, y), fit(clean, y))


def test_vectors_as_lists_columns_and_other_dtypes(problem):
    m, y = problem
    want = fit(m, y)
    assert np.array_equal(fit(m, list(y)), want)
    assert np.array_equal(fit(m, y.reshape(-1, 1)), want)
    groups = np.arange(len(y)) % 3
    gw = fit(m, y, target_groups=groups)
    assert np.array_equal(fit(m, y, target_groups=groups.astype(np.int32)), gw)
    assert np.array_equal(fit(m, y, target_groups=list(groups.astype(float))), gw)


def test_predict_takes_any_layout(problem):
    m, y = problem
    model = SparseCalibrationWeights(n_features=m.shape[1], seed=2).fit(m, y, epochs=50)
    want = model.predict(m)
    w = model.get_weights(deterministic=True)
    assert np.allclose(want, m.astype(np.float64) @ w, rtol=1e-12)
    for a in (m.tocsc(), m.tocoo(), m.toarray(), sp.csr_array(m)):
        assert np.array_equal(model.predict(a), want)


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_float32_int32_input_is_read_in_place(problem, fmt):
    """The arrays are only read: the caller's matrix is left unchanged."""
    m, y = problem
    a = m.asformat(fmt)
    before = (a.data.copy(), a.indices.copy(), a.indptr.copy())
    fit(a, y)
    assert all(np.array_equal(x, z) for x, z in zip(before, (a.data, a.indices, a.indptr)))
