//! The base of a build without `From=` (sdme.build(5)): a snapshot of
//! the host's `/`, kept in the cache under the base key. The host's `/`
//! cannot be an overlay lower itself here: the cache layers live below
//! it, and overlayfs refuses a lower inside another ("overlapping
//! lowerdir path", ELOOP); a container's upper may be, which is why
//! containers can clone `/` directly.
//!
//! The snapshot gets what a host-clone container gets from its defaults
//! (sdme.container(5) `OpaqueDir=`, `NestedSdme=`, and the prepare
//! helper's host-clone stubs), since the result boots as an ordinary
//! rootfs: the host's units and enablement links
//! (`/etc/systemd/system`), logs (`/var/log`) and sdme's own files are
//! left out (their directories copied empty), `fstab` is empty and
//! `crypttab`, `integritytab`, `veritytab` are emptied, and the
//! `dbus.service` alias is kept so that D-Bus starts. It is bounded in
//! size (`--max-size`).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::budget::{human, Budget};
use crate::buildlayer::{copy_opts, skip_state_dir, store_layer};
use crate::buildopts::Opts;
use crate::cancel;
use crate::copy::{copy_tree, CopyOpts};
use crate::store::remove_tree;

/// Directories of the host copied empty (see the module's doc).
pub const HIDDEN: [&str; 5] = [
    "etc/systemd/system",
    "var/log",
    "etc/sdme",
    "usr/local/lib/sdme",
    "usr/lib/sdme",
];

/// What the prepare helper writes into a host clone's `/etc` files.
const STUB: &str = "# Written by sdme-build: this rootfs is a snapshot of the host's /;\n\
# the host's disks, file systems and swap are not set up inside it.\n";

/// The snapshot of `/` for the base key `key`: the cached one, or a new
/// one (also with `opts.no_cache`).
pub fn host_base(
    layers: &Path,
    state_dir: &Path,
    key: &str,
    name: &str,
    opts: Opts,
    out: &mut dyn Write,
) -> Result<PathBuf> {
    let dir = layers.join(key);
    if dir.is_dir() && !opts.no_cache {
        return Ok(dir);
    }
    let t = Instant::now();
    let tmp = layers.join(format!(".tmp-{name}-host"));
    remove_tree(&tmp)?;
    mkdir(&tmp)?;
    let r = snapshot(Path::new("/"), &tmp, state_dir, opts.max_size).and_then(|()| cancel::check());
    if let Err(e) = r {
        let _ = remove_tree(&tmp);
        return Err(e);
    }
    store_layer(&tmp, &dir, opts.no_cache)?;
    let _ = writeln!(
        out,
        "the host's / copied as the base in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(dir)
}

/// Copy `root` (the host's `/`) into `dst` as the module's doc says.
pub fn snapshot(root: &Path, dst: &Path, state_dir: &Path, max_size: u64) -> Result<()> {
    let mut skip = skip_state_dir(root, state_dir);
    for d in HIDDEN {
        if let Ok(m) = fs::symlink_metadata(root.join(d)) {
            if m.is_dir() {
                skip.push((m.dev(), m.ino()));
            }
        }
    }
    let budget = Budget::new(max_size);
    let opts = CopyOpts {
        budget: Some(&budget),
        ..copy_opts(&skip, &[])
    };
    if let Err(e) = copy_tree(root, dst, &opts) {
        if budget.used() > budget.max() {
            bail!(
                "the host's {} holds more than {} ({} bytes) of file data, the limit of a build without From= (--max-size); import a rootfs and build From= it, or raise the limit",
                root.display(),
                human(max_size),
                max_size
            );
        }
        return Err(e).with_context(|| format!("cannot snapshot the host's {}", root.display()));
    }
    stub_etc(root, dst)
}

/// The host-clone stubs in the snapshot's `/etc`, and the host's
/// `dbus.service` alias (its `/etc/systemd/system` is left out).
fn stub_etc(root: &Path, dst: &Path) -> Result<()> {
    let etc = dst.join("etc");
    if !etc.is_dir() {
        return Ok(());
    }
    for (f, always) in [
        ("fstab", true),
        ("crypttab", false),
        ("integritytab", false),
        ("veritytab", false),
    ] {
        let p = etc.join(f);
        let exists = fs::symlink_metadata(&p).is_ok();
        if always || exists {
            if exists {
                remove(&p)?;
            }
            fs::write(&p, STUB).with_context(|| format!("cannot write {}", p.display()))?;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644))
                .with_context(|| format!("cannot set the mode of {}", p.display()))?;
        }
    }
    let alias = root.join("etc/systemd/system/dbus.service");
    let system = etc.join("systemd/system");
    if let Ok(t) = fs::read_link(&alias) {
        if dbus_alias_target(&t) && system.is_dir() {
            let p = system.join("dbus.service");
            std::os::unix::fs::symlink(&t, &p)
                .with_context(|| format!("cannot write {}", p.display()))?;
        }
    }
    Ok(())
}

/// A `dbus.service` alias the prepare helper would copy: to
/// dbus-broker.service or dbus-daemon.service under a systemd unit dir.
fn dbus_alias_target(t: &Path) -> bool {
    let t = t.to_string_lossy();
    ["/usr/lib/systemd/system/", "/lib/systemd/system/"]
        .iter()
        .any(|dir| {
            t.strip_prefix(dir)
                .is_some_and(|n| n == "dbus-broker.service" || n == "dbus-daemon.service")
        })
}

fn remove(p: &Path) -> Result<()> {
    if fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) {
        return remove_tree(p);
    }
    fs::remove_file(p).with_context(|| format!("cannot remove {}", p.display()))
}

fn mkdir(p: &Path) -> Result<()> {
    fs::create_dir(p).with_context(|| format!("cannot create {}", p.display()))?;
    fs::set_permissions(p, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot set the mode of {}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn host(t: &Path) -> PathBuf {
        let r = t.join("root");
        for d in [
            "etc/systemd/system/multi-user.target.wants",
            "etc/sdme",
            "var/log/apt",
            "var/lib/sdme/rootfs/x",
            "usr/bin",
            "usr/lib/sdme",
        ] {
            fs::create_dir_all(r.join(d)).unwrap();
        }
        for (f, d) in [
            ("etc/fstab", "UUID=1 / ext4 defaults 0 1\n"),
            ("etc/crypttab", "c UUID=2 none\n"),
            ("etc/systemd/system/data.mount", "[Mount]\n"),
            ("etc/sdme/web.container", "[Container]\n"),
            ("var/log/apt/history.log", "x"),
            ("var/lib/sdme/rootfs/x/f", "x"),
            ("usr/bin/tool", "0123456789"),
        ] {
            fs::write(r.join(f), d).unwrap();
        }
        symlink(
            "/usr/lib/systemd/system/dbus-broker.service",
            r.join("etc/systemd/system/dbus.service"),
        )
        .unwrap();
        r
    }

    #[test]
    fn the_snapshot_hides_what_a_host_clone_hides() {
        let t = tempfile::tempdir().unwrap();
        let root = host(t.path());
        let dst = t.path().join("snap");
        mkdir(&dst).unwrap();
        snapshot(&root, &dst, Path::new("/var/lib/sdme"), 1 << 20).unwrap();
        assert_eq!(fs::read(dst.join("usr/bin/tool")).unwrap(), b"0123456789");
        assert!(!dst.join("usr/local").exists());
        for empty in HIDDEN.iter().chain(&["var/lib/sdme"]) {
            let d = dst.join(empty);
            if !root.join(empty).exists() {
                continue;
            }
            let n: Vec<_> = fs::read_dir(&d)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            let want: &[&str] = if *empty == "etc/systemd/system" {
                &["dbus.service"]
            } else {
                &[]
            };
            assert_eq!(n, want, "{empty}");
        }
        assert_eq!(
            fs::read_link(dst.join("etc/systemd/system/dbus.service")).unwrap(),
            Path::new("/usr/lib/systemd/system/dbus-broker.service")
        );
        for f in ["fstab", "crypttab"] {
            assert_eq!(
                fs::read_to_string(dst.join("etc").join(f)).unwrap(),
                STUB,
                "{f}"
            );
        }
        assert!(!dst.join("etc/integritytab").exists());
    }

    #[test]
    fn the_snapshot_is_bounded() {
        let t = tempfile::tempdir().unwrap();
        let root = host(t.path());
        fs::write(root.join("usr/bin/big"), vec![1u8; 64 << 10]).unwrap();
        let dst = t.path().join("snap");
        mkdir(&dst).unwrap();
        let e = format!(
            "{:#}",
            snapshot(&root, &dst, Path::new("/var/lib/sdme"), 16 << 10).unwrap_err()
        );
        assert!(
            e.starts_with(&format!("the host's {} holds more than 16K (16384 bytes) of file data, the limit of a build without From= (--max-size)", root.display())),
            "{e}"
        );
        assert!(!dbus_alias_target(Path::new("/etc/evil.service")));
    }
}
