//! The steps of a build: `Run=` and `Copy=` (`RUN` and `COPY` in the
//! original format), and the checks on their paths that need no disk.

use std::path::{Path, PathBuf};

use crate::container::HOST_CLONE_OPAQUE;
use crate::diag::Diag;
use crate::name::check_rootfs_name;
use crate::paths::NESTED_SDME_DIRS;
use crate::syntax::Location;
use crate::value::check_abs_path;

use super::Base;

/// One step, with the line that wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Run `/bin/sh -c COMMAND` inside the build container.
    Run { command: String, at: Location },
    /// Copy into the build container's upper layer.
    Copy {
        source: CopySource,
        /// An absolute, normalized path.
        dest: String,
        /// The destination was written with a trailing `/`: a file goes
        /// into that directory.
        dest_dir: bool,
        at: Location,
    },
}

impl Step {
    pub fn at(&self) -> &Location {
        match self {
            Step::Run { at, .. } | Step::Copy { at, .. } => at,
        }
    }

    /// The step as text, the same whichever format it was written in (what
    /// the step cache hashes, with the content of what a `Copy=` copies).
    pub fn text(&self) -> String {
        match self {
            Step::Run { command, .. } => format!("Run={command}"),
            Step::Copy {
                source,
                dest,
                dest_dir,
                ..
            } => {
                let slash = if *dest_dir && dest != "/" { "/" } else { "" };
                format!("Copy={}:{dest}{slash}", source.text())
            }
        }
    }
}

/// Where a `Copy=` takes its files from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CopySource {
    /// A path relative to the directory of the file that holds the line
    /// (`dir`), never leaving it. A trailing `/` in `rel` copies a
    /// directory's contents.
    Local { dir: PathBuf, rel: String },
    /// The original format's host path, absolute (a relative one is taken
    /// from the file's directory, since a unit has no working directory).
    Host(PathBuf),
    /// `ROOTFS:/path` (`fs:NAME:/path`): from an imported rootfs.
    Rootfs { name: String, path: String },
    /// The original format's `CONTAINER:/path`: from a container's tree.
    Container { name: String, path: String },
}

impl CopySource {
    fn text(&self) -> String {
        match self {
            CopySource::Local { rel, .. } => rel.clone(),
            CopySource::Host(p) => p.to_string_lossy().into_owned(),
            CopySource::Rootfs { name, path } => format!("{name}:{path}"),
            CopySource::Container { name, path } => format!("container {name}:{path}"),
        }
    }
}

/// A `Copy=` value: `SRC:DEST` (SRC relative to the directory of the file
/// at `at`) or `ROOTFS:/PATH:DEST`.
pub(super) fn parse_copy(v: &str, at: &Location) -> Result<Step, String> {
    if let Some(c) = v.chars().find(|c| c.is_control()) {
        return Err(format!(
            "contains the control character '{}'",
            c.escape_default()
        ));
    }
    let (source, dest) = match v.split_once(':') {
        Some((r, rest)) if check_rootfs_name(r).is_ok() && rest.starts_with('/') => {
            match rest.split_once(':') {
                Some((path, dest)) => {
                    check_abs_path(trim_slash(path), "source path")?;
                    let source = CopySource::Rootfs {
                        name: r.to_string(),
                        path: path.to_string(),
                    };
                    (source, dest)
                }
                None => (local_source(r, at)?, rest),
            }
        }
        Some((src, dest)) => (local_source(src, at)?, dest),
        None => {
            return Err("expected SRC:DEST or ROOTFS:/PATH:DEST".into());
        }
    };
    let (dest, dest_dir) = parse_dest(dest)?;
    Ok(Step::Copy {
        source,
        dest,
        dest_dir,
        at: at.clone(),
    })
}

/// A relative source, checked not to leave the build directory by its
/// spelling (a symlink out of it is the builder's to refuse).
fn local_source(src: &str, at: &Location) -> Result<CopySource, String> {
    let dir = at.path.parent().unwrap_or(Path::new("/")).to_path_buf();
    if src.is_empty() {
        return Err("the source is empty (use '.' for the whole directory)".into());
    }
    if src.starts_with('/') {
        return Err(format!(
            "the source '{src}' is absolute; give it relative to {} (the directory of the file), or as ROOTFS:/PATH",
            dir.display()
        ));
    }
    if src.split('/').any(|c| c == "..") {
        return Err(format!(
            "the source '{src}' escapes the build directory {}",
            dir.display()
        ));
    }
    Ok(CopySource::Local {
        dir,
        rel: src.to_string(),
    })
}

/// A destination: absolute and normalized; a trailing `/` says "into
/// this directory".
pub(super) fn parse_dest(dest: &str) -> Result<(String, bool), String> {
    if dest.is_empty() {
        return Err("the destination is empty".into());
    }
    let dir = dest.ends_with('/');
    let trimmed = trim_slash(dest);
    check_abs_path(trimmed, "destination")?;
    Ok((trimmed.to_string(), dir))
}

/// A path without its trailing `/` (but `/` itself).
fn trim_slash(p: &str) -> &str {
    match p.strip_suffix('/') {
        Some(t) if !t.is_empty() => t,
        _ => p,
    }
}

/// Directories a booted container mounts a tmpfs over: files copied there
/// would be hidden.
const TMPFS_DIRS: [&str; 3] = ["/tmp", "/run", "/dev/shm"];

/// Whether `path` is `dir` or under it.
fn under(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Refuse a destination hidden in the booted build container: under a
/// tmpfs, or under one of its opaque directories (those of every
/// container, and for a clone of the host those of host clones).
pub fn check_dest(dest: &str, base: &Base) -> Result<(), String> {
    if let Some(d) = TMPFS_DIRS.iter().find(|d| under(dest, d)) {
        return Err(format!(
            "the destination {dest} is under {d}, which a booted container mounts a tmpfs over: the files would be hidden; copy elsewhere"
        ));
    }
    let host = (*base == Base::Host).then_some(HOST_CLONE_OPAQUE.as_slice());
    let opaque = NESTED_SDME_DIRS.iter().chain(host.into_iter().flatten());
    if let Some(d) = opaque.into_iter().find(|d| under(dest, d)) {
        return Err(format!(
            "the destination {dest} is under {d}, an opaque directory of the build container: copy elsewhere"
        ));
    }
    Ok(())
}

/// [`check_dest`] for every `Copy=` step, once `From=` is known.
pub(super) fn check_dests(steps: &[Step], base: &Base, key: &str) -> Vec<Diag> {
    let mut diags = Vec::new();
    for s in steps {
        if let Step::Copy { dest, at, .. } = s {
            if let Err(m) = check_dest(dest, base) {
                // `Copy=SRC:DEST: ...` as written; the original's `COPY: ...`.
                let what = if key == "Copy=" {
                    s.text()
                } else {
                    key.to_string()
                };
                diags.push(Diag::at(at, format!("{what}: {m}")));
            }
        }
    }
    diags
}
