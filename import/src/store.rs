//! The rootfs store under the state directory (`/var/lib/sdme`):
//!
//! ```text
//! rootfs/NAME            the trees, each renamed into place complete
//! meta/NAME.json         what each came from (see meta.rs)
//! import/NAME.lock       flock'ed by the run importing or removing NAME
//! import/NAME.use        the use lock: shared by a container's prepare
//!                        step, exclusive around the final check and swap
//!                        (see sdme_core::inuse)
//! import/NAME.staging/   that run's work: rootfs/, scratch/, meta.json
//! ```
//!
//! Nothing partial is ever visible as `rootfs/NAME`: a tree is built in
//! `import/NAME.staging/rootfs` and renamed at the end (`--force`:
//! exchanged with the old tree, which is then deleted). A staging
//! directory whose lock nobody holds is what a killed run left; the next
//! run of any name removes it.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::meta::Meta;

#[derive(Debug, Clone)]
pub struct Store {
    state: PathBuf,
}

/// Holds `import/NAME.lock` for the life of the value.
#[derive(Debug)]
pub struct NameLock {
    name: String,
    _file: File,
}

impl NameLock {
    pub fn name(&self) -> &str {
        &self.name
    }
}

const STAGING_SUFFIX: &str = ".staging";

impl Store {
    /// The store in `state_dir`; its directories are created as needed.
    pub fn open(state_dir: &Path) -> Result<Store> {
        let s = Store {
            state: state_dir.to_path_buf(),
        };
        for (d, mode) in [
            (s.state.clone(), 0o755),
            (s.rootfs_dir(), 0o755),
            (s.meta_dir(), 0o755),
            (s.import_dir(), 0o700),
        ] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(&d)
                .with_context(|| format!("cannot create {}", d.display()))?;
        }
        Ok(s)
    }

    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    pub fn rootfs_dir(&self) -> PathBuf {
        self.state.join("rootfs")
    }

    pub fn meta_dir(&self) -> PathBuf {
        self.state.join("meta")
    }

    pub fn import_dir(&self) -> PathBuf {
        self.state.join("import")
    }

    /// `rootfs/NAME`.
    pub fn rootfs_path(&self, name: &str) -> PathBuf {
        self.rootfs_dir().join(name)
    }

    /// `meta/NAME.json`.
    pub fn meta_path(&self, name: &str) -> PathBuf {
        self.meta_dir().join(format!("{name}.json"))
    }

    fn staging_path(&self, name: &str) -> PathBuf {
        self.import_dir().join(format!("{name}{STAGING_SUFFIX}"))
    }

    /// Whether `rootfs/NAME` exists (as anything, not following a symlink).
    pub fn exists(&self, name: &str) -> bool {
        fs::symlink_metadata(self.rootfs_path(name)).is_ok()
    }

    /// The metadata of rootfs NAME, if it has any.
    pub fn meta(&self, name: &str) -> Result<Option<Meta>> {
        Meta::read(&self.meta_path(name))
    }

    /// Lock NAME against another import or removal; refused (not waited
    /// for) when another process holds it.
    pub fn lock(&self, name: &str) -> Result<NameLock> {
        check_name(name)?;
        match self.try_lock(name)? {
            Some(l) => Ok(l),
            None => {
                let pid = fs::read_to_string(self.lock_path(name)).unwrap_or_default();
                let pid = pid.trim();
                let who = if pid.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {pid})")
                };
                bail!("rootfs {name} is being imported or removed by another sdme-import{who}; try again when it is done")
            }
        }
    }

    fn lock_path(&self, name: &str) -> PathBuf {
        self.import_dir().join(format!("{name}.lock"))
    }

    fn try_lock(&self, name: &str) -> Result<Option<NameLock>> {
        let p = self.lock_path(name);
        let Some(mut f) =
            sdme_core::lockfile::lock(&p, sdme_core::lockfile::Mode::Exclusive, false)
                .with_context(|| format!("cannot lock {}", p.display()))?
        else {
            return Ok(None);
        };
        // Who holds it, for the message another run prints.
        let _ = f.set_len(0);
        let _ = f.rewind();
        let _ = writeln!(f, "{}", std::process::id());
        let lock = NameLock {
            name: name.to_string(),
            _file: f,
        };
        self.remove_staging(name)?;
        Ok(Some(lock))
    }

    /// Remove the staging directories that killed runs left (of any name
    /// whose lock is free now).
    pub fn clean_leftovers(&self) -> Result<()> {
        let dir = self.import_dir();
        let rd = fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for e in rd.flatten() {
            let n = e.file_name();
            let Some(name) = n.to_str().and_then(|s| s.strip_suffix(STAGING_SUFFIX)) else {
                continue;
            };
            if check_name(name).is_err() {
                continue;
            }
            // Taking the lock removes the staging directory.
            let _ = self.try_lock(name)?;
        }
        Ok(())
    }

    fn remove_staging(&self, name: &str) -> Result<()> {
        let p = self.staging_path(name);
        if fs::symlink_metadata(&p).is_ok() {
            // A killed disk import may have left its image mounted there.
            crate::mounts::unmount_below(&p)?;
            remove_tree(&p)?;
        }
        Ok(())
    }

    /// A fresh staging directory for NAME (held locked by `lock`).
    pub fn staging<'a>(&'a self, lock: &'a NameLock) -> Result<Staging<'a>> {
        let dir = self.staging_path(lock.name());
        self.remove_staging(lock.name())?;
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let st = Staging {
            store: self,
            lock,
            root: dir.join("rootfs"),
            scratch: dir.join("scratch"),
            dir,
            done: false,
        };
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&st.root)
            .with_context(|| format!("cannot create {}", st.root.display()))?;
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&st.scratch)
            .with_context(|| format!("cannot create {}", st.scratch.display()))?;
        Ok(st)
    }

    /// Take NAME's use lock exclusively: no container's prepare step runs
    /// on NAME while it is held (they wait), so what `in_use` finds stays
    /// true until the swap. Held only around the check and the rename.
    /// A build from NAME holds it for the whole build: say why we wait.
    fn lock_use(&self, name: &str) -> Result<sdme_core::inuse::UseLock> {
        let dir = self.import_dir();
        if let Ok(Some(g)) = sdme_core::inuse::try_lock_use(&dir, name, true) {
            return Ok(g);
        }
        eprintln!(
            "sdme-import: waiting for rootfs {name}'s users to let go of {} \
             (a container being prepared on it, or a build from it)",
            sdme_core::inuse::use_lock_path(&dir, name).display()
        );
        sdme_core::inuse::lock_use(&dir, name, true).with_context(|| {
            format!(
                "cannot lock {}",
                sdme_core::inuse::use_lock_path(&dir, name).display()
            )
        })
    }

    /// Remove rootfs NAME and its metadata: renamed away at once (after
    /// `in_use`, under NAME's use lock, found nothing), then deleted.
    pub fn remove(&self, lock: &NameLock, in_use: &dyn Fn() -> Result<()>) -> Result<()> {
        let name = lock.name();
        let path = self.rootfs_path(name);
        if fs::symlink_metadata(&path).is_err() {
            bail!("no rootfs named {name} in {}", self.rootfs_dir().display());
        }
        let dir = self.staging_path(name);
        self.remove_staging(name)?;
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let away = dir.join("rootfs");
        let guard = self.lock_use(name)?;
        in_use()?;
        fs::rename(&path, &away).with_context(|| format!("cannot move {} away", path.display()))?;
        drop(guard);
        match fs::remove_file(self.meta_path(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot remove {}", self.meta_path(name).display()))
            }
        }
        fsync_dir(&self.rootfs_dir())?;
        remove_tree(&dir)
    }
}

/// An import in progress: `root` is the tree being built, `scratch` a
/// place for temporary files (downloads, converted disk images). Dropped
/// without [`commit`](Staging::commit), it removes everything.
#[derive(Debug)]
pub struct Staging<'a> {
    store: &'a Store,
    lock: &'a NameLock,
    dir: PathBuf,
    pub root: PathBuf,
    pub scratch: PathBuf,
    done: bool,
}

impl Staging<'_> {
    /// Make the tree NAME: flush it to disk, rename it into place (with
    /// `replace`, exchanging it with an existing one, which is deleted,
    /// once `in_use` has found nothing using it: checked here, under
    /// NAME's use lock, since a container may have started during the
    /// import), then its metadata.
    pub fn commit(self, meta: &Meta, replace: bool, in_use: &dyn Fn() -> Result<()>) -> Result<()> {
        self.commit_to(meta, replace, in_use, None).map(|_| ())
    }

    /// [`commit`](Staging::commit), with the tree it replaced (if any)
    /// moved into the directory `trash` (made if missing, on the store's
    /// file system) instead of deleted: the caller removes it later, off
    /// the path of the commit. Returns where it went.
    pub fn commit_to(
        mut self,
        meta: &Meta,
        replace: bool,
        in_use: &dyn Fn() -> Result<()>,
        trash: Option<&Path>,
    ) -> Result<Option<PathBuf>> {
        let name = self.lock.name();
        let target = self.store.rootfs_path(name);
        // Data first, so that after a crash the renamed tree is complete.
        syncfs(&self.root)?;
        let meta_tmp = self.dir.join("meta.json");
        write_synced(&meta_tmp, &meta.to_json()?)?;
        let exists = fs::symlink_metadata(&target).is_ok();
        if exists && !replace {
            bail!("rootfs {name} already exists; use --force to replace it");
        }
        let flags = if exists {
            libc::RENAME_EXCHANGE
        } else {
            libc::RENAME_NOREPLACE
        };
        let guard = if exists {
            let g = self.store.lock_use(name)?;
            in_use()?;
            Some(g)
        } else {
            None
        };
        rename2(&self.root, &target, flags).map_err(|e| {
            if e.raw_os_error() == Some(libc::EEXIST) {
                anyhow!("rootfs {name} appeared while importing; use --force to replace it")
            } else {
                anyhow!(
                    "cannot rename {} to {}: {e}",
                    self.root.display(),
                    target.display()
                )
            }
        })?;
        drop(guard);
        self.done = true;
        let meta_path = self.store.meta_path(name);
        fs::rename(&meta_tmp, &meta_path)
            .with_context(|| format!("cannot write {}", meta_path.display()))?;
        fsync_dir(&self.store.rootfs_dir())?;
        fsync_dir(&self.store.meta_dir())?;
        // The old tree (after an exchange) goes with the staging directory.
        if let (Some(t), true) = (trash, exists) {
            fs::create_dir_all(t).with_context(|| format!("cannot create {}", t.display()))?;
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let to = t.join(nanos.to_string());
            if fs::rename(&self.dir, &to).is_ok() {
                return Ok(Some(to));
            }
        }
        remove_tree(&self.dir)?;
        Ok(None)
    }
}

impl Drop for Staging<'_> {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = remove_tree(&self.dir) {
                eprintln!("sdme-import: {e:#}");
            }
        }
    }
}

fn check_name(name: &str) -> Result<()> {
    sdme_core::name::check_rootfs_name(name).map_err(|e| anyhow!(e))
}

pub(crate) fn rename2(from: &Path, to: &Path, flags: libc::c_uint) -> std::io::Result<()> {
    let f = CString::new(from.as_os_str().as_bytes())?;
    let t = CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: valid NUL-terminated paths.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            flags,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Flush the file system holding `path` (one syncfs instead of an fsync
/// per file).
pub fn syncfs(path: &Path) -> Result<()> {
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: syncfs on an fd we own.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot flush the file system of {}", path.display()));
    }
    Ok(())
}

fn fsync_dir(path: &Path) -> Result<()> {
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("cannot flush {}", path.display()))
}

fn write_synced(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Delete a tree without following symlinks in it.
pub fn remove_tree(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_commit_replace_remove() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path()).unwrap();
        let lock = store.lock("deb").unwrap();
        // A second lock of the same name is refused with a clear message.
        let e = store.lock("deb").unwrap_err().to_string();
        assert!(e.contains("being imported"), "{e}");
        assert!(e.contains(&std::process::id().to_string()), "{e}");
        let st = store.staging(&lock).unwrap();
        fs::write(st.root.join("a"), "1").unwrap();
        assert!(!store.exists("deb"));
        let meta = Meta {
            name: "deb".into(),
            ..Default::default()
        };
        st.commit(&meta, false, &|| Ok(())).unwrap();
        assert_eq!(
            fs::read_to_string(store.rootfs_path("deb").join("a")).unwrap(),
            "1"
        );
        assert_eq!(store.meta("deb").unwrap().unwrap().name, "deb");
        // Without replace: refused, the old tree intact.
        let st = store.staging(&lock).unwrap();
        fs::write(st.root.join("a"), "2").unwrap();
        let e = st.commit(&meta, false, &|| Ok(())).unwrap_err().to_string();
        assert!(e.contains("--force"), "{e}");
        assert_eq!(
            fs::read_to_string(store.rootfs_path("deb").join("a")).unwrap(),
            "1"
        );
        // Replace.
        let st = store.staging(&lock).unwrap();
        fs::write(st.root.join("a"), "3").unwrap();
        st.commit(&meta, true, &|| Ok(())).unwrap();
        assert_eq!(
            fs::read_to_string(store.rootfs_path("deb").join("a")).unwrap(),
            "3"
        );
        // Replace, the old tree moved to a trash directory, not deleted.
        let st = store.staging(&lock).unwrap();
        fs::write(st.root.join("a"), "5").unwrap();
        let trash = t.path().join("trash/deb");
        let old = st
            .commit_to(&meta, true, &|| Ok(()), Some(&trash))
            .unwrap()
            .unwrap();
        assert!(old.starts_with(&trash));
        assert_eq!(fs::read_to_string(old.join("rootfs/a")).unwrap(), "3");
        assert_eq!(
            fs::read_to_string(store.rootfs_path("deb").join("a")).unwrap(),
            "5"
        );
        // The name lock and the use lock.
        let left = || {
            let mut v: Vec<String> = fs::read_dir(store.import_dir())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(left(), ["deb.lock", "deb.use"]);
        // A dropped staging leaves nothing.
        let st = store.staging(&lock).unwrap();
        fs::write(st.root.join("b"), "x").unwrap();
        drop(st);
        assert_eq!(left(), ["deb.lock", "deb.use"]);
        // In use at commit time: refused, the old tree intact, the check
        // made under the use lock (a start cannot take it shared then).
        let st = store.staging(&lock).unwrap();
        fs::write(st.root.join("a"), "4").unwrap();
        let dir = store.import_dir();
        let e = st
            .commit(&meta, true, &|| {
                assert!(sdme_core::inuse::try_lock_use(&dir, "deb", false)
                    .unwrap()
                    .is_none());
                bail!("in use by container web")
            })
            .unwrap_err()
            .to_string();
        assert!(e.contains("container web"), "{e}");
        assert_eq!(
            fs::read_to_string(store.rootfs_path("deb").join("a")).unwrap(),
            "5"
        );
        // The use lock is free again after the refusal.
        assert!(sdme_core::inuse::try_lock_use(&dir, "deb", true)
            .unwrap()
            .is_some());
        let e = store
            .remove(&lock, &|| bail!("in use by container web"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("container web"), "{e}");
        assert!(store.exists("deb"));
        store.remove(&lock, &|| Ok(())).unwrap();
        assert!(!store.exists("deb"));
        assert!(store.meta("deb").unwrap().is_none());
        assert!(store.remove(&lock, &|| Ok(())).is_err());
    }

    #[test]
    fn leftovers_of_a_killed_run_are_removed() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path()).unwrap();
        let left = store.import_dir().join("old.staging/rootfs/etc");
        fs::create_dir_all(&left).unwrap();
        store.clean_leftovers().unwrap();
        assert!(!store.import_dir().join("old.staging").exists());
        assert!(store.lock("bad/name").is_err());
    }
}
