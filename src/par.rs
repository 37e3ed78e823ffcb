//! How many threads a loop may use, passed explicitly (faer's `Par`).
//!
//! The loops outside the fit (the matrix product and transpose in
//! [`crate::matrix`], the target carriers in [`crate::diagnostics`], the
//! weights file in [`crate::report`], the `.npz` reader) take a [`Par`]:
//! [`Par::Seq`] runs them on the calling thread, [`Par::Rayon`] on the rayon
//! pool they are called from, split into at most that many tasks at once.
//! Their results do not depend on it: each output element is computed by
//! one task in a fixed order, so `Par::Seq` and any `Par::Rayon(n)` give the
//! same bits.
//!
//! `l0 --threads N` bounds rayon's global pool too ([`Par::bound_global`]),
//! so that loops taking [`Par::current`] (the library's defaults) also use
//! at most N threads.

use std::num::NonZeroUsize;

use rayon::prelude::*;

/// The parallelism of a loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Par {
    /// On the calling thread, one item after another.
    Seq,
    /// On the current rayon pool, at most this many tasks at once.
    Rayon(NonZeroUsize),
}

impl Par {
    /// At most `threads` threads (`Some(1)`: [`Par::Seq`]); `None` or
    /// `Some(0)`: every thread of the current pool ([`Par::current`]).
    pub fn new(threads: Option<usize>) -> Par {
        match threads.and_then(NonZeroUsize::new) {
            Some(n) if n.get() == 1 => Par::Seq,
            Some(n) => Par::Rayon(n),
            None => Par::current(),
        }
    }

    /// Every thread of the rayon pool this is called from (the global pool
    /// outside any other).
    pub fn current() -> Par {
        match rayon::current_num_threads() {
            0 | 1 => Par::Seq,
            n => Par::Rayon(NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)),
        }
    }

    /// The most threads a loop run with `self` uses.
    pub fn threads(self) -> usize {
        match self {
            Par::Seq => 1,
            Par::Rayon(n) => n.get().min(rayon::current_num_threads()).max(1),
        }
    }

    /// Sizes rayon's global pool to `threads` threads (None: leaves it at
    /// one per core), so that every loop run on it, [`Par::current`]'s
    /// included, uses at most that many. Has no effect once the global
    /// pool has started (rayon builds it on first use); call it before
    /// any parallel work.
    pub fn bound_global(threads: Option<usize>) {
        if let Some(n) = threads.filter(|&n| n > 0) {
            // Err only when the pool already runs, which the doc excludes.
            let _ = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global();
        }
    }

    /// The least items per task that keeps `n` items within `self`'s
    /// task count (1 when the pool itself is the bound).
    fn min_len(self, n: usize) -> usize {
        match self {
            Par::Seq => n.max(1),
            Par::Rayon(k) if k.get() >= rayon::current_num_threads() => 1,
            Par::Rayon(k) => n.div_ceil(k.get()).max(1),
        }
    }

    /// `f(0), f(1), ..., f(n - 1)`, in order.
    pub fn map<T, F>(self, n: usize, f: F) -> Vec<T>
    where
        T: Send,
        F: Fn(usize) -> T + Sync + Send,
    {
        match self {
            Par::Seq => (0..n).map(f).collect(),
            Par::Rayon(_) => (0..n)
                .into_par_iter()
                .with_min_len(self.min_len(n))
                .map(f)
                .collect(),
        }
    }

    /// `f(item)` for each of `items`, in any order.
    pub fn for_each<T, F>(self, items: Vec<T>, f: F)
    where
        T: Send,
        F: Fn(T) + Sync + Send,
    {
        match self {
            Par::Seq => items.into_iter().for_each(f),
            Par::Rayon(_) => {
                let min = self.min_len(items.len());
                items.into_par_iter().with_min_len(min).for_each(f)
            }
        }
    }

    /// `(a(), b())`, at the same time unless [`Par::Seq`].
    pub fn join<A, B, RA, RB>(self, a: A, b: B) -> (RA, RB)
    where
        A: FnOnce() -> RA + Send,
        B: FnOnce() -> RB + Send,
        RA: Send,
        RB: Send,
    {
        match self {
            Par::Seq => (a(), b()),
            Par::Rayon(_) => rayon::join(a, b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Mutex;

    /// The threads that ran `par`'s items, in a pool of 4.
    fn threads_used(par: Par) -> (usize, bool) {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        let caller = std::thread::current().id();
        let seen = Mutex::new(HashSet::new());
        let active = std::sync::atomic::AtomicUsize::new(0);
        let most = std::sync::atomic::AtomicUsize::new(0);
        use std::sync::atomic::Ordering::SeqCst;
        let on_caller = pool.install(|| {
            let caller_in_pool = std::thread::current().id();
            par.map(64, |_| {
                let now = active.fetch_add(1, SeqCst) + 1;
                most.fetch_max(now, SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(2));
                seen.lock().unwrap().insert(std::thread::current().id());
                active.fetch_sub(1, SeqCst);
            });
            seen.lock().unwrap().iter().all(|&t| t == caller_in_pool)
        });
        assert!(!seen.lock().unwrap().contains(&caller));
        (most.load(SeqCst), on_caller)
    }

    #[test]
    fn seq_runs_on_the_calling_thread_and_rayon_within_its_bound() {
        assert_eq!(Par::new(Some(1)), Par::Seq);
        assert_eq!(Par::new(Some(3)), Par::Rayon(NonZeroUsize::new(3).unwrap()));
        assert_eq!(threads_used(Par::Seq), (1, true));
        let (most, _) = threads_used(Par::new(Some(2)));
        assert!((1..=2).contains(&most), "{most} tasks at once");
        let (most, _) = threads_used(Par::new(Some(4)));
        assert!((1..=4).contains(&most), "{most} tasks at once");
    }

    /// The loops that take a `Par` give the same bits with any of them.
    #[test]
    fn loops_give_the_same_bits_with_any_par() {
        use crate::diagnostics::target_carriers;
        use crate::SparseMatrix;
        let (rows, cols) = (300, 2000);
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        let (mut r, mut c, mut v) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..100_000 {
            r.push((next() % rows) as u64);
            c.push((next() % cols) as u64);
            v.push((next() % 1000) as f64 / 7.0 - 50.0);
        }
        let m = SparseMatrix::from_triplets(rows, cols, &r, &c, &v).unwrap();
        let w: Vec<f64> = (0..cols).map(|j| ((j * 37) % 101) as f64 / 3.0).collect();
        let csr = m.csr();
        let parts = |p: Par| {
            let ptr = csr.indptr().raw_storage().to_vec();
            let built = SparseMatrix::from_csr_parts(
                rows,
                cols,
                ptr,
                csr.indices().to_vec(),
                csr.data().to_vec(),
                p,
            )
            .unwrap();
            built.csc().clone()
        };
        let bits = |x: Vec<f64>| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let want_y = bits(m.mul_vec_par(&w, Par::Seq).unwrap());
        let want_t = target_carriers(&m, &w, Par::Seq);
        for par in [Par::new(Some(2)), Par::new(Some(5)), Par::current()] {
            assert_eq!(bits(m.mul_vec_par(&w, par).unwrap()), want_y, "{par:?}");
            assert_eq!(target_carriers(&m, &w, par), want_t, "{par:?}");
            assert_eq!(&parts(par), m.csc(), "{par:?}");
        }
        assert_eq!(&parts(Par::Seq), m.csc());
    }

    #[test]
    fn map_keeps_order_and_join_returns_both() {
        for par in [Par::Seq, Par::new(Some(3))] {
            assert_eq!(
                par.map(1000, |i| i * 2),
                (0..1000).map(|i| i * 2).collect::<Vec<_>>()
            );
            assert_eq!(par.map(0, |i| i), Vec::<usize>::new());
            assert_eq!(par.join(|| 1, || "b"), (1, "b"));
            let sum = std::sync::atomic::AtomicUsize::new(0);
            par.for_each((1..=100).collect(), |i: usize| {
                sum.fetch_add(i, std::sync::atomic::Ordering::SeqCst);
            });
            assert_eq!(sum.into_inner(), 5050);
        }
    }
}
