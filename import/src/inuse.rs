//! Who uses a rootfs: a container whose prepare step recorded it
//! ([`sdme_core::inuse`]; the only trace of a `PrivateUsers=` container,
//! whose overlay names an ID-mapped clone), a mounted overlay with it as a
//! lower layer (or a bind mount of it), or a `.container` file on the
//! search path with `Rootfs=NAME` (read through sdme-core, the one model
//! of those files).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sdme_core::container::{Container, Rootfs};
use sdme_core::inuse::Record;
use sdme_core::mountinfo::{parse as parse_mountinfo, MountEntry as Mount};
use sdme_core::search::{search, FileType};

use crate::buildlayer::RUN_DIR;

/// The lower directories of an overlay's options (`lowerdir=a:b`, or the
/// `lowerdir+=`/`datadir+=` form of newer mount tools).
fn overlay_lowers(options: &str) -> Vec<String> {
    let mut v = Vec::new();
    for o in options.split(',') {
        if let Some(l) = o.strip_prefix("lowerdir=") {
            v.extend(l.split(':').map(str::to_string));
        } else if let Some(l) = o
            .strip_prefix("lowerdir+=")
            .or_else(|| o.strip_prefix("datadir+="))
        {
            v.push(l.to_string());
        }
    }
    v
}

/// Whether path `p` is `dir` or below it (`/` has everything below it).
fn under(p: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    p == dir || (p.starts_with(dir) && p[dir.len()..].starts_with('/'))
}

/// Who an overlay mounted at `mount_point` serves: a build's step
/// (`sdme fs build` or a build unit) or, by default, a container.
fn overlay_user(mount_point: &str) -> String {
    let build = (mount_point.strip_prefix(RUN_DIR))
        .and_then(|r| r.strip_prefix('/'))
        .filter(|n| !n.is_empty() && !n.contains('/'));
    match build {
        Some(n) => format!("the build of rootfs {n} (its step's overlay at {mount_point})"),
        None => format!("the overlay mounted at {mount_point}"),
    }
}

/// Mounts that use `path`.
fn mount_users(path: &Path, mounts: &[Mount]) -> Vec<String> {
    let want = path.to_string_lossy();
    let mut out = Vec::new();
    for m in mounts {
        if m.fs_type == "overlay"
            && overlay_lowers(&m.super_options)
                .iter()
                .any(|l| under(l, &want))
        {
            out.push(overlay_user(&m.mount_point));
        }
    }
    // Bind mounts of the tree: same device, a root at or below the tree's
    // path inside its file system.
    let Ok(md) = std::fs::metadata(path) else {
        return out;
    };
    let dev = (libc::major(md.dev()) as u64, libc::minor(md.dev()) as u64);
    let home = mounts
        .iter()
        .filter(|m| m.dev == dev && under(&want, &m.mount_point))
        .max_by_key(|m| m.mount_point.len());
    if let Some(home) = home {
        let rest = &want[home.mount_point.len()..];
        let rest = rest.trim_start_matches('/');
        let in_fs = if home.root == "/" {
            format!("/{rest}")
        } else {
            format!("{}/{rest}", home.root)
        };
        let in_fs = in_fs.trim_end_matches('/').to_string();
        for m in mounts {
            if m.dev == dev
                && !std::ptr::eq(m, home)
                && under(&m.root, &in_fs)
                && !under(&m.mount_point, &want)
            {
                out.push(format!("the mount at {}", m.mount_point));
            }
        }
    }
    out
}

/// `.container` files on the search path whose `Rootfs=` is `name`, or
/// whose application (`App=`) is.
fn file_users(name: &str, dirs: &[PathBuf]) -> Vec<String> {
    let s = search(dirs, FileType::Container);
    s.found
        .iter()
        .filter_map(|f| match Container::load(f) {
            Ok(c) if c.rootfs == Rootfs::Named(name.to_string()) => {
                Some(format!("{} (Rootfs={name})", f.path.display()))
            }
            Ok(c) if c.app.as_ref().is_some_and(|a| a.rootfs() == name) => {
                Some(format!("{} (App=, rootfs {name})", f.path.display()))
            }
            _ => None,
        })
        .collect()
}

/// What systemd says of a unit: whether it is active, activating or
/// deactivating, or has a job queued. `None` when it cannot be asked.
fn unit_busy(unit: &str) -> Option<bool> {
    let out = std::process::Command::new("systemctl")
        .args([
            "show",
            "--property=ActiveState",
            "--property=Job",
            "--",
            unit,
        ])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(busy_from_show(&String::from_utf8_lossy(&out.stdout)))
}

/// `systemctl show -p ActiveState -p Job` output: busy unless inactive or
/// failed with no job (systemctl prints `Job=` only when there is one).
fn busy_from_show(text: &str) -> bool {
    let mut idle = false;
    for l in text.lines() {
        match l.split_once('=') {
            Some(("ActiveState", "inactive" | "failed")) => idle = true,
            Some(("ActiveState", _)) => return true,
            Some(("Job", j)) if !j.is_empty() && j != "0" => return true,
            _ => {}
        }
    }
    !idle
}

/// The containers whose records say they use `path`, and are true now.
///
/// A record can outlive its container when the stop step never ran (it
/// was killed, or the start failed after the prepare step), and must not
/// block `--force` for the rest of the boot; so a record counts only while
/// it can be true: its `merged/` is mounted, or (a declared container
/// between its prepare unit and its mount unit) its service is active,
/// activating or has a job. A record whose service cannot be asked counts.
/// The caller holds the rootfs's use lock exclusively, so no prepare step
/// is half-way (each holds it shared while it runs and mounts).
fn record_users(path: &Path, records: &[Record], mounts: &[Mount]) -> Vec<String> {
    let mut out = Vec::new();
    for r in records.iter().filter(|r| r.uses(path)) {
        let merged = r.merged.to_string_lossy();
        if mounts.iter().any(|m| m.mount_point == merged) {
            let unit = r
                .unit
                .as_deref()
                .map(|u| format!("{u}, "))
                .unwrap_or_default();
            out.push(format!(
                "container {} ({unit}its overlay at {merged})",
                r.machine
            ));
            continue;
        }
        let Some(u) = &r.unit else { continue };
        match unit_busy(u) {
            Some(false) => {}
            Some(true) => out.push(format!("container {} ({u}, starting)", r.machine)),
            None => out.push(format!(
                "container {} ({u}, state unknown: systemctl cannot be asked; if it does \
                 not run, remove {}/{})",
                r.machine,
                sdme_core::inuse::RECORD_DIR,
                r.machine
            )),
        }
    }
    out
}

/// Everything that uses rootfs `name` at `path`; empty when unused.
/// `records`: the directory of the use records (`/run/sdme/inuse`).
pub fn users(name: &str, path: &Path, with_files: bool, records: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .context("cannot read /proc/self/mountinfo")?;
    let mounts = parse_mountinfo(&text);
    let recs = sdme_core::inuse::read_all(records)
        .with_context(|| format!("cannot read {}", records.display()))?;
    let mut v = record_users(path, &recs, &mounts);
    // The overlays the records named already.
    let named: Vec<String> = recs
        .iter()
        .filter(|r| r.uses(path))
        .flat_map(|r| {
            // The application's overlay is at STATE/app/merged.
            let app = (r.merged.parent()).map(|s| s.join("app/merged"));
            [Some(r.merged.clone()), app].into_iter().flatten()
        })
        .map(|m| format!("the overlay mounted at {}", m.to_string_lossy()))
        .collect();
    v.extend(
        mount_users(path, &mounts)
            .into_iter()
            .filter(|u| !named.contains(u)),
    );
    if with_files {
        let (dirs, _) = sdme_core::paths::unit_dirs();
        v.extend(file_users(name, &dirs));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_overlay_names_the_build() {
        assert_eq!(
            overlay_user("/run/sdme/build/web"),
            "the build of rootfs web (its step's overlay at /run/sdme/build/web)"
        );
        for other in ["/run/sdme/build", "/run/sdme/build/", "/run/sdme/build/a/b"] {
            assert_eq!(
                overlay_user(other),
                format!("the overlay mounted at {other}")
            );
        }
    }

    #[test]
    fn overlays_and_binds() {
        let t = "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
                 40 22 0:50 / /var/lib/sdme/containers/a/merged rw - overlay overlay rw,lowerdir=/var/lib/sdme/rootfs/deb,upperdir=/x/upper,workdir=/x/work\n\
                 41 22 0:51 / /var/lib/sdme/containers/b/merged rw - overlay overlay rw,lowerdir+=/var/lib/sdme/rootfs/other,upperdir=/y/upper\n\
                 42 22 8:1 /var/lib/sdme/rootfs/deb /run/sdme/idmap/c rw - ext4 /dev/sda1 rw\n";
        let m = parse_mountinfo(t);
        assert_eq!(m.len(), 4);
        assert_eq!(
            overlay_lowers(&m[2].super_options),
            ["/var/lib/sdme/rootfs/other"]
        );
        let lowers = overlay_lowers(&m[1].super_options);
        assert_eq!(lowers, ["/var/lib/sdme/rootfs/deb"]);
        // The bind-mount check needs the path to exist: use the overlay part.
        let u = mount_users(Path::new("/var/lib/sdme/rootfs/deb"), &m);
        assert_eq!(
            u,
            ["the overlay mounted at /var/lib/sdme/containers/a/merged"]
        );
        assert!(mount_users(Path::new("/var/lib/sdme/rootfs/de"), &m).is_empty());
    }

    #[test]
    fn paths_under() {
        assert!(under("/var/lib/x", "/"));
        assert!(under("/var/lib/x", "/var/lib"));
        assert!(under("/var/lib/x", "/var/lib/x"));
        assert!(under("/var/lib/x", "/var/lib/"));
        assert!(!under("/var/lib/xy", "/var/lib/x"));
        assert!(!under("/var", "/var/lib"));
    }

    #[test]
    fn bind_mount_of_a_tree_on_the_root_file_system() {
        // The tree must exist (its device is compared): a temporary one,
        // seen as on a file system mounted at `/` with its own device.
        let t = tempfile::tempdir().unwrap();
        let md = std::fs::metadata(t.path()).unwrap();
        let (ma, mi) = (libc::major(md.dev()), libc::minor(md.dev()));
        let p = t.path().to_string_lossy();
        let text = format!(
            "1 0 {ma}:{mi} /hostroot / rw - ext4 /dev/vda rw\n\
             2 1 {ma}:{mi} /hostroot{p} /mnt/bound rw - ext4 /dev/vda rw\n"
        );
        let m = parse_mountinfo(&text);
        assert_eq!(mount_users(t.path(), &m), ["the mount at /mnt/bound"]);
    }

    #[test]
    fn records_count_while_mounted() {
        let m = parse_mountinfo(
            "40 22 0:50 / /var/lib/sdme/containers/u/merged rw - overlay overlay rw,lowerdir=/run/sdme/idmap/u/lower,upperdir=/x/upper,workdir=/x/work\n",
        );
        let rec = |machine: &str, lower: &str| Record {
            app: None,
            machine: machine.into(),
            lower: lower.into(),
            merged: format!("/var/lib/sdme/containers/{machine}/merged").into(),
            unit: None,
            source: None,
        };
        let mut with_app = rec("u", "/");
        with_app.app = Some("/var/lib/sdme/rootfs/bb".into());
        let recs = [
            rec("u", "/var/lib/sdme/rootfs/deb"),
            // Stale: nothing mounted, no unit to ask.
            rec("gone", "/var/lib/sdme/rootfs/deb"),
            rec("o", "/var/lib/sdme/rootfs/other"),
            // Its application's rootfs (App=): in use as well.
            with_app,
        ];
        let u = record_users(Path::new("/var/lib/sdme/rootfs/deb"), &recs, &m);
        assert_eq!(u.len(), 1, "{u:?}");
        assert!(u[0].starts_with("container u ("), "{u:?}");
        assert!(u[0].contains("/var/lib/sdme/containers/u/merged"), "{u:?}");
        assert!(record_users(Path::new("/var/lib/sdme/rootfs/other"), &recs, &m).is_empty());
        let u = record_users(Path::new("/var/lib/sdme/rootfs/bb"), &recs, &m);
        assert_eq!(u.len(), 1, "{u:?}");
        assert!(u[0].starts_with("container u ("), "{u:?}");
    }

    #[test]
    fn systemctl_show_states() {
        assert!(!busy_from_show("ActiveState=inactive\n"));
        assert!(!busy_from_show("ActiveState=failed\n"));
        assert!(busy_from_show("ActiveState=inactive\nJob=42\n"));
        assert!(busy_from_show("ActiveState=activating\n"));
        assert!(busy_from_show("ActiveState=active\n"));
        assert!(busy_from_show(""), "nothing said: counts");
    }

    #[test]
    fn container_files() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("web.container"), "[Container]\nRootfs=deb\n").unwrap();
        std::fs::write(t.path().join("db.container"), "[Container]\nRootfs=other\n").unwrap();
        std::fs::write(t.path().join("app.container"), "[Container]\nApp=deb\n").unwrap();
        let u = file_users("deb", &[t.path().to_path_buf()]);
        assert_eq!(u.len(), 2, "{u:?}");
        assert!(u[0].contains("app.container (App=, rootfs deb)"), "{u:?}");
        assert!(u[1].contains("web.container"), "{u:?}");
        assert!(file_users("none", &[t.path().to_path_buf()]).is_empty());
    }
}
