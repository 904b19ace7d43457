//! Planning a build run (sdme.build(5), issue 15): each step's cache key,
//! how many leading steps the cache already holds, and whether the
//! rootfs in the store is up to date (the build unit's no-op).
//!
//! The cache holds one directory per finished step,
//! `STATE/build/layers/KEY` (renamed into place when the step succeeded,
//! so a directory there is complete); a rebuild stacks the layers of the
//! leading cached steps and runs from the first step without one.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sdme_core::build::{Build, CopySource, Step};

use crate::buildcache::{confined, content_hash, step_key, Key};
use crate::buildfrom::Opened;
use crate::meta::{BuildInfo, BuildStepInfo, Meta};

/// One step with its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub text: String,
    /// `path:line`.
    pub at: String,
    pub key: Key,
}

/// Where a `Copy=` step reads from, open for as long as it is kept (a
/// stopped container's layers are mounted for the copy).
pub struct SourcePath {
    pub path: PathBuf,
    _tree: Option<Opened>,
}

/// Where a `Copy=` step reads from, confined to its directory, rootfs or
/// container's tree. `rootfs_dir`: the store's `rootfs/` directory.
pub fn copy_source_path(source: &CopySource, rootfs_dir: &Path) -> Result<SourcePath> {
    let plain = |path| SourcePath { path, _tree: None };
    match source {
        CopySource::Local { dir, rel } => confined(dir, rel.trim_end_matches('/')).map(plain),
        CopySource::Host(p) => Ok(plain(p.clone())),
        CopySource::Rootfs { name, path } => {
            let root = rootfs_dir.join(name);
            if !root.is_dir() {
                bail!(
                    "no rootfs '{name}' to copy from ({} does not exist)",
                    root.display()
                );
            }
            confined(&root, inside(path)).map(plain)
        }
        CopySource::Container { name, path } => {
            let tree = Opened::open(name)
                .with_context(|| format!("cannot copy from the container {name}"))?;
            let path = confined(&tree.root, inside(path))
                .with_context(|| format!("in the container {name}"))?;
            Ok(SourcePath {
                path,
                _tree: Some(tree),
            })
        }
    }
}

/// An absolute path in a tree as a relative one, without a trailing `/`.
fn inside(path: &str) -> &str {
    path.trim_start_matches('/').trim_end_matches('/')
}

/// The keys of `build`'s steps after the base key `base`.
pub fn plan(build: &Build, base: &str, rootfs_dir: &Path) -> Result<Vec<Planned>> {
    let mut prev = base.to_string();
    let mut out = Vec::with_capacity(build.steps.len());
    for s in &build.steps {
        let at = s.at().to_string();
        let content = match s {
            Step::Run { .. } => None,
            Step::Copy { source, .. } => {
                let p = copy_source_path(source, rootfs_dir).with_context(|| at.clone())?;
                Some(content_hash(&p.path).with_context(|| at.clone())?)
            }
        };
        let text = s.text();
        let key = step_key(&prev, &text, content.as_deref());
        prev = key.clone();
        out.push(Planned { text, at, key });
    }
    Ok(out)
}

/// How many leading steps have their layer in `layers` (`layers/KEY`).
pub fn cached_prefix(steps: &[Planned], layers: &Path) -> usize {
    steps
        .iter()
        .take_while(|s| layers.join(&s.key).is_dir())
        .count()
}

/// Whether the rootfs whose metadata is `meta` was built with exactly
/// these steps from this base.
pub fn up_to_date(meta: Option<&Meta>, base: &str, steps: &[Planned]) -> bool {
    let Some(b) = meta.and_then(|m| m.build.as_ref()) else {
        return false;
    };
    b.base == base
        && b.steps.len() == steps.len()
        && b.steps.iter().zip(steps).all(|(a, s)| a.key == s.key)
}

/// The metadata's record of a build.
pub fn build_info(file: &Path, file_hash: &str, base: &str, steps: &[Planned]) -> BuildInfo {
    BuildInfo {
        file: file.to_string_lossy().into_owned(),
        file_hash: file_hash.to_string(),
        base: base.to_string(),
        steps: steps
            .iter()
            .map(|s| BuildStepInfo {
                text: s.text.clone(),
                at: s.at.clone(),
                key: s.key.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buildcache::base_key;
    use sdme_core::search::UnitName;
    use sdme_core::syntax::UnitFile;
    use std::fs;

    fn build(dir: &Path, text: &str) -> Build {
        let path = dir.join("web.build");
        fs::write(&path, text).unwrap();
        let f = UnitFile::parse(&path, text.as_bytes()).unwrap();
        Build::from_unit(&UnitName::from_stem("web"), &path, f).unwrap()
    }

    #[test]
    fn a_changed_copy_source_reruns_from_that_step() {
        let t = tempfile::tempdir().unwrap();
        let (dir, rootfs, layers) = (
            t.path().join("b"),
            t.path().join("rootfs"),
            t.path().join("layers"),
        );
        for d in [&dir, &rootfs.join("deb/etc"), &layers] {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(dir.join("p.deb"), "v1").unwrap();
        fs::write(rootfs.join("deb/etc/os-release"), "ID=debian").unwrap();
        let text =
            "[Build]\nRun=one\nCopy=p.deb:/srv/\nCopy=deb:/etc/os-release:/etc/base\nRun=two\n";
        let b = build(&dir, text);
        let base = base_key("rootfs deb");
        let p1 = plan(&b, &base, &rootfs).unwrap();
        assert_eq!(p1.len(), 4);
        assert!(p1[1].at.ends_with("web.build:3"), "{}", p1[1].at);
        assert_eq!(p1, plan(&b, &base, &rootfs).unwrap());
        fs::write(dir.join("p.deb"), "v2").unwrap();
        let p2 = plan(&b, &base, &rootfs).unwrap();
        assert_eq!(p1[0], p2[0]);
        assert!(p1[1..].iter().zip(&p2[1..]).all(|(a, b)| a.key != b.key));
        // The cache: leading layers only.
        assert_eq!(cached_prefix(&p2, &layers), 0);
        fs::create_dir(layers.join(&p2[0].key)).unwrap();
        fs::create_dir(layers.join(&p2[2].key)).unwrap();
        assert_eq!(cached_prefix(&p2, &layers), 1);
        // Up to date only with the same base and every key.
        let mut m = Meta {
            build: Some(build_info(&b.source, "h", &base, &p2)),
            ..Default::default()
        };
        assert!(up_to_date(Some(&m), &base, &p2));
        assert!(!up_to_date(Some(&m), &base, &p1));
        assert!(!up_to_date(Some(&m), &base_key("host"), &p2));
        assert!(!up_to_date(Some(&m), &base, &p2[..3]));
        m.build = None;
        assert!(!up_to_date(Some(&m), &base, &p2));
        assert!(!up_to_date(None, &base, &p2));
    }

    #[test]
    fn sources_are_refused_with_the_line() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("b");
        fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink("/etc", dir.join("out")).unwrap();
        for (text, want) in [
            ("[Build]\nCopy=out/passwd:/x\n", "is a symlink"),
            ("[Build]\nRun=x\nCopy=nosuch:/x\n", "cannot read it"),
            (
                "[Build]\nCopy=deb:/etc:/x\n",
                "no rootfs 'deb' to copy from",
            ),
        ] {
            let b = build(&dir, text);
            let e = format!("{:#}", plan(&b, "k", &t.path().join("rootfs")).unwrap_err());
            assert!(e.contains("web.build:") && e.contains(want), "{text}: {e}");
        }
    }
}
