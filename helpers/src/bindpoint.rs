//! Mount points for `Bind=` under `PrivateUsers=`. nspawn creates a
//! missing bind destination itself, as host root; on an overlay of
//! ID-mapped layers host root has no ID, and the mkdir fails with
//! EOVERFLOW ("Value too large for defined data type"), so the container
//! would not start. sdme-prepare makes the destination in `upper/` first,
//! owned by 0 on disk (the container's root), as it does for /tmp and
//! /root (see [`crate::prepare::ensure_mount_points`]).

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::fsutil::{rel_names, DirAttrs, Entry, Lower, SafeDir};

/// What the merged view (upper over lower) has at a path.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// Something is there: nspawn mounts on it.
    Exists,
    /// Nothing there: it must be made.
    Missing,
    /// A non-directory on the way (a symlink, a file): nothing is made,
    /// so no link is ever replaced; nspawn reports what it finds.
    Blocked,
}

/// Make the bind destination `rel` (a container path) in `upper`: a file
/// when the source is a file, else a directory; parents missing from the
/// merged view are made too, with the lower's attributes where it has
/// them (as overlayfs's copy-up would).
pub fn ensure(upper: &SafeDir, lower: &Lower, rel: &Path, file: bool) -> Result<()> {
    let Some(name) = rel.file_name() else {
        return Ok(());
    };
    if look(upper, lower, rel)? != Seen::Missing {
        return Ok(());
    }
    let parent = rel.parent().unwrap_or(Path::new(""));
    let attrs = |r: &Path| lower.dir_attrs(r).unwrap_or(DirAttrs::DEFAULT);
    let made;
    let dir = if parent.as_os_str().is_empty() {
        upper
    } else {
        made = upper.walk_create(parent, &attrs)?;
        &made
    };
    if file {
        dir.write_file(name, b"", 0o644)
    } else {
        dir.subdir(name, DirAttrs::DEFAULT).map(|_| ())
    }
}

/// Walk `rel` through both layers without following anything.
fn look(upper: &SafeDir, lower: &Lower, rel: &Path) -> Result<Seen> {
    let names = rel_names(rel);
    // Below an opaque upper directory, or an upper directory over a lower
    // non-directory, the lower layer is not seen.
    let mut lower_seen = true;
    let mut parent = PathBuf::new();
    for (i, name) in names.iter().enumerate() {
        let last = i + 1 == names.len();
        let up = if i == 0 {
            upper.entry(name)?
        } else {
            match upper.walk_existing(&parent)? {
                Some(d) => d.entry(name)?,
                None => Entry::Missing,
            }
        };
        let low = if lower_seen {
            // "." for the top: the lower opens paths relative to its root.
            let at = if i == 0 { Path::new(".") } else { &parent };
            lower
                .open_dir(at)?
                .map_or(Entry::Missing, |d| d.entry(name))
        } else {
            Entry::Missing
        };
        parent.push(name);
        match up {
            Entry::Dir => {
                let opaque = upper
                    .walk_existing(&parent)?
                    .map(|d| d.opaque_value())
                    .transpose()?
                    .flatten()
                    .is_some_and(|v| v == b"y");
                lower_seen = lower_seen && !opaque && low == Entry::Dir;
            }
            Entry::Whiteout => return Ok(Seen::Missing),
            Entry::Missing => match low {
                Entry::Dir => {}
                Entry::Missing | Entry::Whiteout => return Ok(Seen::Missing),
                _ if last => return Ok(Seen::Exists),
                _ => return Ok(Seen::Blocked),
            },
            _ if last => return Ok(Seen::Exists),
            _ => return Ok(Seen::Blocked),
        }
    }
    Ok(Seen::Exists)
}
