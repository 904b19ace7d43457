//! Careful file-system access for writing into an overlay's `upper/` and
//! reading its lower layer.
//!
//! sdme runs as root on images it does not trust. Everything below `upper/`
//! may have been written by the container (as root inside), so a path such
//! as `upper/etc` can be a symlink to `/` on the host. Every write therefore
//! walks the path one component at a time with `openat(O_NOFOLLOW)` from a
//! directory fd, never following a symlink, and replaces files with
//! `renameat`, which replaces a symlink rather than following it.
//!
//! The lower layer is read with `openat2(RESOLVE_IN_ROOT)`: symlinks inside
//! an image resolve the way they would inside the container, never to the
//! host.

use std::ffi::{CString, OsStr, OsString};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::{openat, openat2, renameat, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fchmod, fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{fchown, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

/// The overlay xattr that makes a directory in `upper/` hide the lower's.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Split an absolute container path (`/etc/systemd/system`) into its
/// relative components, refusing `..`, a relative path and the root itself.
pub fn container_rel_path(p: &str) -> Result<PathBuf> {
    let path = Path::new(p);
    if !path.is_absolute() {
        bail!("path '{p}' is not absolute");
    }
    let mut rel = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => rel.push(n),
            Component::ParentDir => bail!("path '{p}' contains '..'"),
            Component::Prefix(_) => bail!("path '{p}' is not a Linux path"),
        }
    }
    if rel.as_os_str().is_empty() {
        bail!("path '{p}' names the root directory");
    }
    Ok(rel)
}

/// The names of a relative path (one [`container_rel_path`] returned):
/// its normal components, to open one at a time.
pub fn rel_names(rel: &Path) -> Vec<&OsStr> {
    rel.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect()
}

/// Check a host path given on the command line: absolute, no `..`.
pub fn check_host_path(what: &str, p: &str) -> Result<PathBuf> {
    let path = Path::new(p);
    if !path.is_absolute() {
        bail!("{what} '{p}' is not an absolute path");
    }
    if path.components().any(|c| c == Component::ParentDir) {
        bail!("{what} '{p}' contains '..'");
    }
    Ok(path.to_path_buf())
}

fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: every caller passes an fd it just got from a successful
    // open-like syscall and nobody else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Open the directory `name` (below `at`, or a host path) without
/// following a symlink in its last component; `shown` names it in errors.
fn open_dir_nofollow<P: ?Sized + nix::NixPath>(
    at: Option<RawFd>,
    name: &P,
    shown: &Path,
) -> Result<OwnedFd> {
    let fd = openat(
        at,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        // With O_DIRECTORY, Linux says ENOTDIR for a symlink too.
        let symlink = || {
            fstatat(at, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                .is_ok_and(|st| file_type(&st) == SFlag::S_IFLNK)
        };
        match e {
            Errno::ELOOP => anyhow!("{} is a symlink; refusing to follow it", shown.display()),
            Errno::ENOTDIR if symlink() => {
                anyhow!("{} is a symlink; refusing to follow it", shown.display())
            }
            Errno::ENOTDIR => anyhow!("{} is not a directory", shown.display()),
            e => anyhow!("cannot open {}: {e}", shown.display()),
        }
    })?;
    Ok(own(fd))
}

fn is_whiteout(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFCHR
        && st.st_rdev == 0
}

fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// What is found at a name inside a directory, without following it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Missing,
    /// An overlay whiteout (char device 0:0): the container deleted it.
    Whiteout,
    File {
        size: i64,
    },
    Dir,
    Symlink,
    Other,
}

/// Owner and mode for a directory created in `upper/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirAttrs {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl DirAttrs {
    pub const DEFAULT: DirAttrs = DirAttrs {
        mode: 0o755,
        uid: 0,
        gid: 0,
    };
}

/// A directory opened without following symlinks; operations on names
/// inside it never follow a symlink either.
#[derive(Debug)]
pub struct SafeDir {
    fd: OwnedFd,
    /// For messages only.
    path: PathBuf,
}

impl SafeDir {
    /// Open a directory given by the administrator (a host path); the last
    /// component must not be a symlink.
    pub fn open(path: &Path) -> Result<SafeDir> {
        Ok(SafeDir {
            fd: open_dir_nofollow(None, path, path)?,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn child_path(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    /// What is at `name`, not following symlinks.
    pub fn entry(&self, name: &OsStr) -> Result<Entry> {
        match fstatat(Some(self.raw()), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(if is_whiteout(&st) {
                Entry::Whiteout
            } else {
                match file_type(&st) {
                    SFlag::S_IFREG => Entry::File { size: st.st_size },
                    SFlag::S_IFDIR => Entry::Dir,
                    SFlag::S_IFLNK => Entry::Symlink,
                    _ => Entry::Other,
                }
            }),
            Err(Errno::ENOENT) => Ok(Entry::Missing),
            Err(e) => Err(anyhow!(
                "cannot stat {}: {e}",
                self.child_path(name).display()
            )),
        }
    }

    /// Open the subdirectory `name`, creating it with `attrs` when missing.
    /// A whiteout there (the container deleted the directory) is replaced
    /// by a new opaque directory, so the lower's old contents stay hidden,
    /// as overlayfs itself does. A symlink or any other file is refused.
    pub fn subdir(&self, name: &OsStr, attrs: DirAttrs) -> Result<SafeDir> {
        let p = self.child_path(name);
        let mut made_opaque = false;
        match self.entry(name)? {
            Entry::Dir => {}
            Entry::Missing => self.mkdir(name, attrs)?,
            Entry::Whiteout => {
                unlinkat(Some(self.raw()), name, UnlinkatFlags::NoRemoveDir)
                    .map_err(|e| anyhow!("cannot remove whiteout {}: {e}", p.display()))?;
                self.mkdir(name, attrs)?;
                made_opaque = true;
            }
            Entry::Symlink => bail!(
                "{} is a symlink (written by the container?); refusing to follow it",
                p.display()
            ),
            _ => bail!("{} exists and is not a directory", p.display()),
        }
        let dir = SafeDir {
            fd: open_dir_nofollow(Some(self.raw()), name, &p)?,
            path: p,
        };
        if made_opaque {
            dir.set_opaque()?;
        }
        Ok(dir)
    }

    fn mkdir(&self, name: &OsStr, attrs: DirAttrs) -> Result<()> {
        let p = self.child_path(name);
        // Created with its final permission bits (less the umask, which
        // sdme-prepare has checked), so an interruption before the chmod
        // below never leaves a directory that hides its contents.
        match mkdirat(
            Some(self.raw()),
            name,
            Mode::from_bits_truncate(attrs.mode & 0o777),
        ) {
            Ok(()) => {}
            Err(Errno::EEXIST) => return Ok(()), // raced with someone; checked on open
            Err(e) => bail!("cannot create directory {}: {e}", p.display()),
        }
        let fd = open_dir_nofollow(Some(self.raw()), name, &p)?;
        // Owner first: chown clears set-id bits.
        fchown(
            fd.as_raw_fd(),
            Some(Uid::from_raw(attrs.uid)),
            Some(Gid::from_raw(attrs.gid)),
        )
        .map_err(|e| anyhow!("cannot chown {}: {e}", p.display()))?;
        fchmod(
            fd.as_raw_fd(),
            Mode::from_bits_truncate(attrs.mode & 0o7777),
        )
        .map_err(|e| anyhow!("cannot chmod {}: {e}", p.display()))?;
        Ok(())
    }

    /// Walk (and create) a relative path of directories below this one.
    /// `attrs_for` gives the attributes for a directory about to be created,
    /// by its path relative to this directory.
    pub fn walk_create(
        &self,
        rel: &Path,
        attrs_for: &dyn Fn(&Path) -> DirAttrs,
    ) -> Result<SafeDir> {
        let mut cur: Option<SafeDir> = None;
        let mut sofar = PathBuf::new();
        for c in rel.components() {
            let Component::Normal(name) = c else {
                bail!("unexpected component in {}", rel.display());
            };
            sofar.push(name);
            let parent = cur.as_ref().unwrap_or(self);
            let next = parent.subdir(name, attrs_for(&sofar))?;
            cur = Some(next);
        }
        match cur {
            Some(d) => Ok(d),
            None => bail!("empty path below {}", self.path.display()),
        }
    }

    /// Set `trusted.overlay.opaque=y` on this directory.
    pub fn set_opaque(&self) -> Result<()> {
        let name = CString::new(OPAQUE_XATTR).context("xattr name")?;
        // SAFETY: valid fd, NUL-terminated name, 1-byte value buffer.
        let r = unsafe { libc::fsetxattr(self.raw(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            bail!(
                "cannot set {OPAQUE_XATTR} on {}: {e} (is it on a file system with trusted xattrs, and are we root?)",
                self.path.display()
            );
        }
        Ok(())
    }

    /// Remove `trusted.overlay.opaque` from this directory (none there is
    /// no error).
    pub fn clear_opaque(&self) -> Result<()> {
        let name = CString::new(OPAQUE_XATTR).context("xattr name")?;
        // SAFETY: valid fd, NUL-terminated name.
        let r = unsafe { libc::fremovexattr(self.raw(), name.as_ptr()) };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENODATA) {
                bail!(
                    "cannot remove {OPAQUE_XATTR} from {}: {e}",
                    self.path.display()
                );
            }
        }
        Ok(())
    }

    /// The existing subdirectory `name`, never created and never followed:
    /// None when it is missing or anything but a directory (a symlink, a
    /// file, a whiteout).
    pub fn existing_subdir(&self, name: &OsStr) -> Result<Option<SafeDir>> {
        if self.entry(name)? != Entry::Dir {
            return Ok(None);
        }
        let p = self.child_path(name);
        Ok(Some(SafeDir {
            fd: open_dir_nofollow(Some(self.raw()), name, &p)?,
            path: p,
        }))
    }

    /// Walk an existing relative path of directories, as
    /// [`SafeDir::existing_subdir`] at each step.
    pub fn walk_existing(&self, rel: &Path) -> Result<Option<SafeDir>> {
        let mut cur: Option<SafeDir> = None;
        for c in rel.components() {
            let Component::Normal(name) = c else {
                bail!("unexpected component in {}", rel.display());
            };
            let parent = cur.as_ref().unwrap_or(self);
            match parent.existing_subdir(name)? {
                Some(d) => cur = Some(d),
                None => return Ok(None),
            }
        }
        Ok(cur)
    }

    /// Remove the file or symlink `name` (never what a symlink points at);
    /// true when something was removed. A directory there is an error.
    pub fn remove_file(&self, name: &OsStr) -> Result<bool> {
        match self.entry(name)? {
            Entry::Missing => Ok(false),
            Entry::Dir => bail!(
                "{} is a directory; expected a file",
                self.child_path(name).display()
            ),
            _ => {
                unlinkat(Some(self.raw()), name, UnlinkatFlags::NoRemoveDir).map_err(|e| {
                    anyhow!("cannot remove {}: {e}", self.child_path(name).display())
                })?;
                Ok(true)
            }
        }
    }

    /// Read this directory's `trusted.overlay.opaque` value, if any.
    pub fn opaque_value(&self) -> Result<Option<Vec<u8>>> {
        let name = CString::new(OPAQUE_XATTR).context("xattr name")?;
        let mut buf = [0u8; 16];
        // SAFETY: valid fd, NUL-terminated name, buffer of the given length.
        let r = unsafe {
            libc::fgetxattr(
                self.raw(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENODATA) {
                return Ok(None);
            }
            bail!("cannot read {OPAQUE_XATTR} of {}: {e}", self.path.display());
        }
        Ok(Some(buf[..r as usize].to_vec()))
    }

    /// Replace `name` by a regular file with `content` and `mode`, owned by
    /// root, atomically (a temporary file renamed over it). Whatever was at
    /// `name` (a file, a symlink, a whiteout) is replaced, never followed;
    /// a directory there is an error.
    pub fn write_file(&self, name: &OsStr, content: &[u8], mode: u32) -> Result<()> {
        self.replace(name, "a file", |tmp| {
            let fd = openat(
                Some(self.raw()),
                tmp,
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )
            .map_err(|e| anyhow!("cannot create {}: {e}", self.child_path(tmp).display()))?;
            let fd = own(fd);
            fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(mode))
                .map_err(|e| anyhow!("cannot chmod: {e}"))?;
            let mut f = std::fs::File::from(fd.try_clone().context("dup")?);
            f.write_all(content).context("write")
        })
    }

    /// Replace `name` by a symlink to `target` (atomically, via rename).
    pub fn symlink(&self, name: &OsStr, target: &OsStr) -> Result<()> {
        self.replace(name, "a symlink", |tmp| {
            symlinkat(target, Some(self.raw()), tmp)
                .map_err(|e| anyhow!("cannot create symlink: {e}"))
        })
    }

    /// Make `name` anew: `make` creates it under a temporary name, which is
    /// then renamed over `name`; on any failure the temporary is removed.
    fn replace(
        &self,
        name: &OsStr,
        what: &str,
        make: impl FnOnce(&OsStr) -> Result<()>,
    ) -> Result<()> {
        let p = self.child_path(name);
        if self.entry(name)? == Entry::Dir {
            bail!("{} is a directory; expected {what}", p.display());
        }
        let mut tmp = OsString::from(".#sdme-prepare.");
        tmp.push(name);
        let unlink_tmp = || {
            let _ = unlinkat(
                Some(self.raw()),
                tmp.as_os_str(),
                UnlinkatFlags::NoRemoveDir,
            );
        };
        unlink_tmp(); // a leftover of a killed run
        let res = make(tmp.as_os_str()).and_then(|()| {
            renameat(Some(self.raw()), tmp.as_os_str(), Some(self.raw()), name)
                .map_err(|e| anyhow!("rename: {e}"))
        });
        if let Err(e) = res {
            unlink_tmp();
            return Err(e.context(format!("cannot write {}", p.display())));
        }
        Ok(())
    }

    /// The target of the symlink `name`.
    pub fn readlink(&self, name: &OsStr) -> Result<OsString> {
        nix::fcntl::readlinkat(Some(self.raw()), name)
            .map_err(|e| anyhow!("cannot read link {}: {e}", self.child_path(name).display()))
    }

    /// Contents of a small regular file `name` (None when missing).
    pub fn read_small(&self, name: &OsStr, limit: u64) -> Result<Option<Vec<u8>>> {
        use std::io::Read;
        let fd = match openat(
            Some(self.raw()),
            name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => own(fd),
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => bail!("cannot open {}: {e}", self.child_path(name).display()),
        };
        let mut out = Vec::new();
        std::fs::File::from(fd)
            .take(limit)
            .read_to_end(&mut out)
            .with_context(|| format!("cannot read {}", self.child_path(name).display()))?;
        Ok(Some(out))
    }
}

/// A read-only view of a lower layer: paths resolve as they would inside
/// the container (symlinks are confined to the layer).
#[derive(Debug)]
pub struct Lower {
    fd: OwnedFd,
    path: PathBuf,
}

impl Lower {
    pub fn open(path: &Path) -> Result<Lower> {
        let fd = openat(
            None,
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| anyhow!("cannot open {}: {e}", path.display()))?;
        Ok(Lower {
            fd: own(fd),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open_in(&self, rel: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        openat2(self.fd.as_raw_fd(), rel, how).map(own)
    }

    /// Attributes of the directory at `rel` (followed inside the layer),
    /// or None when it is missing or not a directory.
    pub fn dir_attrs(&self, rel: &Path) -> Option<DirAttrs> {
        let fd = self.open_in(rel, OFlag::O_PATH | OFlag::O_DIRECTORY).ok()?;
        let st = fstat(fd.as_raw_fd()).ok()?;
        Some(DirAttrs {
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
        })
    }

    /// The first `limit` bytes of the regular file at `rel` (followed inside
    /// the layer); None when missing or not a regular file.
    pub fn read_small(&self, rel: &Path, limit: u64) -> Option<Vec<u8>> {
        use std::io::Read;
        let fd = self
            .open_in(rel, OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY)
            .ok()?;
        let st = fstat(fd.as_raw_fd()).ok()?;
        if file_type(&st) != SFlag::S_IFREG {
            return None;
        }
        let mut out = Vec::new();
        std::fs::File::from(fd)
            .take(limit)
            .read_to_end(&mut out)
            .ok()?;
        Some(out)
    }

    /// The directory at `rel`, no symlink followed on the way (None when
    /// missing, not a directory, or reached through a symlink).
    pub fn open_dir_nofollow(&self, rel: &Path) -> Result<Option<LowerDir>> {
        let Some(mut dir) = self.open_dir(Path::new("."))? else {
            return Ok(None);
        };
        for name in rel_names(rel) {
            match dir.subdir(name) {
                Some(d) => dir = d,
                None => return Ok(None),
            }
        }
        Ok(Some(dir))
    }

    /// The directory at `rel` (None when missing or not a directory).
    pub fn open_dir(&self, rel: &Path) -> Result<Option<LowerDir>> {
        match self.open_in(rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
            Ok(fd) => Ok(Some(LowerDir {
                fd,
                path: self.path.join(rel),
            })),
            Err(Errno::ENOENT | Errno::ENOTDIR) => Ok(None),
            Err(e) => bail!("cannot open {}: {e}", self.path.join(rel).display()),
        }
    }
}

/// A directory in the lower layer, opened for listing and lstat.
#[derive(Debug)]
pub struct LowerDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl LowerDir {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Entry names, sorted (deterministic order for masks and messages).
    pub fn names(&self) -> Result<Vec<OsString>> {
        // Re-open the same directory through /proc/self/fd: std's
        // read_dir takes a path, and the fd pins the right inode.
        let p = format!("/proc/self/fd/{}", self.fd.as_raw_fd());
        let mut v: Vec<OsString> = std::fs::read_dir(&p)
            .with_context(|| format!("cannot list {}", self.path.display()))?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        v.sort();
        Ok(v)
    }

    pub fn entry(&self, name: &OsStr) -> Entry {
        match fstatat(
            Some(self.fd.as_raw_fd()),
            name,
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => match file_type(&st) {
                SFlag::S_IFREG => Entry::File { size: st.st_size },
                SFlag::S_IFDIR => Entry::Dir,
                SFlag::S_IFLNK => Entry::Symlink,
                _ if is_whiteout(&st) => Entry::Whiteout,
                _ => Entry::Other,
            },
            Err(_) => Entry::Missing,
        }
    }

    pub fn readlink(&self, name: &OsStr) -> Option<OsString> {
        nix::fcntl::readlinkat(Some(self.fd.as_raw_fd()), name).ok()
    }

    /// The metadata of `name`, not following a symlink.
    pub fn stat(&self, name: &OsStr) -> Option<FileStat> {
        fstatat(
            Some(self.fd.as_raw_fd()),
            name,
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .ok()
    }

    /// The regular file `name` open for reading (None for anything else;
    /// a symlink is not followed, a FIFO never blocks the open).
    pub fn open_file(&self, name: &OsStr) -> Option<std::fs::File> {
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
        let fd = own(openat(
            Some(self.fd.as_raw_fd()),
            name,
            flags | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ok()?);
        let st = fstat(fd.as_raw_fd()).ok()?;
        (file_type(&st) == SFlag::S_IFREG).then(|| std::fs::File::from(fd))
    }

    /// A subdirectory, not following a symlink at `name`.
    pub fn subdir(&self, name: &OsStr) -> Option<LowerDir> {
        let fd = openat(
            Some(self.fd.as_raw_fd()),
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        Some(LowerDir {
            fd: own(fd),
            path: self.path.join(name),
        })
    }
}

/// `name` as bytes, for suffix checks.
pub fn name_bytes(n: &OsStr) -> &[u8] {
    n.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths() {
        assert_eq!(
            container_rel_path("/etc/systemd/system").unwrap(),
            PathBuf::from("etc/systemd/system")
        );
        assert_eq!(
            container_rel_path("/var//log/").unwrap(),
            PathBuf::from("var/log")
        );
        for bad in ["etc", "/", "/etc/../x", "", "//"] {
            assert!(container_rel_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn directories_open_without_following_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("d");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(t.path().join("f"), "").unwrap();
        std::os::unix::fs::symlink(&dir, t.path().join("l")).unwrap();
        assert!(SafeDir::open(&dir).is_ok());
        let e = |p: &str| match SafeDir::open(&t.path().join(p)) {
            Ok(_) => panic!("{p} opened"),
            Err(e) => e.to_string(),
        };
        let l = t.path().join("l");
        assert_eq!(
            e("l"),
            format!("{} is a symlink; refusing to follow it", l.display())
        );
        let f = t.path().join("f");
        assert_eq!(e("f"), format!("{} is not a directory", f.display()));
        assert!(e("missing").starts_with("cannot open "), "{}", e("missing"));
    }

    #[test]
    fn host_paths() {
        assert!(check_host_path("rootfs", "/var/lib/sdme/rootfs/x").is_ok());
        assert!(check_host_path("rootfs", "var/lib").is_err());
        assert!(check_host_path("rootfs", "/var/../etc").is_err());
    }
}
