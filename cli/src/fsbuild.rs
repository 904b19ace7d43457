//! `sdme fs build`: build a rootfs from a build file (sdme.build(5)),
//! through the builder the build units run (`sdme_import::builder`),
//! and `--prune` its cache.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Result};
use sdme_core::build::Build;
use sdme_core::name::check_rootfs_name;
use sdme_core::paths::STATE_DIR;
use sdme_core::search::{search, FileType};
use sdme_import::builder::{self, Opts};
use sdme_import::{buildmain, buildprune, cancel};

use crate::lookup::dirs;

#[derive(clap::Args)]
pub struct BuildArgs {
    /// The build file: a .build file or the original sdme's FROM/RUN/COPY
    /// file; NAME.build alone (no '/', no such file here) is the file on
    /// the search path, with its drop-ins.
    #[arg(required_unless_present = "prune")]
    file: Option<PathBuf>,
    /// The rootfs to make.
    #[arg(required_unless_present = "prune")]
    name: Option<String>,
    /// Replace an existing rootfs NAME (refused while a container runs on it).
    #[arg(short, long)]
    force: bool,
    /// Run every step again, ignoring (and replacing) cached layers.
    #[arg(long)]
    no_cache: bool,
    /// The largest snapshot of the host's / (a build without From=), in
    /// bytes of file data (K, M, G, T suffixes).
    #[arg(long, value_name = "SIZE", default_value = "50G", value_parser = sdme_import::cli::parse_size)]
    max_size: u64,
    /// Remove the cached layers and host snapshots that no current build
    /// uses (the .build files on the search path, the built rootfs).
    #[arg(long, conflicts_with_all = ["file", "name", "force", "no_cache", "max_size"])]
    prune: bool,
}

pub fn run(a: &BuildArgs) -> Result<ExitCode> {
    let r = match (&a.file, &a.name) {
        (Some(file), Some(name)) if !a.prune => build(file, name, a),
        _ => prune(),
    };
    match r {
        // Whatever failed once a stop was asked for, the build was
        // interrupted (exit 130, as for sdme-import).
        Err(e) if cancel::is_interrupted(&e) => {
            eprintln!("sdme: {e:#}");
            Ok(ExitCode::from(130))
        }
        Err(e) if cancel::requested() => {
            eprintln!("sdme: interrupted: {e:#}");
            Ok(ExitCode::from(130))
        }
        r => r.map(|()| ExitCode::SUCCESS),
    }
}

/// The build file FILE names (see [`BuildArgs::file`]), as NAME's build.
fn load(file: &Path, name: &str) -> Result<Build> {
    let text = file.to_string_lossy();
    let on_path = text
        .strip_suffix(".build")
        .filter(|s| !s.contains('/') && !s.is_empty() && file.symlink_metadata().is_err());
    let mut b = match on_path {
        Some(stem) => buildmain::load(stem)?,
        None => buildmain::load_file(file, name)?,
    };
    b.name = name.to_string();
    Ok(b)
}

fn build(file: &Path, name: &str, a: &BuildArgs) -> Result<()> {
    check_rootfs_name(name).map_err(|e| anyhow!(e))?;
    let b = load(file, name)?;
    cancel::install();
    let opts = Opts {
        if_changed: false,
        replace: a.force,
        no_cache: a.no_cache,
        max_size: a.max_size,
    };
    let mut out = std::io::stdout();
    builder::build(&b, Path::new(STATE_DIR), opts, &mut out).map_err(|e| {
        e.context(format!(
            "{}: rootfs {name} was not built",
            b.source.display()
        ))
    })
}

/// Every valid `.build` on the search path; an invalid one is reported
/// and keeps nothing but what its rootfs's metadata names.
fn search_path_builds() -> Vec<Build> {
    let mut v = Vec::new();
    for f in search(&dirs(), FileType::Build).found {
        match Build::load(&f) {
            Ok(b) => v.push(b),
            Err(d) => {
                let m: Vec<String> = d.iter().map(ToString::to_string).collect();
                eprintln!("sdme: {}", m.join("; "));
            }
        }
    }
    v
}

fn prune() -> Result<()> {
    let builds = search_path_builds();
    let mut out = std::io::stdout();
    let p = buildprune::prune(Path::new(STATE_DIR), &builds, &mut out)?;
    println!(
        "{} layers removed, {} kept; {} replaced trees removed",
        p.layers, p.kept, p.trees
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: BuildArgs,
    }

    #[test]
    fn arguments() {
        let t = T::try_parse_from(["b", "f.conf", "web", "-f", "--no-cache"]).unwrap();
        assert_eq!(t.a.file.as_deref(), Some(Path::new("f.conf")));
        assert!(t.a.force && t.a.no_cache && !t.a.prune);
        assert_eq!(t.a.max_size, 50 << 30);
        let t = T::try_parse_from(["b", "f", "web", "--max-size=2G"]).unwrap();
        assert_eq!(t.a.max_size, 2 << 30);
        assert!(T::try_parse_from(["b", "f", "web", "--max-size=2Q"]).is_err());
        assert!(T::try_parse_from(["b", "--prune"]).unwrap().a.prune);
        assert!(T::try_parse_from(["b"]).is_err());
        assert!(T::try_parse_from(["b", "f.conf"]).is_err());
        assert!(T::try_parse_from(["b", "f.conf", "web", "--prune"]).is_err());
        assert!(T::try_parse_from(["b", "--prune", "-f"]).is_err());
    }

    #[test]
    fn a_file_by_path_in_either_format_named_as_asked() {
        let t = tempfile::tempdir().unwrap();
        let orig = t.path().join("web.conf");
        std::fs::write(&orig, "# built\nFROM debian\nRUN true\n").unwrap();
        let b = load(&orig, "site").unwrap();
        assert_eq!(b.name, "site");
        assert_eq!(b.format, sdme_core::build::Format::Original);
        let unit = t.path().join("x.build");
        std::fs::write(&unit, "[Build]\nFrom=debian\nRun=true\n").unwrap();
        let b = load(&unit, "site").unwrap();
        assert_eq!(
            (b.name.as_str(), b.format),
            ("site", sdme_core::build::Format::Unit)
        );
        let e = format!("{:#}", load(&t.path().join("none"), "site").unwrap_err());
        assert!(e.contains("none"), "{e}");
    }
}
