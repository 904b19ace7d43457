//! What every step of a build shares: where the build's overlay is
//! mounted, how a tree is copied into a layer, and how a finished layer
//! is stored in the cache.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::copy::CopyOpts;
use crate::store::remove_tree;

/// Where the build's overlay is mounted (one directory per build name).
pub(crate) const RUN_DIR: &str = "/run/sdme/build";

/// How a build copies (a `Copy=` step, the host snapshot, the result):
/// owners kept (a build runs as root), within one file system, the
/// directories `skip_dirs` copied empty, files of `link_from` linked.
pub fn copy_opts<'a>(skip_dirs: &'a [(u64, u64)], link_from: &'a [PathBuf]) -> CopyOpts<'a> {
    CopyOpts {
        same_owner: true,
        one_file_system: true,
        budget: None,
        progress: None,
        skip_dirs,
        link_from,
    }
}

/// Rename the finished layer `new` to `target`. A layer already there
/// is kept when the same step of another build finished first (same
/// inputs, and another build may be using it), and replaced with
/// `replace` (`--no-cache`: the new run is what was asked for).
pub fn store_layer(new: &Path, target: &Path, replace: bool) -> Result<()> {
    let r = match fs::symlink_metadata(target) {
        Ok(_) if replace => crate::store::rename2(new, target, libc::RENAME_EXCHANGE),
        Ok(_) => Ok(()),
        Err(_) => fs::rename(new, target),
    };
    if let Err(e) = r {
        let _ = remove_tree(new);
        return Err(e).with_context(|| format!("cannot store the layer {}", target.display()));
    }
    // After an exchange `new` holds the old layer; kept: the new one.
    remove_tree(new)
}

pub fn skip_state_dir(merged: &Path, state_dir: &Path) -> Vec<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let rel = state_dir.strip_prefix("/").unwrap_or(state_dir);
    fs::symlink_metadata(merged.join(rel))
        .map(|m| vec![(m.dev(), m.ino())])
        .unwrap_or_default()
}
