//! Launch geometry (blocks of [`BLOCK`] threads, lanes per item) and device
//! buffers (zeroed or uploaded), shared by every kernel launch.

use super::driver::driver_err;
use crate::error::{L0Error, Result};
use cudarc::driver::{CudaSlice, CudaStream, DeviceRepr, LaunchConfig, ValidAsZeroBits};
use std::sync::Arc;

/// Threads per block of every kernel (`L0_BLOCK` in `kernels/common.cuh`).
pub(super) const BLOCK: u32 = 256;

/// Most blocks a grid-stride reduction uses (sizes its partials buffer).
pub(super) const MAX_REDUCE_BLOCKS: usize = 1024;

/// Blocks for one thread per item (`items` threads, at least one block).
pub(super) fn blocks_for(items: usize) -> Result<u32> {
    let b = items.div_ceil(BLOCK as usize).max(1);
    // gridDim.x is limited to 2^31 - 1 blocks.
    u32::try_from(b)
        .ok()
        .filter(|&b| b <= i32::MAX as u32)
        .ok_or_else(|| L0Error::Cuda(format!("{items} threads exceed one grid")))
}

pub(super) fn cfg(blocks: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Products per lane that `group_dot` keeps in flight for one model
/// (`L0_DOT_UNROLL` in `kernels/common.cuh`; half as many for a batch).
pub(super) const DOT_UNROLL: usize = 8;

/// Lanes per item as a shift (2^shift lanes, shift 0 to 5): enough lanes
/// that each has about [`DOT_UNROLL`] of the mean item's `total / items`
/// entries (one unrolled pass of `group_dot`), a power of two from 1 to 32.
/// Short items share a warp; long ones get all of it.
pub(super) fn shift_for(total: usize, items: usize) -> u32 {
    let mean = total.div_ceil(items.max(1));
    let lanes = mean.div_ceil(DOT_UNROLL).next_power_of_two().clamp(1, 32);
    lanes.trailing_zeros()
}

/// A zeroed device buffer of `len` elements (at least one, so that empty
/// inputs still get a valid pointer).
pub(super) fn zeros<T: DeviceRepr + ValidAsZeroBits>(
    s: &Arc<CudaStream>,
    len: usize,
) -> Result<CudaSlice<T>> {
    s.alloc_zeros(len.max(1))
        .map_err(driver_err("allocating device memory"))
}

/// A device copy of `data` (at least one element long).
pub(super) fn upload<T: DeviceRepr + ValidAsZeroBits>(
    s: &Arc<CudaStream>,
    data: &[T],
) -> Result<CudaSlice<T>> {
    let mut d = zeros(s, data.len())?;
    if !data.is_empty() {
        s.memcpy_htod(data, &mut d)
            .map_err(driver_err("copying the problem to the device"))?;
    }
    Ok(d)
}

/// A grid of `blocks` blocks for each of `models` models (`blockIdx.y`).
pub(super) fn cfg_models(blocks: u32, models: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks, models as u32, 1),
        ..cfg(blocks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_are_powers_of_two_up_to_a_warp() {
        assert_eq!(shift_for(80, 10), 0);
        assert_eq!(shift_for(90, 10), 1);
        assert_eq!(shift_for(280, 10), 2);
        assert_eq!(shift_for(330, 10), 3);
        assert_eq!(shift_for(10_000, 10), 5);
        assert_eq!(shift_for(0, 10), 0);
    }
}
