//! Where things live, on the host and in the search path.
//!
//! Every binary takes these from here so that the generator, the helpers
//! and the CLI can never disagree about a path.

use std::path::PathBuf;

/// The state root: imported root filesystems and per-container layers.
pub const STATE_DIR: &str = "/var/lib/sdme";
/// Imported root filesystems: `Rootfs=NAME` means `ROOTFS_DIR/NAME`.
pub const ROOTFS_DIR: &str = "/var/lib/sdme/rootfs";
/// sdme-import's locks and staging directories; also the rootfs use
/// locks (`NAME.use`, see [`crate::inuse`]).
pub const IMPORT_DIR: &str = "/var/lib/sdme/import";
/// sdme-import's metadata of each rootfs (`NAME.json`), with the OCI
/// configuration that runs an application.
pub const META_DIR: &str = "/var/lib/sdme/meta";
/// Anonymous volumes of applications: `VOLUMES_DIR/MACHINE/ESCAPED-PATH`,
/// kept when the container is removed.
pub const VOLUMES_DIR: &str = "/var/lib/sdme/volumes";
/// `AppPod=`: the directory of `sdme-app-pod.socket` (bound into the
/// roots of such applications), and sdme-prepare's records of which pod
/// each container's application joins, one file per container unit.
pub const APP_POD_SOCKET_DIR: &str = "/run/sdme/app-pod";
pub const APP_POD_RECORDS: &str = "/run/sdme/app-pods";
/// Per-container `upper/`, `work/` and `merged/`.
pub const CONTAINERS_DIR: &str = "/var/lib/sdme/containers";

/// The search path, highest priority first (as systemd's unit paths).
pub const DEFAULT_UNIT_DIRS: [&str; 4] = [
    "/etc/sdme",
    "/run/sdme",
    "/usr/local/lib/sdme",
    "/usr/lib/sdme",
];

/// sdme's directories that a container's lower layer must not show
/// unless `NestedSdme=yes`: the search path (but `/run/sdme`, a tmpfs in
/// every container) and the state root. A rootfs imported from a host
/// that runs sdme holds its `.container` files: the guest's own generator
/// would make, and with `[Install]` start, the host's containers inside.
pub const NESTED_SDME_DIRS: [&str; 4] = [
    "/etc/sdme",
    "/usr/local/lib/sdme",
    "/usr/lib/sdme",
    STATE_DIR,
];

/// Colon-separated absolute directories that replace the search path.
pub const UNIT_DIRS_ENV: &str = "SDME_UNIT_DIRS";

/// A directory that replaces `/run/sdme/inuse` for the generator (tests,
/// `--dry-run` against another system's records).
pub const INUSE_DIR_ENV: &str = "SDME_INUSE_DIR";

/// Where the generator reads the use records of running containers:
/// `$SDME_INUSE_DIR` when set and not empty; none when `$SDME_UNIT_DIRS`
/// replaces the search path (the records belong to the system's files,
/// not to another set); else [`crate::inuse::RECORD_DIR`].
pub fn inuse_dir() -> Option<PathBuf> {
    match std::env::var_os(INUSE_DIR_ENV) {
        Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
        _ if std::env::var_os(UNIT_DIRS_ENV).is_some_and(|v| !v.is_empty()) => None,
        _ => Some(PathBuf::from(crate::inuse::RECORD_DIR)),
    }
}

/// Where the helpers are installed; fixed at build time so the generated
/// units point at what `make install` put on disk.
pub const LIBEXEC_DIR: &str = match option_env!("SDME_LIBEXECDIR") {
    Some(dir) => dir,
    None => "/usr/libexec/sdme",
};

pub const NSPAWN: &str = "/usr/bin/systemd-nspawn";

/// Where systemd has the system manager's generators write (their NORMAL
/// directory, systemd.generator(7)): `sdme-prepare --generated=MACHINE`
/// reads the mount unit sdme-generator wrote there.
pub const GENERATOR_DIR: &str = "/run/systemd/generator";

/// Where `make install` puts the user-facing binaries (`BINDIR`).
pub const BIN_DIR: &str = match option_env!("SDME_BINDIR") {
    Some(dir) => dir,
    None => "/usr/bin",
};

/// The importer that image units run: `BIN_DIR/sdme-import` (joined by
/// build.rs, since a const cannot concatenate `option_env!`).
pub const SDME_IMPORT: &str = env!("SDME_IMPORT_PATH");

pub fn helper(name: &str) -> String {
    format!("{LIBEXEC_DIR}/{name}")
}

/// `/var/lib/sdme/containers/MACHINE`.
pub fn container_dir(machine: &str) -> PathBuf {
    PathBuf::from(CONTAINERS_DIR).join(machine)
}

/// `/var/lib/sdme/rootfs/NAME`.
pub fn rootfs_dir(name: &str) -> PathBuf {
    PathBuf::from(ROOTFS_DIR).join(name)
}

/// The search path in force: `$SDME_UNIT_DIRS` when set and not empty.
/// Entries that are not absolute are left out and reported.
pub fn unit_dirs() -> (Vec<PathBuf>, Vec<String>) {
    match std::env::var_os(UNIT_DIRS_ENV) {
        Some(v) if !v.is_empty() => {
            let mut errors = Vec::new();
            let dirs = std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .filter(|p| {
                    let ok = p.is_absolute();
                    if !ok {
                        errors.push(format!(
                            "{UNIT_DIRS_ENV}: '{}' is not an absolute path; ignored",
                            p.display()
                        ));
                    }
                    ok
                })
                .collect();
            (dirs, errors)
        }
        _ => (
            DEFAULT_UNIT_DIRS.iter().map(PathBuf::from).collect(),
            Vec::new(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_sdme_dirs_are_the_search_path_but_run_and_the_state() {
        let mut want: Vec<&str> = DEFAULT_UNIT_DIRS
            .iter()
            .copied()
            .filter(|d| !d.starts_with("/run/"))
            .collect();
        want.push(STATE_DIR);
        assert_eq!(NESTED_SDME_DIRS.to_vec(), want);
    }
}
