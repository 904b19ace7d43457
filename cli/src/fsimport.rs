//! `sdme fs import`: sdme-import's own options and engine, plus the
//! original tool's `--oci-mode` and `--base-fs`, which are accepted and
//! explained. The original copied the base rootfs under every application
//! image it imported; here an application image is imported as it is
//! (its OCI configuration kept in the metadata) and a container runs it
//! with `App=NAME` on `Rootfs=BASE`, nothing copied (sdme.container(5),
//! "OCI APPLICATIONS").

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use sdme_core::name::check_rootfs_name;
use sdme_import::cli::Args as ImportArgs;
use sdme_import::options::InstallPackages;

use crate::lookup::{config, dirs};

/// The original tool's `--oci-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OciMode {
    /// An application image when --base-fs is given, else a system image.
    Auto,
    /// A system image that boots (as sdme-import does by default).
    Base,
    /// An application image, run with App=NAME (implies
    /// --install-packages=no).
    App,
}

#[derive(Args, Debug, Clone)]
pub struct ImportCmd {
    #[command(flatten)]
    pub args: ImportArgs,
    /// The original sdme's classification of OCI images: an application
    /// image is imported without systemd, for App=NAME.
    #[arg(long, value_enum, value_name = "MODE", default_value = "auto")]
    pub oci_mode: OciMode,
    /// The original sdme's base rootfs for an application image: here the
    /// Rootfs= of the containers that run it (nothing is copied).
    #[arg(long, value_name = "NAME")]
    pub base_fs: Option<String>,
}

/// Import as sdme-import does; for an application image, say how to run it.
pub fn run(cmd: &ImportCmd) -> Result<ExitCode> {
    let app = match (cmd.oci_mode, &cmd.base_fs) {
        (OciMode::Base, Some(b)) => {
            bail!("--base-fs={b} goes with application images, not --oci-mode=base")
        }
        (OciMode::App, _) | (OciMode::Auto, Some(_)) => true,
        _ => false,
    };
    if !app || cmd.args.remove {
        return Ok(ExitCode::from(sdme_import::cli::main_with(
            &cmd.args, "sdme",
        )));
    }
    if cmd.args.install_packages == InstallPackages::Yes {
        bail!("--install-packages=yes and an application image exclude each other: App= runs the image as it is");
    }
    if let Some(b) = &cmd.base_fs {
        check_base(b)?;
    }
    let mut args = cmd.args.clone();
    args.install_packages = InstallPackages::No;
    let code = sdme_import::cli::main_with(&args, "sdme");
    if code == 0 {
        eprintln!("{}", how_to_run(args.rootfs_name(), cmd.base_fs.as_deref()));
    }
    Ok(ExitCode::from(code))
}

/// `--base-fs`: an imported rootfs, named as a rootfs is.
fn check_base(base: &str) -> Result<()> {
    check_rootfs_name(base).map_err(|e| anyhow::anyhow!("--base-fs={base}: {e}"))?;
    let dir = Path::new(sdme_core::paths::ROOTFS_DIR).join(base);
    if !dir.is_dir() {
        bail!(
            "--base-fs={base}: no rootfs {base} in {}; import it first",
            sdme_core::paths::ROOTFS_DIR
        );
    }
    Ok(())
}

/// What an application image is for, in one message.
fn how_to_run(name: &str, base: Option<&str>) -> String {
    let default = config(&dirs()).app_default_rootfs;
    let (rootfs, opt) = match (base, default.as_deref()) {
        (Some(b), _) => (format!("Rootfs={b}"), format!(" -r {b}")),
        (None, Some(d)) => (
            format!("Rootfs={d} (sdme.conf [App] DefaultRootfs=)"),
            String::new(),
        ),
        (None, None) => ("a clone of the host".to_string(), String::new()),
    };
    format!(
        "sdme: rootfs {name} is an application image, imported as it is: a container runs it \
         with App={name} on {rootfs}, nothing copied (sdme create CONTAINER --app {name}{opt}; \
         sdme.container(5), OCI APPLICATIONS)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        cmd: ImportCmd,
    }

    #[test]
    fn the_original_options_parse() {
        let c = Cli::parse_from(["x", "--oci-mode=app", "--base-fs", "deb", "src", "n"]).cmd;
        assert_eq!(
            (c.oci_mode, c.base_fs.as_deref()),
            (OciMode::App, Some("deb"))
        );
        let c = Cli::parse_from(["x", "src", "n"]).cmd;
        assert_eq!((c.oci_mode, c.base_fs), (OciMode::Auto, None));
        assert!(Cli::try_parse_from(["x", "--oci-mode=other", "src", "n"]).is_err());
    }

    #[test]
    fn base_mode_refuses_a_base_fs() {
        let c = Cli::parse_from(["x", "--oci-mode=base", "--base-fs=deb", "src", "n"]).cmd;
        let e = run(&c).unwrap_err().to_string();
        assert!(
            e.contains("--base-fs=deb goes with application images"),
            "{e}"
        );
    }

    #[test]
    fn the_message_names_app_and_the_base() {
        let m = how_to_run("nginx", Some("debian"));
        assert!(m.contains("App=nginx on Rootfs=debian"), "{m}");
        assert!(
            m.contains("sdme create CONTAINER --app nginx -r debian"),
            "{m}"
        );
    }
}
