//! Paths inside an imported tree, which is untrusted: symlinks are
//! resolved as the guest would see them (absolute targets relative to the
//! tree's root, `..` stopping at the root), never leading out of it.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Symlinks followed at most, as the kernel's limit.
const MAX_LINKS: u32 = 40;

/// Resolve `rel` (a path as the guest sees it, e.g. `/sbin/init`) inside
/// `root`, following symlinks the way the guest would. Returns the host
/// path of what it names and the guest path, or None when it does not
/// exist (or a link loops).
pub fn resolve(root: &Path, rel: &Path) -> Option<(PathBuf, PathBuf)> {
    let mut done: Vec<OsString> = Vec::new();
    let mut todo: Vec<OsString> = components(rel);
    todo.reverse();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            done.pop();
            continue;
        }
        let candidate: PathBuf = root.join(done.iter().collect::<PathBuf>()).join(&c);
        let meta = std::fs::symlink_metadata(&candidate).ok()?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return None;
            }
            let target = std::fs::read_link(&candidate).ok()?;
            if target.is_absolute() {
                done.clear();
            }
            let mut t = components(&target);
            t.reverse();
            todo.extend(t);
        } else {
            done.push(c);
        }
    }
    let guest: PathBuf = Path::new("/").join(done.iter().collect::<PathBuf>());
    Some((root.join(done.iter().collect::<PathBuf>()), guest))
}

/// The normal and `..` components of a path, as strings.
fn components(p: &Path) -> Vec<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// Make directory `rel` inside `root` (and its parents) without following
/// any symlink; an existing symlink on the way is refused.
pub fn create_dirs(root: &Path, rel: &Path) -> Result<PathBuf> {
    let mut cur = root.to_path_buf();
    for c in components(rel) {
        if c == ".." {
            bail!("{}: '..' not allowed", rel.display());
        }
        cur.push(&c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                bail!(
                    "{} in the image is a symlink; refusing to write through it",
                    cur.display()
                )
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => bail!("{} in the image is not a directory", cur.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&cur).with_context(|| format!("mkdir {}", cur.display()))?;
                std::fs::set_permissions(&cur, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                    .with_context(|| format!("chmod {}", cur.display()))?;
            }
            Err(e) => return Err(e).with_context(|| format!("stat {}", cur.display())),
        }
    }
    Ok(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn absolute_links_stay_inside() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("usr/lib/systemd")).unwrap();
        std::fs::write(r.join("usr/lib/systemd/systemd"), "").unwrap();
        symlink("usr/lib", r.join("lib")).unwrap();
        std::fs::create_dir(r.join("sbin")).unwrap();
        symlink("/lib/systemd/systemd", r.join("sbin/init")).unwrap();
        let (host, guest) = resolve(r, Path::new("/sbin/init")).unwrap();
        assert_eq!(host, r.join("usr/lib/systemd/systemd"));
        assert_eq!(guest, Path::new("/usr/lib/systemd/systemd"));
        // A link to the host's /etc resolves to the tree's /etc.
        symlink("/etc/passwd", r.join("escape")).unwrap();
        assert!(resolve(r, Path::new("/escape")).is_none());
        std::fs::create_dir(r.join("etc")).unwrap();
        std::fs::write(r.join("etc/passwd"), "").unwrap();
        assert_eq!(
            resolve(r, Path::new("/escape")).unwrap().0,
            r.join("etc/passwd")
        );
        // `..` stops at the root.
        symlink("../../../../etc/passwd", r.join("up")).unwrap();
        assert_eq!(resolve(r, Path::new("up")).unwrap().0, r.join("etc/passwd"));
    }

    #[test]
    fn loops_end() {
        let t = tempfile::tempdir().unwrap();
        symlink("b", t.path().join("a")).unwrap();
        symlink("a", t.path().join("b")).unwrap();
        assert!(resolve(t.path(), Path::new("/a")).is_none());
    }

    #[test]
    fn create_dirs_refuses_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), t.path().join("etc")).unwrap();
        let err = create_dirs(t.path(), Path::new("etc/systemd/system")).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert!(!outside.path().join("systemd").exists());
        let d = create_dirs(t.path(), Path::new("var/lib/x")).unwrap();
        assert!(d.is_dir());
    }
}
