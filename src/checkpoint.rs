//! Checkpoints of a calibration run: everything needed to continue training
//! exactly where it stopped, in a small binary format of our own.
//!
//! A checkpoint holds the full trainable state ([`ParamState`]: both
//! parameter vectors, the four Adam moment vectors and the step count, which
//! is also the gate-noise counter), the model seed, the run's settings
//! (hyperparameters as `name = value` text, so a resumed run can name what
//! changed; `l0 calibrate` also records its input files there as
//! `input.ROLE`, `input.ROLE.size` and `input.ROLE.fingerprint`, with
//! [`input_fingerprints`], so `--resume` finds them and names the one that
//! changed) and a fingerprint of the problem ([`problem_fingerprint`]), so a
//! checkpoint is never applied to different data. On the CPU backend a run
//! resumed from a checkpoint ends with bit-for-bit the weights of an
//! uninterrupted run.
//!
//! # Format (version 1, all integers little-endian)
//!
//! ```text
//! offset  size  field
//! 0       8     magic "L0CKPT\r\n"
//! 8       4     format version (u32) = 1
//! 12      4     reserved (u32) = 0
//! 16      8     payload length L (u64)
//! 24      L     payload
//! 24+L    8     checksum (u64): crate::hash::hash_bytes(payload)
//!
//! payload:
//!   seed u64, fingerprint u64, step u64, n u64 (columns)
//!   intercept: present u8, value f32, m f32, v f32   (13 bytes)
//!   p, a, m_p, v_p, m_a, v_a: n f32 each
//!   settings: count u32, then per entry: name (u32 length + UTF-8),
//!             value (u32 length + UTF-8)
//! ```
//!
//! The length and checksum make a truncated or corrupted file fail with a
//! clear message instead of resuming from garbage; writes go through
//! [`crate::io::write_atomic`], so a run killed while writing leaves the
//! previous checkpoint intact.

use crate::backend::{ParamState, ScalarState};
use crate::error::{L0Error, Result};
use crate::hash::{hash_bytes, Hash64};
use crate::io::write_atomic;
use crate::matrix::SparseMatrix;
use std::path::Path;

/// The first eight bytes of every checkpoint.
pub const MAGIC: &[u8; 8] = b"L0CKPT\r\n";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
/// The checkpoint's file name inside a run's output folder.
pub const FILE_NAME: &str = "checkpoint.l0ck";
/// Bytes before the payload.
const HEADER_LEN: usize = 24;

/// A saved calibration run.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The model seed (gate noise and initial draws).
    pub seed: u64,
    /// [`problem_fingerprint`] of the matrix, targets and groups it was trained on.
    pub fingerprint: u64,
    /// The trainable state; `state.step` is the number of epochs trained.
    pub state: ParamState,
    /// The run's settings as `(name, value)` text pairs, in a fixed order.
    pub settings: Vec<(String, String)>,
}

/// A 64-bit fingerprint of a calibration problem: the matrix's
/// [`SparseMatrix::fingerprint`], the bits of every target and the group
/// ids (or their absence).
pub fn problem_fingerprint(m: &SparseMatrix, y: &[f64], groups: Option<&[i64]>) -> u64 {
    let mut h = Hash64::new();
    h.write_u64(m.fingerprint());
    h.write_u64(y.len() as u64);
    h.write_u64s(y.iter().map(|v| v.to_bits()));
    match groups {
        None => h.write_u64(0),
        Some(g) => {
            h.write_u64(1);
            h.write_u64(g.len() as u64);
            h.write_u64s(g.iter().map(|&v| v as u64));
        }
    }
    h.finish()
}

/// Fingerprints of each input of a calibration problem, in the order
/// matrix, targets, groups (0 without groups), so that a refused resume
/// can name the input that differs. [`problem_fingerprint`] covers all three.
pub fn input_fingerprints(m: &SparseMatrix, y: &[f64], groups: Option<&[i64]>) -> [u64; 3] {
    let mut t = Hash64::new();
    t.write_u64(y.len() as u64);
    t.write_u64s(y.iter().map(|v| v.to_bits()));
    let g = groups.map_or(0, |g| {
        let mut h = Hash64::new();
        h.write_u64(g.len() as u64);
        h.write_u64s(g.iter().map(|&v| v as u64));
        h.finish()
    });
    [m.fingerprint(), t.finish(), g]
}

/// A setting that differs between a checkpoint and the current run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The setting's name.
    pub name: String,
    /// Its value in the checkpoint ("(unset)" when absent).
    pub old: String,
    /// Its value now ("(unset)" when absent).
    pub new: String,
}

/// The settings whose values differ between `old` and `new`, in the order
/// of `old` followed by names only `new` has.
pub fn changed_settings(old: &[(String, String)], new: &[(String, String)]) -> Vec<Change> {
    let find = |list: &[(String, String)], name: &str| {
        list.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    };
    let unset = || "(unset)".to_string();
    let mut out = Vec::new();
    for (name, v) in old {
        let now = find(new, name);
        if now.as_ref() != Some(v) {
            out.push(Change {
                name: name.clone(),
                old: v.clone(),
                new: now.unwrap_or_else(unset),
            });
        }
    }
    for (name, v) in new {
        if find(old, name).is_none() {
            out.push(Change {
                name: name.clone(),
                old: unset(),
                new: v.clone(),
            });
        }
    }
    out
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_f32s(out: &mut Vec<u8>, v: &[f32]) {
    out.reserve(4 * v.len());
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s.as_bytes());
}

/// Reads the payload front to back; every read is bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| format!("payload ends early at byte {}", self.at))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or_default(),
        ))
    }
    fn u64(&mut self) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }
    fn f32(&mut self) -> std::result::Result<f32, String> {
        Ok(f32::from_bits(self.u32()?))
    }
    fn f32s(&mut self, n: usize) -> std::result::Result<Vec<f32>, String> {
        let raw = self.take(n.checked_mul(4).ok_or("length overflow")?)?;
        Ok(raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
    fn string(&mut self) -> std::result::Result<String, String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "a setting is not UTF-8".to_string())
    }
}

impl Checkpoint {
    /// The file's bytes (see the module docs for the layout).
    pub fn to_bytes(&self) -> Vec<u8> {
        let s = &self.state;
        let n = s.len();
        let mut payload = Vec::with_capacity(45 + 24 * n);
        put_u64(&mut payload, self.seed);
        put_u64(&mut payload, self.fingerprint);
        put_u64(&mut payload, s.step);
        put_u64(&mut payload, n as u64);
        let b = s.intercept.unwrap_or_default();
        payload.push(s.intercept.is_some() as u8);
        put_f32s(&mut payload, &[b.value, b.m, b.v]);
        for v in [&s.p, &s.a, &s.m_p, &s.v_p, &s.m_a, &s.v_a] {
            put_f32s(&mut payload, v);
        }
        put_u32(&mut payload, self.settings.len() as u32);
        for (k, v) in &self.settings {
            put_str(&mut payload, k);
            put_str(&mut payload, v);
        }
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + 8);
        out.extend_from_slice(MAGIC);
        put_u32(&mut out, VERSION);
        put_u32(&mut out, 0);
        put_u64(&mut out, payload.len() as u64);
        out.extend_from_slice(&payload);
        put_u64(&mut out, hash_bytes(&payload));
        out
    }

    /// Parses a checkpoint file's bytes; `path` names the file in errors
    /// ([`L0Error::Format`]: not a checkpoint, unsupported version,
    /// truncated, corrupt).
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let bad = |message: String| L0Error::Format {
            path: path.to_path_buf(),
            message,
        };
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            let prefix = bytes.len().min(MAGIC.len());
            return Err(bad(if bytes[..prefix] == MAGIC[..prefix] {
                format!(
                    "truncated checkpoint: {} bytes, shorter than its header",
                    bytes.len()
                )
            } else {
                "not an l0 checkpoint (bad magic header)".into()
            }));
        }
        if bytes.len() < HEADER_LEN {
            return Err(bad(format!(
                "truncated checkpoint: {} bytes, shorter than its header",
                bytes.len()
            )));
        }
        let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if version != VERSION {
            return Err(bad(format!(
                "checkpoint format version {version} is not supported (this l0 reads version {VERSION})"
            )));
        }
        let len = u64::from_le_bytes(bytes[16..24].try_into().unwrap_or_default());
        let expected = (HEADER_LEN as u128) + len as u128 + 8;
        if (bytes.len() as u128) < expected {
            return Err(bad(format!(
                "truncated checkpoint: expected {expected} bytes, found {}",
                bytes.len()
            )));
        }
        if (bytes.len() as u128) > expected {
            return Err(bad(format!(
                "corrupt checkpoint: expected {expected} bytes, found {} (trailing data)",
                bytes.len()
            )));
        }
        let end = HEADER_LEN + len as usize;
        let payload = &bytes[HEADER_LEN..end];
        let stored = u64::from_le_bytes(bytes[end..end + 8].try_into().unwrap_or_default());
        if stored != hash_bytes(payload) {
            return Err(bad("corrupt checkpoint: checksum mismatch".into()));
        }
        Self::parse_payload(payload).map_err(|m| bad(format!("corrupt checkpoint: {m}")))
    }

    fn parse_payload(payload: &[u8]) -> std::result::Result<Self, String> {
        let mut r = Reader {
            bytes: payload,
            at: 0,
        };
        let seed = r.u64()?;
        let fingerprint = r.u64()?;
        let step = r.u64()?;
        let n = usize::try_from(r.u64()?).map_err(|_| "column count overflows")?;
        if n.checked_mul(24).is_none_or(|b| b > payload.len()) {
            return Err(format!("column count {n} does not fit the payload"));
        }
        let has_intercept = r.u8()? != 0;
        let (value, m, v) = (r.f32()?, r.f32()?, r.f32()?);
        let intercept = has_intercept.then_some(ScalarState { value, m, v });
        let mut vecs = Vec::with_capacity(6);
        for _ in 0..6 {
            vecs.push(r.f32s(n)?);
        }
        let count = r.u32()?;
        let mut settings = Vec::new();
        for _ in 0..count {
            settings.push((r.string()?, r.string()?));
        }
        if r.at != payload.len() {
            return Err("unexpected bytes after the settings".into());
        }
        let mut it = vecs.into_iter();
        let mut next = || it.next().unwrap_or_default();
        let state = ParamState {
            p: next(),
            a: next(),
            m_p: next(),
            v_p: next(),
            m_a: next(),
            v_a: next(),
            intercept,
            step,
        };
        Ok(Checkpoint {
            seed,
            fingerprint,
            state,
            settings,
        })
    }

    /// Writes the checkpoint to `path` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes();
        write_atomic(path, |w| w.write_all(&bytes))
    }

    /// Reads and verifies a checkpoint file.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| L0Error::Io {
            path: path.to_path_buf(),
            message: format!("cannot read checkpoint: {e}"),
        })?;
        Self::from_bytes(&bytes, path)
    }

    /// The value of a setting, if recorded.
    pub fn setting(&self, name: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        let mut state = ParamState::new(vec![0.5, -1.0, 2.0], vec![0.1, 0.2, -0.3], None);
        state.m_p = vec![1e-3, 2e-3, f32::MIN_POSITIVE];
        state.v_a = vec![3.0, 4.0, 5.0];
        state.step = 42;
        Checkpoint {
            seed: 7,
            fingerprint: 0xdead_beef,
            state,
            settings: vec![("lr".into(), "0.01".into()), ("loss".into(), "mse".into())],
        }
    }

    #[test]
    fn round_trip_is_exact() {
        let c = sample();
        let bytes = c.to_bytes();
        assert_eq!(&bytes[..8], MAGIC);
        assert_eq!(Checkpoint::from_bytes(&bytes, Path::new("c")).unwrap(), c);
        let mut with_b = c.clone();
        with_b.state.intercept = Some(ScalarState {
            value: 1.5,
            m: 0.25,
            v: 0.125,
        });
        let b = with_b.to_bytes();
        assert_eq!(Checkpoint::from_bytes(&b, Path::new("c")).unwrap(), with_b);
    }

    #[test]
    fn damage_is_refused_with_a_reason() {
        let bytes = sample().to_bytes();
        let p = Path::new("ck");
        let err = |b: &[u8]| Checkpoint::from_bytes(b, p).unwrap_err().to_string();
        assert_eq!(
            err(&bytes[..bytes.len() - 3]),
            format!(
                "ck: truncated checkpoint: expected {} bytes, found {}",
                bytes.len(),
                bytes.len() - 3
            )
        );
        assert_eq!(
            err(&bytes[..5]),
            "ck: truncated checkpoint: 5 bytes, shorter than its header"
        );
        assert_eq!(
            err(b"PK\x03\x04 not a checkpoint at all"),
            "ck: not an l0 checkpoint (bad magic header)"
        );
        let mut flipped = bytes.clone();
        flipped[40] ^= 1;
        assert_eq!(err(&flipped), "ck: corrupt checkpoint: checksum mismatch");
        let mut v2 = bytes.clone();
        v2[8] = 2;
        assert_eq!(
            err(&v2),
            "ck: checkpoint format version 2 is not supported (this l0 reads version 1)"
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(err(&longer).contains("trailing data"));
    }

    #[test]
    fn changes_are_listed() {
        let old = vec![
            ("lr".to_string(), "0.01".to_string()),
            ("loss".to_string(), "mse".to_string()),
        ];
        let new = vec![
            ("lr".to_string(), "0.02".to_string()),
            ("loss".to_string(), "mse".to_string()),
            ("beta".to_string(), "0.5".to_string()),
        ];
        let c = changed_settings(&old, &new);
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].old.as_str(), c[0].new.as_str()), ("0.01", "0.02"));
        assert_eq!((c[1].name.as_str(), c[1].old.as_str()), ("beta", "(unset)"));
    }

    #[test]
    fn fingerprint_sees_every_input() {
        let m = SparseMatrix::from_triplets(2, 3, &[0, 1], &[0, 2], &[1.0, 2.0]).unwrap();
        let m2 = SparseMatrix::from_triplets(2, 3, &[0, 1], &[0, 2], &[1.0, 2.5]).unwrap();
        let y = [1.0, 2.0];
        let base = problem_fingerprint(&m, &y, None);
        assert_eq!(base, problem_fingerprint(&m.clone(), &y, None));
        assert_ne!(base, problem_fingerprint(&m2, &y, None));
        assert_ne!(base, problem_fingerprint(&m, &[1.0, 2.0000001], None));
        assert_ne!(base, problem_fingerprint(&m, &y, Some(&[0, 0])));
        assert_ne!(
            problem_fingerprint(&m, &y, Some(&[0, 1])),
            problem_fingerprint(&m, &y, Some(&[0, 0]))
        );
        let each = input_fingerprints(&m, &y, None);
        assert_eq!(each[0], input_fingerprints(&m, &[3.0, 4.0], None)[0]);
        assert_ne!(each[1], input_fingerprints(&m, &[3.0, 4.0], None)[1]);
        assert_eq!(each[2], 0);
        assert_ne!(input_fingerprints(&m2, &y, None)[0], each[0]);
        assert_ne!(input_fingerprints(&m, &y, Some(&[0, 1]))[2], 0);
        // The same matrix from another layout has the same fingerprint.
        let csc = SparseMatrix::from_csc(2, 3, &[0, 1, 1, 2], &[0, 1], &[1.0, 2.0]).unwrap();
        assert_eq!(m.fingerprint(), csc.fingerprint());
    }
}
