//! The reverse of a tarball import: a tree written as a tar stream that
//! `sdme-import` unpacks into the same tree (owners, modes, xattrs, device
//! nodes, hard links, symlinks, times in seconds).
//!
//! The tree is walked by directory fd and one name at a time, never
//! following a symlink. A directory on another file system (a mount point
//! below the tree) is refused: the caller exports one file system view.
//! Long names, long link targets, large ids and every xattr go into pax
//! records (`path`, `linkpath`, `uid`, `gid`, `SCHILY.xattr.NAME`), which
//! the importer reads by their length prefix (see pax.rs), so any byte of
//! a value survives. Sockets cannot be archived and are left out (counted).

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use tar::{Builder, EntryType, Header};

use crate::layer::xattr_skipped;
use crate::sys;

/// Deepest directory nesting exported (each level holds an open fd).
const MAX_DEPTH: usize = 400;

/// What an export wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub entries: u64,
    /// Bytes of file data.
    pub bytes: u64,
    /// Sockets left out.
    pub sockets: u64,
}

struct Walk<W: Write> {
    tar: Builder<W>,
    /// (dev, ino) of files with more than one link: their first path.
    links: HashMap<(u64, u64), Vec<u8>>,
    dev: u64,
    stats: Stats,
    pax_seq: u64,
}

/// Write the tree at `root` as a tar stream to `out`; returns `out` and
/// what was written.
pub fn write_tree<W: Write>(root: &Path, out: W) -> Result<(W, Stats)> {
    let c = sys::cstring(root.as_os_str().as_bytes())?;
    let fd = sys::openat(libc::AT_FDCWD, &c, sys::DIR_FLAGS, 0)
        .with_context(|| format!("cannot open {}", root.display()))?;
    let st =
        sys::fstat(fd.as_raw_fd()).with_context(|| format!("cannot stat {}", root.display()))?;
    let mut w = Walk {
        tar: Builder::new(out),
        links: HashMap::new(),
        dev: st.st_dev,
        stats: Stats::default(),
        pax_seq: 0,
    };
    w.entry(fd.as_raw_fd(), None, b"./", &st)?;
    w.dir(&fd, Vec::new(), 1)
        .with_context(|| format!("cannot export {}", root.display()))?;
    let out = w.tar.into_inner().context("cannot finish the archive")?;
    Ok((out, w.stats))
}

impl<W: Write> Walk<W> {
    fn dir(&mut self, fd: &OwnedFd, rel: Vec<u8>, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            bail!("{}: nested deeper than {MAX_DEPTH} directories", show(&rel));
        }
        let mut names: Vec<CString> = sys::read_dir(fd.as_raw_fd())
            .with_context(|| format!("cannot list {}", show(&rel)))?
            .into_iter()
            .map(|e| e.name)
            .collect();
        names.sort();
        for name in names {
            let mut path = rel.clone();
            path.extend_from_slice(name.to_bytes());
            let st = sys::lstatat(fd.as_raw_fd(), &name)
                .with_context(|| format!("cannot stat {}", show(&path)))?;
            if sys::is_dir(&st) {
                if st.st_dev != self.dev {
                    bail!(
                        "{} is a mount point (another file system); unmount it first",
                        show(&path)
                    );
                }
                path.push(b'/');
                let sub = sys::openat(fd.as_raw_fd(), &name, sys::DIR_FLAGS, 0)
                    .with_context(|| format!("cannot open {}", show(&path)))?;
                self.entry(sub.as_raw_fd(), None, &path, &st)?;
                self.dir(&sub, path, depth + 1)?;
            } else {
                self.entry(fd.as_raw_fd(), Some(&name), &path, &st)?;
            }
        }
        Ok(())
    }

    /// One entry: `name` in directory `fd`, or with `name` None, the
    /// directory `fd` itself.
    fn entry(
        &mut self,
        fd: RawFd,
        name: Option<&CStr>,
        path: &[u8],
        st: &libc::stat,
    ) -> Result<()> {
        let fmt = st.st_mode & libc::S_IFMT;
        if fmt == libc::S_IFSOCK {
            self.stats.sockets += 1;
            return Ok(());
        }
        let mut h = Header::new_ustar();
        let mut pax: Vec<u8> = Vec::new();
        h.set_mode(st.st_mode & 0o7777);
        h.set_mtime(st.st_mtime.max(0) as u64);
        for (key, id, set) in [
            ("uid", st.st_uid, Header::set_uid as fn(&mut Header, u64)),
            ("gid", st.st_gid, Header::set_gid),
        ] {
            if u64::from(id) > 0o7777777 {
                pax.extend(record(key, id.to_string().as_bytes()));
                set(&mut h, 0);
            } else {
                set(&mut h, u64::from(id));
            }
        }
        if h.set_path(OsStr::from_bytes(path)).is_err() {
            pax.extend(record("path", path));
            h.set_path(placeholder(path))
                .context("cannot set a placeholder path")?;
        }
        // A hard link to a file already written.
        let key = (st.st_dev, st.st_ino);
        if fmt != libc::S_IFDIR && st.st_nlink > 1 {
            if let Some(first) = self.links.get(&key).cloned() {
                h.set_entry_type(EntryType::Link);
                h.set_size(0);
                link_name(&mut h, &mut pax, &first)?;
                return self.append(h, pax, &mut std::io::empty(), path);
            }
            self.links.insert(key, path.to_vec());
        }
        // The file's own fd: xattrs and data are read from the inode that
        // was stat'ed, never through a symlink.
        let own: Option<OwnedFd> = match name {
            None => None,
            Some(n) => {
                let flags = if fmt == libc::S_IFREG {
                    libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_NONBLOCK
                } else {
                    libc::O_PATH | libc::O_NOFOLLOW
                };
                Some(
                    sys::openat(fd, n, flags, 0)
                        .with_context(|| format!("cannot open {}", show(path)))?,
                )
            }
        };
        let afd = own.as_ref().map_or(fd, |o| o.as_raw_fd());
        if let Some(o) = &own {
            let now =
                sys::fstat(o.as_raw_fd()).with_context(|| format!("cannot stat {}", show(path)))?;
            if (now.st_dev, now.st_ino) != key {
                bail!("{} changed while it was exported", show(path));
            }
        }
        for (k, v) in
            xattrs(afd, fmt).with_context(|| format!("cannot read the xattrs of {}", show(path)))?
        {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k.to_bytes());
            pax.extend(record_bytes(&key, &v));
        }
        match fmt {
            libc::S_IFDIR => {
                h.set_entry_type(EntryType::Directory);
                h.set_size(0);
                self.append(h, pax, &mut std::io::empty(), path)
            }
            libc::S_IFREG => {
                h.set_entry_type(EntryType::Regular);
                let size = st.st_size.max(0) as u64;
                h.set_size(size);
                let Some(o) = own else {
                    bail!("{}: no file to read", show(path));
                };
                let mut f = std::fs::File::from(o);
                let mut data = Exact {
                    inner: (&mut f).take(size),
                    left: size,
                };
                self.append(h, pax, &mut data, path)?;
                if data.left != 0 || f.read(&mut [0u8; 1]).map(|n| n != 0).unwrap_or(true) {
                    bail!("{} changed size while it was exported", show(path));
                }
                self.stats.bytes += size;
                Ok(())
            }
            libc::S_IFLNK => {
                h.set_entry_type(EntryType::Symlink);
                h.set_size(0);
                let Some(n) = name else {
                    bail!("{}: a symlink as the root", show(path));
                };
                let target = sys::readlinkat(fd, n)
                    .with_context(|| format!("cannot read the link {}", show(path)))?;
                link_name(&mut h, &mut pax, target.to_bytes())?;
                self.append(h, pax, &mut std::io::empty(), path)
            }
            libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO => {
                h.set_entry_type(match fmt {
                    libc::S_IFCHR => EntryType::Char,
                    libc::S_IFBLK => EntryType::Block,
                    _ => EntryType::Fifo,
                });
                h.set_size(0);
                if fmt != libc::S_IFIFO {
                    h.set_device_major(libc::major(st.st_rdev))
                        .and_then(|()| h.set_device_minor(libc::minor(st.st_rdev)))
                        .with_context(|| format!("{}: device number", show(path)))?;
                }
                self.append(h, pax, &mut std::io::empty(), path)
            }
            _ => bail!("{}: unknown file type {fmt:o}", show(path)),
        }
    }

    /// The pax header (if any records), then the entry.
    fn append(
        &mut self,
        mut h: Header,
        pax: Vec<u8>,
        data: &mut dyn Read,
        path: &[u8],
    ) -> Result<()> {
        if !pax.is_empty() {
            let mut x = Header::new_ustar();
            x.set_entry_type(EntryType::XHeader);
            self.pax_seq += 1;
            x.set_path(format!("PaxHeaders/{}", self.pax_seq))
                .context("pax header path")?;
            x.set_mode(0o644);
            x.set_size(pax.len() as u64);
            x.set_cksum();
            self.tar
                .append(&x, pax.as_slice())
                .with_context(|| format!("cannot write the pax header of {}", show(path)))?;
        }
        h.set_cksum();
        self.tar
            .append(&h, data)
            .with_context(|| format!("cannot write {}", show(path)))?;
        self.stats.entries += 1;
        Ok(())
    }
}

/// Reads exactly what the header said, counting what is left.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left -= n as u64;
        Ok(n)
    }
}

fn link_name(h: &mut Header, pax: &mut Vec<u8>, target: &[u8]) -> Result<()> {
    if h.set_link_name_literal(target).is_err() {
        pax.extend(record("linkpath", target));
        h.set_link_name_literal(&target[..target.len().min(99)])
            .or_else(|_| h.set_link_name_literal(b"x"))
            .context("cannot set a placeholder link name")?;
    }
    Ok(())
}

/// A short stand-in for a path carried in a pax record.
fn placeholder(path: &[u8]) -> String {
    let tail = String::from_utf8_lossy(&path[path.len().saturating_sub(60)..])
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .collect::<String>();
    format!("./@PaxPath/{tail}")
}

fn xattrs(fd: RawFd, fmt: u32) -> std::io::Result<Vec<(CString, Vec<u8>)>> {
    let via_proc = !matches!(fmt, libc::S_IFREG | libc::S_IFDIR);
    let p = sys::proc_fd_path(fd);
    let names = if via_proc {
        sys::listxattr_path(&p)
    } else {
        sys::flistxattr(fd)
    };
    let names = match names {
        Ok(n) => n,
        // Symlinks on some file systems, and file systems without xattrs.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::EPERM)) => {
            return Ok(Vec::new())
        }
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for n in names {
        if xattr_skipped(n.to_bytes()) {
            continue;
        }
        let v = if via_proc {
            sys::getxattr_path(&p, &n)
        } else {
            sys::fgetxattr(fd, &n)
        };
        match v {
            Ok(v) => out.push((n, v)),
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort();
    Ok(out)
}

fn record(key: &str, value: &[u8]) -> Vec<u8> {
    record_bytes(key.as_bytes(), value)
}

/// One pax record: `LEN KEY=VALUE\n`, LEN counting itself.
fn record_bytes(key: &[u8], value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut r = len.to_string().into_bytes();
    r.push(b' ');
    r.extend_from_slice(key);
    r.push(b'=');
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

fn show(p: &[u8]) -> String {
    String::from_utf8_lossy(p).escape_debug().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn pax_record_lengths() {
        assert_eq!(record("path", b"a"), b"9 path=a\n");
        // 9 + 1 digits: the length grows a digit.
        // 99 bytes without the length: 2 digits make 101, which needs 3.
        let r = record("k", &[b'x'; 95]);
        assert_eq!(&r[..4], b"102 ");
        assert_eq!(r.len(), 102);
        let r = record_bytes(b"SCHILY.xattr.user.a", b"a\nb");
        assert_eq!(
            r.len(),
            std::str::from_utf8(&r[..2])
                .unwrap()
                .parse::<usize>()
                .unwrap()
        );
    }

    #[test]
    fn tree_round_trip_through_tar() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("a/b")).unwrap();
        std::fs::write(src.join("a/f"), "hello").unwrap();
        std::fs::hard_link(src.join("a/f"), src.join("a/b/g")).unwrap();
        symlink("../../etc/shadow", src.join("a/l")).unwrap();
        let long = "n".repeat(200);
        std::fs::write(src.join("a/b").join(&long), "x").unwrap();
        std::fs::set_permissions(src.join("a/f"), std::fs::Permissions::from_mode(0o4711)).unwrap();
        let (buf, stats) = write_tree(&src, Vec::new()).unwrap();
        assert_eq!(stats.bytes, 6, "a hard link's data once");
        let mut ar = tar::Archive::new(buf.as_slice());
        let mut seen = Vec::new();
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            let p = e.path().unwrap().to_string_lossy().into_owned();
            let kind = e.header().entry_type();
            let link = e
                .link_name()
                .unwrap()
                .map(|l| l.to_string_lossy().into_owned());
            if p == "a/b/g" {
                assert_eq!(e.header().mode().unwrap(), 0o4711);
            }
            seen.push((p, kind, link));
        }
        let find = |p: &str| seen.iter().find(|s| s.0 == p).cloned();
        assert_eq!(find("./").unwrap().1, EntryType::Directory);
        // a/b/ is walked before a/f: a/b/g is the first name of the file.
        assert_eq!(find("a/f").unwrap().1, EntryType::Link);
        assert_eq!(find("a/f").unwrap().2.as_deref(), Some("a/b/g"));
        assert_eq!(find("a/l").unwrap().2.as_deref(), Some("../../etc/shadow"));
        assert!(find(&format!("a/b/{long}")).is_some(), "long name via pax");
        // Sorted, parents before children.
        let pos = |p: &str| seen.iter().position(|s| s.0 == p).unwrap();
        assert!(pos("a/") < pos("a/b/") && pos("a/b/") < pos("a/b/g"));
    }
}
