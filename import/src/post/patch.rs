//! Small changes that make a tree boot well under systemd-nspawn.

use std::os::unix::fs::symlink;
use std::path::Path;

use anyhow::{Context, Result};

use super::confine;

const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// Apply the patches; returns one line per change made.
///
/// * `systemd-resolved.service` masked: a container's DNS comes from the
///   resolv.conf nspawn (or sdme-prepare) provides, and a resolved inside
///   would take 127.0.0.53, which on a shared network is the host's.
/// * `systemd-logind.service` unmasked (container images often mask it):
///   without logind, `machinectl shell` and `systemd-run -M` sessions fail.
pub fn apply(root: &Path) -> Result<Vec<String>> {
    let mut done = Vec::new();
    if unit_exists(root, "systemd-resolved.service") && !masked(root, "systemd-resolved.service") {
        mask(root, "systemd-resolved.service")?;
        done.push("masked systemd-resolved.service".to_string());
    }
    for unit in [
        "systemd-logind.service",
        "dbus-org.freedesktop.login1.service",
    ] {
        if masked(root, unit) {
            let p = root.join("etc/systemd/system").join(unit);
            std::fs::remove_file(&p).with_context(|| format!("cannot unmask {}", p.display()))?;
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

/// /etc/systemd/system/UNIT is a symlink to /dev/null.
fn masked(root: &Path, unit: &str) -> bool {
    let p = root.join("etc/systemd/system").join(unit);
    // Only when etc and etc/systemd/system are real directories.
    confine::resolve(root, Path::new("/etc/systemd/system"))
        .is_some_and(|(host, _)| host == root.join("etc/systemd/system"))
        && std::fs::read_link(&p).is_ok_and(|t| t == Path::new("/dev/null"))
}

fn mask(root: &Path, unit: &str) -> Result<()> {
    let dir = confine::create_dirs(root, Path::new("etc/systemd/system"))?;
    let p = dir.join(unit);
    if std::fs::symlink_metadata(&p).is_ok() {
        std::fs::remove_file(&p).with_context(|| format!("cannot replace {}", p.display()))?;
    }
    symlink("/dev/null", &p).with_context(|| format!("cannot mask {}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
