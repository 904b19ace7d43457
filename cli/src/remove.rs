//! `sdme rm`: the file, its drop-ins and the state, never through a
//! mount or a symlink.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sdme_core::escape::mount_unit_name;
use sdme_core::paths::container_dir;
use sdme_core::render::prepare_unit_name;

use crate::create::{self, ETC_DIR};
use crate::lifecycle::{stop, StopMode};
use crate::lookup::{dirs, load, service};
use crate::sys;

/// Remove a file or a tree without following symlinks: a symlink is
/// removed as a link (std's remove_dir_all does not follow links below).
fn remove_tree(p: &Path) -> Result<()> {
    match p.symlink_metadata() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("inspecting {}", p.display())),
        Ok(m) if m.is_dir() => {
            std::fs::remove_dir_all(p).with_context(|| format!("removing {}", p.display()))
        }
        Ok(_) => std::fs::remove_file(p).with_context(|| format!("removing {}", p.display())),
    }
}

/// `rm` removes only `/etc/sdme/NAME.container` (whoever wrote it: the
/// file is the container, however it was made) with its drop-ins in
/// `/etc/sdme/NAME.container.d/`, then the state. Files elsewhere on the
/// search path belong to the vendor or to runtime tools: refused.
pub fn rm(name: &str, force: bool) -> Result<()> {
    create::check_name(name)?;
    let dirs = dirs();
    let etc = Path::new(ETC_DIR).join(format!("{name}.container"));
    let files: Vec<PathBuf> = dirs
        .iter()
        .map(|d| d.join(format!("{name}.container")))
        .filter(|p| p.symlink_metadata().is_ok())
        .collect();
    match files.first() {
        None => bail!("no container {name} (no {name}.container on the search path)"),
        Some(p) if *p != etc => bail!(
            "{name} is defined by {}, not by a file in {ETC_DIR}; sdme rm does not remove vendor or runtime files (mask it with a symlink to /dev/null in {ETC_DIR})",
            p.display()
        ),
        Some(_) => {}
    }
    if let Some(other) = files.get(1) {
        bail!(
            "removing {} would bring back {}, which defines {name} too; remove or mask that one instead",
            etc.display(),
            other.display()
        );
    }
    if std::fs::read_link(&etc).is_ok_and(|t| t == Path::new("/dev/null")) {
        bail!(
            "{} masks {name}; remove the link by hand to unmask it",
            etc.display()
        );
    }
    // The machine name (MachineName=) decides the state directory; a
    // file with errors has no machine name but its file name.
    let machine = load(name).map_or_else(|_| name.to_string(), |c| c.machine);
    let unit = service(name);
    let state = sys::active_state(&unit)?;
    if !matches!(state.as_str(), "inactive" | "failed") {
        if !force {
            bail!("{name} is {state}; stop it first or use rm -f");
        }
        stop(name, StopMode::Graceful)?;
    }
    let dir = container_dir(&machine);
    if let Some(m) = sys::mounts_below(&dir)?.first() {
        bail!("{m} is still mounted; nothing removed");
    }
    std::fs::remove_file(&etc).with_context(|| format!("removing {}", etc.display()))?;
    remove_tree(&Path::new(ETC_DIR).join(format!("{name}.container.d")))?;
    sys::daemon_reload()?;
    // A failed start leaves failed units that would stay listed.
    let mut units = vec![unit, prepare_unit_name(&machine)];
    if let Ok(m) = mount_unit_name(&dir.join("merged").to_string_lossy()) {
        units.push(m);
    }
    let failed: Vec<&String> = units
        .iter()
        .zip(sys::states(&units)?)
        .filter(|(_, (active, _))| active == "failed")
        .map(|(u, _)| u)
        .collect();
    if !failed.is_empty() {
        let mut bus = sys::Bus::system()?;
        for u in failed {
            bus.reset_failed(u)?;
        }
    }
    // Checked again: a start between the two checks would be refused by
    // systemd now that the file is gone, but a mount by hand would not.
    if let Some(m) = sys::mounts_below(&dir)?.first() {
        bail!("{m} is mounted; {} kept", dir.display());
    }
    remove_tree(&dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_tree_removes_links_not_targets() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        let state = d.path().join("state");
        std::fs::create_dir_all(state.join("a/b")).unwrap();
        std::os::unix::fs::symlink(&outside, state.join("upper")).unwrap();
        std::os::unix::fs::symlink(&outside, state.join("a/b/link")).unwrap();
        remove_tree(&state).unwrap();
        assert!(!state.exists());
        assert!(outside.join("keep").exists());
        // A state directory that is itself a link: the link goes.
        let link = d.path().join("evil");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        remove_tree(&link).unwrap();
        assert!(link.symlink_metadata().is_err());
        assert!(outside.join("keep").exists());
        remove_tree(&link).unwrap();
    }
}
