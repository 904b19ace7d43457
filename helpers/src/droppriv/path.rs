//! A command without `/` looked up in the `PATH` of the environment (the
//! image's `Env`), as execvp does but with no built-in fallback list:
//! without `PATH`, Docker's default is used, which is what the image was
//! built to expect. Empty PATH entries (the current directory, a legacy
//! of execvp) are skipped. Checked as the user the app runs as.

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Docker's PATH for a container whose image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why a command cannot be run.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    NotFound,
    /// Found, but not an executable regular file for this user.
    NotExecutable(PathBuf),
}

/// Whether `p` is a regular file this process may execute.
fn executable(p: &Path) -> bool {
    let Ok(c) = CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: c is a valid C string.
    let ok = unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0;
    ok && std::fs::metadata(p).is_ok_and(|m| m.is_file())
}

/// The file to exec for `cmd` under `path` (the PATH value, if any).
pub fn resolve(cmd: &OsStr, path: Option<&OsStr>) -> Result<PathBuf, Lookup> {
    if cmd.as_bytes().contains(&b'/') {
        let p = PathBuf::from(cmd);
        return match (executable(&p), p.exists()) {
            (true, _) => Ok(p),
            (false, true) => Err(Lookup::NotExecutable(p)),
            (false, false) => Err(Lookup::NotFound),
        };
    }
    if cmd.is_empty() {
        return Err(Lookup::NotFound);
    }
    let path = path.unwrap_or(OsStr::new(DEFAULT_PATH));
    let mut seen = None;
    for dir in path
        .as_bytes()
        .split(|&b| b == b':')
        .filter(|d| !d.is_empty())
    {
        let p = Path::new(OsStr::from_bytes(dir)).join(cmd);
        if executable(&p) {
            return Ok(p);
        }
        if seen.is_none() && p.exists() {
            seen = Some(p);
        }
    }
    Err(seen.map_or(Lookup::NotFound, Lookup::NotExecutable))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file(p: &Path, mode: u32) {
        std::fs::write(p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn lookup_through_path() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        file(&a.join("noexec"), 0o644);
        file(&b.join("noexec"), 0o755);
        file(&a.join("only-a"), 0o644);
        std::fs::create_dir_all(b.join("dir")).unwrap();
        let path = format!("::{}:{}", a.display(), b.display());
        let path = Some(OsStr::new(&path));
        // The first executable wins; a non-executable one earlier is passed.
        assert_eq!(resolve(OsStr::new("noexec"), path), Ok(b.join("noexec")));
        assert_eq!(
            resolve(OsStr::new("only-a"), path),
            Err(Lookup::NotExecutable(a.join("only-a")))
        );
        assert_eq!(
            resolve(OsStr::new("dir"), path),
            Err(Lookup::NotExecutable(b.join("dir")))
        );
        assert_eq!(resolve(OsStr::new("none"), path), Err(Lookup::NotFound));
        assert_eq!(resolve(OsStr::new(""), path), Err(Lookup::NotFound));
        // Not in a PATH without its directory; an empty entry is not ".".
        assert_eq!(
            resolve(OsStr::new("noexec"), Some(OsStr::new(""))),
            Err(Lookup::NotFound)
        );
    }

    #[test]
    fn slash_means_no_lookup() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("x");
        file(&f, 0o700);
        let none = Some(OsStr::new("/nonexistent"));
        assert_eq!(resolve(f.as_os_str(), none), Ok(f.clone()));
        file(&f, 0o600);
        assert_eq!(
            resolve(f.as_os_str(), none),
            Err(Lookup::NotExecutable(f.clone()))
        );
        assert_eq!(
            resolve(OsStr::new("./no/such"), none),
            Err(Lookup::NotFound)
        );
    }

    #[test]
    fn default_path_without_one() {
        // sh is in Docker's default PATH on any Debian.
        let p = resolve(OsStr::new("sh"), None).unwrap();
        assert!(
            p.starts_with("/usr") || p.starts_with("/bin"),
            "{}",
            p.display()
        );
    }
}
