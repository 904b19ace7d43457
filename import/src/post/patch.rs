//! Small changes that make a tree boot well under systemd-nspawn.
//!
//! They run after the image's package manager may have: the writes go
//! through [`TreeDir`] (directory fds, no symlink followed).

use std::ffi::OsStr;
use std::path::Path;

use anyhow::{Context, Result};

use super::confine;
use super::tree::{open_root, TreeDir};

const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

const ETC_UNITS: &str = "etc/systemd/system";

/// Apply the patches; returns one line per change made.
///
/// * `systemd-resolved.service` masked: a container's DNS comes from the
///   resolv.conf nspawn (or sdme-prepare) provides, and a resolved inside
///   would take 127.0.0.53, which on a shared network is the host's.
/// * `systemd-logind.service` unmasked (container images often mask it):
///   without logind, `machinectl shell` and `systemd-run -M` sessions fail.
pub fn apply(root: &Path) -> Result<Vec<String>> {
    let mut done = Vec::new();
    let tree = open_root(root)?;
    let units = tree.dir(ETC_UNITS, false)?;
    if unit_exists(root, "systemd-resolved.service")
        && !units
            .as_ref()
            .is_some_and(|d| masked(d, "systemd-resolved.service"))
    {
        let made;
        let dir = match &units {
            Some(d) => d,
            None => {
                made = tree
                    .dir(ETC_UNITS, true)?
                    .context("no /etc/systemd/system")?;
                &made
            }
        };
        let null = std::ffi::CString::new("/dev/null")?;
        dir.replace_with_symlink(OsStr::new("systemd-resolved.service"), &null)?;
        done.push("masked systemd-resolved.service".to_string());
    }
    for unit in [
        "systemd-logind.service",
        "dbus-org.freedesktop.login1.service",
    ] {
        if let Some(d) = units.as_ref().filter(|d| masked(d, unit)) {
            d.unlink(OsStr::new(unit))?;
            done.push(format!("unmasked {unit}"));
        }
    }
    Ok(done)
}

fn unit_exists(root: &Path, unit: &str) -> bool {
    UNIT_DIRS.iter().any(|d| {
        confine::resolve(root, &Path::new(d).join(unit)).is_some_and(|(host, _)| host.is_file())
    })
}

/// UNIT in /etc/systemd/system is a symlink to /dev/null.
fn masked(dir: &TreeDir, unit: &str) -> bool {
    dir.readlink(OsStr::new(unit))
        .ok()
        .flatten()
        .is_some_and(|t| t.as_bytes() == b"/dev/null")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn masks_resolved_and_unmasks_logind() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("usr/lib/systemd/system")).unwrap();
        std::fs::write(
            r.join("usr/lib/systemd/system/systemd-resolved.service"),
            "",
        )
        .unwrap();
        std::fs::create_dir_all(r.join("etc/systemd/system")).unwrap();
        symlink(
            "/dev/null",
            r.join("etc/systemd/system/systemd-logind.service"),
        )
        .unwrap();
        let done = apply(r).unwrap();
        assert_eq!(
            done,
            vec![
                "masked systemd-resolved.service",
                "unmasked systemd-logind.service"
            ]
        );
        assert_eq!(
            std::fs::read_link(r.join("etc/systemd/system/systemd-resolved.service")).unwrap(),
            Path::new("/dev/null")
        );
        assert!(
            std::fs::symlink_metadata(r.join("etc/systemd/system/systemd-logind.service")).is_err()
        );
        // Idempotent.
        assert!(apply(r).unwrap().is_empty());
    }

    #[test]
    fn nothing_to_do_without_resolved() {
        let t = tempfile::tempdir().unwrap();
        assert!(apply(t.path()).unwrap().is_empty());
        assert!(!t.path().join("etc").exists());
    }

    #[test]
    fn refuses_a_symlinked_etc() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("usr/lib/systemd/system")).unwrap();
        std::fs::write(
            r.join("usr/lib/systemd/system/systemd-resolved.service"),
            "",
        )
        .unwrap();
        symlink(outside.path(), r.join("etc")).unwrap();
        assert!(apply(r).is_err());
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
    }
}
