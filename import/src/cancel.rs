//! Ctrl+C and SIGTERM: the first asks every copy loop to stop (they call
//! [`check`] and unwind, cleaning up as they go); the second kills the
//! process at once (the next run cleans what is left).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often waits and watchers look at a stop flag: the delay between
/// Ctrl+C and the stop of a wait or a blocked network read.
pub const POLL: Duration = Duration::from_millis(50);

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// The error an interrupted import ends with (exit status 130).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

extern "C" fn on_signal(sig: libc::c_int) {
    if REQUESTED.swap(true, Ordering::SeqCst) {
        // Second signal: die of it, as the user asked. Only
        // async-signal-safe calls here.
        // SAFETY: signal() and raise() are async-signal-safe.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }
}

/// Install the handlers for SIGINT and SIGTERM. Without SA_RESTART, so a
/// blocking read returns EINTR and its loop sees the flag.
pub fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is valid; the handler only touches an
        // atomic and async-signal-safe calls.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = 0;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Whether a stop was asked for.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

/// Fail with [`Interrupted`] when a stop was asked for.
pub fn check() -> anyhow::Result<()> {
    if requested() {
        return Err(Interrupted.into());
    }
    Ok(())
}

/// Whether `e` (or its cause chain) is an interruption.
pub fn is_interrupted(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<Interrupted>().is_some())
}

/// Sleeps for `d` unless `flag` gets set first: then fails with
/// [`Interrupted`] within [`POLL`].
pub fn sleep(d: Duration, flag: &AtomicBool) -> anyhow::Result<()> {
    let end = Instant::now() + d;
    loop {
        if flag.load(Ordering::SeqCst) {
            return Err(Interrupted.into());
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(POLL));
    }
}

/// The flag itself, for code that takes an `&AtomicBool` to poll.
pub fn flag() -> &'static AtomicBool {
    &REQUESTED
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_ends_early_when_the_flag_is_set() {
        let flag: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
        let t = Instant::now();
        sleep(Duration::from_millis(120), flag).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(120));

        std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            flag.store(true, Ordering::SeqCst);
        });
        let t = Instant::now();
        let e = sleep(Duration::from_secs(30), flag).unwrap_err();
        assert!(is_interrupted(&e));
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
}
