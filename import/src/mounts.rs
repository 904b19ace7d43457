//! Mounts left below a directory: released before the directory is
//! removed. Shared by the store's cleanup and the disk import.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Unmount every mount at or below `dir` (deepest first, lazily if busy),
/// as the calling thread's namespace lists them. What a killed import (before
/// disk images had a namespace of their own) left mounted in
/// its work directory is released with this before the directory goes.
pub fn unmount_below(dir: &Path) -> Result<()> {
    use nix::mount::{umount2, MntFlags};
    use sdme_core::mountinfo::unescape_bytes;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("{}", dir.display()))?;
    // The calling thread's namespace: /proc/self is the main thread's.
    let info = std::fs::read_to_string("/proc/thread-self/mountinfo")
        .context("cannot read /proc/thread-self/mountinfo")?;
    let mut below: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(OsString::from_vec(unescape_bytes(m))))
        .filter(|m| m.starts_with(&dir))
        .collect();
    below.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    for m in below {
        if umount2(&m, MntFlags::empty()).is_err() {
            umount2(&m, MntFlags::MNT_DETACH)
                .with_context(|| format!("cannot unmount {}", m.display()))?;
        }
    }
    Ok(())
}
