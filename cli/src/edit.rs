//! `sdme edit NAME [--full] [--drop-in FILE.conf]`: `$EDITOR` on a copy
//! of a drop-in in `/etc/sdme/NAME.container.d/` (`override.conf` unless
//! named) or, with `--full`, of the container's file (a vendor file lands
//! in `/etc/sdme`, as `systemctl edit --full` does). The result is checked
//! by the generator's model with every other drop-in; invalid, it is
//! refused with the model's message and the old file kept; valid, it is
//! written atomically and systemd reloaded. An unchanged result, or one
//! with nothing but comments and blank lines, changes nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sdme_core::config::Config;
use sdme_core::container::Container;
use sdme_core::search::{read_bounded, Found};

use crate::create::ETC_DIR;
use crate::files::{dropin_path, etc_on_path, found, model, write_atomic};
use crate::{lookup, sys};

pub const DEFAULT_DROPIN: &str = "override.conf";

/// A drop-in's file name: `X.conf`, one component, not hidden.
pub fn check_dropin(n: &str) -> Result<()> {
    let ok = n.len() > ".conf".len()
        && n.ends_with(".conf")
        && !n.starts_with('.')
        && !n.contains('/')
        && n.chars().all(|c| !c.is_control());
    if !ok {
        bail!(
            "--drop-in: '{}' is not a file name ending in .conf",
            n.escape_default()
        );
    }
    Ok(())
}

/// Only comments and blank lines.
pub fn is_empty(text: &str) -> bool {
    text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l.starts_with(';')
    })
}

fn new_dropin_text(name: &str) -> String {
    format!(
        "# A drop-in for {name}.container: its keys are read after the file's.\n\
         # Nothing is written while this holds only comments. For example:\n\
         # [Container]\n# Environment=KEY=value\n"
    )
}

/// `$EDITOR`, then `$VISUAL`, then the first of editor, nano, vi found.
fn editor() -> Result<String> {
    for v in ["EDITOR", "VISUAL"] {
        if let Ok(e) = std::env::var(v) {
            if !e.trim().is_empty() {
                return Ok(e);
            }
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    for e in ["editor", "nano", "vim", "vi"] {
        if std::env::split_paths(&path).any(|d| d.join(e).is_file()) {
            return Ok(e.into());
        }
    }
    bail!("no editor: set $EDITOR")
}

/// Run the editor on `file`; it may have arguments (`EDITOR="vim -n"`).
fn run_editor(file: &Path) -> Result<()> {
    let e = editor()?;
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!("{e} \"$@\""))
        .arg("sdme-edit")
        .arg(file)
        .status()
        .with_context(|| format!("running {e}"))?;
    if !st.success() {
        bail!("{e} failed ({st}); nothing changed");
    }
    Ok(())
}

/// The edited text, or `None` when the editor left it as it was.
fn edit_text(file_name: &str, old: &str) -> Result<Option<String>> {
    let dir = tempfile::Builder::new()
        .prefix("sdme-edit-")
        .tempdir()
        .context("creating a temporary directory")?;
    let tmp = dir.path().join(file_name);
    std::fs::write(&tmp, old).with_context(|| format!("writing {}", tmp.display()))?;
    run_editor(&tmp)?;
    let data = read_bounded(&tmp).map_err(anyhow::Error::msg)?;
    let text = String::from_utf8(data)
        .map_err(|_| anyhow::anyhow!("the edited file is not UTF-8; nothing changed"))?;
    Ok((text != old).then_some(text))
}

/// What `edit` writes: the path, its text now (for a new file, the
/// template offered), and whether it is the container's own file.
struct Target {
    path: PathBuf,
    old: String,
    full: bool,
}

fn target(found: &Found, name: &str, full: bool, dropin: Option<&str>) -> Result<Target> {
    if full {
        let path = Path::new(ETC_DIR).join(format!("{name}.container"));
        if found.path == path && found.content != found.path {
            bail!(
                "{} is a link to {}: edit that file",
                path.display(),
                found.content.display()
            );
        }
        let old = String::from_utf8(found.data.clone())
            .map_err(|_| anyhow::anyhow!("{} is not UTF-8", found.content.display()))?;
        return Ok(Target { path, old, full });
    }
    let file = dropin.unwrap_or(DEFAULT_DROPIN);
    check_dropin(file)?;
    let path = dropin_path(name, file);
    let old = match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_symlink() => {
            bail!("{} is a symlink: edit what it points to", path.display())
        }
        Ok(_) => {
            let d = read_bounded(&path).map_err(anyhow::Error::msg)?;
            String::from_utf8(d).map_err(|_| anyhow::anyhow!("{} is not UTF-8", path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => new_dropin_text(name),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    Ok(Target { path, old, full })
}

/// Check `text` as the new content of `t` with everything else that applies.
fn validate(found: &Found, config: &Config, t: &Target, text: &str) -> Result<()> {
    if !t.full {
        return model(found, config, &t.path, Some(text)).map(|_| ());
    }
    let mut f = found.clone();
    f.path = t.path.clone();
    f.content = t.path.clone();
    f.data = text.as_bytes().to_vec();
    Container::load_with(&f, config).map(|_| ()).map_err(|d| {
        let lines: Vec<String> = d.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("{}", lines.join("\n"))
    })
}

pub fn edit(name: &str, full: bool, dropin: Option<&str>) -> Result<()> {
    let dirs = lookup::dirs();
    etc_on_path(&dirs)?;
    let found = found(&dirs, name)?;
    let t = target(&found, name, full, dropin)?;
    let file_name = t
        .path
        .file_name()
        .context("no file name")?
        .to_string_lossy()
        .into_owned();
    let Some(text) = edit_text(&file_name, &t.old)? else {
        eprintln!("sdme: {} unchanged", t.path.display());
        return Ok(());
    };
    if is_empty(&text) {
        eprintln!("sdme: nothing but comments; {} unchanged", t.path.display());
        return Ok(());
    }
    validate(&found, &lookup::config(&dirs), &t, &text)
        .map_err(|e| anyhow::anyhow!("{e:#} ({} not changed)", t.path.display()))?;
    write_atomic(&t.path, &text)?;
    sys::daemon_reload()?;
    eprintln!("sdme: wrote {}", t.path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_in_names() {
        for ok in ["override.conf", "50-x.conf"] {
            check_dropin(ok).unwrap();
        }
        for bad in [
            ".conf",
            ".x.conf",
            "a/b.conf",
            "x.txt",
            "../x.conf",
            "a\nb.conf",
        ] {
            assert!(check_dropin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn comments_only_is_empty() {
        assert!(is_empty(&new_dropin_text("a")));
        assert!(is_empty("\n  \n; x\n"));
        assert!(!is_empty("# x\n[Container]\n"));
    }

    #[test]
    fn full_validation_uses_the_new_text_and_the_drop_ins() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.container"), "[Container]\n").unwrap();
        std::fs::create_dir(d.path().join("a.container.d")).unwrap();
        std::fs::write(
            d.path().join("a.container.d/x.conf"),
            "[Container]\nHostname=h\n",
        )
        .unwrap();
        let f = sdme_core::search::search(
            &[d.path().to_path_buf()],
            sdme_core::search::FileType::Container,
        )
        .found
        .remove(0);
        let t = Target {
            path: d.path().join("a.container"),
            old: String::new(),
            full: true,
        };
        validate(&f, &Config::default(), &t, "[Container]\nHostname=ok\n").unwrap();
        let e = validate(&f, &Config::default(), &t, "[Container]\nBogus=1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("a.container:2"), "{e}");
        let t = Target {
            path: d.path().join("a.container.d/x.conf"),
            old: String::new(),
            full: false,
        };
        let e = validate(
            &f,
            &Config::default(),
            &t,
            "[Container]\nPrivateUsers=maybe\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("x.conf:2"), "{e}");
    }
}
