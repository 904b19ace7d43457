//! The `.container` schema: from a parsed (and merged) unit file to a
//! validated [`Container`]. Every check that can be made without looking at
//! `/var` is made here, so a bad value fails at generation time with its
//! file and line instead of failing a boot later.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::capability::{capability_name, parse_capability, CAPABILITIES};
use crate::config::Config;
use crate::diag::Diag;
use crate::dropins::{for_instance, parse_with_dropins};
use crate::escape::{check_mount_unit_name, is_env_name, split_words};
use crate::image::{check_image_source, inline_rootfs_name};
use crate::name::{check_machine_name, check_pod_name, check_rootfs_name};
use crate::paths;
use crate::search::{Found, UnitName};
use crate::sections::Kind;
use crate::service_env::check_service_env;
use crate::syntax::{Entry, Location, Section, UnitFile};
use crate::timespan::parse_timespan;
use crate::userns::{self, PrivateUsers};
use crate::value::{check_abs_path, check_ifname, check_overlay_path, check_unit_name, parse_bool};

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

/// One `SystemCallFilter=` line: nspawn's `--system-call-filter=`, where a
/// leading `~` makes the whole list a deny list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyscallFilter {
    pub deny: bool,
    /// System call names and `@group`s, as written (normalized spacing).
    pub items: Vec<String>,
}

/// Members of the groups that a deny list must spell out for nspawn
/// (`systemd-analyze syscall-filter`, systemd 252). nspawn applies `~LIST`
/// by leaving LIST's words out of its own allow list, comparing them as
/// written: `~@debug` alone leaves `ptrace` allowed, because nspawn allows
/// it by name whenever CAP_SYS_PTRACE is kept (measured: PTRACE_TRACEME
/// succeeded under `~@debug` with `Capability=CAP_SYS_PTRACE`). These are
/// the groups holding a system call that nspawn's allow list names on its
/// own (ptrace, reboot) and the ones `Strict=` denies.
const DENY_GROUP_MEMBERS: [(&str, &[&str]); 5] = [
    (
        "@cpu-emulation",
        &[
            "modify_ldt",
            "subpage_prot",
            "switch_endian",
            "vm86",
            "vm86old",
        ],
    ),
    (
        "@debug",
        &[
            "lookup_dcookie",
            "perf_event_open",
            "pidfd_getfd",
            "ptrace",
            "rtas",
            "s390_runtime_instr",
            "sys_debug_setcontext",
        ],
    ),
    (
        "@obsolete",
        &[
            "_sysctl",
            "afs_syscall",
            "bdflush",
            "break",
            "create_module",
            "ftime",
            "get_kernel_syms",
            "getpmsg",
            "gtty",
            "idle",
            "lock",
            "mpx",
            "prof",
            "profil",
            "putpmsg",
            "query_module",
            "security",
            "sgetmask",
            "ssetmask",
            "stime",
            "stty",
            "sysfs",
            "tuxcall",
            "ulimit",
            "uselib",
            "ustat",
            "vserver",
        ],
    ),
    (
        "@raw-io",
        &[
            "ioperm",
            "iopl",
            "pciconfig_iobase",
            "pciconfig_read",
            "pciconfig_write",
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
        ],
    ),
    ("@reboot", &["kexec_file_load", "kexec_load", "reboot"]),
];

impl SyscallFilter {
    /// The value of nspawn's `--system-call-filter=`: for a deny list,
    /// each group is followed by the members nspawn needs by name (see
    /// [`DENY_GROUP_MEMBERS`]); the group itself stays, for the groups
    /// nspawn's allow list names (such as `@raw-io`).
    pub fn nspawn_value(&self) -> String {
        if !self.deny {
            return self.value();
        }
        let mut words: Vec<&str> = Vec::new();
        for item in &self.items {
            let members = DENY_GROUP_MEMBERS
                .iter()
                .find(|(g, _)| g == item)
                .map_or(&[][..], |(_, m)| *m);
            for w in std::iter::once(item.as_str()).chain(members.iter().copied()) {
                if !words.contains(&w) {
                    words.push(w);
                }
            }
        }
        format!("~{}", words.join(" "))
    }

    /// The value as written (normalized spacing).
    pub fn value(&self) -> String {
        let list = self.items.join(" ");
        if self.deny {
            format!("~{list}")
        } else {
            list
        }
    }
}

/// systemd's system call groups (`systemd-analyze syscall-filter`).
const SYSCALL_GROUPS: [&str; 29] = [
    "@aio",
    "@basic-io",
    "@chown",
    "@clock",
    "@cpu-emulation",
    "@debug",
    "@file-system",
    "@io-event",
    "@ipc",
    "@keyring",
    "@memlock",
    "@module",
    "@mount",
    "@network-io",
    "@obsolete",
    "@pkey",
    "@privileged",
    "@process",
    "@raw-io",
    "@reboot",
    "@resources",
    "@sandbox",
    "@setuid",
    "@signal",
    "@swap",
    "@sync",
    "@system-service",
    "@timer",
    "@known",
];

/// One `SystemCallFilter=` value (not empty).
fn parse_syscall_filter(v: &str) -> Result<SyscallFilter, String> {
    let (deny, list) = match v.strip_prefix('~') {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let mut items = Vec::new();
    for w in list.split_whitespace() {
        if w.starts_with('~') {
            return Err(format!(
                "'~' must start the value and then applies to the whole list ('{w}' is not the first word); put allowed and denied system calls on separate lines"
            ));
        }
        if w.starts_with('@') {
            if !(SYSCALL_GROUPS.contains(&w) || w == "@default") {
                return Err(format!(
                    "unknown system call group '{}' (see 'systemd-analyze syscall-filter')",
                    w.escape_default()
                ));
            }
        } else if !w
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(format!(
                "'{}' is neither a system call name (lower-case letters, digits, '_') nor an @group",
                w.escape_default()
            ));
        }
        items.push(w.to_string());
    }
    if items.is_empty() {
        return Err("'~' without system calls".into());
    }
    Ok(SyscallFilter { deny, items })
}

/// Longest `AppArmorProfile=` accepted (a file name in /etc/apparmor.d).
const APPARMOR_PROFILE_MAX: usize = 255;

/// Check an `AppArmorProfile=` value (not empty).
///
/// AppArmor itself allows almost any byte in a profile name, but the name
/// goes into a unit file (`AppArmorProfile=`) and onto the prepare
/// helper's command line, and is looked up in the kernel's profile list
/// (`NAME (mode)` lines). So the rule is strict: ASCII letters, digits and
/// `_ - . + : @ /` only (no white space, control characters, quotes, `%`
/// specifiers or `$`); it must start with a letter, digit, `_` or `/` (a
/// leading `-` would be systemd's "ignore errors" prefix, which sdme does
/// not offer: a profile that cannot be applied fails the start), and it
/// must not be made of `/` alone (not a name). Paths such as
/// `/usr/bin/foo`, AppArmor's names for attached profiles, are allowed.
pub fn check_apparmor_profile(v: &str) -> Result<(), String> {
    let rule = "an AppArmor profile name has ASCII letters, digits and '_-.+:@/' only, starts with a letter, digit, '_' or '/' and is not made of '/' alone";
    if v.is_empty() {
        return Err(format!("empty profile name; {rule}"));
    }
    if v.len() > APPARMOR_PROFILE_MAX {
        return Err(format!(
            "profile name longer than {APPARMOR_PROFILE_MAX} bytes"
        ));
    }
    if let Some(c) = v
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_-.+:@/".contains(*c)))
    {
        return Err(format!(
            "'{}' is not allowed in a profile name; {rule}",
            c.escape_default()
        ));
    }
    let first = v.as_bytes()[0];
    if !(first.is_ascii_alphanumeric() || first == b'_' || first == b'/') {
        return Err(format!(
            "a profile name cannot start with '{}'; {rule}",
            char::from(first)
        ));
    }
    if v.bytes().all(|b| b == b'/') {
        return Err(format!("'{v}' is not a profile name; {rule}"));
    }
    Ok(())
}

/// A security preset: `Hardened=yes` or `Strict=yes` (which includes
/// Hardened). See [`Builder::apply_preset`] for what each sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Preset {
    Hardened,
    Strict,
}

/// Docker's default capability set (moby's `oci/caps`), which `Strict=`
/// keeps, plus CAP_SYS_ADMIN, without which systemd cannot boot in a
/// container (mounts, namespaces for its own sandboxing), and CAP_SYS_BOOT,
/// without which a reboot inside becomes a power-off (in the container's
/// PID namespace it reboots only the container).
pub const STRICT_KEEP: [&str; 16] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
    "SYS_ADMIN",
    "SYS_BOOT",
];

/// `Strict=`'s system call deny list.
pub const STRICT_SYSCALL_DENY: [&str; 4] = ["@cpu-emulation", "@debug", "@obsolete", "@raw-io"];

/// `Strict=`'s AppArmor profile, shipped in `apparmor/sdme-default`.
pub const STRICT_APPARMOR_PROFILE: &str = "sdme-default";

/// `[Install]`, applied by the generator as symlinks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Install {
    pub wanted_by: Vec<String>,
    pub required_by: Vec<String>,
    pub alias: Vec<String>,
    pub default_instance: Option<String>,
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
    /// `sdme-image-NAME.service` before first start.
    pub image: Option<ImageUse>,
    /// `PrivateUsers=`: unset (`None`) means no user namespace; a preset
    /// may fill it in when the file does not set it.
    pub private_users: Option<PrivateUsers>,
    /// `[Unit]`, `[Service]` and `X-` sections, passed through unchanged.
    pub passthrough: Vec<Section>,
    pub install: Install,
}

/// A container's rootfs that an image unit imports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageUse {
    /// The rootfs name (`Rootfs::Named`), also the image unit's name.
    pub name: String,
    /// `Image=REF`: the reference; `None` for `Rootfs=NAME.image`.
    pub inline: Option<String>,
    /// The line that set it.
    pub at: Location,
}

/// Default `BootTimeout=`, as systemd's DefaultTimeoutStartSec.
pub const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(90);

/// Opaque directories of a host clone unless `OpaqueDir=` says otherwise:
/// the host's own enabled units and logs must not show through. (sdme's
/// own files and state are hidden in every container, host clone or not,
/// unless `NestedSdme=yes`: see [`paths::NESTED_SDME_DIRS`].)
pub const HOST_CLONE_OPAQUE: [&str; 2] = ["/etc/systemd/system", "/var/log"];

/// nspawn options that sdme sets itself or that do nothing under
/// `--keep-unit`; in `NspawnArgs=` they would conflict or be silently
/// ignored, so they are refused with the key to use instead.
const SDME_NSPAWN_OPTIONS: [(&str, &str); 18] = [
    ("--machine", "set by sdme; use MachineName="),
    ("-M", "set by sdme; use MachineName="),
    ("--directory", "set by sdme; use Rootfs="),
    ("-D", "set by sdme; use Rootfs="),
    ("--image", "sdme boots an overlay directory; use Rootfs="),
    ("-i", "sdme boots an overlay directory; use Rootfs="),
    ("--boot", "always set by sdme"),
    ("-b", "always set by sdme"),
    ("--keep-unit", "always set by sdme"),
    (
        "--notify-ready",
        "always set by sdme (start waits for the boot)",
    ),
    (
        "--settings",
        "set by sdme: the .container file is the whole configuration",
    ),
    (
        "--register",
        "machined registration is what machinectl and boot-wait use",
    ),
    (
        "--property",
        "has no effect with --keep-unit; put the setting in [Service]",
    ),
    (
        "--slice",
        "has no effect with --keep-unit; use Slice= in [Service]",
    ),
    (
        "--private-users",
        "use PrivateUsers= (nspawn's own ownership modes chown or copy up the whole overlay)",
    ),
    (
        "-U",
        "use PrivateUsers= (nspawn's own ownership modes chown or copy up the whole overlay)",
    ),
    (
        "--private-users-ownership",
        "set by sdme; use PrivateUsers=",
    ),
    ("--private-users-chown", "set by sdme; use PrivateUsers="),
];

fn check_nspawn_arg(word: &str) -> Result<(), String> {
    let name = word.split_once('=').map_or(word, |(n, _)| n);
    match SDME_NSPAWN_OPTIONS.iter().find(|(o, _)| *o == name) {
        Some((o, why)) => Err(format!("{o} cannot be given here: {why}")),
        None => Ok(()),
    }
}

/// `[Service]` keys sdme sets itself; a second value would break the unit.
const RESERVED_SERVICE_KEYS: [(&str, &str); 4] = [
    ("ExecStart", "sdme writes the systemd-nspawn command line; use NspawnArgs= in [Container] to add options"),
    ("Type", "the container service must be Type=notify so that start waits for the boot"),
    ("NotifyAccess", "nspawn and its payload must be able to notify"),
    ("TimeoutStartSec", "use BootTimeout= in [Container], which the boot-wait helper honours too"),
];

/// Keys whose empty assignment would reset what sdme wrote (its helpers,
/// its mount dependency) and leave a container that cannot start right.
const NO_RESET_KEYS: [(&str, &str); 6] = [
    ("Service", "ExecStartPre"),
    ("Service", "ExecStartPost"),
    ("Service", "ExecStopPost"),
    ("Unit", "After"),
    ("Unit", "Requires"),
    ("Unit", "RequiresMountsFor"),
];

/// The shared sections of a `.container` file.
const CONTAINER_KIND: Kind = Kind {
    ext: "container",
    own: "Container",
    reserved_service: &RESERVED_SERVICE_KEYS,
    no_reset: &NO_RESET_KEYS,
};

impl Container {
    /// Validate `found` (its bytes were read by the search) with its
    /// drop-ins, with the built-in global configuration.
    pub fn load(found: &Found) -> Result<Container, Vec<Diag>> {
        Container::load_with(found, &Config::default())
    }

    /// Validate `found` with its drop-ins and the global configuration.
    pub fn load_with(found: &Found, config: &Config) -> Result<Container, Vec<Diag>> {
        let file = parse_with_dropins(found)?;
        for_instance(
            found,
            Container::from_unit_with(found.name.clone(), &found.path, file, config),
        )
    }

    /// Validate a parsed file named `name`, with the built-in global
    /// configuration.
    pub fn from_unit(
        name: UnitName,
        source: &Path,
        file: UnitFile,
    ) -> Result<Container, Vec<Diag>> {
        Container::from_unit_with(name, source, file, &Config::default())
    }

    /// Validate a parsed file named `name`; presets take their lists from
    /// `config`.
    pub fn from_unit_with(
        name: UnitName,
        source: &Path,
        file: UnitFile,
        config: &Config,
    ) -> Result<Container, Vec<Diag>> {
        let mut b = Builder::new(name, source);
        b.hardened_drop = config.hardened_drop.clone();
        if file.section("Container").is_none() {
            b.diags.push(Diag::file(source, "no [Container] section"));
        }
        b.sections(file, &CONTAINER_KIND, |b, e| b.container_key(e));
        b.finish()
    }

    pub fn is_template(&self) -> bool {
        matches!(self.name, UnitName::Template(_))
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
            || self.virtual_ethernet
            || self.bridge.is_some()
            || self.zone.is_some()
            || !self.ports.is_empty()
            || self.nspawn_args.iter().any(|a| {
                a.starts_with("--private-network")
                    || a.starts_with("--network-")
                    || a.starts_with("--port")
                    || a == "-n"
                    || a.starts_with("-p")
            }))
    }
}

/// Check the pod a container names with `Pod=`: `NAME`, `NAME@INSTANCE`,
/// or in a container template (and its instances) `NAME@%i`, the pod
/// instance named like the container instance.
fn check_pod_ref(n: &str, container: &UnitName) -> Result<String, String> {
    match n.split_once('@') {
        Some((t, "")) => Err(format!(
            "{t}@.pod is a pod template; name one of its instances, {t}@INSTANCE.pod (or {t}@%i.pod in a container template)"
        )),
        Some((t, "%i")) => {
            if matches!(container, UnitName::Plain(_)) {
                return Err(format!(
                    "%i (the instance name) only applies in a template (NAME@.container); name the pod instance, {t}@INSTANCE.pod"
                ));
            }
            check_pod_name(t).map(|_| n.to_string())
        }
        _ => check_pod_name(n).map(|_| n.to_string()),
    }
}

/// A template's machine names are `PREFIX-INSTANCE`.
pub fn instance_machine(template: &str, instance: &str) -> String {
    format!("{template}-{instance}")
}

pub(crate) struct Builder {
    pub(crate) name: UnitName,
    pub(crate) source: PathBuf,
    pub(crate) diags: Vec<Diag>,
    machine: Option<(String, Location)>,
    rootfs: Rootfs,
    rootfs_at: Option<Location>,
    /// `Rootfs=` with a value, and the line (to refuse it next to `Image=`).
    rootfs_set: Option<Location>,
    /// `Rootfs=NAME.image`: NAME.
    rootfs_image: Option<String>,
    /// `Image=REF`: REF and its line.
    image: Option<(String, Location)>,
    hostname: Option<String>,
    binds: Vec<Bind>,
    environment: Vec<String>,
    service_environment: Vec<String>,
    opaque: Option<Vec<String>>,
    nested_sdme: bool,
    private_network: bool,
    virtual_ethernet: bool,
    bridge: Option<String>,
    zone: Option<(String, Location)>,
    ports: Vec<String>,
    boot_timeout: Option<Duration>,
    wait_for: Vec<String>,
    nspawn_args: Vec<String>,
    /// Capability number (or [`CAP_ALL`]) to the line that added it.
    cap_add: BTreeMap<u8, Location>,
    cap_drop: BTreeMap<u8, Location>,
    no_new_privileges: bool,
    read_only: bool,
    syscall_filter: Vec<SyscallFilter>,
    apparmor_profile: Option<String>,
    log_console: bool,
    pub(crate) passthrough: Vec<Section>,
    pub(crate) install: Install,
    pub(crate) install_at: Vec<(&'static str, Location)>,
    pod: Option<(String, Location)>,
    private_users: Option<(PrivateUsers, Location)>,
    /// Network keys in effect, with the line that set them (to refuse
    /// them next to `Pod=`).
    net_at: BTreeMap<&'static str, Location>,
    /// `Hardened=` and `Strict=` as last assigned.
    hardened: bool,
    strict: bool,
    /// `[Container]` keys assigned anywhere (even empty): an explicit key
    /// overrides its part of a preset.
    seen: BTreeSet<String>,
    /// An empty `DropCapability=` / `SystemCallFilter=` was seen: the
    /// preset's part of that list is reset with the rest.
    drop_reset: bool,
    syscall_reset: bool,
    /// `Hardened=`'s drop list, from sdme.conf.
    pub(crate) hardened_drop: Vec<u8>,
}

/// `Capability=all` in [`Builder::cap_add`].
const CAP_ALL: u8 = u8::MAX;

impl Builder {
    pub(crate) fn new(name: UnitName, source: &Path) -> Builder {
        Builder {
            name,
            source: source.to_path_buf(),
            diags: Vec::new(),
            machine: None,
            rootfs: Rootfs::Host,
            rootfs_at: None,
            rootfs_set: None,
            rootfs_image: None,
            image: None,
            hostname: None,
            binds: Vec::new(),
            environment: Vec::new(),
            service_environment: Vec::new(),
            opaque: None,
            nested_sdme: false,
            private_network: false,
            virtual_ethernet: false,
            bridge: None,
            zone: None,
            ports: Vec::new(),
            boot_timeout: Some(DEFAULT_BOOT_TIMEOUT),
            wait_for: Vec::new(),
            nspawn_args: Vec::new(),
            cap_add: BTreeMap::new(),
            cap_drop: BTreeMap::new(),
            no_new_privileges: false,
            read_only: false,
            syscall_filter: Vec::new(),
            apparmor_profile: None,
            log_console: false,
            passthrough: Vec::new(),
            install: Install::default(),
            install_at: Vec::new(),
            pod: None,
            private_users: None,
            net_at: BTreeMap::new(),
            hardened: false,
            strict: false,
            seen: BTreeSet::new(),
            drop_reset: false,
            syscall_reset: false,
            // Set from the configuration by the caller that has one.
            hardened_drop: Vec::new(),
        }
    }

    pub(crate) fn err(&mut self, e: &Entry, msg: impl Into<String>) {
        self.diags.push(Diag::at(&e.at, msg));
    }

    /// Run a check; on failure record `KEY=: message`.
    pub(crate) fn check<T>(&mut self, e: &Entry, r: Result<T, String>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(m) => {
                self.err(e, format!("{}={}: {m}", e.key, e.value));
                None
            }
        }
    }

    fn bool(&mut self, e: &Entry) -> bool {
        if e.value.is_empty() {
            return false;
        }
        self.check(e, parse_bool(&e.value)).unwrap_or(false)
    }

    fn container_key(&mut self, e: &Entry) {
        let v = e.value.as_str();
        if !self.seen.contains(&e.key) {
            self.seen.insert(e.key.clone());
        }
        match e.key.as_str() {
            "Hardened" => self.hardened = self.bool(e),
            "Strict" => self.strict = self.bool(e),
            "Rootfs" => {
                self.rootfs_at = Some(e.at.clone());
                self.rootfs_set = (!v.is_empty()).then(|| e.at.clone());
                self.rootfs_image = None;
                self.rootfs = if v.is_empty() || v == "/" {
                    Rootfs::Host
                } else if let Some(n) = v.strip_suffix(".image") {
                    let r =
                        check_rootfs_name(n).map_err(|m| m.replace("rootfs name", "image name"));
                    match self.check(e, r) {
                        Some(()) => {
                            self.rootfs_image = Some(n.to_string());
                            Rootfs::Named(n.to_string())
                        }
                        None => return,
                    }
                } else if v.starts_with('/') {
                    let ok = check_abs_path(v, "rootfs directory")
                        .and_then(|_| check_overlay_path(v, "rootfs directory"));
                    match self.check(e, ok) {
                        Some(()) => Rootfs::Dir(v.to_string()),
                        None => return,
                    }
                } else {
                    match self.check(e, check_rootfs_name(v)) {
                        Some(()) => Rootfs::Named(v.to_string()),
                        None => return,
                    }
                };
            }
            "Image" => {
                if v.is_empty() {
                    self.image = None;
                } else if let Some(()) = self.check(e, check_image_source(v)) {
                    self.image = Some((v.to_string(), e.at.clone()));
                }
            }
            "MachineName" => {
                if v.is_empty() {
                    self.machine = None;
                } else if let Some(()) = self.check(e, check_machine_name(v)) {
                    self.machine = Some((v.to_string(), e.at.clone()));
                }
            }
            "Hostname" => {
                if v.is_empty() {
                    self.hostname = None;
                } else if let Some(()) = self.check(
                    e,
                    check_machine_name(v).map_err(|m| m.replace("machine name", "hostname")),
                ) {
                    self.hostname = Some(v.to_string());
                }
            }
            "Bind" | "BindReadOnly" => {
                if v.is_empty() {
                    self.binds
                        .retain(|b| b.read_only != (e.key == "BindReadOnly"));
                } else if let Some(()) = self.check(e, check_bind(v)) {
                    self.binds.push(Bind {
                        read_only: e.key == "BindReadOnly",
                        spec: v.to_string(),
                    });
                }
            }
            "Environment" => {
                if v.is_empty() {
                    self.environment.clear();
                    return;
                }
                let Some(words) = self.check(e, split_words(v)) else {
                    return;
                };
                for w in words {
                    match w.split_once('=') {
                        Some((k, _)) if is_env_name(k) => self.environment.push(w),
                        _ => self.err(
                            e,
                            format!("Environment=: '{}' is not a NAME=VALUE assignment with a valid variable name", w.escape_default()),
                        ),
                    }
                }
            }
            "ServiceEnvironment" => {
                if v.is_empty() {
                    self.service_environment.clear();
                    return;
                }
                let Some(words) = self.check(e, split_words(v)) else {
                    return;
                };
                for w in words {
                    match check_service_env(&w) {
                        Ok(()) => self.service_environment.push(w),
                        Err(m) => self.err(e, format!("ServiceEnvironment=: {m}")),
                    }
                }
            }
            "NestedSdme" => self.nested_sdme = self.bool(e),
            "OpaqueDir" => {
                if v.is_empty() {
                    self.opaque = Some(Vec::new());
                    return;
                }
                let r = check_abs_path(v, "opaque directory").and_then(|_| {
                    if v == "/" {
                        Err("the root directory cannot be opaque".into())
                    } else {
                        Ok(())
                    }
                });
                if let Some(()) = self.check(e, r) {
                    self.opaque
                        .get_or_insert_with(default_opaque_marker)
                        .push(v.to_string());
                }
            }
            "PrivateNetwork" => self.private_network = self.bool(e),
            "VirtualEthernet" => self.virtual_ethernet = self.bool(e),
            "Bridge" => {
                self.bridge = if v.is_empty() {
                    None
                } else {
                    self.check(e, check_ifname(v, "bridge", 15))
                        .map(|_| v.to_string())
                };
            }
            "Zone" => {
                // nspawn names the bridge "vz-ZONE", so 12 bytes are left.
                self.zone = if v.is_empty() {
                    None
                } else {
                    self.check(e, check_ifname(v, "zone", 12))
                        .map(|_| (v.to_string(), e.at.clone()))
                };
            }
            "Port" => {
                if v.is_empty() {
                    self.ports.clear();
                } else if let Some(()) = self.check(e, check_port(v)) {
                    self.ports.push(v.to_string());
                }
            }
            "BootTimeout" => {
                if v.is_empty() {
                    self.boot_timeout = Some(DEFAULT_BOOT_TIMEOUT);
                } else if let Some(t) = self.check(e, parse_timespan(v)) {
                    if t == Some(Duration::ZERO) {
                        self.err(e, "BootTimeout=0: use 'infinity' to wait without limit");
                    } else {
                        self.boot_timeout = t;
                    }
                }
            }
            "WaitFor" => {
                if v.is_empty() {
                    self.wait_for.clear();
                    return;
                }
                for u in v.split_whitespace() {
                    if let Some(()) = self.check(e, check_unit_name(u, "unit")) {
                        self.wait_for.push(u.to_string());
                    }
                }
            }
            "NspawnArgs" => {
                if v.is_empty() {
                    self.nspawn_args.clear();
                } else if let Some(words) = self.check(e, split_words(v)) {
                    for w in words {
                        if let Some(()) = self.check(e, check_nspawn_arg(&w)) {
                            self.nspawn_args.push(w);
                        }
                    }
                }
            }
            "Capability" | "DropCapability" => {
                let add = e.key == "Capability";
                if v.is_empty() {
                    if add {
                        self.cap_add.clear();
                    } else {
                        self.cap_drop.clear();
                        self.drop_reset = true;
                    }
                    return;
                }
                for w in v.split_whitespace() {
                    let n = if w.eq_ignore_ascii_case("all") {
                        if add {
                            Some(CAP_ALL)
                        } else {
                            self.check::<()>(e, Err("'all' can only be added (Capability=all); without any capability the container's systemd cannot boot".into()));
                            None
                        }
                    } else {
                        self.check(e, parse_capability(w))
                    };
                    if let Some(n) = n {
                        let map = if add {
                            &mut self.cap_add
                        } else {
                            &mut self.cap_drop
                        };
                        map.insert(n, e.at.clone());
                    }
                }
            }
            "NoNewPrivileges" => self.no_new_privileges = self.bool(e),
            "ReadOnly" => self.read_only = self.bool(e),
            "LogConsole" => self.log_console = self.bool(e),
            "SystemCallFilter" => {
                if v.is_empty() {
                    self.syscall_filter.clear();
                    self.syscall_reset = true;
                } else if let Some(f) = self.check(e, parse_syscall_filter(v)) {
                    self.syscall_filter.push(f);
                }
            }
            "AppArmorProfile" => {
                if v.is_empty() {
                    self.apparmor_profile = None;
                } else if self.check(e, check_apparmor_profile(v)).is_some() {
                    self.apparmor_profile = Some(v.to_string());
                }
            }
            "Pod" => {
                if v.is_empty() {
                    self.pod = None;
                    return;
                }
                let r = match v.strip_suffix(".pod") {
                    Some(n) => check_pod_ref(n, &self.name),
                    None => Err("expected the name of a pod file, NAME.pod".into()),
                };
                if let Some(n) = self.check(e, r) {
                    self.pod = Some((n, e.at.clone()));
                }
            }
            "PrivateUsers" => {
                if v.is_empty() {
                    self.private_users = None;
                } else if let Some(p) = self.check(e, PrivateUsers::parse(v)) {
                    self.private_users = Some((p, e.at.clone()));
                }
            }
            k => self.err(e, format!("unknown key '{k}' in section [Container]")),
        }
        let net_key = match e.key.as_str() {
            "PrivateNetwork" => Some("PrivateNetwork"),
            "VirtualEthernet" => Some("VirtualEthernet"),
            "Bridge" => Some("Bridge"),
            "Zone" => Some("Zone"),
            "Port" => Some("Port"),
            _ => None,
        };
        if let Some(k) = net_key {
            if v.is_empty() {
                self.net_at.remove(k);
            } else {
                self.net_at.insert(k, e.at.clone());
            }
        }
    }

    fn finish(mut self) -> Result<Container, Vec<Diag>> {
        let source = self.source.clone();
        // Machine name: MachineName=, else from the file name.
        let machine = match (&self.name, self.machine.take()) {
            (UnitName::Template(t), Some((_, at))) => {
                self.diags.push(Diag::at(
                    &at,
                    format!(
                    "MachineName= cannot be set in a template; instances are named '{t}-INSTANCE'"
                ),
                ));
                t.clone()
            }
            (_, Some((m, _))) => m,
            (UnitName::Plain(s), None) => s.clone(),
            (UnitName::Template(t), None) => t.clone(),
            (UnitName::Instance { template, instance }, None) => {
                instance_machine(template, instance)
            }
        };
        let stem = self.name.stem();
        let stem_ok = match &self.name {
            UnitName::Plain(s) => check_machine_name(s),
            UnitName::Template(t) => check_machine_name(t),
            UnitName::Instance { template, instance } => {
                check_machine_name(template).and_then(|_| check_machine_name(instance))
            }
        };
        let names_ok = stem_ok.is_ok();
        if let Err(m) = stem_ok {
            self.diags.push(Diag::file(
                &source,
                format!(
                    "file name '{stem}' cannot name a container: {}",
                    m.replace("machine name", "name")
                ),
            ));
        } else if !self.name_is_template() {
            if let Err(m) = check_machine_name(&machine) {
                self.diags.push(Diag::file(&source, m));
            }
        }
        // The state directory must fit overlayfs options and a mount unit
        // name. A template's instance name is only known at run time; the
        // prepare helper checks it then.
        if names_ok && !self.name_is_template() {
            // A checked name: no `/`, so this is `container_dir(machine)`.
            let dir = [paths::CONTAINERS_DIR, "/", &machine].concat();
            let checks = check_overlay_path(&[&dir, "/upper"].concat(), "upper directory")
                .and_then(|_| check_mount_unit_name(&[&dir, "/merged"].concat()));
            if let Err(m) = checks {
                self.diags.push(Diag::file(
                    &source,
                    format!("machine name '{machine}': {m}"),
                ));
            }
        }
        let image = match (self.image.take(), &self.rootfs_set) {
            (Some((r, at)), Some(r_at)) => {
                self.diags.push(Diag::at(
                    &at,
                    format!(
                        "Image={r} cannot be combined with Rootfs= (at {r_at}): Image= names the rootfs to import; use one of them"
                    ),
                ));
                None
            }
            (Some((r, at)), None) => {
                let name = inline_rootfs_name(&r);
                self.rootfs = Rootfs::Named(name.clone());
                Some(ImageUse {
                    name,
                    inline: Some(r),
                    at,
                })
            }
            (None, Some(at)) => self.rootfs_image.take().map(|name| ImageUse {
                name,
                inline: None,
                at: at.clone(),
            }),
            (None, None) => None,
        };
        if let Rootfs::Named(_) = &self.rootfs {
            let lower = self.rootfs.lower_dir();
            if let Err(m) = check_overlay_path(&lower, "rootfs directory") {
                let at = self.rootfs_at.clone();
                self.diags.push(match at {
                    Some(at) => Diag::at(&at, m),
                    None => Diag::file(&source, m),
                });
            }
        }
        if let Some((pod, pod_at)) = &self.pod {
            let set = [
                ("PrivateNetwork", self.private_network),
                ("VirtualEthernet", self.virtual_ethernet),
                ("Bridge", self.bridge.is_some()),
                ("Zone", self.zone.is_some()),
                ("Port", !self.ports.is_empty()),
            ];
            for (k, on) in set {
                if let (true, Some(at)) = (on, self.net_at.get(k)) {
                    self.diags.push(Diag::at(
                        pod_at,
                        format!(
                            "Pod={pod}.pod cannot be combined with {k}= (at {at}): a pod member uses the pod's network namespace"
                        ),
                    ));
                }
            }
        }
        if let (Some(_), Some((_, at))) = (&self.bridge, &self.zone) {
            let at = at.clone();
            self.diags.push(Diag::at(
                &at,
                "Bridge= and Zone= cannot both be set (nspawn attaches the veth to one bridge)",
            ));
        }
        if let Some((inst, at)) = self.default_instance("container") {
            if let UnitName::Template(t) = &self.name {
                if let Err(m) = check_machine_name(&instance_machine(t, &inst)) {
                    self.diags
                        .push(Diag::at(&at, format!("DefaultInstance={inst}: {m}")));
                }
            }
        }
        self.check_aliases(!matches!(self.name, UnitName::Plain(_)));
        for (n, drop_at) in &self.cap_drop {
            if let Some(add_at) = self.cap_add.get(n) {
                self.diags.push(Diag::at(
                    drop_at,
                    format!(
                        "{} is both added (Capability= at {add_at}) and dropped (DropCapability= at {drop_at}); remove it from one of them",
                        capability_name(*n),
                    ),
                ));
            }
        }
        if let (UnitName::Template(_), Some((PrivateUsers::Base(n), at))) =
            (&self.name, &self.private_users)
        {
            let at = at.clone();
            self.diags.push(Diag::at(
                &at,
                format!(
                    "PrivateUsers={n}: a fixed UID base in a template would give every instance the same range; use PrivateUsers=yes (each instance's base then comes from its machine name)"
                ),
            ));
        }
        if let Some(diags) = self.failed() {
            return Err(diags);
        }
        let host = self.rootfs == Rootfs::Host;
        let mut opaque: Vec<String> = Vec::new();
        let defaults = || HOST_CLONE_OPAQUE.iter().map(|s| s.to_string());
        let listed: Vec<String> = match self.opaque {
            None if host => defaults().collect(),
            None => Vec::new(),
            Some(list) => list
                .into_iter()
                .flat_map(|d| {
                    if d != DEFAULTS_MARKER {
                        vec![d]
                    } else if host {
                        defaults().collect()
                    } else {
                        Vec::new()
                    }
                })
                .collect(),
        };
        for d in listed {
            if !opaque.contains(&d) {
                opaque.push(d);
            }
        }
        let preset = if self.strict {
            Some(Preset::Strict)
        } else if self.hardened {
            Some(Preset::Hardened)
        } else {
            None
        };
        let (hardened_drop, seen, drop_reset, syscall_reset) = (
            std::mem::take(&mut self.hardened_drop),
            std::mem::take(&mut self.seen),
            self.drop_reset,
            self.syscall_reset,
        );
        // An instance joins the pod instance named like itself.
        let pod = self.pod.map(|(p, at)| match &self.name {
            UnitName::Instance { instance, .. } => (p.replace("@%i", &format!("@{instance}")), at),
            _ => (p, at),
        });
        let mut c = Container {
            name: self.name,
            source,
            machine,
            rootfs: self.rootfs,
            hostname: self.hostname,
            binds: self.binds,
            environment: self.environment,
            service_environment: self.service_environment,
            running_as: None,
            opaque_dirs: opaque,
            nested_sdme: self.nested_sdme,
            private_network: self.private_network,
            virtual_ethernet: self.virtual_ethernet,
            bridge: self.bridge,
            zone: self.zone.map(|(z, _)| z),
            ports: self.ports,
            boot_timeout: self.boot_timeout,
            wait_for: self.wait_for,
            nspawn_args: self.nspawn_args,
            capability_all: self.cap_add.contains_key(&CAP_ALL),
            capabilities: self
                .cap_add
                .keys()
                .copied()
                .filter(|n| *n != CAP_ALL)
                .collect(),
            drop_capabilities: self.cap_drop.keys().copied().collect(),
            no_new_privileges: self.no_new_privileges,
            read_only: self.read_only,
            system_call_filter: self.syscall_filter,
            apparmor_profile: self.apparmor_profile,
            log_console: self.log_console,
            pod,
            image,
            preset,
            private_users: self.private_users.map(|(p, _)| p),
            passthrough: self.passthrough,
            install: self.install,
        };
        if let Some(p) = preset {
            let explicit = PresetOverrides {
                seen: &seen,
                drop_reset,
                syscall_reset,
            };
            apply_preset(&mut c, p, &hardened_drop, &explicit);
        }
        Ok(c)
    }

    fn name_is_template(&self) -> bool {
        matches!(self.name, UnitName::Template(_))
    }
}

/// What the file set itself, which a preset leaves alone.
struct PresetOverrides<'a> {
    seen: &'a BTreeSet<String>,
    drop_reset: bool,
    syscall_reset: bool,
}

/// Apply a preset as if its settings were written before the file's own
/// lines: a key the file assigns (even to empty) wins over the preset's
/// value for it; for the lists, the file's lines add to the preset's and
/// an empty assignment removes the preset's part too; a capability the
/// file adds with `Capability=` is not dropped.
///
/// - Hardened: `PrivateUsers=yes`; `NoNewPrivileges=yes`; `PrivateNetwork=yes` unless the
///   container already has a network of its own (`Pod=`, veth, bridge,
///   zone, ports, nspawn network options); `DropCapability=` sdme.conf's
///   `[Hardened]` list (default CAP_SYS_PTRACE CAP_NET_RAW CAP_SYS_RAWIO).
/// - Strict: Hardened, plus every capability dropped that is neither in
///   [`STRICT_KEEP`] nor re-added, `SystemCallFilter=~` [`STRICT_SYSCALL_DENY`],
///   `AppArmorProfile=sdme-default`.
fn apply_preset(c: &mut Container, p: Preset, hardened_drop: &[u8], o: &PresetOverrides) {
    let seen = |k: &str| o.seen.contains(k);
    if !seen("PrivateUsers") {
        c.private_users = Some(PrivateUsers::Yes);
    }
    if !seen("NoNewPrivileges") {
        c.no_new_privileges = true;
    }
    if !seen("PrivateNetwork") && c.host_network() {
        c.private_network = true;
    }
    let mut drop: BTreeSet<u8> = hardened_drop.iter().copied().collect();
    if p == Preset::Strict {
        for (n, name) in CAPABILITIES.iter().enumerate() {
            if !STRICT_KEEP.contains(name) {
                drop.insert(n as u8);
            }
        }
    }
    if !o.drop_reset && !c.capability_all {
        let mut all: BTreeSet<u8> = c.drop_capabilities.iter().copied().collect();
        all.extend(drop.into_iter().filter(|n| !c.capabilities.contains(n)));
        c.drop_capabilities = all.into_iter().collect();
    }
    if p == Preset::Strict {
        if !o.syscall_reset {
            c.system_call_filter.insert(
                0,
                SyscallFilter {
                    deny: true,
                    items: STRICT_SYSCALL_DENY.iter().map(|s| s.to_string()).collect(),
                },
            );
        }
        if !seen("AppArmorProfile") {
            c.apparmor_profile = Some(STRICT_APPARMOR_PROFILE.to_string());
        }
    }
}

/// Stands for "the defaults" at the head of the `OpaqueDir=` list until we
/// know whether the container is a host clone (`Rootfs=` may come later).
const DEFAULTS_MARKER: &str = "\0defaults";

fn default_opaque_marker() -> Vec<String> {
    vec![DEFAULTS_MARKER.to_string()]
}

/// nspawn's `--bind=SRC[:DST[:OPTIONS]]`, checked so that nspawn will not
/// refuse it at boot.
fn check_bind(v: &str) -> Result<(), String> {
    let mut parts = v.splitn(3, ':');
    let src = parts.next().unwrap_or_default();
    let dst = parts.next();
    let opts = parts.next();
    let src_path = src.strip_prefix('+').unwrap_or(src);
    if src.starts_with('+') && !src_path.starts_with('/') {
        check_abs_path(&format!("/{src_path}"), "source")?;
    } else {
        check_abs_path(src_path, "source")?;
    }
    if let Some(dst) = dst {
        check_abs_path(dst, "destination")?;
    }
    if let Some(opts) = opts {
        for o in opts.split(',') {
            if !matches!(
                o,
                "rbind" | "norbind" | "idmap" | "noidmap" | "rootidmap" | "owneridmap"
            ) {
                return Err(format!(
                    "unknown bind option '{o}' (rbind, norbind, idmap, noidmap, rootidmap, owneridmap)"
                ));
            }
        }
    }
    Ok(())
}

/// nspawn's `--port=[PROTOCOL:]HOSTPORT[:CONTAINERPORT]`.
fn check_port(v: &str) -> Result<(), String> {
    let (proto, rest) = match v.split_once(':') {
        Some((p @ ("tcp" | "udp"), r)) => (p, r),
        _ => ("tcp", v),
    };
    let _ = proto;
    let mut ports = rest.split(':');
    let mut n = 0;
    for p in ports.by_ref() {
        n += 1;
        if n > 2 || p.parse::<u16>().map_or(true, |x| x == 0) {
            return Err("expected [tcp:|udp:]HOSTPORT[:CONTAINERPORT] with ports 1-65535".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str, text: &str) -> Result<Container, Vec<String>> {
        let f = UnitFile::parse(Path::new("/etc/sdme/x.container"), text.as_bytes()).unwrap();
        Container::from_unit(
            UnitName::from_stem(name),
            Path::new("/etc/sdme/x.container"),
            f,
        )
        .map_err(|v| v.into_iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn host_clone_defaults() {
        let c = load("web", "[Container]\n").unwrap();
        assert_eq!(c.machine, "web");
        assert_eq!(c.rootfs, Rootfs::Host);
        assert_eq!(c.opaque_dirs, HOST_CLONE_OPAQUE);
        assert!(c.host_network());
        assert_eq!(c.boot_timeout, Some(DEFAULT_BOOT_TIMEOUT));
    }

    #[test]
    fn opaque_dirs_append_and_reset() {
        let c = load("w", "[Container]\nOpaqueDir=/srv\n").unwrap();
        let mut want: Vec<&str> = HOST_CLONE_OPAQUE.to_vec();
        want.push("/srv");
        assert_eq!(c.opaque_dirs, want);
        let c = load("w", "[Container]\nOpaqueDir=\nOpaqueDir=/srv\n").unwrap();
        assert_eq!(c.opaque_dirs, ["/srv"]);
        let c = load("w", "[Container]\nRootfs=deb\nOpaqueDir=/srv\n").unwrap();
        assert_eq!(c.opaque_dirs, ["/srv"]);
    }

    #[test]
    fn lists_reset_on_empty() {
        let c = load(
            "w",
            "[Container]\nBind=/a\nBindReadOnly=/b\nBind=\nBind=/c:/d:norbind\n",
        )
        .unwrap();
        assert_eq!(
            c.binds.iter().map(|b| b.spec.as_str()).collect::<Vec<_>>(),
            ["/b", "/c:/d:norbind"]
        );
        let c = load(
            "w",
            "[Container]\nEnvironment=A=1 \"B=x y\"\nEnvironment=\nEnvironment=C=${X}\n",
        )
        .unwrap();
        assert_eq!(c.environment, ["C=${X}"]);
    }

    #[test]
    fn service_environment_and_nested_sdme() {
        let c = load("w", "[Container]\n").unwrap();
        assert!(!c.nested_sdme);
        assert!(c.service_environment.is_empty());
        let c = load(
            "w",
            "[Container]\nNestedSdme=yes\nServiceEnvironment=A=1 \"B=x y\"\nServiceEnvironment=\nServiceEnvironment=C=$X%i 'D=a\\nb'\n",
        )
        .unwrap();
        assert!(c.nested_sdme);
        assert_eq!(c.service_environment, ["C=$X%i", "D=a\nb"]);
        let e = load(
            "w",
            "[Container]\nNestedSdme=maybe\nServiceEnvironment=A=1 1B=2\nServiceEnvironment=\"open\n",
        )
        .unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(
            e[0].starts_with("/etc/sdme/x.container:2: NestedSdme=maybe: "),
            "{e:?}"
        );
        assert_eq!(
            e[1],
            "/etc/sdme/x.container:3: ServiceEnvironment=: '1B=2' is not a NAME=VALUE assignment with a valid variable name"
        );
        assert!(
            e[2].starts_with("/etc/sdme/x.container:4: ServiceEnvironment="),
            "{e:?}"
        );
    }

    #[test]
    fn errors_carry_file_and_line() {
        let e = load("w", "[Container]\nBind=srv\nFoo=1\n[Bogus]\n").unwrap_err();
        assert_eq!(
            e,
            [
                "/etc/sdme/x.container:2: Bind=srv: source 'srv' is not an absolute path",
                "/etc/sdme/x.container:3: unknown key 'Foo' in section [Container]",
                "/etc/sdme/x.container:4: unknown section [Bogus]; a .container file has [Unit], [Container], [Service], [Install] and X- sections",
            ]
        );
        let e = load("w", "[Unit]\nDescription=x\n").unwrap_err();
        assert_eq!(e, ["/etc/sdme/x.container: no [Container] section"]);
        let e = load("w", "[Container]\n[Service]\nExecStart=/bin/true\n").unwrap_err();
        assert!(e[0].starts_with("/etc/sdme/x.container:3: ExecStart= cannot be set in [Service]"));
    }

    #[test]
    fn template_names() {
        let c = load(
            "web@",
            "[Container]\n[Install]\nDefaultInstance=a\nWantedBy=machines.target\n",
        )
        .unwrap();
        assert!(c.is_template());
        assert_eq!(c.machine, "web");
        let c = load("web@b", "[Container]\n").unwrap();
        assert_eq!(c.machine, "web-b");
        let e = load("web@", "[Container]\nMachineName=x\n").unwrap_err();
        assert!(
            e[0].contains("MachineName= cannot be set in a template"),
            "{e:?}"
        );
        let e = load("web", "[Container]\n[Install]\nDefaultInstance=a\n").unwrap_err();
        assert!(
            e[0].contains("DefaultInstance= only applies to templates"),
            "{e:?}"
        );
    }

    #[test]
    fn ports_and_networks() {
        let c = load("w", "[Container]\nPort=tcp:8080:80\nPort=443\n").unwrap();
        assert!(!c.host_network());
        for bad in ["Port=0", "Port=sctp:1", "Port=1:2:3", "Port=x"] {
            assert!(
                load("w", &format!("[Container]\n{bad}\n")).is_err(),
                "{bad}"
            );
        }
        let e = load("w", "[Container]\nBridge=br0\nZone=z\n").unwrap_err();
        assert!(e[0].contains("Bridge= and Zone= cannot both be set"));
    }

    #[test]
    fn pods() {
        let c = load("w", "[Container]\nPod=web.pod\n").unwrap();
        assert_eq!(c.pod.as_ref().map(|(n, _)| n.as_str()), Some("web"));
        assert!(
            !c.host_network(),
            "a pod member does not share the host's network"
        );
        let c = load("w", "[Container]\nPod=web.pod\nPod=\nPrivateNetwork=yes\n").unwrap();
        assert!(c.pod.is_none());
        let e = load("w", "[Container]\nPort=80\nPod=web.pod\n").unwrap_err();
        assert_eq!(
            e,
            ["/etc/sdme/x.container:3: Pod=web.pod cannot be combined with Port= (at /etc/sdme/x.container:2): a pod member uses the pod's network namespace"]
        );
        let e = load("w", "[Container]\nPod=web\n").unwrap_err();
        assert!(
            e[0].contains(":2: Pod=web: expected the name of a pod file"),
            "{e:?}"
        );
    }

    #[test]
    fn capabilities() {
        let c = load(
            "w",
            "[Container]\nCapability=net_admin CAP_SYS_TIME\nCapability=Cap_Net_Admin mknod\nDropCapability=sys_boot\nDropCapability=\nDropCapability=sys_ptrace\n",
        )
        .unwrap();
        assert_eq!(c.capabilities, [12, 25, 27]);
        assert!(!c.capability_all);
        assert_eq!(c.drop_capabilities, [19]);
        assert_eq!(capability_name(40), "CAP_CHECKPOINT_RESTORE");
        let c = load(
            "w",
            "[Container]\nCapability=all\nDropCapability=sys_ptrace\n",
        )
        .unwrap();
        assert!(c.capability_all);
        let e = load("w", "[Container]\nCapability=cap_foo\nDropCapability=all\n").unwrap_err();
        assert!(
            e[0].contains("2: Capability=cap_foo: unknown capability 'cap_foo'"),
            "{e:?}"
        );
        assert!(
            e[1].contains("3: DropCapability=all: 'all' can only be added"),
            "{e:?}"
        );
        let e = load(
            "w",
            "[Container]\nCapability=net_admin\nDropCapability=CAP_NET_ADMIN\n",
        )
        .unwrap_err();
        assert_eq!(
            e,
            ["/etc/sdme/x.container:3: CAP_NET_ADMIN is both added (Capability= at /etc/sdme/x.container:2) and dropped (DropCapability= at /etc/sdme/x.container:3); remove it from one of them"]
        );
    }

    #[test]
    fn booleans_and_syscall_filter() {
        let c = load(
            "w",
            "[Container]\nNoNewPrivileges=yes\nReadOnly=1\nSystemCallFilter=@clock\nSystemCallFilter=\nSystemCallFilter=~@swap  reboot\nSystemCallFilter=@known\n",
        )
        .unwrap();
        assert!(c.no_new_privileges && c.read_only);
        let v: Vec<String> = c.system_call_filter.iter().map(|f| f.value()).collect();
        assert_eq!(v, ["~@swap reboot", "@known"]);
        // Deny lists spell out the members nspawn allows by name.
        let f = parse_syscall_filter("~@debug ptrace @swap").unwrap();
        assert_eq!(
            f.nspawn_value(),
            "~@debug lookup_dcookie perf_event_open pidfd_getfd ptrace rtas s390_runtime_instr sys_debug_setcontext @swap"
        );
        let f = parse_syscall_filter("@debug").unwrap();
        assert_eq!(f.nspawn_value(), "@debug");
        for bad in ["@clocks", "Chroot", "a-b", "@clock ~@swap", "~"] {
            let e = load("w", &format!("[Container]\nSystemCallFilter={bad}\n")).unwrap_err();
            assert!(
                e[0].starts_with("/etc/sdme/x.container:2: SystemCallFilter="),
                "{e:?}"
            );
        }
        assert!(load("w", "[Container]\nReadOnly=maybe\n").is_err());
    }

    #[test]
    fn private_users() {
        let c = load("web", "[Container]\n").unwrap();
        assert_eq!(c.private_users, None);
        assert!(!c.private_users_enabled() && !c.helper_mounts());
        let c = load("web", "[Container]\nPrivateUsers=yes\n").unwrap();
        assert_eq!(c.private_users, Some(PrivateUsers::Yes));
        assert_eq!(c.userns_base(), Some(userns::base_for("web")));
        assert!(c.helper_mounts());
        let c = load(
            "web",
            "[Container]\nPrivateUsers=yes\nPrivateUsers=1048576\n",
        )
        .unwrap();
        assert_eq!(c.userns_base(), Some(1048576));
        let c = load("web", "[Container]\nPrivateUsers=yes\nPrivateUsers=\n").unwrap();
        assert_eq!(c.private_users, None);
        let c = load("web", "[Container]\nPrivateUsers=no\n").unwrap();
        assert_eq!(c.private_users, Some(PrivateUsers::No));
        assert_eq!(c.userns_base(), None);
        let c = load("web@", "[Container]\nPrivateUsers=yes\n").unwrap();
        assert_eq!(c.userns_base(), None);
        assert!(c.private_users_enabled());
        let c = load("web@a", "[Container]\nPrivateUsers=yes\n").unwrap();
        assert_eq!(c.userns_base(), Some(userns::base_for("web-a")));
        let e = load("web@", "[Container]\nPrivateUsers=1048576\n").unwrap_err();
        assert!(
            e[0].contains(":2: PrivateUsers=1048576: a fixed UID base in a template"),
            "{e:?}"
        );
        let e = load("w", "[Container]\nPrivateUsers=1048577\n").unwrap_err();
        assert!(e[0].starts_with("/etc/sdme/x.container:2: PrivateUsers=1048577: UID base 1048577 is not a multiple of 65536"), "{e:?}");
        let e = load("w", "[Container]\nNspawnArgs=--private-users=pick\n").unwrap_err();
        assert!(e[0].contains("use PrivateUsers="), "{e:?}");
    }

    #[test]
    fn presets() {
        let c = load("w", "[Container]\nHardened=yes\n").unwrap();
        assert_eq!(c.preset, Some(Preset::Hardened));
        assert_eq!(c.private_users, Some(PrivateUsers::Yes));
        assert!(c.no_new_privileges && c.private_network);
        assert_eq!(c.drop_capabilities, [13, 17, 19]);
        assert!(c.system_call_filter.is_empty() && c.apparmor_profile.is_none());
        // Explicit keys win, wherever they are.
        let c = load(
            "w",
            "[Container]\nPrivateNetwork=no\nHardened=yes\nPrivateUsers=no\nCapability=sys_ptrace\n",
        )
        .unwrap();
        assert_eq!(c.private_users, Some(PrivateUsers::No));
        assert!(!c.private_network && c.host_network());
        assert_eq!(c.drop_capabilities, [13, 17]);
        let c = load(
            "w",
            "[Container]\nStrict=yes\nDropCapability=\nSystemCallFilter=\nAppArmorProfile=\n",
        )
        .unwrap();
        assert_eq!(c.preset, Some(Preset::Strict));
        assert!(c.drop_capabilities.is_empty() && c.system_call_filter.is_empty());
        assert_eq!(c.apparmor_profile, None);
        let c = load("w", "[Container]\nStrict=yes\n").unwrap();
        let kept: Vec<&str> = (0..CAPABILITIES.len() as u8)
            .filter(|n| !c.drop_capabilities.contains(n))
            .map(|n| CAPABILITIES[usize::from(n)])
            .collect();
        let mut want: Vec<&str> = STRICT_KEEP
            .iter()
            .copied()
            .filter(|k| *k != "NET_RAW")
            .collect();
        want.sort_by_key(|k| CAPABILITIES.iter().position(|c| c == k));
        assert_eq!(kept, want);
        assert_eq!(c.apparmor_profile.as_deref(), Some("sdme-default"));
        assert_eq!(
            c.system_call_filter[0].value(),
            "~@cpu-emulation @debug @obsolete @raw-io"
        );
        // A config's list replaces the built-in one.
        let f = UnitFile::parse(Path::new("/x.container"), b"[Container]\nHardened=yes\n").unwrap();
        let cfg = Config {
            hardened_drop: vec![5],
            ..Config::default()
        };
        let c =
            Container::from_unit_with(UnitName::from_stem("w"), Path::new("/x.container"), f, &cfg)
                .unwrap();
        assert_eq!(c.drop_capabilities, [5]);
        let c = load("w", "[Container]\nHardened=yes\nHardened=\n").unwrap();
        assert_eq!(c.preset, None);
        assert!(!c.no_new_privileges);
    }

    #[test]
    fn apparmor_profile() {
        let c = load(
            "w",
            "[Container]\nAppArmorProfile=other\nAppArmorProfile=sdme-default\n",
        )
        .unwrap();
        assert_eq!(c.apparmor_profile.as_deref(), Some("sdme-default"));
        let c = load("w", "[Container]\nAppArmorProfile=x\nAppArmorProfile=\n").unwrap();
        assert_eq!(c.apparmor_profile, None);
        for good in ["/usr/bin/foo", "unconfined", "a.b+c:d@e_f-g", "_x"] {
            assert_eq!(check_apparmor_profile(good), Ok(()), "{good}");
        }
        for bad in ["/", "//", "-x", ".x", "a b", "a%i", "a\tb", "x$y", "\"q\""] {
            let e = load("w", &format!("[Container]\nAppArmorProfile={bad}\n")).unwrap_err();
            assert!(
                e[0].starts_with("/etc/sdme/x.container:2: AppArmorProfile="),
                "{bad}: {e:?}"
            );
        }
        assert!(check_apparmor_profile(&"a".repeat(256)).is_err());
    }
}
