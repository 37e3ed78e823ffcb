"""Writes the test fixtures under tests/data/ with the real numpy and scipy.

Run from the repository root:  /work/refvenv/bin/python tests/data/make_fixtures.py
(numpy 2.4.6 and scipy 1.17.1 wrote the committed files). tests/io_formats.rs
hard-codes the values below; change both together. The Rust tests do not
need Python.
"""

import os

import numpy as np
import scipy.io
import scipy.sparse as sp

HERE = os.path.dirname(os.path.abspath(__file__))


def out(name):
    return os.path.join(HERE, name)


# The 3 x 4 matrix behind every sparse fixture.
A = np.array(
    [
        [1.5, 0.0, 0.0, -2.0],
        [0.0, 0.0, 3.25, 0.0],
        [0.0, 4.0, 0.0, 0.5],
    ]
)

# scipy.sparse.save_npz, as users write it.
sp.save_npz(out("csr_compressed.npz"), sp.csr_matrix(A), compressed=True)
sp.save_npz(out("coo_uncompressed.npz"), sp.coo_matrix(A), compressed=False)
# A sparray (not a matrix): scipy adds an `_is_array` member.
sp.save_npz(out("csc_array.npz"), sp.csc_array(A), compressed=True)

# What older scipy wrote (format as a 0-d unicode array) and what scipy
# writes for n-D coo (a 2 x nnz `coords` member), emulated with np.savez.
csr = sp.csr_matrix(A)
np.savez(
    out("csr_unicode_format.npz"),
    indices=csr.indices,
    indptr=csr.indptr,
    format=np.array("csr"),
    shape=np.array(A.shape),
    data=csr.data,
)
coo = sp.coo_matrix(A)
np.savez(
    out("coo_coords.npz"),
    coords=np.vstack([coo.row, coo.col]).astype(np.int64),
    format=np.array(b"coo"),
    shape=np.array(A.shape),
    data=coo.data,
)

# Broken sparse files, written member by member as save_npz would.
def bad_csr(name, indptr, indices, data):
    np.savez(
        out(name),
        indices=np.array(indices, dtype=np.int32),
        indptr=np.array(indptr, dtype=np.int32),
        format=np.array(b"csr"),
        shape=np.array([3, 4]),
        data=np.array(data, dtype=np.float64),
    )


bad_csr("bad_indptr_len.npz", [0, 2, 5], [0, 3, 2, 1, 3], [1.5, -2.0, 3.25, 4.0, 0.5])
bad_csr("bad_index.npz", [0, 2, 3, 5], [0, 4, 2, 1, 3], [1.5, -2.0, 3.25, 4.0, 0.5])
bad_csr("nan_data.npz", [0, 2, 3, 5], [0, 3, 2, 1, 3], [1.5, -2.0, np.nan, 4.0, 0.5])
# A plain np.savez of dense arrays: not a sparse matrix.
np.savez(out("dense_arrays.npz"), a=np.arange(3.0), b=np.arange(2))

# Plain .npy arrays.
np.save(out("f8.npy"), np.array([0.5, -1.25, 3.0e10, 0.0, 1e-300]))
np.save(out("i8.npy"), np.array([0, 7, -3, 2**40], dtype=np.int64))
np.save(out("f4_2d.npy"), np.array([[1.0, 2.5, 0.0], [-4.0, 0.0, 6.25]], dtype=np.float32))
np.save(out("f8_fortran_2d.npy"), np.asfortranarray(np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])))
np.save(out("f8_column.npy"), np.array([[1.0], [2.0], [3.0]]))
np.save(out("bool.npy"), np.array([True, False, True]))
np.save(out("u1.npy"), np.array([0, 255, 3], dtype=np.uint8))
with open(out("f8_be_v2.npy"), "wb") as f:
    np.lib.format.write_array(f, np.array([1.0, -2.5, 1e100], dtype=">f8"), version=(2, 0))
with open(out("i2_be_v3.npy"), "wb") as f:
    np.lib.format.write_array(f, np.array([-1, 2, 300], dtype=">i2"), version=(3, 0))
np.save(out("object.npy"), np.array([1, "a"], dtype=object), allow_pickle=True)

# Matrix Market, as scipy.io.mmwrite writes it.
scipy.io.mmwrite(out("matrix.mtx"), sp.coo_matrix(A), comment="the 3 x 4 test matrix")
scipy.io.mmwrite(out("symmetric.mtx"), sp.coo_matrix(np.array([[2.0, 0.0, 1.0], [0.0, 3.0, 0.0], [1.0, 0.0, 0.0]])))
scipy.io.mmwrite(out("dense.mtx"), np.array([[1.0, 2.0], [0.0, 4.0]]))
