//! What `sdme cp` copies, resolved and checked before anything is
//! written: both ends of the copy and every refusal known beforehand.
//! Shared by the copy through layers (cp.rs) and the copy into a running
//! guest's user namespace (cpns.rs).

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::layers::{resolve, Entry, Resolved, View};

/// Both ends of a copy, resolved: the source (its name and entry) and
/// the destination (descended into when it is a directory), with the
/// name the copy gets and the path shown in messages.
pub struct Ends {
    pub s: Resolved,
    pub sname: OsString,
    pub se: Entry,
    pub d: Resolved,
    pub name: OsString,
    pub shown: PathBuf,
}

pub fn ends(sroot: View, spath: &Path, droot: View, dpath: &Path) -> Result<Ends> {
    // The source's last symlink is copied as a link, as `cp -a` does.
    let mut s = resolve(sroot, spath, false).with_context(|| spath.display().to_string())?;
    let (Some(sname), Some(se)) = (s.name.clone(), s.entry.take()) else {
        bail!("{}: no such file or directory", spath.display());
    };
    let mut d = resolve(droot, dpath, true).with_context(|| dpath.display().to_string())?;
    let name = if d.is_dir() {
        d.descend()?;
        sname.clone()
    } else {
        d.name.take().context("destination has no name")?
    };
    let shown = d.path().join(&name);
    Ok(Ends {
        s,
        sname,
        se,
        d,
        name,
        shown,
    })
}

pub fn is_device(ft: std::fs::FileType) -> bool {
    ft.is_char_device() || ft.is_block_device()
}

/// What the copy would refuse, found without writing: a directory onto a
/// non-directory or the reverse, a device node out of a container, an
/// unknown file type. `dv` is the destination directory (`None`: not
/// there yet, so nothing in it is in the way).
pub fn check(
    sv: &View,
    se: &Entry,
    sname: &OsStr,
    dv: Option<&View>,
    dname: &OsStr,
    shown: &Path,
    devices: bool,
) -> Result<()> {
    let ft = se.meta.file_type();
    let existing = dv.map(|v| v.lookup(dname)).transpose()?.flatten();
    let dst_dir = existing.as_ref().map(|e| e.meta.is_dir());
    if ft.is_dir() {
        if dst_dir == Some(false) {
            bail!("{}: exists and is not a directory", shown.display());
        }
        let dchild = match dv {
            Some(v) if dst_dir == Some(true) => Some(v.child(dname)?),
            _ => None,
        };
        let schild = sv.child(sname)?;
        for n in schild.names()? {
            if let Some(e) = schild.lookup(&n)? {
                check(
                    &schild,
                    &e,
                    &n,
                    dchild.as_ref(),
                    &n,
                    &shown.join(&n),
                    devices,
                )?;
            }
        }
        return Ok(());
    }
    if dst_dir == Some(true) {
        bail!("{}: is a directory", shown.display());
    }
    if is_device(ft) && !devices {
        // A container's device node would give the host's users its
        // device (a world-writable disk, say).
        bail!(
            "{}: a device node is not copied out of a container",
            shown.display()
        );
    }
    if !(ft.is_file() || ft.is_symlink() || is_device(ft) || ft.is_fifo() || ft.is_socket()) {
        bail!("{}: unknown file type", shown.display());
    }
    Ok(())
}
