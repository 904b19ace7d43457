//! Writes into an imported tree by directory fd, never by path.
//!
//! The image's own code may have run in the tree (the package manager in
//! [`super::sandbox`]) and left any symlink anywhere: `etc` pointing at the
//! host's `/etc`, `usr/sbin/policy-rc.d` at `/etc/shadow`. So every change
//! made afterwards opens its directory from an fd of the tree's root with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` (a symlink anywhere on
//! the way is refused, not followed) and then works on one name in it with
//! the `*at` calls, which do not follow a symlink in the last component
//! either (`O_NOFOLLOW | O_EXCL` to create, `unlinkat`, `renameat`).

use std::ffi::{CStr, CString, OsStr};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::sys;

/// A directory of the tree, held open.
pub struct TreeDir {
    fd: OwnedFd,
    /// For messages only.
    path: PathBuf,
}

/// What a name in a [`TreeDir`] is, not following symlinks.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    Missing,
    File,
    Dir,
    Symlink,
    Other,
}

fn c(name: &OsStr) -> Result<CString> {
    sys::cstring(name.as_bytes()).with_context(|| format!("bad name {name:?}"))
}

/// The tree's root directory itself (a path we made: the staging
/// directory). Its last component must not be a symlink.
pub fn open_root(root: &Path) -> Result<TreeDir> {
    let p = c(root.as_os_str())?;
    let fd = sys::openat(libc::AT_FDCWD, &p, sys::DIR_FLAGS, 0)
        .with_context(|| format!("cannot open {}", root.display()))?;
    Ok(TreeDir {
        fd,
        path: root.to_path_buf(),
    })
}

impl TreeDir {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory `rel` (relative, no `..`) below this one, without
    /// following any symlink on the way; `create` makes missing ones
    /// (0755). None when it is missing and `create` is false.
    pub fn dir(&self, rel: &str, create: bool) -> Result<Option<TreeDir>> {
        let mut cur = TreeDir {
            fd: self.fd.try_clone().context("dup")?,
            path: self.path.clone(),
        };
        for part in rel.split('/').filter(|p| !p.is_empty() && *p != ".") {
            if part == ".." {
                bail!("{rel}: '..' not allowed");
            }
            let name = c(OsStr::new(part))?;
            let path = cur.path.join(part);
            if create && cur.kind(OsStr::new(part))? == Kind::Missing {
                sys::mkdirat(cur.raw(), &name, 0o755)
                    .with_context(|| format!("cannot create {}", path.display()))?;
            }
            let fd = match sys::open_beneath(cur.raw(), &name, sys::DIR_FLAGS) {
                Ok(fd) => fd,
                Err(e) => match cur.kind(OsStr::new(part))? {
                    Kind::Missing => return Ok(None),
                    Kind::Symlink => bail!(
                        "{} in the image is a symlink; refusing to write through it",
                        path.display()
                    ),
                    Kind::Dir => {
                        return Err(e).with_context(|| format!("cannot open {}", path.display()))
                    }
                    _ => bail!("{} in the image is not a directory", path.display()),
                },
            };
            cur = TreeDir { fd, path };
        }
        Ok(Some(cur))
    }

    fn raw(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }

    fn child(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    pub fn kind(&self, name: &OsStr) -> Result<Kind> {
        match sys::lstatat(self.raw(), &c(name)?) {
            Ok(st) => Ok(match st.st_mode & libc::S_IFMT {
                libc::S_IFREG => Kind::File,
                libc::S_IFDIR => Kind::Dir,
                libc::S_IFLNK => Kind::Symlink,
                _ => Kind::Other,
            }),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(Kind::Missing),
            Err(e) => Err(e).with_context(|| format!("cannot stat {}", self.child(name).display())),
        }
    }

    /// Create the regular file `name`, which must not exist.
    pub fn create_file(&self, name: &OsStr, content: &[u8], mode: u32) -> Result<()> {
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        let fd = sys::openat(self.raw(), &c(name)?, flags, 0o600)
            .with_context(|| format!("cannot create {}", self.child(name).display()))?;
        sys::fchmod(fd.as_raw_fd(), mode)
            .with_context(|| format!("cannot chmod {}", self.child(name).display()))?;
        std::fs::File::from(fd)
            .write_all(content)
            .with_context(|| format!("cannot write {}", self.child(name).display()))
    }

    /// Remove `name` if it is not a directory (a symlink is removed, not
    /// followed). Missing is fine.
    pub fn unlink(&self, name: &OsStr) -> Result<()> {
        match sys::unlinkat(self.raw(), &c(name)?, 0) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            Err(e) => {
                Err(e).with_context(|| format!("cannot remove {}", self.child(name).display()))
            }
        }
    }

    /// Rename `from` to `to`, both in this directory.
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> Result<()> {
        // SAFETY: valid NUL-terminated names, fds we hold.
        let r =
            unsafe { libc::renameat(self.raw(), c(from)?.as_ptr(), self.raw(), c(to)?.as_ptr()) };
        if r != 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| {
                format!(
                    "cannot rename {} to {}",
                    self.child(from).display(),
                    to.to_string_lossy()
                )
            });
        }
        Ok(())
    }

    /// Make `name` a symlink to `target`, replacing a file or symlink.
    pub fn replace_with_symlink(&self, name: &OsStr, target: &CStr) -> Result<()> {
        if self.kind(name)? == Kind::Dir {
            bail!("{} is a directory", self.child(name).display());
        }
        self.unlink(name)?;
        sys::symlinkat(target, self.raw(), &c(name)?)
            .with_context(|| format!("cannot create symlink {}", self.child(name).display()))
    }

    /// The target of the symlink `name` (None when it is no symlink).
    pub fn readlink(&self, name: &OsStr) -> Result<Option<CString>> {
        if self.kind(name)? != Kind::Symlink {
            return Ok(None);
        }
        sys::readlinkat(self.raw(), &c(name)?)
            .map(Some)
            .with_context(|| format!("cannot read link {}", self.child(name).display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn dirs_through_symlinks_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir(r.join("usr")).unwrap();
        symlink(outside.path(), r.join("usr/sbin")).unwrap();
        symlink(outside.path(), r.join("etc")).unwrap();
        let root = open_root(r).unwrap();
        let e = root.dir("usr/sbin", false).err().unwrap().to_string();
        assert!(e.contains("symlink"), "{e}");
        assert!(root.dir("etc/systemd/system", true).is_err());
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
        assert!(root.dir("var/lib", false).unwrap().is_none());
        assert!(root.dir("a/../b", true).is_err());
        let d = root.dir("var/lib/x", true).unwrap().unwrap();
        assert_eq!(d.path(), r.join("var/lib/x"));
        assert!(r.join("var/lib/x").is_dir());
    }

    #[test]
    fn names_are_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, "keep\n").unwrap();
        let r = t.path();
        symlink(&victim, r.join("link")).unwrap();
        let root = open_root(r).unwrap();
        // Creating over a symlink fails instead of writing through it.
        assert!(root.create_file(OsStr::new("link"), b"x", 0o644).is_err());
        assert_eq!(root.kind(OsStr::new("link")).unwrap(), Kind::Symlink);
        assert!(root.readlink(OsStr::new("link")).unwrap().is_some());
        // Removing it removes the link, not what it points at.
        root.unlink(OsStr::new("link")).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep\n");
        root.create_file(OsStr::new("f"), b"data", 0o640).unwrap();
        root.rename(OsStr::new("f"), OsStr::new("g")).unwrap();
        assert_eq!(std::fs::read(r.join("g")).unwrap(), b"data");
        let null = CString::new("/dev/null").unwrap();
        root.replace_with_symlink(OsStr::new("g"), &null).unwrap();
        assert_eq!(
            std::fs::read_link(r.join("g")).unwrap(),
            Path::new("/dev/null")
        );
    }
}
