//! What sdme-import checks and does after an import (post.rs), for a
//! build (sdme.build(5), "THE RESULT"):
//!
//! - the base must have systemd: the build boots it to run its steps, so
//!   a `From=` rootfs without it is refused before anything runs, with
//!   the `From=` (`FROM`) line;
//! - the result must still have systemd (a step may have removed it): it
//!   is refused, and nothing is stored, since it would not boot as
//!   `Rootfs=`; no package is installed for it, unlike
//!   `--install-packages`: installing is what the steps are for;
//! - the result gets the same patches for nspawn as an import (masked
//!   `systemd-resolved`, unmasked `systemd-logind`), written into the
//!   staging tree's own directories (never into a file the tree shares
//!   with a layer), and the same warnings for a tree without D-Bus or
//!   login.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use sdme_core::build::Build;

use crate::post::{detect, patch};

/// Refuse a base rootfs at `root` that has no systemd.
pub fn check_base(b: &Build, root: &Path) -> Result<()> {
    if detect::detect(root).systemd.is_some() {
        return Ok(());
    }
    let n = b.from.rootfs().unwrap_or("/");
    let at = b
        .from_at
        .as_ref()
        .map_or_else(|| b.source.display().to_string(), ToString::to_string);
    bail!(
        "{at}: the rootfs {n} ({}) has no systemd: a build boots its base to run its steps; import it with --install-packages=yes, or start from a rootfs with systemd",
        root.display()
    )
}

/// Check and patch the result at `root` (the staging tree of `name`);
/// what was done and the warnings go to `out`.
pub fn after_build(root: &Path, name: &str, out: &mut dyn Write) -> Result<()> {
    let d = detect::detect(root);
    if d.systemd.is_none() {
        bail!(
            "the result has no systemd (a step removed it?): it would not boot as Rootfs={name}; nothing was stored"
        );
    }
    for line in patch::apply(root).context("patching the result for nspawn")? {
        let _ = writeln!(out, "{name}: {line}");
    }
    let warning = if d.dbus.is_none() {
        Some(
            "no D-Bus in the result: it boots, but machinectl shell and systemctl -M will not work",
        )
    } else if !d.login {
        Some("no /etc/pam.d/login or login binary in the result: machinectl shell will not work")
    } else {
        None
    };
    if let Some(w) = warning {
        let _ = writeln!(out, "warning: {name}: {w}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdme_core::build::parse_original;
    use std::fs;

    fn tree(with_systemd: bool) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        for d in ["etc/systemd/system", "usr/lib/systemd/system", "usr/bin"] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        fs::write(r.join("etc/os-release"), "ID=debian\n").unwrap();
        if with_systemd {
            fs::write(r.join("usr/lib/systemd/systemd"), "").unwrap();
        }
        t
    }

    #[test]
    fn a_base_without_systemd_is_one_error_with_the_from_line() {
        let b = parse_original(
            Path::new("/b/web.conf"),
            b"# c\nFROM nosd\nRUN true\n",
            "web",
        )
        .unwrap();
        let t = tree(false);
        let e = check_base(&b, t.path()).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("/b/web.conf:2: the rootfs nosd ({}) has no systemd: a build boots its base to run its steps; import it with --install-packages=yes, or start from a rootfs with systemd", t.path().display())
        );
        check_base(&b, tree(true).path()).unwrap();
    }

    #[test]
    fn the_result_is_checked_and_patched() {
        let t = tree(false);
        let e = after_build(t.path(), "web", &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("the result has no systemd"), "{e}");
        let t = tree(true);
        let r = t.path();
        fs::write(
            r.join("usr/lib/systemd/system/systemd-resolved.service"),
            "",
        )
        .unwrap();
        std::os::unix::fs::symlink(
            "/dev/null",
            r.join("etc/systemd/system/systemd-logind.service"),
        )
        .unwrap();
        let mut out = Vec::new();
        after_build(r, "web", &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("web: masked systemd-resolved.service\n"),
            "{out}"
        );
        assert!(
            out.contains("web: unmasked systemd-logind.service\n"),
            "{out}"
        );
        assert!(
            out.contains("warning: web: no D-Bus in the result"),
            "{out}"
        );
        assert_eq!(
            fs::read_link(r.join("etc/systemd/system/systemd-resolved.service")).unwrap(),
            Path::new("/dev/null")
        );
        assert!(!r.join("etc/systemd/system/systemd-logind.service").exists());
    }
}
