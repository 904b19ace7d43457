//! Making files and setting their metadata through paths that name one
//! inode (`/proc/self/fd/FD`): shared by both ways `sdme cp` writes
//! (cp.rs, cpns.rs).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::layers;

/// Make at `target` a device node, FIFO or socket of the type (and
/// device number) of `meta`, private (0600) until its metadata is set.
pub fn mknod_like(target: &Path, meta: &std::fs::Metadata, shown: &Path) -> Result<()> {
    let c = cstr(target)?;
    // SAFETY: a valid C string.
    let r = unsafe { libc::mknod(c.as_ptr(), meta.mode() & libc::S_IFMT | 0o600, meta.rdev()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("creating {}", shown.display()));
    }
    Ok(())
}

pub fn cstr(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).context("path with a NUL byte")
}

pub fn utimens(p: &Path, m: &std::fs::Metadata, flags: i32) -> Result<()> {
    let t = [
        libc::timespec {
            tv_sec: m.atime(),
            tv_nsec: m.atime_nsec(),
        },
        libc::timespec {
            tv_sec: m.mtime(),
            tv_nsec: m.mtime_nsec(),
        },
    ];
    let c = cstr(p)?;
    // SAFETY: a valid C string and two timespecs.
    if unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), t.as_ptr(), flags) } != 0 {
        return Err(std::io::Error::last_os_error()).context("setting times");
    }
    Ok(())
}

/// Owner, xattrs, mode and times of `m` onto `p` (a `/proc/self/fd/FD`
/// path, followed to exactly that inode; never a symlink). chown first:
/// it clears set-ID bits and file capabilities.
pub fn set_meta(p: &Path, m: &std::fs::Metadata, xattrs: &[(String, Vec<u8>)]) -> Result<()> {
    std::os::unix::fs::chown(p, Some(m.uid()), Some(m.gid())).context("setting the owner")?;
    for (k, v) in xattrs {
        layers::set_xattr(p, k, v)?;
    }
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m.mode() & 0o7777))
        .context("setting the mode")?;
    utimens(p, m, 0)
}

pub fn fd_path(fd: &impl std::os::fd::AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}
