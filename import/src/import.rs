//! One run of sdme-import: check, lock, stage, fill the tree from the
//! source, post-process, commit.

use std::ffi::CStr;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};

use crate::budget::{human, Budget};
use crate::copy::{self, CopyOpts};
use crate::job::Job;
use crate::meta::{self, Meta};
use crate::options::ImportOptions;
use crate::progress::Progress;
use crate::source::{self, Kind};
use crate::store::{remove_tree, Store};
use crate::{cancel, disk, fetch, inuse, post, sys, tarball};

/// Import `opts.source` as rootfs `opts.name`.
pub fn run(opts: &ImportOptions) -> Result<()> {
    let name = opts.name.as_str();
    sdme_core::name::check_rootfs_name(name).map_err(|e| anyhow!(e))?;
    let source = opts.source.as_str();
    import(opts, source, name).with_context(|| format!("cannot import {source}"))
}

/// Remove rootfs `name` from the store in `state_dir`, unless in use.
pub fn remove(state_dir: &Path, name: &str, quiet: bool) -> Result<()> {
    sdme_core::name::check_rootfs_name(name).map_err(|e| anyhow!(e))?;
    let store = Store::open(state_dir)?;
    let lock = store.lock(name)?;
    let path = store.rootfs_path(name);
    if !store.exists(name) {
        bail!("no rootfs named {name} in {}", store.rootfs_dir().display());
    }
    let check = || in_use(name, &path, true, "removing it");
    // Early, for a quick answer; again under the use lock, at the rename.
    check()?;
    store.remove(&lock, &check)?;
    // The trees that rebuilds of NAME replaced go with it (sdme.build(5));
    // no build of NAME runs: it would hold NAME's lock.
    remove_tree(&crate::buildtrash::dir(state_dir, name))?;
    if !quiet {
        eprintln!("removed rootfs {name}");
    }
    Ok(())
}

/// An error naming whatever uses rootfs `name` at `path` (containers,
/// mounts and, with `with_files`, `.container` files), if anything does.
pub(crate) fn in_use(name: &str, path: &Path, with_files: bool, doing: &str) -> Result<()> {
    let users = inuse::users(
        name,
        path,
        with_files,
        Path::new(sdme_core::inuse::RECORD_DIR),
    )?;
    if users.is_empty() {
        return Ok(());
    }
    bail!(
        "rootfs {name} ({}) is in use by {}; {} before {doing}",
        path.display(),
        users.join(", "),
        what_to_do(&users, with_files)
    )
}

/// What frees the rootfs from `users`: stop the containers, let the
/// builds end (a build's step shows as "the build of rootfs NAME"), and
/// with `with_files` remove or edit the files naming it.
fn what_to_do(users: &[String], with_files: bool) -> String {
    let is_build = |u: &String| u.starts_with("the build of");
    let mut todo = Vec::new();
    if users.iter().any(|u| !is_build(u)) {
        todo.push("stop those containers (systemctl stop sdme-NAME)");
    }
    if users.iter().any(is_build) {
        todo.push("let those builds end");
    }
    if with_files {
        todo.push("remove or edit those files");
    }
    match todo.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// `--if-missing`: whether the rootfs is there (and from the pinned
/// digest, if SOURCE is pinned).
fn satisfied(store: &Store, name: &str, source: &str) -> Result<bool> {
    if !store.exists(name) {
        return Ok(false);
    }
    let Some(pin) = source::pinned_digest(source) else {
        return Ok(true);
    };
    let recorded = store.meta(name).ok().flatten().and_then(|m| m.digest);
    Ok(recorded.as_deref() == Some(pin))
}

fn import(opts: &ImportOptions, source: &str, name: &str) -> Result<()> {
    let started = Instant::now();
    let store = Store::open(&opts.state_dir)?;
    if opts.if_missing && satisfied(&store, name, source)? {
        if !opts.quiet {
            eprintln!("rootfs {name} is already there; nothing to do");
        }
        return Ok(());
    }
    let kind = match opts.kind {
        Some(k) => k,
        None => source::detect(source)?,
    };
    let lock = store.lock(name)?;
    if let Err(e) = store.clean_leftovers() {
        eprintln!("sdme-import: warning: {e:#}");
    }
    let exists = store.exists(name);
    // --if-missing that got here: the pinned digest differs; replace.
    let replace = opts.force || (opts.if_missing && exists);
    if exists && !replace {
        bail!(
            "rootfs {name} already exists in {}; use --force to replace it",
            store.rootfs_dir().display()
        );
    }
    let path = store.rootfs_path(name);
    let check = || in_use(name, &path, false, "replacing it");
    if exists {
        // Early, for a quick answer; again at commit, under the use lock
        // (a container may start while this import downloads).
        check()?;
    }
    cancel::install();
    let staging = store.staging(&lock)?;
    let progress = Progress::new(opts.quiet);
    let budget = Budget::new(opts.max_size);
    let mut meta = Meta {
        format: meta::FORMAT_VERSION,
        name: name.to_string(),
        source: source.to_string(),
        kind: kind.type_name().to_string(),
        imported_at: meta::now_rfc3339(),
        ..Meta::default()
    };
    let mut job = Job {
        opts,
        source,
        kind,
        name,
        root: &staging.root,
        scratch: &staging.scratch,
        store: &store,
        progress: &progress,
        budget: &budget,
        meta: &mut meta,
    };
    fill(&mut job)?;
    cancel::check()?;
    post::after_import(&staging.root, opts, &progress, &mut meta)?;
    cancel::check()?;
    meta.size = budget.used();
    meta.os_release = read_os_release(&staging.root);
    staging.commit(&meta, replace, &check)?;
    progress.note(&format!(
        "imported {source} as rootfs {name}: {} in {:.1}s",
        human(meta.size),
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Fill `job.root` from the source, by kind.
fn fill(job: &mut Job) -> Result<()> {
    match job.kind {
        Kind::Directory => {
            let src = Path::new(job.source);
            if !src.is_dir() {
                bail!("not a directory");
            }
            // Never copy the store into itself (importing `/`).
            let state = std::fs::metadata(job.store.state_dir())
                .with_context(|| format!("cannot stat {}", job.store.state_dir().display()))?;
            let skip = [(state.dev(), state.ino())];
            let opts = CopyOpts {
                skip_dirs: &skip,
                ..job.copy_opts()
            };
            job.progress
                .begin(format!("copying {}", src.display()), None);
            copy::copy_tree(src, job.root, &opts)?;
            job.progress.done();
            Ok(())
        }
        Kind::Tarball => {
            let opts = job.apply_opts(false);
            tarball::unpack_file(Path::new(job.source), job.root, &opts, job.progress)?;
            Ok(())
        }
        Kind::Url => fetch::url(job),
        Kind::Registry | Kind::OciLayout | Kind::OciArchive | Kind::DockerArchive => {
            fetch::oci(job)
        }
        Kind::DiskImage => disk::import(job),
    }
}

/// os-release of the tree, resolved inside it (`/etc/os-release` is often
/// a symlink to `../usr/lib/os-release`).
pub fn read_os_release(root: &Path) -> std::collections::BTreeMap<String, String> {
    for p in [c"etc/os-release", c"usr/lib/os-release"] {
        if let Some(text) = read_in_root(root, p) {
            return meta::parse_os_release(&text);
        }
    }
    Default::default()
}

fn read_in_root(root: &Path, rel: &CStr) -> Option<String> {
    let r = std::fs::File::open(root).ok()?;
    let fd = sys::openat2(
        r.as_raw_fd(),
        rel,
        libc::O_RDONLY | libc::O_NOCTTY | libc::O_NONBLOCK,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )
    .ok()?;
    let f = std::fs::File::from(fd);
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut s = String::new();
    f.take(64 << 10).read_to_string(&mut s).ok()?;
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_to_do_fits_the_users() {
        let c = || "container web (sdme-web.service)".to_string();
        let b = || "the build of rootfs s (its step's overlay at /run/sdme/build/s)".to_string();
        assert_eq!(
            what_to_do(&[c()], false),
            "stop those containers (systemctl stop sdme-NAME)"
        );
        assert_eq!(
            what_to_do(&[b()], true),
            "let those builds end and remove or edit those files"
        );
        assert_eq!(
            what_to_do(&[c(), b()], true),
            "stop those containers (systemctl stop sdme-NAME), let those builds end \
             and remove or edit those files"
        );
    }
}
