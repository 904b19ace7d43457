//! What an import is asked to do, whoever asks: the `sdme-import` command
//! line fills it, and so can other front ends, without the engine knowing
//! their parsers.

use std::path::PathBuf;

use crate::source::Kind;

/// Everything the engine reads from its caller for one import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// A directory, a tarball, a URL, an OCI reference, layout or archive,
    /// a docker-save archive or a disk image.
    pub source: String,
    /// The rootfs name: the result is STATE_DIR/rootfs/NAME.
    pub name: String,
    /// The kind of SOURCE; None: detect it.
    pub kind: Option<Kind>,
    /// Replace an existing rootfs atomically.
    pub force: bool,
    /// Do nothing when the rootfs is there (from the pinned digest, if any).
    pub if_missing: bool,
    pub install_packages: InstallPackages,
    /// Largest import: bytes downloaded or unpacked.
    pub max_size: u64,
    /// Extra trusted certificates (PEM) for https.
    pub ca_file: Option<PathBuf>,
    /// The platform to choose; None: this machine's.
    pub platform: Option<Platform>,
    /// No progress output.
    pub quiet: bool,
    /// The state directory (rootfs store, staging, locks, blob cache).
    pub state_dir: PathBuf,
}

/// `--install-packages=WHEN` (clap's derive gives the command line its
/// values and their help).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InstallPackages {
    /// Install systemd and D-Bus when the image lacks them and the distro's
    /// package manager is there.
    Auto,
    /// Install them; fail when that is not possible.
    Yes,
    /// Never install anything.
    No,
}

/// `OS/ARCH[/VARIANT]`, as `--platform=` and `Platform=` spell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn parse(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        };
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform {
                os: os.to_string(),
                arch: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] if ok(os) && ok(arch) && ok(v) => Ok(Platform {
                os: os.to_string(),
                arch: arch.to_string(),
                variant: Some(v.to_string()),
            }),
            _ => Err(format!(
                "'{s}' is not a platform; expected OS/ARCH[/VARIANT], e.g. linux/amd64 or linux/arm/v7"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms() {
        assert_eq!(
            Platform::parse("linux/arm/v7").unwrap(),
            Platform {
                os: "linux".into(),
                arch: "arm".into(),
                variant: Some("v7".into())
            }
        );
        assert!(Platform::parse("linux/amd64").is_ok());
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/am d64"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }
}
