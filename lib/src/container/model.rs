//! The validated model of a `.container` file: [`Container`] and the types
//! of its fields, with the questions the generator and the CLI ask of it.

use std::path::PathBuf;
use std::time::Duration;

use crate::app_ports::ExposePorts;
use crate::paths;
use crate::search::UnitName;
use crate::sections::Install;
use crate::syntax::{Location, Section};
use crate::userns::{self, PrivateUsers};

use super::app::App;
use super::image_use::ImageUse;
use super::syscall::SyscallFilter;

/// The lower layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rootfs {
    /// An overlay clone of the host's `/`.
    Host,
    /// An imported rootfs under `/var/lib/sdme/rootfs/NAME`.
    Named(String),
    /// An absolute directory.
    Dir(String),
}

impl Rootfs {
    pub fn lower_dir(&self) -> String {
        match self {
            Rootfs::Host => "/".into(),
            // A checked name: no `/`, so this is `rootfs_dir(n)`.
            Rootfs::Named(n) => [paths::ROOTFS_DIR, "/", n].concat(),
            Rootfs::Dir(d) => d.clone(),
        }
    }
}

/// `Bind=`/`BindReadOnly=`: nspawn's `SRC[:DST[:OPTIONS]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bind {
    pub read_only: bool,
    pub spec: String,
}

/// A security preset: `Hardened=yes` or `Strict=yes` (which includes
/// Hardened). `preset.rs` says what each sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Preset {
    Hardened,
    Strict,
}

/// A validated `.container` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    pub name: UnitName,
    /// The file that won on the search path (`SourcePath=`).
    pub source: PathBuf,
    /// For a bare template: the machine name prefix (`web` gives `web-%i`).
    /// Otherwise the machine name itself.
    pub machine: String,
    pub rootfs: Rootfs,
    pub hostname: Option<String>,
    pub binds: Vec<Bind>,
    pub environment: Vec<String>,
    /// `ServiceEnvironment=`: `NAME=VALUE` assignments for every service
    /// of the guest (the guest manager's `DefaultEnvironment=`).
    pub service_environment: Vec<String>,
    /// The machine its unit runs now, from the use records, when that is
    /// not `machine` (`MachineName=` changed while it ran): its stop must
    /// unmount that machine's overlay too. Set by the generator, never by
    /// the file.
    pub running_as: Option<String>,
    pub opaque_dirs: Vec<String>,
    /// `NestedSdme=yes`: the lower layer's sdme files and state stay
    /// visible (otherwise opaque, see [`paths::NESTED_SDME_DIRS`]).
    pub nested_sdme: bool,
    pub private_network: bool,
    pub virtual_ethernet: bool,
    pub bridge: Option<String>,
    pub zone: Option<String>,
    pub ports: Vec<String>,
    pub boot_timeout: Option<Duration>,
    pub wait_for: Vec<String>,
    pub nspawn_args: Vec<String>,
    /// `Capability=`: kernel capability numbers, sorted, unique.
    pub capabilities: Vec<u8>,
    /// `Capability=all`.
    pub capability_all: bool,
    /// `DropCapability=`: kernel capability numbers, sorted, unique.
    pub drop_capabilities: Vec<u8>,
    pub no_new_privileges: bool,
    pub read_only: bool,
    /// `SystemCallFilter=`, one entry per assignment line, in order.
    pub system_call_filter: Vec<SyscallFilter>,
    /// `AppArmorProfile=`: a unit directive of the container's service,
    /// checked by the prepare helper at start.
    pub apparmor_profile: Option<String>,
    /// `LogConsole=yes`: the guest's console in the unit's journal too.
    pub log_console: bool,
    /// `Pod=NAME.pod`: the pod's name and the line that set it.
    pub pod: Option<(String, Location)>,
    /// `Hardened=yes` / `Strict=yes`, already applied to the fields above.
    pub preset: Option<Preset>,
    /// `Image=REF` or `Rootfs=NAME.image`: the rootfs is imported by
    /// `sdme-image-NAME.service` before first start; `Rootfs=NAME.build`:
    /// built by `sdme-build-NAME.service`.
    pub image: Option<ImageUse>,
    /// `App=` and its keys: an OCI application run inside the guest.
    pub app: Option<App>,
    /// `PrivateUsers=`: unset (`None`) means no user namespace; a preset
    /// may fill it in when the file does not set it.
    pub private_users: Option<PrivateUsers>,
    /// `[Unit]`, `[Service]` and `X-` sections, passed through unchanged.
    pub passthrough: Vec<Section>,
    pub install: Install,
}

impl Container {
    pub fn is_template(&self) -> bool {
        matches!(self.name, UnitName::Template(_))
    }

    /// The rootfs this container's units need made first: its own
    /// (`Image=`, `Rootfs=NAME.image|.build`), then its application's
    /// (`App=REF`, `App=NAME.image`), with the key that names each.
    pub fn image_uses(&self) -> impl Iterator<Item = (&ImageUse, &'static str)> {
        let app = self.app.as_ref().and_then(|a| a.image_use.as_ref());
        (self.image.iter().map(|u| (u, "Rootfs"))).chain(app.map(|u| (u, "App")))
    }

    /// Whether the container runs in its own user namespace.
    pub fn private_users_enabled(&self) -> bool {
        self.private_users.is_some_and(PrivateUsers::enabled)
    }

    /// The first UID of the container's range when it is known at
    /// generation time: always, except in a bare template with
    /// `PrivateUsers=yes` (each instance's base comes from its machine
    /// name, known at start).
    pub fn userns_base(&self) -> Option<u32> {
        match self.private_users? {
            PrivateUsers::No => None,
            PrivateUsers::Base(n) => Some(n),
            PrivateUsers::Yes if self.is_template() => None,
            PrivateUsers::Yes => Some(userns::base_for(&self.machine)),
        }
    }

    /// Whether the container's service mounts the overlay itself
    /// (`sdme-prepare --mount` from `ExecStartPre=`) instead of through a
    /// `.mount` unit: bare templates (mount units cannot be templates) and
    /// containers with a user namespace (the overlay over ID-mapped layers
    /// must be mounted with the container's root as its creator, which
    /// mount(8) cannot do; see sdme-prepare(8)).
    pub fn helper_mounts(&self) -> bool {
        self.is_template() || self.private_users_enabled()
    }

    /// Whether the container shares the host's network namespace.
    pub fn host_network(&self) -> bool {
        !(self.pod.is_some()
            || self.private_network
            || self.link()
            || !self.ports.is_empty()
            || self.nspawn_network())
    }

    /// Whether the file gives the container a link of its own.
    fn link(&self) -> bool {
        self.virtual_ethernet || self.bridge.is_some() || self.zone.is_some()
    }

    /// Whether `NspawnArgs=` has nspawn's network options.
    fn nspawn_network(&self) -> bool {
        self.nspawn_args.iter().any(|a| {
            a.starts_with("--private-network")
                || a.starts_with("--network-")
                || a.starts_with("--port")
                || a == "-n"
                || a.starts_with("-p")
        })
    }

    /// Whether the application image's ExposedPorts become port forwards:
    /// only with a network of the container's own that the file made with
    /// sdme's keys and gave no `Port=` (see [`ExposePorts`]).
    pub fn app_expose(&self) -> ExposePorts {
        let Some(app) = &self.app else {
            return ExposePorts::No;
        };
        let own_choice = !self.ports.is_empty() || self.nspawn_network();
        if own_choice || self.pod.is_some() || app.pod.is_some() || self.host_network() {
            ExposePorts::No
        } else if self.link() {
            ExposePorts::OnLink
        } else {
            ExposePorts::WithVeth
        }
    }
}
