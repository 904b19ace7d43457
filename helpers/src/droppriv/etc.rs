//! The image's `/etc/passwd` and `/etc/group`, read and parsed without NSS.
//!
//! The helper runs with the app's root as its root, so these are the
//! image's own files. Reads are bounded (file size, line length): the image
//! is untrusted. Malformed lines are skipped, as glibc's files module does;
//! an over-long line is an error, so that a membership is never lost
//! silently.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Larger files are refused.
pub const MAX_FILE: u64 = 16 << 20;
/// Longer lines are refused (a group with thousands of members fits).
pub const MAX_LINE: usize = 256 << 10;

/// One `/etc/passwd` entry (the fields the helper uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// One `/etc/group` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// The lines of `path`, bounded; a missing file has none (an image
/// without `/etc/group` can still run numeric ids).
pub fn read_lines(path: &Path) -> Result<Vec<String>, String> {
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    check_regular(&file, path)?;
    lines_of(file.take(MAX_FILE + 1), path)
}

fn check_regular(file: &File, path: &Path) -> Result<(), String> {
    let meta = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a regular file", path.display()));
    }
    if meta.len() > MAX_FILE {
        return Err(format!("{}: larger than {MAX_FILE} bytes", path.display()));
    }
    Ok(())
}

/// Split `input` into lines of at most MAX_LINE bytes, reading at most
/// MAX_FILE bytes in all.
pub fn lines_of(input: impl Read, path: &Path) -> Result<Vec<String>, String> {
    let mut reader = BufReader::new(input);
    let (mut lines, mut total) = (Vec::new(), 0u64);
    loop {
        let mut buf = Vec::new();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            return Ok(lines);
        }
        total += n as u64;
        let lineno = lines.len() + 1;
        if total > MAX_FILE {
            return Err(format!("{}: larger than {MAX_FILE} bytes", path.display()));
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        } else if buf.len() > MAX_LINE {
            return Err(format!(
                "{}:{lineno}: line longer than {MAX_LINE} bytes",
                path.display()
            ));
        }
        lines.push(String::from_utf8_lossy(&buf).into_owned());
    }
}

/// A decimal id as in passwd and group: no sign, and not (uid_t)-1, which
/// means "unchanged" to setresuid.
pub fn parse_id(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u32>().ok().filter(|&id| id != u32::MAX)
}

/// Lines to skip: empty, comments, NIS compat entries (`+`, `-`).
fn skipped(line: &str) -> bool {
    line.is_empty() || line.starts_with(['#', '+', '-'])
}

/// `name:passwd:uid:gid:gecos:home:shell`; None when malformed.
pub fn parse_user(line: &str) -> Option<User> {
    if skipped(line) {
        return None;
    }
    let f: Vec<&str> = line.split(':').collect();
    if f.len() != 7 || f[0].is_empty() {
        return None;
    }
    Some(User {
        name: f[0].to_string(),
        uid: parse_id(f[2])?,
        gid: parse_id(f[3])?,
        home: f[5].to_string(),
    })
}

/// `name:passwd:gid:member,member`; None when malformed.
pub fn parse_group(line: &str) -> Option<Group> {
    if skipped(line) {
        return None;
    }
    let f: Vec<&str> = line.split(':').collect();
    if f.len() != 4 || f[0].is_empty() {
        return None;
    }
    let members = f[3]
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(String::from)
        .collect();
    Some(Group {
        name: f[0].to_string(),
        gid: parse_id(f[2])?,
        members,
    })
}

pub fn users(lines: &[String]) -> Vec<User> {
    lines.iter().filter_map(|l| parse_user(l)).collect()
}

pub fn groups(lines: &[String]) -> Vec<Group> {
    lines.iter().filter_map(|l| parse_group(l)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_skip_malformed_lines() {
        let lines: Vec<String> = [
            "root:x:0:0:root:/root:/bin/sh",
            "",
            "# comment",
            "+nis",
            "short:x:1:1",
            "neg:x:-1:1::/:/bin/sh",
            "big:x:4294967296:1::/:/bin/sh",
            "minus1:x:4294967295:1::/:/bin/sh",
            "letters:x:12a:1::/:/bin/sh",
            ":x:5:5::/:/bin/sh",
            "app:x:4242:4242:App:/home/app:/bin/sh",
            "extra:x:1:1:g:/h:/s:more",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let u = users(&lines);
        let names: Vec<&str> = u.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["root", "app"]);
        assert_eq!(u[1].uid, 4242);
        assert_eq!(u[1].home, "/home/app");
    }

    #[test]
    fn groups_members() {
        let g = parse_group("data:x:5000:app, web,,").unwrap();
        assert_eq!(g.members, ["app", "web"]);
        assert_eq!(parse_group("empty:x:7:").unwrap().members.len(), 0);
        assert!(parse_group("bad:x:7").is_none());
        assert!(parse_group("bad:x::a").is_none());
    }

    #[test]
    fn long_lines_and_files_are_refused() {
        let p = Path::new("/etc/group");
        let mut long = vec![b'a'; MAX_LINE + 1];
        long.push(b'\n');
        let e = lines_of(&long[..], p).unwrap_err();
        assert!(e.starts_with("/etc/group:1: line longer than"), "{e}");
        // Without a final newline too.
        let e = lines_of(&long[..MAX_LINE + 1], p).unwrap_err();
        assert!(e.contains("line longer than"), "{e}");
        // Exactly MAX_LINE is fine.
        let ok = lines_of(&long[..MAX_LINE], p).unwrap();
        assert_eq!(ok[0].len(), MAX_LINE);
        let lines = lines_of(&b"a\nb\n\nc"[..], p).unwrap();
        assert_eq!(lines, ["a", "b", "", "c"]);
    }

    #[test]
    fn missing_file_has_no_lines_and_fifo_is_refused() {
        let t = tempfile::tempdir().unwrap();
        assert!(read_lines(&t.path().join("none")).unwrap().is_empty());
        let fifo = t.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = read_lines(&fifo).unwrap_err();
        assert!(e.ends_with("not a regular file"), "{e}");
    }
}
