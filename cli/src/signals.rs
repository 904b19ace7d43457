//! SIGINT, SIGTERM and SIGHUP for `exec`, `join` and `new`: blocked in
//! sdme and read by one thread, which records them and runs the action
//! the current step set (forward to the command, cancel the boot).
//! Children get the default mask back (std resets it at spawn).

use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};

type Action = Box<dyn Fn(i32) + Send>;

#[derive(Clone)]
pub struct Signals {
    state: Arc<Mutex<(Option<i32>, Option<Action>)>>,
}

const CAUGHT: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

impl Signals {
    /// Block the signals and start the thread that reads them; call
    /// before any other thread exists, so that none of them gets one.
    pub fn catch() -> Result<Signals> {
        let set = sigset();
        // SAFETY: `set` is an initialised sigset_t; no old mask is asked for.
        if unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) } != 0 {
            bail!("blocking SIGINT/SIGTERM/SIGHUP failed");
        }
        let s = Signals {
            state: Arc::new(Mutex::new((None, None))),
        };
        let t = s.clone();
        std::thread::spawn(move || loop {
            let mut sig = 0;
            // SAFETY: `set` lives in this closure; sig is a valid out pointer.
            if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                continue;
            }
            let mut st = t.state.lock().unwrap_or_else(|e| e.into_inner());
            st.0 = Some(sig);
            if let Some(f) = &st.1 {
                f(sig);
            }
        });
        Ok(s)
    }

    /// What to do on a signal from now on (replaces the previous action).
    pub fn on_signal(&self, f: impl Fn(i32) + Send + 'static) {
        self.lock().1 = Some(Box::new(f));
    }

    /// The last signal received, if any.
    pub fn received(&self) -> Option<i32> {
        self.lock().0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Option<i32>, Option<Action>)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn sigset() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the zeroed set; the signals are valid.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in CAUGHT {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

pub fn name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}
