//! Copying a directory tree (a directory source, a mounted disk image)
//! into the staging directory, keeping what a root file system needs:
//! owners, modes, timestamps, xattrs (ACLs and file capabilities are
//! xattrs; `security.selinux` and `trusted.overlay.*` are not copied), hard
//! links, device nodes, sockets, fifos and sparse files (only the data
//! segments are copied, with copy_file_range, so file systems that can
//! share extents do).
//!
//! Source and destination are walked with directory fds; nothing is
//! followed. Mount points inside the source are not crossed (they become
//! empty directories, as `tar --one-file-system` makes them).

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::budget::Budget;
use crate::cancel;
use crate::layer::{xattr_skipped, DOT};
use crate::progress::Progress;
use crate::show::show;
use crate::sys::{self, cstring, DIR_FLAGS};

#[derive(Debug, Clone, Copy)]
pub struct CopyOpts<'a> {
    /// Keep owners (needs root).
    pub same_owner: bool,
    /// Do not descend into other file systems mounted inside the source.
    pub one_file_system: bool,
    pub budget: Option<&'a Budget>,
    pub progress: Option<&'a Progress>,
    /// Directories (by device and inode) copied empty: the state directory,
    /// so that importing `/` does not copy the import into itself.
    pub skip_dirs: &'a [(u64, u64)],
    /// Trees whose files the source shows (the source is an overlay of
    /// them, top first): a regular file of the source that is the very
    /// inode of one of them (same inode number on that tree's device) is
    /// hard-linked instead of copied. Only for trees nothing writes in
    /// place (see the builder).
    pub link_from: &'a [std::path::PathBuf],
}

impl Default for CopyOpts<'_> {
    fn default() -> Self {
        CopyOpts {
            // SAFETY: geteuid has no failure mode.
            same_owner: unsafe { libc::geteuid() } == 0,
            one_file_system: true,
            budget: None,
            progress: None,
            skip_dirs: &[],
            link_from: &[],
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub entries: u64,
    /// Bytes of file data copied (holes not counted).
    pub bytes: u64,
    /// Files hard-linked from `link_from` instead of copied, and their
    /// size.
    pub linked: u64,
    pub linked_bytes: u64,
}

/// Copy the contents of `src` into the existing directory `dst` (and the
/// owner, mode, xattrs and times of `src` itself onto `dst`).
pub fn copy_tree(src: &Path, dst: &Path, opts: &CopyOpts) -> Result<Stats> {
    let (sfd, dfd, st, mut c) = Copier::open(src, dst, opts)?;
    let mut rel = Vec::new();
    let lowers = c.lower_roots()?;
    c.dir(sfd.as_raw_fd(), dfd.as_raw_fd(), &mut rel, &lowers)
        .with_context(|| format!("cannot copy {}", src.display()))?;
    c.attrs(sfd.as_raw_fd(), dfd.as_raw_fd(), &st)
        .with_context(|| format!("cannot copy {}", src.display()))?;
    Ok(c.stats)
}

/// Copy the entry `name` of the directory `src_dir` (a file, symlink,
/// special file, or a directory with everything in it) into the existing
/// directory `dst_dir`, under the same name, which must not exist there.
pub fn copy_one(
    src_dir: &Path,
    name: &std::ffi::OsStr,
    dst_dir: &Path,
    opts: &CopyOpts,
) -> Result<Stats> {
    let (sfd, dfd, _, mut c) = Copier::open(src_dir, dst_dir, opts)?;
    let cname = cstring(name.as_encoded_bytes())?;
    let mut rel = name.as_encoded_bytes().to_vec();
    // Nothing is linked here: `src_dir` is not a root of the lowers.
    c.lowers.clear();
    c.entry(sfd.as_raw_fd(), dfd.as_raw_fd(), &cname, &mut rel, &[])
        .with_context(|| format!("cannot copy {}", src_dir.join(name).display()))?;
    Ok(c.stats)
}

/// Open the directory `p`.
fn open_dir(p: &Path) -> Result<OwnedFd> {
    sys::openat(
        libc::AT_FDCWD,
        &cstring(p.as_os_str().as_encoded_bytes())?,
        DIR_FLAGS,
        0,
    )
    .with_context(|| format!("cannot open {}", p.display()))
}

struct Copier<'a> {
    opts: &'a CopyOpts<'a>,
    dev: u64,
    /// (dev, ino) of files with several links -> where the first copy went.
    links: HashMap<(u64, u64), CString>,
    dst_root: OwnedFd,
    buf: Vec<u8>,
    stats: Stats,
    /// `link_from`, open, with their devices.
    lowers: Vec<(OwnedFd, u64)>,
}

fn open_lowers(paths: &[std::path::PathBuf]) -> Result<Vec<(OwnedFd, u64)>> {
    let mut v = Vec::with_capacity(paths.len());
    for p in paths {
        let fd = open_dir(p)?;
        let st =
            sys::fstat(fd.as_raw_fd()).with_context(|| format!("cannot stat {}", p.display()))?;
        v.push((fd, st.st_dev));
    }
    Ok(v)
}

impl<'a> Copier<'a> {
    /// Open `src` and `dst` (directories) and a copier from one to the
    /// other, with `src`'s stat (its device bounds `one_file_system`).
    fn open(
        src: &Path,
        dst: &Path,
        opts: &'a CopyOpts<'a>,
    ) -> Result<(OwnedFd, OwnedFd, libc::stat, Copier<'a>)> {
        let sfd = open_dir(src)?;
        let dfd = open_dir(dst)?;
        let st = sys::fstat(sfd.as_raw_fd())
            .with_context(|| format!("cannot stat {}", src.display()))?;
        let c = Copier {
            opts,
            dev: st.st_dev,
            links: HashMap::new(),
            dst_root: sys::openat(dfd.as_raw_fd(), DOT, DIR_FLAGS, 0)?,
            buf: Vec::new(),
            stats: Stats::default(),
            lowers: open_lowers(opts.link_from)?,
        };
        Ok((sfd, dfd, st, c))
    }
}

/// The directory of each `link_from` tree that matches the directory
/// being copied, where that tree has one (opened without following a
/// symlink): a file is then looked up by its name alone, one component,
/// instead of its whole path from each tree's root.
type LowerDirs = [Option<OwnedFd>];

impl Copier<'_> {
    /// The roots of the `link_from` trees, as [`LowerDirs`].
    fn lower_roots(&self) -> Result<Vec<Option<OwnedFd>>> {
        (self.lowers.iter())
            .map(|(fd, _)| Ok(Some(sys::openat(fd.as_raw_fd(), DOT, DIR_FLAGS, 0)?)))
            .collect()
    }

    /// The directories `name` of `lowers`, as [`LowerDirs`].
    fn lower_subdirs(&self, lowers: &LowerDirs, name: &CStr) -> Vec<Option<OwnedFd>> {
        if self.lowers.is_empty() {
            return Vec::new();
        }
        (lowers.iter())
            .map(|l| {
                l.as_ref()
                    .and_then(|fd| sys::openat(fd.as_raw_fd(), name, DIR_FLAGS, 0).ok())
            })
            .collect()
    }

    fn dir(&mut self, sfd: RawFd, dfd: RawFd, rel: &mut Vec<u8>, lowers: &LowerDirs) -> Result<()> {
        let entries = sys::read_dir(sfd).with_context(|| format!("cannot list '{}'", show(rel)))?;
        for e in entries {
            cancel::check()?;
            let len = rel.len();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(e.name.to_bytes());
            self.entry(sfd, dfd, &e.name, rel, lowers)
                .with_context(|| format!("'{}'", show(rel)))?;
            rel.truncate(len);
        }
        Ok(())
    }

    fn entry(
        &mut self,
        sdir: RawFd,
        ddir: RawFd,
        name: &CStr,
        rel: &mut Vec<u8>,
        lowers: &LowerDirs,
    ) -> Result<()> {
        let st = sys::lstatat(sdir, name).context("cannot stat")?;
        self.stats.entries += 1;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                sys::mkdirat(ddir, name, 0o700).context("cannot create directory")?;
                let d = sys::openat(ddir, name, DIR_FLAGS, 0).context("cannot open directory")?;
                // A mount point: the directory, not what is mounted on it.
                let skip = (self.opts.one_file_system && st.st_dev != self.dev)
                    || self.opts.skip_dirs.contains(&(st.st_dev, st.st_ino));
                if !skip {
                    let s =
                        sys::openat(sdir, name, DIR_FLAGS, 0).context("cannot open directory")?;
                    let sub = self.lower_subdirs(lowers, name);
                    self.dir(s.as_raw_fd(), d.as_raw_fd(), rel, &sub)?;
                    self.attrs(s.as_raw_fd(), d.as_raw_fd(), &st)?;
                } else {
                    self.owner_mode_times(d.as_raw_fd(), &st)?;
                }
            }
            libc::S_IFREG => self.file(sdir, ddir, name, rel, &st, lowers)?,
            libc::S_IFLNK => {
                let target = sys::readlinkat(sdir, name).context("cannot read symlink")?;
                sys::symlinkat(&target, ddir, name).context("cannot create symlink")?;
                self.special_attrs(sdir, ddir, name, &st, false)?;
            }
            libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO | libc::S_IFSOCK => {
                sys::mknodat(ddir, name, (st.st_mode & libc::S_IFMT) | 0o600, st.st_rdev)
                    .context("cannot create device node, fifo or socket")?;
                self.special_attrs(sdir, ddir, name, &st, true)?;
            }
            t => bail!("unknown file type {t:o}"),
        }
        Ok(())
    }

    fn file(
        &mut self,
        sdir: RawFd,
        ddir: RawFd,
        name: &CStr,
        rel: &[u8],
        st: &libc::stat,
        lowers: &LowerDirs,
    ) -> Result<()> {
        if st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key) {
                // Paths below dst_root are directories this copy made.
                return sys::linkat(self.dst_root.as_raw_fd(), first, ddir, name)
                    .with_context(|| format!("cannot link to '{}'", first.to_string_lossy()));
            }
            self.links.insert(key, cstring(rel)?);
        }
        if self.link_lower(ddir, name, st, lowers)? {
            self.stats.linked += 1;
            self.stats.linked_bytes += st.st_size as u64;
            return Ok(());
        }
        let used = (st.st_blocks as u64 * 512).min(st.st_size as u64);
        if let Some(b) = self.opts.budget {
            b.take(used)?;
        }
        let s = sys::openat(
            sdir,
            name,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NOCTTY,
            0,
        )
        .context("cannot open")?;
        let d = sys::openat(
            ddir,
            name,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            0o600,
        )
        .context("cannot create")?;
        self.data(s.as_raw_fd(), d.as_raw_fd(), st.st_size as u64)?;
        self.attrs(s.as_raw_fd(), d.as_raw_fd(), st)
    }

    /// Hard-link the file `name` from the lower tree it is in, if it is
    /// the very inode the source shows (looked up in that tree's matching
    /// directory without following a symlink, and checked by inode) and
    /// carries no xattr a copy would leave out. `false`: copy it.
    fn link_lower(
        &mut self,
        ddir: RawFd,
        name: &CStr,
        st: &libc::stat,
        lowers: &LowerDirs,
    ) -> Result<bool> {
        if self.lowers.is_empty() {
            return Ok(false);
        }
        let same = |l: &libc::stat, dev: u64| {
            l.st_dev == dev
                && l.st_ino == st.st_ino
                && l.st_mode == st.st_mode
                && (l.st_uid, l.st_gid, l.st_size) == (st.st_uid, st.st_gid, st.st_size)
                && (l.st_mtime, l.st_mtime_nsec) == (st.st_mtime, st.st_mtime_nsec)
        };
        for (dir, (_, dev)) in lowers.iter().zip(&self.lowers) {
            let Some(dir) = dir else { continue };
            let Ok(fd) = sys::openat(dir.as_raw_fd(), name, libc::O_PATH | libc::O_NOFOLLOW, 0)
            else {
                continue;
            };
            match sys::fstat(fd.as_raw_fd()) {
                Ok(l) if same(&l, *dev) => {}
                _ => continue,
            }
            let names = sys::listxattr_path(&sys::proc_fd_path(fd.as_raw_fd()))
                .context("cannot list xattrs")?;
            if names.iter().any(|n| xattr_skipped(n.to_bytes())) {
                return Ok(false);
            }
            return match sys::link_fd(fd.as_raw_fd(), ddir, name) {
                Ok(()) => Ok(true),
                // Another file system, or no right to link (no /proc, a
                // hardened kernel): copy, and stop trying. Too many links:
                // copy this one.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EXDEV | libc::EPERM | libc::ENOENT)
                    ) =>
                {
                    self.lowers.clear();
                    Ok(false)
                }
                Err(e) if e.raw_os_error() == Some(libc::EMLINK) => Ok(false),
                Err(e) => Err(e).context("cannot link"),
            };
        }
        Ok(false)
    }

    /// Copy the data segments of `s` into `d` and give `d` the size.
    fn data(&mut self, s: RawFd, d: RawFd, size: u64) -> Result<()> {
        let mut off = 0u64;
        while off < size {
            cancel::check()?;
            let start = match sys::seek_data_hole(s, off, libc::SEEK_DATA) {
                Ok(Some(x)) => x,
                Ok(None) => break,
                // No SEEK_DATA here: all of it is data.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => off,
                Err(e) => return Err(e).context("cannot seek"),
            };
            let end = match sys::seek_data_hole(s, start, libc::SEEK_HOLE) {
                Ok(Some(x)) => x.min(size),
                _ => size,
            };
            self.range(s, d, start, end)?;
            off = end;
        }
        sys::ftruncate(d, size).context("cannot set the size")?;
        Ok(())
    }

    fn range(&mut self, s: RawFd, d: RawFd, mut off: u64, end: u64) -> Result<()> {
        while off < end {
            let want = ((end - off) as usize).min(1 << 30);
            match sys::copy_file_range(s, d, off, want) {
                Ok(0) => break, // the file shrank under us
                Ok(n) => {
                    off += n as u64;
                    self.count(n as u64);
                    continue;
                }
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EXDEV | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
                    ) => {}
                Err(e) => return Err(e).context("cannot copy data"),
            }
            // Fallback: read and write.
            if self.buf.is_empty() {
                self.buf = vec![0u8; 1 << 20];
            }
            let want = ((end - off) as usize).min(self.buf.len());
            let n = sys::pread(s, &mut self.buf[..want], off).context("cannot read")?;
            if n == 0 {
                break;
            }
            sys::pwrite_all(d, &self.buf[..n], off).context("cannot write")?;
            off += n as u64;
            self.count(n as u64);
            cancel::check()?;
        }
        Ok(())
    }

    fn count(&mut self, n: u64) {
        self.stats.bytes += n;
        if let Some(p) = self.opts.progress {
            p.add(n);
        }
    }

    /// Owner, xattrs, mode, times from the open source `s` onto `d`.
    fn attrs(&mut self, s: RawFd, d: RawFd, st: &libc::stat) -> Result<()> {
        if self.opts.same_owner {
            sys::fchown(d, st.st_uid, st.st_gid).context("chown")?;
        }
        // After chown (which drops file capabilities), before chmod (which
        // then sets the ACL mask from the mode, as the source has it).
        for n in sys::flistxattr(s).context("cannot list xattrs")? {
            if xattr_skipped(n.to_bytes()) {
                continue;
            }
            let v = match sys::fgetxattr(s, &n) {
                Ok(v) => v,
                Err(e) if e.raw_os_error() == Some(libc::ENODATA) => continue,
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot read xattr {}", n.to_string_lossy()))
                }
            };
            sys::fsetxattr(d, &n, &v)
                .with_context(|| format!("cannot set xattr {}", n.to_string_lossy()))?;
        }
        sys::fchmod(d, st.st_mode & 0o7777).context("chmod")?;
        sys::futimens(d, &times(st)).context("cannot set times")
    }

    fn owner_mode_times(&mut self, d: RawFd, st: &libc::stat) -> Result<()> {
        if self.opts.same_owner {
            sys::fchown(d, st.st_uid, st.st_gid).context("chown")?;
        }
        sys::fchmod(d, st.st_mode & 0o7777).context("chmod")?;
        sys::futimens(d, &times(st)).context("cannot set times")
    }

    /// Symlinks, device nodes, fifos, sockets: no fd to read or write
    /// through, so xattrs go through O_PATH fds and /proc/self/fd.
    fn special_attrs(
        &mut self,
        sdir: RawFd,
        ddir: RawFd,
        name: &CStr,
        st: &libc::stat,
        chmod: bool,
    ) -> Result<()> {
        if self.opts.same_owner {
            sys::lchownat(ddir, name, st.st_uid, st.st_gid).context("chown")?;
        }
        let sp =
            sys::openat(sdir, name, libc::O_PATH | libc::O_NOFOLLOW, 0).context("cannot open")?;
        let spath = sys::proc_fd_path(sp.as_raw_fd());
        let names = match sys::listxattr_path(&spath) {
            Ok(n) => n,
            // Symlinks on some file systems: no xattrs at all.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EPERM)) => {
                Vec::new()
            }
            Err(e) => return Err(e).context("cannot list xattrs"),
        };
        let names: Vec<_> = names
            .into_iter()
            .filter(|n| !xattr_skipped(n.to_bytes()))
            .collect();
        if !names.is_empty() {
            let dp = sys::openat(ddir, name, libc::O_PATH | libc::O_NOFOLLOW, 0)
                .context("cannot open")?;
            for n in names {
                let v = sys::getxattr_path(&spath, &n)
                    .with_context(|| format!("cannot read xattr {}", n.to_string_lossy()))?;
                sys::setxattr_via_proc(dp.as_raw_fd(), &n, &v)
                    .with_context(|| format!("cannot set xattr {}", n.to_string_lossy()))?;
            }
        }
        if chmod {
            sys::fchmodat(ddir, name, st.st_mode & 0o7777).context("chmod")?;
        }
        sys::lutimensat(ddir, name, &times(st)).context("cannot set times")
    }
}

fn times(st: &libc::stat) -> [libc::timespec; 2] {
    [
        sys::timespec(st.st_atime, st.st_atime_nsec),
        sys::timespec(st.st_mtime, st.st_mtime_nsec),
    ]
}
