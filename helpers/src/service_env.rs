//! `ServiceEnvironment=`: the guest manager's `DefaultEnvironment=`
//! drop-in in `upper/` (its text: [`sdme_core::service_env`]).
//!
//! `upper/` is written by the guest, which is not trusted: the directories
//! are walked one component at a time without following a symlink (a
//! symlinked `etc/systemd` or `system.conf.d` is refused, the start fails
//! naming it), and the file is replaced through a temporary name and
//! `renameat`, which replaces a planted symlink instead of following it.
//! It is owned by 0:0 on disk, the guest's root also with `PrivateUsers=`
//! (the layers are ID-mapped, see [`crate::idmap`]), mode 0644.

use std::ffi::OsStr;
use std::path::Path;

use anyhow::{Context, Result};
use sdme_core::service_env::{dropin, DROPIN_DIR, DROPIN_NAME};

use crate::fsutil::{DirAttrs, Entry, Lower, SafeDir};

/// Write the drop-in for `assignments` (checked), or remove sdme's drop-in
/// when there are none. Returns whether a file is there afterwards.
pub fn apply(upper: &SafeDir, lower: &Lower, assignments: &[String]) -> Result<bool> {
    let rel = Path::new(DROPIN_DIR);
    let name = OsStr::new(DROPIN_NAME);
    if assignments.is_empty() {
        // Only sdme's own name, and only a file or symlink there (never
        // what it points at); a whiteout stays.
        if let Some(dir) = upper.walk_existing(rel)? {
            if matches!(dir.entry(name)?, Entry::File { .. } | Entry::Symlink) {
                dir.remove_file(name)?;
            }
        }
        return Ok(false);
    }
    let attrs = |r: &Path| lower.dir_attrs(r).unwrap_or(DirAttrs::DEFAULT);
    let dir = upper
        .walk_create(rel, &attrs)
        .context("ServiceEnvironment=")?;
    dir.write_file(name, dropin(assignments).as_bytes(), 0o644)
        .context("ServiceEnvironment=")?;
    Ok(true)
}
