//! `sdme rm`: the file, its drop-ins and the state, never through a
//! mount or a symlink.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sdme_core::container::{instance_machine, Container};
use sdme_core::escape::mount_unit_name;
use sdme_core::name::check_machine_name;
use sdme_core::paths::{container_dir, CONTAINERS_DIR, VOLUMES_DIR};
use sdme_core::render::{prepare_unit_name, unit_service_name};
use sdme_core::search::{search, FileType, UnitName};

use crate::create::{self, ETC_DIR};
use crate::lifecycle::{stop_unit, StopMode};
use crate::lookup::{config, dirs, load_unit};
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
pub fn rm(name: &str, force: bool, volumes: bool) -> Result<()> {
    if let Some(t) = name.strip_suffix('@') {
        return rm_template(t, force, volumes);
    }
    // An instance with a file of its own (NAME@INSTANCE.container) too.
    let unit_name = UnitName::from_stem(name);
    let fallback = match &unit_name {
        UnitName::Instance { template, instance } => {
            check_machine_name(template)
                .and_then(|()| check_machine_name(instance))
                .map_err(anyhow::Error::msg)?;
            instance_machine(template, instance)
        }
        _ => {
            create::check_name(name)?;
            name.to_string()
        }
    };
    let file = FilePlan::new(name)?;
    // The machine name (MachineName=) decides the state directory; a
    // file with errors has no machine name but its file name.
    let machine = load_unit(&unit_name).map_or(fallback, |c| c.machine);
    let unit = unit_service_name(&unit_name);
    let state = sys::active_state(&unit)?;
    if !matches!(state.as_str(), "inactive" | "failed") {
        if !force {
            bail!("{name} is {state}; stop it first or use rm -f");
        }
        stop_unit(&unit_name, StopMode::Graceful)?;
    }
    let dir = container_dir(&machine);
    if let Some(m) = sys::mounts_below(&dir)?.first() {
        bail!("{m} is still mounted; nothing removed");
    }
    file.remove()?;
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
    remove_tree(&dir)?;
    volumes_of(&machine, volumes)
}

/// The application's anonymous volumes of `machine` (sdme.container(5)
/// "Volume="): removed with `volumes`, otherwise kept, and `rm` says where.
fn volumes_of(machine: &str, remove: bool) -> Result<()> {
    let dir = Path::new(VOLUMES_DIR).join(machine);
    if dir.symlink_metadata().is_err() {
        return Ok(());
    }
    if remove {
        return remove_tree(&dir);
    }
    eprintln!(
        "sdme: the volumes of {machine} are kept in {} (rm --volumes removes them)",
        dir.display()
    );
    Ok(())
}

/// How `rm` takes away the file `STEM.container`: the file that won on the
/// search path, deleted when in /etc/sdme or /run/sdme, and a mask in
/// /etc/sdme when a file of that name is left lower.
struct FilePlan {
    stem: String,
    winner: PathBuf,
    vendor: Option<PathBuf>,
    delete: bool,
}

impl FilePlan {
    /// Everything checked, nothing changed yet.
    fn new(stem: &str) -> Result<FilePlan> {
        let dirs = dirs();
        let files: Vec<PathBuf> = dirs
            .iter()
            .map(|d| d.join(format!("{stem}.container")))
            .filter(|p| p.symlink_metadata().is_ok())
            .collect();
        let Some(winner) = files.first().cloned() else {
            bail!("no container {stem} (no {stem}.container on the search path)");
        };
        if std::fs::read_link(&winner).is_ok_and(|t| t == Path::new("/dev/null")) {
            bail!(
                "{} masks {stem} already; remove the link by hand to unmask it",
                winner.display()
            );
        }
        let delete = deletable(winner.parent().context("file without directory")?);
        // What is left once `winner` is gone, if it is deleted.
        let vendor = files.iter().find(|p| !delete || **p != winner).cloned();
        if vendor.is_some() && dirs.first().map(PathBuf::as_path) != Some(Path::new(ETC_DIR)) {
            bail!("{ETC_DIR} is not the first directory of the search path (SDME_UNIT_DIRS), so a mask there would not apply; nothing removed");
        }
        Ok(FilePlan {
            stem: stem.to_string(),
            winner,
            vendor,
            delete,
        })
    }

    /// Delete or mask the file, and remove its drop-ins where deleted.
    fn remove(&self) -> Result<()> {
        let (stem, winner) = (&self.stem, &self.winner);
        let etc = Path::new(ETC_DIR).join(format!("{stem}.container"));
        match &self.vendor {
            Some(v) => {
                mask(&etc)?;
                println!(
                    "sdme: {stem} is defined by {}: masked with {} -> /dev/null",
                    v.display(),
                    etc.display()
                );
                if self.delete && *winner != etc {
                    std::fs::remove_file(winner)
                        .with_context(|| format!("removing {}", winner.display()))?;
                }
            }
            None => std::fs::remove_file(winner)
                .with_context(|| format!("removing {}", winner.display()))?,
        }
        remove_tree(&Path::new(ETC_DIR).join(format!("{stem}.container.d")))?;
        if self.delete {
            let dir = winner.parent().context("file without directory")?;
            remove_tree(&dir.join(format!("{stem}.container.d")))?;
        }
        Ok(())
    }
}

/// `rm T@`: the template's instances (refused while one runs, without
/// -f, which stops them), their state directories, then the template's
/// file as for any container.
///
/// The instances are the units systemd has loaded (`sdme-T@I.service`)
/// and the state directories `PREFIX-I` (PREFIX: the template's machine
/// name) that no container file on the search path claims and that no
/// other template's longer prefix matches: systemd forgets a stopped
/// instance, its directory stays.
fn rm_template(t: &str, force: bool, volumes: bool) -> Result<()> {
    check_machine_name(t).map_err(anyhow::Error::msg)?;
    let stem = format!("{t}@");
    let file = FilePlan::new(&stem)?;
    let template = UnitName::Template(t.to_string());
    let prefix = load_unit(&template).map_or_else(|_| t.to_string(), |c| c.machine);
    let units: Vec<String> = sys::loaded_units(&[&format!("sdme-{t}@*.service")])?
        .into_iter()
        .filter(|u| !matches!(u.active.as_str(), "inactive" | "failed"))
        .filter_map(|u| instance_of(&u.name, t).map(String::from))
        .collect();
    if !units.is_empty() {
        let names: Vec<String> = units.iter().map(|i| format!("{t}@{i}")).collect();
        if !force {
            bail!(
                "{stem} has running instances: {}; stop them first or use rm -f; nothing removed",
                names.join(", ")
            );
        }
        for i in &units {
            stop_unit(
                &UnitName::Instance {
                    template: t.to_string(),
                    instance: i.clone(),
                },
                StopMode::Graceful,
            )?;
        }
    }
    let dirs = instance_dirs(&prefix)?;
    for d in &dirs {
        if let Some(m) = sys::mounts_below(d)?.first() {
            bail!("{m} is still mounted; nothing removed");
        }
    }
    file.remove()?;
    sys::daemon_reload()?;
    for d in &dirs {
        remove_tree(d)?;
        if let Some(m) = d.file_name().and_then(|m| m.to_str()) {
            volumes_of(m, volumes)?;
        }
    }
    Ok(())
}

/// `sdme-T@I.service` with I non-empty.
fn instance_of<'a>(unit: &'a str, t: &str) -> Option<&'a str> {
    unit.strip_prefix("sdme-")?
        .strip_prefix(t)?
        .strip_prefix('@')?
        .strip_suffix(".service")
        .filter(|i| !i.is_empty())
}

/// The state directories of a template's instances: `PREFIX-I` in
/// `CONTAINERS_DIR` that no container file claims (by its machine name)
/// and that no other template with a longer prefix matches.
fn instance_dirs(prefix: &str) -> Result<Vec<PathBuf>> {
    let (claimed, prefixes) = machines_on_search_path();
    let rd = match std::fs::read_dir(CONTAINERS_DIR) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        r => r.with_context(|| format!("reading {CONTAINERS_DIR}"))?,
    };
    let mut names: Vec<String> = rd
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names
        .into_iter()
        .filter(|n| is_instance_dir(n, prefix, &claimed, &prefixes))
        .map(|n| Path::new(CONTAINERS_DIR).join(n))
        .collect())
}

fn is_instance_dir(dir: &str, prefix: &str, claimed: &[String], prefixes: &[String]) -> bool {
    let of = |p: &str| {
        dir.strip_prefix(p)
            .and_then(|r| r.strip_prefix('-'))
            .is_some_and(|i| !i.is_empty())
    };
    of(prefix)
        && !claimed.iter().any(|c| c == dir)
        && !prefixes.iter().any(|p| p.len() > prefix.len() && of(p))
}

/// The machine names of the container files on the search path, and the
/// machine prefixes of the templates.
fn machines_on_search_path() -> (Vec<String>, Vec<String>) {
    let dirs = dirs();
    let config = config(&dirs);
    let (mut claimed, mut prefixes) = (Vec::new(), Vec::new());
    for f in search(&dirs, FileType::Container).found {
        let machine =
            Container::load_with(&f, &config).map_or_else(|_| f.name.stem(), |c| c.machine);
        match f.name {
            UnitName::Template(_) => prefixes.push(machine),
            _ => claimed.push(machine),
        }
    }
    (claimed, prefixes)
}

/// `rm -a`: every container on the search path, templates with their
/// instances too. On a
/// terminal without `-f` it asks first; elsewhere it needs `-f`.
pub fn rm_all(force: bool, volumes: bool) -> Result<()> {
    // Declared instances go with their template (`rm T@` stops them and
    // removes their state); a file of their own is removed by its name.
    let names: Vec<String> = search(&dirs(), FileType::Container)
        .found
        .into_iter()
        .map(|f| f.name.stem())
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
    crate::each(&names, |n| rm(n, force, volumes))
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
    fn instance_dirs_of_a_template() {
        let claimed = ["web-x".to_string()];
        let prefixes = ["web".to_string(), "web-y".to_string()];
        assert!(is_instance_dir("web-a", "web", &claimed, &prefixes));
        assert!(!is_instance_dir("web-x", "web", &claimed, &prefixes));
        assert!(!is_instance_dir("web-y-1", "web", &claimed, &prefixes));
        assert!(is_instance_dir("web-y-1", "web-y", &claimed, &prefixes));
        assert!(!is_instance_dir("web-", "web", &claimed, &prefixes));
        assert!(!is_instance_dir("webx-a", "web", &claimed, &prefixes));
        assert!(!is_instance_dir("web", "web", &claimed, &prefixes));
        assert_eq!(instance_of("sdme-web@1.service", "web"), Some("1"));
        assert_eq!(instance_of("sdme-web@.service", "web"), None);
        assert_eq!(instance_of("sdme-webx@1.service", "web"), None);
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
