//! The keys of the build step cache (sdme.build(5), issue 15): each
//! step's layer is kept under a key that hashes the previous step's key,
//! the step's text and, for `Copy=`, the content of what it copies. A
//! rebuild reuses every layer up to the first step whose key changed.
//!
//! The first step's "previous key" is the base's: what the build starts
//! from (the host, or a rootfs and what the store knows of it), so a
//! re-imported base invalidates every layer.
//!
//! Content is hashed by walking the source without following anything:
//! each entry's path (relative to the source), type, mode, owner, size
//! and data (a symlink's target as text). A source that is itself a
//! symlink, or whose path crosses one, is refused: `Copy=` must not read
//! outside the build directory.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// A cache key: 64 lower-case hex digits.
pub type Key = String;

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key of a base: `identity` says what the base is (`host`, or
/// `rootfs NAME` with the store's metadata of it).
pub fn base_key(identity: &str) -> Key {
    hex(&Sha256::digest(
        format!("sdme-build-base\n{identity}").as_bytes(),
    ))
}

/// The key of a step after `prev`: its text and, for `Copy=`, the hash of
/// its content (`None` for `Run=`).
pub fn step_key(prev: &str, text: &str, content: Option<&str>) -> Key {
    let mut h = Sha256::new();
    h.update(b"sdme-build-step\n");
    for part in [prev, text, content.unwrap_or("-")] {
        // Lengths first: no two different triples hash alike.
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex(&h.finalize())
}

/// Join `rel` to `dir`, refusing a path that crosses a symlink or leaves
/// `dir` (the model refused `..` already; this holds for any caller).
pub fn confined(dir: &Path, rel: &str) -> Result<std::path::PathBuf> {
    let mut p = dir.to_path_buf();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(n) => {
                p.push(n);
                let m = fs::symlink_metadata(&p)
                    .with_context(|| format!("{}: cannot read it", p.display()))?;
                if m.file_type().is_symlink() {
                    bail!(
                        "{}: is a symlink; Copy= does not follow symlinks out of {}",
                        p.display(),
                        dir.display()
                    );
                }
            }
            Component::CurDir => {}
            _ => bail!("{rel}: not a path inside {}", dir.display()),
        }
    }
    Ok(p)
}

/// The content hash of the tree (or file) at `path`, nothing followed.
pub fn content_hash(path: &Path) -> Result<String> {
    let mut h = Sha256::new();
    hash_entry(&mut h, path, Path::new("."))?;
    Ok(hex(&h.finalize()))
}

fn hash_entry(h: &mut Sha256, path: &Path, rel: &Path) -> Result<()> {
    let m = fs::symlink_metadata(path).with_context(|| format!("{}", path.display()))?;
    let ft = m.file_type();
    let kind = if ft.is_dir() {
        'd'
    } else if ft.is_file() {
        'f'
    } else if ft.is_symlink() {
        'l'
    } else if ft.is_block_device() || ft.is_char_device() {
        'c'
    } else {
        'p'
    };
    let rel_text = rel.to_string_lossy();
    let head = format!(
        "{kind} {} {:o} {} {} {}\n",
        rel_text.len(),
        m.mode(),
        m.uid(),
        m.gid(),
        if ft.is_file() { m.len() } else { 0 }
    );
    h.update(head.as_bytes());
    h.update(rel_text.as_bytes());
    match kind {
        'f' => {
            let mut f = fs::File::open(path).with_context(|| format!("{}", path.display()))?;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = f
                    .read(&mut buf)
                    .with_context(|| format!("{}", path.display()))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
        }
        'l' => {
            let t = fs::read_link(path).with_context(|| format!("{}", path.display()))?;
            h.update(t.as_os_str().as_encoded_bytes());
        }
        'c' => h.update(m.rdev().to_le_bytes()),
        'd' => {
            let mut names: Vec<_> = fs::read_dir(path)
                .with_context(|| format!("{}", path.display()))?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()
                .with_context(|| format!("{}", path.display()))?;
            names.sort();
            for n in names {
                hash_entry(h, &path.join(&n), &rel.join(&n))?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn keys_chain_and_change_from_the_first_changed_step_on() {
        let base = base_key("rootfs debian imported_at=1");
        let steps = ["Run=a", "Copy=x:/x", "Run=b"];
        let chain = |content: &str, last: &str| {
            let k1 = step_key(&base, steps[0], None);
            let k2 = step_key(&k1, steps[1], Some(content));
            let k3 = step_key(&k2, last, None);
            [k1, k2, k3]
        };
        let a = chain("c1", "Run=b");
        assert_eq!(a, chain("c1", "Run=b"));
        let b = chain("c1", "Run=c");
        assert_eq!(a[..2], b[..2]);
        assert_ne!(a[2], b[2]);
        let c = chain("c2", "Run=b");
        assert_eq!(a[0], c[0]);
        assert_ne!(a[1], c[1]);
        assert_ne!(a[2], c[2]);
        assert_ne!(base, base_key("rootfs debian imported_at=2"));
        assert_eq!(a[0].len(), 64);
        // The parts cannot run into each other.
        assert_ne!(step_key("a", "bc", None), step_key("ab", "c", None));
    }

    #[test]
    fn content_hash_sees_data_names_modes_and_links() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("site");
        fs::create_dir(&d).unwrap();
        fs::write(d.join("index.html"), "hello").unwrap();
        symlink("index.html", d.join("link")).unwrap();
        let h0 = content_hash(&d).unwrap();
        assert_eq!(h0, content_hash(&d).unwrap());
        fs::write(d.join("index.html"), "hellp").unwrap();
        let h1 = content_hash(&d).unwrap();
        assert_ne!(h0, h1);
        fs::remove_file(d.join("link")).unwrap();
        symlink("other", d.join("link")).unwrap();
        let h2 = content_hash(&d).unwrap();
        assert_ne!(h1, h2);
        let p = d.join("index.html");
        let mut perm = fs::metadata(&p).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o600);
        fs::set_permissions(&p, perm).unwrap();
        assert_ne!(h2, content_hash(&d).unwrap());
        // Outside the source: no change.
        let h3 = content_hash(&d).unwrap();
        fs::write(t.path().join("unrelated"), "x").unwrap();
        assert_eq!(h3, content_hash(&d).unwrap());
    }

    #[test]
    fn sources_do_not_cross_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("b");
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("sub/f"), "x").unwrap();
        symlink("/etc", dir.join("out")).unwrap();
        symlink("sub", dir.join("alias")).unwrap();
        assert_eq!(confined(&dir, "sub/f").unwrap(), dir.join("sub/f"));
        assert_eq!(confined(&dir, ".").unwrap(), dir);
        for bad in ["out", "out/passwd", "alias/f"] {
            let e = format!("{:#}", confined(&dir, bad).unwrap_err());
            assert!(
                e.contains("is a symlink; Copy= does not follow symlinks"),
                "{bad}: {e}"
            );
        }
        assert!(confined(&dir, "../b/sub").is_err());
        assert!(confined(&dir, "nosuch").is_err());
    }
}
