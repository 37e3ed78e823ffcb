//! Sparse matrices saved by `scipy.sparse.save_npz`.
//!
//! The file is a zip archive (deflated by default, stored with
//! `compressed=False`) of `.npy` members: `format` (a 0-d bytes or unicode
//! array: `csr`, `csc` or `coo`), `shape`, then `indptr`, `indices`, `data`
//! for csr and csc, or `row`, `col`, `data` for coo (or a `2 x nnz`
//! `coords` array, which scipy uses for n-D coo arrays and plans to use for
//! 2-D ones). A `_is_array` member (written for sparse arrays as opposed to
//! sparse matrices) is ignored.

use std::io::{Cursor, Read, Write};
use std::path::Path;

use zip::ZipArchive;

use super::npy::{npy_header, parse_npy, shape_text, NpyArray, NpyData};
use super::{format_error, read_file, write_atomic, RawSparse, SparseStructure};
use crate::Result;

/// An opened `.npz` archive, held in memory.
struct Npz<'p> {
    path: &'p Path,
    archive: ZipArchive<Cursor<Vec<u8>>>,
}

impl<'p> Npz<'p> {
    fn open(path: &'p Path) -> Result<Self> {
        let bytes = read_file(path)?;
        let archive = ZipArchive::new(Cursor::new(bytes))
            .map_err(|e| format_error(path, format!("not a valid .npz (zip) archive: {e}")))?;
        Ok(Npz { path, archive })
    }

    fn has(&self, member: &str) -> bool {
        self.archive.index_for_name(member).is_some()
    }

    fn member_names(&self) -> Vec<String> {
        self.archive
            .file_names()
            .map(|n| n.map_or_else(|_| "?".to_string(), |n| n.into_owned()))
            .collect()
    }

    /// Reads member `name` (e.g. "data.npy") as an `.npy` array; `None` if
    /// there is no such member.
    fn read(&mut self, name: &str) -> Result<Option<NpyArray>> {
        if !self.has(name) {
            return Ok(None);
        }
        let path = self.path;
        let broken = |e: &dyn std::fmt::Display| {
            format_error(
                path,
                format!("not a valid .npz (zip) archive: member {name}: {e}"),
            )
        };
        let mut file = self.archive.by_name(name).map_err(|e| broken(&e))?;
        // The declared size is only a capacity hint (capped, as the file
        // may lie); the read itself stops at the real end.
        let mut bytes = Vec::with_capacity(file.size().min(1 << 26) as usize);
        file.read_to_end(&mut bytes).map_err(|e| broken(&e))?;
        parse_npy(&bytes, path, Some(name)).map(Some)
    }

    fn require(&mut self, name: &str) -> Result<NpyArray> {
        match self.read(name)? {
            Some(a) => Ok(a),
            None => Err(format_error(
                self.path,
                format!(
                    "member {name} is missing (members: {})",
                    self.member_names().join(", ")
                ),
            )),
        }
    }
}

/// Reads one member of an `.npz` archive as an array. `member` may be
/// given with or without its `.npy` suffix.
pub fn read_npz_member(path: &Path, member: &str) -> Result<NpyArray> {
    let name = if member.ends_with(".npy") {
        member.to_string()
    } else {
        format!("{member}.npy")
    };
    Npz::open(path)?.require(&name)
}

/// Checks that `a` is 1-D and returns its values as indices.
fn index_vector(path: &Path, a: &NpyArray, what: &str) -> Result<Vec<u64>> {
    one_d(path, a)?;
    a.to_index_vec(what)
}

fn one_d(path: &Path, a: &NpyArray) -> Result<()> {
    if a.shape.len() != 1 {
        return Err(format_error(
            path,
            format!(
                "{}: expected a 1-D array, got shape {}",
                a.member.as_deref().unwrap_or("array"),
                shape_text(&a.shape)
            ),
        ));
    }
    Ok(())
}

/// Reads a sparse matrix written by `scipy.sparse.save_npz` (csr, csc or
/// coo; compressed or not) and checks its structure with
/// [`RawSparse::validate`].
pub fn read_npz_sparse(path: &Path) -> Result<RawSparse> {
    let mut npz = Npz::open(path)?;
    let Some(format) = npz.read("format.npy")? else {
        return Err(format_error(
            path,
            format!(
                "not a sparse matrix written by scipy.sparse.save_npz: no format.npy member \
                 (members: {})",
                npz.member_names().join(", ")
            ),
        ));
    };
    let kind = match (&format.data, format.len()) {
        (NpyData::Str(s), 1) => s[0].clone(),
        _ => {
            return Err(format_error(
                path,
                format!(
                    "format.npy: expected one string such as 'csr', got a {} array of shape {}",
                    format.data.dtype_name(),
                    shape_text(&format.shape)
                ),
            ))
        }
    };

    let shape = npz.require("shape.npy")?;
    let dims = shape.to_index_vec("shape")?;
    let (rows, cols) = match dims[..] {
        [r, c] if shape.shape.len() == 1 => {
            let fit = |n: u64| {
                usize::try_from(n).map_err(|_| {
                    format_error(path, format!("shape.npy: dimension {n} is too large"))
                })
            };
            (fit(r)?, fit(c)?)
        }
        _ => {
            return Err(format_error(
                path,
                format!(
                    "shape.npy: expected two dimensions (rows, cols), got {dims:?} \
                     (only 2-D sparse matrices are supported)"
                ),
            ))
        }
    };

    let data_array = npz.require("data.npy")?;
    one_d(path, &data_array)?;
    let data = data_array.to_f64_vec("data")?;

    let structure = match kind.as_str() {
        "csr" | "csc" => {
            let indptr = npz.require("indptr.npy")?;
            let indices = npz.require("indices.npy")?;
            let indptr = index_vector(path, &indptr, "indptr")?;
            let indices = index_vector(path, &indices, "indices")?;
            if kind == "csr" {
                SparseStructure::Csr { indptr, indices }
            } else {
                SparseStructure::Csc { indptr, indices }
            }
        }
        "coo" if npz.has("coords.npy") && !npz.has("row.npy") => {
            let coords = npz.require("coords.npy")?;
            let nnz = match coords.shape[..] {
                [2, n] => n,
                _ => {
                    return Err(format_error(
                        path,
                        format!(
                            "coords.npy: expected shape (2, nnz) for a 2-D matrix, got {}",
                            shape_text(&coords.shape)
                        ),
                    ))
                }
            };
            let mut row = coords.to_index_vec("coords")?;
            let col = row.split_off(nnz);
            SparseStructure::Coo { row, col }
        }
        "coo" => {
            let row = npz.require("row.npy")?;
            let col = npz.require("col.npy")?;
            SparseStructure::Coo {
                row: index_vector(path, &row, "row")?,
                col: index_vector(path, &col, "col")?,
            }
        }
        other => {
            return Err(format_error(
                path,
                format!(
                    "sparse format '{other}' is not supported (supported: csr, csc, coo); \
                     convert with .tocsr() before save_npz"
                ),
            ))
        }
    };
    let matrix = RawSparse {
        rows,
        cols,
        structure,
        data,
    };
    matrix.validate(path)?;
    Ok(matrix)
}

/// Writes `m` as `scipy.sparse.save_npz(path, m.tocsr(), compressed=False)`
/// would: a stored (uncompressed) zip of `format` (`'csr'`), `shape`
/// (int64), `indptr` (int32, or int64 beyond 2^31 - 1 nonzeros), `indices`
/// (int32) and `data` (float32), atomically. `scipy.sparse.load_npz` and
/// [`read_npz_sparse`] read it back.
pub fn write_npz_csr(path: &Path, m: &crate::SparseMatrix) -> Result<()> {
    let csr = m.csr();
    let ptr = csr.indptr();
    let ptr = ptr.raw_storage();
    write_atomic(path, |w| {
        let mut zip = zip::ZipWriter::new_stream(w);
        let z = &mut zip;
        let format = ['c', 's', 'r'];
        write_le(member(z, "format.npy", "<U3", &[])?, &format, |c| {
            (c as u32).to_le_bytes()
        })?;
        let shape = [m.rows() as i64, m.cols() as i64];
        write_le(
            member(z, "shape.npy", "<i8", &[2])?,
            &shape,
            i64::to_le_bytes,
        )?;
        let n = ptr.len();
        if m.nnz() > i32::MAX as usize {
            let w = member(z, "indptr.npy", "<i8", &[n])?;
            write_le(w, ptr, |p| (p as i64).to_le_bytes())?;
        } else {
            let w = member(z, "indptr.npy", "<i4", &[n])?;
            write_le(w, ptr, |p| (p as i32).to_le_bytes())?;
        }
        let (idx, val) = (csr.indices(), csr.data());
        let w = member(z, "indices.npy", "<i4", &[idx.len()])?;
        write_le(w, idx, |i| (i as i32).to_le_bytes())?;
        write_le(
            member(z, "data.npy", "<f4", &[val.len()])?,
            val,
            f32::to_le_bytes,
        )?;
        zip.finish()?;
        Ok(())
    })
}

/// Starts stored member `name` holding a `.npy` array, after its header.
fn member<'z, W: Write>(
    zip: &'z mut zip::ZipWriter<zip::write::StreamWriter<W>>,
    name: &str,
    descr: &str,
    shape: &[usize],
) -> std::io::Result<&'z mut zip::ZipWriter<zip::write::StreamWriter<W>>> {
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    zip.start_file(name, opts)?;
    zip.write_all(&npy_header(descr, shape))?;
    Ok(zip)
}

/// Writes `values` little-endian through a bounded buffer.
fn write_le<T: Copy, const N: usize>(
    w: &mut impl Write,
    values: &[T],
    le: impl Fn(T) -> [u8; N],
) -> std::io::Result<()> {
    for c in values.chunks(1 << 16) {
        let bytes: Vec<u8> = c.iter().flat_map(|&v| le(v)).collect();
        w.write_all(&bytes)?;
    }
    Ok(())
}
