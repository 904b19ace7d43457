//! sdme's own directories in a container's lower layer (`/etc/sdme`,
//! `/usr/local/lib/sdme`, `/usr/lib/sdme`, `/var/lib/sdme`; see
//! [`sdme_core::paths::NESTED_SDME_DIRS`]): hidden by opaque directories
//! in `upper/` unless `NestedSdme=yes`.
//!
//! A rootfs imported from a host that runs sdme (or a clone of such a host)
//! holds the host's `.container` files; the guest's own sdme-generator
//! would make units of them and start the enabled ones inside the guest.
//! Opacity hides the lower layer only: whatever the guest itself wrote
//! there stays in `upper/` and stays visible.

use std::ffi::OsStr;
use std::path::{Component, Path};

use anyhow::Result;

use crate::fsutil::{DirAttrs, Entry, Lower, SafeDir};

/// `rel` (relative, validated by the caller) as its components.
fn components(rel: &Path) -> Vec<&OsStr> {
    rel.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect()
}

/// Whether the lower layer has `rel` as something to hide: every parent a
/// real directory (not reached through a symlink: an upper directory
/// there would hide everything the symlink leads to), the last a
/// directory or a symlink to one inside the layer.
fn lower_has(lower: &Lower, rel: &Path) -> Result<bool> {
    let parts = components(rel);
    let Some((last, parents)) = parts.split_last() else {
        return Ok(false);
    };
    let Some(mut dir) = lower.open_dir(Path::new("."))? else {
        return Ok(false);
    };
    for p in parents {
        if dir.entry(p) != Entry::Dir {
            return Ok(false);
        }
        match dir.subdir(p) {
            Some(d) => dir = d,
            None => return Ok(false),
        }
    }
    Ok(match dir.entry(last) {
        Entry::Dir => true,
        Entry::Symlink => lower.dir_attrs(rel).is_some(),
        _ => false,
    })
}

/// Make `rel` an opaque directory in `upper/` when the lower layer has it
/// and the upper layer does not hide it already. Existing directories in
/// `upper/` are kept with their contents; a symlink, file or whiteout on
/// the way hides the lower's directory already and is left alone (never
/// followed).
pub fn hide(upper: &SafeDir, lower: &Lower, rel: &Path) -> Result<()> {
    if !lower_has(lower, rel)? {
        return Ok(());
    }
    let parts = components(rel);
    let mut sofar = std::path::PathBuf::new();
    let mut cur: Option<SafeDir> = None;
    for name in parts {
        sofar.push(name);
        let parent = cur.as_ref().unwrap_or(upper);
        match parent.entry(name)? {
            Entry::Dir | Entry::Missing => {}
            // The lower's directory is hidden by what the guest put here.
            _ => return Ok(()),
        }
        let attrs = lower.dir_attrs(&sofar).unwrap_or(DirAttrs::DEFAULT);
        cur = Some(parent.subdir(name, attrs)?);
    }
    match cur {
        Some(d) => d.set_opaque(),
        None => Ok(()),
    }
}

/// `NestedSdme=yes`: make the lower's `rel` visible again where an earlier
/// start (without the key) made it opaque in `upper/`. Nothing is created;
/// nothing is followed.
pub fn reveal(upper: &SafeDir, rel: &Path) -> Result<()> {
    if let Some(d) = upper.walk_existing(rel)? {
        d.clear_opaque()?;
    }
    Ok(())
}
