//! Writing outputs so that a concurrent run can never leave a half file:
//! each file or symlink is made under a temporary name in the same
//! directory and renamed into place.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use sdme_core::render::Output;

/// Shared by the writing threads.
pub struct Writer {
    dir: PathBuf,
    pid: u32,
    made_dirs: Mutex<HashSet<PathBuf>>,
}

impl Writer {
    pub fn new(dir: &Path) -> Writer {
        Writer {
            dir: dir.to_path_buf(),
            pid: std::process::id(),
            made_dirs: Mutex::new(HashSet::new()),
        }
    }

    pub fn write(&self, o: &Output) -> Result<(), String> {
        let rel = Path::new(o.path());
        // Output paths come from validated names; refuse anything that
        // would leave the output directory all the same.
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(format!(
                "refusing to write outside the output directory: {}",
                o.path()
            ));
        }
        let dest = self.dir.join(rel);
        let parent = dest.parent().unwrap_or(&self.dir).to_path_buf();
        {
            // Held while creating, so two threads never race on one mkdir.
            let mut made = self.made_dirs.lock().unwrap_or_else(|p| p.into_inner());
            if !made.contains(&parent) {
                fs::create_dir_all(&parent)
                    .map_err(|e| format!("{}: cannot create directory: {e}", parent.display()))?;
                made.insert(parent.clone());
            }
        }
        // Fast paths first: a symlink appears whole or not at all, and an
        // O_TMPFILE file becomes visible only when linkat() names it. Both
        // fail with EEXIST when the name is taken (a concurrent run, or a
        // rerun into the same directory); then the file is made under a
        // temporary name and renamed over the old one.
        let fast = match o {
            Output::Symlink { target, .. } => match symlink(target, &dest) {
                Ok(()) => true,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    fs::read_link(&dest).is_ok_and(|t| t == Path::new(target))
                }
                Err(e) => return Err(format!("{}: cannot write: {e}", dest.display())),
            },
            Output::File { content, .. } => write_tmpfile(&parent, &dest, content.as_bytes()),
        };
        if fast {
            return Ok(());
        }
        let file_name = dest
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{}: no file name", dest.display()))?;
        // Output paths are unique within a run, the PID among runs.
        let tmp = parent.join(format!(".#{file_name}.{}", self.pid));
        let made = match o {
            Output::File { content, .. } => {
                fs::File::create(&tmp).and_then(|mut f| f.write_all(content.as_bytes()))
            }
            Output::Symlink { target, .. } => symlink(target, &tmp).or_else(|_| {
                // A leftover from a run with our PID that was killed.
                let _ = fs::remove_file(&tmp);
                symlink(target, &tmp)
            }),
        };
        made.and_then(|_| fs::rename(&tmp, &dest)).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            format!("{}: cannot write: {e}", dest.display())
        })
    }
}

/// Write `content` to an unnamed file in `dir` and link it as `dest`.
/// False when that cannot be done here (the name exists, the file system
/// has no O_TMPFILE, ...): the caller then takes the rename path.
fn write_tmpfile(dir: &Path, dest: &Path, content: &[u8]) -> bool {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;

    let Ok(mut f) = fs::OpenOptions::new()
        .write(true)
        .mode(0o644)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)
    else {
        return false;
    };
    if f.write_all(content).is_err() {
        return false;
    }
    let Ok(dest_c) = CString::new(dest.as_os_str().as_bytes()) else {
        return false;
    };
    let empty = c"";
    // SAFETY: valid fd and NUL-terminated paths.
    let linked = unsafe {
        libc::linkat(
            f.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            dest_c.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    } == 0;
    if linked {
        return true;
    }
    // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; /proc/self/fd works without.
    let Ok(proc_path) = CString::new(format!("/proc/self/fd/{}", f.as_raw_fd())) else {
        return false;
    };
    // SAFETY: as above.
    unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            proc_path.as_ptr(),
            libc::AT_FDCWD,
            dest_c.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        ) == 0
    }
}
