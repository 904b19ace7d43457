//! `sdme cp` into a running container with a user namespace
//! (`PrivateUsers=`). Its tree is mounted ID-mapped: the host's root has
//! no ID in it to create files with. So the writes are done by a forked
//! child that joined the guest's user namespace as its root: the kernel
//! maps what it creates and chowns (and the IDs inside ACLs and
//! `security.capability`) through the ID-mapped mount, so a host file
//! owned by 0 becomes root's inside the guest, as through the layers of a
//! stopped one.
//!
//! The child stays in the host's mount namespace: it reaches the guest's
//! tree through `/proc/LEADER/root` opened before the fork (the tree the
//! guest sees, through the same mounts), and every lookup goes through
//! the host's `/proc/self/fd` (layers.rs), never a `/proc` the guest
//! mounted. The guest's root cannot read the host's files (`/root` is
//! 0700), so the parent opens the whole source first, as host root: a
//! snapshot of names, metadata, xattrs, link targets and open files,
//! which the child writes. Every refusal (conflicts, owners outside the
//! namespace's ID range) comes before the fork, so nothing is written.

use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::cpcheck::{check, ends, is_device, Ends};
use crate::cpmeta::{fd_path, mknod_like, set_meta, utimens};
use crate::layers::{self, Dir, Entry, View};

/// The user namespace of a running guest: its file, and the guest IDs
/// it maps (inside, count), per uid_map and gid_map.
pub struct Userns {
    name: String,
    ns: File,
    uids: Vec<(u32, u32)>,
    gids: Vec<(u32, u32)>,
}

/// The inside ranges of a uid_map or gid_map ("inside outside count").
fn ranges(text: &str) -> Vec<(u32, u32)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<u32> = l
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            (f.len() == 3).then(|| (f[0], f[2]))
        })
        .collect()
}

fn mapped(r: &[(u32, u32)], id: u32) -> bool {
    r.iter()
        .any(|&(start, n)| id >= start && u64::from(id) < u64::from(start) + u64::from(n))
}

fn shown_ranges(r: &[(u32, u32)]) -> String {
    let v: Vec<String> = r
        .iter()
        .map(|&(s, n)| format!("{s}-{}", u64::from(s) + u64::from(n).saturating_sub(1)))
        .collect();
    v.join(", ")
}

impl Userns {
    /// The namespace of the leader whose `/proc/PID` is `proc`.
    pub fn of(name: &str, proc: &Dir) -> Result<Userns> {
        let read = |f: &str| {
            std::fs::read_to_string(proc.at(OsStr::new(f))).with_context(|| format!("reading {f}"))
        };
        let ns = File::open(proc.path().join("ns/user")).context("opening ns/user")?;
        Ok(Userns {
            name: name.to_string(),
            ns,
            uids: ranges(&read("uid_map")?),
            gids: ranges(&read("gid_map")?),
        })
    }

    /// An owner the namespace has no ID for would become "nobody".
    fn check_owner(&self, m: &Metadata, shown: &Path) -> Result<()> {
        if !mapped(&self.uids, m.uid()) || !mapped(&self.gids, m.gid()) {
            bail!(
                "{}: owner {}:{} is outside {}'s user namespace (UIDs {}, GIDs {})",
                shown.display(),
                m.uid(),
                m.gid(),
                self.name,
                shown_ranges(&self.uids),
                shown_ranges(&self.gids)
            );
        }
        Ok(())
    }
}

/// The source, read by the parent.
struct Node {
    name: OsString,
    meta: Metadata,
    xattrs: Vec<(String, Vec<u8>)>,
    kind: Kind,
}

enum Kind {
    File(File),
    Dir(Vec<Node>),
    Link(PathBuf),
    /// A device node, FIFO or socket: made with mknod.
    Node,
}

/// Most regular files one copy holds open.
fn max_files() -> usize {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        }
    }
    usize::try_from(r.rlim_cur)
        .unwrap_or(usize::MAX)
        .saturating_sub(64)
}

fn snapshot(
    sv: &View,
    se: Entry,
    sname: &OsStr,
    shown: &Path,
    ns: &Userns,
    files: &mut usize,
) -> Result<Node> {
    ns.check_owner(&se.meta, shown)?;
    let sdir = sv.dir_of(&se);
    let ft = se.meta.file_type();
    let xattrs = || layers::list_xattrs(&fd_path(&sdir.opath(sname)?));
    let kind = if ft.is_dir() {
        let child = sv.child(sname)?;
        let mut nodes = Vec::new();
        for n in child.names()? {
            if let Some(e) = child.lookup(&n)? {
                nodes.push(snapshot(&child, e, &n, &shown.join(&n), ns, files)?);
            }
        }
        Kind::Dir(nodes)
    } else if ft.is_file() {
        *files = files.checked_sub(1).with_context(|| {
            format!(
                "{}: too many files for one copy into a running container with a user namespace; copy less at a time",
                shown.display()
            )
        })?;
        Kind::File(sdir.open_file(sname)?)
    } else if ft.is_symlink() {
        Kind::Link(sdir.read_link(sname)?)
    } else if is_device(ft) {
        bail!(
            "{}: a device node cannot be made from inside {}'s user namespace",
            shown.display(),
            ns.name
        );
    } else {
        Kind::Node
    };
    let xattrs = if ft.is_symlink() {
        Vec::new()
    } else {
        xattrs()?
    };
    Ok(Node {
        name: sname.to_os_string(),
        meta: se.meta,
        xattrs,
        kind,
    })
}

/// Copy `spath` of `sroot` to `dpath` of `droot` (a running guest's
/// root, plain) as the root of the guest's user namespace `ns`.
pub fn copy_in(sroot: View, spath: &Path, droot: View, dpath: &Path, ns: &Userns) -> Result<()> {
    let Ends {
        s,
        sname,
        se,
        d,
        name,
        shown,
    } = ends(sroot, spath, droot, dpath)?;
    let sv = s.stack.last().expect("root");
    let dv = d.stack.last().expect("root");
    check(sv, &se, &sname, Some(dv), &name, &shown, true)?;
    let mut files = max_files();
    let mut node = snapshot(sv, se, &sname, &shown, ns, &mut files)?;
    node.name = name;
    let dir = dv.upper.as_ref().context("no destination directory")?;
    in_userns(&ns.ns, || write(dir, &node, &shown))
}

/// Write `n` into `dir` (the guest's, no layers).
fn write(dir: &Dir, n: &Node, shown: &Path) -> Result<()> {
    let target = dir.at(&n.name);
    let existing = dir.lstat(&n.name)?;
    if let Kind::Dir(nodes) = &n.kind {
        if existing.is_none() {
            std::fs::create_dir(&target)
                .with_context(|| format!("creating {}", shown.display()))?;
        }
        let d = dir
            .child(&n.name)?
            .with_context(|| format!("{}: not a directory", shown.display()))?;
        for c in nodes {
            write(&d, c, &shown.join(&c.name))?;
        }
        return set_meta(&d.path(), &n.meta, &n.xattrs);
    }
    if existing.as_ref().is_some_and(|m| m.is_dir()) {
        bail!("{}: is a directory", shown.display());
    }
    if existing.is_some() {
        std::fs::remove_file(&target).with_context(|| format!("replacing {}", shown.display()))?;
    }
    match &n.kind {
        Kind::File(from) => {
            let mut from: &File = from;
            let mut to = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&target)
                .with_context(|| format!("creating {}", shown.display()))?;
            std::io::copy(&mut from, &mut to)
                .with_context(|| format!("writing {}", shown.display()))?;
            set_meta(&fd_path(&to), &n.meta, &n.xattrs)
        }
        Kind::Link(t) => {
            std::os::unix::fs::symlink(t, &target)
                .with_context(|| format!("creating {}", shown.display()))?;
            std::os::unix::fs::lchown(&target, Some(n.meta.uid()), Some(n.meta.gid()))
                .with_context(|| format!("setting the owner of {}", shown.display()))?;
            utimens(&target, &n.meta, libc::AT_SYMLINK_NOFOLLOW)
        }
        _ => {
            let ft = n.meta.file_type();
            debug_assert!(ft.is_fifo() || ft.is_socket());
            mknod_like(&target, &n.meta, shown)?;
            set_meta(&fd_path(&dir.opath(&n.name)?), &n.meta, &n.xattrs)
        }
    }
}

/// Threads of this process: fork(2) is only safe with one.
fn threads() -> Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")
        .context("reading /proc/self/task")?
        .count())
}

/// Run `f` in a forked child that joined the user namespace `ns` as its
/// root; its error comes back as one line through a pipe.
fn in_userns(ns: &File, f: impl FnOnce() -> Result<()>) -> Result<()> {
    // With one thread, the child may do what the parent does (allocate,
    // take locks): no other thread held them at the fork.
    if threads()? != 1 {
        bail!("sdme cp forks to enter the guest's user namespace, and has more than one thread");
    }
    let mut fds = [0; 2];
    // SAFETY: pipe2 into a two-int array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("pipe");
    }
    // SAFETY: fresh descriptors from pipe2.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: single-threaded (checked above).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error()).context("fork");
    }
    if pid == 0 {
        drop(r);
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            enter(ns).context("entering the guest's user namespace")?;
            f()
        }));
        let msg = match res {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(_) => Some("the copying child panicked".to_string()),
        };
        let mut code = 0;
        if let Some(m) = msg {
            let mut w = File::from(w);
            let _ = std::io::Write::write_all(&mut w, m.as_bytes());
            code = 1;
        }
        // SAFETY: leave without running the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    drop(w);
    let mut msg = String::new();
    let read = File::from(r).take(64 * 1024).read_to_string(&mut msg);
    let mut status = 0;
    // SAFETY: waiting for our own child.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).context("waiting for the copying child");
        }
    }
    read.context("reading the copying child's error")?;
    match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
        (true, 0) => Ok(()),
        (true, _) => bail!("{}", msg.trim()),
        _ => bail!("the copying child was killed"),
    }
}

/// Join the user namespace `ns` and become its root (setgroups may be
/// refused there: then the host's groups, none mapped, stay unusable).
fn enter(ns: &File) -> Result<()> {
    // SAFETY: plain system calls on a valid descriptor.
    unsafe {
        if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWUSER) != 0 {
            return Err(std::io::Error::last_os_error()).context("setns");
        }
        libc::setgroups(0, std::ptr::null());
        if libc::setresgid(0, 0, 0) != 0 || libc::setresuid(0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error()).context("becoming its root");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_maps() {
        let r = ranges("         0     655360      65536\n  bogus\n");
        assert_eq!(r, [(0, 65536)]);
        assert!(mapped(&r, 0) && mapped(&r, 65535));
        assert!(!mapped(&r, 65536));
        assert_eq!(shown_ranges(&r), "0-65535");
        assert!(!mapped(&ranges(""), 0));
    }
}
