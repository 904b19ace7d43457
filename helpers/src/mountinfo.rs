//! Reading `/proc/self/mountinfo` to ask "what is mounted at this path?".

use std::path::Path;

use anyhow::{Context, Result};

pub use sdme_core::mountinfo::{parse, MountEntry};

/// The topmost mount at exactly `path` (which must be canonical), if any.
pub fn mounted_at(path: &Path) -> Result<Option<MountEntry>> {
    let mounts = sdme_core::mountinfo::read().context("cannot read /proc/self/mountinfo")?;
    let want = path.to_string_lossy();
    Ok(mounts.into_iter().rev().find(|m| m.mount_point == want))
}
