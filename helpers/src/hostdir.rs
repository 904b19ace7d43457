//! Directories sdme makes on the host for its own state (a container's
//! state directory, its `work/`, an application's tree): trusted paths
//! under /var/lib/sdme, unlike the guest-written trees of fsutil.rs.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// Create `dir` (and missing parents) with `mode`; an existing directory is
/// kept as it is, anything else there is an error.
pub fn ensure_host_dir(dir: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(m) if m.file_type().is_symlink() => {
            bail!("{} is a symlink; refusing to use it", dir.display())
        }
        Ok(_) => bail!("{} exists and is not a directory", dir.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => bail!("cannot access {}: {e}", dir.display()),
    }
    if let Some(parent) = dir.parent() {
        if !parent.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
    }
    match std::fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return ensure_host_dir(dir, mode)
        }
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
    }
    // The umask may have narrowed the mode.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", dir.display()))
}
