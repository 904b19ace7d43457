//! Which imported rootfs each prepared container uses, and the lock that
//! keeps a container's start and a replacement of its rootfs apart
//! (sdme-prepare(8), sdme-import(1)).
//!
//! * A record `/run/sdme/inuse/MACHINE` (`lower=`, `merged=`, `unit=`,
//!   `source=` lines, and `app=`: the rootfs of its application, `App=`) is written by `sdme-prepare` on every start path
//!   (the prepare unit of a declared container, the `ExecStartPre=` of a
//!   template instance or a `PrivateUsers=` container), whatever the lower
//!   layer, and removed by `sdme-prepare --unmount` (every container's
//!   `ExecStopPost=`) once the overlay is unmounted. Two readers:
//!   - `sdme-import`: a `PrivateUsers=` overlay names only the ID-mapped
//!     clone in its `lowerdir=`, so mountinfo alone cannot say which
//!     rootfs it uses; the record can;
//!   - `sdme-generator`: a container whose file was removed or broke
//!     while it ran still needs a unit that stops it the way its own unit
//!     would (see [`crate::orphan`]); the record says which unit, machine
//!     and file.
//! * The lock `/var/lib/sdme/import/NAME.use` is taken shared by
//!   `sdme-prepare` while it prepares (and, where it mounts the overlay
//!   itself, mounts) on rootfs NAME, and exclusive by `sdme-import` only
//!   around its final check and swap of NAME. It is not the import's own
//!   `NAME.lock`, which an import holds for its whole run (downloads
//!   included): a start must never wait for a download.
//!
//! Records are files in a tmpfs: a reboot clears them. Within a boot a
//! record can outlive its container only if its stop step never ran (the
//! stop step was killed; a start that failed after its prepare step).
//! Such a record must not block `--force` forever, so the importer counts
//! a record only while it can be true: the container's `merged/` is
//! mounted, or its service is active, activating or has a job queued
//! (a declared container between its prepare unit and its mount unit).
//! See `sdme-import`'s `inuse.rs`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::lockfile;

/// Where the records live.
pub const RECORD_DIR: &str = "/run/sdme/inuse";

/// Largest record read (four short lines).
const MAX_RECORD: u64 = 8192;

/// Most records read: one per running container (the generator reads
/// them at every daemon-reload, so their number is bounded too).
pub const MAX_RECORDS: usize = 10_000;

/// What one prepared container uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub machine: String,
    /// The lower directory given to the prepare step.
    pub lower: PathBuf,
    /// The container's `merged/`.
    pub merged: PathBuf,
    /// The container's service (`None` in records of older versions).
    pub unit: Option<String>,
    /// The container's file (`None` in records of older versions).
    pub source: Option<PathBuf>,
    /// The rootfs of the container's application (`App=`), mounted at
    /// `STATE/app/merged`.
    pub app: Option<PathBuf>,
}

impl Record {
    /// Whether the container uses `path` as its lower layer or as its
    /// application's.
    pub fn uses(&self, path: &Path) -> bool {
        self.lower == path || self.app.as_deref() == Some(path)
    }

    fn to_text(&self) -> Option<String> {
        let lower = self.lower.to_str()?;
        let merged = self.merged.to_str()?;
        let source = match &self.source {
            Some(p) => Some(p.to_str()?),
            None => None,
        };
        let app = match &self.app {
            Some(p) => Some(p.to_str()?),
            None => None,
        };
        if [
            lower,
            merged,
            source.unwrap_or_default(),
            app.unwrap_or_default(),
        ]
        .iter()
        .any(|s| s.contains('\n'))
        {
            return None;
        }
        let mut t = format!("lower={lower}\nmerged={merged}\n");
        if let Some(u) = &self.unit {
            t.push_str(&format!("unit={u}\n"));
        }
        if let Some(src) = source {
            t.push_str(&format!("source={src}\n"));
        }
        if let Some(a) = app {
            t.push_str(&format!("app={a}\n"));
        }
        Some(t)
    }

    /// A record's text; `None` when it is not one we wrote.
    pub fn parse(machine: &str, text: &str) -> Option<Record> {
        let (mut lower, mut merged, mut unit, mut source, mut app) = (None, None, None, None, None);
        for line in text.lines() {
            match line.split_once('=')? {
                ("lower", v) if v.starts_with('/') => lower = Some(PathBuf::from(v)),
                ("merged", v) if v.starts_with('/') => merged = Some(PathBuf::from(v)),
                ("unit", v) if crate::value::check_unit_name(v, "unit").is_ok() => {
                    unit = Some(v.to_string())
                }
                ("source", v) if v.starts_with('/') => source = Some(PathBuf::from(v)),
                ("app", v) if v.starts_with('/') => app = Some(PathBuf::from(v)),
                _ => return None,
            }
        }
        Some(Record {
            machine: machine.to_string(),
            lower: lower?,
            merged: merged?,
            unit,
            source,
            app,
        })
    }
}

/// Write `rec` as `dir/MACHINE` (a temporary file renamed into place).
pub fn write(dir: &Path, rec: &Record) -> io::Result<()> {
    crate::name::check_machine_name(&rec.machine).map_err(io::Error::other)?;
    let text = rec
        .to_text()
        .ok_or_else(|| io::Error::other("path is not valid UTF-8 or has a newline"))?;
    let tmp = dir.join(format!(".{}.tmp", rec.machine));
    let path = dir.join(&rec.machine);
    // A concurrent `remove` of another machine's record may remove the
    // empty directory between our mkdir and create: make it again.
    let mut tries = 0;
    loop {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)?;
        let r = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&tmp)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .and_then(|()| fs::rename(&tmp, &path));
        match r {
            Err(e) if e.kind() == io::ErrorKind::NotFound && tries < 5 => tries += 1,
            r => return r,
        }
    }
}

/// Remove the record of `machine` (none is fine) and the directory when
/// it is empty: nothing may stay in `/run/sdme` when no container runs.
pub fn remove(dir: &Path, machine: &str) -> io::Result<()> {
    match fs::remove_file(dir.join(machine)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // Fails while other records are there; that is the point.
    let _ = fs::remove_dir(dir);
    Ok(())
}

/// Every record in `dir` (none when it does not exist), in machine-name
/// order, at most [`MAX_RECORDS`] (the first by name); unreadable or
/// foreign files are left out.
pub fn read_all(dir: &Path) -> io::Result<Vec<Record>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names: Vec<String> = (rd.flatten())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        // Temporary files start with a dot.
        .filter(|m| crate::name::check_machine_name(m).is_ok())
        .collect();
    names.sort();
    names.truncate(MAX_RECORDS);
    Ok(names.iter().filter_map(|m| read(dir, m)).collect())
}

/// The record of `machine` in `dir`, if there is a readable one: a
/// regular file (never followed through a link), at most [`MAX_RECORD`]
/// bytes, that parses.
pub fn read(dir: &Path, machine: &str) -> Option<Record> {
    let f = OpenOptions::new()
        .read(true)
        // O_NONBLOCK: a FIFO must not block a reload.
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(dir.join(machine))
        .ok()?;
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return None;
    }
    let mut text = String::new();
    f.take(MAX_RECORD).read_to_string(&mut text).ok()?;
    Record::parse(machine, &text)
}

/// `NAME` when `lower` is `rootfs_dir/NAME` (an imported rootfs, which
/// sdme-import may replace); `None` for any other lower directory.
pub fn rootfs_name<'a>(rootfs_dir: &Path, lower: &'a Path) -> Option<&'a str> {
    let rest = lower.strip_prefix(rootfs_dir).ok()?;
    let name = rest.to_str()?;
    crate::name::check_rootfs_name(name).ok()?;
    Some(name)
}

/// `lock_dir/NAME.use`.
pub fn use_lock_path(lock_dir: &Path, name: &str) -> PathBuf {
    lock_dir.join(format!("{name}.use"))
}

/// Holds `NAME.use` (shared or exclusive) for the life of the value.
#[derive(Debug)]
pub struct UseLock {
    _file: File,
}

/// Take `lock_dir/NAME.use`, waiting for it: shared for a start,
/// exclusive for a replacement or removal (both hold it briefly).
pub fn lock_use(lock_dir: &Path, name: &str, exclusive: bool) -> io::Result<UseLock> {
    crate::name::check_rootfs_name(name).map_err(io::Error::other)?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(lock_dir)?;
    let mode = if exclusive {
        lockfile::Mode::Exclusive
    } else {
        lockfile::Mode::Shared
    };
    let f = lockfile::lock(&use_lock_path(lock_dir, name), mode, true)?
        .ok_or_else(|| io::Error::other("lock not taken"))?;
    Ok(UseLock { _file: f })
}

/// Take the lock if it is free for `exclusive` now, without waiting.
pub fn try_lock_use(lock_dir: &Path, name: &str, exclusive: bool) -> io::Result<Option<UseLock>> {
    let mode = if exclusive {
        lockfile::Mode::Exclusive
    } else {
        lockfile::Mode::Shared
    };
    Ok(lockfile::lock(&use_lock_path(lock_dir, name), mode, false)?.map(|f| UseLock { _file: f }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(m: &str, lower: &str) -> Record {
        Record {
            machine: m.into(),
            lower: lower.into(),
            merged: format!("/var/lib/sdme/containers/{m}/merged").into(),
            unit: Some(format!("sdme-{m}.service")),
            source: Some(format!("/etc/sdme/{m}.container").into()),
            app: None,
        }
    }

    #[test]
    fn records_round_trip_and_leave_nothing() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("inuse");
        let a = rec("a", "/var/lib/sdme/rootfs/deb");
        let mut b = rec("b", "/");
        b.unit = None;
        b.source = None;
        b.app = Some("/var/lib/sdme/rootfs/bb".into());
        assert!(b.uses(Path::new("/var/lib/sdme/rootfs/bb")) && b.uses(Path::new("/")));
        assert!(!a.uses(Path::new("/var/lib/sdme/rootfs/bb")));
        write(&dir, &a).unwrap();
        write(&dir, &b).unwrap();
        // Rewritten at the next start: one record per machine.
        write(&dir, &a).unwrap();
        assert_eq!(read_all(&dir).unwrap(), vec![a.clone(), b.clone()]);
        remove(&dir, "a").unwrap();
        assert!(dir.exists(), "b's record is still there");
        remove(&dir, "b").unwrap();
        remove(&dir, "b").unwrap(); // twice is fine
        assert!(!dir.exists(), "the empty directory is removed");
        assert!(read_all(&dir).unwrap().is_empty());
    }

    #[test]
    fn foreign_files_are_ignored() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        fs::write(d.join("x"), "lower=/a\nmerged=/b\nrm -rf /\n").unwrap();
        fs::write(d.join("y"), "lower=relative\nmerged=/b\n").unwrap();
        fs::write(d.join(".z.tmp"), "lower=/a\nmerged=/b\n").unwrap();
        fs::write(d.join("w"), "lower=/a\nmerged=/b\nunit=../x\n").unwrap();
        fs::write(d.join("v"), "lower=/a\nmerged=/b\nsource=rel\n").unwrap();
        fs::create_dir(d.join("dir")).unwrap();
        let fifo = std::ffi::CString::new(d.join("fifo").into_os_string().into_encoded_bytes());
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.unwrap().as_ptr(), 0o600) }, 0);
        std::os::unix::fs::symlink(d.join("ok"), d.join("link")).unwrap();
        fs::write(d.join("ok"), "lower=/a\nmerged=/b\n").unwrap();
        let all = read_all(d).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].machine, "ok");
        assert_eq!(all[0].unit, None);
        assert_eq!(all[0].source, None);
    }

    #[test]
    fn bad_names_and_paths_are_refused() {
        let t = tempfile::tempdir().unwrap();
        assert!(write(t.path(), &rec("../x", "/a")).is_err());
        assert!(write(t.path(), &rec("a", "/a\nunit=x")).is_err());
        let mut r = rec("a", "/a");
        r.source = Some("/etc/sdme/a\nunit=x".into());
        assert!(write(t.path(), &r).is_err());
    }

    #[test]
    fn rootfs_names() {
        let r = Path::new("/var/lib/sdme/rootfs");
        assert_eq!(
            rootfs_name(r, Path::new("/var/lib/sdme/rootfs/deb")),
            Some("deb")
        );
        assert_eq!(rootfs_name(r, Path::new("/")), None);
        assert_eq!(rootfs_name(r, Path::new("/var/lib/sdme/rootfs/a/b")), None);
        assert_eq!(rootfs_name(r, Path::new("/srv/deb")), None);
    }

    #[test]
    fn shared_locks_exclude_an_exclusive_one() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("import");
        let s1 = lock_use(&d, "deb", false).unwrap();
        let s2 = lock_use(&d, "deb", false).unwrap();
        assert!(try_lock_use(&d, "deb", true).unwrap().is_none());
        assert!(try_lock_use(&d, "other", true).unwrap().is_some());
        drop(s1);
        assert!(try_lock_use(&d, "deb", true).unwrap().is_none());
        drop(s2);
        let x = try_lock_use(&d, "deb", true).unwrap().unwrap();
        assert!(try_lock_use(&d, "deb", false).unwrap().is_none());
        drop(x);
        assert!(try_lock_use(&d, "deb", false).unwrap().is_some());
        assert!(lock_use(&d, "../x", true).is_err());
    }
}
