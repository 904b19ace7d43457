//! The original sdme's build files, read unchanged: `FROM NAME` (or
//! `FROM fs:NAME`) first and once, then `RUN COMMAND` and `COPY SRC DST`
//! lines; `#` comments; a line ending in `\` continues on the next one.
//! `COPY`'s SRC is a host path, `fs:NAME:/path` (an imported rootfs) or
//! `CONTAINER:/path`. The same rules as sdme 0.22's parser (read, not
//! copied), with every error of the file reported, each as `path:line`.
//!
//! Two differences, both documented in sdme.build(5): a relative host
//! path is taken from the file's directory (a build unit has no working
//! directory), and a destination under `/tmp` is refused like `/run`
//! (the original kept the build's `/tmp` by a bind mount; here a step's
//! files must all be in its layer).

use std::path::Path;
use std::sync::Arc;

use crate::container::DEFAULT_BOOT_TIMEOUT;
use crate::diag::Diag;
use crate::name::check_rootfs_name;
use crate::sections::Install;
use crate::syntax::Location;

use super::steps::{check_dests, parse_dest, CopySource, Step};
use super::{Base, Build, Format};

/// The logical lines of `text`: continuation lines joined (the `\` and the
/// white space around the join become one space), each with the number of
/// its first line.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_end();
        let (part, continues) = match trimmed.strip_suffix('\\') {
            Some(before) => (before.trim_end(), true),
            None => (trimmed, false),
        };
        match current.as_mut() {
            Some((_, buf)) => {
                buf.push(' ');
                buf.push_str(part.trim_start());
            }
            None => current = Some((i + 1, part.to_string())),
        }
        if !continues {
            out.extend(current.take());
        }
    }
    out.extend(current);
    out
}

/// The original's container and rootfs names: a lower-case letter, then
/// lower-case letters, digits and `-`, at most 64 bytes.
fn original_name(n: &str) -> bool {
    n.len() <= 64
        && n.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `COPY`'s SRC.
fn copy_source(src: &str, dir: &Path) -> Result<CopySource, String> {
    if let Some(rest) = src.strip_prefix("fs:") {
        let (name, path) = rest
            .split_once(':')
            .ok_or("COPY fs: source requires fs:name:/path format")?;
        check_rootfs_name(name).map_err(|m| format!("invalid COPY fs source name: {m}"))?;
        if !path.starts_with('/') {
            return Err("COPY fs: source path must be absolute".into());
        }
        return Ok(CopySource::Rootfs {
            name: name.to_string(),
            path: path.to_string(),
        });
    }
    if let Some((name, path)) = src.split_once(':') {
        if original_name(name) {
            if !path.starts_with('/') {
                return Err("COPY container source path must be absolute".into());
            }
            return Ok(CopySource::Container {
                name: name.to_string(),
                path: path.to_string(),
            });
        }
    }
    Ok(CopySource::Host(dir.join(src)))
}

/// `COPY`'s DST as the original reads it: relative to `/`, `.` and empty
/// components left out, `..` refused.
fn copy_dest(dst: &str) -> Result<(String, bool), String> {
    let mut clean = String::new();
    for c in dst.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(format!("refusing path with '..' component: {dst}")),
            c => {
                clean.push('/');
                clean.push_str(c);
            }
        }
    }
    if clean.is_empty() {
        clean.push('/');
    }
    let (dest, _) = parse_dest(&clean)?;
    Ok((dest, dst.ends_with('/')))
}

/// Parse the original format's `data`, read from `path`, as the build of
/// the rootfs `name`.
pub fn parse_original(path: &Path, data: &[u8], name: &str) -> Result<Build, Vec<Diag>> {
    let file = Arc::new(path.to_path_buf());
    let at = |line| Location {
        path: Arc::clone(&file),
        line,
    };
    let text = std::str::from_utf8(data).map_err(|_| vec![Diag::file(path, "invalid UTF-8")])?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut diags = Vec::new();
    if let Err(m) = check_rootfs_name(name) {
        diags.push(Diag::file(path, format!("cannot build '{name}': {m}")));
    }
    let mut from: Option<(String, Location)> = None;
    let mut steps = Vec::new();
    for (lineno, raw) in logical_lines(text) {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let here = at(lineno);
        let (directive, rest) = match line.split_once(char::is_whitespace) {
            Some((d, r)) => (d, r.trim()),
            None => (line, ""),
        };
        let mut err = |m: String| diags.push(Diag::at(&here, m));
        if matches!(directive, "RUN" | "COPY") && from.is_none() {
            err("FROM must be the first directive".into());
            continue;
        }
        match directive {
            "FROM" if from.is_some() => err("duplicate FROM directive".into()),
            "FROM" if rest.is_empty() => err("FROM requires a rootfs name".into()),
            "FROM" => {
                let n = rest.strip_prefix("fs:").unwrap_or(rest);
                match check_rootfs_name(n) {
                    Ok(()) => from = Some((n.to_string(), here.clone())),
                    Err(m) => err(format!("invalid FROM rootfs name: {m}")),
                }
            }
            "RUN" if rest.is_empty() => err("RUN requires a command".into()),
            "RUN" => steps.push(Step::Run {
                command: rest.to_string(),
                at: here.clone(),
            }),
            "COPY" => {
                let Some((src, dst)) = rest
                    .split_once(char::is_whitespace)
                    .filter(|(_, d)| !d.trim().is_empty())
                else {
                    err("COPY requires two arguments: COPY <src> <dst>".into());
                    continue;
                };
                match copy_source(src, dir).and_then(|s| Ok((s, copy_dest(dst.trim())?))) {
                    Ok((source, (dest, dest_dir))) => steps.push(Step::Copy {
                        source,
                        dest,
                        dest_dir,
                        at: here.clone(),
                    }),
                    Err(m) => err(m),
                }
            }
            d => err(format!("unknown directive: {d}")),
        }
    }
    let (base, from_at) = match from {
        Some((n, at)) => (Base::Rootfs(n), Some(at)),
        None => {
            if diags.is_empty() {
                diags.push(Diag::file(path, "missing FROM directive"));
            }
            (Base::Host, None)
        }
    };
    diags.extend(check_dests(&steps, &base, "COPY"));
    if !diags.is_empty() {
        diags.sort_by_key(|d| d.line);
        return Err(diags);
    }
    Ok(Build {
        name: name.to_string(),
        source: path.to_path_buf(),
        format: Format::Original,
        from: base,
        from_at,
        environment: Vec::new(),
        steps,
        boot_timeout: Some(DEFAULT_BOOT_TIMEOUT),
        passthrough: Vec::new(),
        install: Install::default(),
        prepared_by: Vec::new(),
    })
}
