//! A container's tree as its overlay shows it, read from the layers
//! without mounting anything (`upper/` over the lower directory, with
//! whiteouts and opaque directories), or from a real root directory (a
//! running container's `/proc/LEADER/root`, the host's `/`).
//!
//! Confinement: every entry is reached from an open directory by one name
//! at a time, through `/proc/self/fd/FD/NAME`, whose last component is
//! never followed (`O_NOFOLLOW`, `lstat`, `readlink`). Symlinks are
//! resolved here, against the tree's own root, as `RESOLVE_IN_ROOT`
//! does: `..` stops at the root and an absolute target starts over from
//! it, so no path leaves the tree.

use std::collections::{BTreeSet, VecDeque};
use std::ffi::{CString, OsStr, OsString};
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};

pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
pub const WHITEOUT_XATTR: &str = "trusted.overlay.whiteout";
/// Symlinks followed in one lookup (the kernel's limit).
const MAX_LINKS: u32 = 40;

/// An open directory: the anchor of every lookup below it.
pub struct Dir {
    fd: OwnedFd,
}

fn missing(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ELOOP)
    )
}

impl Dir {
    /// Open `path` (a host path, followed as given) as a directory.
    pub fn open(path: &Path) -> Result<Dir> {
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Dir { fd: f.into() })
    }

    /// `/proc/self/fd/FD`: the directory itself.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    /// The entry `name` of this directory; the caller never passes a
    /// name with `/`, `.` or `..`.
    pub fn at(&self, name: &OsStr) -> PathBuf {
        debug_assert!(!name.as_bytes().contains(&b'/') && name != "." && name != "..");
        self.path().join(name)
    }

    pub fn lstat(&self, name: &OsStr) -> io::Result<Option<Metadata>> {
        match std::fs::symlink_metadata(self.at(name)) {
            Ok(m) => Ok(Some(m)),
            Err(e) if missing(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn meta(&self) -> io::Result<Metadata> {
        std::fs::metadata(self.path())
    }

    /// The directory `name`, never through a symlink; `None` when it is
    /// missing or not a directory.
    pub fn child(&self, name: &OsStr) -> io::Result<Option<Dir>> {
        let r = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(self.at(name));
        match r {
            Ok(f) => Ok(Some(Dir { fd: f.into() })),
            Err(e) if missing(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Names in the directory, sorted.
    pub fn names(&self) -> io::Result<BTreeSet<OsString>> {
        std::fs::read_dir(self.path())?
            .map(|e| e.map(|e| e.file_name()))
            .collect()
    }

    pub fn read_link(&self, name: &OsStr) -> io::Result<PathBuf> {
        std::fs::read_link(self.at(name))
    }

    /// A regular file, opened without following a link nor blocking on
    /// a FIFO swapped in; checked regular after the open.
    pub fn open_file(&self, name: &OsStr) -> Result<File> {
        let p = self.at(name);
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(&p)
            .with_context(|| format!("opening {}", p.display()))?;
        if !f.metadata()?.is_file() {
            bail!("{} changed while being read", p.display());
        }
        Ok(f)
    }

    /// An `O_PATH` descriptor of the entry `name` itself (a symlink too).
    pub fn opath(&self, name: &OsStr) -> io::Result<OwnedFd> {
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(self.at(name))?;
        Ok(f.into())
    }

    pub fn xattr(&self, key: &str) -> Option<Vec<u8>> {
        get_xattr(&self.path(), key)
    }
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// The value of the xattr `key` of `p` (`/proc/self/fd/...`, followed to
/// the inode it names); `None` when unset or unreadable.
pub fn get_xattr(p: &Path, key: &str) -> Option<Vec<u8>> {
    let p = cpath(p).ok()?;
    let k = CString::new(key).ok()?;
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: valid C strings and a buffer of the length passed.
    let n = unsafe { libc::getxattr(p.as_ptr(), k.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(buf)
}

/// Every xattr of `p` (followed to its inode) but overlayfs' own.
pub fn list_xattrs(p: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let c = cpath(p)?;
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: a valid C string and a buffer of the length passed.
    let n = unsafe { libc::listxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOTSUP) {
            return Ok(Vec::new());
        }
        return Err(e).context("listing extended attributes");
    }
    buf.truncate(n as usize);
    let mut out = Vec::new();
    for k in buf.split(|b| *b == 0).filter(|k| !k.is_empty()) {
        let k = String::from_utf8_lossy(k).into_owned();
        if k.starts_with("trusted.overlay.") {
            continue;
        }
        if let Some(v) = get_xattr(p, &k) {
            out.push((k, v));
        }
    }
    Ok(out)
}

pub fn set_xattr(p: &Path, key: &str, value: &[u8]) -> Result<()> {
    let c = cpath(p)?;
    let k = CString::new(key).context("xattr name")?;
    // SAFETY: valid C strings and a buffer of the length passed.
    let r = unsafe {
        libc::setxattr(
            c.as_ptr(),
            k.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error()).with_context(|| format!("setting xattr {key}"));
    }
    Ok(())
}

/// An overlayfs whiteout: a character device 0/0, or a file with the
/// whiteout xattr.
pub fn is_whiteout(dir: &Dir, name: &OsStr, m: &Metadata) -> bool {
    let ft = m.file_type();
    (ft.is_char_device() && m.rdev() == 0)
        || (ft.is_file() && m.len() == 0 && get_xattr(&dir.at(name), WHITEOUT_XATTR).is_some())
}

/// An opaque directory hides the lower layer's entries below it. The
/// value "x" marks a directory holding xattr whiteouts, not an opaque one
/// (overlayfs.rst, "whiteouts and opaque directories").
pub fn is_opaque(dir: &Dir) -> bool {
    dir.xattr(OPAQUE_XATTR).as_deref() == Some(b"y")
}

/// One directory of the tree: in the upper layer, the lower one, or both
/// (merged). A plain root (not `layered`) has only `upper`.
pub struct View {
    pub upper: Option<Dir>,
    pub lower: Option<Dir>,
    pub layered: bool,
}

/// An entry as the tree shows it, and which layer holds it.
pub struct Entry {
    pub meta: Metadata,
    pub in_upper: bool,
}

impl View {
    pub fn plain(root: Dir) -> View {
        View {
            upper: Some(root),
            lower: None,
            layered: false,
        }
    }

    /// The directory of the layer that holds `e`.
    pub fn dir_of(&self, e: &Entry) -> &Dir {
        let d = if e.in_upper { &self.upper } else { &self.lower };
        d.as_ref().expect("an entry comes from an open layer")
    }

    /// Whether the upper layer has a whiteout at `name`.
    pub fn whiteout(&self, name: &OsStr) -> io::Result<bool> {
        let Some(u) = self.upper.as_ref().filter(|_| self.layered) else {
            return Ok(false);
        };
        Ok(u.lstat(name)?.is_some_and(|m| is_whiteout(u, name, &m)))
    }

    pub fn lookup(&self, name: &OsStr) -> io::Result<Option<Entry>> {
        if let Some(u) = &self.upper {
            if let Some(m) = u.lstat(name)? {
                if self.layered && is_whiteout(u, name, &m) {
                    return Ok(None);
                }
                return Ok(Some(Entry {
                    meta: m,
                    in_upper: true,
                }));
            }
        }
        if let Some(l) = &self.lower {
            if let Some(m) = l.lstat(name)? {
                return Ok(Some(Entry {
                    meta: m,
                    in_upper: false,
                }));
            }
        }
        Ok(None)
    }

    /// The directory `name` (which [`lookup`] gave as a directory).
    pub fn child(&self, name: &OsStr) -> io::Result<View> {
        let upper = match &self.upper {
            Some(u) => u.child(name)?,
            None => None,
        };
        let hides = match &upper {
            Some(u) => self.layered && is_opaque(u),
            // Something in upper that is not a directory hides the lower.
            None => self
                .upper
                .as_ref()
                .map(|u| u.lstat(name))
                .transpose()?
                .flatten()
                .is_some(),
        };
        let lower = match (&self.lower, hides) {
            (Some(l), false) => l.child(name)?,
            _ => None,
        };
        Ok(View {
            upper,
            lower,
            layered: self.layered,
        })
    }

    /// The names the tree shows in this directory, sorted.
    pub fn names(&self) -> io::Result<BTreeSet<OsString>> {
        let mut set = match &self.lower {
            Some(l) => l.names()?,
            None => BTreeSet::new(),
        };
        if let Some(u) = &self.upper {
            for n in u.names()? {
                if self.whiteout(&n)? {
                    set.remove(&n);
                } else {
                    set.insert(n);
                }
            }
        }
        Ok(set)
    }
}

/// A path looked up in a tree: the directories from the root to the
/// entry's parent (`stack[0]` is the root, `names[i]` the name of
/// `stack[i + 1]`), and the entry (`name` `None`: the path is the last
/// directory of the stack itself).
pub struct Resolved {
    pub stack: Vec<View>,
    pub names: Vec<OsString>,
    pub name: Option<OsString>,
    pub entry: Option<Entry>,
}

impl Resolved {
    /// The path inside the tree, without symlinks.
    pub fn path(&self) -> PathBuf {
        let mut p = PathBuf::from("/");
        p.extend(&self.names);
        if let Some(n) = &self.name {
            p.push(n);
        }
        p
    }

    pub fn is_dir(&self) -> bool {
        match &self.entry {
            Some(e) => e.meta.is_dir(),
            None => self.name.is_none(),
        }
    }

    /// Make the entry (a directory) the last of the stack.
    pub fn descend(&mut self) -> Result<()> {
        if let Some(n) = self.name.take() {
            let v = self.stack.last().expect("root").child(&n)?;
            self.stack.push(v);
            self.names.push(n);
            self.entry = None;
        }
        Ok(())
    }
}

fn parts(p: &Path) -> Vec<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// Look `path` up in the tree whose root is `root`, resolving symlinks
/// inside it (the last one only when `follow_last`). A missing last
/// component is not an error (`entry` is `None`); a missing parent is.
pub fn resolve(root: View, path: &Path, follow_last: bool) -> Result<Resolved> {
    let mut todo: VecDeque<OsString> = parts(path).into();
    let mut stack = vec![root];
    let mut names: Vec<OsString> = Vec::new();
    let mut links = 0;
    let shown = |names: &[OsString], c: &OsStr| {
        let mut p = PathBuf::from("/");
        p.extend(names);
        p.join(c).display().to_string()
    };
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            if stack.len() > 1 {
                stack.pop();
                names.pop();
            }
            continue;
        }
        let last = todo.is_empty();
        let cur = stack.last().expect("root");
        let entry = cur
            .lookup(&c)
            .with_context(|| format!("reading {}", shown(&names, &c)))?;
        let Some(e) = entry else {
            if last {
                return Ok(Resolved {
                    stack,
                    names,
                    name: Some(c),
                    entry: None,
                });
            }
            bail!("{}: no such file or directory", shown(&names, &c));
        };
        if e.meta.file_type().is_symlink() && (follow_last || !last) {
            links += 1;
            if links > MAX_LINKS {
                bail!("{}: too many levels of symbolic links", path.display());
            }
            let target = cur.dir_of(&e).read_link(&c)?;
            if target.is_absolute() {
                stack.truncate(1);
                names.clear();
            }
            for p in parts(&target).into_iter().rev() {
                todo.push_front(p);
            }
            continue;
        }
        if last {
            return Ok(Resolved {
                stack,
                names,
                name: Some(c),
                entry: Some(e),
            });
        }
        if !e.meta.is_dir() {
            bail!("{}: not a directory", shown(&names, &c));
        }
        let v = cur.child(&c)?;
        stack.push(v);
        names.push(c);
    }
    Ok(Resolved {
        stack,
        names,
        name: None,
        entry: None,
    })
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A whiteout as overlayfs makes it (needs root: mknod).
    pub fn whiteout(p: &Path) {
        let c = cpath(p).unwrap();
        // SAFETY: a valid C string.
        let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) };
        assert_eq!(r, 0, "mknod {}", p.display());
    }

    pub fn root() -> bool {
        // SAFETY: no memory touched.
        unsafe { libc::geteuid() == 0 }
    }

    fn layered(upper: &Path, lower: &Path) -> View {
        View {
            upper: Some(Dir::open(upper).unwrap()),
            lower: Some(Dir::open(lower).unwrap()),
            layered: true,
        }
    }

    fn read(v: View, p: &str) -> Option<String> {
        let r = resolve(v, Path::new(p), true).unwrap();
        let e = r.entry?;
        let mut s = String::new();
        use std::io::Read;
        r.stack
            .last()
            .unwrap()
            .dir_of(&e)
            .open_file(r.name.as_ref().unwrap())
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        Some(s)
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/shadow"), "inside").unwrap();
        symlink("/etc/shadow", root.join("abs")).unwrap();
        symlink("../../../../../../etc/shadow", root.join("etc/rel")).unwrap();
        symlink("/", root.join("up")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        let v = || View::plain(Dir::open(&root).unwrap());
        assert_eq!(read(v(), "/abs").as_deref(), Some("inside"));
        assert_eq!(read(v(), "etc/rel").as_deref(), Some("inside"));
        assert_eq!(
            read(v(), "/up/../../up/etc/shadow").as_deref(),
            Some("inside")
        );
        let e = resolve(v(), Path::new("/loop"), true).err().unwrap();
        assert!(e.to_string().contains("too many levels"), "{e}");
        // Not following the last link: the link itself.
        let r = resolve(v(), Path::new("/abs"), false).unwrap();
        assert!(r.entry.as_ref().unwrap().meta.file_type().is_symlink());
        assert_eq!(r.path(), Path::new("/abs"));
        let r = resolve(v(), Path::new("/etc/rel"), true).unwrap();
        assert_eq!(r.path(), Path::new("/etc/shadow"));
        assert!(resolve(v(), Path::new("/nope/x"), true).is_err());
    }

    #[test]
    fn upper_over_lower_with_whiteouts_and_opaque_dirs() {
        if !root() {
            eprintln!("skipped: needs root (mknod, trusted xattrs)");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let (u, l) = (t.path().join("u"), t.path().join("l"));
        for d in ["a", "o", "w"] {
            std::fs::create_dir_all(l.join(d)).unwrap();
            std::fs::write(l.join(d).join("f"), "lower").unwrap();
        }
        std::fs::create_dir_all(u.join("a")).unwrap();
        std::fs::create_dir_all(u.join("o")).unwrap();
        std::fs::write(u.join("a/g"), "upper").unwrap();
        std::fs::write(u.join("o/g"), "upper").unwrap();
        set_xattr(&u.join("o"), OPAQUE_XATTR, b"y").unwrap();
        whiteout(&u.join("w"));
        std::fs::write(l.join("x"), "lower").unwrap();
        std::fs::write(u.join("x"), "").unwrap();
        set_xattr(&u.join("x"), WHITEOUT_XATTR, b"").unwrap();
        let v = || layered(&u, &l);
        assert_eq!(read(v(), "/a/f").as_deref(), Some("lower"));
        assert_eq!(read(v(), "/a/g").as_deref(), Some("upper"));
        assert_eq!(read(v(), "/o/f"), None, "hidden by the opaque dir");
        assert_eq!(read(v(), "/o/g").as_deref(), Some("upper"));
        assert!(resolve(v(), Path::new("/w/f"), true).is_err(), "whited out");
        assert_eq!(read(v(), "/x"), None, "xattr whiteout");
        let names: Vec<_> = v().names().unwrap().into_iter().collect();
        assert_eq!(names, ["a", "o"]);
        let mut r = resolve(v(), Path::new("/a"), true).unwrap();
        r.descend().unwrap();
        let names: Vec<_> = r
            .stack
            .last()
            .unwrap()
            .names()
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(names, ["f", "g"]);
    }
}
