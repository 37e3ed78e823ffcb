//! NumPy `.npy` files.
//!
//! Reads format versions 1.0, 2.0 and 3.0 in either byte order, with dtypes
//! `f8 f4 i8 i4 i2 i1 u8 u4 u2 u1 b1` and the string dtypes `S<n>` / `U<n>`
//! (for the 0-d `format.npy` member scipy writes into `.npz` files).
//! Arrays may be 0-D, 1-D or 2-D; a 2-D array stored in Fortran order is
//! transposed into row-major (C) order, as `numpy.load` presents it.
//! Object arrays (Python pickles) and structured dtypes are refused.
//!
//! Writes 1-D `<f8` and `<i8` arrays byte for byte as `numpy.save` does,
//! atomically (see [`super::write_atomic`]).

use std::path::{Path, PathBuf};

use super::{format_error, read_file, write_atomic};
use crate::{L0Error, Result};

/// The values of an `.npy` array, in the dtype the file stores them in,
/// row-major (C order).
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    /// `f8`.
    F64(Vec<f64>),
    /// `f4`.
    F32(Vec<f32>),
    /// `i8`.
    I64(Vec<i64>),
    /// `i4`.
    I32(Vec<i32>),
    /// `i2`.
    I16(Vec<i16>),
    /// `i1`.
    I8(Vec<i8>),
    /// `u8`.
    U64(Vec<u64>),
    /// `u4`.
    U32(Vec<u32>),
    /// `u2`.
    U16(Vec<u16>),
    /// `u1`.
    U8(Vec<u8>),
    /// `b1` (numpy `bool`).
    Bool(Vec<bool>),
    /// `S<n>` (bytes, decoded as UTF-8 with replacement) or `U<n>`
    /// (UTF-32); trailing NULs removed, as numpy does.
    Str(Vec<String>),
}

impl NpyData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            NpyData::F64(v) => v.len(),
            NpyData::F32(v) => v.len(),
            NpyData::I64(v) => v.len(),
            NpyData::I32(v) => v.len(),
            NpyData::I16(v) => v.len(),
            NpyData::I8(v) => v.len(),
            NpyData::U64(v) => v.len(),
            NpyData::U32(v) => v.len(),
            NpyData::U16(v) => v.len(),
            NpyData::U8(v) => v.len(),
            NpyData::Bool(v) => v.len(),
            NpyData::Str(v) => v.len(),
        }
    }

    /// True if there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The numpy name of the dtype: "float64", "int32", "bool", "str", ...
    pub fn dtype_name(&self) -> &'static str {
        match self {
            NpyData::F64(_) => "float64",
            NpyData::F32(_) => "float32",
            NpyData::I64(_) => "int64",
            NpyData::I32(_) => "int32",
            NpyData::I16(_) => "int16",
            NpyData::I8(_) => "int8",
            NpyData::U64(_) => "uint64",
            NpyData::U32(_) => "uint32",
            NpyData::U16(_) => "uint16",
            NpyData::U8(_) => "uint8",
            NpyData::Bool(_) => "bool",
            NpyData::Str(_) => "str",
        }
    }
}

/// An array read from an `.npy` file (or an `.npz` member).
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// The shape: `[]` for a 0-d array, `[n]`, or `[rows, cols]`.
    pub shape: Vec<usize>,
    /// The values, row-major.
    pub data: NpyData,
    /// The dtype as the header spelled it, e.g. `"<f8"`.
    pub descr: String,
    /// The file it came from.
    pub path: PathBuf,
    /// The `.npz` member it came from, if any (e.g. `"data.npy"`).
    pub member: Option<String>,
}

impl NpyArray {
    /// Number of elements (1 for a 0-d array).
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True if there are no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// An [`L0Error::Format`] naming the file (and member).
    fn error(&self, message: impl std::fmt::Display) -> L0Error {
        error_in(&self.path, self.member.as_deref(), message)
    }

    /// All values as `f64`: any numeric dtype is accepted (`bool` gives 0
    /// and 1; 64-bit integers beyond 2^53 are rounded). Strings are
    /// refused. Values are not checked for finiteness. `what` names the
    /// array in errors.
    pub fn to_f64_vec(&self, what: &str) -> Result<Vec<f64>> {
        Ok(match &self.data {
            NpyData::F64(v) => v.clone(),
            NpyData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            NpyData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            NpyData::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            NpyData::I16(v) => v.iter().map(|&x| f64::from(x)).collect(),
            NpyData::I8(v) => v.iter().map(|&x| f64::from(x)).collect(),
            NpyData::U64(v) => v.iter().map(|&x| x as f64).collect(),
            NpyData::U32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            NpyData::U16(v) => v.iter().map(|&x| f64::from(x)).collect(),
            NpyData::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
            NpyData::Bool(v) => v.iter().map(|&x| f64::from(u8::from(x))).collect(),
            NpyData::Str(_) => {
                return Err(self.error(format!(
                    "{what}: expected numbers, got strings (dtype '{}')",
                    self.descr
                )))
            }
        })
    }

    /// All values as `i64` labels (group ids): every integer dtype (a `u8`
    /// beyond `i64::MAX` refused), and floats holding whole numbers in the
    /// `i64` range; fractions, bools and strings are refused. `what` names
    /// the array in errors.
    pub fn to_i64_vec(&self, what: &str) -> Result<Vec<i64>> {
        fn ints<T: Copy + TryInto<i64> + std::fmt::Display>(
            a: &NpyArray,
            what: &str,
            v: &[T],
        ) -> Result<Vec<i64>> {
            v.iter()
                .enumerate()
                .map(|(i, &x)| {
                    x.try_into().map_err(|_| {
                        a.error(format!("{what}: {x} at index {i} exceeds the int64 range"))
                    })
                })
                .collect()
        }
        fn whole<T: Copy + Into<f64>>(a: &NpyArray, what: &str, v: &[T]) -> Result<Vec<i64>> {
            v.iter()
                .enumerate()
                .map(|(i, &x)| {
                    let x: f64 = x.into();
                    super::whole_i64(x).ok_or_else(|| {
                        a.error(format!("{what} must be integers, got {x} at index {i}"))
                    })
                })
                .collect()
        }
        match &self.data {
            NpyData::I64(v) => Ok(v.clone()),
            NpyData::I32(v) => ints(self, what, v),
            NpyData::I16(v) => ints(self, what, v),
            NpyData::I8(v) => ints(self, what, v),
            NpyData::U64(v) => ints(self, what, v),
            NpyData::U32(v) => ints(self, what, v),
            NpyData::U16(v) => ints(self, what, v),
            NpyData::U8(v) => ints(self, what, v),
            NpyData::F64(v) => whole(self, what, v),
            NpyData::F32(v) => whole(self, what, v),
            NpyData::Bool(_) | NpyData::Str(_) => Err(self.error(format!(
                "{what}: expected integers, got {} values (dtype '{}')",
                self.data.dtype_name(),
                self.descr
            ))),
        }
    }

    /// All values as non-negative integer indices. Integer dtypes only:
    /// floats, bools and strings are refused, and so is any negative value.
    /// `what` names the array in errors.
    pub fn to_index_vec(&self, what: &str) -> Result<Vec<u64>> {
        fn signed<T: Copy + Into<i64>>(a: &NpyArray, what: &str, v: &[T]) -> Result<Vec<u64>> {
            let mut out = Vec::with_capacity(v.len());
            for (i, &x) in v.iter().enumerate() {
                let x: i64 = x.into();
                if x < 0 {
                    return Err(a.error(format!("{what}: negative index {x} at position {i}")));
                }
                out.push(x as u64);
            }
            Ok(out)
        }
        Ok(match &self.data {
            NpyData::I64(v) => signed(self, what, v)?,
            NpyData::I32(v) => signed(self, what, v)?,
            NpyData::I16(v) => signed(self, what, v)?,
            NpyData::I8(v) => signed(self, what, v)?,
            NpyData::U64(v) => v.clone(),
            NpyData::U32(v) => v.iter().map(|&x| u64::from(x)).collect(),
            NpyData::U16(v) => v.iter().map(|&x| u64::from(x)).collect(),
            NpyData::U8(v) => v.iter().map(|&x| u64::from(x)).collect(),
            NpyData::F64(_) | NpyData::F32(_) | NpyData::Bool(_) | NpyData::Str(_) => {
                return Err(self.error(format!(
                    "{what}: expected integer indices, got {} values (dtype '{}')",
                    self.data.dtype_name(),
                    self.descr
                )))
            }
        })
    }
}

/// An [`L0Error::Format`] about `path`, prefixed with the `.npz` member.
fn error_in(path: &Path, member: Option<&str>, message: impl std::fmt::Display) -> L0Error {
    match member {
        Some(m) => format_error(path, format!("{m}: {message}")),
        None => format_error(path, message.to_string()),
    }
}

/// A shape as Python prints it: `()`, `(3,)`, `(3, 4)`.
pub(crate) fn shape_text(shape: &[usize]) -> String {
    match shape {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        _ => {
            let parts: Vec<String> = shape.iter().map(|n| n.to_string()).collect();
            format!("({})", parts.join(", "))
        }
    }
}

/// Reads an `.npy` file.
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    let bytes = read_file(path)?;
    parse_npy(&bytes, path, None)
}

const MAGIC: &[u8] = b"\x93NUMPY";

/// Parses the bytes of an `.npy` file. `path` and `member` only name the
/// source in errors (and are kept in the result).
/// What an `.npy` header declares, and where its data starts.
pub(crate) struct NpyLayout {
    /// The declared shape.
    pub shape: Vec<usize>,
    /// The dtype as spelled, e.g. `"<f8"`.
    pub descr: String,
    /// Whether a 2-D array is stored column-major.
    pub fortran_order: bool,
    /// Offset of the first data byte.
    pub data_start: usize,
    /// Number of elements.
    pub count: usize,
    /// Bytes of data the header promises.
    pub nbytes: usize,
    dtype: Dtype,
}

/// The message for a member whose data is not the `nbytes` its header
/// declares (`have` bytes).
pub(crate) fn data_length(nbytes: usize, have: u64) -> String {
    format!("expected {nbytes} bytes of data, file has {have}")
}

/// Parses the magic string and header at the start of `bytes` (which need
/// not hold the data): everything [`parse_npy`] checks before it looks at
/// the data, with the same messages.
pub(crate) fn parse_npy_layout(
    bytes: &[u8],
    path: &Path,
    member: Option<&str>,
) -> Result<NpyLayout> {
    let err = |m: String| error_in(path, member, m);
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(err(
            "not a .npy file (it does not start with the \\x93NUMPY magic string)".into(),
        ));
    }
    if bytes.len() < 10 {
        return Err(err(format!(
            "truncated .npy header: the file has only {} bytes",
            bytes.len()
        )));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_len, header_start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(err(format!(
                    "truncated .npy header: the file has only {} bytes",
                    bytes.len()
                )));
            }
            let n = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (n as usize, 12)
        }
        _ => {
            return Err(err(format!(
                "unsupported .npy format version {major}.{minor} (supported: 1.0, 2.0, 3.0)"
            )))
        }
    };
    let data_start = header_start + header_len;
    if bytes.len() < data_start {
        return Err(err(format!(
            "truncated .npy header: expected {header_len} header bytes, file has {}",
            bytes.len() - header_start
        )));
    }
    let raw_header = &bytes[header_start..data_start];
    let header: String = if major == 3 {
        std::str::from_utf8(raw_header)
            .map_err(|_| err("the .npy header is not valid UTF-8".into()))?
            .to_string()
    } else {
        // Versions 1.0 and 2.0 use latin-1.
        raw_header.iter().map(|&b| char::from(b)).collect()
    };
    let header = parse_header(&header).map_err(|m| err(format!("bad .npy header: {m}")))?;

    let dtype = parse_descr(&header.descr).map_err(err)?;
    if header.shape.len() > 2 {
        return Err(err(format!(
            "{}-D arrays are not supported (shape {}); expected 0-D, 1-D or 2-D",
            header.shape.len(),
            shape_text(&header.shape)
        )));
    }
    let too_large = || err(format!("shape {} is too large", shape_text(&header.shape)));
    let count = header
        .shape
        .iter()
        .try_fold(1usize, |acc, &n| acc.checked_mul(n))
        .ok_or_else(too_large)?;
    if dtype.item_size == 0 && count > 0 {
        return Err(err(format!(
            "zero-sized items with shape {}: nothing to read",
            shape_text(&header.shape)
        )));
    }
    let nbytes = count.checked_mul(dtype.item_size).ok_or_else(too_large)?;
    Ok(NpyLayout {
        shape: header.shape,
        descr: header.descr,
        fortran_order: header.fortran_order,
        data_start,
        count,
        nbytes,
        dtype,
    })
}

/// Parses a whole `.npy` file (or `.npz` member) held in memory.
pub(crate) fn parse_npy(bytes: &[u8], path: &Path, member: Option<&str>) -> Result<NpyArray> {
    let err = |m: String| error_in(path, member, m);
    let NpyLayout {
        shape,
        descr,
        fortran_order,
        data_start,
        count,
        nbytes,
        dtype,
    } = parse_npy_layout(bytes, path, member)?;
    let data = &bytes[data_start..];
    if data.len() != nbytes {
        return Err(err(data_length(nbytes, data.len() as u64)));
    }
    let mut values = decode(data, &dtype, count).map_err(err)?;
    if fortran_order {
        if let [rows, cols] = shape[..] {
            values = fortran_to_c(values, rows, cols);
        }
    }
    Ok(NpyArray {
        shape,
        data: values,
        descr,
        path: path.to_path_buf(),
        member: member.map(str::to_string),
    })
}

/// The three keys of an `.npy` header.
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// A Python literal, as far as `.npy` headers use them.
#[derive(Debug)]
enum Py {
    Str(String),
    Int(i128),
    Bool(bool),
    None,
    Seq(Vec<Py>),
    Dict(Vec<(Py, Py)>),
}

struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
}

impl Lexer<'_> {
    fn skip_ws(&mut self) {
        while self.chars.peek().is_some_and(|c| c.is_whitespace()) {
            self.chars.next();
        }
    }

    fn expect_end(&mut self) -> std::result::Result<(), String> {
        self.skip_ws();
        match self.chars.next() {
            None => Ok(()),
            Some(c) => Err(format!("unexpected '{c}' after the dictionary")),
        }
    }

    fn value(&mut self, depth: usize) -> std::result::Result<Py, String> {
        if depth > 32 {
            return Err("nested too deeply".into());
        }
        self.skip_ws();
        match self.chars.peek().copied() {
            None => Err("unexpected end".into()),
            Some(q @ ('\'' | '"')) => {
                self.chars.next();
                let mut s = String::new();
                loop {
                    match self.chars.next() {
                        None => return Err("unterminated string".into()),
                        Some('\\') => match self.chars.next() {
                            None => return Err("unterminated string".into()),
                            Some(c) => s.push(c),
                        },
                        Some(c) if c == q => return Ok(Py::Str(s)),
                        Some(c) => s.push(c),
                    }
                }
            }
            Some(open @ ('(' | '[' | '{')) => {
                self.chars.next();
                let close = match open {
                    '(' => ')',
                    '[' => ']',
                    _ => '}',
                };
                let mut items = Vec::new();
                let mut pairs = Vec::new();
                loop {
                    self.skip_ws();
                    if self.chars.peek() == Some(&close) {
                        self.chars.next();
                        break;
                    }
                    let v = self.value(depth + 1)?;
                    self.skip_ws();
                    if open == '{' {
                        if self.chars.next() != Some(':') {
                            return Err("expected ':' in dictionary".into());
                        }
                        let x = self.value(depth + 1)?;
                        pairs.push((v, x));
                        self.skip_ws();
                    } else {
                        items.push(v);
                    }
                    match self.chars.next() {
                        Some(',') => {}
                        Some(c) if c == close => break,
                        Some(c) => return Err(format!("unexpected '{c}'")),
                        None => return Err("unexpected end".into()),
                    }
                }
                Ok(if open == '{' {
                    Py::Dict(pairs)
                } else {
                    Py::Seq(items)
                })
            }
            Some(_) => {
                let mut word = String::new();
                while let Some(&c) = self.chars.peek() {
                    if c.is_alphanumeric() || c == '_' || c == '-' || c == '+' {
                        word.push(c);
                        self.chars.next();
                    } else {
                        break;
                    }
                }
                match word.as_str() {
                    "True" => Ok(Py::Bool(true)),
                    "False" => Ok(Py::Bool(false)),
                    "None" => Ok(Py::None),
                    "" => Err(format!(
                        "unexpected '{}'",
                        self.chars.peek().copied().unwrap_or(' ')
                    )),
                    // Python 2 wrote long integers as e.g. `3L`.
                    w => w
                        .trim_end_matches('L')
                        .parse::<i128>()
                        .map(Py::Int)
                        .map_err(|_| format!("unexpected '{w}'")),
                }
            }
        }
    }
}

fn parse_header(text: &str) -> std::result::Result<Header, String> {
    let mut lexer = Lexer {
        chars: text.chars().peekable(),
    };
    let Py::Dict(pairs) = lexer.value(0)? else {
        return Err("expected a dictionary".into());
    };
    lexer.expect_end()?;
    let get = |key: &str| {
        pairs.iter().find_map(|(k, v)| match k {
            Py::Str(s) if s == key => Some(v),
            _ => None,
        })
    };
    let descr =
        match get("descr") {
            Some(Py::Str(s)) => s.clone(),
            Some(Py::Seq(_)) => return Err(
                "structured dtypes (record arrays) are not supported; save a plain numeric array"
                    .into(),
            ),
            Some(_) => return Err("'descr' is not a string".into()),
            None => return Err("no 'descr' key".into()),
        };
    let fortran_order = match get("fortran_order") {
        Some(Py::Bool(b)) => *b,
        Some(_) => return Err("'fortran_order' is not True or False".into()),
        None => return Err("no 'fortran_order' key".into()),
    };
    let shape = match get("shape") {
        Some(Py::Seq(items)) => items
            .iter()
            .map(|v| match v {
                Py::Int(n) => {
                    usize::try_from(*n).map_err(|_| format!("bad dimension {n} in 'shape'"))
                }
                _ => Err("'shape' holds a non-integer".to_string()),
            })
            .collect::<std::result::Result<Vec<_>, _>>()?,
        Some(Py::None) | Some(_) => return Err("'shape' is not a tuple".into()),
        None => return Err("no 'shape' key".into()),
    };
    Ok(Header {
        descr,
        fortran_order,
        shape,
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    F64,
    F32,
    I64,
    I32,
    I16,
    I8,
    U64,
    U32,
    U16,
    U8,
    Bool,
    Bytes,
    Unicode,
}

struct Dtype {
    kind: Kind,
    big_endian: bool,
    item_size: usize,
}

fn parse_descr(descr: &str) -> std::result::Result<Dtype, String> {
    let unsupported = || {
        format!(
            "unsupported dtype '{descr}' (supported: f8, f4, i8, i4, i2, i1, u8, u4, u2, u1, \
             b1 and the string dtypes S and U)"
        )
    };
    let (order, rest) = match descr.chars().next() {
        Some(c @ ('<' | '>' | '|' | '=')) => (c, &descr[1..]),
        _ => ('|', descr),
    };
    let big_endian = match order {
        '>' => true,
        '=' => cfg!(target_endian = "big"),
        _ => false,
    };
    let mut chars = rest.chars();
    let code = chars.next().ok_or_else(unsupported)?;
    let size_text = chars.as_str();
    if code == 'O' {
        return Err(
            "object arrays (Python pickles) are not supported; save a numeric array, \
             e.g. arr.astype(np.float64)"
                .into(),
        );
    }
    let size: usize = if size_text.is_empty() && (code == 'S' || code == 'U' || code == 'a') {
        0
    } else {
        size_text.parse().map_err(|_| unsupported())?
    };
    let kind = match (code, size) {
        ('f', 8) => Kind::F64,
        ('f', 4) => Kind::F32,
        ('i', 8) => Kind::I64,
        ('i', 4) => Kind::I32,
        ('i', 2) => Kind::I16,
        ('i', 1) => Kind::I8,
        ('u', 8) => Kind::U64,
        ('u', 4) => Kind::U32,
        ('u', 2) => Kind::U16,
        ('u', 1) => Kind::U8,
        ('b', 1) => Kind::Bool,
        ('S' | 'a', _) => Kind::Bytes,
        ('U', _) => Kind::Unicode,
        _ => return Err(unsupported()),
    };
    let item_size = match kind {
        Kind::Unicode => size.checked_mul(4).ok_or_else(unsupported)?,
        _ => size,
    };
    Ok(Dtype {
        kind,
        big_endian,
        item_size,
    })
}

/// Decodes fixed-size items with `from_le_bytes` / `from_be_bytes`.
fn items<T, const N: usize>(
    data: &[u8],
    big: bool,
    le: fn([u8; N]) -> T,
    be: fn([u8; N]) -> T,
) -> Vec<T> {
    data.chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            if big {
                be(a)
            } else {
                le(a)
            }
        })
        .collect()
}

fn decode(data: &[u8], dtype: &Dtype, count: usize) -> std::result::Result<NpyData, String> {
    let big = dtype.big_endian;
    Ok(match dtype.kind {
        Kind::F64 => NpyData::F64(items(data, big, f64::from_le_bytes, f64::from_be_bytes)),
        Kind::F32 => NpyData::F32(items(data, big, f32::from_le_bytes, f32::from_be_bytes)),
        Kind::I64 => NpyData::I64(items(data, big, i64::from_le_bytes, i64::from_be_bytes)),
        Kind::I32 => NpyData::I32(items(data, big, i32::from_le_bytes, i32::from_be_bytes)),
        Kind::I16 => NpyData::I16(items(data, big, i16::from_le_bytes, i16::from_be_bytes)),
        Kind::I8 => NpyData::I8(data.iter().map(|&b| b as i8).collect()),
        Kind::U64 => NpyData::U64(items(data, big, u64::from_le_bytes, u64::from_be_bytes)),
        Kind::U32 => NpyData::U32(items(data, big, u32::from_le_bytes, u32::from_be_bytes)),
        Kind::U16 => NpyData::U16(items(data, big, u16::from_le_bytes, u16::from_be_bytes)),
        Kind::U8 => NpyData::U8(data.to_vec()),
        Kind::Bool => NpyData::Bool(data.iter().map(|&b| b != 0).collect()),
        Kind::Bytes => {
            let mut out = Vec::with_capacity(count);
            for i in 0..count {
                let item = &data[i * dtype.item_size..(i + 1) * dtype.item_size];
                let end = item.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
                out.push(String::from_utf8_lossy(&item[..end]).into_owned());
            }
            NpyData::Str(out)
        }
        Kind::Unicode => {
            let mut out = Vec::with_capacity(count);
            for i in 0..count {
                let item = &data[i * dtype.item_size..(i + 1) * dtype.item_size];
                let units = items(item, big, u32::from_le_bytes, u32::from_be_bytes);
                let end = units.iter().rposition(|&u| u != 0).map_or(0, |p| p + 1);
                let s = units[..end]
                    .iter()
                    .map(|&u| {
                        char::from_u32(u).ok_or_else(|| {
                            format!("string element {i} holds an invalid code point {u:#x}")
                        })
                    })
                    .collect::<std::result::Result<String, String>>()?;
                out.push(s);
            }
            NpyData::Str(out)
        }
    })
}

fn transpose<T: Copy>(v: Vec<T>, rows: usize, cols: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(v.len());
    for r in 0..rows {
        for c in 0..cols {
            out.push(v[c * rows + r]);
        }
    }
    out
}

/// Reorders a column-major `rows x cols` array into row-major order.
fn fortran_to_c(data: NpyData, rows: usize, cols: usize) -> NpyData {
    match data {
        NpyData::F64(v) => NpyData::F64(transpose(v, rows, cols)),
        NpyData::F32(v) => NpyData::F32(transpose(v, rows, cols)),
        NpyData::I64(v) => NpyData::I64(transpose(v, rows, cols)),
        NpyData::I32(v) => NpyData::I32(transpose(v, rows, cols)),
        NpyData::I16(v) => NpyData::I16(transpose(v, rows, cols)),
        NpyData::I8(v) => NpyData::I8(transpose(v, rows, cols)),
        NpyData::U64(v) => NpyData::U64(transpose(v, rows, cols)),
        NpyData::U32(v) => NpyData::U32(transpose(v, rows, cols)),
        NpyData::U16(v) => NpyData::U16(transpose(v, rows, cols)),
        NpyData::U8(v) => NpyData::U8(transpose(v, rows, cols)),
        NpyData::Bool(v) => NpyData::Bool(transpose(v, rows, cols)),
        NpyData::Str(v) => {
            let mut out = Vec::with_capacity(v.len());
            for r in 0..rows {
                for c in 0..cols {
                    out.push(v[c * rows + r].clone());
                }
            }
            NpyData::Str(out)
        }
    }
}

/// The header `numpy.save` writes for a C-order array: version 1.0, the
/// dictionary with 21 spare characters for the growth axis, padded with
/// spaces and a newline to a multiple of 64 bytes.
pub(crate) fn npy_header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let mut dict = format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': {}, }}",
        shape_text(shape)
    );
    if let Some(first) = shape.first() {
        dict.push_str(&" ".repeat(21usize.saturating_sub(first.to_string().len())));
    }
    let pad = 64 - (MAGIC.len() + 2 + 2 + dict.len() + 1) % 64;
    dict.push_str(&" ".repeat(pad));
    dict.push('\n');
    let mut out = Vec::with_capacity(10 + dict.len());
    out.extend_from_slice(MAGIC);
    if let Ok(len) = u16::try_from(dict.len()) {
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&len.to_le_bytes());
    } else {
        // Never reached for 1-D arrays; kept for completeness (numpy then
        // writes version 2.0 with a 4-byte length and the same padding).
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&(dict.len() as u32 + 2).to_le_bytes());
        dict.insert_str(dict.len() - 1, "  ");
    }
    out.extend_from_slice(dict.as_bytes());
    out
}

/// Writes a 1-D `float64` array as `numpy.save` would, atomically.
pub fn write_npy_f64(path: &Path, values: &[f64]) -> Result<()> {
    write_npy_f64_shaped(path, &[values.len()], values)
}

/// Writes a C-order `float64` array of the given shape (e.g. `[rows, cols]`
/// for a row-major matrix) as `numpy.save` would, atomically.
pub fn write_npy_f64_shaped(path: &Path, shape: &[usize], values: &[f64]) -> Result<()> {
    let count: usize = shape.iter().product();
    if count != values.len() {
        return Err(L0Error::shape(
            format!("values for a .npy of shape {}", shape_text(shape)),
            count,
            values.len(),
        ));
    }
    let header = npy_header("<f8", shape);
    write_atomic(path, |w| {
        w.write_all(&header)?;
        for v in values {
            w.write_all(&v.to_le_bytes())?;
        }
        Ok(())
    })
}

/// Writes a 1-D `int64` array as `numpy.save` would, atomically.
pub fn write_npy_i64(path: &Path, values: &[i64]) -> Result<()> {
    let header = npy_header("<i8", &[values.len()]);
    write_atomic(path, |w| {
        w.write_all(&header)?;
        for v in values {
            w.write_all(&v.to_le_bytes())?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `.npy` file with a hand-written header.
    fn npy(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[version, 0]);
        if version == 1 {
            out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn parse(bytes: &[u8]) -> Result<NpyArray> {
        parse_npy(bytes, Path::new("t.npy"), None)
    }

    #[test]
    fn every_integer_dtype_and_byte_order() {
        let cases: Vec<(&str, Vec<u8>, NpyData)> = vec![
            (
                "<i4",
                vec![0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0],
                NpyData::I32(vec![-1, 2]),
            ),
            (
                ">i4",
                vec![0, 0, 0, 5, 0xff, 0xff, 0xff, 0xfe],
                NpyData::I32(vec![5, -2]),
            ),
            (
                "<u4",
                vec![1, 0, 0, 0, 0, 0, 0, 0x80],
                NpyData::U32(vec![1, 1 << 31]),
            ),
            (">u2", vec![1, 0, 0, 7], NpyData::U16(vec![256, 7])),
            ("<i2", vec![0xfe, 0xff, 3, 0], NpyData::I16(vec![-2, 3])),
            ("|i1", vec![0x80, 0x7f], NpyData::I8(vec![-128, 127])),
            ("|u1", vec![0, 255], NpyData::U8(vec![0, 255])),
            ("|b1", vec![1, 0], NpyData::Bool(vec![true, false])),
            (
                ">u8",
                vec![0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                NpyData::U64(vec![256, 1]),
            ),
            (
                ">f4",
                [1.5f32.to_be_bytes(), (-2.0f32).to_be_bytes()].concat(),
                NpyData::F32(vec![1.5, -2.0]),
            ),
        ];
        for (descr, data, expected) in cases {
            let header =
                format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (2,), }}\n");
            let a = parse(&npy(1, &header, &data)).unwrap();
            assert_eq!(a.data, expected, "{descr}");
            assert_eq!(a.shape, vec![2]);
        }
    }

    #[test]
    fn index_and_float_conversions() {
        let h = "{'descr': '<i2', 'fortran_order': False, 'shape': (3,), }\n";
        let a = parse(&npy(1, h, &[1, 0, 0xff, 0xff, 2, 0])).unwrap();
        assert_eq!(a.to_f64_vec("x").unwrap(), vec![1.0, -1.0, 2.0]);
        assert_eq!(
            a.to_index_vec("row indices").unwrap_err().to_string(),
            "t.npy: row indices: negative index -1 at position 1"
        );
        let h = "{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }\n";
        let a = parse(&npy(1, h, &[1, 0])).unwrap();
        assert_eq!(a.to_f64_vec("x").unwrap(), vec![1.0, 0.0]);
        assert_eq!(
            a.to_index_vec("idx").unwrap_err().to_string(),
            "t.npy: idx: expected integer indices, got bool values (dtype '|b1')"
        );
    }

    #[test]
    fn zero_d_strings() {
        let h = "{'descr': '<U3', 'fortran_order': False, 'shape': (), }\n";
        let data: Vec<u8> = "cs"
            .chars()
            .flat_map(|c| (c as u32).to_le_bytes())
            .chain([0; 4])
            .collect();
        let a = parse(&npy(1, h, &data)).unwrap();
        assert_eq!(a.shape, Vec::<usize>::new());
        assert_eq!(a.data, NpyData::Str(vec!["cs".into()]));
        assert_eq!(
            a.to_f64_vec("format").unwrap_err().to_string(),
            "t.npy: format: expected numbers, got strings (dtype '<U3')"
        );
    }

    #[test]
    fn header_errors() {
        let data = [0u8; 8];
        let check = |header: &str, msg: &str| {
            let e = parse(&npy(1, header, &data)).unwrap_err();
            assert_eq!(e.to_string(), format!("t.npy: {msg}"), "{header}");
        };
        check(
            "{'descr': '<c16', 'fortran_order': False, 'shape': (1,), }\n",
            "unsupported dtype '<c16' (supported: f8, f4, i8, i4, i2, i1, u8, u4, u2, u1, \
             b1 and the string dtypes S and U)",
        );
        check(
            "{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (1,), }\n",
            "bad .npy header: structured dtypes (record arrays) are not supported; \
             save a plain numeric array",
        );
        check(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1, 1), }\n",
            "3-D arrays are not supported (shape (1, 1, 1)); expected 0-D, 1-D or 2-D",
        );
        check(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1,)\n",
            "bad .npy header: unexpected end",
        );
        check(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (-1,), }\n",
            "bad .npy header: bad dimension -1 in 'shape'",
        );
        check(
            "{'descr': '<f8', 'shape': (1,), }\n",
            "bad .npy header: no 'fortran_order' key",
        );
        check(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999, 99999999999, ), }\n",
            "shape (99999999999, 99999999999) is too large",
        );
        let e = parse(b"PK\x03\x04 not npy").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.npy: not a .npy file (it does not start with the \\x93NUMPY magic string)"
        );
        let e = parse(&npy(4, "{}", &[])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.npy: unsupported .npy format version 4.0 (supported: 1.0, 2.0, 3.0)"
        );
        let mut short = npy(
            1,
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }\n",
            &[],
        );
        short.truncate(30);
        assert_eq!(
            parse(&short).unwrap_err().to_string(),
            "t.npy: truncated .npy header: expected 58 header bytes, file has 20"
        );
    }

    #[test]
    fn header_matches_numpy_layout() {
        let h = npy_header("<f8", &[5]);
        assert_eq!(h.len(), 128);
        assert_eq!(*h.last().unwrap(), b'\n');
        let a = parse(&[h, vec![0u8; 40]].concat()).unwrap();
        assert_eq!(a.shape, vec![5]);
    }
}
