//! Spreading independent work over the CPUs while keeping its order, so
//! that results stay deterministic. Plain scoped threads: the work items
//! (files) are few and uniform, a pool would add nothing.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

/// Below this many files one thread is faster than starting more.
const PARALLEL_FROM: usize = 64;

/// How many threads to use for `n` items.
pub fn threads_for(n: usize) -> usize {
    if n < PARALLEL_FROM {
        return 1;
    }
    std::thread::available_parallelism()
        .map_or(1, |p| p.get())
        .clamp(1, 8)
}

/// Map `f` over `items` on `threads` threads, keeping the order.
pub fn par_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    if threads <= 1 || items.len() < 2 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let mut parts = items.chunks(chunk);
    // The calling thread maps the first chunk itself: one thread fewer to
    // start. The results are collected at their final size, as results
    // can be large (a validated container is several hundred bytes) and
    // growing a vector would copy them over and over into fresh pages.
    let first = parts.next().unwrap_or_default();
    std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .map(|part| {
                let f = &f;
                s.spawn(move || part.iter().map(f).collect::<Vec<R>>())
            })
            .collect();
        let mut out = Vec::with_capacity(items.len());
        out.extend(first.iter().map(&f));
        for h in handles {
            match h.join() {
                Ok(v) => out.extend(v),
                // A panic in a worker is a bug; re-raise it in the caller.
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        out
    })
}

/// Three stages over `items` on `threads` threads, without a barrier
/// between them, so that later items are still loaded while earlier ones
/// are already run:
/// - `load` each item (in parallel, in any order; it takes the item, so
///   that nothing of it is copied or left to free at the end);
/// - `check` the loaded items strictly in item order, one at a time (it
///   may keep state, such as the names that earlier items claimed), turning
///   each into a job or dropping it;
/// - `run` each job (in parallel) as soon as it is checked.
///
/// Returns the jobs with their results, in item order.
///
/// Any thread checks what is ready (the checks never wait for a thread
/// that runs). Then the calling thread loads while there is anything to
/// load and the others run jobs while there are any: each thread keeps
/// to one kind of work, which measured faster than mixing them (loading
/// and running touch different code and data; the generator's jobs
/// write files, and two writers contend for the directory lock).
pub fn pipeline<T, L, J, R>(
    items: Vec<T>,
    threads: usize,
    load: impl Fn(T) -> L + Sync,
    check: impl FnMut(L) -> Option<J> + Send,
    run: impl Fn(&J) -> R + Sync,
) -> Vec<(J, R)>
where
    T: Send,
    L: Send,
    J: Send,
    R: Send,
{
    let len = items.len();
    let shared = Shared {
        len,
        load,
        check: Mutex::new(Some(check)),
        run,
        state: Mutex::new(Stages {
            to_load: items.into_iter(),
            next_load: 0,
            loaded: VecDeque::new(),
            unchecked: 0,
            checking: false,
            checked: 0,
            panicked: false,
            jobs: VecDeque::new(),
            done: Vec::with_capacity(len),
        }),
        wake: Condvar::new(),
    };
    let threads = threads.clamp(1, len.max(1));
    std::thread::scope(|s| {
        // The calling thread is one of the workers, the loader.
        let others: Vec<_> = (1..threads)
            .map(|_| s.spawn(|| shared.work(Prefer::Run)))
            .collect();
        shared.work(Prefer::Load);
        for h in others {
            if let Err(p) = h.join() {
                // A panic in a worker is a bug; re-raise it in the caller.
                std::panic::resume_unwind(p);
            }
        }
    });
    let mut done = (shared.state.into_inner())
        .unwrap_or_else(|p| p.into_inner())
        .done;
    done.sort_unstable_by_key(|(i, _, _)| *i);
    // Collected in place (jobs can be large).
    done.into_iter().map(|(_, j, r)| (j, r)).collect()
}

struct Shared<T, L, J, R, FL, FC, FR> {
    /// How many items there are.
    len: usize,
    load: FL,
    /// Taken only by the thread that set [`Stages::checking`]; dropped
    /// after the last item is checked (by that thread, while others may
    /// still run jobs: the checks' state can be large, such as every name
    /// claimed).
    check: Mutex<Option<FC>>,
    run: FR,
    state: Mutex<Stages<T, L, J, R>>,
    /// Signalled when jobs are queued and when the last item is checked.
    wake: Condvar,
}

struct Stages<T, L, J, R> {
    /// The items not yet taken for loading.
    to_load: std::vec::IntoIter<T>,
    /// The index of the next item to load.
    next_load: usize,
    /// Loaded and not yet taken for checking, by item index from
    /// `unchecked` on (the checks keep up, so this stays short).
    loaded: VecDeque<Option<L>>,
    /// The item that `loaded` starts with.
    unchecked: usize,
    /// A thread is checking (outside the lock).
    checking: bool,
    /// Items before this index are checked.
    checked: usize,
    /// A worker panicked: the others stop (its item would never be
    /// checked), and the caller re-raises the panic.
    panicked: bool,
    /// Checked, not yet run, with their item index.
    jobs: VecDeque<(usize, J)>,
    done: Vec<(usize, J, R)>,
}

impl<T, L, J, R, FL, FC, FR> Shared<T, L, J, R, FL, FC, FR>
where
    FL: Fn(T) -> L,
    FC: FnMut(L) -> Option<J>,
    FR: Fn(&J) -> R,
{
    fn work(&self, prefer: Prefer) {
        // Reused for every round of checks: the loader checks each item
        // as soon as it is loaded, a thousand small rounds per run.
        let mut batch = Vec::new();
        let mut jobs: Vec<(usize, J)> = Vec::new();
        let _stop_others = OnUnwind(|| {
            lock(&self.state).panicked = true;
            self.wake.notify_all();
        });
        let mut st = lock(&self.state);
        loop {
            if st.panicked {
                return;
            }
            // Check every item loaded in order so far, outside the lock.
            if !st.checking && st.loaded.front().is_some_and(Option::is_some) {
                let from = st.unchecked;
                while let Some(Some(l)) = st.loaded.front_mut().map(Option::take) {
                    st.loaded.pop_front();
                    st.unchecked += 1;
                    batch.push(l);
                }
                st.checking = true;
                drop(st);
                let n = batch.len();
                let mut check = lock(&self.check);
                if let Some(check) = check.as_mut() {
                    jobs.extend(
                        batch
                            .drain(..)
                            .enumerate()
                            .filter_map(|(k, l)| check(l).map(|j| (from + k, j))),
                    );
                }
                drop(check);
                st = lock(&self.state);
                st.checking = false;
                st.checked = from + n;
                let last = st.checked == self.len;
                if !jobs.is_empty() || last {
                    st.jobs.extend(jobs.drain(..));
                    self.wake.notify_all();
                }
                if last {
                    drop(st);
                    let check = lock(&self.check).take();
                    drop(check);
                    st = lock(&self.state);
                }
                continue;
            }
            let loads_left = st.next_load < self.len;
            if !(loads_left && prefer == Prefer::Load) {
                if let Some((i, job)) = st.jobs.pop_front() {
                    drop(st);
                    let r = (self.run)(&job);
                    st = lock(&self.state);
                    st.done.push((i, job, r));
                    continue;
                }
            }
            if let Some(item) = st.to_load.next() {
                let i = st.next_load;
                st.next_load += 1;
                drop(st);
                let l = (self.load)(item);
                st = lock(&self.state);
                let at = i - st.unchecked;
                if st.loaded.len() <= at {
                    st.loaded.resize_with(at + 1, || None);
                }
                st.loaded[at] = Some(l);
                // This thread checks it next, unless another one is
                // checking (which then takes it too) or an earlier item
                // is still being loaded (whose thread then checks both).
                continue;
            }
            if st.checked == self.len {
                return;
            }
            // Everything is loaded; another thread loads or checks the
            // rest and queues jobs.
            st = self.wake.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Runs its function when dropped by a panic.
struct OnUnwind<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnUnwind<F> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            (self.0)();
        }
    }
}

/// What a worker does when it could either load or run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Prefer {
    Load,
    Run,
}

/// A poisoned lock only means another worker panicked, which the caller
/// re-raises; the data stays consistent for the others.
fn lock<X>(m: &Mutex<X>) -> MutexGuard<'_, X> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_checks_in_order_and_keeps_the_order() {
        let items: Vec<u32> = (0..500).collect();
        for threads in [1, 2, 3, 8] {
            let mut checked = Vec::new();
            let out = pipeline(
                items.clone(),
                threads,
                |x| {
                    // Loads finish out of order.
                    if x % 7 == 0 {
                        std::thread::yield_now();
                    }
                    x * 2
                },
                |loaded| {
                    // Stateful, as the generator's checks are.
                    checked.push(loaded / 2);
                    (loaded % 3 != 0).then_some(loaded)
                },
                |&job| job + 1,
            );
            assert_eq!(checked, items, "threads={threads}");
            let want: Vec<(u32, u32)> = items
                .iter()
                .map(|x| x * 2)
                .filter(|l| l % 3 != 0)
                .map(|l| (l, l + 1))
                .collect();
            assert_eq!(out, want, "threads={threads}");
        }
        let none: Vec<(u32, u32)> = pipeline(Vec::new(), 4, |x: u32| x, Some, |&j| j);
        assert!(none.is_empty());
    }

    #[test]
    fn a_panic_reaches_the_caller_instead_of_hanging_the_others() {
        let items: Vec<u32> = (0..200).collect();
        for threads in [1, 2, 4] {
            for stage in ["load", "check", "run"] {
                let fail = |s: &str, x: u32| {
                    if s == stage && x == 100 {
                        panic!("{stage} failed");
                    }
                };
                let r = std::panic::catch_unwind(|| {
                    pipeline(
                        items.clone(),
                        threads,
                        |x| {
                            fail("load", x);
                            x
                        },
                        |x| {
                            fail("check", x);
                            Some(x)
                        },
                        |&x| fail("run", x),
                    )
                });
                assert!(r.is_err(), "threads={threads} stage={stage}");
            }
        }
    }
}
