//! Sparse matrices saved by `scipy.sparse.save_npz`.
//!
//! The file is a zip archive (deflated by default, stored with
//! `compressed=False`) of `.npy` members: `format` (a 0-d bytes or unicode
//! array: `csr`, `csc` or `coo`), `shape`, then `indptr`, `indices`, `data`
//! for csr and csc, or `row`, `col`, `data` for coo (or a `2 x nnz`
//! `coords` array, which scipy uses for n-D coo arrays and plans to use for
//! 2-D ones). A `_is_array` member (written for sparse arrays as opposed to
//! sparse matrices) is ignored.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;

use zip::ZipArchive;

use super::npy::{
    data_length, npy_header, parse_npy, parse_npy_layout, shape_text, NpyArray, NpyData, NpyLayout,
};
use super::{
    check_indptr, check_indptr_len, check_len, format_error, io_error, write_atomic, RawSparse,
    SparseStructure,
};
use crate::par::Par;
use crate::Result;

/// An opened `.npz` archive, read from the file as members are asked for.
struct Npz<'p> {
    path: &'p Path,
    archive: ZipArchive<BufReader<File>>,
}

impl<'p> Npz<'p> {
    fn open(path: &'p Path) -> Result<Self> {
        let file =
            File::open(path).map_err(|e| io_error(path, format!("cannot read file: {e}")))?;
        let archive = ZipArchive::new(BufReader::new(file))
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
    /// there is no such member. At most what its `.npy` header declares is
    /// held in memory: a longer stream (a deflate bomb behind a small
    /// header) is counted, not kept, and refused.
    fn read(&mut self, name: &str) -> Result<Option<NpyArray>> {
        let Some(layout) = self.layout(name)? else {
            return Ok(None);
        };
        let path = self.path;
        let broken = |e: &dyn std::fmt::Display| broken_member(path, name, e);
        let mut file = self.archive.by_name(name).map_err(|e| broken(&e))?;
        let limit = layout.data_start + layout.nbytes;
        let mut bytes = Vec::new();
        bytes
            .try_reserve_exact(limit)
            .map_err(|_| too_large(path, name, &layout))?;
        (&mut file)
            .take(limit as u64)
            .read_to_end(&mut bytes)
            .map_err(|e| broken(&e))?;
        let extra = std::io::copy(&mut file, &mut std::io::sink()).map_err(|e| broken(&e))?;
        if extra > 0 {
            return Err(longer(path, name, &layout, extra));
        }
        parse_npy(&bytes, path, Some(name)).map(Some)
    }

    /// Reads a member that must be small (format, shape): at most 1 MiB
    /// inflated, whatever its entry claims.
    fn read_small(&mut self, name: &str) -> Result<Option<NpyArray>> {
        if !self.has(name) {
            return Ok(None);
        }
        let path = self.path;
        let file = self
            .archive
            .by_name(name)
            .map_err(|e| broken_member(path, name, &e))?;
        let mut bytes = Vec::new();
        file.take((1 << 20) + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| broken_member(path, name, &e))?;
        if bytes.len() > 1 << 20 {
            return Err(format_error(
                path,
                format!("{name}: more than 1 MiB for a member that holds a few values"),
            ));
        }
        parse_npy(&bytes, path, Some(name)).map(Some)
    }

    fn require(&mut self, name: &str) -> Result<NpyArray> {
        match self.read(name)? {
            Some(a) => Ok(a),
            None => Err(self.missing(name)),
        }
    }

    fn missing(&self, name: &str) -> crate::L0Error {
        format_error(
            self.path,
            format!(
                "member {name} is missing (members: {})",
                self.member_names().join(", ")
            ),
        )
    }

    /// What member `name`'s `.npy` header declares, inflating only the
    /// header; `None` if there is no such member.
    fn layout(&mut self, name: &str) -> Result<Option<NpyLayout>> {
        if !self.has(name) {
            return Ok(None);
        }
        let path = self.path;
        let mut file = self
            .archive
            .by_name(name)
            .map_err(|e| broken_member(path, name, &e))?;
        let mut head = Vec::with_capacity(256);
        // Magic, version and the header length, then the header itself.
        (&mut file)
            .take(12)
            .read_to_end(&mut head)
            .map_err(|e| broken_member(path, name, &e))?;
        let header_len = match head.get(6) {
            Some(1) if head.len() >= 10 => u16::from_le_bytes([head[8], head[9]]) as u64 + 10,
            Some(2 | 3) if head.len() >= 12 => {
                u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as u64 + 12
            }
            _ => 0,
        };
        // Headers are short; a longer claim is read only up to 1 MiB (the
        // parser then reports the truncation).
        let rest = header_len.min(1 << 20).saturating_sub(head.len() as u64);
        (&mut file)
            .take(rest)
            .read_to_end(&mut head)
            .map_err(|e| broken_member(path, name, &e))?;
        parse_npy_layout(&head, path, Some(name)).map(Some)
    }

    fn require_layout(&mut self, name: &str) -> Result<NpyLayout> {
        self.layout(name)?.ok_or_else(|| self.missing(name))
    }
}

/// A member whose data runs `extra` bytes past what its header declares
/// (the message [`parse_npy`] gives for the same bytes).
fn longer(path: &Path, name: &str, layout: &NpyLayout, extra: u64) -> crate::L0Error {
    format_error(
        path,
        format!(
            "{name}: {}",
            data_length(layout.nbytes, layout.nbytes as u64 + extra)
        ),
    )
}

/// A member whose declared shape cannot be held in memory.
fn too_large(path: &Path, name: &str, layout: &NpyLayout) -> crate::L0Error {
    format_error(
        path,
        format!(
            "{name}: shape {} ({} bytes) does not fit in memory",
            shape_text(&layout.shape),
            layout.nbytes
        ),
    )
}

fn broken_member(path: &Path, name: &str, e: &dyn std::fmt::Display) -> crate::L0Error {
    format_error(
        path,
        format!("not a valid .npz (zip) archive: member {name}: {e}"),
    )
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

/// The format name and the shape of a scipy sparse `.npz`.
fn kind_and_shape(npz: &mut Npz) -> Result<(String, usize, usize)> {
    let path = npz.path;
    let Some(format) = npz.read_small("format.npy")? else {
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

    let shape = npz
        .read_small("shape.npy")?
        .ok_or_else(|| npz.missing("shape.npy"))?;
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
    Ok((kind, rows, cols))
}

/// The shape a scipy sparse `.npz` declares (its `shape.npy` member),
/// without reading the arrays.
pub fn npz_shape(path: &Path) -> Result<(usize, usize)> {
    let (_, rows, cols) = kind_and_shape(&mut Npz::open(path)?)?;
    Ok((rows, cols))
}

/// Checks what the large members declare against each other and against
/// the shape before any of them is inflated, with the messages
/// [`RawSparse::validate`] gives for the same arrays: a member whose header
/// claims more entries than the pointers account for (a deflate bomb, a
/// truncated save) is refused at the cost of its header and the pointers.
/// Returns the row or column pointers of a csr or csc matrix.
fn check_declared(npz: &mut Npz, kind: &str, rows: usize, cols: usize) -> Result<Option<Vec<u64>>> {
    let path = npz.path;
    let source = path.display().to_string();
    let data = npz.require_layout("data.npy")?;
    layout_one_d(path, "data.npy", &data)?;
    let nnz = data.count;
    match kind {
        "csr" | "csc" => {
            let (outer, unit, what) = if kind == "csr" {
                (rows, "row", "indices (column indices)")
            } else {
                (cols, "column", "indices (row indices)")
            };
            let ptr = npz.require_layout("indptr.npy")?;
            layout_one_d(path, "indptr.npy", &ptr)?;
            check_indptr_len(path, ptr.count, outer, unit)?;
            let indices = npz.require_layout("indices.npy")?;
            layout_one_d(path, "indices.npy", &indices)?;
            check_len(&source, what, indices.count, nnz)?;
            let indptr = index_vector(path, &npz.require("indptr.npy")?, "indptr")?;
            check_indptr(path, &indptr, outer, unit, nnz)?;
            Ok(Some(indptr))
        }
        "coo" if npz.has("row.npy") => {
            for (member, what) in [
                ("row.npy", "row (row indices)"),
                ("col.npy", "col (column indices)"),
            ] {
                let l = npz.require_layout(member)?;
                layout_one_d(path, member, &l)?;
                check_len(&source, what, l.count, nnz)?;
            }
            Ok(None)
        }
        _ => Ok(None),
    }
}

fn layout_one_d(path: &Path, member: &str, l: &NpyLayout) -> Result<()> {
    if l.shape.len() != 1 {
        return Err(format_error(
            path,
            format!(
                "{member}: expected a 1-D array, got shape {}",
                shape_text(&l.shape)
            ),
        ));
    }
    Ok(())
}

/// Reads a sparse matrix written by `scipy.sparse.save_npz` (csr, csc or
/// coo; compressed or not) and checks its structure with
/// [`RawSparse::validate`]. The members' declared shapes are checked
/// against each other before the large ones are inflated.
pub fn read_npz_sparse(path: &Path) -> Result<RawSparse> {
    let mut npz = Npz::open(path)?;
    let (kind, rows, cols) = kind_and_shape(&mut npz)?;
    check_declared(&mut npz, &kind, rows, cols)?;
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

/// Reads a scipy sparse `.npz` straight into a [`crate::SparseMatrix`].
///
/// For csr and csc members in the common dtypes (int32 / int64 / uint32 /
/// uint64 pointers and indices, float32 / float64 data, little-endian),
/// every large member is inflated in bounded chunks directly into its final
/// type (u32 indices, f32 values), indices and data at the same time on
/// two threads, each value checked as it arrives; canonical arrays (sorted
/// within each row or column, as scipy saves them) become the matrix
/// without a further copy, and the other layout is built by a parallel
/// transpose. Anything else (coo, other dtypes, unsorted entries, a value
/// that fails a check) goes through [`read_npz_sparse`], which names the
/// problem. `par` bounds the threads (the two members and the transpose).
pub fn read_npz_matrix(path: &Path, par: Par) -> Result<crate::SparseMatrix> {
    let mut npz = Npz::open(path)?;
    let (kind, rows, cols) = kind_and_shape(&mut npz)?;
    let indptr = check_declared(&mut npz, &kind, rows, cols)?;
    if let Some(indptr) = indptr {
        let by_column = kind == "csc";
        let bound = if by_column { rows } else { cols };
        let (indices, data) = par.join(
            || read_lean(path, "indices.npy", |descr| index_decoder(descr, bound)),
            || read_lean(path, "data.npy", value_decoder),
        );
        if let (Some(indices), Some(data)) = (indices?, data?) {
            let indptr: Vec<usize> = indptr.into_iter().map(|p| p as usize).collect();
            return if by_column {
                crate::SparseMatrix::from_csc_parts(rows, cols, indptr, indices, data, par)
            } else {
                crate::SparseMatrix::from_csr_parts(rows, cols, indptr, indices, data, par)
            };
        }
    }
    drop(npz);
    super::matrix_from_raw(read_npz_sparse(path)?)
}

/// Converts one little-endian item; `None` for a value the fast path does
/// not take (the general reader then explains it).
type Decoder<T> = fn(&[u8], usize) -> Option<T>;

fn le<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}

/// Indices below `bound` from a signed or unsigned 32- or 64-bit dtype.
fn index_decoder(descr: &str, bound: usize) -> Option<(usize, Decoder<u32>, usize)> {
    let dec: Decoder<u32> = match descr {
        "<i4" => |b, n| {
            u32::try_from(i32::from_le_bytes(le(b)))
                .ok()
                .filter(|&i| (i as usize) < n)
        },
        "<u4" => |b, n| Some(u32::from_le_bytes(le(b))).filter(|&i| (i as usize) < n),
        "<i8" => |b, n| {
            u32::try_from(i64::from_le_bytes(le(b)))
                .ok()
                .filter(|&i| (i as usize) < n)
        },
        "<u8" => |b, n| {
            u32::try_from(u64::from_le_bytes(le(b)))
                .ok()
                .filter(|&i| (i as usize) < n)
        },
        _ => return None,
    };
    let size = if descr.ends_with('4') { 4 } else { 8 };
    Some((size, dec, bound))
}

/// Finite values within the f32 range from float32 or float64.
fn value_decoder(descr: &str) -> Option<(usize, Decoder<f32>, usize)> {
    match descr {
        "<f4" => Some((
            4,
            |b, _| Some(f32::from_le_bytes(le(b))).filter(|v| v.is_finite()),
            0,
        )),
        "<f8" => Some((
            8,
            |b, _| Some(f64::from_le_bytes(le(b)) as f32).filter(|v| v.is_finite()),
            0,
        )),
        _ => None,
    }
}

/// Inflates member `name` of the archive at `path` in bounded chunks into
/// its final type with the decoder `pick` chooses for its dtype. `Ok(None)`:
/// a dtype or a value the fast path does not take. A member whose data is
/// shorter or longer than its header declares is an error (the same as
/// [`parse_npy`]'s), found without holding more than a chunk of it.
fn read_lean<T>(
    path: &Path,
    name: &str,
    pick: impl Fn(&str) -> Option<(usize, Decoder<T>, usize)>,
) -> Result<Option<Vec<T>>> {
    let mut npz = Npz::open(path)?;
    let layout = npz.require_layout(name)?;
    let Some((size, decode, arg)) = pick(&layout.descr) else {
        return Ok(None);
    };
    let broken = |e: &dyn std::fmt::Display| broken_member(path, name, e);
    let mut file = npz.archive.by_name(name).map_err(|e| broken(&e))?;
    std::io::copy(
        &mut (&mut file).take(layout.data_start as u64),
        &mut std::io::sink(),
    )
    .map_err(|e| broken(&e))?;
    let mut out = Vec::new();
    out.try_reserve_exact(layout.count)
        .map_err(|_| too_large(path, name, &layout))?;
    let mut buf = vec![0u8; size << 16];
    let mut left = layout.nbytes;
    while left > 0 {
        let want = left.min(buf.len());
        let got = fill(&mut file, &mut buf[..want]).map_err(|e| broken(&e))?;
        if got < want {
            return Err(format_error(
                path,
                format!(
                    "{name}: {}",
                    data_length(layout.nbytes, (layout.nbytes - left + got) as u64)
                ),
            ));
        }
        for item in buf[..want].chunks_exact(size) {
            match decode(item, arg) {
                Some(v) => out.push(v),
                None => return Ok(None),
            }
        }
        left -= want;
    }
    let extra = std::io::copy(&mut file, &mut std::io::sink()).map_err(|e| broken(&e))?;
    if extra > 0 {
        return Err(longer(path, name, &layout, extra));
    }
    Ok(Some(out))
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
