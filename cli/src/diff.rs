//! `sdme diff NAME`: what the container changed against its lower layer,
//! read from `upper/` (nothing mounted). `A` added, `C` changed (any
//! entry overlayfs copied up: content or metadata), `D` deleted (a
//! whiteout, or a lower entry hidden by an opaque directory).
//!
//! sdme's own marks are left out: the opaque directories of `OpaqueDir=`
//! and those that hide the lower layer's sdme directories (unless
//! `NestedSdme=yes`) are not listed, nor are the lower entries they hide;
//! what the container wrote below them is.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sdme_core::container::Container;
use sdme_core::paths::{container_dir, NESTED_SDME_DIRS};

use crate::layers::{is_opaque, is_whiteout, Dir};
use crate::lookup;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    Added,
    Changed,
    Deleted,
}

impl Change {
    fn letter(self) -> char {
        match self {
            Change::Added => 'A',
            Change::Changed => 'C',
            Change::Deleted => 'D',
        }
    }
}

/// What the walk needs to know of the container.
pub struct Ctx {
    /// Directories whose opacity is sdme's, not the container's.
    pub own: Vec<PathBuf>,
    /// UID/GID shift of the upper layer against the lower one.
    pub shift: u32,
}

impl Ctx {
    pub fn of(c: &Container) -> Ctx {
        let mut own: Vec<PathBuf> = c.opaque_dirs.iter().map(PathBuf::from).collect();
        if !c.nested_sdme {
            own.extend(NESTED_SDME_DIRS.iter().map(PathBuf::from));
        }
        Ctx {
            own,
            shift: c.userns_base().unwrap_or(0),
        }
    }
}

/// The directory `name` of `d`; `None` when missing; an error when it is
/// something else (a symlink is never followed).
fn real_dir(d: &Dir, name: &str, shown: &Path) -> Result<Option<Dir>> {
    match d.lstat(OsStr::new(name)) {
        Ok(None) => return Ok(None),
        Ok(Some(m)) if !m.is_dir() => bail!("{} is not a directory (a symlink?)", shown.display()),
        Ok(Some(_)) => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", shown.display())),
    }
    d.child(OsStr::new(name))
        .with_context(|| format!("opening {}", shown.display()))
}

/// The state dir's `upper/`, never through a symlink; `None` before the
/// first start.
pub fn open_upper(machine: &str) -> Result<Option<Dir>> {
    let dir = Path::new(sdme_core::paths::CONTAINERS_DIR);
    if !dir.exists() {
        return Ok(None);
    }
    let base = Dir::open(dir)?;
    let state = container_dir(machine);
    let Some(s) = real_dir(&base, machine, &state)? else {
        return Ok(None);
    };
    real_dir(&s, "upper", &state.join("upper"))
}

pub fn diff(name: &str, json: bool) -> Result<()> {
    let c = lookup::load(name)?;
    let lower_path = c.rootfs.lower_dir();
    let lower =
        Dir::open(Path::new(&lower_path)).with_context(|| format!("{name}'s lower layer"))?;
    let mut out = Vec::new();
    if let Some(upper) = open_upper(&c.machine)? {
        walk(
            &Ctx::of(&c),
            &upper,
            Some(&lower),
            Path::new("/"),
            false,
            &mut out,
        )?;
    }
    out.sort_by(|a, b| a.1.as_os_str().as_bytes().cmp(b.1.as_os_str().as_bytes()));
    lookup::write_stdout(&render(&out, json))
}

pub fn render(changes: &[(Change, PathBuf)], json: bool) -> Vec<u8> {
    let mut s = Vec::new();
    if json {
        s.push(b'[');
        for (i, (c, p)) in changes.iter().enumerate() {
            if i > 0 {
                s.push(b',');
            }
            let p = json_str(&p.to_string_lossy());
            s.extend_from_slice(
                format!("\n  {{\"change\": \"{}\", \"path\": {p}}}", c.letter()).as_bytes(),
            );
        }
        s.extend_from_slice(b"\n]\n");
    } else {
        for (c, p) in changes {
            s.push(c.letter() as u8);
            s.push(b' ');
            escape_into(&mut s, p.as_os_str().as_bytes());
            s.push(b'\n');
        }
    }
    s
}

/// A path from the container on one line: control characters and `\`
/// as `\xNN`, so no name can forge a line.
fn escape_into(out: &mut Vec<u8>, p: &[u8]) {
    for &b in p {
        if b < 0x20 || b == 0x7f || b == b'\\' {
            out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
        } else {
            out.push(b);
        }
    }
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Mode, owner and group differ (the upper's owners shifted back).
fn meta_differs(ctx: &Ctx, u: &std::fs::Metadata, l: &std::fs::Metadata) -> bool {
    u.mode() != l.mode()
        || u.uid().wrapping_sub(ctx.shift) != l.uid()
        || u.gid().wrapping_sub(ctx.shift) != l.gid()
}

/// The changes in the upper directory `u` at `rel`, against the lower
/// directory `l` (`None`: nothing below). `hidden`: the lower entries
/// not in `u` are hidden (below an opaque directory).
pub fn walk(
    ctx: &Ctx,
    u: &Dir,
    l: Option<&Dir>,
    rel: &Path,
    hidden: bool,
    out: &mut Vec<(Change, PathBuf)>,
) -> Result<()> {
    let names = u
        .names()
        .with_context(|| format!("reading upper{}", rel.display()))?;
    if hidden {
        if let Some(l) = l {
            for n in l.names()?.difference(&names) {
                out.push((Change::Deleted, rel.join(n)));
            }
        }
    }
    for n in &names {
        let path = rel.join(n);
        let Some(m) = u.lstat(n)? else { continue };
        if is_whiteout(u, n, &m) {
            out.push((Change::Deleted, path));
            continue;
        }
        let lm = match l {
            Some(l) => l.lstat(n)?,
            None => None,
        };
        if !m.is_dir() {
            let c = if lm.is_some() {
                Change::Changed
            } else {
                Change::Added
            };
            out.push((c, path));
            continue;
        }
        let ud = u
            .child(n)?
            .with_context(|| format!("upper{} vanished", path.display()))?;
        let own = ctx.own.iter().any(|o| o == &path);
        let ld = match (l, &lm) {
            (Some(l), Some(lm)) if lm.is_dir() => l.child(n)?,
            _ => None,
        };
        match (&ld, &lm) {
            (None, Some(_)) => out.push((Change::Changed, path.clone())),
            (None, None) if !own => out.push((Change::Added, path.clone())),
            (Some(_), Some(lm)) if !own && meta_differs(ctx, &m, lm) => {
                out.push((Change::Changed, path.clone()))
            }
            _ => {}
        }
        let opaque = is_opaque(&ud);
        let hides = (hidden || opaque) && !own;
        walk(ctx, &ud, ld.as_ref(), &path, hides, out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::tests::{root, whiteout};
    use crate::layers::{set_xattr, OPAQUE_XATTR};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_symlinked_upper_is_an_error_not_followed() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("real")).unwrap();
        std::os::unix::fs::symlink("/etc", t.path().join("upper")).unwrap();
        let d = Dir::open(t.path()).unwrap();
        let e = real_dir(&d, "upper", Path::new("x/upper")).err().unwrap();
        assert_eq!(e.to_string(), "x/upper is not a directory (a symlink?)");
        assert!(real_dir(&d, "real", Path::new("r")).unwrap().is_some());
        assert!(real_dir(&d, "none", Path::new("n")).unwrap().is_none());
    }

    #[test]
    fn added_changed_deleted_and_sdmes_own_opaque_dirs() {
        if !root() {
            eprintln!("skipped: needs root (mknod, trusted xattrs)");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let (u, l) = (t.path().join("u"), t.path().join("l"));
        for d in ["etc/sdme", "opq", "keep", "gone"] {
            std::fs::create_dir_all(l.join(d)).unwrap();
            std::fs::write(l.join(d).join("f"), "x").unwrap();
        }
        std::fs::write(l.join("etc/conf"), "x").unwrap();
        for d in ["etc/sdme", "opq", "keep", "new/sub"] {
            std::fs::create_dir_all(u.join(d)).unwrap();
        }
        set_xattr(&u.join("etc/sdme"), OPAQUE_XATTR, b"y").unwrap();
        set_xattr(&u.join("opq"), OPAQUE_XATTR, b"y").unwrap();
        std::fs::write(u.join("etc/conf"), "y").unwrap();
        std::fs::write(u.join("etc/sdme/mine.container"), "y").unwrap();
        std::fs::write(u.join("new/sub/a"), "y").unwrap();
        std::fs::write(u.join("opq/g"), "y").unwrap();
        whiteout(&u.join("gone"));
        whiteout(&u.join("keep/f"));
        let ctx = Ctx {
            own: vec!["/etc/sdme".into()],
            shift: 0,
        };
        let (ud, ld) = (Dir::open(&u).unwrap(), Dir::open(&l).unwrap());
        let mut out = Vec::new();
        walk(&ctx, &ud, Some(&ld), Path::new("/"), false, &mut out).unwrap();
        out.sort_by(|a, b| a.1.cmp(&b.1));
        let text = String::from_utf8(render(&out, false)).unwrap();
        assert_eq!(
            text,
            "C /etc/conf\nA /etc/sdme/mine.container\nD /gone\nD /keep/f\nA /new\nA /new/sub\nA /new/sub/a\nD /opq/f\nA /opq/g\n"
        );
        // A mode change of a directory is a change; owners shifted by the
        // user namespace's base are not.
        std::fs::set_permissions(u.join("keep"), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(u.join("etc"), Some(65536), Some(65536)).unwrap();
        let shifted = Ctx {
            own: ctx.own.clone(),
            shift: 65536,
        };
        let mut out2 = Vec::new();
        walk(&shifted, &ud, Some(&ld), Path::new("/"), false, &mut out2).unwrap();
        assert!(out2.contains(&(Change::Changed, "/keep".into())));
        assert!(!out2.iter().any(|(_, p)| p == Path::new("/etc")));
        let forged = [(Change::Added, PathBuf::from("/a\nD /etc/passwd\\"))];
        assert_eq!(render(&forged, false), b"A /a\\x0aD /etc/passwd\\x5c\n");
        assert_eq!(
            render(&forged, true),
            b"[\n  {\"change\": \"A\", \"path\": \"/a\\u000aD /etc/passwd\\\\\"}\n]\n"
        );
        let json = String::from_utf8(render(&out[..1], true)).unwrap();
        assert_eq!(
            json,
            "[\n  {\"change\": \"C\", \"path\": \"/etc/conf\"}\n]\n"
        );
    }
}
