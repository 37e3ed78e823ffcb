//! [`Matrix`]: scipy's sparse arrays (or a dense array) checked and
//! converted once into the engine's layout, and `M w`.

use super::*;

/// Index arrays as scipy stores them.
pub(crate) enum Indices<'py> {
    I32(PyReadonlyArray1<'py, i32>),
    I64(PyReadonlyArray1<'py, i64>),
}

impl<'py> Indices<'py> {
    pub(crate) fn extract(what: &str, a: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(x) = a.extract::<PyReadonlyArray1<i32>>() {
            return Ok(Indices::I32(x));
        }
        if let Ok(x) = a.extract::<PyReadonlyArray1<i64>>() {
            return Ok(Indices::I64(x));
        }
        Err(PyTypeError::new_err(format!(
            "{what}: expected a 1-D int32 or int64 array, got {}",
            dtype_of(a)
        )))
    }
}

/// Matrix values: float32 (kept as they are) or float64.
pub(crate) enum Values<'py> {
    F32(PyReadonlyArray1<'py, f32>),
    F64(PyReadonlyArray1<'py, f64>),
}

impl<'py> Values<'py> {
    pub(crate) fn extract(a: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(x) = a.extract::<PyReadonlyArray1<f32>>() {
            return Ok(Values::F32(x));
        }
        if let Ok(x) = a.extract::<PyReadonlyArray1<f64>>() {
            return Ok(Values::F64(x));
        }
        Err(PyTypeError::new_err(format!(
            "matrix data: expected a 1-D float32 or float64 array, got {}",
            dtype_of(a)
        )))
    }
}

/// A validated sparse matrix in the engine's layout (CSR and CSC, `f32`
/// values, `u32` indices), built once from scipy's arrays and reusable
/// across fits and predictions.
#[pyclass(module = "l0_rs._native", name = "Matrix", frozen)]
pub(crate) struct Matrix {
    pub(crate) m: SparseMatrix,
}

pub(crate) fn compressed<P: l0::SparseIndex, J: l0::SparseIndex, V: Copy + Into<f64>>(
    by_column: bool,
    shape: (usize, usize),
    indptr: &[P],
    indices: &[J],
    data: &[V],
) -> l0::Result<SparseMatrix> {
    if by_column {
        SparseMatrix::from_csc(shape.0, shape.1, indptr, indices, data)
    } else {
        SparseMatrix::from_csr(shape.0, shape.1, indptr, indices, data)
    }
}

/// [`compressed`] for either type of matrix values.
pub(crate) fn with_values<J: l0::SparseIndex>(
    by_column: bool,
    shape: (usize, usize),
    indptr: &[i64],
    indices: &[J],
    data: &Values,
) -> PyResult<l0::Result<SparseMatrix>> {
    Ok(match data {
        Values::F32(v) => compressed(by_column, shape, indptr, indices, slice("data", v)?),
        Values::F64(v) => compressed(by_column, shape, indptr, indices, slice("data", v)?),
    })
}

/// `u64` coordinates from scipy's coo indices (negative ones refused).
pub(crate) fn coordinates(what: &str, ix: &Indices) -> PyResult<Vec<u64>> {
    fn conv<T: Copy + std::fmt::Display + TryInto<u64>>(what: &str, s: &[T]) -> PyResult<Vec<u64>> {
        s.iter()
            .enumerate()
            .map(|(k, &v)| {
                v.try_into().map_err(|_| {
                    to_py(L0Error::config(format!(
                        "{what}: negative index {v} at position {k}"
                    )))
                })
            })
            .collect()
    }
    match ix {
        Indices::I32(a) => conv(what, slice(what, a)?),
        Indices::I64(a) => conv(what, slice(what, a)?),
    }
}

#[pymethods]
impl Matrix {
    /// From compressed arrays (scipy's csr or csc: `indptr`, `indices`,
    /// `data`), int32 or int64 indices, float32 or float64 data.
    #[staticmethod]
    fn compressed<'py>(
        by_column: bool,
        shape: (usize, usize),
        indptr: &Bound<'py, PyAny>,
        indices: &Bound<'py, PyAny>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Self> {
        guard(|| {
            let p = Indices::extract("indptr", indptr)?;
            let j = Indices::extract("indices", indices)?;
            let v = Values::extract(data)?;
            // indptr is short (one per row or column): one i64 copy keeps the
            // dispatch to the index and value types that matter for memory.
            let p: Vec<i64> = match &p {
                Indices::I32(a) => slice("indptr", a)?.iter().map(|&x| x as i64).collect(),
                Indices::I64(a) => slice("indptr", a)?.to_vec(),
            };
            let m = match &j {
                Indices::I32(j) => with_values(by_column, shape, &p, slice("indices", j)?, &v)?,
                Indices::I64(j) => with_values(by_column, shape, &p, slice("indices", j)?, &v)?,
            }
            .or_py()?;
            Ok(Matrix { m })
        })
    }

    /// From coordinates (scipy's coo: `row`, `col`, `data`); duplicates are summed.
    #[staticmethod]
    fn coo<'py>(
        shape: (usize, usize),
        row: &Bound<'py, PyAny>,
        col: &Bound<'py, PyAny>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Self> {
        guard(|| {
            let r = coordinates("row", &Indices::extract("row", row)?)?;
            let c = coordinates("col", &Indices::extract("col", col)?)?;
            let v: Vec<f64> = match Values::extract(data)? {
                Values::F32(a) => slice("data", &a)?.iter().map(|&x| x as f64).collect(),
                Values::F64(a) => slice("data", &a)?.to_vec(),
            };
            let m = SparseMatrix::from_triplets(shape.0, shape.1, &r, &c, &v).or_py()?;
            Ok(Matrix { m })
        })
    }

    /// From a dense 2-D float64 array (its nonzero entries).
    #[staticmethod]
    fn dense(a: PyReadonlyArray2<'_, f64>) -> PyResult<Self> {
        guard(|| {
            let (rows, cols) = (a.shape()[0], a.shape()[1]);
            let values = a.as_slice().map_err(|_| {
                PyTypeError::new_err("dense matrix: the array must be C-contiguous")
            })?;
            let m = SparseMatrix::from_dense(rows, cols, values).or_py()?;
            Ok(Matrix { m })
        })
    }

    /// `(rows, columns)`.
    #[getter]
    fn shape(&self) -> (usize, usize) {
        (self.m.rows(), self.m.cols())
    }

    /// Stored entries (after summing duplicates).
    #[getter]
    fn nnz(&self) -> usize {
        self.m.nnz()
    }

    fn __repr__(&self) -> String {
        format!(
            "l0_rs.Matrix({} x {}, {} nonzeros)",
            self.m.rows(),
            self.m.cols(),
            self.m.nnz()
        )
    }
}

/// `M w` as the engine computes it.
#[pyfunction]
pub(crate) fn mul_vec<'py>(
    py: Python<'py>,
    m: &Matrix,
    w: PyReadonlyArray1<'py, f64>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    guard(|| Ok(f64_array(py, m.m.mul_vec(slice("w", &w)?).or_py()?)))
}
