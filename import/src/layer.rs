//! Applying one uncompressed tar stream onto a directory: a rootfs tarball,
//! or one layer of an OCI image on top of the ones before it.
//!
//! Every entry is confined to the target. Paths with `..` or a leading `/`
//! are refused; parent directories are opened with `openat2` and
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, so an entry below a symlink
//! (`evil -> /etc`, then `evil/passwd`) is refused rather than written
//! through; files are created with `O_EXCL | O_NOFOLLOW` after removing
//! what was there; symlinks are written as links and never followed; a
//! hard link must name an entry inside the tree. Errors name the entry.
//!
//! Speed: one directory fd is kept for the last parent (archives list a
//! directory's files together), all-zero blocks become holes, and nothing
//! is fsync'ed here (the store flushes the file system once at the end;
//! finished large files are queued for write-out at once, see writeback).
//! Directory modes and times are set at the end, when their contents are
//! complete.

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

use crate::acl;
use crate::budget::Budget;
use crate::cancel;
use crate::pax;
use crate::show::show;
use crate::sparse::{self, Sparse};
use crate::sys::{self, cstring, DIR_FLAGS};
use crate::targuard::{self, Guard};
use crate::writeback::Writeback;

/// How to apply an archive.
#[derive(Debug, Clone, Copy)]
pub struct ApplyOpts<'a> {
    /// OCI layer semantics: `.wh.NAME` deletes NAME from the layers below,
    /// `.wh..wh..opq` hides a directory's contents from them. Off for a
    /// plain rootfs tarball, where such names are ordinary files.
    pub whiteouts: bool,
    /// Set owners from the archive (numeric ids; needs root).
    pub same_owner: bool,
    /// Bytes of file data allowed (`--max-size`), shared across layers.
    pub budget: Option<&'a Budget>,
}

impl Default for ApplyOpts<'_> {
    fn default() -> Self {
        ApplyOpts {
            whiteouts: false,
            // SAFETY: geteuid has no failure mode.
            same_owner: unsafe { libc::geteuid() } == 0,
            budget: None,
        }
    }
}

/// What an application wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub entries: u64,
    /// Bytes of regular-file data.
    pub bytes: u64,
}

/// Apply the tar stream `reader` onto the directory `target`.
pub fn apply<R: Read>(reader: R, target: &Path, opts: &ApplyOpts) -> Result<Stats> {
    let root = sys::openat(
        libc::AT_FDCWD,
        &cstring(target.as_os_str().as_encoded_bytes())?,
        DIR_FLAGS,
        0,
    )
    .with_context(|| format!("cannot open {}", target.display()))?;
    let mut a = Applier {
        root,
        opts,
        cache: None,
        stale: false,
        created: HashSet::new(),
        dirs: Vec::new(),
        buf: vec![0u8; 1 << 20],
        stats: Stats::default(),
        writeback: Writeback::start(),
        acls: Vec::new(),
        kept: 0,
    };
    // The tar crate frames the archive; pax records are read here (see
    // pax); the guard bounds what the crate would buffer (see targuard).
    let guard = Guard::new(reader);
    let framed = guard.entries();
    let (tee, recorder) = pax::Tee::new(guard);
    let mut ar = tar::Archive::new(tee);
    let entries = ar.entries().context("not a tar archive")?;
    for entry in entries {
        cancel::check()?;
        let mut entry = entry.context("corrupt tar archive")?;
        let raw = entry.path_bytes().into_owned();
        targuard::check_entry(&framed, entry.raw_header_position())
            .and_then(|()| recorder.take(entry.raw_header_position()))
            .and_then(|records| a.entry(&mut entry, &raw, &records))
            .with_context(|| format!("tar entry '{}'", show(&raw)))?;
        // Whatever the entry kind left unread, so that what follows is
        // the next entry's headers.
        io::copy(&mut entry, &mut io::sink())
            .with_context(|| format!("tar entry '{}': cannot read the archive", show(&raw)))?;
        recorder.resume();
    }
    a.finish_dirs()?;
    a.finish_acls()?;
    Ok(a.stats)
}

/// The relative components of an archive path; `..` and absolute paths
/// are refused. Empty means the target directory itself.
pub fn normalize(path: &[u8]) -> Result<Vec<u8>> {
    if path.starts_with(b"/") {
        bail!("absolute path; refusing to write outside the target");
    }
    let mut out = Vec::with_capacity(path.len());
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => bail!("path contains '..'; refusing to write outside the target"),
            _ => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    if out.contains(&0) {
        bail!("path contains a NUL byte");
    }
    Ok(out)
}

fn split_parent(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&[], rel),
    }
}

/// Owner, mode, times and xattrs of an entry.
struct Attrs {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: libc::timespec,
    xattrs: Vec<(CString, Vec<u8>)>,
    /// ACLs given only as text (set at the end, see acl).
    acls: acl::Texts,
}

/// xattrs never copied into a rootfs: the host's SELinux labels, and
/// overlayfs' own attributes, which would change what the overlay built on
/// this tree shows.
pub fn xattr_skipped(name: &[u8]) -> bool {
    name == b"security.selinux" || name.starts_with(b"trusted.overlay.")
}

struct DirAttrs {
    rel: Vec<u8>,
    mode: u32,
    mtime: libc::timespec,
    xattrs: Vec<(CString, Vec<u8>)>,
}

struct Applier<'a> {
    root: OwnedFd,
    opts: &'a ApplyOpts<'a>,
    /// The last parent directory opened: its relative path and fd.
    cache: Option<(Vec<u8>, OwnedFd)>,
    /// A directory was removed: the cached one may be gone. Dropped at the
    /// next lookup (not at once: its fd may be in use).
    stale: bool,
    /// Paths this archive created (for whiteouts, which only apply to
    /// what the layers below made).
    created: HashSet<Vec<u8>>,
    /// Directories whose mode, xattrs and times are set at the end (as
    /// GNU tar does: a default ACL set at once would be inherited by the
    /// files the archive puts below it).
    dirs: Vec<DirAttrs>,
    buf: Vec<u8>,
    stats: Stats,
    writeback: Writeback,
    /// Text ACLs, set once the whole tree (with its /etc/passwd and
    /// /etc/group, which name their users and groups) is there.
    acls: Vec<(Vec<u8>, acl::Texts)>,
    /// Bytes held in `created`, `dirs` and `acls` (see keep).
    kept: usize,
}

/// The most bytes of names, xattrs and ACLs kept until the end of an
/// archive (about two million entries): what an import holds beyond its
/// fixed buffers.
pub const MAX_KEPT: usize = 256 << 20;

/// What a kept record costs besides its bytes (allocation, table slot).
const KEPT_OVERHEAD: usize = 64;

/// Add a kept record of `n` bytes to `kept`; fails past [`MAX_KEPT`].
fn account(kept: &mut usize, n: usize) -> Result<()> {
    *kept = kept.saturating_add(n.saturating_add(KEPT_OVERHEAD));
    if *kept > MAX_KEPT {
        bail!(
            "the archive has more directories, ACLs or (in an image layer) entries than \
             the importer keeps track of ({} of names and attributes)",
            crate::budget::human(MAX_KEPT as u64)
        );
    }
    Ok(())
}

fn xattr_bytes(x: &[(CString, Vec<u8>)]) -> usize {
    x.iter().map(|(k, v)| k.as_bytes().len() + v.len()).sum()
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

impl Applier<'_> {
    /// Account for a record of `n` bytes kept until the end.
    fn keep(&mut self, n: usize) -> Result<()> {
        account(&mut self.kept, n)
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw: &[u8],
        records: &pax::Records,
    ) -> Result<()> {
        use tar::EntryType as T;
        let et = entry.header().entry_type();
        if matches!(et, T::XGlobalHeader) {
            return Ok(());
        }
        records.check(entry)?;
        let sparse = match et {
            T::Regular | T::Continuous => sparse::from_records(records)?,
            _ => None,
        };
        // GNU tar names a pax sparse file GNUSparseFile.PID/NAME.
        let rel = match sparse.as_ref().and_then(|s| s.name.as_deref()) {
            Some(name) => normalize(name)?,
            None => normalize(raw)?,
        };
        let mut attrs = self.attrs(entry, records)?;
        self.stats.entries += 1;
        if !attrs.acls.is_empty() {
            let texts: usize = attrs.acls.iter().map(|(_, t)| t.len()).sum();
            self.keep(rel.len() + texts)?;
            self.acls
                .push((rel.clone(), std::mem::take(&mut attrs.acls)));
        }
        // Old archives mark directories by a trailing slash only.
        let is_dir =
            matches!(et, T::Directory) || (matches!(et, T::Regular) && raw.ends_with(b"/"));
        if rel.is_empty() {
            if !is_dir {
                bail!("the archive's root entry is not a directory");
            }
            if self.opts.same_owner {
                sys::fchown(self.root.as_raw_fd(), attrs.uid, attrs.gid).context("chown")?;
            }
            self.keep(xattr_bytes(&attrs.xattrs))?;
            self.dirs.push(DirAttrs {
                rel,
                mode: attrs.mode,
                mtime: attrs.mtime,
                xattrs: attrs.xattrs,
            });
            return Ok(());
        }
        let (parent, name) = split_parent(&rel);
        let (parent, name) = (parent.to_vec(), name.to_vec());
        if self.opts.whiteouts && name.starts_with(b".wh.") {
            return self.whiteout(&parent, &name);
        }
        let cname = cstring(&name)?;
        let pfd = self.parent(&parent)?;
        match et {
            _ if is_dir => self.dir(pfd, &rel, &cname, &attrs)?,
            T::Regular | T::Continuous | T::GNUSparse => {
                self.file(pfd, &cname, entry, &attrs, sparse.as_ref())?;
            }
            T::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| anyhow!("symlink without a target"))?;
                let target = cstring(&target)?;
                self.make(pfd, &cname, false, |d, n| sys::symlinkat(&target, d, n))
                    .context("cannot create symlink")?;
                self.finish_at(pfd, &cname, &attrs, false)?;
            }
            T::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| anyhow!("hard link without a target"))?;
                self.hard_link(pfd, &cname, &target)?;
            }
            T::Char | T::Block | T::Fifo => {
                let (kind, dev) = match et {
                    T::Char | T::Block => {
                        let maj = entry.header().device_major()?.unwrap_or(0);
                        let min = entry.header().device_minor()?.unwrap_or(0);
                        let k = if et == T::Char {
                            libc::S_IFCHR
                        } else {
                            libc::S_IFBLK
                        };
                        (k, libc::makedev(maj, min))
                    }
                    _ => (libc::S_IFIFO, 0),
                };
                self.make(pfd, &cname, false, |d, n| {
                    sys::mknodat(d, n, kind | 0o600, dev)
                })
                .context("cannot create device node or fifo")?;
                self.finish_at(pfd, &cname, &attrs, true)?;
            }
            other => bail!("unsupported entry type {other:?}"),
        }
        if self.opts.whiteouts {
            self.keep(rel.len())?;
            self.created.insert(rel);
        }
        Ok(())
    }

    fn attrs<R: Read>(&self, entry: &tar::Entry<'_, R>, records: &pax::Records) -> Result<Attrs> {
        let h = entry.header();
        let id = |v: io::Result<u64>, what: &str| -> Result<u32> {
            let v = v.with_context(|| format!("bad {what}"))?;
            u32::try_from(v).map_err(|_| anyhow!("{what} {v} is out of range"))
        };
        let uid = id(h.uid(), "uid")?;
        let gid = id(h.gid(), "gid")?;
        let mode = h.mode().context("bad mode")? & 0o7777;
        let mut mtime = sys::timespec(h.mtime().map(|v| v as i64).unwrap_or(0), 0);
        let mut xattrs = Vec::new();
        let mut acls = Vec::new();
        for (key, value) in &records.pax {
            let Ok(key) = std::str::from_utf8(key) else {
                continue;
            };
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                if !xattr_skipped(name.as_bytes()) {
                    xattrs.push((cstring(name.as_bytes())?, value.clone()));
                }
            } else if let Some(kind) = acl::Kind::from_pax_key(key) {
                let text = std::str::from_utf8(value).map_err(|_| anyhow!("{key} is not UTF-8"))?;
                acls.push((kind, text.to_string()));
            } else if key == "mtime" {
                if let Some(t) = std::str::from_utf8(value).ok().and_then(parse_pax_time) {
                    mtime = t;
                }
            }
        }
        // The binary form, when the archive has it too, is used as is.
        acls.retain(|(k, _)| !xattrs.iter().any(|(n, _)| n.as_c_str() == k.xattr()));
        Ok(Attrs {
            uid,
            gid,
            mode,
            mtime,
            xattrs,
            acls,
        })
    }

    /// The fd of the directory `rel` (created, with missing parents, as
    /// 0755 root directories if absent). Refuses symlinks on the way.
    fn parent(&mut self, rel: &[u8]) -> Result<RawFd> {
        if rel.is_empty() {
            return Ok(self.root.as_raw_fd());
        }
        if self.stale {
            self.cache = None;
            self.stale = false;
        }
        if let Some((p, fd)) = &self.cache {
            if p == rel {
                return Ok(fd.as_raw_fd());
            }
        }
        let fd = self.open_dir(rel, true)?;
        self.cache = Some((rel.to_vec(), fd));
        Ok(self
            .cache
            .as_ref()
            .map(|(_, fd)| fd.as_raw_fd())
            .unwrap_or(-1))
    }

    fn open_dir(&mut self, rel: &[u8], create: bool) -> Result<OwnedFd> {
        let c = cstring(rel)?;
        match sys::open_beneath(self.root.as_raw_fd(), &c, OPEN_DIR) {
            Ok(fd) => return Ok(fd),
            Err(e) if errno(&e) == libc::ENOENT && create => {}
            Err(e) => return Err(dir_error(rel, e)),
        }
        // Walk, creating what is missing; each step refuses a symlink.
        let mut cur = sys::openat(self.root.as_raw_fd(), DOT, DIR_FLAGS, 0)
            .context("cannot open the target")?;
        let mut sofar = Vec::new();
        for comp in rel.split(|&b| b == b'/') {
            if !sofar.is_empty() {
                sofar.push(b'/');
            }
            sofar.extend_from_slice(comp);
            let cc = cstring(comp)?;
            let next = match sys::openat(cur.as_raw_fd(), &cc, DIR_FLAGS, 0) {
                Ok(fd) => fd,
                Err(e) if errno(&e) == libc::ENOENT => {
                    match sys::mkdirat(cur.as_raw_fd(), &cc, 0o755) {
                        Ok(()) => {}
                        Err(e) if errno(&e) == libc::EEXIST => {}
                        Err(e) => {
                            return Err(anyhow!("cannot create directory '{}': {e}", show(&sofar)))
                        }
                    }
                    let fd = sys::openat(cur.as_raw_fd(), &cc, DIR_FLAGS, 0)
                        .map_err(|e| dir_error(&sofar, e))?;
                    sys::fchmod(fd.as_raw_fd(), 0o755).context("chmod")?;
                    if self.opts.whiteouts {
                        self.keep(sofar.len())?;
                        self.created.insert(sofar.clone());
                    }
                    fd
                }
                Err(e) if errno(&e) == libc::ENOTDIR || errno(&e) == libc::ELOOP => {
                    // O_NOFOLLOW|O_DIRECTORY on a symlink: say which it is.
                    let link = sys::lstatat(cur.as_raw_fd(), &cc)
                        .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK);
                    let e = if link {
                        io::Error::from_raw_os_error(libc::ELOOP)
                    } else {
                        e
                    };
                    return Err(dir_error(&sofar, e));
                }
                Err(e) => return Err(dir_error(&sofar, e)),
            };
            cur = next;
        }
        Ok(cur)
    }

    /// Create `name` with `make`; whatever is in the way is removed first
    /// (a directory too, unless `keep_dir` and it is one). Returns whether
    /// an existing directory was kept.
    fn make(
        &mut self,
        dir: RawFd,
        name: &CStr,
        keep_dir: bool,
        mut make: impl FnMut(RawFd, &CStr) -> io::Result<()>,
    ) -> io::Result<bool> {
        match make(dir, name) {
            Ok(()) => return Ok(false),
            Err(e) if errno(&e) == libc::EEXIST => {}
            Err(e) => return Err(e),
        }
        let st = sys::lstatat(dir, name)?;
        if sys::is_dir(&st) {
            if keep_dir {
                return Ok(true);
            }
            self.stale = true;
            sys::remove_all_at(dir, name)?;
        } else {
            sys::unlinkat(dir, name, 0)?;
        }
        make(dir, name).map(|()| false)
    }

    fn dir(&mut self, pfd: RawFd, rel: &[u8], name: &CStr, attrs: &Attrs) -> Result<()> {
        self.make(pfd, name, true, |d, n| sys::mkdirat(d, n, 0o700))
            .context("cannot create directory")?;
        let fd = sys::openat(pfd, name, DIR_FLAGS, 0).context("cannot open directory")?;
        if self.opts.same_owner {
            sys::fchown(fd.as_raw_fd(), attrs.uid, attrs.gid).context("chown")?;
        }
        self.keep(rel.len() + xattr_bytes(&attrs.xattrs))?;
        self.dirs.push(DirAttrs {
            rel: rel.to_vec(),
            mode: attrs.mode,
            mtime: attrs.mtime,
            xattrs: attrs.xattrs.clone(),
        });
        // Its entries usually follow.
        self.cache = Some((rel.to_vec(), fd));
        Ok(())
    }

    fn file<R: Read>(
        &mut self,
        pfd: RawFd,
        name: &CStr,
        entry: &mut tar::Entry<'_, R>,
        attrs: &Attrs,
        sparse: Option<&Sparse>,
    ) -> Result<()> {
        let size = entry.size();
        if let Some(b) = self.opts.budget {
            b.take(size)?;
        }
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        let mut fd = None;
        self.make(pfd, name, false, |d, n| {
            sys::openat(d, n, flags, 0o600).map(|f| fd = Some(f))
        })
        .context("cannot create file")?;
        let fd = fd.ok_or_else(|| anyhow!("cannot create file"))?;
        match sparse {
            Some(sp) => write_map(entry, fd.as_raw_fd(), sp, size, &mut self.buf)?,
            None => {
                let written = write_sparse(entry, fd.as_raw_fd(), &mut self.buf)?;
                if written != size {
                    bail!("archive ends inside the file's data ({written} of {size} bytes)");
                }
            }
        }
        self.stats.bytes += size;
        if self.opts.same_owner {
            sys::fchown(fd.as_raw_fd(), attrs.uid, attrs.gid).context("chown")?;
        }
        // After chown, which clears set-id bits.
        sys::fchmod(fd.as_raw_fd(), attrs.mode).context("chmod")?;
        self.set_xattrs_fd(fd.as_raw_fd(), attrs)?;
        sys::futimens(fd.as_raw_fd(), &[attrs.mtime, attrs.mtime]).context("cannot set times")?;
        self.writeback.submit(fd, size);
        Ok(())
    }

    /// Owner, mode (unless a symlink), xattrs and times of a non-file,
    /// non-directory `name` just made.
    fn finish_at(&mut self, pfd: RawFd, name: &CStr, attrs: &Attrs, chmod: bool) -> Result<()> {
        if self.opts.same_owner {
            sys::lchownat(pfd, name, attrs.uid, attrs.gid).context("chown")?;
        }
        if chmod {
            sys::fchmodat(pfd, name, attrs.mode).context("chmod")?;
        }
        if !attrs.xattrs.is_empty() {
            let fd = sys::openat(pfd, name, libc::O_PATH | libc::O_NOFOLLOW, 0).context("open")?;
            for (k, v) in &attrs.xattrs {
                sys::setxattr_via_proc(fd.as_raw_fd(), k, v)
                    .with_context(|| format!("cannot set xattr {}", k.to_string_lossy()))?;
            }
        }
        sys::lutimensat(pfd, name, &[attrs.mtime, attrs.mtime]).context("cannot set times")?;
        Ok(())
    }

    fn set_xattrs_fd(&self, fd: RawFd, attrs: &Attrs) -> Result<()> {
        for (k, v) in &attrs.xattrs {
            sys::fsetxattr(fd, k, v)
                .with_context(|| format!("cannot set xattr {}", k.to_string_lossy()))?;
        }
        Ok(())
    }

    fn hard_link(&mut self, pfd: RawFd, name: &CStr, target: &[u8]) -> Result<()> {
        let trel = normalize(target).with_context(|| format!("hard link to '{}'", show(target)))?;
        if trel.is_empty() {
            bail!("hard link to the target directory itself");
        }
        let (tparent, tname) = split_parent(&trel);
        let tname = cstring(tname)?;
        // Resolved without creating anything: the target must exist.
        let tfd = if tparent.is_empty() {
            None
        } else {
            Some(
                self.open_dir(tparent, false)
                    .with_context(|| format!("hard link to '{}'", show(target)))?,
            )
        };
        let tdir = tfd
            .as_ref()
            .map_or(self.root.as_raw_fd(), |f| f.as_raw_fd());
        let st = sys::lstatat(tdir, &tname).map_err(|e| {
            anyhow!(
                "hard link to '{}', which is not in the tree: {e}",
                show(target)
            )
        })?;
        if sys::is_dir(&st) {
            bail!("hard link to the directory '{}'", show(target));
        }
        self.make(pfd, name, false, |d, n| sys::linkat(tdir, &tname, d, n))
            .with_context(|| format!("cannot link to '{}'", show(target)))?;
        Ok(())
    }

    fn whiteout(&mut self, parent: &[u8], name: &[u8]) -> Result<()> {
        if name.starts_with(b".wh..wh.") {
            if name != b".wh..wh..opq" {
                return Ok(()); // aufs bookkeeping (.wh..wh.plnk ...)
            }
            let pfd = self.parent(parent)?;
            let dup = sys::openat(pfd, DOT, DIR_FLAGS, 0).context("open")?;
            let mut removed = false;
            for e in sys::read_dir(dup.as_raw_fd()).context("cannot list directory")? {
                let mut child = parent.to_vec();
                if !child.is_empty() {
                    child.push(b'/');
                }
                child.extend_from_slice(e.name.to_bytes());
                if self.created.contains(&child) {
                    continue;
                }
                sys::remove_all_at(dup.as_raw_fd(), &e.name)
                    .with_context(|| format!("cannot remove '{}'", show(&child)))?;
                removed = true;
            }
            if removed {
                self.stale = true;
            }
            return Ok(());
        }
        let victim = &name[4..];
        if victim.is_empty() || victim == b"." || victim == b".." {
            bail!("whiteout of an invalid name");
        }
        let mut vrel = parent.to_vec();
        if !vrel.is_empty() {
            vrel.push(b'/');
        }
        vrel.extend_from_slice(victim);
        if self.created.contains(&vrel) {
            return Ok(());
        }
        let pfd = self.parent(parent)?;
        self.stale = true;
        sys::remove_all_at(pfd, &cstring(victim)?)
            .with_context(|| format!("cannot remove '{}'", show(&vrel)))
    }

    /// Directory modes and times, deepest first, now that their contents
    /// are written.
    fn finish_dirs(&mut self) -> Result<()> {
        self.cache = None;
        let dirs = std::mem::take(&mut self.dirs);
        for DirAttrs {
            rel,
            mode,
            mtime,
            xattrs,
        } in dirs.iter().rev()
        {
            let fd = if rel.is_empty() {
                sys::openat(self.root.as_raw_fd(), DOT, DIR_FLAGS, 0)
            } else {
                sys::open_beneath(self.root.as_raw_fd(), &cstring(rel)?, OPEN_DIR)
            };
            let fd = match fd {
                Ok(fd) => fd,
                // Replaced or removed by a later entry.
                Err(e) if matches!(errno(&e), libc::ENOENT | libc::ENOTDIR) => continue,
                Err(e) => return Err(dir_error(rel, e)),
            };
            for (k, v) in xattrs {
                sys::fsetxattr(fd.as_raw_fd(), k, v).with_context(|| {
                    format!("'{}': cannot set xattr {}", show(rel), k.to_string_lossy())
                })?;
            }
            // After the ACLs, so the mode's group bits set their mask.
            sys::fchmod(fd.as_raw_fd(), *mode)
                .with_context(|| format!("cannot chmod '{}'", show(rel)))?;
            sys::futimens(fd.as_raw_fd(), &[*mtime, *mtime])
                .with_context(|| format!("cannot set times of '{}'", show(rel)))?;
        }
        Ok(())
    }
}

impl Applier<'_> {
    fn finish_acls(&mut self) -> Result<()> {
        if self.acls.is_empty() {
            return Ok(());
        }
        let names = acl::IdFiles::parse(
            &self.read_small(c"etc/passwd")?,
            &self.read_small(c"etc/group")?,
        );
        for (rel, acls) in std::mem::take(&mut self.acls) {
            let fd = if rel.is_empty() {
                sys::openat(self.root.as_raw_fd(), DOT, libc::O_PATH, 0)
            } else {
                sys::open_beneath(
                    self.root.as_raw_fd(),
                    &cstring(&rel)?,
                    libc::O_PATH | libc::O_NOFOLLOW,
                )
            };
            let fd = match fd {
                Ok(fd) => fd,
                // Replaced or removed by a later entry.
                Err(e) if matches!(errno(&e), libc::ENOENT | libc::ENOTDIR) => continue,
                Err(e) => return Err(e).with_context(|| format!("tar entry '{}'", show(&rel))),
            };
            for (kind, text) in acls {
                let value = acl::to_xattr(&text, &names)
                    .with_context(|| format!("tar entry '{}'", show(&rel)))?;
                sys::setxattr_via_proc(fd.as_raw_fd(), kind.xattr(), &value)
                    .with_context(|| format!("tar entry '{}': cannot set its ACL", show(&rel)))?;
            }
        }
        Ok(())
    }

    /// A small file of the tree as text ("" if absent), read without
    /// following symlinks.
    fn read_small(&self, rel: &CStr) -> Result<String> {
        let fd = match sys::open_beneath(self.root.as_raw_fd(), rel, libc::O_RDONLY) {
            Ok(fd) => fd,
            Err(e) if matches!(errno(&e), libc::ENOENT | libc::ENOTDIR) => return Ok(String::new()),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot open {}", rel.to_string_lossy()))
            }
        };
        let mut text = Vec::new();
        std::fs::File::from(fd)
            .take(16 << 20)
            .read_to_end(&mut text)
            .with_context(|| format!("cannot read {}", rel.to_string_lossy()))?;
        Ok(String::from_utf8_lossy(&text).into_owned())
    }
}

fn dir_error(rel: &[u8], e: io::Error) -> anyhow::Error {
    match errno(&e) {
        libc::ELOOP => anyhow!(
            "'{}' is or goes through a symlink; refusing to write below it",
            show(rel)
        ),
        libc::ENOTDIR => anyhow!("'{}' is not a directory", show(rel)),
        libc::EXDEV => anyhow!("'{}' leads outside the target", show(rel)),
        _ => anyhow!("cannot open directory '{}': {e}", show(rel)),
    }
}

/// `1700000000.5` (pax) as a timespec.
fn parse_pax_time(s: &str) -> Option<libc::timespec> {
    let (sec, frac) = match s.split_once('.') {
        Some((a, b)) => (a, b),
        None => (s, ""),
    };
    let sec: i64 = sec.parse().ok()?;
    let mut nsec: i64 = 0;
    for (i, c) in frac.chars().take(9).enumerate() {
        let d = c.to_digit(10)? as i64;
        nsec += d * 10i64.pow(8 - i as u32);
    }
    if sec < 0 && nsec > 0 {
        return Some(sys::timespec(sec - 1, 1_000_000_000 - nsec));
    }
    Some(sys::timespec(sec, nsec))
}

/// Directory opens through `open_beneath`: its RESOLVE_NO_SYMLINKS refuses
/// a symlink anywhere, the last component too, with ELOOP.
const OPEN_DIR: libc::c_int = libc::O_RDONLY | libc::O_DIRECTORY;

/// `.`, for reopening a directory fd.
pub const DOT: &CStr = match CStr::from_bytes_with_nul(b".\0") {
    Ok(c) => c,
    Err(_) => panic!("not a C string"),
};

const BLOCK: usize = 4096;

/// Whether a block is all zeros (written as a hole instead).
pub fn is_zero(b: &[u8]) -> bool {
    // SAFETY: any bit pattern is a valid u64.
    let (pre, mid, post) = unsafe { b.align_to::<u64>() };
    pre.iter().all(|&x| x == 0)
        && mid.iter().fold(0u64, |a, &x| a | x) == 0
        && post.iter().all(|&x| x == 0)
}

/// Write the `packed` bytes of a pax sparse entry's data where its map
/// says, leaving the rest holes, and give the file its real size.
fn write_map(r: &mut impl Read, fd: RawFd, sp: &Sparse, packed: u64, buf: &mut [u8]) -> Result<()> {
    let (map, used) = match &sp.map {
        Some(m) => (m.clone(), 0),
        None => sparse::read_map(r)?,
    };
    let packed = packed
        .checked_sub(used)
        .ok_or_else(|| anyhow!("the sparse map is larger than the entry"))?;
    sparse::check_map(&map, sp.real_size, packed)?;
    for (mut off, mut left) in map {
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            r.read_exact(&mut buf[..n])
                .context("the archive ends inside the file's data")?;
            sys::pwrite_all(fd, &buf[..n], off).context("cannot write")?;
            off += n as u64;
            left -= n as u64;
            cancel::check()?;
        }
    }
    sys::ftruncate(fd, sp.real_size).context("cannot set the file size")
}

/// Copy `r` into `fd` from offset 0, leaving holes for all-zero blocks;
/// returns the bytes read.
pub fn write_sparse(r: &mut impl Read, fd: RawFd, buf: &mut [u8]) -> Result<u64> {
    let mut off: u64 = 0;
    let mut hole_at_end = false;
    loop {
        // Fill the buffer (a short read is not the end).
        let mut n = 0;
        while n < buf.len() {
            match r.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => cancel::check()?,
                Err(e) => return Err(e).context("cannot read the archive"),
            }
        }
        if n == 0 {
            break;
        }
        let data = &buf[..n];
        let mut i = 0;
        while i < n {
            // A run of non-zero blocks, written at once.
            let start = i;
            while i < n && !is_zero(&data[i..(i + BLOCK).min(n)]) {
                i = (i + BLOCK).min(n);
            }
            if i > start {
                sys::pwrite_all(fd, &data[start..i], off + start as u64).context("cannot write")?;
                hole_at_end = false;
            }
            while i < n && is_zero(&data[i..(i + BLOCK).min(n)]) {
                i = (i + BLOCK).min(n);
                hole_at_end = true;
            }
        }
        off += n as u64;
        if n < buf.len() {
            break;
        }
        cancel::check()?;
    }
    if hole_at_end {
        sys::ftruncate(fd, off).context("cannot set the file size")?;
    }
    Ok(off)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_kept_is_bounded() {
        let mut kept = 0;
        let mut n = 0;
        while account(&mut kept, (1 << 20) - KEPT_OVERHEAD).is_ok() {
            n += 1;
        }
        assert_eq!(n, MAX_KEPT >> 20);
        let e = account(&mut 0, usize::MAX).unwrap_err().to_string();
        assert!(e.contains("256M"), "{e}");
    }

    #[test]
    fn names_in_messages_are_cut_then_escaped() {
        let long = vec![b'\n'; 1 << 20];
        let s = show(&long);
        assert_eq!(s, format!("{}...", "\\n".repeat(200)));
        assert_eq!(show(b"a\xffb"), "a\u{fffd}b");
    }
}
