//! sdme-build: what a build unit (`sdme-build-NAME.service`, from
//! `NAME.build`, see sdme.build(5)) runs: `sdme-build --if-changed
//! NAME.build`.
//!
//! It loads the file the way the generator does (search path, drop-ins,
//! validation) and hands it to [`crate::builder`], which builds the
//! rootfs unless it is up to date.

use std::ffi::OsString;

use anyhow::{bail, Context, Result};
use sdme_core::build::Build;
use sdme_core::paths::unit_dirs;
use sdme_core::search::{search, FileType};

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
        true,
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

/// `NAME.build` from the search path, with its drop-ins, validated.
fn load(name: &str) -> Result<Build> {
    let (dirs, _) = unit_dirs();
    let s = search(&dirs, FileType::Build);
    let Some(found) = s.found.iter().find(|f| f.name.stem() == name) else {
        bail!("{name}.build: not on the search path (or masked)");
    };
    Build::load(found).map_err(|diags| {
        let msgs: Vec<String> = diags.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("{}", msgs.join("; "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(args: &[&str]) -> String {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        format!("{:#}", run(&args).unwrap_err())
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
