//! Spreading independent work over the CPUs while keeping its order, so
//! that results stay deterministic. Plain scoped threads: the work items
//! (files) are few and uniform, a pool would add nothing.

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
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                let f = &f;
                s.spawn(move || part.iter().map(f).collect::<Vec<R>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(v) => v,
                // A panic in a worker is a bug; re-raise it in the caller.
                Err(p) => std::panic::resume_unwind(p),
            })
            .collect()
    })
}
