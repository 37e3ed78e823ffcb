//! Which vector instructions the CPU backend's per-column loops and dot
//! products are compiled for, chosen at run time.
//!
//! The loops are written once, as plain Rust over slices; [`SimdPath::run`]
//! calls them through a function compiled with `#[target_feature]` for the
//! chosen instruction set, into which they are inlined ([`VectorWork`]).
//! Every path gives the same bits: Rust never contracts a product and a sum
//! into an FMA, and the loops use only operations that are exact or
//! correctly rounded in every instruction set (`+ - * /`, `sqrt`, `min`,
//! comparisons, selects, integer bit tricks).
//!
//! By default the best path the CPU has is taken; the environment variable
//! `L0_SIMD` picks one (`avx512`, `avx2`, `sse2` or its alias `scalar`:
//! the x86_64 baseline without run-time dispatch; `neon` on aarch64;
//! `auto`), so each path can be measured on one machine. A path the CPU
//! lacks is refused.

use crate::error::{L0Error, Result};

/// The environment variable that picks a [`SimdPath`].
pub const SIMD_ENV: &str = "L0_SIMD";

/// A set of vector instructions the CPU loops can run with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimdPath {
    /// x86_64 AVX-512F: 16 f32 lanes, masked loop tails.
    Avx512,
    /// x86_64 AVX2: 8 f32 lanes.
    Avx2,
    /// The build's baseline, without run-time dispatch: SSE2 (4 f32 lanes)
    /// on x86_64, NEON on aarch64 (always present there).
    Baseline,
}

impl SimdPath {
    /// Every path, best first.
    pub const ALL: [SimdPath; 3] = [SimdPath::Avx512, SimdPath::Avx2, SimdPath::Baseline];

    /// The path's name, as `L0_SIMD` spells it.
    pub fn name(self) -> &'static str {
        match self {
            SimdPath::Avx512 => "avx512",
            SimdPath::Avx2 => "avx2",
            SimdPath::Baseline if cfg!(target_arch = "aarch64") => "neon",
            SimdPath::Baseline if cfg!(target_arch = "x86_64") => "sse2",
            SimdPath::Baseline => "scalar",
        }
    }

    /// Whether this CPU can run the path.
    pub fn supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            SimdPath::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            SimdPath::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(not(target_arch = "x86_64"))]
            SimdPath::Avx512 | SimdPath::Avx2 => false,
            SimdPath::Baseline => true,
        }
    }

    /// The paths this CPU can run, best first.
    pub fn available() -> Vec<SimdPath> {
        Self::ALL.into_iter().filter(|p| p.supported()).collect()
    }

    /// The best path this CPU can run.
    pub fn best() -> SimdPath {
        Self::ALL
            .into_iter()
            .find(|p| p.supported())
            .unwrap_or(SimdPath::Baseline)
    }

    /// The path named `name` (`auto`: the best), refused when unknown or
    /// when this CPU lacks it.
    pub fn parse(name: &str) -> Result<SimdPath> {
        let name = name.trim().to_ascii_lowercase();
        if name == "auto" || name.is_empty() {
            return Ok(Self::best());
        }
        let path = match name.as_str() {
            "scalar" => Some(SimdPath::Baseline),
            _ => Self::ALL.into_iter().find(|p| p.name() == name),
        };
        let have = || {
            Self::available()
                .iter()
                .map(|p| p.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match path {
            Some(p) if p.supported() => Ok(p),
            Some(p) => Err(L0Error::config(format!(
                "{SIMD_ENV}={} asks for instructions this CPU lacks (it has: {})",
                p.name(),
                have()
            ))),
            None => Err(L0Error::config(format!(
                "{SIMD_ENV}={name} is not a known path (avx512, avx2, sse2 or scalar, neon, auto); this CPU has: {}",
                have()
            ))),
        }
    }

    /// The path `L0_SIMD` names, or the best one when it is unset.
    pub fn from_env() -> Result<SimdPath> {
        match std::env::var(SIMD_ENV) {
            Ok(v) => Self::parse(&v),
            Err(std::env::VarError::NotPresent) => Ok(Self::best()),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(L0Error::config(format!("{SIMD_ENV} is not valid text")))
            }
        }
    }

    /// Runs `work` compiled for this path. The path must be
    /// [`SimdPath::supported`] (the constructors above only return such
    /// paths; another falls back to the baseline).
    #[inline(always)]
    pub(crate) fn run(self, work: impl VectorWork) {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f")]
            fn avx512(work: impl VectorWork) {
                work.run()
            }
            #[target_feature(enable = "avx2")]
            fn avx2(work: impl VectorWork) {
                work.run()
            }
            match self {
                SimdPath::Avx512 if self.supported() => {
                    // SAFETY: the CPU supports AVX-512F, checked just above.
                    return unsafe { avx512(work) };
                }
                SimdPath::Avx2 if self.supported() => {
                    // SAFETY: the CPU supports AVX2, checked just above.
                    return unsafe { avx2(work) };
                }
                _ => {}
            }
        }
        work.run()
    }
}

/// A piece of work whose loops [`SimdPath::run`] compiles for the CPU's
/// vector instructions: its `run` (`#[inline(always)]`, calling only
/// `#[inline(always)]` functions) is inlined into the dispatching function.
/// (A closure would not do: its call goes through a shim that is not
/// inlined.)
pub(crate) trait VectorWork {
    /// Does the work.
    fn run(self);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_missing_paths_are_refused() {
        for p in SimdPath::available() {
            assert_eq!(SimdPath::parse(p.name()).unwrap(), p);
        }
        assert_eq!(SimdPath::parse("auto").unwrap(), SimdPath::best());
        assert_eq!(SimdPath::parse(" Scalar ").unwrap(), SimdPath::Baseline);
        let have = SimdPath::available()
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(", ");
        assert_eq!(
            SimdPath::parse("avx3").unwrap_err().to_string(),
            format!("invalid configuration: L0_SIMD=avx3 is not a known path (avx512, avx2, sse2 or scalar, neon, auto); this CPU has: {have}")
        );
        for p in SimdPath::ALL.into_iter().filter(|p| !p.supported()) {
            assert_eq!(
                SimdPath::parse(p.name()).unwrap_err().to_string(),
                format!(
                    "invalid configuration: L0_SIMD={} asks for instructions this CPU lacks (it has: {have})",
                    p.name()
                )
            );
        }
    }
}
