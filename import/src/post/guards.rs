//! Temporary changes to the tree while its package manager runs, undone
//! when dropped: the host's resolv.conf in place of the tree's, and
//! Debian's `policy-rc.d` that keeps package scripts from starting
//! services. The undo runs after the image's code did, so it goes through
//! [`TreeDir`] (directory fds, no symlink followed), never by path.

use std::ffi::OsStr;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::tree::{open_root, Kind, TreeDir};
use super::PackageManager;

const RESOLV: &str = "resolv.conf";
/// Where the tree's own resolv.conf waits while the host's is in place.
pub const RESOLV_SAVED: &str = ".resolv.conf.sdme-import";
const POLICY: &str = "policy-rc.d";

fn warn(s: &str) {
    eprintln!("sdme-import: warning: {s}");
}

/// The host's resolv.conf as the tree's /etc/resolv.conf for the run; the
/// tree's own (file, symlink or nothing) put back when dropped.
pub struct ResolvSwap {
    root: TreeDir,
    had_own: bool,
}

impl ResolvSwap {
    pub fn install(root: &Path, host_resolv: &Path) -> Result<ResolvSwap> {
        let content = std::fs::read(host_resolv)
            .with_context(|| format!("cannot read the host's {}", host_resolv.display()))?;
        let root = open_root(root)?;
        let etc = root.dir("etc", true)?.context("etc vanished")?;
        etc.unlink(OsStr::new(RESOLV_SAVED))?;
        let had_own = match etc.kind(OsStr::new(RESOLV))? {
            Kind::Dir => bail!("{}/{RESOLV} is a directory", etc.path().display()),
            Kind::Missing => false,
            _ => {
                etc.rename(OsStr::new(RESOLV), OsStr::new(RESOLV_SAVED))?;
                true
            }
        };
        let swap = ResolvSwap { root, had_own };
        etc.create_file(OsStr::new(RESOLV), &content, 0o644)?;
        Ok(swap)
    }

    fn restore(&self) -> Result<()> {
        // /etc may be a symlink now: dir() refuses to go through it.
        let etc = self.root.dir("etc", false)?.context("/etc was removed")?;
        if etc.kind(OsStr::new(RESOLV))? != Kind::Dir {
            etc.unlink(OsStr::new(RESOLV))?;
        }
        if self.had_own {
            etc.rename(OsStr::new(RESOLV_SAVED), OsStr::new(RESOLV))?;
        }
        Ok(())
    }
}

impl Drop for ResolvSwap {
    fn drop(&mut self) {
        if let Err(e) = self.restore() {
            warn(&format!("resolv.conf not restored: {e:#}"));
        }
    }
}

/// Debian's policy-rc.d "101": package scripts start no services.
/// Removed afterwards (only if we made it).
pub struct PolicyRcD {
    root: Option<TreeDir>,
}

impl PolicyRcD {
    pub fn install(root: &Path, pm: PackageManager) -> Result<PolicyRcD> {
        let none = PolicyRcD { root: None };
        if pm != PackageManager::Apt {
            return Ok(none);
        }
        let tree = open_root(root)?;
        // A /usr/sbin that is missing or not a plain directory: no policy.
        let Ok(Some(sbin)) = tree.dir("usr/sbin", false) else {
            return Ok(none);
        };
        if sbin.kind(OsStr::new(POLICY))? != Kind::Missing {
            return Ok(none);
        }
        sbin.create_file(
            OsStr::new(POLICY),
            b"#!/bin/sh\n# sdme-import: no services while packages install\nexit 101\n",
            0o755,
        )?;
        Ok(PolicyRcD { root: Some(tree) })
    }
}

impl Drop for PolicyRcD {
    fn drop(&mut self) {
        let Some(root) = &self.root else { return };
        let res = root
            .dir("usr/sbin", false)
            .and_then(|d| d.context("/usr/sbin was removed"))
            .and_then(|d| d.unlink(OsStr::new(POLICY)));
        if let Err(e) = res {
            warn(&format!("policy-rc.d not removed: {e:#}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    fn host_resolv(dir: &Path) -> PathBuf {
        let p = dir.join("host-resolv.conf");
        std::fs::write(&p, "nameserver 192.0.2.53\n").unwrap();
        p
    }

    #[test]
    fn resolv_swap_restores_a_symlink() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        symlink(
            "../run/systemd/resolve/stub-resolv.conf",
            root.join("etc/resolv.conf"),
        )
        .unwrap();
        let host = host_resolv(t.path());
        {
            let _swap = ResolvSwap::install(&root, &host).unwrap();
            assert_eq!(
                std::fs::read_to_string(root.join("etc/resolv.conf")).unwrap(),
                "nameserver 192.0.2.53\n"
            );
            // A package script replacing it meanwhile changes nothing.
            std::fs::remove_file(root.join("etc/resolv.conf")).unwrap();
            symlink("/elsewhere", root.join("etc/resolv.conf")).unwrap();
        }
        assert_eq!(
            std::fs::read_link(root.join("etc/resolv.conf")).unwrap(),
            Path::new("../run/systemd/resolve/stub-resolv.conf")
        );
        assert!(std::fs::symlink_metadata(root.join("etc").join(RESOLV_SAVED)).is_err());
    }

    #[test]
    fn resolv_swap_restores_a_file_and_absence() {
        let t = tempfile::tempdir().unwrap();
        let host = host_resolv(t.path());
        let root = t.path().join("a");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/resolv.conf"), "own\n").unwrap();
        drop(ResolvSwap::install(&root, &host).unwrap());
        assert_eq!(
            std::fs::read_to_string(root.join("etc/resolv.conf")).unwrap(),
            "own\n"
        );
        let root = t.path().join("b");
        std::fs::create_dir_all(&root).unwrap();
        {
            let _swap = ResolvSwap::install(&root, &host).unwrap();
            assert!(root.join("etc/resolv.conf").is_file());
        }
        assert!(std::fs::symlink_metadata(root.join("etc/resolv.conf")).is_err());
    }

    #[test]
    fn resolv_swap_refuses_a_symlinked_etc() {
        let t = tempfile::tempdir().unwrap();
        let host = host_resolv(t.path());
        let outside = t.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("resolv.conf"), "host file\n").unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        symlink(&outside, root.join("etc")).unwrap();
        assert!(ResolvSwap::install(&root, &host).is_err());
        assert_eq!(
            std::fs::read_to_string(outside.join("resolv.conf")).unwrap(),
            "host file\n"
        );
    }

    /// The image's code swaps /etc for a symlink to a host directory while
    /// it runs: the undo must not write there.
    #[test]
    fn undo_does_not_follow_what_the_image_planted() {
        let t = tempfile::tempdir().unwrap();
        let host = host_resolv(t.path());
        let outside = t.path().join("host-etc");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("resolv.conf"), "host file\n").unwrap();
        std::fs::write(outside.join(RESOLV_SAVED), "planted\n").unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("usr/sbin")).unwrap();
        std::fs::write(root.join("etc/resolv.conf"), "own\n").unwrap();
        {
            let _swap = ResolvSwap::install(&root, &host).unwrap();
            let _policy = PolicyRcD::install(&root, PackageManager::Apt).unwrap();
            assert!(root.join("usr/sbin/policy-rc.d").is_file());
            std::fs::rename(root.join("etc"), root.join("etc.moved")).unwrap();
            symlink(&outside, root.join("etc")).unwrap();
            std::fs::remove_dir_all(root.join("usr/sbin")).unwrap();
            symlink(&outside, root.join("usr/sbin")).unwrap();
            std::fs::write(outside.join(POLICY), "host's\n").unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(outside.join("resolv.conf")).unwrap(),
            "host file\n"
        );
        assert_eq!(
            std::fs::read_to_string(outside.join(RESOLV_SAVED)).unwrap(),
            "planted\n"
        );
        assert_eq!(
            std::fs::read_to_string(outside.join(POLICY)).unwrap(),
            "host's\n"
        );
    }
}
