//! Error units: what a file with errors becomes.
//!
//! A file that cannot be generated but whose name is a valid unit name
//! (`web.container`, `db@.pod`, `debian.image`, ...) gets, in place of its
//! units, one `Type=oneshot` service of the same name whose start fails at
//! once and prints the file's errors. `systemctl start sdme-web` then says
//! "Job for sdme-web.service failed" instead of "Unit not found", and
//! `systemctl status` and `journalctl -u` show the errors, which otherwise
//! only reach the kernel log.
//!
//! An error unit has no mount unit, no `[Install]` links and no
//! dependencies; it touches nothing under `/var/lib/sdme`. The messages
//! travel in `Environment=` (one value, so the command line that `systemctl
//! status` shows stays short) and are printed by `/bin/sh`'s `printf`,
//! each line with the `<3>` prefix so the journal logs it as an error.

use std::path::{Path, PathBuf};

use crate::build::build_service_name;
use crate::escape::{exec_word, unit_value};
use crate::image::image_service_name;
use crate::name::{check_machine_name, check_pod_name, check_rootfs_name};
use crate::render::{pod_service_name, unit_service_name, Output};
use crate::search::{FileType, UnitName};

/// At most this many messages are written into a unit.
pub const MAX_MESSAGES: usize = 20;
/// Longest message written into a unit, in bytes (a message may quote a
/// line of the file, which may be long).
pub const MAX_MESSAGE: usize = 1000;

/// The shell that prints the messages.
const SH: &str = "/bin/sh";

/// A file that gets an error unit instead of its units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broken {
    /// The error unit's name: the file's service would have had it.
    pub unit: String,
    /// `container web`, `pod db@%i`, `image debian`: for `Description=`.
    pub what: String,
    /// The file (`SourcePath=`).
    pub source: PathBuf,
    /// The file with the errors: `source`, or the pod or image file that
    /// a container names.
    pub culprit: PathBuf,
    /// The errors, with path and line, as the generator logged them.
    pub messages: Vec<String>,
    kind: FileType,
}

impl Broken {
    /// The error unit of the file `source` of `kind` named `name`, if the
    /// name is one the file's service could have had; `None` for a name
    /// that is no valid unit (such a file gets no unit at all).
    pub fn new(
        kind: FileType,
        name: &UnitName,
        source: &Path,
        messages: Vec<String>,
    ) -> Option<Broken> {
        let stem = name.stem();
        // A template's unit serves every instance: `%i` is its name.
        let shown = match name {
            UnitName::Template(t) => format!("{t}@%i"),
            _ => stem.clone(),
        };
        let (unit, what) = match kind {
            FileType::Container => {
                match name {
                    UnitName::Plain(s) | UnitName::Template(s) => check_machine_name(s),
                    UnitName::Instance { template, instance } => {
                        check_machine_name(template).and_then(|_| check_machine_name(instance))
                    }
                }
                .ok()?;
                (unit_service_name(name), format!("container {shown}"))
            }
            FileType::Pod => {
                match name {
                    UnitName::Template(t) => check_pod_name(t),
                    _ => check_pod_name(&stem),
                }
                .ok()?;
                (pod_service_name(&stem), format!("pod {shown}"))
            }
            FileType::Image => {
                check_rootfs_name(&stem).ok()?;
                (image_service_name(&stem), format!("image {stem}"))
            }
            FileType::Build => {
                check_rootfs_name(&stem).ok()?;
                (build_service_name(&stem), format!("build {stem}"))
            }
        };
        Some(Broken {
            unit,
            what,
            source: source.to_path_buf(),
            culprit: source.to_path_buf(),
            messages,
            kind,
        })
    }

    /// The same, for errors found in another file (`culprit`).
    pub fn caused_by(mut self, culprit: &Path) -> Broken {
        self.culprit = culprit.to_path_buf();
        self
    }
}

/// Control characters made visible: a message is one line of the journal
/// and of a unit file.
pub(crate) fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// At most [`MAX_MESSAGE`] bytes of `s`, cut at a character boundary.
fn bounded(s: &str) -> String {
    if s.len() <= MAX_MESSAGE {
        return s.to_string();
    }
    let mut end = MAX_MESSAGE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Longest first error in `Description=`.
const MAX_DESCRIPTION_ERROR: usize = 300;

/// `: FIRST ERROR (and N more)` for `Description=`: systemd logs "Failed
/// to start DESCRIPTION" itself, and `systemctl status` shows it in its
/// first line, so the first error is there even when journald cannot tell
/// which unit the printed lines came from (systemd 252 often cannot, for
/// a process that exits at once). For a container that names a broken
/// file, the first error of that file.
pub(crate) fn first_error(b: &Broken) -> String {
    let errors: Vec<&String> = (b.messages.iter())
        .filter(|m| !m.ends_with(" has errors:"))
        .collect();
    let Some(first) = errors.first() else {
        return String::new();
    };
    let mut m = one_line(first);
    // The file's path, which leads most messages, is kept whole: the cut
    // then falls at the same place of the message wherever the file lives
    // (golden tests run from a checkout's path).
    let lead = [&b.culprit, &b.source]
        .iter()
        .map(|p| one_line(&p.to_string_lossy()))
        .filter(|p| m.starts_with(p.as_str()))
        .map(|p| p.len())
        .max()
        .unwrap_or(0);
    if m.len() > lead + MAX_DESCRIPTION_ERROR {
        let mut end = lead + MAX_DESCRIPTION_ERROR;
        while !m.is_char_boundary(end) {
            end -= 1;
        }
        m.truncate(end);
        m.push_str("...");
    }
    // A trailing backslash would continue the line in a unit file.
    if m.ends_with('\\') {
        m.push_str(" ...");
    }
    match errors.len() - 1 {
        0 => format!(": {m}"),
        n => format!(": {m} (and {n} more)"),
    }
}

/// The lines the unit prints: the messages (bounded in number and
/// length) and what to do about them.
pub fn report_lines(b: &Broken) -> Vec<String> {
    let mut v: Vec<String> = (b.messages.iter().take(MAX_MESSAGES))
        .map(|m| bounded(&one_line(m)))
        .collect();
    if b.messages.len() > MAX_MESSAGES {
        v.push(format!(
            "... and {} more error(s); \"sdme-generator --dry-run\" shows them all",
            b.messages.len() - MAX_MESSAGES
        ));
    }
    v.push(format!(
        "{}: no units generated because of the error(s) above; fix them, then run \"systemctl daemon-reload\"",
        one_line(&b.source.to_string_lossy())
    ));
    v
}

/// A value of `Environment=`, in double quotes: systemd decodes C escapes
/// in it and resolves specifiers, but expands no variables.
fn env_assignment(name: &str, value: &str) -> String {
    let mut out = String::with_capacity(value.len() + name.len() + 8);
    out.push('"');
    out.push_str(name);
    out.push('=');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&c.escape_default().to_string()),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `Environment=SDME_ERRORS=...` with `lines` and the `ExecStart=` that
/// prints them and fails: the start half of every unit that only reports.
pub(crate) fn push_report_exec(s: &mut String, lines: &[String]) {
    s.push_str("Environment=");
    let report: Vec<String> = lines.iter().map(|l| format!("<3>{l}")).collect();
    s.push_str(&env_assignment("SDME_ERRORS", &report.join("\n")));
    s.push_str("\nExecStart=");
    s.push_str(SH);
    s.push_str(" -c ");
    s.push_str(&exec_word("printf '%s\\n' \"$SDME_ERRORS\" >&2; exit 1"));
    s.push('\n');
}

/// The error unit.
pub fn render_broken(b: &Broken) -> Output {
    let source = one_line(&b.source.to_string_lossy());
    let culprit = one_line(&b.culprit.to_string_lossy());
    let mut s = String::with_capacity(1024);
    s.push_str("# Automatically generated by sdme-generator from ");
    s.push_str(&source);
    s.push_str(
        "\n# The file has errors: this unit only reports them when started.\n\
         # Fix them and run \"systemctl daemon-reload\".\n",
    );
    s.push_str("\n[Unit]\nDescription=sdme ");
    s.push_str(&b.what);
    s.push_str(": ");
    s.push_str(&unit_value(&culprit));
    s.push_str(" has errors");
    s.push_str(&unit_value(&first_error(b)));
    s.push_str("\nDocumentation=man:sdme.");
    s.push_str(b.kind.suffix());
    s.push_str("(5) man:sdme-generator(8)\nSourcePath=");
    s.push_str(&unit_value(&source));
    s.push_str("\n\n[Service]\nType=oneshot\n");
    push_report_exec(&mut s, &report_lines(b));
    Output::File {
        path: b.unit.clone(),
        content: s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::escape::split_words;

    fn broken(kind: FileType, stem: &str) -> Option<Broken> {
        let name = UnitName::from_stem(stem);
        let ext = kind.suffix();
        let path = PathBuf::from(format!("/etc/sdme/{stem}.{ext}"));
        Broken::new(
            kind,
            &name,
            &path,
            vec![format!("{}:2: bad", path.display())],
        )
    }

    #[test]
    fn unit_names_as_the_valid_file_would_have() {
        let unit = |k, s| broken(k, s).map(|b| (b.unit, b.what));
        let c = FileType::Container;
        assert_eq!(
            unit(c, "web"),
            Some(("sdme-web.service".into(), "container web".into()))
        );
        assert_eq!(
            unit(c, "web@"),
            Some(("sdme-web@.service".into(), "container web@%i".into()))
        );
        assert_eq!(
            unit(c, "web@a").unwrap().0,
            "sdme-web@a.service".to_string()
        );
        assert_eq!(
            unit(FileType::Pod, "db@").unwrap(),
            ("sdme-pod-db@.service".into(), "pod db@%i".into())
        );
        assert_eq!(
            unit(FileType::Image, "debian").unwrap().0,
            "sdme-image-debian.service"
        );
        // No valid unit name: no unit.
        for (k, s) in [
            (c, "-web"),
            (c, "a b"),
            (c, "web@a@b"),
            (c, "x%i"),
            (FileType::Pod, "@x"),
            (FileType::Image, "a@b"),
        ] {
            assert!(broken(k, s).is_none(), "{s}");
        }
    }

    /// The `Environment=` value as systemd reads it: unquoted, C escapes
    /// decoded, `%%` resolved.
    fn env_as_systemd_reads(unit: &str) -> String {
        let line = unit
            .lines()
            .find_map(|l| l.strip_prefix("Environment="))
            .unwrap();
        let words = split_words(line).unwrap();
        assert_eq!(words.len(), 1, "{line}");
        words[0]
            .strip_prefix("SDME_ERRORS=")
            .unwrap()
            .replace("%%", "%")
    }

    #[test]
    fn messages_survive_systemd_escaping() {
        let nasty =
            "/etc/sdme/web.container:2: unknown key 'B\"n\\d' with 100% $HOME ${X} \u{1b}[31m\ttab";
        let b = Broken::new(
            FileType::Container,
            &UnitName::from_stem("web"),
            Path::new("/etc/sdme/web.container"),
            vec![nasty.to_string(), "second".into()],
        )
        .unwrap();
        let Output::File { content, .. } = render_broken(&b) else {
            panic!("a file")
        };
        let env = env_as_systemd_reads(&content);
        let lines: Vec<&str> = env.lines().collect();
        assert_eq!(lines.len(), 3, "{env}");
        assert_eq!(
            lines[0],
            "<3>/etc/sdme/web.container:2: unknown key 'B\"n\\d' with 100% $HOME ${X} \\u{1b}[31m\\ttab"
        );
        assert_eq!(lines[1], "<3>second");
        assert!(lines[2].contains("no units generated"), "{}", lines[2]);
        // The command: sh -c SCRIPT, with % and $ given literally.
        let exec = content
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .unwrap();
        let words: Vec<String> = split_words(exec)
            .unwrap()
            .into_iter()
            .map(|w| w.replace("%%", "%").replace("$$", "$"))
            .collect();
        assert_eq!(
            words,
            [
                "/bin/sh",
                "-c",
                "printf '%s\\n' \"$SDME_ERRORS\" >&2; exit 1"
            ]
        );
        assert!(content
            .contains("Description=sdme container web: /etc/sdme/web.container has errors: /etc/sdme/web.container:2: unknown key 'B\"n\\d' with 100%% $HOME ${X} \\u{1b}[31m\\ttab (and 1 more)\n"), "{content}");
        assert!(!content.contains("[Install]") && !content.contains("/var/lib/sdme"));
    }

    #[test]
    fn messages_are_bounded() {
        let long = format!("/etc/sdme/web.container:1: {}", "é".repeat(2000));
        let msgs = vec![long; MAX_MESSAGES + 5];
        let b = Broken::new(
            FileType::Container,
            &UnitName::from_stem("web"),
            Path::new("/etc/sdme/web.container"),
            msgs,
        )
        .unwrap();
        let lines = report_lines(&b);
        assert_eq!(lines.len(), MAX_MESSAGES + 2);
        assert!(lines[..MAX_MESSAGES]
            .iter()
            .all(|l| l.len() <= MAX_MESSAGE + 3 && l.ends_with("...")));
        assert!(lines[MAX_MESSAGES].starts_with("... and 5 more error(s)"));
        let d = first_error(&b);
        // The file's path is kept whole, the rest cut.
        assert!(
            d.len() < "/etc/sdme/web.container".len() + MAX_DESCRIPTION_ERROR + 40,
            "{d}"
        );
        assert!(d.ends_with("... (and 24 more)"), "{d}");
    }

    #[test]
    fn description_cut_does_not_depend_on_where_the_file_is() {
        let cut = |dir: &str| {
            let path = format!("{dir}/etc/sdme/web.container");
            let msg = format!("{path}: {}", "x".repeat(2 * MAX_DESCRIPTION_ERROR));
            let b = Broken::new(
                FileType::Container,
                &UnitName::from_stem("web"),
                Path::new(&path),
                vec![msg],
            )
            .unwrap();
            first_error(&b).replacen(&path, "", 1)
        };
        assert_eq!(cut(""), cut("/a/much/longer/checkout/tests/golden/x/root"));
    }

    #[test]
    fn description_never_continues_the_line() {
        let b = Broken::new(
            FileType::Container,
            &UnitName::from_stem("web"),
            Path::new("/etc/sdme/web.container"),
            vec!["/etc/sdme/web.container:3: Bind=a\\".into()],
        )
        .unwrap();
        let Output::File { content, .. } = render_broken(&b) else {
            panic!("a file")
        };
        let d = content
            .lines()
            .find(|l| l.starts_with("Description="))
            .unwrap();
        assert!(!d.ends_with('\\'), "{d}");
    }
}
