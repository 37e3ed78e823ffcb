//! The `io` readers and writers against files written by the real numpy
//! 2.4.6 / scipy 1.17.1 (tests/data/make_fixtures.py wrote them; the values
//! below are the ones that script used), plus every error path.

use std::fs;
use std::path::{Path, PathBuf};

use l0::io::csv::{read_f64_column, read_names, write_csv};
use l0::io::mtx::read_mtx;
use l0::io::npy::{read_npy, write_npy_f64, write_npy_i64, NpyData};
use l0::io::npz::{read_npz_member, read_npz_sparse};
use l0::io::{read_sparse, read_vector, RawSparse, SparseStructure};
use l0::L0Error;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("data")
        .join(name)
}

/// A fresh scratch directory for one test.
fn scratch(test: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("io_formats-{test}"));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// Writes `contents` to `dir/name` and returns the path.
fn file(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, contents).unwrap();
    p
}

fn err_text<T: std::fmt::Debug>(r: l0::Result<T>) -> String {
    r.unwrap_err().to_string()
}

// The 3 x 4 matrix of make_fixtures.py:
//   [[1.5, 0,   0,    -2.0],
//    [0,   0,   3.25,  0  ],
//    [0,   4.0, 0,     0.5]]
const CSR_INDPTR: [u64; 4] = [0, 2, 3, 5];
const CSR_INDICES: [u64; 5] = [0, 3, 2, 1, 3];
const CSR_DATA: [f64; 5] = [1.5, -2.0, 3.25, 4.0, 0.5];

fn expected_csr() -> RawSparse {
    RawSparse {
        rows: 3,
        cols: 4,
        structure: SparseStructure::Csr {
            indptr: CSR_INDPTR.to_vec(),
            indices: CSR_INDICES.to_vec(),
        },
        data: CSR_DATA.to_vec(),
    }
}

fn expected_coo() -> RawSparse {
    RawSparse {
        rows: 3,
        cols: 4,
        structure: SparseStructure::Coo {
            row: vec![0, 0, 1, 2, 2],
            col: vec![0, 3, 2, 1, 3],
        },
        data: CSR_DATA.to_vec(),
    }
}

#[test]
fn npz_csr_compressed() {
    let m = read_npz_sparse(&data("csr_compressed.npz")).unwrap();
    assert_eq!(m, expected_csr());
    assert_eq!(m.nnz(), 5);
    assert_eq!(m.to_csr(), expected_csr());
}

#[test]
fn npz_coo_uncompressed() {
    let m = read_npz_sparse(&data("coo_uncompressed.npz")).unwrap();
    assert_eq!(m, expected_coo());
    assert_eq!(m.to_csr(), expected_csr());
}

#[test]
fn npz_csc_array() {
    let m = read_npz_sparse(&data("csc_array.npz")).unwrap();
    assert_eq!(
        m,
        RawSparse {
            rows: 3,
            cols: 4,
            structure: SparseStructure::Csc {
                indptr: vec![0, 1, 2, 3, 5],
                indices: vec![0, 2, 1, 0, 2],
            },
            data: vec![1.5, 4.0, 3.25, -2.0, 0.5],
        }
    );
    assert_eq!(m.to_csr(), expected_csr());
    assert_eq!(
        m.triplets(),
        vec![
            (0, 0, 1.5),
            (2, 1, 4.0),
            (1, 2, 3.25),
            (0, 3, -2.0),
            (2, 3, 0.5)
        ]
    );
}

#[test]
fn npz_old_unicode_format_and_coords() {
    // Older scipy stored `format` as a 0-d '<U3' array.
    assert_eq!(
        read_npz_sparse(&data("csr_unicode_format.npz")).unwrap(),
        expected_csr()
    );
    let format = read_npz_member(&data("csr_unicode_format.npz"), "format").unwrap();
    assert_eq!(format.descr, "<U3");
    assert_eq!(format.shape, Vec::<usize>::new());
    assert_eq!(format.data, NpyData::Str(vec!["csr".to_string()]));
    // A 2 x nnz `coords` member instead of row / col.
    assert_eq!(
        read_npz_sparse(&data("coo_coords.npz")).unwrap(),
        expected_coo()
    );
}

#[test]
fn npz_member_access() {
    let shape = read_npz_member(&data("csr_compressed.npz"), "shape.npy").unwrap();
    assert_eq!(shape.data, NpyData::I64(vec![3, 4]));
    assert_eq!(shape.member.as_deref(), Some("shape.npy"));
    let format = read_npz_member(&data("csr_compressed.npz"), "format").unwrap();
    assert_eq!(format.descr, "|S3");
    assert_eq!(format.data, NpyData::Str(vec!["csr".to_string()]));
    let p = data("csr_compressed.npz");
    assert_eq!(
        err_text(read_npz_member(&p, "row")),
        format!(
            "{}: member row.npy is missing (members: indices.npy, indptr.npy, format.npy, \
             shape.npy, data.npy)",
            p.display()
        )
    );
}

#[test]
fn npz_structure_errors() {
    let p = data("bad_indptr_len.npz");
    let e = read_npz_sparse(&p).unwrap_err();
    assert!(matches!(e, L0Error::Shape { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "shape mismatch: {}: indptr (row pointers, one per row plus one): expected 4, got 3",
            p.display()
        )
    );

    let p = data("bad_index.npz");
    let e = read_npz_sparse(&p).unwrap_err();
    assert!(matches!(e, L0Error::IndexOutOfRange { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "index out of range in {}: indices (column indices): 4 at position 1, but the bound is 4",
            p.display()
        )
    );

    let p = data("nan_data.npz");
    let e = read_npz_sparse(&p).unwrap_err();
    assert!(matches!(e, L0Error::NonFinite { index: 2, .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("non-finite value in {}: data at index 2: NaN", p.display())
    );

    let p = data("dense_arrays.npz");
    assert_eq!(
        err_text(read_npz_sparse(&p)),
        format!(
            "{}: not a sparse matrix written by scipy.sparse.save_npz: no format.npy member \
             (members: a.npy, b.npy)",
            p.display()
        )
    );
}

#[test]
fn npz_truncated_or_corrupt() {
    let dir = scratch("npz_truncated");
    let bytes = fs::read(data("csr_compressed.npz")).unwrap();

    // Cut in half: the central directory at the end is gone.
    let p = file(&dir, "half.npz", &bytes[..bytes.len() / 2]);
    let e = read_npz_sparse(&p).unwrap_err();
    assert!(matches!(e, L0Error::Format { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "{}: not a valid .npz (zip) archive: invalid Zip archive: Could not find EOCD",
            p.display()
        )
    );

    // Not a zip at all.
    let p = file(&dir, "text.npz", "hello");
    assert!(err_text(read_npz_sparse(&p)).starts_with(&format!(
        "{}: not a valid .npz (zip) archive: ",
        p.display()
    )));

    // Corrupt deflated data inside an intact archive: the CRC or the
    // inflater catches it, and the message names the member.
    let mut corrupt = bytes.clone();
    let name_at = corrupt
        .windows(8)
        .position(|w| w == b"data.npy")
        .expect("a local header for data.npy");
    let extra_len = u16::from_le_bytes([corrupt[name_at - 2], corrupt[name_at - 1]]) as usize;
    let data_at = name_at + 8 + extra_len;
    for b in &mut corrupt[data_at + 4..data_at + 24] {
        *b ^= 0x5a;
    }
    let p = file(&dir, "corrupt.npz", &corrupt);
    let msg = err_text(read_npz_sparse(&p));
    assert!(
        msg.starts_with(&format!(
            "{}: not a valid .npz (zip) archive: member data.npy: ",
            p.display()
        )),
        "{msg}"
    );

    // A missing path is an I/O error.
    let p = dir.join("absent.npz");
    let e = read_npz_sparse(&p).unwrap_err();
    assert!(matches!(e, L0Error::Io { .. }), "{e:?}");
    assert!(e
        .to_string()
        .starts_with(&format!("{}: cannot read file: ", p.display())));
}

#[test]
fn npy_fixtures() {
    let a = read_npy(&data("f8.npy")).unwrap();
    assert_eq!(a.shape, vec![5]);
    assert_eq!(a.descr, "<f8");
    assert_eq!(a.data, NpyData::F64(vec![0.5, -1.25, 3.0e10, 0.0, 1e-300]));

    let a = read_npy(&data("i8.npy")).unwrap();
    assert_eq!(a.data, NpyData::I64(vec![0, 7, -3, 1 << 40]));
    assert_eq!(
        a.to_f64_vec("x").unwrap(),
        vec![0.0, 7.0, -3.0, 1_099_511_627_776.0]
    );

    let a = read_npy(&data("f4_2d.npy")).unwrap();
    assert_eq!(a.shape, vec![2, 3]);
    assert_eq!(a.data, NpyData::F32(vec![1.0, 2.5, 0.0, -4.0, 0.0, 6.25]));

    // Fortran order comes back row-major, as numpy.load shows it.
    let a = read_npy(&data("f8_fortran_2d.npy")).unwrap();
    assert_eq!(a.shape, vec![2, 3]);
    assert_eq!(a.data, NpyData::F64(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));

    let a = read_npy(&data("bool.npy")).unwrap();
    assert_eq!(a.data, NpyData::Bool(vec![true, false, true]));
    let a = read_npy(&data("u1.npy")).unwrap();
    assert_eq!(a.data, NpyData::U8(vec![0, 255, 3]));
    assert_eq!(a.to_index_vec("idx").unwrap(), vec![0, 255, 3]);

    // Version 2.0 big-endian float64 and version 3.0 big-endian int16.
    let a = read_npy(&data("f8_be_v2.npy")).unwrap();
    assert_eq!(a.descr, ">f8");
    assert_eq!(a.data, NpyData::F64(vec![1.0, -2.5, 1e100]));
    let a = read_npy(&data("i2_be_v3.npy")).unwrap();
    assert_eq!(a.data, NpyData::I16(vec![-1, 2, 300]));
}

#[test]
fn npy_errors() {
    let p = data("object.npy");
    assert_eq!(
        err_text(read_npy(&p)),
        format!(
            "{}: object arrays (Python pickles) are not supported; save a numeric array, \
             e.g. arr.astype(np.float64)",
            p.display()
        )
    );

    let dir = scratch("npy_errors");
    let bytes = fs::read(data("f8.npy")).unwrap();
    let p = file(&dir, "short.npy", &bytes[..bytes.len() - 3]);
    let e = read_npy(&p).unwrap_err();
    assert!(matches!(e, L0Error::Format { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("{}: expected 40 bytes of data, file has 37", p.display())
    );
    let p = file(&dir, "long.npy", [&bytes[..], &[0u8; 8]].concat());
    assert_eq!(
        err_text(read_npy(&p)),
        format!("{}: expected 40 bytes of data, file has 48", p.display())
    );

    // Wrong dtype for indices.
    let p = data("f8.npy");
    assert_eq!(
        err_text(read_npy(&p).unwrap().to_index_vec("row indices")),
        format!(
            "{}: row indices: expected integer indices, got float64 values (dtype '<f8')",
            p.display()
        )
    );
    let p = data("i8.npy");
    assert_eq!(
        err_text(read_npy(&p).unwrap().to_index_vec("row indices")),
        format!(
            "{}: row indices: negative index -3 at position 2",
            p.display()
        )
    );
}

#[test]
fn npy_writers_match_numpy_byte_for_byte() {
    let dir = scratch("npy_writers");
    let p = dir.join("f8.npy");
    write_npy_f64(&p, &[0.5, -1.25, 3.0e10, 0.0, 1e-300]).unwrap();
    assert_eq!(fs::read(&p).unwrap(), fs::read(data("f8.npy")).unwrap());
    let p = dir.join("i8.npy");
    write_npy_i64(&p, &[0, 7, -3, 1 << 40]).unwrap();
    assert_eq!(fs::read(&p).unwrap(), fs::read(data("i8.npy")).unwrap());

    // Round trips, including empty and long arrays; no temporary file stays.
    for values in [vec![], (0..1000).map(|i| i as f64 * 0.1 - 7.0).collect()] {
        let p = dir.join("rt.npy");
        write_npy_f64(&p, &values).unwrap();
        assert_eq!(read_npy(&p).unwrap().data, NpyData::F64(values.clone()));
        assert_eq!(read_vector(&p, "weights").unwrap(), values);
    }
    // A 2-D row-major matrix reads back with its shape and as a matrix.
    let p = dir.join("m2.npy");
    l0::io::npy::write_npy_f64_shaped(&p, &[2, 3], &[1.0, 0.0, 2.0, 0.0, 3.0, 0.0]).unwrap();
    let a = read_npy(&p).unwrap();
    assert_eq!(a.shape, vec![2, 3]);
    assert_eq!(a.data, NpyData::F64(vec![1.0, 0.0, 2.0, 0.0, 3.0, 0.0]));
    let m = read_sparse(&p).unwrap();
    assert_eq!(
        (m.rows, m.cols, m.data.clone()),
        (2, 3, vec![1.0, 2.0, 3.0])
    );
    fs::remove_file(&p).unwrap();
    assert_eq!(
        err_text(l0::io::npy::write_npy_f64_shaped(&p, &[2, 2], &[1.0])),
        "shape mismatch: values for a .npy of shape (2, 2): expected 4, got 1"
    );
    let p = dir.join("big.npy");
    let ints: Vec<i64> = vec![i64::MIN, -1, 0, i64::MAX];
    write_npy_i64(&p, &ints).unwrap();
    assert_eq!(read_npy(&p).unwrap().data, NpyData::I64(ints));
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["big.npy", "f8.npy", "i8.npy", "rt.npy"]);

    // Writing into a missing directory is an I/O error naming the file.
    let p = dir.join("missing").join("x.npy");
    let e = write_npy_f64(&p, &[1.0]).unwrap_err();
    assert!(matches!(e, L0Error::Io { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "{}: cannot create temporary file {}{}-",
            p.display(),
            dir.join("missing").join(".x.npy.tmp-").display(),
            std::process::id()
        )),
        "{msg}"
    );
}

#[test]
fn mtx_fixtures() {
    assert_eq!(read_mtx(&data("matrix.mtx")).unwrap(), expected_coo());
    let s = read_mtx(&data("symmetric.mtx")).unwrap();
    assert_eq!(
        s,
        RawSparse {
            rows: 3,
            cols: 3,
            structure: SparseStructure::Coo {
                row: vec![0, 1, 2, 0],
                col: vec![0, 1, 0, 2],
            },
            data: vec![2.0, 3.0, 1.0, 1.0],
        }
    );
    // Dense `array` layout, column-major; only nonzeros are kept.
    let d = read_mtx(&data("dense.mtx")).unwrap();
    assert_eq!(
        d.to_csr(),
        RawSparse {
            rows: 2,
            cols: 2,
            structure: SparseStructure::Csr {
                indptr: vec![0, 2, 3],
                indices: vec![0, 1, 1],
            },
            data: vec![1.0, 2.0, 4.0],
        }
    );
}

#[test]
fn mtx_variants() {
    let dir = scratch("mtx_variants");
    let p = file(
        &dir,
        "pattern.mtx",
        "%%MatrixMarket matrix coordinate pattern general\n% c\n\n2 3 2\n1 3\n2 1\n",
    );
    assert_eq!(
        read_mtx(&p).unwrap().triplets(),
        vec![(0, 2, 1.0), (1, 0, 1.0)]
    );
    let p = file(
        &dir,
        "skew.mtx",
        "%%MatrixMarket MATRIX Coordinate Integer Skew-Symmetric\r\n2 2 1\r\n2 1 5\r\n",
    );
    assert_eq!(
        read_mtx(&p).unwrap().triplets(),
        vec![(1, 0, 5.0), (0, 1, -5.0)]
    );
    let p = file(
        &dir,
        "dense_sym.mtx",
        "%%MatrixMarket matrix array real symmetric\n2 2\n1\n7\n0\n",
    );
    assert_eq!(
        read_mtx(&p).unwrap().to_csr().triplets(),
        vec![(0, 0, 1.0), (0, 1, 7.0), (1, 0, 7.0)]
    );
}

#[test]
fn mtx_errors() {
    let dir = scratch("mtx_errors");
    let check = |name: &str, text: &str, msg: &str| {
        let p = file(&dir, name, text);
        let e = read_mtx(&p).unwrap_err();
        assert_eq!(e.to_string(), format!("{}: {msg}", p.display()), "{name}");
    };
    check(
        "range.mtx",
        "%%MatrixMarket matrix coordinate real general\n%\n% comments\n10 10 4\n1 1 1\n2 2 2\n12 3 3\n4 4 4\n",
        "line 7: row index 12 out of range 1..=10",
    );
    check(
        "col0.mtx",
        "%%MatrixMarket matrix coordinate real general\n3 3 1\n1 0 1\n",
        "line 3: column index 0 out of range 1..=3",
    );
    check(
        "short.mtx",
        "%%MatrixMarket matrix coordinate real general\n3 3 3\n1 1 1\n2 2 2\n",
        "the file ends after 2 of the 3 entries declared on line 2",
    );
    check(
        "long.mtx",
        "%%MatrixMarket matrix coordinate real general\n3 3 1\n1 1 1\n2 2 2\n",
        "line 4: more entries than the 1 declared on line 2",
    );
    check(
        "value.mtx",
        "%%MatrixMarket matrix coordinate real general\n3 3 1\n1 1 x\n",
        "line 3: cannot parse value 'x' as a number",
    );
    check(
        "fields.mtx",
        "%%MatrixMarket matrix coordinate real general\n3 3 1\n1 1\n",
        "line 3: expected 3 fields (row col value), got 2",
    );
    check(
        "banner.mtx",
        "3 3 1\n1 1 1\n",
        "line 1: not a Matrix Market file (the first line must start with %%MatrixMarket)",
    );
    check(
        "complex.mtx",
        "%%MatrixMarket matrix coordinate complex general\n",
        "line 1: field 'complex' is not supported (expected real, integer or pattern)",
    );
    check(
        "square.mtx",
        "%%MatrixMarket matrix coordinate real symmetric\n2 3 0\n",
        "line 2: a symmetric matrix must be square, but it is 2 x 3",
    );
    check(
        "size.mtx",
        "%%MatrixMarket matrix coordinate real general\n3 3\n",
        "line 2: expected 'rows cols entries' on the size line, got '3 3'",
    );
    check(
        "dense_short.mtx",
        "%%MatrixMarket matrix array real general\n2 2\n1\n2\n3\n",
        "the file ends after 3 values; the 2 x 2 matrix declared on line 2 needs more",
    );
    let p = file(
        &dir,
        "nan.mtx",
        "%%MatrixMarket matrix coordinate real general\n3 3 2\n1 1 1\n2 2 nan\n",
    );
    let e = read_mtx(&p).unwrap_err();
    assert!(matches!(e, L0Error::NonFinite { index: 1, .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("non-finite value in {} line 4 at index 1: NaN", p.display())
    );
}

#[test]
fn read_sparse_dispatch() {
    assert_eq!(
        read_sparse(&data("csr_compressed.npz")).unwrap(),
        expected_csr()
    );
    assert_eq!(read_sparse(&data("matrix.mtx")).unwrap(), expected_coo());
    // A dense 2-D .npy becomes CSR of its nonzeros.
    assert_eq!(
        read_sparse(&data("f4_2d.npy")).unwrap(),
        RawSparse {
            rows: 2,
            cols: 3,
            structure: SparseStructure::Csr {
                indptr: vec![0, 2, 4],
                indices: vec![0, 1, 0, 2],
            },
            data: vec![1.0, 2.5, -4.0, 6.25],
        }
    );
    let p = data("f8.npy");
    assert_eq!(
        err_text(read_sparse(&p)),
        format!(
            "{}: expected a 2-D array for a matrix, got shape (5,)",
            p.display()
        )
    );
    let p = Path::new("design.parquet");
    assert_eq!(
        err_text(read_sparse(p)),
        "design.parquet: cannot read matrix: unknown file type (extension .parquet); \
         expected .npz, .mtx or .npy"
    );
}

#[test]
fn read_vector_dispatch() {
    assert_eq!(
        read_vector(&data("f8.npy"), "targets").unwrap(),
        vec![0.5, -1.25, 3.0e10, 0.0, 1e-300]
    );
    assert_eq!(
        read_vector(&data("f8_column.npy"), "targets").unwrap(),
        vec![1.0, 2.0, 3.0]
    );
    let p = data("f4_2d.npy");
    assert_eq!(
        err_text(read_vector(&p, "targets")),
        format!(
            "{}: targets: expected a 1-D array or a single column, got shape (2, 3)",
            p.display()
        )
    );
    let p = data("object.npy");
    assert!(err_text(read_vector(&p, "targets")).contains("object arrays (Python pickles)"));
    assert_eq!(
        err_text(read_vector(Path::new("targets"), "targets")),
        "targets: cannot read targets: unknown file type (no extension); expected .npy or .csv"
    );
    assert_eq!(
        err_text(read_vector(Path::new("t.xlsx"), "targets")),
        "t.xlsx: cannot read targets: unknown file type (extension .xlsx); expected .npy or .csv"
    );

    let dir = scratch("read_vector");
    let p = file(&dir, "t.CSV", "target\n1.5\n-2\n\"3e2\"\n\n");
    assert_eq!(read_vector(&p, "targets").unwrap(), vec![1.5, -2.0, 300.0]);
    let p = file(&dir, "nan.csv", "1\nNaN\n");
    let e = read_vector(&p, "targets").unwrap_err();
    assert!(matches!(e, L0Error::NonFinite { index: 1, .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "non-finite value in targets ({}) at index 1: NaN",
            p.display()
        )
    );
}

#[test]
fn csv_numeric_column() {
    let dir = scratch("csv_numeric");
    let p = file(&dir, "bom.csv", "\u{feff}0.25\r\n1e-3\r\n-7\r\n");
    assert_eq!(read_f64_column(&p).unwrap(), vec![0.25, 1e-3, -7.0]);
    let p = file(&dir, "empty.csv", "");
    assert_eq!(read_f64_column(&p).unwrap(), Vec::<f64>::new());

    let check = |name: &str, text: &str, msg: &str| {
        let p = file(&dir, name, text);
        let e = read_f64_column(&p).unwrap_err();
        assert!(matches!(e, L0Error::Format { .. }), "{e:?}");
        assert_eq!(e.to_string(), format!("{}: {msg}", p.display()), "{name}");
    };
    check(
        "two.csv",
        ",weight\n0,1.5\n",
        "line 1: expected one column, found 2 (write a single column, e.g. pandas \
         to_csv(index=False))",
    );
    check(
        "word.csv",
        "w\n1\nabc\n",
        "line 3: cannot parse 'abc' as a number",
    );
    check(
        "gap.csv",
        "w\n1\n\n2\n",
        "line 3: empty line (a missing value?)",
    );
    check("quote.csv", "\"1\n", "line 1: unterminated quoted field");
}

#[test]
fn csv_names_and_writer() {
    let dir = scratch("csv_names");
    let p = file(
        &dir,
        "names.csv",
        "age_18_24\n\n\"income, top decile\"\n  region \"N\" \n\"say \"\"hi\"\"\"\r\n",
    );
    assert_eq!(
        read_names(&p).unwrap(),
        vec![
            "age_18_24",
            "income, top decile",
            "region \"N\"",
            "say \"hi\""
        ]
    );
    let p = file(&dir, "comma.csv", "a\nb,c\n");
    assert_eq!(
        err_text(read_names(&p)),
        format!(
            "{}: line 2: expected one column, found 2 (quote names that contain commas)",
            p.display()
        )
    );

    // Writer round trip through both readers.
    let names = ["plain", "with, comma", "with \"quotes\"", " padded "];
    let p = dir.join("out.csv");
    write_csv(&p, &["name"], names.iter().map(|n| vec![n.to_string()])).unwrap();
    assert_eq!(
        fs::read_to_string(&p).unwrap(),
        "name\nplain\n\"with, comma\"\n\"with \"\"quotes\"\"\"\n\" padded \"\n"
    );
    let mut back = read_names(&p).unwrap();
    assert_eq!(back.remove(0), "name");
    assert_eq!(back, names);

    let values = [0.1, -2.5e-300, 1e21, 3.0];
    let p = dir.join("values.csv");
    write_csv(&p, &["w"], values.iter().map(|v| vec![format!("{v:?}")])).unwrap();
    assert_eq!(read_f64_column(&p).unwrap(), values);

    let p = dir.join("table.csv");
    write_csv(
        &p,
        &["unit", "weight"],
        vec![
            vec!["1".into(), "0.5".into()],
            vec!["2".into(), "1.5".into()],
        ],
    )
    .unwrap();
    assert_eq!(
        fs::read_to_string(&p).unwrap(),
        "unit,weight\n1,0.5\n2,1.5\n"
    );

    // A ragged row fails before anything replaces the old file.
    let e = write_csv(
        &p,
        &["unit", "weight"],
        vec![vec!["1".into(), "0.5".into()], vec!["2".into()]],
    )
    .unwrap_err();
    assert!(matches!(e, L0Error::Shape { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "shape mismatch: {}: fields in row 2 (one per header column): expected 2, got 1",
            p.display()
        )
    );
    assert_eq!(
        fs::read_to_string(&p).unwrap(),
        "unit,weight\n1,0.5\n2,1.5\n"
    );
    let mut left: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "comma.csv",
            "names.csv",
            "out.csv",
            "table.csv",
            "values.csv"
        ]
    );
}

/// A version-1.0 .npy file with the given header dictionary and data bytes.
fn npy_with_header(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut header = dict.to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn hostile_headers_are_refused_without_allocating() {
    let dir = scratch("hostile_headers");
    // Zero-sized items: a huge count would pass a bytes check.
    let p = file(
        &dir,
        "s0.npy",
        npy_with_header(
            "{'descr': '|S0', 'fortran_order': False, 'shape': (1000000000000000000,), }",
            b"",
        ),
    );
    assert_eq!(
        err_text(read_npy(&p)),
        format!(
            "{}: zero-sized items with shape (1000000000000000000,): nothing to read",
            p.display()
        )
    );
    // A dense matrix with a zero-width dimension.
    let p = file(
        &dir,
        "wide.npy",
        npy_with_header(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2000000000000000000, 0), }",
            b"",
        ),
    );
    assert_eq!(
        err_text(read_sparse(&p)),
        format!(
            "{}: a matrix needs between 1 and 2^32 - 1 rows and columns, got 2000000000000000000 x 0",
            p.display()
        )
    );
}

#[test]
fn write_npz_csr_reads_back_as_the_same_matrix() {
    let dir = scratch("npz-write");
    let m = l0::SparseMatrix::from_triplets(
        3,
        4,
        &[0, 2, 2, 1],
        &[3, 0, 1, 1],
        &[1.5, -2.0, 3.25, 4.0],
    )
    .unwrap();
    let path = dir.join("m.npz");
    l0::io::npz::write_npz_csr(&path, &m).unwrap();
    let back = l0::io::read_matrix(&path).unwrap();
    assert_eq!(back.fingerprint(), m.fingerprint());
    assert_eq!(
        back.mul_vec(&[1.0, 10.0, 100.0, 1000.0]).unwrap(),
        vec![1500.0, 40.0, 30.5]
    );
    let format = read_npz_member(&path, "format").unwrap();
    assert_eq!(format.data, NpyData::Str(vec!["csr".into()]));
}

/// `io::read_matrix` reads `.npz` files straight into the final types; it
/// builds the same matrix as the general reader and fails with the same
/// messages.
#[test]
fn npz_fast_reader_agrees_with_the_general_one() {
    for name in [
        "csr_compressed.npz",
        "coo_uncompressed.npz",
        "csc_array.npz",
        "csr_unicode_format.npz",
        "coo_coords.npz",
    ] {
        let p = data(name);
        let raw = read_sparse(&p).unwrap();
        let SparseStructure::Csr { indptr, indices } = raw.to_csr().structure else {
            panic!("to_csr gives csr");
        };
        let want =
            l0::SparseMatrix::from_csr(raw.rows, raw.cols, &indptr, &indices, &raw.to_csr().data)
                .unwrap();
        let got = l0::io::read_matrix(&p).unwrap();
        assert_eq!(got.fingerprint(), want.fingerprint(), "{name}");
        assert_eq!(got.csc(), want.csc(), "{name}");
    }
    for name in [
        "bad_indptr_len.npz",
        "bad_index.npz",
        "nan_data.npz",
        "dense_arrays.npz",
    ] {
        let p = data(name);
        assert_eq!(
            err_text(l0::io::read_matrix(&p)),
            err_text(read_npz_sparse(&p)),
            "{name}"
        );
    }
}

/// A csr `.npz` of a 2 x 3 matrix with two entries whose member `bomb`
/// (deflated) has a header declaring `declared` items of its dtype and then
/// `body` as its data; the other members are right.
fn npz_with_bomb(path: &Path, bomb: &str, declared: usize, body: &[u8]) {
    use std::io::Write;
    use zip::write::SimpleFileOptions;
    let f = fs::File::create(path).unwrap();
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
    let le = |v: &[i32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let format = [b'c', 0, 0, 0, b's', 0, 0, 0, b'r', 0, 0, 0];
    let shape: Vec<u8> = [2i64, 3].iter().flat_map(|v| v.to_le_bytes()).collect();
    let members: [(&str, &str, Vec<u8>); 5] = [
        ("format.npy", "<U3", format.to_vec()),
        ("shape.npy", "<i8", shape),
        ("indptr.npy", "<i4", le(&[0, 1, 2])),
        ("indices.npy", "<i4", le(&[0, 1])),
        (
            "data.npy",
            "<f4",
            [1.0f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
    ];
    for (name, descr, data) in members {
        let len = data.len() / if descr == "<i8" { 8 } else { 4 };
        let shape = if name == "format.npy" {
            "()".to_string()
        } else {
            format!("({len},)")
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

/// Deflate bombs: a member inflating to 200 MB of zeros from a file of
/// under 1 MB. When its header declares that length (disagreeing with the
/// pointers) it is refused from the declared shapes before it is inflated;
/// when its header declares the right length and the stream runs on, it is
/// refused while streaming, holding one chunk of it, by the fast and the
/// general reader alike.
#[test]
fn npz_deflate_bombs_are_refused_without_holding_them() {
    let dir = scratch("npz_bomb");
    let zeros = vec![0u8; 200 << 20];
    let p = dir.join("bomb.npz");
    npz_with_bomb(&p, "data.npy", 50 << 20, &zeros);
    assert!(fs::metadata(&p).unwrap().len() < 1 << 20);
    let want = format!(
        "shape mismatch: {}: indices (column indices), one per stored value in data: \
         expected 52428800, got 2",
        p.display()
    );
    assert_eq!(err_text(l0::io::read_matrix(&p)), want);
    assert_eq!(err_text(read_npz_sparse(&p)), want);

    for (member, declared, bytes) in [("data.npy", 2, 8), ("indptr.npy", 3, 12)] {
        let p = dir.join(format!("long-{member}.npz"));
        npz_with_bomb(&p, member, declared, &zeros);
        let want = format!(
            "{}: {member}: expected {bytes} bytes of data, file has 209715200",
            p.display()
        );
        assert_eq!(err_text(l0::io::read_matrix(&p)), want, "{member}");
        assert_eq!(err_text(read_npz_sparse(&p)), want, "{member}");
    }
}

#[test]
fn matrix_shape_reads_headers_only() {
    use l0::io::matrix_shape;
    for name in [
        "csr_compressed.npz",
        "coo_uncompressed.npz",
        "csc_array.npz",
    ] {
        assert_eq!(matrix_shape(&data(name)), Some((3, 4)), "{name}");
    }
    assert_eq!(matrix_shape(&data("matrix.mtx")), Some((3, 4)));
    assert_eq!(matrix_shape(&data("dense.mtx")), Some((2, 2)));
    assert_eq!(matrix_shape(&data("f4_2d.npy")), Some((2, 3)));
    // A header that promises more than the file holds still tells its
    // shape; what cannot tell gives None (the full read says why).
    let dir = scratch("matrix_shape");
    let huge = file(
        &dir,
        "huge.mtx",
        "%%MatrixMarket matrix coordinate real general\n% comment\n3 4000000000 5\n1 1 1.0\n",
    );
    assert_eq!(matrix_shape(&huge), Some((3, 4_000_000_000)));
    assert_eq!(matrix_shape(&data("f8.npy")), None);
    assert_eq!(matrix_shape(&file(&dir, "x.mtx", "not a matrix\n")), None);
    assert_eq!(matrix_shape(&dir.join("missing.npz")), None);
}
