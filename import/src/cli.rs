//! The command line: `sdme-import [OPTIONS] SOURCE NAME`.
//!
//! This is a fixed contract: generated units (`sdme-image-NAME.service`),
//! packagers and people call it. Extend it; never change what an existing
//! option means.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Parser;

use crate::import;
use crate::options::{ImportOptions, InstallPackages, Platform};
use crate::source::Kind;

/// `--max-size=SIZE`: bytes, or with a K, M, G or T suffix (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => {
                    return Err(format!(
                        "'{s}': unknown size suffix '{c}'; use K, M, G or T"
                    ))
                }
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: u64 = num.parse().map_err(|_| {
        format!("'{s}' is not a size; expected a number with an optional K, M, G or T suffix")
    })?;
    n.checked_mul(mult)
        .filter(|&v| v > 0)
        .ok_or_else(|| format!("'{s}' is not a usable size (zero or too large)"))
}

fn parse_kind(s: &str) -> Result<Kind, String> {
    Kind::from_type_name(s).ok_or_else(|| {
        format!(
            "'{s}' is not a source type; expected one of {}",
            Kind::TYPE_NAMES.join(", ")
        )
    })
}

/// Import a root file system into STATE_DIR/rootfs/NAME (see sdme-import(1)).
#[derive(Debug, Clone, Parser)]
#[command(name = "sdme-import", version, about, long_about = None)]
pub struct Args {
    /// A directory, a tarball, an http(s) URL, an OCI registry reference,
    /// an OCI layout directory or archive, a docker-save archive or a disk
    /// image. With --remove: the rootfs name to remove.
    #[arg(value_name = "SOURCE")]
    pub source: String,

    /// The rootfs name: the result is STATE_DIR/rootfs/NAME, used as Rootfs=NAME.
    #[arg(value_name = "NAME", required_unless_present = "remove")]
    pub name: Option<String>,

    /// The kind of SOURCE, instead of detecting it.
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_kind)]
    pub kind: Option<Kind>,

    /// Replace an existing rootfs NAME atomically.
    #[arg(long)]
    pub force: bool,

    /// Do nothing when rootfs NAME exists (and, for a reference pinned with
    /// @sha256:, was imported from that digest).
    #[arg(long, conflicts_with = "force")]
    pub if_missing: bool,

    /// Install systemd and D-Bus into the image when it lacks them.
    #[arg(long, value_enum, value_name = "WHEN", default_value = "auto")]
    pub install_packages: InstallPackages,

    /// Largest import: bytes downloaded or unpacked (K, M, G, T suffixes).
    #[arg(long, value_name = "SIZE", default_value = "50G", value_parser = parse_size)]
    pub max_size: u64,

    /// Also trust the certificates in this PEM file for https.
    #[arg(long, value_name = "PATH")]
    pub ca_file: Option<PathBuf>,

    /// The platform to choose from a multi-platform image (default: this machine's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = Platform::parse)]
    pub platform: Option<Platform>,

    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,

    /// The state directory (rootfs store, staging, locks, blob cache).
    #[arg(long, value_name = "DIR", default_value = sdme_core::paths::STATE_DIR)]
    pub state_dir: PathBuf,

    /// Remove the rootfs SOURCE (refused while a container uses it).
    #[arg(long, conflicts_with_all = ["force", "if_missing", "kind"])]
    pub remove: bool,
}

impl Args {
    /// The rootfs name (SOURCE with --remove).
    pub fn rootfs_name(&self) -> &str {
        match (&self.name, self.remove) {
            (Some(n), _) => n,
            (None, _) => &self.source,
        }
    }

    pub fn check(&self) -> Result<()> {
        if self.remove && self.name.is_some() {
            bail!("--remove takes one argument, the rootfs name");
        }
        if !self.state_dir.is_absolute() {
            bail!(
                "--state-dir '{}' is not an absolute path",
                self.state_dir.display()
            );
        }
        Ok(())
    }

    /// The engine's options (import mode; `--remove` takes only the name).
    pub fn options(&self) -> ImportOptions {
        ImportOptions {
            source: self.source.clone(),
            name: self.rootfs_name().to_string(),
            kind: self.kind,
            force: self.force,
            if_missing: self.if_missing,
            install_packages: self.install_packages,
            max_size: self.max_size,
            ca_file: self.ca_file.clone(),
            platform: self.platform.clone(),
            quiet: self.quiet,
            state_dir: self.state_dir.clone(),
        }
    }
}

/// What `sdme-import` and `sdme fs import` both do with their `Args`: set
/// the umask, run, and print an error as `PROG: ...` on one line. Returns
/// the exit status: 0, 1, or 130 when interrupted (nothing imported).
pub fn main_with(args: &Args, prog: &str) -> u8 {
    // Modes come from the archive; the umask must not change them.
    // SAFETY: umask has no failure mode.
    unsafe { libc::umask(0o022) };
    match run(args) {
        Ok(()) => 0,
        Err(e) if crate::cancel::is_interrupted(&e) => {
            eprintln!("{prog}: interrupted; nothing was imported");
            130
        }
        Err(e) => {
            eprintln!("{prog}: {}", format!("{e:#}").replace('\n', " "));
            1
        }
    }
}

/// Run sdme-import with `args`.
pub fn run(args: &Args) -> Result<()> {
    args.check()?;
    if args.remove {
        return import::remove(&args.state_dir, args.rootfs_name(), args.quiet);
    }
    import::run(&args.options())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("50G").unwrap(), 50 << 30);
        assert_eq!(parse_size("10k").unwrap(), 10 << 10);
        assert_eq!(parse_size("123").unwrap(), 123);
        assert_eq!(parse_size("2T").unwrap(), 2 << 40);
        for bad in ["", "G", "0", "1.5G", "10X", "-1", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn command_line() {
        let a = Args::try_parse_from([
            "sdme-import",
            "--type=tar",
            "--max-size=1M",
            "--force",
            "/x.tar",
            "deb",
        ])
        .unwrap();
        assert_eq!(a.kind, Some(Kind::Tarball));
        assert_eq!(a.max_size, 1 << 20);
        assert_eq!(a.rootfs_name(), "deb");
        let o = a.options();
        assert_eq!((o.source.as_str(), o.name.as_str()), ("/x.tar", "deb"));
        assert_eq!((o.kind, o.max_size), (Some(Kind::Tarball), 1 << 20));
        assert!(o.force && !o.if_missing && !o.quiet);
        assert_eq!(o.install_packages, InstallPackages::Auto);
        let r = Args::try_parse_from(["sdme-import", "--remove", "deb"]).unwrap();
        assert!(r.remove);
        assert_eq!(r.rootfs_name(), "deb");
        assert!(Args::try_parse_from(["sdme-import", "/x.tar"]).is_err());
        assert!(Args::try_parse_from(["sdme-import", "--type=zip", "/x", "y"]).is_err());
        assert!(
            Args::try_parse_from(["sdme-import", "--force", "--if-missing", "/x", "y"]).is_err()
        );
    }
}
