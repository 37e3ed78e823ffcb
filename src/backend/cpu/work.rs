//! Where the CPU backend's loops run ([`Cpu`]: its thread pool and vector
//! instructions) and how their work is split: column chunks, slabs of
//! chunks, row segments, and when the forward product is scattered.

use crate::backend::simd::SimdPath;

/// Columns per parallel task.
pub(super) const COLUMN_CHUNK: usize = 2048;

/// Row (or long-column) segments per parallel task.
pub(super) const SEGMENT_CHUNK: usize = 16;

/// The columns are split into at most this many slabs of whole chunks; a
/// slab is one parallel task, its chunks run in order.
pub(super) const SLABS: usize = 64;

/// Up to this many rows, and with at least [`SCATTER_MIN_CHUNKS`] column
/// chunks, the forward product is scattered from the column passes into one
/// row-length f64 accumulator per slab (see `CpuBackend::forward`);
/// otherwise it is gathered over CSR row segments (which also keeps a few
/// long columns, a regression's features, on every thread). The choice
/// depends on the matrix only, never on the number of models.
pub(super) const SCATTER_MAX_ROWS: usize = 1 << 16;

/// Fewest column chunks (so slabs, parallel tasks) for the scattered forward product.
pub(super) const SCATTER_MIN_CHUNKS: usize = 16;

/// `v` cut into `n` equal blocks (`n` empty ones when `v` is empty).
pub(super) fn blocks(v: &mut [f64], n: usize) -> Vec<&mut [f64]> {
    match v.len() / n {
        0 => (0..n).map(|_| &mut [][..]).collect(),
        block => v.chunks_mut(block).collect(),
    }
}

/// Where the CPU backend's loops run: its thread pool and the vector
/// instructions they are compiled for.
pub(super) struct Cpu {
    pub(super) pool: rayon::ThreadPool,
    pub(super) simd: SimdPath,
}
