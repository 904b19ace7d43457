//! `sdme rm`: the file, its drop-ins and the state, never through a
//! mount or a symlink.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sdme_core::escape::mount_unit_name;
use sdme_core::paths::container_dir;
use sdme_core::render::prepare_unit_name;
use sdme_core::search::{search, FileType, UnitName};

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

/// Where `rm` deletes a file; lower directories (`/usr/local/lib/sdme`,
/// `/usr/lib/sdme`, or any other on `$SDME_UNIT_DIRS`) belong to a
/// package, so their file is masked in `/etc/sdme` instead. `/run/sdme`
/// holds this boot's runtime files: deleted like the administrator's.
const RUN_DIR: &str = "/run/sdme";

fn deletable(dir: &Path) -> bool {
    dir == Path::new(ETC_DIR) || dir == Path::new(RUN_DIR)
}

/// Link `/etc/sdme/NAME.container` to `/dev/null`, replacing a file there
/// in one rename, so the vendor file never applies in between.
fn mask(etc: &Path) -> Result<()> {
    let dir = etc.parent().context("no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".sdme-mask-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink("/dev/null", &tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    std::fs::rename(&tmp, etc).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("masking with {}", etc.display())
    })
}

/// `rm` deletes the file in `/etc/sdme` or `/run/sdme` that defines the
/// container (whoever wrote it: the file is the container) with its
/// drop-ins there, and the state; when a file of that name is left lower on
/// the search path (a vendor's), a `/dev/null` link in `/etc/sdme` masks it.
pub fn rm(name: &str, force: bool) -> Result<()> {
    create::check_name(name)?;
    let dirs = dirs();
    let etc = Path::new(ETC_DIR).join(format!("{name}.container"));
    let files: Vec<PathBuf> = dirs
        .iter()
        .map(|d| d.join(format!("{name}.container")))
        .filter(|p| p.symlink_metadata().is_ok())
        .collect();
    let Some(winner) = files.first().cloned() else {
        bail!("no container {name} (no {name}.container on the search path)");
    };
    if std::fs::read_link(&winner).is_ok_and(|t| t == Path::new("/dev/null")) {
        bail!(
            "{} masks {name} already; remove the link by hand to unmask it",
            winner.display()
        );
    }
    let dir = winner
        .parent()
        .context("file without directory")?
        .to_path_buf();
    let delete = deletable(&dir);
    // What is left once `winner` is gone, if it is deleted.
    let vendor = files.iter().find(|p| !delete || **p != winner).cloned();
    if vendor.is_some() && dirs.first().map(PathBuf::as_path) != Some(Path::new(ETC_DIR)) {
        bail!("{ETC_DIR} is not the first directory of the search path (SDME_UNIT_DIRS), so a mask there would not apply; nothing removed");
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
    match &vendor {
        Some(v) => {
            mask(&etc)?;
            println!(
                "sdme: {name} is defined by {}: masked with {} -> /dev/null",
                v.display(),
                etc.display()
            );
            if delete && winner != etc {
                std::fs::remove_file(&winner)
                    .with_context(|| format!("removing {}", winner.display()))?;
            }
        }
        None => std::fs::remove_file(&winner)
            .with_context(|| format!("removing {}", winner.display()))?,
    }
    remove_tree(&Path::new(ETC_DIR).join(format!("{name}.container.d")))?;
    if delete {
        remove_tree(&dir.join(format!("{name}.container.d")))?;
    }
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

/// `rm -a`: every container on the search path (not templates). On a
/// terminal without `-f` it asks first; elsewhere it needs `-f`.
pub fn rm_all(force: bool) -> Result<()> {
    let names: Vec<String> = search(&dirs(), FileType::Container)
        .found
        .into_iter()
        .filter_map(|f| match f.name {
            UnitName::Plain(n) => Some(n),
            _ => None,
        })
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    if !force {
        if !std::io::stdin().is_terminal() {
            bail!(
                "rm -a removes every container: confirm on a terminal or add -f; nothing removed"
            );
        }
        eprint!(
            "Remove {} containers ({})? [y/N] ",
            names.len(),
            names.join(", ")
        );
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .context("reading the answer")?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            bail!("nothing removed");
        }
    }
    crate::each(&names, |n| rm(n, force))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_replaces_a_file_with_a_link_to_dev_null() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.container");
        std::fs::write(&f, "[Container]\n").unwrap();
        mask(&f).unwrap();
        assert_eq!(std::fs::read_link(&f).unwrap(), Path::new("/dev/null"));
        let new = d.path().join("b.container");
        mask(&new).unwrap();
        assert_eq!(std::fs::read_link(&new).unwrap(), Path::new("/dev/null"));
        // No temporary link left behind.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 2);
    }

    #[test]
    fn only_etc_and_run_files_are_deleted() {
        assert!(deletable(Path::new("/etc/sdme")));
        assert!(deletable(Path::new("/run/sdme")));
        assert!(!deletable(Path::new("/usr/lib/sdme")));
        assert!(!deletable(Path::new("/usr/local/lib/sdme")));
    }

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
