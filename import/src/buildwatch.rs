//! Ctrl+C and SIGTERM during a build container's boot or `Run=` step.
//!
//! The build then waits on child processes that the signal does not end
//! (`systemd-run` keeps waiting, a read is restarted), so a thread watches
//! the stop flag. When it is set, the thread stops the build container,
//! which ends the step, and kills the step's `systemd-run -M --wait`
//! client: that client does not always notice that its machine is gone
//! (seen under load in e2e 53: the container had stopped, and 100 s later
//! the client still waited, holding the output pipe open, so the build
//! never saw its end and never cleaned up). The build then cleans up.

use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::cancel;

/// The watcher of one boot and step; stops when dropped.
pub struct Watch {
    done: Arc<AtomicBool>,
    client: Arc<Mutex<Option<OwnedFd>>>,
    thread: Option<JoinHandle<()>>,
}

impl Watch {
    /// Watch the build container `unit`.
    pub fn start(unit: String) -> Watch {
        Watch::with(cancel::flag(), move || {
            let _ = Command::new("systemctl")
                .args(["stop", &unit])
                .stderr(Stdio::null())
                .status();
        })
    }

    /// Once `flag` is set: `stop`, then kill the client.
    fn with(flag: &'static AtomicBool, stop: impl FnOnce() + Send + 'static) -> Watch {
        let done = Arc::new(AtomicBool::new(false));
        let client: Arc<Mutex<Option<OwnedFd>>> = Arc::new(Mutex::new(None));
        let (d, c) = (done.clone(), client.clone());
        let thread = std::thread::spawn(move || {
            let mut stop = Some(stop);
            while !d.load(Ordering::SeqCst) {
                if flag.load(Ordering::SeqCst) {
                    if let Some(f) = stop.take() {
                        f();
                    }
                    if let Some(fd) = c.lock().map(|mut g| g.take()).unwrap_or(None) {
                        kill(&fd);
                    }
                }
                std::thread::sleep(cancel::POLL);
            }
        });
        Watch {
            done,
            client,
            thread: Some(thread),
        }
    }

    /// The step's client, killed once the container is stopped. Called
    /// before the child is waited for, so its PID is still its own; the
    /// pidfd keeps it so (a signal to a reaped child goes nowhere).
    pub fn client(&self, child: &Child) {
        let pid = rustix::process::Pid::from_child(child);
        let Ok(fd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) else {
            return;
        };
        if let Ok(mut g) = self.client.lock() {
            *g = Some(fd);
        }
    }
}

/// SIGKILL through a pidfd: the client has nothing to clean up (its
/// machine is stopped), and a hung client may not handle SIGTERM.
fn kill(fd: &OwnedFd) {
    let _ = rustix::process::pidfd_send_signal(fd, rustix::process::Signal::KILL);
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn once_stopped_the_client_is_killed() {
        let flag: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
        let stopped = Arc::new(AtomicBool::new(false));
        let s = stopped.clone();
        let w = Watch::with(flag, move || s.store(true, Ordering::SeqCst));
        let mut child = Command::new("sleep").arg("30").spawn().expect("sleep");
        w.client(&child);
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !stopped.load(Ordering::SeqCst),
            "nothing happens before the flag"
        );
        let t = Instant::now();
        flag.store(true, Ordering::SeqCst);
        let st = child.wait().expect("wait");
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));
        assert!(stopped.load(Ordering::SeqCst));
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        drop(w);
    }
}
