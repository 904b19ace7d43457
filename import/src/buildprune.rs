//! `sdme fs build --prune` (sdme.build(5), issue 15): remove the cached
//! step layers and host snapshots that no current build uses.
//!
//! Current means: every `.build` file on the search path (its steps'
//! keys as they would be planned now, and its host snapshot) and every
//! built rootfs in the store (the keys its metadata records, so that a
//! rootfs built with `sdme fs build FILE` from a file elsewhere keeps
//! its cache). A build whose `From=` rootfs is missing, or whose
//! `Copy=` source cannot be read, keeps what the metadata names only.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use sdme_core::build::Build;

use crate::buildcache::base_key;
use crate::builder::base;
use crate::buildlayer::RUN_DIR;
use crate::buildsteps::plan;
use crate::meta::Meta;
use crate::store::{remove_tree, Store};

/// What a prune removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub layers: usize,
    pub kept: usize,
    /// Trees that rebuilds replaced (see buildtrash).
    pub trees: usize,
}

/// The keys `b` uses now: its base (a host snapshot's name) and steps.
fn build_keys(store: &Store, b: &Build) -> Result<Vec<String>> {
    let (_, identity) = base(store, &b.from)?;
    let bk = base_key(&identity);
    let mut keys: Vec<String> = plan(b, &bk, &store.rootfs_dir())?
        .into_iter()
        .map(|p| p.key)
        .collect();
    keys.push(bk);
    Ok(keys)
}

/// The keys every built rootfs's metadata records.
fn meta_keys(store: &Store) -> Result<BTreeSet<String>> {
    let dir = store.meta_dir();
    let mut keys = BTreeSet::new();
    let rd = match fs::read_dir(&dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(keys),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    for e in rd {
        let e = e.with_context(|| format!("cannot list {}", dir.display()))?;
        let p = e.path();
        if p.extension().map_or(true, |x| x != "json") {
            continue;
        }
        // Unreadable metadata stops the prune: its layers are unknown.
        let info = Meta::read(&p)
            .with_context(|| format!("{}: nothing pruned", p.display()))?
            .and_then(|m| m.build);
        if let Some(b) = info {
            keys.insert(b.base);
            keys.extend(b.steps.into_iter().map(|s| s.key));
        }
    }
    Ok(keys)
}

/// Remove from `STATE/build/layers` every layer whose key is not in
/// use by `builds` (the build files on the search path) or by a built
/// rootfs. Refused while a build runs (its new layers are in no file
/// yet).
pub fn prune(state_dir: &Path, builds: &[Build], out: &mut dyn Write) -> Result<Pruned> {
    if let Some(n) = running_build(Path::new(RUN_DIR)) {
        bail!(
            "the build of {n} is running ({RUN_DIR}/{n} exists; a killed build leaves it until it runs again): nothing pruned"
        );
    }
    let store = Store::open(state_dir)?;
    let mut keep = meta_keys(&store)?;
    for b in builds {
        match build_keys(&store, b) {
            Ok(k) => keep.extend(k),
            Err(e) => {
                let _ = writeln!(
                    out,
                    "{}: {e:#}; keeping only what its rootfs names",
                    b.source.display()
                );
            }
        }
    }
    let mut p = remove_unused(&state_dir.join("build/layers"), &keep, out)?;
    p.trees = crate::buildtrash::remove_all(state_dir)?;
    Ok(p)
}

/// A build in progress: a directory under `run_dir` (its overlay's
/// mount point, there from start to end).
fn running_build(run_dir: &Path) -> Option<String> {
    let mut rd = fs::read_dir(run_dir).ok()?;
    rd.find_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
}

fn remove_unused(layers: &Path, keep: &BTreeSet<String>, out: &mut dyn Write) -> Result<Pruned> {
    let mut p = Pruned::default();
    let rd = match fs::read_dir(layers) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(p),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", layers.display())),
    };
    for e in rd {
        let e = e.with_context(|| format!("cannot list {}", layers.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        // `.tmp-*`: a build's unfinished step, its own to clean.
        if name.starts_with('.') || keep.contains(&name) {
            p.kept += usize::from(!name.starts_with('.'));
            continue;
        }
        remove_tree(&e.path())?;
        let _ = writeln!(out, "removed layer {name}");
        p.layers += 1;
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unused_layers_go() {
        let t = tempfile::tempdir().unwrap();
        let l = t.path().join("layers");
        for d in ["aa", "bb", "cc", ".tmp-web"] {
            fs::create_dir_all(l.join(d).join("etc")).unwrap();
        }
        let keep: BTreeSet<String> = ["bb".to_string()].into();
        let mut out = Vec::new();
        let p = remove_unused(&l, &keep, &mut out).unwrap();
        assert_eq!(
            p,
            Pruned {
                layers: 2,
                kept: 1,
                trees: 0
            }
        );
        assert!(l.join("bb/etc").is_dir());
        assert!(l.join(".tmp-web").is_dir());
        assert!(!l.join("aa").exists() && !l.join("cc").exists());
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("removed layer aa\n") && out.contains("removed layer cc\n"),
            "{out}"
        );
        // Nothing there: nothing to do.
        assert_eq!(
            remove_unused(&t.path().join("none"), &keep, &mut Vec::new()).unwrap(),
            Pruned::default()
        );
    }

    #[test]
    fn a_running_build_is_seen() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(running_build(&t.path().join("none")), None);
        assert_eq!(running_build(t.path()), None);
        fs::create_dir(t.path().join("web")).unwrap();
        assert_eq!(running_build(t.path()).as_deref(), Some("web"));
    }

    #[test]
    fn metadata_keys_are_kept() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path()).unwrap();
        fs::create_dir_all(store.meta_dir()).unwrap();
        let m = Meta {
            name: "web".into(),
            kind: "build".into(),
            build: Some(crate::meta::BuildInfo {
                base: "b0".into(),
                steps: vec![crate::meta::BuildStepInfo {
                    key: "k1".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Meta::default()
        };
        fs::write(store.meta_path("web"), m.to_json().unwrap()).unwrap();
        let keys = meta_keys(&store).unwrap();
        assert_eq!(keys, ["b0".to_string(), "k1".to_string()].into());
    }
}
