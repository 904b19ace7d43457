//! A new anonymous volume starts with what the image has at its path, as
//! Docker's copy-up does (sdme.container(5), "Volume="): directories,
//! regular files and symlinks, with their owners, modes and times (the
//! image's own IDs: with `PrivateUsers=` the volume is mounted ID-mapped,
//! as the image is). Device nodes, FIFOs and sockets are left out, and so
//! are extended attributes (ACLs, file capabilities); a hard link becomes
//! a copy of its own.
//!
//! The source is read through [`LowerDir`] (no symlink followed, the
//! image is not trusted); the destination is the volume directory this
//! start just made, written through directory fds with `O_NOFOLLOW` and
//! `O_EXCL`, so nothing can be redirected out of it.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use anyhow::{bail, Context, Result};
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, mkdirat, utimensat, FileStat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, symlinkat, Gid, Uid};

use crate::fsutil::LowerDir;

/// Deeper trees than this are not an image's volume: refused.
const MAX_DEPTH: usize = 256;

/// Copy the contents of `src` (the image's directory) into the empty
/// directory `dst`; returns how many entries were copied.
pub fn seed(src: &LowerDir, dst: &Path) -> Result<u64> {
    let fd = open_dir(None, dst.as_os_str())
        .with_context(|| format!("cannot open {}", dst.display()))?;
    let mut n = 0;
    copy_dir(src, fd.as_raw_fd(), dst, 0, &mut n)?;
    Ok(n)
}

fn open_dir(at: Option<RawFd>, name: &OsStr) -> nix::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    // SAFETY: a descriptor just returned by a successful openat.
    openat(at, name, flags, Mode::empty()).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
}

fn copy_dir(src: &LowerDir, dst: RawFd, shown: &Path, depth: usize, n: &mut u64) -> Result<()> {
    if depth > MAX_DEPTH {
        bail!(
            "{}: more than {MAX_DEPTH} directories deep",
            shown.display()
        );
    }
    for name in src.names()? {
        let Some(st) = src.stat(&name) else { continue };
        let here = shown.join(&name);
        copy_entry(src, &name, &st, dst, &here, depth, n)
            .with_context(|| format!("cannot copy the image's {}", here.display()))?;
    }
    Ok(())
}

fn copy_entry(
    src: &LowerDir,
    name: &OsStr,
    st: &FileStat,
    dst: RawFd,
    shown: &Path,
    depth: usize,
    n: &mut u64,
) -> Result<()> {
    match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFDIR => {
            let Some(sub) = src.subdir(name) else {
                return Ok(());
            };
            mkdirat(Some(dst), name, Mode::from_bits_truncate(0o700))?;
            let d = open_dir(Some(dst), name)?;
            copy_dir(&sub, d.as_raw_fd(), shown, depth + 1, n)?;
            set_meta(d.as_raw_fd(), st)?;
        }
        SFlag::S_IFREG => {
            let Some(mut from) = src.open_file(name) else {
                return Ok(());
            };
            let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW;
            let fd = openat(
                Some(dst),
                name,
                flags | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )?;
            // SAFETY: a descriptor just returned by a successful openat.
            let mut to = unsafe { File::from_raw_fd(fd) };
            std::io::copy(&mut from, &mut to)?;
            set_meta(to.as_raw_fd(), st)?;
        }
        SFlag::S_IFLNK => {
            let Some(target) = src.readlink(name) else {
                return Ok(());
            };
            symlinkat(target.as_os_str(), Some(dst), name)?;
            let (uid, gid) = (
                Some(Uid::from_raw(st.st_uid)),
                Some(Gid::from_raw(st.st_gid)),
            );
            fchownat(Some(dst), name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)?;
            let t = times(st);
            utimensat(
                Some(dst),
                name,
                &t[0],
                &t[1],
                UtimensatFlags::NoFollowSymlink,
            )?;
        }
        // Device nodes, FIFOs, sockets: not a volume's business.
        _ => return Ok(()),
    }
    *n += 1;
    Ok(())
}

/// Owner (first: chown clears set-ID bits), mode and times of `st`.
fn set_meta(fd: RawFd, st: &FileStat) -> Result<()> {
    nix::unistd::fchown(
        fd,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    )?;
    fchmod(fd, Mode::from_bits_truncate(st.st_mode & 0o7777))?;
    let t = times(st);
    nix::sys::stat::futimens(fd, &t[0], &t[1])?;
    Ok(())
}

fn times(st: &FileStat) -> [TimeSpec; 2] {
    [
        TimeSpec::new(st.st_atime, st.st_atime_nsec),
        TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
    ]
}
