//! `sdme config get|set|apparmor-profile`: sdme.conf(5) by key. `set`
//! edits `/etc/sdme/sdme.conf` line by line (comments, order and every
//! other line kept), checked by the model before the file is replaced.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sdme_core::config::{Config, CONFIG_NAME, DEFAULT_HARDENED_DROP};
use sdme_core::search::read_bounded;
use sdme_core::syntax::UnitFile;

use crate::create::ETC_DIR;
use crate::lookup::{dirs, write_stdout};

/// The profile `AppArmorProfile=sdme-default` names, as shipped.
pub const APPARMOR_PROFILE: &str = include_str!("../../apparmor/sdme-default");

/// One key of sdme.conf(5), named `Section.Key` on the command line.
pub struct Key {
    pub name: &'static str,
    section: &'static str,
    key: &'static str,
    /// A list key: lines add to the built-in value, an empty one resets it.
    list: bool,
    default: fn() -> String,
    value: fn(&Config) -> String,
}

pub const KEYS: &[Key] = &[
    Key {
        name: "Hardened.DropCapability",
        section: "Hardened",
        key: "DropCapability",
        list: true,
        default: || DEFAULT_HARDENED_DROP.join(" "),
        value: |c| c.hardened_drop_names().join(" "),
    },
    // Empty: a clone of the host.
    Key {
        name: "App.DefaultRootfs",
        section: "App",
        key: "DefaultRootfs",
        list: false,
        default: String::new,
        value: |c| c.app_default_rootfs.clone().unwrap_or_default(),
    },
];

fn key(name: &str) -> Result<&'static Key> {
    KEYS.iter()
        .find(|k| k.name.eq_ignore_ascii_case(name))
        .with_context(|| {
            let known: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
            format!(
                "unknown key '{name}' (sdme.conf keys: {})",
                known.join(", ")
            )
        })
}

/// `sdme config get [KEY]`: KEY's value alone, or every key with its
/// value, its default and the files read.
pub fn get(name: Option<&str>) -> Result<()> {
    let (config, diags) = Config::load(&dirs());
    for d in &diags {
        eprintln!("sdme: {d}");
    }
    let mut out = String::new();
    match name {
        Some(n) => {
            let k = key(n)?;
            out.push_str(&(k.value)(&config));
            out.push('\n');
        }
        None => {
            for k in KEYS {
                out.push_str(&format!(
                    "{}={}\n    default: {}\n",
                    k.name,
                    (k.value)(&config),
                    (k.default)()
                ));
            }
            let files: Vec<String> = config
                .files
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            let files = if files.is_empty() {
                "none (built-in defaults)".to_string()
            } else {
                files.join(" ")
            };
            out.push_str(&format!("# files read: {files}\n"));
        }
    }
    write_stdout(out.as_bytes())
}

/// The lines a key's assignments should be for `value` to be its value.
fn wanted_lines(k: &Key, value: &str) -> Vec<String> {
    let set = format!("{}={value}", k.key);
    match (k.list, value.trim().is_empty()) {
        // The reset, then the list: the built-in list does not stay under it.
        (true, false) => vec![format!("{}=", k.key), set],
        _ => vec![set],
    }
}

/// Whether a line goes on on the next: it ends in an odd number of
/// backslashes.
fn continues(line: &str) -> bool {
    let l = line.trim_end_matches(['\n', '\r']).trim_end();
    l.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}

/// `text` with the assignments of `section`/`key` replaced by `wanted`:
/// equal lines stay, the first differing ones are changed in place, extra
/// old ones go; with none, `wanted` is appended after the last entry of
/// the (last) section, or in a new section at the end. Every other line,
/// comments included, is kept byte for byte.
pub fn edit(text: &str, section: &str, key: &str, wanted: &[String]) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    // (first, last) line of each assignment of the key, continuation included.
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut insert_at: Option<usize> = None;
    let mut current = String::new();
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim();
        if t.starts_with('[') {
            current = t.trim_start_matches('[').trim_end_matches(']').to_string();
            if current == section {
                insert_at = Some(i + 1);
            }
            i += 1;
            continue;
        }
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            i += 1;
            continue;
        }
        let first = i;
        while continues(lines[i]) && i + 1 < lines.len() {
            i += 1;
        }
        if current == section {
            insert_at = Some(i + 1);
            let k = t.split_once('=').map_or(t, |(k, _)| k).trim();
            if k == key {
                spans.push((first, i));
            }
        }
        i += 1;
    }
    let mut out = String::with_capacity(text.len() + 64);
    let line_of = |s: &str| format!("{s}\n");
    if spans.is_empty() {
        let mut added: String = wanted.iter().map(|w| line_of(w)).collect();
        let at = match insert_at {
            Some(at) => at,
            None => {
                added = format!("\n[{section}]\n{added}");
                if text.is_empty() {
                    added = added.trim_start().to_string();
                }
                lines.len()
            }
        };
        for (n, l) in lines.iter().enumerate() {
            if n == at {
                out.push_str(&added);
            }
            out.push_str(l);
            if n + 1 == lines.len() && !l.ends_with('\n') {
                out.push('\n');
            }
        }
        if at == lines.len() {
            out.push_str(&added);
        }
        return out;
    }
    let old = |s: &(usize, usize)| lines[s.0..=s.1].concat();
    let mut n = 0;
    for (idx, span) in spans.iter().enumerate() {
        out.push_str(&lines[n..span.0].concat());
        match wanted.get(idx) {
            // An assignment already as wanted stays as it is written.
            Some(w) if old(span).trim_end() == w => out.push_str(&old(span)),
            Some(w) => out.push_str(&line_of(w)),
            None => {}
        }
        // Extra wanted lines go after the last old assignment.
        if idx + 1 == spans.len() {
            for w in wanted.iter().skip(spans.len()) {
                out.push_str(&line_of(w));
            }
        }
        n = span.1 + 1;
    }
    out.push_str(&lines[n..].concat());
    out
}

/// The model's first message about `text` as sdme.conf.
fn check(text: &str, path: &Path) -> Result<(), String> {
    let file = UnitFile::parse(path, text.as_bytes()).map_err(|e| e.to_string())?;
    let mut diags = Vec::new();
    Config::from_unit(&file, &mut diags);
    match diags.into_iter().next() {
        Some(d) => Err(d.to_string()),
        None => Ok(()),
    }
}

/// The model's message about `value` for `k` alone, without a file and
/// line: `Section.Key=VALUE: why`.
fn check_value(k: &Key, value: &str) -> Result<String> {
    // A newline or a final backslash (a continuation) would take in the
    // file's next line.
    if value.contains(['\n', '\r']) || continues(value) {
        bail!(
            "{}: the value has a newline or ends in a backslash; nothing written",
            k.name
        );
    }
    let probe = format!("[{}]\n{}", k.section, wanted_lines(k, value).concat_lines());
    let file = UnitFile::parse(Path::new("value"), probe.as_bytes())
        .map_err(|e| anyhow::anyhow!("{}={value}: {}", k.name, e.message))?;
    let mut diags = Vec::new();
    Config::from_unit(&file, &mut diags);
    if let Some(d) = diags.first() {
        let own = format!("{}={value}: ", k.key);
        let why = d.message.strip_prefix(&own).unwrap_or(&d.message);
        bail!("{}={value}: {why}; nothing written", k.name);
    }
    Ok(probe)
}

/// `sdme config set KEY VALUE` on `/etc/sdme/sdme.conf`. Without one, the
/// file that shadowed it on the search path is the starting point (its
/// other settings stay in force), else an empty file.
pub fn set(name: &str, value: &str) -> Result<()> {
    let k = key(name).map_err(|e| anyhow::anyhow!("{e}; nothing written"))?;
    // The value alone first, so its error names the key, not a line.
    let probe = check_value(k, value)?;
    let dirs = dirs();
    if dirs.first().map(PathBuf::as_path) != Some(Path::new(ETC_DIR)) {
        bail!("{ETC_DIR} is not the first directory of the search path (SDME_UNIT_DIRS); nothing written");
    }
    let path = Path::new(ETC_DIR).join(CONFIG_NAME);
    let text = current_text(&path, &dirs)?;
    let new = edit(&text, k.section, k.key, &wanted_lines(k, value));
    check(&new, &path).map_err(|e| anyhow::anyhow!("{e}; nothing written"))?;
    if new != text || path.symlink_metadata().is_err() {
        crate::files::write_atomic(&path, &new)?;
    }
    // A drop-in in sdme.conf.d can still change it: say so.
    let (config, _) = Config::load(&dirs);
    let now = (k.value)(&config);
    let u = UnitFile::parse(Path::new("value"), probe.as_bytes())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let asked = (k.value)(&Config::from_unit(&u, &mut Vec::new()));
    if now != asked {
        eprintln!(
            "sdme: note: {} is {now} in force: a drop-in in sdme.conf.d changes it further",
            k.name
        );
    }
    Ok(())
}

/// The text `set` starts from: `/etc/sdme/sdme.conf`, or the file lower on
/// the search path it will shadow. A masked or linked one is refused: the
/// rename would replace the link.
fn current_text(path: &Path, dirs: &[PathBuf]) -> Result<String> {
    if let Ok(m) = path.symlink_metadata() {
        if m.file_type().is_symlink() {
            bail!(
                "{} is a symlink; nothing written (a link to /dev/null masks it: remove the link first)",
                path.display()
            );
        }
        return read_text(path);
    }
    for d in dirs.iter().skip(1) {
        let p = d.join(CONFIG_NAME);
        if p.exists() {
            return read_text(&p);
        }
    }
    Ok(String::new())
}

fn read_text(p: &Path) -> Result<String> {
    let data = read_bounded(p).map_err(|e| anyhow::anyhow!("{e}"))?;
    String::from_utf8(data).with_context(|| format!("{} is not UTF-8", p.display()))
}

trait ConcatLines {
    fn concat_lines(&self) -> String;
}

impl ConcatLines for Vec<String> {
    fn concat_lines(&self) -> String {
        self.iter().map(|l| format!("{l}\n")).collect()
    }
}

/// `sdme config apparmor-profile`.
pub fn apparmor_profile() -> Result<()> {
    write_stdout(APPARMOR_PROFILE.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn edit_changes_one_line_keeping_comments_and_order() {
        let text = "# top comment\n[Hardened]\n; why\nDropCapability=\nDropCapability=CAP_KILL\n# after\n\n[Other]\nX=1\n";
        let new = edit(
            text,
            "Hardened",
            "DropCapability",
            &w(&["DropCapability=", "DropCapability=CAP_CHOWN"]),
        );
        assert_eq!(
            new,
            "# top comment\n[Hardened]\n; why\nDropCapability=\nDropCapability=CAP_CHOWN\n# after\n\n[Other]\nX=1\n"
        );
        let diff: Vec<_> = text
            .lines()
            .zip(new.lines())
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(diff.len(), 1);
    }

    #[test]
    fn edit_appends_to_the_section_or_a_new_one() {
        let text = "[Hardened]\n# keep\n\n[Other]\n";
        assert_eq!(
            edit(
                text,
                "Hardened",
                "DropCapability",
                &w(&["DropCapability=x"])
            ),
            "[Hardened]\nDropCapability=x\n# keep\n\n[Other]\n"
        );
        assert_eq!(
            edit("# only a comment", "Hardened", "K", &w(&["K=1"])),
            "# only a comment\n\n[Hardened]\nK=1\n"
        );
        assert_eq!(edit("", "Hardened", "K", &w(&["K=1"])), "[Hardened]\nK=1\n");
    }

    #[test]
    fn edit_replaces_continuations_and_drops_extra_assignments() {
        let text = "[Hardened]\nK=a \\\n  b\nL=1\nK=c\n";
        assert_eq!(
            edit(text, "Hardened", "K", &w(&["K="])),
            "[Hardened]\nK=\nL=1\n"
        );
        assert_eq!(
            edit("[Hardened]\nK=\n", "Hardened", "K", &w(&["K=", "K=x"])),
            "[Hardened]\nK=\nK=x\n"
        );
    }

    #[test]
    fn unknown_key_and_bad_value() {
        let e = key("Hardened.Nope").err().unwrap().to_string();
        assert!(e.starts_with("unknown key 'Hardened.Nope'"), "{e}");
        assert!(key("hardened.dropcapability").is_ok());
        let k = key("Hardened.DropCapability").unwrap();
        let e = check_value(k, "cap_nope").err().unwrap().to_string();
        assert!(
            e.starts_with("Hardened.DropCapability=cap_nope: unknown capability 'cap_nope'"),
            "{e}"
        );
        assert!(e.ends_with("; nothing written"), "{e}");
        assert!(check_value(k, "all").is_err());
        assert!(check_value(k, "").is_ok());
        assert!(check_value(k, "CAP_KILL sys_time").is_ok());
        for v in ["CAP_KILL\\", "CAP_KILL\nFoo=1"] {
            let e = check_value(k, v).unwrap_err().to_string();
            assert!(e.contains("newline or ends in a backslash"), "{e}");
        }
        let e = check("[Hardened]\nDropCapability=x\nFoo=1\n", Path::new("/c")).unwrap_err();
        assert!(e.starts_with("/c:2: "), "{e}");
    }

    #[test]
    fn app_default_rootfs() {
        let k = key("App.DefaultRootfs").unwrap();
        assert!(check_value(k, "debian").is_ok());
        assert!(check_value(k, "").is_ok());
        let e = check_value(k, "../x").unwrap_err().to_string();
        assert!(e.starts_with("App.DefaultRootfs=../x: rootfs name"), "{e}");
        assert_eq!(
            edit(
                "[Hardened]\nDropCapability=\n",
                "App",
                "DefaultRootfs",
                &wanted_lines(k, "debian")
            ),
            "[Hardened]\nDropCapability=\n\n[App]\nDefaultRootfs=debian\n"
        );
    }

    #[test]
    fn profile_is_embedded() {
        assert!(APPARMOR_PROFILE.contains("profile sdme-default"));
    }
}
