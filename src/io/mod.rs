//! Reading and writing the files survey-calibration users have.
//!
//! * [`npy`]: NumPy `.npy` arrays (read: versions 1.0–3.0, either byte
//!   order, numeric, bool and string dtypes; write: 1-D `f8` / `i8`).
//! * [`npz`]: sparse matrices saved by `scipy.sparse.save_npz` (csr, csc,
//!   coo; deflated or stored).
//! * [`mtx`]: Matrix Market files (coordinate and array, real / integer /
//!   pattern, general / symmetric / skew-symmetric).
//! * [`csv`]: one-column numeric CSV, one-name-per-line CSV, and a small
//!   CSV writer.
//!
//! [`read_vector`] and [`read_sparse`] pick the reader from the file
//! extension. Every writer goes through [`write_atomic`], so a killed
//! process never leaves a half-written file behind.
//!
//! Nothing here panics on file content: every problem comes back as an
//! [`L0Error`] naming the file (and, for text formats, the line).

pub mod csv;
pub mod mtx;
pub mod npy;
pub mod npz;

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::check_finite;
use crate::{L0Error, Result};

pub use npy::{NpyArray, NpyData};

/// Shorthand for an [`L0Error::Io`] about `path`.
pub(crate) fn io_error(path: &Path, message: impl std::fmt::Display) -> L0Error {
    L0Error::Io {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Shorthand for an [`L0Error::Format`] about `path`.
pub(crate) fn format_error(path: &Path, message: impl Into<String>) -> L0Error {
    L0Error::Format {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads a whole file, mapping failures to [`L0Error::Io`].
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| io_error(path, format!("cannot read file: {e}")))
}

/// Distinguishes temporary files of concurrent writers in one process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `path` atomically: `write` fills a temporary file in the same
/// directory (`.<name>.tmp-<pid>-<n>`), which is flushed, fsynced and then
/// renamed over `path`. Readers see either the old file or the complete
/// new one, never a partial file; on any error the temporary file is
/// removed and `path` is left untouched.
///
/// `write` gets a buffered writer and reports plain I/O errors; they come
/// back as [`L0Error::Io`] naming `path`.
pub fn write_atomic<F>(path: &Path, write: F) -> Result<()>
where
    F: FnOnce(&mut dyn Write) -> std::io::Result<()>,
{
    let name = path
        .file_name()
        .ok_or_else(|| io_error(path, "cannot write: the path has no file name"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}-{n}", std::process::id()));
    let tmp = dir.join(tmp_name);

    let result = (|| -> Result<()> {
        let file = File::create(&tmp).map_err(|e| {
            io_error(
                path,
                format!("cannot create temporary file {}: {e}", tmp.display()),
            )
        })?;
        let mut buf = BufWriter::new(file);
        write(&mut buf).map_err(|e| io_error(path, format!("write failed: {e}")))?;
        let file = buf
            .into_inner()
            .map_err(|e| io_error(path, format!("write failed: {}", e.error())))?;
        file.sync_all()
            .map_err(|e| io_error(path, format!("fsync failed: {e}")))?;
        drop(file);
        fs::rename(&tmp, path).map_err(|e| {
            io_error(
                path,
                format!("cannot rename {} into place: {e}", tmp.display()),
            )
        })
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    // Make the rename itself durable. Best effort: some file systems do not
    // let a directory be opened or synced, and the data is already safe.
    #[cfg(unix)]
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The lower-cased extension of `path`, without the dot ("" if none).
fn extension(path: &Path) -> String {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Reads a vector of numbers (targets, weights, a response): a `.npy` array
/// (1-D, or 2-D with one column; any numeric dtype) or a one-column `.csv`
/// (see [`csv::read_f64_column`]). `what` names the vector in errors.
///
/// Every value must be finite ([`L0Error::NonFinite`] otherwise).
pub fn read_vector(path: &Path, what: &str) -> Result<Vec<f64>> {
    let values = match extension(path).as_str() {
        "npy" => read_npy_vector(path, what)?.to_f64_vec(what)?,
        "csv" => csv::read_f64_column(path)?,
        _ => return Err(unknown_extension(path, what, ".npy or .csv")),
    };
    check_finite(&format!("{what} ({})", path.display()), &values)?;
    Ok(values)
}

/// Reads a vector of integer labels (group ids) as `i64`, every `i64`
/// value exact (no round trip through `f64`): a `.npy` array (1-D, or 2-D
/// with one column; see [`npy::NpyArray::to_i64_vec`]) or a one-column
/// `.csv` (see [`csv::read_i64_column`]). `what` names the vector in
/// errors.
pub fn read_int_vector(path: &Path, what: &str) -> Result<Vec<i64>> {
    match extension(path).as_str() {
        "npy" => read_npy_vector(path, what)?.to_i64_vec(what),
        "csv" => csv::read_i64_column(path),
        _ => Err(unknown_extension(path, what, ".npy or .csv")),
    }
}

/// `x` as an `i64` when it is a whole number in the `i64` range
/// (-2^63 <= x < 2^63, both ends exact in `f64`).
pub(crate) fn whole_i64(x: f64) -> Option<i64> {
    let bound = 2f64.powi(63);
    (x.fract() == 0.0 && (-bound..bound).contains(&x)).then_some(x as i64)
}

/// An `.npy` array that must be a vector: 1-D, or 2-D with one column.
fn read_npy_vector(path: &Path, what: &str) -> Result<npy::NpyArray> {
    let array = npy::read_npy(path)?;
    match array.shape.as_slice() {
        [_] | [_, 1] => Ok(array),
        other => Err(format_error(
            path,
            format!(
                "{what}: expected a 1-D array or a single column, got shape {}",
                npy::shape_text(other)
            ),
        )),
    }
}

/// The shape a matrix file declares, read from its header alone (the
/// `.npz` shape member, the Matrix Market size line, the `.npy` header),
/// so that what it will cost can be checked before it is read; None when
/// the header cannot tell ([`read_sparse`] then says why).
pub fn matrix_shape(path: &Path) -> Option<(usize, usize)> {
    match extension(path).as_str() {
        "npz" => npz::npz_shape(path).ok(),
        "mtx" => mtx::mtx_shape(path),
        "npy" => {
            use std::io::Read;
            // An .npy header is at most 64 KiB past its 10-byte preamble.
            let mut head = Vec::new();
            File::open(path)
                .ok()?
                .take(10 + 65_536)
                .read_to_end(&mut head)
                .ok()?;
            match npy::parse_npy_layout(&head, path, None).ok()?.shape[..] {
                [rows, cols] => Some((rows, cols)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Reads a matrix: a `.npz` written by `scipy.sparse.save_npz`, a Matrix
/// Market `.mtx` file, or a dense 2-D `.npy` array (turned into CSR
/// holding its nonzero entries, for regression design matrices).
pub fn read_sparse(path: &Path) -> Result<RawSparse> {
    match extension(path).as_str() {
        "npz" => npz::read_npz_sparse(path),
        "mtx" => mtx::read_mtx(path),
        "npy" => {
            let array = npy::read_npy(path)?;
            let (rows, cols) = match array.shape.as_slice() {
                [r, c] => (*r, *c),
                other => {
                    return Err(format_error(
                        path,
                        format!(
                            "expected a 2-D array for a matrix, got shape {}",
                            npy::shape_text(other)
                        ),
                    ))
                }
            };
            if rows == 0 || cols == 0 || rows > u32::MAX as usize || cols > u32::MAX as usize {
                return Err(format_error(
                    path,
                    format!(
                        "a matrix needs between 1 and 2^32 - 1 rows and columns, got {rows} x {cols}"
                    ),
                ));
            }
            let values = array.to_f64_vec("matrix")?;
            check_finite(&format!("matrix ({})", path.display()), &values)?;
            Ok(RawSparse::from_dense_row_major(rows, cols, &values))
        }
        _ => Err(unknown_extension(path, "matrix", ".npz, .mtx or .npy")),
    }
}

/// Reads a matrix file and builds the validated [`crate::SparseMatrix`]
/// from it (sorted, duplicates summed, both layouts): `.npz` through
/// [`npz::read_npz_matrix`] (straight into the final types), other formats
/// through [`read_sparse`]; on the current pool ([`crate::par::Par::current`]).
pub fn read_matrix(path: &Path) -> Result<crate::SparseMatrix> {
    match extension(path).as_str() {
        "npz" => npz::read_npz_matrix(path, crate::par::Par::current()),
        _ => matrix_from_raw(read_sparse(path)?),
    }
}

/// The validated matrix of a [`RawSparse`].
pub(crate) fn matrix_from_raw(raw: RawSparse) -> Result<crate::SparseMatrix> {
    let (r, c, d) = (raw.rows, raw.cols, &raw.data);
    match &raw.structure {
        SparseStructure::Csr { indptr, indices } => {
            crate::SparseMatrix::from_csr(r, c, indptr, indices, d)
        }
        SparseStructure::Csc { indptr, indices } => {
            crate::SparseMatrix::from_csc(r, c, indptr, indices, d)
        }
        SparseStructure::Coo { row, col } => crate::SparseMatrix::from_triplets(r, c, row, col, d),
    }
}

fn unknown_extension(path: &Path, what: &str, expected: &str) -> L0Error {
    let ext = extension(path);
    let found = if ext.is_empty() {
        "no extension".to_string()
    } else {
        format!("extension .{ext}")
    };
    format_error(
        path,
        format!("cannot read {what}: unknown file type ({found}); expected {expected}"),
    )
}

/// How a [`RawSparse`] stores its entries.
#[derive(Debug, Clone, PartialEq)]
pub enum SparseStructure {
    /// Compressed sparse rows: row `r` holds entries
    /// `indptr[r]..indptr[r + 1]`, whose column indices are in `indices`.
    Csr {
        /// Row pointers, `rows + 1` of them.
        indptr: Vec<u64>,
        /// Column index of each entry.
        indices: Vec<u64>,
    },
    /// Compressed sparse columns: column `c` holds entries
    /// `indptr[c]..indptr[c + 1]`, whose row indices are in `indices`.
    Csc {
        /// Column pointers, `cols + 1` of them.
        indptr: Vec<u64>,
        /// Row index of each entry.
        indices: Vec<u64>,
    },
    /// Coordinates: entry `k` sits at `(row[k], col[k])`. Duplicates are
    /// allowed and mean the sum of their values (as in scipy).
    Coo {
        /// Row index of each entry.
        row: Vec<u64>,
        /// Column index of each entry.
        col: Vec<u64>,
    },
}

/// A sparse matrix as read from a file: its shape, its stored structure
/// and values, checked for structure (pointer lengths and monotonicity,
/// index bounds, finite values) but otherwise as the file had it (entries
/// within a row or column may be unsorted or duplicated; explicit zeros
/// are kept). [`RawSparse::to_csr`] gives the canonical form.
#[derive(Debug, Clone, PartialEq)]
pub struct RawSparse {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Where the entries sit.
    pub structure: SparseStructure,
    /// The stored values, one per entry.
    pub data: Vec<f64>,
}

impl RawSparse {
    /// Number of stored entries (explicit zeros and duplicates included).
    pub fn nnz(&self) -> usize {
        self.data.len()
    }

    /// The CSR form of a dense row-major `rows x cols` matrix, keeping only
    /// its nonzero entries. `values.len()` must be `rows * cols`.
    pub fn from_dense_row_major(rows: usize, cols: usize, values: &[f64]) -> RawSparse {
        let mut indptr = Vec::with_capacity(rows + 1);
        let mut indices = Vec::new();
        let mut data = Vec::new();
        indptr.push(0u64);
        if cols > 0 {
            for row in values.chunks_exact(cols).take(rows) {
                for (c, &v) in row.iter().enumerate() {
                    if v != 0.0 {
                        indices.push(c as u64);
                        data.push(v);
                    }
                }
                indptr.push(data.len() as u64);
            }
        }
        indptr.resize(rows + 1, data.len() as u64);
        RawSparse {
            rows,
            cols,
            structure: SparseStructure::Csr { indptr, indices },
            data,
        }
    }

    /// Checks the structure: pointer arrays of the right length, starting
    /// at 0, non-decreasing and ending at the number of entries; index
    /// arrays as long as `data`; every index below its bound; every value
    /// finite. Errors name `path`, the file the matrix came from.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let nnz = self.data.len();
        let source = &path.display().to_string();
        match &self.structure {
            SparseStructure::Csr { indptr, indices } => {
                check_indptr(path, indptr, self.rows, "row", nnz)?;
                check_len(source, "indices (column indices)", indices.len(), nnz)?;
                check_bounds(source, "indices (column indices)", indices, self.cols)?;
            }
            SparseStructure::Csc { indptr, indices } => {
                check_indptr(path, indptr, self.cols, "column", nnz)?;
                check_len(source, "indices (row indices)", indices.len(), nnz)?;
                check_bounds(source, "indices (row indices)", indices, self.rows)?;
            }
            SparseStructure::Coo { row, col } => {
                check_len(source, "row (row indices)", row.len(), nnz)?;
                check_len(source, "col (column indices)", col.len(), nnz)?;
                check_bounds(source, "row (row indices)", row, self.rows)?;
                check_bounds(source, "col (column indices)", col, self.cols)?;
            }
        }
        check_finite(&format!("{source}: data"), &self.data)
    }

    /// Every entry as `(row, column, value)`, in stored order. Meant for a
    /// validated matrix; entries an invalid one cannot place are skipped.
    pub fn triplets(&self) -> Vec<(usize, usize, f64)> {
        let mut out = Vec::with_capacity(self.nnz());
        match &self.structure {
            SparseStructure::Csr { indptr, indices } | SparseStructure::Csc { indptr, indices } => {
                let by_row = matches!(self.structure, SparseStructure::Csr { .. });
                for (outer, w) in indptr.windows(2).enumerate() {
                    let range = w[0] as usize..w[1] as usize;
                    let (Some(inner), Some(values)) =
                        (indices.get(range.clone()), self.data.get(range))
                    else {
                        continue;
                    };
                    for (&inner, &v) in inner.iter().zip(values) {
                        let inner = inner as usize;
                        out.push(if by_row {
                            (outer, inner, v)
                        } else {
                            (inner, outer, v)
                        });
                    }
                }
            }
            SparseStructure::Coo { row, col } => {
                for ((&r, &c), &v) in row.iter().zip(col).zip(&self.data) {
                    out.push((r as usize, c as usize, v));
                }
            }
        }
        out
    }

    /// The canonical CSR form: columns sorted within each row and
    /// duplicate entries summed (as scipy's `sum_duplicates`); explicit
    /// zeros are kept. Meant for a validated matrix; entries outside the
    /// shape of an invalid one are dropped.
    pub fn to_csr(&self) -> RawSparse {
        let mut entries = self.triplets();
        entries.retain(|&(r, c, _)| r < self.rows && c < self.cols);
        entries.sort_by_key(|&(r, c, _)| (r, c));
        let mut indptr = vec![0u64; self.rows + 1];
        let mut indices: Vec<u64> = Vec::with_capacity(entries.len());
        let mut data: Vec<f64> = Vec::with_capacity(entries.len());
        let mut last: Option<(usize, usize)> = None;
        for (r, c, v) in entries {
            if last == Some((r, c)) {
                if let Some(d) = data.last_mut() {
                    *d += v;
                }
                continue;
            }
            last = Some((r, c));
            indices.push(c as u64);
            data.push(v);
            indptr[r + 1] += 1;
        }
        for r in 0..self.rows {
            indptr[r + 1] += indptr[r];
        }
        RawSparse {
            rows: self.rows,
            cols: self.cols,
            structure: SparseStructure::Csr { indptr, indices },
            data,
        }
    }
}

pub(crate) fn check_len(source: &str, what: &str, got: usize, nnz: usize) -> Result<()> {
    if got != nnz {
        return Err(L0Error::shape(
            format!("{source}: {what}, one per stored value in data"),
            nnz,
            got,
        ));
    }
    Ok(())
}

/// The pointer array's length against the outer dimension.
pub(crate) fn check_indptr_len(path: &Path, len: usize, outer: usize, unit: &str) -> Result<()> {
    if len != outer.saturating_add(1) {
        return Err(L0Error::shape(
            format!(
                "{}: indptr ({unit} pointers, one per {unit} plus one)",
                path.display()
            ),
            outer.saturating_add(1),
            len,
        ));
    }
    Ok(())
}

pub(crate) fn check_indptr(
    path: &Path,
    indptr: &[u64],
    outer: usize,
    unit: &str,
    nnz: usize,
) -> Result<()> {
    let source = path.display();
    check_indptr_len(path, indptr.len(), outer, unit)?;
    if indptr[0] != 0 {
        return Err(format_error(
            path,
            format!("indptr must start at 0, starts at {}", indptr[0]),
        ));
    }
    if let Some(i) = indptr.windows(2).position(|w| w[1] < w[0]) {
        return Err(format_error(
            path,
            format!(
                "indptr must be non-decreasing, but indptr[{}] = {} > indptr[{}] = {}",
                i,
                indptr[i],
                i + 1,
                indptr[i + 1]
            ),
        ));
    }
    let last = indptr[indptr.len() - 1];
    if last != nnz as u64 {
        return Err(L0Error::shape(
            format!("{source}: last indptr entry (the number of stored values in data)"),
            nnz,
            last,
        ));
    }
    Ok(())
}

fn check_bounds(source: &str, what: &str, indices: &[u64], bound: usize) -> Result<()> {
    if let Some(position) = indices.iter().position(|&i| i >= bound as u64) {
        return Err(L0Error::IndexOutOfRange {
            what: format!("{source}: {what}"),
            index: indices[position],
            position,
            bound: bound as u64,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("l0-io-{name}-{}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn write_atomic_leaves_no_temporary_file() {
        let d = tmp_dir("atomic");
        let p = d.join("out.txt");
        write_atomic(&p, |w| w.write_all(b"hello")).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"hello");
        // A failing writer leaves the old content and no temporary file.
        let err = write_atomic(&p, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("boom"))
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: write failed: boom", p.display())
        );
        assert_eq!(fs::read(&p).unwrap(), b"hello");
        let names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.txt")]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn to_csr_sorts_and_sums_duplicates() {
        let m = RawSparse {
            rows: 2,
            cols: 3,
            structure: SparseStructure::Coo {
                row: vec![1, 0, 1, 1],
                col: vec![2, 1, 0, 2],
            },
            data: vec![1.0, 2.0, 3.0, 4.0],
        };
        m.validate(Path::new("m")).unwrap();
        let csr = m.to_csr();
        assert_eq!(
            csr.structure,
            SparseStructure::Csr {
                indptr: vec![0, 1, 3],
                indices: vec![1, 0, 2]
            }
        );
        assert_eq!(csr.data, vec![2.0, 3.0, 5.0]);
    }

    #[test]
    fn validate_rejects_bad_indptr() {
        let mut m = RawSparse::from_dense_row_major(2, 2, &[1.0, 0.0, 0.0, 2.0]);
        m.structure = SparseStructure::Csr {
            indptr: vec![0, 2, 1],
            indices: vec![0, 1],
        };
        assert_eq!(
            m.validate(Path::new("m")).unwrap_err().to_string(),
            "m: indptr must be non-decreasing, but indptr[1] = 2 > indptr[2] = 1"
        );
    }
}
