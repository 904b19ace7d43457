//! The trees that rebuilds replaced (sdme.build(5)): a rebuild swaps the
//! new tree in and moves the old one to `STATE/build/trash/NAME/` rather
//! than deleting it there and then (tens of thousands of unlinks, seconds
//! on a busy disk, that a container's start would wait for). The next
//! build of NAME removes them while its steps run, and `sdme fs build
//! --prune` removes them all. Nothing uses them: the swap happened only
//! once nothing used the old tree.

use std::fs;
use std::path::{Path, PathBuf};

use crate::store::remove_tree;

/// Where the trees replaced by builds of `name` go.
pub fn dir(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("build/trash").join(name)
}

/// The entries of `dir` now.
fn entries(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

/// Remove what `dir` holds now, on a thread of its own that nobody waits
/// for: what is left when the process ends (a short build) is removed
/// next time. Entries that appear later (this build's own old tree) are
/// not touched.
pub fn sweep_in_background(dir: &Path) {
    let old = entries(dir);
    if old.is_empty() {
        return;
    }
    std::thread::spawn(move || {
        for p in old {
            if let Err(e) = remove_tree(&p) {
                eprintln!("sdme-build: {e:#}");
            }
        }
    });
}

/// Remove every replaced tree (`--prune`, no build running); returns how
/// many.
pub fn remove_all(state_dir: &Path) -> anyhow::Result<usize> {
    let mut n = 0;
    for d in entries(&state_dir.join("build/trash")) {
        for p in entries(&d) {
            remove_tree(&p)?;
            n += 1;
        }
        let _ = fs::remove_dir(&d);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_was_there_is_swept_and_prune_takes_all() {
        let t = tempfile::tempdir().unwrap();
        let d = dir(t.path(), "web");
        fs::create_dir_all(d.join("1/usr/bin")).unwrap();
        fs::write(d.join("1/usr/bin/x"), "x").unwrap();
        assert_eq!(entries(&d), [d.join("1")]);
        fs::create_dir_all(dir(t.path(), "db").join("2")).unwrap();
        assert_eq!(remove_all(t.path()).unwrap(), 2);
        assert!(!d.exists());
        assert_eq!(remove_all(t.path()).unwrap(), 0);
        sweep_in_background(&d);
    }
}
