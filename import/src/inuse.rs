//! Who uses a rootfs: a mounted overlay with it as a lower layer (or a
//! bind mount of it, as the ID-mapped lowers of user-namespaced containers
//! are), or a `.container` file on the search path with `Rootfs=NAME`
//! (read through sdme-core, the one model of those files).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sdme_core::container::{Container, Rootfs};
use sdme_core::mountinfo::{parse as parse_mountinfo, MountEntry as Mount};
use sdme_core::search::{search, FileType};

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

fn under(p: &str, dir: &str) -> bool {
    p == dir || (p.starts_with(dir) && p[dir.len()..].starts_with('/'))
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
            out.push(format!("the overlay mounted at {}", m.mount_point));
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

/// `.container` files on the search path whose `Rootfs=` is `name`.
fn file_users(name: &str, dirs: &[PathBuf]) -> Vec<String> {
    let s = search(dirs, FileType::Container);
    s.found
        .iter()
        .filter_map(|f| match Container::load(f) {
            Ok(c) if c.rootfs == Rootfs::Named(name.to_string()) => {
                Some(format!("{} (Rootfs={name})", f.path.display()))
            }
            _ => None,
        })
        .collect()
}

/// Everything that uses rootfs `name` at `path`; empty when unused.
pub fn users(name: &str, path: &Path, with_files: bool) -> Result<Vec<String>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .context("cannot read /proc/self/mountinfo")?;
    let mut v = mount_users(path, &parse_mountinfo(&text));
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
    fn container_files() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("web.container"), "[Container]\nRootfs=deb\n").unwrap();
        std::fs::write(t.path().join("db.container"), "[Container]\nRootfs=other\n").unwrap();
        let u = file_users("deb", &[t.path().to_path_buf()]);
        assert_eq!(u.len(), 1);
        assert!(u[0].contains("web.container"), "{u:?}");
        assert!(file_users("none", &[t.path().to_path_buf()]).is_empty());
    }
}
