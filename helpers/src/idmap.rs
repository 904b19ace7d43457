//! The overlay of a container with its own user namespace
//! (`PrivateUsers=`), built from ID-mapped layers so that nothing is
//! copied or chowned.
//!
//! A merged overlay cannot be ID-mapped (mount_setattr returns EINVAL), but
//! its layers can. So:
//!
//! 1. a user namespace whose `uid_map`/`gid_map` is `0 BASE 65536` is made
//!    by a short-lived child (its `/proc/PID/ns/user` is kept open, the
//!    child is reaped);
//! 2. the lower directory and the container's state directory (which holds
//!    both `upper/` and `work/`: overlayfs wants them on one mount) are
//!    cloned with `open_tree(OPEN_TREE_CLONE)`, given that mapping with
//!    `mount_setattr(MOUNT_ATTR_IDMAP)` and attached with `move_mount` below
//!    `/run/sdme/idmap/MACHINE/` (overlay options take paths). Not
//!    recursive: overlayfs uses a layer's own file system only and never
//!    crosses into mounts below it, so the host's submounts (`/proc`,
//!    `/run`, ...) would add nothing, and ID-mapping them would fail the
//!    whole clone on the first file system that cannot be ID-mapped;
//! 3. the overlay is mounted with fsuid/fsgid BASE (capabilities kept):
//!    overlayfs does its own work in `work/` with its creator's
//!    credentials, and host root (fsuid 0) has no ID in the mapped layers
//!    (its mkdir of `work/work` fails with EOVERFLOW and overlayfs falls
//!    back to read-only). With BASE, which the mapping shows as 0 on disk,
//!    everything overlayfs writes is owned by 0 on disk, as without a user
//!    namespace. This is why sdme mounts these overlays itself instead of
//!    through a `.mount` unit (mount(8) runs as plain root);
//! 4. the mapped layers are detached at once: overlayfs holds private
//!    clones of its layers, so nothing but the overlay stays mounted.
//!
//! Files the container creates land in `upper/` with the container's own
//! IDs (root inside is 0 on disk), so the base can change without a chown.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::mountinfo;

/// Where the mapped layers are attached while the overlay is mounted.
pub const IDMAP_DIR: &str = "/run/sdme/idmap";

// From linux/mount.h and linux/fcntl.h (not all libc versions have them).
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x0000_0004;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x0000_0040;
const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
const MS_PRIVATE: u64 = 0x0004_0000;

/// `struct mount_attr` (MOUNT_ATTR_SIZE_VER0).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| anyhow!("path {} contains a NUL byte", p.display()))
}

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// A user namespace mapping container IDs 0..65536 to host IDs
/// BASE..BASE+65536 (UIDs and GIDs alike).
pub fn userns_fd(base: u32) -> Result<OwnedFd> {
    let mut ready = [0 as libc::c_int; 2];
    let mut done = [0 as libc::c_int; 2];
    // SAFETY: plain pipe(2) calls on arrays of two ints.
    if unsafe { libc::pipe2(ready.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(errno()).context("pipe2");
    }
    // SAFETY: as above.
    if unsafe { libc::pipe2(done.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        let e = errno();
        // SAFETY: closing the fds we just made.
        unsafe {
            libc::close(ready[0]);
            libc::close(ready[1]);
        }
        return Err(e).context("pipe2");
    }
    // SAFETY: the fds are ours; wrapping them closes each exactly once.
    let (ready_r, ready_w, done_r, done_w) = unsafe {
        (
            OwnedFd::from_raw_fd(ready[0]),
            OwnedFd::from_raw_fd(ready[1]),
            OwnedFd::from_raw_fd(done[0]),
            OwnedFd::from_raw_fd(done[1]),
        )
    };
    // SAFETY: the child only makes raw system calls (unshare, write, read,
    // _exit), which are async-signal-safe, then exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(errno()).context("fork");
    }
    if pid == 0 {
        // SAFETY: async-signal-safe calls only, see above.
        unsafe {
            // Our copies of the parent's ends, or the read below never
            // sees EOF.
            libc::close(ready_r.as_raw_fd());
            libc::close(done_w.as_raw_fd());
            let ok: u8 = if libc::unshare(libc::CLONE_NEWUSER) == 0 {
                1
            } else {
                0
            };
            libc::write(ready_w.as_raw_fd(), (&ok as *const u8).cast(), 1);
            let mut b = 0u8;
            // Returns when the parent closes its end (or dies).
            libc::read(done_r.as_raw_fd(), (&mut b as *mut u8).cast(), 1);
            libc::_exit(0);
        }
    }
    drop(ready_w);
    drop(done_r);
    let result = (|| -> Result<OwnedFd> {
        let mut ok = 0u8;
        // SAFETY: reading one byte into a local.
        let n = unsafe { libc::read(ready_r.as_raw_fd(), (&mut ok as *mut u8).cast(), 1) };
        if n != 1 || ok != 1 {
            bail!("cannot create a user namespace (unshare(CLONE_NEWUSER) failed in the child)");
        }
        let map = format!("0 {base} 65536\n");
        for f in ["uid_map", "gid_map"] {
            let p = format!("/proc/{pid}/{f}");
            std::fs::write(&p, &map)
                .with_context(|| format!("cannot write '{}' to {p}", map.trim()))?;
        }
        let p = format!("/proc/{pid}/ns/user");
        let f = std::fs::File::open(&p).with_context(|| format!("cannot open {p}"))?;
        Ok(OwnedFd::from(f))
    })();
    // Let the child go (a copy of done_w in another thread's fork must
    // not keep it waiting: kill it) and reap it.
    drop(done_w);
    let mut status = 0;
    // SAFETY: signalling and waiting for our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, &mut status, 0);
    }
    result
}

/// Attach an ID-mapped clone of the mount at `src` (that directory only,
/// not the mounts below it) at `dst`.
fn attach_mapped(src: &Path, dst: &Path, userns: &OwnedFd) -> Result<()> {
    let cdst = cpath(dst)?;
    attach(src, Target::Path(&cdst, dst), Some(userns), false)
}

/// Where [`attach`] puts a mount.
pub enum Target<'a> {
    /// A path (and its text for messages).
    Path(&'a CString, &'a Path),
    /// An opened file or directory (`O_PATH`), and its path for messages.
    Fd(&'a OwnedFd, &'a Path),
}

/// Attach a clone of `src` (that directory or file only, not the mounts
/// below it) at `dst`: ID-mapped with `userns` when given, read-only when
/// asked, private.
pub fn attach(src: &Path, dst: Target, userns: Option<&OwnedFd>, read_only: bool) -> Result<()> {
    let csrc = cpath(src)?;
    // SAFETY: open_tree(2) with a valid C string; returns a new fd or -1.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            csrc.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if tree < 0 {
        return Err(errno()).with_context(|| format!("open_tree({})", src.display()));
    }
    let fd = i32::try_from(tree).map_err(|_| anyhow!("open_tree returned {tree}"))?;
    // SAFETY: a fresh fd from open_tree.
    let tree = unsafe { OwnedFd::from_raw_fd(fd) };
    // Private: a clone of a shared mount is a peer of it, so the overlay
    // mounted on STATE/merged would propagate into the mapped clone of
    // STATE, and detaching that copy would propagate back and unmount the
    // overlay itself (seen on systemd hosts, where / is shared).
    let mut attr = MountAttr {
        attr_set: 0,
        attr_clr: 0,
        propagation: MS_PRIVATE,
        userns_fd: 0,
    };
    if let Some(ns) = userns {
        attr.attr_set |= MOUNT_ATTR_IDMAP;
        attr.userns_fd = u64::try_from(ns.as_raw_fd()).unwrap_or_default();
    }
    if read_only {
        attr.attr_set |= MOUNT_ATTR_RDONLY;
    }
    let empty = c"";
    // SAFETY: mount_setattr(2) on our detached tree with a correctly sized
    // struct mount_attr.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r != 0 {
        let e = errno();
        let hint = if e.raw_os_error() == Some(libc::EINVAL) {
            " (the file system under it cannot be ID-mapped: ext4, XFS, Btrfs and tmpfs can, overlayfs cannot)"
        } else {
            ""
        };
        return Err(e).with_context(|| {
            format!(
                "cannot set the attributes of a bind mount of {}{hint}",
                src.display()
            )
        });
    }
    let (dfd, dpath, flags, shown) = match dst {
        Target::Path(c, p) => (libc::AT_FDCWD, c.as_ptr(), MOVE_MOUNT_F_EMPTY_PATH, p),
        Target::Fd(fd, p) => (
            fd.as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
            p,
        ),
    };
    // SAFETY: move_mount(2) of our tree onto a path or an fd.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            dfd,
            dpath,
            flags,
        )
    };
    if r != 0 {
        return Err(errno())
            .with_context(|| format!("cannot attach {} at {}", src.display(), shown.display()));
    }
    Ok(())
}

/// `/run/sdme/idmap/MACHINE`.
pub fn idmap_dir(machine: &str) -> PathBuf {
    Path::new(IDMAP_DIR).join(machine)
}

/// Detach whatever is mounted at or below `/run/sdme/idmap/MACHINE` and
/// remove the directories. Safe while the overlay is mounted: it holds
/// its own clones of the layers.
pub fn release(machine: &str) -> Result<()> {
    use nix::mount::{umount2, MntFlags};
    let dir = idmap_dir(machine);
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .context("cannot read /proc/self/mountinfo")?;
    let prefix = dir.to_string_lossy().into_owned();
    // Only the mapped layers themselves: a detach takes what is below
    // them along, and nothing else may be touched.
    let ours = [
        prefix.clone(),
        format!("{prefix}/lower"),
        format!("{prefix}/state"),
    ];
    let mut points: Vec<String> = mountinfo::parse(&text)
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| ours.contains(p))
        .collect();
    // Latest first.
    points.reverse();
    for p in points {
        match umount2(
            Path::new(&p),
            MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW,
        ) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => bail!("cannot unmount {p}: {e}"),
        }
    }
    for sub in ["lower", "state"] {
        let _ = std::fs::remove_dir(dir.join(sub));
    }
    let _ = std::fs::remove_dir(&dir);
    // Leave no empty directory behind (another container's start may
    // recreate it at once; see make_dirs). /run/sdme itself is on the
    // search path: the administrator's.
    let _ = std::fs::remove_dir(IDMAP_DIR);
    Ok(())
}

/// Create the mount points, retrying when a concurrent [`release`] of
/// another container removed a parent directory in between.
fn make_dirs(dirs: &[&Path]) -> Result<()> {
    let mut tries = 0;
    loop {
        match dirs.iter().try_for_each(std::fs::create_dir_all) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 5 => tries += 1,
            Err(e) => {
                return Err(e).with_context(|| format!("cannot create {}", dirs[0].display()))
            }
        }
    }
}

/// Run `f` with fsuid/fsgid `base` and every permitted capability
/// effective (a change of fsuid away from 0 clears the file-system
/// capabilities from the effective set), then go back to fsuid 0.
pub(crate) fn as_container_root<T>(base: u32, f: impl FnOnce() -> T) -> Result<T> {
    let saved = crate::capset::get().context("capget")?;
    // SAFETY: setfsuid/setfsgid cannot fail in a way that matters here:
    // we check the result by reading the value back.
    unsafe {
        libc::setfsgid(base);
        libc::setfsuid(base);
    }
    // SAFETY: as above; with -1 they only report the current value.
    let now = unsafe { libc::setfsuid(u32::MAX) };
    let restore = || {
        // SAFETY: back to root's fs IDs; this restores the fs capabilities.
        unsafe {
            libc::setfsuid(0);
            libc::setfsgid(0);
        }
    };
    if now as u32 != base {
        restore();
        bail!("cannot set the file system UID to {base}");
    }
    let raised = crate::capset::Caps {
        effective: saved.permitted,
        ..saved
    };
    // effective ⊆ permitted.
    if let Err(e) = crate::capset::set(&raised) {
        restore();
        return Err(e).context("capset");
    }
    let out = f();
    restore();
    // Put back what we read (fsuid 0 has restored the fs caps); it was
    // set before, so it cannot fail now.
    let _ = crate::capset::set(&saved);
    Ok(out)
}

/// Mount the overlay of `lower` and `state/{upper,work}` on `merged` from
/// layers ID-mapped to `base`; nothing but the overlay stays mounted.
pub fn mount_overlay(
    machine: &str,
    lower: &Path,
    state: &Path,
    merged: &Path,
    base: u32,
) -> Result<()> {
    sdme_core::userns::check_base(base).map_err(|e| anyhow!("--private-users={base}: {e}"))?;
    release(machine)?;
    let dir = idmap_dir(machine);
    let (mlower, mstate) = (dir.join("lower"), dir.join("state"));
    make_dirs(&[&mlower, &mstate])?;
    let r = (|| -> Result<()> {
        let ns = userns_fd(base)?;
        attach_mapped(lower, &mlower, &ns)?;
        attach_mapped(state, &mstate, &ns)?;
        let data = crate::overlay::overlay_options(&mlower, &mstate)?;
        let cdata = CString::new(data.clone()).map_err(|_| anyhow!("NUL in overlay options"))?;
        let ctarget = cpath(merged)?;
        let r = as_container_root(base, || {
            // SAFETY: mount(2) with valid C strings.
            let r = unsafe {
                libc::mount(
                    c"overlay".as_ptr(),
                    ctarget.as_ptr(),
                    c"overlay".as_ptr(),
                    0,
                    cdata.as_ptr().cast(),
                )
            };
            if r == 0 {
                Ok(())
            } else {
                Err(errno())
            }
        })?;
        r.with_context(|| {
            format!(
                "cannot mount the overlay on {} over ID-mapped layers ({data})",
                merged.display()
            )
        })
    })();
    // Whatever happened: the overlay keeps its own clones of the layers.
    let rel = release(machine);
    r?;
    rel
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    /// Needs root and a kernel with ID-mapped mounts (5.19+ for overlayfs
    /// on ID-mapped layers); fails loudly without root.
    #[test]
    fn overlay_on_mapped_layers_stores_container_ids() {
        assert!(root(), "this test needs root (it mounts)");
        use nix::mount::{mount, umount2, MntFlags, MsFlags};
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let t = tempfile::tempdir().unwrap();
        // A shared mount, as / is on a systemd host: the mapped clones
        // must not be its peers (see attach_mapped).
        mount(
            Some(t.path()),
            t.path(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        mount(
            None::<&str>,
            t.path(),
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
        .unwrap();
        let lower = t.path().join("lower");
        let state = t.path().join("state");
        let merged = state.join("merged");
        for d in [&lower, &state.join("upper"), &state.join("work"), &merged] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(lower.join("f"), "x").unwrap();
        std::fs::set_permissions(state.join("upper"), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        let base = 0x0010_0000;
        let machine = format!("sdme-idmap-test-{}", std::process::id());
        mount_overlay(&machine, &lower, &state, &merged, base).unwrap();
        let seen = std::fs::metadata(merged.join("f")).unwrap();
        // Create a file as container root (host BASE) and as container
        // user 1000, from a child with those IDs.
        let run_as = |uid: u32, name: &str| {
            let p = merged.join(name);
            let st = std::process::Command::new("setpriv")
                .args([
                    &format!("--reuid={uid}"),
                    &format!("--regid={uid}"),
                    "--clear-groups",
                    "touch",
                ])
                .arg(&p)
                .status()
                .unwrap();
            assert!(st.success(), "touch {name} as {uid}");
        };
        run_as(base, "by-root");
        run_as(base + 1000, "by-user");
        // (The overlay's options still name the paths; no mount is there.)
        let prefix = idmap_dir(&machine).to_string_lossy().into_owned();
        let nothing_left =
            mountinfo::parse(&std::fs::read_to_string("/proc/self/mountinfo").unwrap())
                .iter()
                .all(|m| !m.mount_point.starts_with(&prefix));
        umount2(&merged, MntFlags::MNT_DETACH).unwrap();
        umount2(t.path(), MntFlags::MNT_DETACH).unwrap();
        assert_eq!(seen.uid(), base, "lower file owned by 0 shows as BASE");
        let up = |n: &str| std::fs::metadata(state.join("upper").join(n)).unwrap();
        assert_eq!(up("by-root").uid(), 0);
        assert_eq!(up("by-user").uid(), 1000);
        assert!(nothing_left, "mapped layers detached");
        assert!(!idmap_dir(&machine).exists());
    }
}
