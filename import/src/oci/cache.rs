//! The content-addressed blob cache: `DIR/sha256/HEX`, written to a
//! temporary file and renamed into place only after its digest matched, so
//! every file under a digest's name has that digest.

use super::digest::{copy_verified, Digest};
use anyhow::{Context, Result};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Cache {
    root: PathBuf,
    /// Blobs fetched into the cache by this process (for the summary).
    pub fetched: AtomicU64,
    pub fetched_bytes: AtomicU64,
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl Cache {
    /// Opens (creates) the cache and removes temporary files that processes
    /// that no longer run left behind (a `kill -9` mid-download).
    pub fn open(root: &Path) -> Result<Cache> {
        for algo in ["sha256", "sha512"] {
            let dir = root.join(algo);
            fs::create_dir_all(&dir)
                .with_context(|| format!("{}: cannot create the blob cache", dir.display()))?;
            if let Ok(entries) = fs::read_dir(&dir) {
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if let Some(pid) = name
                        .strip_prefix(".tmp-")
                        .and_then(|r| r.split('-').next())
                        .and_then(|p| p.parse::<i32>().ok())
                    {
                        let alive = unsafe { libc::kill(pid, 0) } == 0
                            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
                        if !alive || pid == std::process::id() as i32 {
                            let _ = fs::remove_file(e.path());
                        }
                    }
                }
            }
        }
        Ok(Cache {
            root: root.to_path_buf(),
            fetched: AtomicU64::new(0),
            fetched_bytes: AtomicU64::new(0),
        })
    }

    pub fn path(&self, d: &Digest) -> PathBuf {
        self.root.join(d.algo_name()).join(&d.hex)
    }

    /// The cached blob, if present with the expected size.
    pub fn get(&self, d: &Digest, size: Option<u64>) -> Option<PathBuf> {
        let p = self.path(d);
        let meta = fs::symlink_metadata(&p).ok()?;
        if !meta.is_file() || size.is_some_and(|s| s != meta.len()) {
            return None;
        }
        Some(p)
    }

    /// Stores a blob read from `src`, verifying digest and size on the way.
    pub fn put(
        &self,
        what: &str,
        d: &Digest,
        size: Option<u64>,
        src: &mut dyn Read,
    ) -> Result<PathBuf> {
        let dest = self.path(d);
        let tmp = self.root.join(d.algo_name()).join(format!(
            ".tmp-{}-{}-{}",
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed),
            &d.hex[..16]
        ));
        let result = (|| -> Result<u64> {
            let mut f = fs::File::create(&tmp)
                .with_context(|| format!("{}: cannot create", tmp.display()))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut f);
            let n = copy_verified(what, d, size, src, &mut w)?;
            w.flush()
                .with_context(|| format!("{}: writing", tmp.display()))?;
            drop(w);
            f.sync_data()
                .with_context(|| format!("{}: sync", tmp.display()))?;
            fs::rename(&tmp, &dest)
                .with_context(|| format!("{}: cannot rename into the cache", dest.display()))?;
            Ok(n)
        })();
        match result {
            Ok(n) => {
                self.fetched.fetch_add(1, Ordering::Relaxed);
                self.fetched_bytes.fetch_add(n, Ordering::Relaxed);
                Ok(dest)
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::digest::Algorithm;

    #[test]
    fn put_verifies_and_leaves_nothing_on_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(dir.path()).unwrap();
        let d = Digest::of(Algorithm::Sha256, b"blob");
        assert!(c.get(&d, None).is_none());
        let e = c
            .put("layer", &d, Some(4), &mut &b"blub"[..])
            .unwrap_err()
            .to_string();
        assert!(e.contains("digest mismatch"), "{e}");
        assert_eq!(fs::read_dir(dir.path().join("sha256")).unwrap().count(), 0);
        let p = c.put("layer", &d, Some(4), &mut &b"blob"[..]).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"blob");
        assert_eq!(c.get(&d, Some(4)), Some(p));
        assert!(c.get(&d, Some(5)).is_none());
        // A temp file of a dead process is removed at the next open.
        let stale = dir.path().join("sha256/.tmp-999999999-0-abc");
        fs::write(&stale, b"x").unwrap();
        Cache::open(dir.path()).unwrap();
        assert!(!stale.exists());
    }
}
