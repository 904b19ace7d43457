//! The container's overlay: where it is mounted, whether it is, and the
//! options that build it (used by prepare, the ID-mapped variant and the
//! stop step alike).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::mountinfo;

/// Where the overlay of the container whose state directory is `state`
/// is mounted.
pub fn merged_dir(state: &Path) -> PathBuf {
    state.join("merged")
}

/// Whether anything is mounted at `merged` (errors count as mounted).
pub fn is_mounted(merged: &Path) -> bool {
    overlay_mounted(merged).unwrap_or(true)
}

/// Is an overlay mounted at `STATE/merged`? An unrelated file system there
/// is an error.
pub fn overlay_mounted(merged: &Path) -> Result<bool> {
    let canon = match std::fs::canonicalize(merged) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("cannot resolve {}", merged.display())),
    };
    match mountinfo::mounted_at(&canon)? {
        None => Ok(false),
        Some(m) if m.fs_type == "overlay" => Ok(true),
        Some(m) => bail!(
            "{} has a {} file system mounted on it, not an overlay",
            canon.display(),
            m.fs_type
        ),
    }
}

/// The option string for the overlay; refuses characters that overlayfs
/// would split on.
pub fn overlay_options(lower: &Path, state: &Path) -> Result<String> {
    let parts = [
        ("lowerdir", lower.to_path_buf()),
        ("upperdir", state.join("upper")),
        ("workdir", state.join("work")),
    ];
    let mut out = Vec::new();
    for (k, p) in parts {
        let s = p
            .to_str()
            .ok_or_else(|| anyhow!("{k} path {} is not valid UTF-8", p.display()))?;
        if let Some(c) = s.chars().find(|c| matches!(c, ',' | ':' | '\\' | '\n')) {
            bail!(
                "{k} path {s} contains '{}', which overlay options cannot carry",
                c.escape_default()
            );
        }
        out.push(format!("{k}={s}"));
    }
    let opts = out.join(",");
    if opts.len() >= 4000 {
        bail!("overlay options are too long ({} bytes)", opts.len());
    }
    Ok(opts)
}

/// Mount the overlay at STATE/merged unless one is mounted there already.
pub fn mount_overlay(lower: &Path, state: &Path) -> Result<()> {
    let merged = merged_dir(state);
    if overlay_mounted(&merged)? {
        return Ok(());
    }
    let data = overlay_options(lower, state)?;
    nix::mount::mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| anyhow!("cannot mount overlay on {} ({data}): {e}", merged.display()))
}
