//! `npyz-eval ours|npyz|npyz-npy|ours-npy FILE` loads FILE and prints `ok
//! <summary>` or `err <message>`; `npyz-eval gen DIR` writes the hostile
//! files. See run.sh.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

#[path = "../../../examples/common/problems.rs"]
mod problems;

use l0::io::{RawSparse, SparseStructure};
use npyz::npz::NpzArchive;
use npyz::sparse::Sparse;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, path) = (args[0].as_str(), Path::new(&args[1]));
    if mode == "gen" {
        gen(path);
        return;
    }
    if mode == "write" {
        // As `cargo run --release --example write_problem -- SPEC DIR`.
        let (m, _, _) = problems::load(&args[2]).unwrap();
        std::fs::create_dir_all(path).unwrap();
        l0::io::npz::write_npz_csr(&path.join("M.npz"), &m).unwrap();
        println!("{} x {}, {} nonzeros", m.rows(), m.cols(), m.nnz());
        return;
    }
    let t = Instant::now();
    let result = match mode {
        "ours" => l0::io::read_matrix(path)
            .map_err(|e| e.to_string())
            .map(|m| summary(&m)),
        "npyz" => npyz_matrix(path).map(|m| summary(&m)),
        // npyz's reading alone, without l0's checks or matrix.
        "npyz-raw" => NpzArchive::open(path)
            .and_then(|mut npz| npyz::sparse::Csr::<f32>::from_npz(&mut npz))
            .map_err(|e| e.to_string())
            .map(|c| format!("{:?}, {} nonzeros", c.shape, c.data.len())),
        "ours-npy" => l0::io::npy::read_npy(path)
            .map_err(|e| e.to_string())
            .map(|a| format!("shape {:?} {}", a.shape, a.data.dtype_name())),
        "npyz-npy" => npyz_npy(path),
        _ => panic!("mode"),
    };
    let secs = t.elapsed().as_secs_f64();
    match result {
        Ok(s) => println!("ok {s} ({secs:.2} s)"),
        Err(e) => println!("err {e} ({secs:.2} s)"),
    }
}

fn summary(m: &l0::SparseMatrix) -> String {
    format!(
        "{} x {}, {} nonzeros, fingerprint {:x}",
        m.rows(),
        m.cols(),
        m.nnz(),
        m.fingerprint()
    )
}

/// What adopting npyz for `.npz` would be: npyz reads the members
/// (`Sparse::<f32>::from_npz`, then f64), l0 checks the structure
/// (`RawSparse::validate`) and builds the matrix. For csr and csc the
/// arrays go straight to `from_*_parts` (u32 indices, f32 values), the
/// cheapest route npyz's output allows.
fn npyz_matrix(path: &Path) -> Result<l0::SparseMatrix, String> {
    let mut npz = NpzArchive::open(path).map_err(|e| e.to_string())?;
    let sparse: Sparse<f32> = match Sparse::<f32>::from_npz(&mut npz) {
        Ok(s) => s,
        Err(_) => {
            let mut npz = NpzArchive::open(path).map_err(|e| e.to_string())?;
            match Sparse::<f64>::from_npz(&mut npz).map_err(|e| e.to_string())? {
                Sparse::Csr(c) => Sparse::Csr(npyz::sparse::Csr {
                    data: c.data.iter().map(|&v| v as f32).collect(),
                    shape: c.shape,
                    indices: c.indices,
                    indptr: c.indptr,
                }),
                Sparse::Csc(c) => Sparse::Csc(npyz::sparse::Csc {
                    data: c.data.iter().map(|&v| v as f32).collect(),
                    shape: c.shape,
                    indices: c.indices,
                    indptr: c.indptr,
                }),
                Sparse::Coo(c) => Sparse::Coo(npyz::sparse::Coo {
                    data: c.data.iter().map(|&v| v as f32).collect(),
                    shape: c.shape,
                    row: c.row,
                    col: c.col,
                }),
                _ => return Err("dia/bsr".into()),
            }
        }
    };
    let (rows, cols, structure, data) = match sparse {
        Sparse::Csr(c) => {
            let (rows, cols) = (c.shape[0] as usize, c.shape[1] as usize);
            let indptr: Vec<u64> = c.indptr.iter().map(|&p| p as u64).collect();
            let raw = RawSparse {
                rows,
                cols,
                structure: SparseStructure::Csr {
                    indptr,
                    indices: c.indices,
                },
                data: Vec::new(),
            };
            return finish(path, raw, c.data, false);
        }
        Sparse::Csc(c) => {
            let (rows, cols) = (c.shape[0] as usize, c.shape[1] as usize);
            let indptr: Vec<u64> = c.indptr.iter().map(|&p| p as u64).collect();
            let raw = RawSparse {
                rows,
                cols,
                structure: SparseStructure::Csc {
                    indptr,
                    indices: c.indices,
                },
                data: Vec::new(),
            };
            return finish(path, raw, c.data, true);
        }
        Sparse::Coo(c) => (
            c.shape[0] as usize,
            c.shape[1] as usize,
            SparseStructure::Coo {
                row: c.row,
                col: c.col,
            },
            c.data.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>(),
        ),
        _ => return Err("dia/bsr".into()),
    };
    let raw = RawSparse {
        rows,
        cols,
        structure,
        data,
    };
    raw.validate(path).map_err(|e| e.to_string())?;
    let SparseStructure::Coo { row, col } = &raw.structure else {
        unreachable!()
    };
    l0::SparseMatrix::from_triplets(rows, cols, row, col, &raw.data).map_err(|e| e.to_string())
}

/// Validates csr/csc arrays read by npyz (values as f64 for the check, as
/// l0's general reader does) and builds the matrix from u32 / f32 parts.
fn finish(
    path: &Path,
    mut raw: RawSparse,
    data: Vec<f32>,
    by_column: bool,
) -> Result<l0::SparseMatrix, String> {
    raw.data = data.iter().map(|&v| f64::from(v)).collect();
    raw.validate(path).map_err(|e| e.to_string())?;
    raw.data = Vec::new();
    let (rows, cols) = (raw.rows, raw.cols);
    let (indptr, indices) = match raw.structure {
        SparseStructure::Csr { indptr, indices } | SparseStructure::Csc { indptr, indices } => {
            (indptr, indices)
        }
        SparseStructure::Coo { .. } => unreachable!(),
    };
    let indptr: Vec<usize> = indptr.into_iter().map(|p| p as usize).collect();
    let indices: Vec<u32> = indices.into_iter().map(|i| i as u32).collect();
    if by_column {
        l0::SparseMatrix::from_csc_parts(rows, cols, indptr, indices, data, l0::par::Par::current())
    } else {
        l0::SparseMatrix::from_csr_parts(rows, cols, indptr, indices, data, l0::par::Par::current())
    }
    .map_err(|e| e.to_string())
}

/// A `.npy` through npyz: every numeric dtype l0 accepts, as f64.
fn npyz_npy(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| e.to_string())?;
    let shape = npy.shape().to_vec();
    let descr = npy.dtype().descr();
    macro_rules! try_as {
        ($npy:expr, $($t:ty),*) => {{
            let npy = $npy;
            $(let npy = match npy.try_data::<$t>() {
                Ok(r) => {
                    let v: Vec<$t> = r.collect::<std::io::Result<_>>().map_err(|e| e.to_string())?;
                    return Ok(format!("shape {shape:?} {descr} ({} values)", v.len()));
                }
                Err(npy) => npy,
            };)*
            let _ = npy;
            Err(format!("unsupported dtype {descr}"))
        }};
    }
    try_as!(npy, f64, f32, i64, i32, i16, i8, u64, u32, u16, u8, bool)
}

/// A csr `.npz` of a 2 x 3 matrix whose member `bomb` (deflated) declares
/// `declared` items and holds `body` (the test suite's `npz_with_bomb`).
fn npz_with_bomb(path: &Path, bomb: &str, declared: usize, body: &[u8], index_descr: &str) {
    use zip::write::SimpleFileOptions;
    let f = std::fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let stored = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let deflated = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    let npy = |descr: &str, shape: &str| {
        let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (h.len() + 11) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(h.as_bytes());
        out
    };
    let le = |v: &[i32]| -> Vec<u8> {
        if index_descr == "<u4" || index_descr == "<i4" {
            v.iter().flat_map(|x| x.to_le_bytes()).collect()
        } else {
            v.iter().flat_map(|&x| (x as i16).to_le_bytes()).collect()
        }
    };
    let size = if index_descr == "<i2" { 2 } else { 4 };
    let format = b"csr".to_vec();
    let shape: Vec<u8> = [2i64, 3].iter().flat_map(|v| v.to_le_bytes()).collect();
    let members: [(&str, &str, Vec<u8>, usize); 5] = [
        ("format.npy", "|S3", format, 3),
        ("shape.npy", "<i8", shape, 8),
        ("indptr.npy", index_descr, le(&[0, 1, 2]), size),
        ("indices.npy", index_descr, le(&[0, 1]), size),
        (
            "data.npy",
            "<f4",
            [1.0f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect(),
            4,
        ),
    ];
    for (name, descr, data, item) in members {
        let shape = if name == "format.npy" {
            "()".to_string()
        } else {
            format!("({},)", data.len() / item)
        };
        if name == bomb {
            z.start_file(name, deflated).unwrap();
            z.write_all(&npy(descr, &format!("({declared},)"))).unwrap();
            z.write_all(body).unwrap();
        } else {
            z.start_file(name, stored).unwrap();
            z.write_all(&npy(descr, &shape)).unwrap();
            z.write_all(&data).unwrap();
        }
    }
    z.finish().unwrap();
}

fn npy_with_header(path: &Path, dict: &str, data: &[u8]) {
    let mut header = dict.to_string();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    std::fs::write(path, out).unwrap();
}

fn gen(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let zeros = vec![0u8; 200 << 20];
    // Declares 50M values (disagreeing with indptr): refuse before inflating.
    npz_with_bomb(
        &dir.join("bomb-declared.npz"),
        "data.npy",
        50 << 20,
        &zeros,
        "<i4",
    );
    // Declares the right count, the stream runs on for 200 MB.
    npz_with_bomb(
        &dir.join("bomb-long-data.npz"),
        "data.npy",
        2,
        &zeros,
        "<i4",
    );
    npz_with_bomb(
        &dir.join("bomb-long-indptr.npz"),
        "indptr.npy",
        3,
        &zeros,
        "<i4",
    );
    // A header declaring 2^40 values over a short stream.
    npz_with_bomb(
        &dir.join("huge-declared.npz"),
        "indices.npy",
        1 << 40,
        &[0u8; 64],
        "<i4",
    );
    // Valid files in dtypes scipy can write that l0 accepts.
    npz_with_bomb(&dir.join("u4-indices.npz"), "", 0, &[], "<u4");
    npz_with_bomb(&dir.join("i2-indices.npz"), "", 0, &[], "<i2");
    npy_with_header(
        &dir.join("s0.npy"),
        "{'descr': '|S0', 'fortran_order': False, 'shape': (1000000000000000000,), }",
        b"",
    );
    npy_with_header(
        &dir.join("huge-shape.npy"),
        "{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999, 99999999999), }",
        &[0u8; 8],
    );
    npy_with_header(
        &dir.join("short.npy"),
        "{'descr': '<f8', 'fortran_order': False, 'shape': (4,), }",
        &[0u8; 8],
    );
    npy_with_header(
        &dir.join("long.npy"),
        "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }",
        &[0u8; 16],
    );
}
