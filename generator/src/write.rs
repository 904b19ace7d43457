//! Writing outputs so that a concurrent run can never leave a half file:
//! a unit is written to an unnamed `O_TMPFILE` file and named with
//! `linkat()` once complete; a symlink appears whole by itself. When the
//! name is taken (a rerun into the same directory, a concurrent run) or
//! the file system has no `O_TMPFILE`, the file or link is made under a
//! temporary name in the same directory and renamed over the old one.
//!
//! The output directory and its subdirectories (`machines.target.wants/`)
//! are opened once; every file is made relative to them with the `*at()`
//! calls, so the kernel never walks the whole path again (a generator run
//! makes thousands of files) and nothing can be written outside the output
//! directory, not even through a symlink put in it.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Shared by the writing threads.
pub struct Writer {
    /// The output directory, as given (for messages).
    path: PathBuf,
    dir: OwnedFd,
    pid: u32,
    /// Subdirectories opened so far, by relative path (a handful).
    subdirs: Mutex<Vec<(String, Arc<OwnedFd>)>>,
    /// `linkat(AT_EMPTY_PATH)` was refused once: go through /proc from
    /// then on.
    no_empty_path: AtomicBool,
}

impl Writer {
    /// Open (after creating, if needed) the output directory.
    pub fn new(dir: &Path) -> Result<Writer, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("{}: cannot create directory: {e}", dir.display()))?;
        let c = CString::new(dir.as_os_str().as_encoded_bytes())
            .map_err(|_| format!("{}: NUL byte in path", dir.display()))?;
        let fd = open_dir(libc::AT_FDCWD, &c)
            .map_err(|e| format!("{}: cannot open directory: {e}", dir.display()))?;
        Ok(Writer {
            path: dir.to_path_buf(),
            dir: fd,
            pid: std::process::id(),
            subdirs: Mutex::new(Vec::new()),
            no_empty_path: AtomicBool::new(false),
        })
    }

    /// Write the unit file `rel` (relative to the output directory).
    pub fn file(&self, rel: &str, content: &[u8]) -> Result<(), String> {
        let (dir, name) = self.place(rel)?;
        let dir = dir.as_ref().map_or(self.dir.as_raw_fd(), |d| d.as_raw_fd());
        if self.write_tmpfile(dir, &name, content) {
            return Ok(());
        }
        let tmp = self.tmp_name(rel, &name)?;
        let made = create_at(dir, &tmp).and_then(|mut f| f.write_all(content));
        self.rename_into_place(dir, &tmp, &name, rel, made)
    }

    /// Make the symlink `rel` (relative to the output directory).
    pub fn symlink(&self, rel: &str, target: &str) -> Result<(), String> {
        let (dir, name) = self.place(rel)?;
        let dir = dir.as_ref().map_or(self.dir.as_raw_fd(), |d| d.as_raw_fd());
        let target_c = CString::new(target).map_err(|_| self.err(rel, "NUL byte in target"))?;
        match symlink_at(&target_c, dir, &name) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if read_link_at(dir, &name).is_ok_and(|t| t == target.as_bytes()) {
                    return Ok(());
                }
            }
            Err(e) => return Err(self.err(rel, e)),
        }
        let tmp = self.tmp_name(rel, &name)?;
        let made = symlink_at(&target_c, dir, &tmp).or_else(|_| {
            // A leftover from a run with our PID that was killed.
            unlink_at(dir, &tmp);
            symlink_at(&target_c, dir, &tmp)
        });
        self.rename_into_place(dir, &tmp, &name, rel, made)
    }

    fn err(&self, rel: &str, e: impl std::fmt::Display) -> String {
        format!("{}: cannot write: {e}", self.path.join(rel).display())
    }

    /// The directory (None: the output directory itself) and file name
    /// `rel` goes to; subdirectories are made on first use.
    fn place(&self, rel: &str) -> Result<(Option<Arc<OwnedFd>>, CString), String> {
        // Output paths come from validated names; refuse anything that
        // would leave the output directory all the same.
        let bad = || {
            format!(
                "refusing to write outside the output directory: {}",
                self.path.join(rel).display()
            )
        };
        if rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(bad());
        }
        let (parent, name) = match rel.rsplit_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, rel),
        };
        let name = CString::new(name).map_err(|_| bad())?;
        let Some(parent) = parent else {
            return Ok((None, name));
        };
        // Held while creating, so two threads never race on one mkdir.
        let mut subdirs = self.subdirs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, fd)) = subdirs.iter().find(|(p, _)| p == parent) {
            return Ok((Some(Arc::clone(fd)), name));
        }
        let fd = Arc::new(self.make_subdir(parent)?);
        subdirs.push((parent.to_string(), Arc::clone(&fd)));
        Ok((Some(fd), name))
    }

    /// Create and open `parent` below the output directory one component
    /// at a time, never following a symlink.
    fn make_subdir(&self, parent: &str) -> Result<OwnedFd, String> {
        let mut cur: Option<OwnedFd> = None;
        for comp in parent.split('/') {
            let at = cur.as_ref().map_or(self.dir.as_raw_fd(), |d| d.as_raw_fd());
            let err = |e: io::Error| {
                format!(
                    "{}: cannot create directory: {e}",
                    self.path.join(parent).display()
                )
            };
            let c = CString::new(comp).map_err(|_| err(io::ErrorKind::InvalidInput.into()))?;
            // SAFETY: valid fd and NUL-terminated name.
            if unsafe { libc::mkdirat(at, c.as_ptr(), 0o755) } != 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::AlreadyExists {
                    return Err(err(e));
                }
            }
            cur = Some(open_dir(at, &c).map_err(err)?);
        }
        cur.ok_or_else(|| format!("refusing to write outside the output directory: {parent}"))
    }

    /// `.#NAME.PID`: output paths are unique within a run, the PID among
    /// runs.
    fn tmp_name(&self, rel: &str, name: &CStr) -> Result<CString, String> {
        let mut v = b".#".to_vec();
        v.extend_from_slice(name.to_bytes());
        v.extend_from_slice(format!(".{}", self.pid).as_bytes());
        CString::new(v).map_err(|_| self.err(rel, "NUL byte in name"))
    }

    fn rename_into_place(
        &self,
        dir: RawFd,
        tmp: &CStr,
        name: &CStr,
        rel: &str,
        made: io::Result<()>,
    ) -> Result<(), String> {
        // SAFETY: valid fds and NUL-terminated names.
        let renamed = made.and_then(|()| {
            match unsafe { libc::renameat(dir, tmp.as_ptr(), dir, name.as_ptr()) } {
                0 => Ok(()),
                _ => Err(io::Error::last_os_error()),
            }
        });
        renamed.map_err(|e| {
            unlink_at(dir, tmp);
            self.err(rel, e)
        })
    }

    /// Write `content` to an unnamed file in `dir` and link it as `name`.
    /// False when that cannot be done here (the name exists, the file
    /// system has no O_TMPFILE, ...): the caller then takes the rename
    /// path.
    fn write_tmpfile(&self, dir: RawFd, name: &CStr, content: &[u8]) -> bool {
        // SAFETY: valid fd, NUL-terminated path; the fd is owned below.
        let fd = unsafe {
            libc::openat(
                dir,
                c".".as_ptr(),
                libc::O_TMPFILE | libc::O_WRONLY | libc::O_CLOEXEC,
                0o644 as libc::c_uint,
            )
        };
        if fd < 0 {
            return false;
        }
        // SAFETY: a fresh fd that nothing else owns.
        let mut f = unsafe { File::from_raw_fd(fd) };
        if f.write_all(content).is_err() {
            return false;
        }
        if !self.no_empty_path.load(Ordering::Relaxed) {
            // SAFETY: valid fds and NUL-terminated paths.
            let r =
                unsafe { libc::linkat(fd, c"".as_ptr(), dir, name.as_ptr(), libc::AT_EMPTY_PATH) };
            if r == 0 {
                return true;
            }
            match io::Error::last_os_error().raw_os_error() {
                // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH (before Linux
                // 6.10); /proc/self/fd works without.
                Some(libc::ENOENT | libc::EPERM) => {
                    self.no_empty_path.store(true, Ordering::Relaxed)
                }
                _ => return false,
            }
        }
        let Ok(proc_path) = CString::new(format!("/proc/self/fd/{fd}")) else {
            return false;
        };
        // SAFETY: as above.
        unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                proc_path.as_ptr(),
                dir,
                name.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            ) == 0
        }
    }
}

fn open_dir(at: RawFd, name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: valid fd and NUL-terminated name; the fd is owned below.
    let fd = unsafe {
        libc::openat(
            at,
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A new file `name` in `dir`, replacing whatever regular file had the
/// name; never through a symlink.
fn create_at(dir: RawFd, name: &CStr) -> io::Result<File> {
    // SAFETY: valid fd and NUL-terminated name; the fd is owned below.
    let fd = unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o644 as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn symlink_at(target: &CStr, dir: RawFd, name: &CStr) -> io::Result<()> {
    // SAFETY: valid fd and NUL-terminated strings.
    match unsafe { libc::symlinkat(target.as_ptr(), dir, name.as_ptr()) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

fn read_link_at(dir: RawFd, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: valid fd, NUL-terminated name, buffer of the given length.
    let n = unsafe { libc::readlinkat(dir, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

fn unlink_at(dir: RawFd, name: &CStr) {
    // SAFETY: valid fd and NUL-terminated name.
    unsafe { libc::unlinkat(dir, name.as_ptr(), 0) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn files_links_and_subdirectories() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("out");
        let w = Writer::new(&out).unwrap();
        w.file("a.service", b"one\n").unwrap();
        w.symlink("x.target.wants/a.service", "../a.service")
            .unwrap();
        w.symlink("x.target.wants/b.service", "../b.service")
            .unwrap();
        // Names taken: replaced whole through the rename path.
        w.file("a.service", b"two\n").unwrap();
        w.symlink("x.target.wants/a.service", "../c.service")
            .unwrap();
        assert_eq!(fs::read(out.join("a.service")).unwrap(), b"two\n");
        assert_eq!(
            fs::read_link(out.join("x.target.wants/a.service")).unwrap(),
            Path::new("../c.service")
        );
        let names: Vec<_> = fs::read_dir(out.join("x.target.wants"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temporary files left: {names:?}");
    }

    #[test]
    fn nothing_outside_the_output_directory() {
        let t = tempfile::tempdir().unwrap();
        let (out, elsewhere) = (t.path().join("out"), t.path().join("elsewhere"));
        fs::create_dir_all(&out).unwrap();
        fs::create_dir_all(&elsewhere).unwrap();
        // A subdirectory that is a symlink out is not followed.
        std::os::unix::fs::symlink(&elsewhere, out.join("x.target.wants")).unwrap();
        let w = Writer::new(&out).unwrap();
        let e = w.symlink("x.target.wants/a.service", "../a.service");
        assert!(e.unwrap_err().contains("cannot create directory"));
        for bad in ["../a.service", "/a.service", "a/../../b", "a//b", "./a"] {
            let e = w.file(bad, b"x").unwrap_err();
            assert!(e.contains("refusing to write outside"), "{bad}: {e}");
        }
        assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
        assert!(!t.path().join("a.service").exists());
    }
}
