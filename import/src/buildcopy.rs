//! A build's `Copy=` step (sdme.build(5), issue 15): copy a file or a
//! tree into the step's upper layer, with owners, modes and xattrs,
//! confined to the tree.
//!
//! `view` is the build container's tree as the step finds it (the merged
//! overlay of the base and the earlier steps); `upper` is the step's own
//! layer. The destination is resolved in `view` component by component,
//! and a component that is a symlink there is refused (writing under it
//! in the upper layer would replace the link with a directory, or follow
//! it out of the tree). Directories created in `upper` on the way take
//! the owner and mode of the same directory in `view`, so the merged
//! tree keeps them; new ones are root's, 0755.
//!
//! Where the files go, as the original sdme did: a source whose path ends
//! in `/` (or is `.`) copies its contents into DEST; a named directory or
//! a file goes into DEST when DEST is an existing directory or was
//! written with a trailing `/`, else it becomes DEST.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::copy::{copy_one, copy_tree, CopyOpts, Stats};

/// What DEST is in the build container's view.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    Missing,
    Dir,
    Other,
}

/// Resolve `dest` (absolute, normalized) in `view` without following
/// symlinks.
fn resolve(view: &Path, dest: &str) -> Result<Found> {
    let mut p = view.to_path_buf();
    let comps: Vec<&str> = dest.split('/').filter(|c| !c.is_empty()).collect();
    for (i, c) in comps.iter().enumerate() {
        p.push(c);
        let last = i + 1 == comps.len();
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => bail!(
                "the destination {dest} crosses the symlink /{} in the build container; copy to the path it points to",
                comps[..=i].join("/")
            ),
            Ok(m) if m.is_dir() => {}
            Ok(_) if last => return Ok(Found::Other),
            Ok(_) => bail!(
                "the destination {dest}: a parent is not a directory in the build container"
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Missing),
            Err(e) => return Err(e).with_context(|| format!("{}", p.display())),
        }
    }
    Ok(Found::Dir)
}

/// Make `rel`'s directories in `upper`, each with the owner and mode of
/// the same directory in `view` when it has one.
fn make_dirs(view: &Path, upper: &Path, rel: &Path) -> Result<PathBuf> {
    let mut u = upper.to_path_buf();
    let mut v = view.to_path_buf();
    for c in rel.components() {
        u.push(c);
        v.push(c);
        if fs::symlink_metadata(&u).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        let (mode, owner) = match fs::symlink_metadata(&v) {
            Ok(m) if m.is_dir() => (m.mode() & 0o7777, Some((m.uid(), m.gid()))),
            _ => (0o755, None),
        };
        fs::DirBuilder::new()
            .mode(mode)
            .create(&u)
            .with_context(|| format!("cannot create {}", u.display()))?;
        // The mode again: the umask applies to mkdir.
        fs::set_permissions(&u, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {}", u.display()))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::lchown(&u, Some(uid), Some(gid))
                .with_context(|| format!("cannot set the owner of {}", u.display()))?;
        }
    }
    Ok(u)
}

/// Copy `src` (already confined by the caller; `contents`: its path ended
/// in `/` or was `.`) to `dest` (`dest_dir`: written with a trailing `/`)
/// of the build container whose tree is `view`, into `upper`.
pub fn copy_step(
    src: &Path,
    contents: bool,
    view: &Path,
    upper: &Path,
    dest: &str,
    dest_dir: bool,
    opts: &CopyOpts,
) -> Result<Stats> {
    let m =
        fs::symlink_metadata(src).with_context(|| format!("{}: cannot read it", src.display()))?;
    if m.file_type().is_symlink() {
        bail!(
            "{}: is a symlink; Copy= does not follow symlinks",
            src.display()
        );
    }
    let found = resolve(view, dest)?;
    let rel = Path::new(dest.trim_start_matches('/'));
    let into = found == Found::Dir || dest_dir;
    if m.is_dir() && contents {
        if found == Found::Other {
            bail!(
                "cannot copy the directory {} onto the file {dest}",
                src.display()
            );
        }
        let target = make_dirs(view, upper, rel)?;
        return copy_tree(src, &target, opts);
    }
    let name = src
        .file_name()
        .with_context(|| format!("{}: no file name", src.display()))?;
    let (parent, final_name): (&Path, &OsStr) = if into {
        (rel, name)
    } else {
        if m.is_dir() && found == Found::Other {
            bail!(
                "cannot copy the directory {} onto the file {dest}",
                src.display()
            );
        }
        let parent = rel.parent().unwrap_or(Path::new(""));
        let last = rel.file_name().context("cannot copy onto /")?;
        (parent, last)
    };
    let parent_dir = make_dirs(view, upper, parent)?;
    // A file that an earlier copy of this step put there is replaced.
    let target = parent_dir.join(final_name);
    if let Ok(t) = fs::symlink_metadata(&target) {
        if t.is_dir() {
            bail!(
                "{}: already a directory in this step's layer",
                target.display()
            );
        }
        fs::remove_file(&target).with_context(|| format!("cannot replace {}", target.display()))?;
    }
    let src_dir = src.parent().context("the source has no directory")?;
    if final_name == name {
        return copy_one(src_dir, name, &parent_dir, opts);
    }
    // Another name: copied beside under a temporary name, then renamed.
    let tmp = tempfile::Builder::new()
        .prefix(".sdme-copy-")
        .tempdir_in(&parent_dir)
        .with_context(|| {
            format!(
                "cannot create a temporary directory in {}",
                parent_dir.display()
            )
        })?;
    let stats = copy_one(src_dir, name, tmp.path(), opts)?;
    fs::rename(tmp.path().join(name), &target)
        .with_context(|| format!("cannot rename into {}", target.display()))?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    struct T {
        _t: tempfile::TempDir,
        src: PathBuf,
        view: PathBuf,
        upper: PathBuf,
    }

    fn setup() -> T {
        let t = tempfile::tempdir().unwrap();
        let (src, view, upper) = (
            t.path().join("src"),
            t.path().join("view"),
            t.path().join("upper"),
        );
        for d in [&src, &view, &upper] {
            fs::create_dir(d).unwrap();
        }
        fs::create_dir_all(src.join("site/css")).unwrap();
        fs::write(src.join("site/index.html"), "hi").unwrap();
        fs::write(src.join("site/css/a.css"), "a").unwrap();
        fs::write(src.join("p.deb"), "deb").unwrap();
        fs::set_permissions(src.join("p.deb"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::create_dir_all(view.join("var/www")).unwrap();
        fs::set_permissions(view.join("var/www"), fs::Permissions::from_mode(0o750)).unwrap();
        fs::write(view.join("etc-file"), "").unwrap();
        symlink("/etc", view.join("link")).unwrap();
        T {
            _t: t,
            src,
            view,
            upper,
        }
    }

    fn opts() -> CopyOpts<'static> {
        CopyOpts::default()
    }

    fn copy(t: &T, src: &str, contents: bool, dest: &str, dir: bool) -> Result<Stats> {
        copy_step(
            &t.src.join(src),
            contents,
            &t.view,
            &t.upper,
            dest,
            dir,
            &opts(),
        )
    }

    #[test]
    fn files_go_into_directories_or_become_the_destination() {
        let t = setup();
        copy(&t, "p.deb", false, "/srv/pkg", true).unwrap();
        assert_eq!(fs::read(t.upper.join("srv/pkg/p.deb")).unwrap(), b"deb");
        let mode = fs::metadata(t.upper.join("srv/pkg/p.deb")).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o640);
        assert_eq!(
            fs::metadata(t.upper.join("srv")).unwrap().mode() & 0o7777,
            0o755
        );
        copy(&t, "p.deb", false, "/opt/renamed.deb", false).unwrap();
        assert_eq!(fs::read(t.upper.join("opt/renamed.deb")).unwrap(), b"deb");
        assert!(!t.upper.join("opt").read_dir().unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".sdme")));
        // An existing directory of the view: into it, with its mode.
        copy(&t, "p.deb", false, "/var/www", false).unwrap();
        assert!(t.upper.join("var/www/p.deb").is_file());
        assert_eq!(
            fs::metadata(t.upper.join("var/www")).unwrap().mode() & 0o7777,
            0o750
        );
        // Copied again in the same step: replaced.
        copy(&t, "p.deb", false, "/var/www", false).unwrap();
    }

    #[test]
    fn directories_by_contents_or_by_name() {
        let t = setup();
        copy(&t, "site", true, "/var/www/html", true).unwrap();
        assert!(t.upper.join("var/www/html/index.html").is_file());
        assert!(t.upper.join("var/www/html/css/a.css").is_file());
        copy(&t, "site", false, "/var/www", false).unwrap();
        assert!(t.upper.join("var/www/site/css/a.css").is_file());
        copy(&t, "site", false, "/new", false).unwrap();
        assert!(t.upper.join("new/index.html").is_file());
    }

    #[test]
    fn symlinks_in_the_view_and_sources_are_refused() {
        let t = setup();
        for dest in ["/link/x", "/link"] {
            let e = format!("{:#}", copy(&t, "p.deb", false, dest, false).unwrap_err());
            assert!(
                e.contains("crosses the symlink /link in the build container"),
                "{dest}: {e}"
            );
        }
        assert!(!t.upper.join("link").exists());
        let e = format!(
            "{:#}",
            copy(&t, "site", true, "/etc-file", false).unwrap_err()
        );
        assert!(e.contains("onto the file /etc-file"), "{e}");
        let e = format!(
            "{:#}",
            copy(&t, "p.deb", false, "/etc-file/x", false).unwrap_err()
        );
        assert!(e.contains("a parent is not a directory"), "{e}");
        symlink("/etc/passwd", t.src.join("evil")).unwrap();
        let e = format!("{:#}", copy(&t, "evil", false, "/x", false).unwrap_err());
        assert!(e.contains("is a symlink"), "{e}");
        assert!(!t.upper.join("x").exists());
    }
}
