//! systemd unit-file syntax (systemd.syntax(7)).
//!
//! A small parser of our own rather than an INI crate: `configparser` keeps
//! only the last of repeated keys, cuts values at `;` and breaks
//! continuation lines, and the systemd-syntax crates we looked at either do
//! not keep line numbers for error messages or pull in a lossless editing
//! tree we do not need. The grammar is small, so it lives here with its
//! conformance tests taken from the man page.
//!
//! What it implements:
//! - `[Section]` headers; `Key=Value` assignments, white space around the key
//!   and the value trimmed;
//! - `#` and `;` start a comment only at the beginning of a line (after
//!   white space); inside a value they are ordinary characters;
//! - a line ending in `\` continues on the next line, the backslash replaced
//!   by a space; comment lines inside a continuation are skipped;
//! - repeated keys are kept in order (what they mean is the schema's job:
//!   lists accumulate, an empty value resets, scalars take the last);
//! - keys are case-sensitive; the input must be UTF-8.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a line came from, for error messages: `path:line`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub path: Arc<PathBuf>,
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

/// One `Key=Value` assignment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub at: Location,
}

/// One `[Section]` and its assignments, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub at: Location,
    pub entries: Vec<Entry>,
}

/// A parsed file, or several merged (a file plus its drop-ins): sections in
/// order of first appearance, entries appended in reading order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnitFile {
    pub sections: Vec<Section>,
}

/// A syntax error with its place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub at: Location,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

impl std::error::Error for SyntaxError {}

/// Longest logical line we accept (systemd's LONG_LINE_MAX is 1 MiB).
pub const MAX_LINE: usize = 1 << 20;

impl UnitFile {
    /// Parse `data` read from `path`.
    pub fn parse(path: &Path, data: &[u8]) -> Result<UnitFile, SyntaxError> {
        let path = Arc::new(path.to_path_buf());
        let at = |line| Location {
            path: Arc::clone(&path),
            line,
        };
        let text = match std::str::from_utf8(data) {
            Ok(t) => t,
            Err(e) => {
                let line = 1 + data[..e.valid_up_to()]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count();
                return Err(SyntaxError {
                    at: at(line),
                    message: "invalid UTF-8".into(),
                });
            }
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);

        let mut file = UnitFile::default();
        let mut current: Option<usize> = None;
        // A logical line being continued: its first line number and text.
        let mut pending: Option<(usize, String)> = None;

        for (idx, raw) in text.split('\n').enumerate() {
            let lineno = idx + 1;
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            let trimmed = raw.trim_start();
            if pending.is_some() && (trimmed.starts_with('#') || trimmed.starts_with(';')) {
                continue; // comments inside a continuation are skipped
            }
            // Only a continued line is copied; most lines are parsed in
            // place.
            let (start, logical): (usize, Cow<str>) = match pending.take() {
                Some((start, mut acc)) => {
                    acc.push_str(raw);
                    (start, acc.into())
                }
                None => (lineno, raw.into()),
            };
            if logical.len() > MAX_LINE {
                return Err(SyntaxError {
                    at: at(start),
                    message: format!("line longer than {MAX_LINE} bytes"),
                });
            }
            if trailing_backslashes(&logical) % 2 == 1 {
                let mut acc = logical.into_owned();
                acc.pop();
                acc.push(' ');
                pending = Some((start, acc));
                continue;
            }
            file.parse_line(&logical, start, &mut current, &at)?;
        }
        if let Some((start, logical)) = pending {
            // A continuation at end of file ends the line, as in systemd.
            file.parse_line(&logical, start, &mut current, &at)?;
        }
        Ok(file)
    }

    fn parse_line(
        &mut self,
        line: &str,
        lineno: usize,
        current: &mut Option<usize>,
        at: &dyn Fn(usize) -> Location,
    ) -> Result<(), SyntaxError> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            return Ok(());
        }
        let err = |message: String| SyntaxError {
            at: at(lineno),
            message,
        };
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest
                .strip_suffix(']')
                .ok_or_else(|| err(format!("section header '{line}' lacks a closing ']'")))?;
            if name.is_empty() || name.contains(['[', ']']) || name.chars().any(char::is_control) {
                return Err(err(format!("invalid section header '{line}'")));
            }
            *current = Some(match self.sections.iter().position(|s| s.name == name) {
                Some(i) => i,
                None => {
                    self.sections.push(Section {
                        name: name.to_string(),
                        at: at(lineno),
                        entries: Vec::new(),
                    });
                    self.sections.len() - 1
                }
            });
            return Ok(());
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(err(format!(
                "'{}' is neither a section header nor a Key=Value assignment (missing '=')",
                shorten(line)
            )));
        };
        let key = key.trim_end();
        if key.is_empty() {
            return Err(err("assignment without a key".into()));
        }
        if !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(err(format!("invalid key name '{}'", shorten(key))));
        }
        let Some(idx) = *current else {
            return Err(err(format!("assignment '{key}=' outside of any section")));
        };
        self.sections[idx].entries.push(Entry {
            key: key.to_string(),
            value: value.trim_start().to_string(),
            at: at(lineno),
        });
        Ok(())
    }

    /// Append `other` (a drop-in) to this file, as systemd merges drop-ins:
    /// entries of a section already present go after its existing ones.
    pub fn merge(&mut self, other: UnitFile) {
        for sec in other.sections {
            match self.sections.iter_mut().find(|s| s.name == sec.name) {
                Some(s) => s.entries.extend(sec.entries),
                None => self.sections.push(sec),
            }
        }
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }
}

fn trailing_backslashes(s: &str) -> usize {
    s.bytes().rev().take_while(|&b| b == b'\\').count()
}

fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(60).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out.escape_debug().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<UnitFile, SyntaxError> {
        UnitFile::parse(Path::new("/t.container"), s.as_bytes())
    }

    fn entries(f: &UnitFile, sec: &str) -> Vec<(String, String)> {
        f.section(sec)
            .unwrap()
            .entries
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect()
    }

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.into(), v.into())
    }

    #[test]
    fn sections_and_assignments() {
        let f = parse("[Unit]\nDescription = Web server \n\n[Container]\nBind=/a:/b\n").unwrap();
        assert_eq!(entries(&f, "Unit"), [kv("Description", "Web server")]);
        assert_eq!(entries(&f, "Container"), [kv("Bind", "/a:/b")]);
        assert_eq!(f.section("Container").unwrap().entries[0].at.line, 5);
    }

    #[test]
    fn comments_only_at_line_start() {
        let f = parse("# c\n; c\n[S]\n  # indented comment\nA=x # not a comment\nB=y ; nor this\n")
            .unwrap();
        assert_eq!(
            entries(&f, "S"),
            [kv("A", "x # not a comment"), kv("B", "y ; nor this")]
        );
    }

    #[test]
    fn repeated_keys_accumulate_and_empty_is_kept() {
        let f = parse("[S]\nBind=/a\nBind=/b\nBind=\nBind=/c\n").unwrap();
        assert_eq!(
            entries(&f, "S"),
            [
                kv("Bind", "/a"),
                kv("Bind", "/b"),
                kv("Bind", ""),
                kv("Bind", "/c")
            ]
        );
    }

    #[test]
    fn continuation_lines() {
        // systemd.syntax(7): the backslash is replaced by a space, and
        // comment lines inside the continuation are ignored.
        let f = parse("[S]\nA=one \\\n  two\\\n# skipped\nthree\nB=x\n").unwrap();
        assert_eq!(
            entries(&f, "S"),
            [kv("A", "one    two three"), kv("B", "x")]
        );
        assert_eq!(f.section("S").unwrap().entries[1].at.line, 6);
    }

    #[test]
    fn escaped_trailing_backslash_does_not_continue() {
        let f = parse("[S]\nA=x\\\\\nB=y\n").unwrap();
        assert_eq!(entries(&f, "S"), [kv("A", "x\\\\"), kv("B", "y")]);
    }

    #[test]
    fn continuation_at_eof_ends_line() {
        let f = parse("[S]\nA=x\\").unwrap();
        assert_eq!(entries(&f, "S"), [kv("A", "x")]);
    }

    #[test]
    fn keys_are_case_sensitive() {
        let f = parse("[S]\nbind=/a\nBind=/b\n").unwrap();
        assert_eq!(entries(&f, "S"), [kv("bind", "/a"), kv("Bind", "/b")]);
    }

    #[test]
    fn repeated_section_merges() {
        let f = parse("[S]\nA=1\n[T]\nB=2\n[S]\nA=3\n").unwrap();
        assert_eq!(entries(&f, "S"), [kv("A", "1"), kv("A", "3")]);
        assert_eq!(f.sections.len(), 2);
    }

    #[test]
    fn crlf_and_bom() {
        let f = parse("\u{feff}[S]\r\nA=1\r\n").unwrap();
        assert_eq!(entries(&f, "S"), [kv("A", "1")]);
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("[S]\nA=1\ngarbage\n").unwrap_err();
        assert_eq!(e.to_string(), "/t.container:3: 'garbage' is neither a section header nor a Key=Value assignment (missing '=')");
        let e = parse("A=1\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/t.container:1: assignment 'A=' outside of any section"
        );
        let e = parse("[S\n").unwrap_err();
        assert!(e
            .to_string()
            .contains(":1: section header '[S' lacks a closing ']'"));
        let e = parse("[S]\n=x\n").unwrap_err();
        assert!(e.to_string().contains(":2: assignment without a key"));
        let e = UnitFile::parse(Path::new("/t"), b"[S]\nA=1\nB=\xff\n").unwrap_err();
        assert_eq!(e.to_string(), "/t:3: invalid UTF-8");
    }

    #[test]
    fn merge_appends_dropins() {
        let mut f = parse("[S]\nA=1\n").unwrap();
        f.merge(parse("[S]\nA=\nA=2\n[T]\nB=1\n").unwrap());
        assert_eq!(entries(&f, "S"), [kv("A", "1"), kv("A", ""), kv("A", "2")]);
        assert_eq!(entries(&f, "T"), [kv("B", "1")]);
    }
}
