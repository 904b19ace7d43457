//! `sdme cp SRC DST`, either side `NAME:/path`: files, directories
//! (recursively), symlinks and device nodes with their owners, modes,
//! extended attributes and times, confined to the container's tree (see
//! layers.rs). A running container is reached through its machine's root
//! (`/proc/LEADER/root`); a stopped one through its layers: read from
//! `upper/` over the lower layer, written into `upper/` (parents copied up
//! from the lower layer with their mode, owners and times; a whiteout in
//! the way replaced, a new directory there made opaque).
//!
//! Containers with a user namespace (`PrivateUsers=`) keep the guest's
//! own IDs on disk (their layers are ID-mapped at mount time, see
//! sdme-prepare's idmap.rs), and owners mean the same on both sides:
//! root inside is 0 on the host, both ways. A stopped one is copied
//! through its layers (owners as they are). Out of a running one, cp
//! reads its layers too: its root shows the shifted IDs (UID base + ID),
//! while the layers hold the guest's own. Reading the layers under a
//! mounted overlay is safe (the guest's writes land in `upper/` inodes
//! themselves); writing them is not (overlayfs does not expect changes
//! to its layers while mounted), so into a running one cp writes through
//! its root from a child in its user namespace (cpns.rs).

use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sdme_core::paths::container_dir;

use crate::cpcheck::{check, ends, is_device, Ends};
use crate::cpmeta::{fd_path, mknod_like, set_meta, utimens};
use crate::cpns::{self, Userns};
use crate::diff::open_upper;
use crate::layers::{self, Dir, Entry, Resolved, View, OPAQUE_XATTR};
use crate::{create, lookup, sys};

/// `NAME:/path` as (NAME, /path); `None` for a host path.
pub fn split_spec(s: &str) -> Option<(&str, &str)> {
    let (n, p) = s.split_once(':')?;
    (!n.is_empty() && !n.contains('/') && p.starts_with('/')).then_some((n, p))
}

/// The machine's leader, through machined.
fn leader(machine: &str) -> Result<u32> {
    sys::Bus::system()?
        .machine_leader(machine)?
        .with_context(|| format!("machine {machine} is not registered (is it still starting?)"))
}

/// The open `/proc/PID` of the machine's leader: the process pinned
/// first, then checked still the leader, so a PID reused after the
/// machine ended never gives the host's root.
fn leader_proc(name: &str, machine: &str) -> Result<(u32, Dir)> {
    let pid = leader(machine)?;
    let proc = Dir::open(Path::new(&format!("/proc/{pid}")))?;
    if leader(machine)? != pid {
        bail!("{name} restarted while being looked up; try again");
    }
    Ok((pid, proc))
}

/// The root of container `name`'s tree, and when the copy goes into a
/// running container with a user namespace, that namespace.
fn container_root(name: &str, write: bool) -> Result<(View, Option<Userns>)> {
    create::check_name(name)?;
    let c = lookup::load(name)?;
    let state = sys::active_state(&lookup::service(name))?;
    let userns = c.private_users_enabled();
    if userns && state != "active" && state != "inactive" && state != "failed" {
        bail!("{name} is {state}: try again once it is running or stopped");
    }
    if state == "active" && (write || !userns) {
        let (pid, proc) = leader_proc(name, &c.machine)?;
        let root = Dir::open(&proc.at(OsStr::new("root")))?;
        let ns = userns
            .then(|| Userns::of(name, &proc))
            .transpose()
            .with_context(|| format!("{name}'s user namespace (leader {pid})"))?;
        return Ok((View::plain(root), ns));
    }
    let state_dir = container_dir(&c.machine);
    // A running container with a user namespace is read through its
    // layers (the header says why that is safe, and writing is not).
    if state != "active" {
        if let Some(m) = sys::mounts_below(&state_dir)?.first() {
            bail!(
                "{name} is not running but {m} is mounted (stopping?); try again once it is stopped"
            );
        }
    }
    let upper = open_upper(&c.machine)?;
    if upper.is_none() && write {
        bail!(
            "{name} has no {}/upper yet: start it once first",
            state_dir.display()
        );
    }
    let lower = Dir::open(Path::new(&c.rootfs.lower_dir()))
        .with_context(|| format!("{name}'s lower layer"))?;
    Ok((
        View {
            upper,
            lower: Some(lower),
            layered: true,
        },
        None,
    ))
}

/// A side of the copy: its tree's root, the path in it, whether it is
/// in a container, and the user namespace a copy into it is written in.
struct Side {
    root: View,
    path: PathBuf,
    container: bool,
    userns: Option<Userns>,
}

fn side(spec: &str, write: bool) -> Result<Side> {
    if let Some((name, path)) = split_spec(spec) {
        let (root, userns) = container_root(name, write)?;
        return Ok(Side {
            root,
            path: PathBuf::from(path),
            container: true,
            userns,
        });
    }
    let p = std::env::current_dir()
        .context("current directory")?
        .join(spec);
    Ok(Side {
        root: View::plain(Dir::open(Path::new("/"))?),
        path: p,
        container: false,
        userns: None,
    })
}

pub fn cp(src: &str, dst: &str) -> Result<()> {
    if let (Some((a, _)), Some((b, _))) = (split_spec(src), split_spec(dst)) {
        if a == b {
            bail!("{src} and {dst} are in one container: use sdme exec {a} -- cp");
        }
    }
    let s = side(src, false)?;
    let d = side(dst, true)?;
    if !s.container && !d.container {
        bail!("neither {src} nor {dst} names a container (NAME:/path)");
    }
    match &d.userns {
        Some(ns) => cpns::copy_in(s.root, &s.path, d.root, &d.path, ns),
        None => copy_path(s.root, &s.path, d.root, &d.path, d.container),
    }
    .with_context(|| format!("copying {src} to {dst}"))
}

/// Copy `spath` of the tree `sroot` to `dpath` of the tree `droot`: into
/// it under the source's name when it is a directory. Device nodes only
/// when `devices` (the destination is a container).
fn copy_path(sroot: View, spath: &Path, droot: View, dpath: &Path, devices: bool) -> Result<()> {
    let Ends {
        s,
        sname,
        se,
        mut d,
        name,
        shown,
    } = ends(sroot, spath, droot, dpath)?;
    let (sname, se) = (&sname, &se);
    let sv = s.stack.last().expect("root");
    // Every refusal known beforehand comes before the first write.
    check(sv, se, sname, d.stack.last(), &name, &shown, devices)?;
    ensure_upper(&mut d)?;
    let dv = d.stack.last().expect("root");
    copy(
        s.stack.last().expect("root"),
        se,
        sname,
        dv,
        &name,
        &shown,
        devices,
    )
}

/// Make every directory of the stack exist in the upper layer, copied up
/// from the lower one (mode, owners, times).
pub fn ensure_upper(r: &mut Resolved) -> Result<()> {
    for i in 1..r.stack.len() {
        if r.stack[i].upper.is_some() {
            continue;
        }
        let (before, rest) = r.stack.split_at_mut(i);
        let parent = before[i - 1].upper.as_ref().context("no upper layer")?;
        let v = &mut rest[0];
        let lower = v.lower.as_ref().context("directory in no layer")?;
        let name = &r.names[i - 1];
        let m = lower.meta()?;
        let p = parent.at(name);
        std::fs::create_dir(&p).with_context(|| format!("copying up {}", p.display()))?;
        let d = parent
            .child(name)?
            .with_context(|| format!("{} vanished", p.display()))?;
        set_meta(&d.path(), &m, &[])?;
        v.upper = Some(d);
    }
    Ok(())
}

/// Copy the entry `sname` of `sv` to `dname` in `dv` (whose upper layer
/// is where it is written).
fn copy(
    sv: &View,
    se: &Entry,
    sname: &OsStr,
    dv: &View,
    dname: &OsStr,
    shown: &Path,
    devices: bool,
) -> Result<()> {
    let du = dv.upper.as_ref().context("no upper layer")?;
    let sdir = sv.dir_of(se);
    let existing = dv.lookup(dname)?;
    let ft = se.meta.file_type();
    if ft.is_dir() {
        if let Some(e) = &existing {
            if !e.meta.is_dir() {
                bail!("{}: exists and is not a directory", shown.display());
            }
        }
        if !existing.as_ref().is_some_and(|e| e.in_upper) {
            let wh = dv.whiteout(dname)?;
            if wh {
                std::fs::remove_file(du.at(dname))?;
            }
            std::fs::create_dir(du.at(dname))
                .with_context(|| format!("creating {}", shown.display()))?;
            if wh {
                // A deleted lower directory stays deleted below the new one.
                let d = du.child(dname)?.context("new directory vanished")?;
                layers::set_xattr(&d.path(), OPAQUE_XATTR, b"y")?;
            }
        }
        let dchild = dv.child(dname)?;
        let schild = sv.child(sname)?;
        for n in schild.names()? {
            if let Some(e) = schild.lookup(&n)? {
                copy(&schild, &e, &n, &dchild, &n, &shown.join(&n), devices)?;
            }
        }
        let d = dchild.upper.as_ref().context("new directory vanished")?;
        let x = layers::list_xattrs(&fd_path(&sdir.opath(sname)?))?;
        return set_meta(&d.path(), &se.meta, &x);
    }
    if existing.is_some_and(|e| e.meta.is_dir()) {
        bail!("{}: is a directory", shown.display());
    }
    let target = du.at(dname);
    if du.lstat(dname)?.is_some() {
        std::fs::remove_file(&target).with_context(|| format!("replacing {}", shown.display()))?;
    }
    if ft.is_file() {
        let mut from = sdir.open_file(sname)?;
        let mut to = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&target)
            .with_context(|| format!("creating {}", shown.display()))?;
        std::io::copy(&mut from, &mut to)
            .with_context(|| format!("writing {}", shown.display()))?;
        let x = layers::list_xattrs(&fd_path(&from))?;
        return set_meta(&fd_path(&to), &se.meta, &x);
    }
    if ft.is_symlink() {
        let t = sdir.read_link(sname)?;
        std::os::unix::fs::symlink(&t, &target)
            .with_context(|| format!("creating {}", shown.display()))?;
        std::os::unix::fs::lchown(&target, Some(se.meta.uid()), Some(se.meta.gid()))?;
        return utimens(&target, &se.meta, libc::AT_SYMLINK_NOFOLLOW);
    }
    if is_device(ft) && !devices {
        bail!(
            "{}: a device node is not copied out of a container",
            shown.display()
        );
    }
    if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() || ft.is_socket() {
        mknod_like(&target, &se.meta, shown)?;
        let x = layers::list_xattrs(&fd_path(&sdir.opath(sname)?))?;
        return set_meta(&fd_path(&du.opath(dname)?), &se.meta, &x);
    }
    bail!("{}: unknown file type", shown.display())
}

/// Names below `r`'s directory, for tests.
#[cfg(test)]
fn resolved_names(r: &Resolved) -> Vec<std::ffi::OsString> {
    r.stack
        .last()
        .unwrap()
        .names()
        .unwrap()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpmeta::cstr;
    use crate::layers::tests::{root, whiteout};
    use crate::layers::{get_xattr, is_opaque, resolve};
    use std::os::unix::fs::symlink;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn specs() {
        assert_eq!(split_spec("web:/etc/x"), Some(("web", "/etc/x")));
        assert_eq!(split_spec("./a:/b"), None);
        assert_eq!(split_spec("web:etc"), None);
        assert_eq!(split_spec("/tmp/x"), None);
    }

    fn layered(u: &Path, l: &Path) -> View {
        View {
            upper: Some(Dir::open(u).unwrap()),
            lower: Some(Dir::open(l).unwrap()),
            layered: true,
        }
    }

    fn host() -> View {
        View::plain(Dir::open(Path::new("/")).unwrap())
    }

    /// Copy `src` (a host path) to `dst` in the tree `root` as cp does.
    fn put(src: &Path, root: View, dst: &str) -> Result<()> {
        copy_path(host(), src, root, Path::new(dst), true)
    }

    #[test]
    fn copy_up_keeps_attributes_and_never_leaves_the_tree() {
        if !root() {
            eprintln!("skipped: needs root (chown, mknod, trusted xattrs)");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let (u, l, h) = (t.path().join("u"), t.path().join("l"), t.path().join("h"));
        std::fs::create_dir_all(l.join("srv/deep")).unwrap();
        std::fs::create_dir_all(l.join("gone")).unwrap();
        std::fs::write(l.join("gone/old"), "old").unwrap();
        std::fs::set_permissions(l.join("srv/deep"), std::fs::Permissions::from_mode(0o711))
            .unwrap();
        std::os::unix::fs::chown(l.join("srv/deep"), Some(7), Some(8)).unwrap();
        std::fs::create_dir_all(&u).unwrap();
        whiteout(&u.join("gone"));
        // A link in the container to the host's secrets: followed inside only.
        std::fs::create_dir_all(l.join("etc")).unwrap();
        symlink("/etc/shadow", l.join("srv/evil")).unwrap();
        std::fs::create_dir_all(h.join("d")).unwrap();
        std::fs::write(h.join("f"), "data").unwrap();
        std::os::unix::fs::chown(h.join("f"), Some(1234), Some(5678)).unwrap();
        std::fs::set_permissions(h.join("f"), std::fs::Permissions::from_mode(0o4750)).unwrap();
        layers::set_xattr(&h.join("f"), "user.k", b"v").unwrap();
        std::fs::write(h.join("d/x"), "x").unwrap();

        put(&h.join("f"), layered(&u, &l), "/srv/deep/").unwrap();
        let m = std::fs::symlink_metadata(u.join("srv/deep/f")).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1234, 5678, 0o4750));
        assert_eq!(
            get_xattr(&u.join("srv/deep/f"), "user.k").as_deref(),
            Some(&b"v"[..])
        );
        let dm = std::fs::symlink_metadata(u.join("srv/deep")).unwrap();
        assert_eq!(
            (dm.uid(), dm.gid(), dm.mode() & 0o7777),
            (7, 8, 0o711),
            "copied up"
        );

        // Written through the link: /etc/shadow of the tree, not the host's.
        put(&h.join("f"), layered(&u, &l), "/srv/evil").unwrap();
        assert_eq!(
            std::fs::read_to_string(u.join("etc/shadow")).unwrap(),
            "data"
        );

        // A directory over a whiteout: opaque, the old content stays gone.
        put(&h.join("d"), layered(&u, &l), "/gone").unwrap();
        assert!(is_opaque(&Dir::open(&u.join("gone")).unwrap()));
        let mut r = resolve(layered(&u, &l), Path::new("/gone"), true).unwrap();
        r.descend().unwrap();
        assert_eq!(resolved_names(&r), ["x"]);

        // A directory onto a file is refused, nothing changed.
        let e = put(&h.join("d"), layered(&u, &l), "/srv/deep/f").unwrap_err();
        assert!(
            e.to_string().contains("exists and is not a directory"),
            "{e}"
        );
        assert_eq!(
            std::fs::read_to_string(u.join("srv/deep/f")).unwrap(),
            "data"
        );

        // A conflict deep in the tree is found before anything is written.
        std::fs::create_dir_all(h.join("t/srv/deep/f")).unwrap();
        std::fs::write(h.join("t/srv/a"), "a").unwrap();
        let e = put(&h.join("t/srv"), layered(&u, &l), "/").unwrap_err();
        assert!(
            e.to_string()
                .contains("/srv/deep/f: exists and is not a directory"),
            "{e}"
        );
        assert!(!u.join("srv/a").exists(), "nothing written");

        // Out of the layers: upper over lower, the whited-out entries left
        // out, a link copied as a link, never followed out.
        let out = t.path().join("out");
        copy_path(layered(&u, &l), Path::new("/srv"), host(), &out, false).unwrap();
        let m = std::fs::symlink_metadata(out.join("deep/f")).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1234, 5678, 0o4750));
        assert_eq!(
            get_xattr(&out.join("deep/f"), "user.k").as_deref(),
            Some(&b"v"[..])
        );
        assert_eq!(
            std::fs::read_link(out.join("evil")).unwrap(),
            Path::new("/etc/shadow")
        );
        let dm = std::fs::symlink_metadata(out.join("deep")).unwrap();
        assert_eq!((dm.uid(), dm.gid(), dm.mode() & 0o7777), (7, 8, 0o711));
        copy_path(
            layered(&u, &l),
            Path::new("/gone"),
            host(),
            &out.join("g"),
            false,
        )
        .unwrap();
        let names: Vec<_> = std::fs::read_dir(out.join("g"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["x"]);
        let dev = l.join("srv/null");
        let c = cstr(&dev).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(
            unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) },
            0
        );
        let e = copy_path(
            layered(&u, &l),
            &dev.strip_prefix(&l)
                .map(|p| Path::new("/").join(p))
                .unwrap(),
            host(),
            &out,
            false,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("device node is not copied out"),
            "{e}"
        );
        put(&dev, layered(&u, &l), "/srv/").unwrap();
        assert!(std::fs::symlink_metadata(u.join("srv/null"))
            .unwrap()
            .file_type()
            .is_char_device());
        let e =
            copy_path(layered(&u, &l), Path::new("/gone/old"), host(), &out, false).unwrap_err();
        assert!(e.to_string().contains("no such file"), "{e}");
    }
}
