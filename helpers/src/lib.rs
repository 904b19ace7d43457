//! sdme-helpers: the small binaries sdme's generated units run.
//!
//! * `sdme-prepare`: create a container's overlay directories and write the
//!   files sdme owns into `upper/` ([`prepare`]).
//! * `sdme-boot-wait`: after the guest reported READY=1, wait for machined
//!   registration, the guest's system bus and optional units ([`bootwait`]);
//!   with `--explain=UNIT`, name the cause of a container's failure
//!   ([`explain`]).
//! * `sdme-pod`: create, remove and enter a pod's pinned network namespace
//!   ([`pod`]).
//! * `sdme-drop-privs`: run an OCI app as its image's user, with
//!   `/dev/stdout` that works ([`droppriv`]); with `AppPod=`, ask the host
//!   to make the app's process in the pod's network ([`apppod`]).

pub mod app;
pub mod apppod;
pub mod bindpoint;
pub mod bootwait;
pub mod capset;
pub mod dbus;
pub mod droppriv;
pub mod explain;
pub mod fsutil;
pub mod guest;
pub mod hostdir;
pub mod idmap;
pub mod journal;
pub mod mountinfo;
pub mod nested;
pub mod overlay;
pub mod pod;
pub mod prepare;
pub mod service_env;
pub mod stop;
pub mod volseed;

/// `PROGRAM --version` alone prints the version (that of the package,
/// every sdme binary has the workspace's) and exits; true when it did.
pub fn version_asked(program: &str, args: &[std::ffi::OsString]) -> bool {
    if args.len() == 1 && args[0] == "--version" {
        println!("{program} {}", env!("CARGO_PKG_VERSION"));
        return true;
    }
    false
}
