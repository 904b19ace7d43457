//! sdme-build: what a build unit (`sdme-build-NAME.service`, from
//! `NAME.build`, see sdme.build(5)) runs: `sdme-build --if-changed
//! NAME.build`.
//!
//! It loads the file the way the generator does (search path, drop-ins,
//! validation) and hands it to [`crate::builder`], which builds the
//! rootfs unless it is up to date.

use std::ffi::OsString;

use anyhow::{bail, Context, Result};
use std::path::Path;

use sdme_core::build::{parse_original, Build, Format};
use sdme_core::diag::Diag;
use sdme_core::paths::unit_dirs;
use sdme_core::search::{read_bounded, search, FileType, UnitName};
use sdme_core::syntax::UnitFile;

const USAGE: &str = "usage: sdme-build --if-changed NAME.build";

/// Run with the arguments after the program name.
pub fn run(args: &[OsString]) -> Result<()> {
    let args: Vec<&str> = (args.iter())
        .map(|a| a.to_str().context("arguments must be UTF-8"))
        .collect::<Result<_>>()?;
    let file = match args.as_slice() {
        ["--if-changed", f] => *f,
        _ => bail!("{USAGE}"),
    };
    let Some(name) = file.strip_suffix(".build").filter(|n| !n.contains('/')) else {
        bail!("{file}: expected NAME.build, a file on the search path; {USAGE}");
    };
    let build = load(name)?;
    crate::cancel::install();
    let mut out = std::io::stdout();
    crate::builder::build(
        &build,
        std::path::Path::new(sdme_core::paths::STATE_DIR),
        crate::builder::Opts::UNIT,
        &mut out,
    )
    .with_context(|| {
        format!(
            "{}: rootfs {} was not built",
            build.source.display(),
            build.name
        )
    })
}

/// The format of a build file given by path (`sdme fs build FILE`): a
/// name ending in `.build`, or a first line (not blank, not a `#` or `;`
/// comment) that opens a section (`[`), is a `.build` file; anything
/// else is the original tool's `FROM`/`RUN`/`COPY` format (which has no
/// line starting with `[`).
pub fn format_of(path: &Path, data: &[u8]) -> Format {
    if path.extension().is_some_and(|e| e == "build") {
        return Format::Unit;
    }
    let first = String::from_utf8_lossy(data)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .map(|l| l.starts_with('['));
    if first == Some(true) {
        Format::Unit
    } else {
        Format::Original
    }
}

/// The build file at `path` (either format, see [`format_of`]; no
/// drop-ins) as the build of the rootfs `name`, validated.
pub fn load_file(path: &Path, name: &str) -> Result<Build> {
    let data = read_bounded(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let r = match format_of(path, &data) {
        Format::Original => parse_original(path, &data, name),
        Format::Unit => {
            let f = UnitFile::parse(path, &data).map_err(|e| anyhow::anyhow!("{e}"))?;
            Build::from_unit(&UnitName::from_stem(name), path, f)
        }
    };
    r.map_err(diags_error)
}

fn diags_error(diags: Vec<Diag>) -> anyhow::Error {
    let msgs: Vec<String> = diags.iter().map(ToString::to_string).collect();
    anyhow::anyhow!("{}", msgs.join("; "))
}

/// `NAME.build` from the search path, with its drop-ins, validated.
pub fn load(name: &str) -> Result<Build> {
    let (dirs, _) = unit_dirs();
    let s = search(&dirs, FileType::Build);
    let Some(found) = s.found.iter().find(|f| f.name.stem() == name) else {
        bail!("{name}.build: not on the search path (or masked)");
    };
    Build::load(found).map_err(diags_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn err(args: &[&str]) -> String {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        format!("{:#}", run(&args).unwrap_err())
    }

    #[test]
    fn the_format_is_told_by_name_or_first_line() {
        let f = |p: &str, d: &str| format_of(Path::new(p), d.as_bytes());
        assert_eq!(f("/x/web.build", "FROM debian\n"), Format::Unit);
        assert_eq!(f("/x/web.conf", "# c\n\n  [Build]\nFrom=d\n"), Format::Unit);
        assert_eq!(f("/x/web.conf", "; c\n[Unit]\n"), Format::Unit);
        assert_eq!(
            f("/x/web.conf", "# [Build]\nFROM debian\n"),
            Format::Original
        );
        assert_eq!(f("/x/buildfile", ""), Format::Original);
    }

    #[test]
    fn load_file_reports_file_and_line() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("web.conf");
        fs::write(&p, "FROM debian\nCOPY x /tmp/x\n").unwrap();
        let e = format!("{:#}", load_file(&p, "web").unwrap_err());
        assert!(e.starts_with(&format!("{}:2: ", p.display())), "{e}");
        let p = t.path().join("web2.conf");
        fs::write(&p, "[Build]\nFrom=debian\nBogus=1\n").unwrap();
        let e = format!("{:#}", load_file(&p, "web").unwrap_err());
        assert!(e.starts_with(&format!("{}:3: ", p.display())), "{e}");
        let b = load_file(&p.with_file_name("none"), "web");
        assert!(b.is_err());
    }

    #[test]
    fn arguments_are_checked_before_anything_is_read() {
        assert_eq!(err(&[]), USAGE);
        assert_eq!(err(&["web.build"]), USAGE);
        assert!(err(&["--if-changed", "/etc/sdme/web.build"])
            .starts_with("/etc/sdme/web.build: expected NAME.build, a file on the search path"));
        assert!(err(&["--if-changed", "web"]).starts_with("web: expected NAME.build"));
    }
}
