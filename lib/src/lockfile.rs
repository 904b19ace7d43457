//! Lock files: `flock(2)` on a file that is created when missing and never
//! followed through a symlink. One place for the import's name lock and
//! the rootfs use lock.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// How to take the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Shared,
    Exclusive,
}

/// Open (creating, mode 0600) and lock `path`. With `wait` false, `None`
/// when someone else holds it; with `wait` true, block until it is free.
/// The lock is held for the life of the returned file.
pub fn lock(path: &Path, mode: Mode, wait: bool) -> io::Result<Option<File>> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)?;
    let mut op = match mode {
        Mode::Shared => libc::LOCK_SH,
        Mode::Exclusive => libc::LOCK_EX,
    };
    if !wait {
        op |= libc::LOCK_NB;
    }
    loop {
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
            return Ok(Some(f));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if !wait => return Ok(None),
            _ => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_excludes_exclusive_and_symlinks_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x.lock");
        let a = lock(&p, Mode::Shared, false).unwrap().unwrap();
        assert!(lock(&p, Mode::Shared, false).unwrap().is_some());
        assert!(lock(&p, Mode::Exclusive, false).unwrap().is_none());
        drop(a);
        assert!(lock(&p, Mode::Exclusive, true).unwrap().is_some());
        let victim = t.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, t.path().join("l.lock")).unwrap();
        assert!(lock(&t.path().join("l.lock"), Mode::Shared, false).is_err());
    }
}
