//! From a validated [`Container`] to unit files and `[Install]` symlinks.
//!
//! Output is a pure function of the model: the same input gives the same
//! bytes, so golden tests compare whole files.
//!
//! A daemon-reload must never stop a running container, whatever the edit
//! (sdme.container(5), "CHANGING A RUNNING CONTAINER"): so no `BindsTo=`,
//! which makes systemd stop an active unit at once when the reload binds
//! it to an inactive one (a pod not running, a renamed overlay mount);
//! `Requires=` propagates explicit stops and restarts alike and does
//! nothing at a reload.
//!
//! What a container becomes:
//! - declared (`web.container`, `web@a.container`): `sdme-web.service` and
//!   the overlay `.mount` unit, which requires `sdme-prepare@MACHINE.service`,
//!   an instance of the static template `units/sdme-prepare@.service`; the
//!   prepare helper's arguments travel in the mount unit's `X-SdmePrepare=`
//!   (which systemd ignores), so the generator writes two files per
//!   container, not three, and the arguments always match the mount unit
//!   systemd has loaded;
//! - a bare template (`web@.container`): `sdme-web@.service` alone, because
//!   mount units cannot be templates: the prepare helper also mounts the
//!   overlay (`--mount`, from `ExecStartPre=`) and unmounts it after stop
//!   (`--unmount`, from `ExecStopPost=`), so `systemctl start sdme-web@ANY`
//!   works for any instance.

use std::borrow::Cow;

use crate::app_ports;
use crate::build::{build_service_name, Base, Build};
use crate::capability::capability_name;
use crate::container::{App, Container, Rootfs};
use crate::escape::{exec_word, exec_word_expanding, mount_unit_name, unit_value};
use crate::image::{image_service_name, Image};
use crate::paths;
use crate::pod::Pod;
use crate::search::UnitName;
use crate::sections::Install;
use crate::timespan::format_timespan;

/// One thing to put in the output directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// A unit file: relative path and content.
    File { path: String, content: String },
    /// A symlink: relative path and target.
    Symlink { path: String, target: String },
}

impl Output {
    pub fn path(&self) -> &str {
        match self {
            Output::File { path, .. } | Output::Symlink { path, .. } => path,
        }
    }

    pub fn into_path(self) -> String {
        match self {
            Output::File { path, .. } | Output::Symlink { path, .. } => path,
        }
    }
}

/// What every unit of one container shares, escaped once.
struct Ctx<'a> {
    c: &'a Container,
    /// The machine name as written into units: `web`, or `web-%i`.
    m: String,
    /// `/var/lib/sdme/containers/MACHINE`, as written into units.
    dir: String,
    /// The lower layer, as written into units.
    lower: String,
    /// `SourcePath=`'s value.
    source: String,
    /// The source path as text, for the header comment.
    source_raw: String,
    /// The mount unit's name (declared containers only).
    mount: Option<String>,
    /// `sdme-NAME.service`.
    service: String,
    /// The lower layer as given to the prepare helper (unescaped).
    lower_raw: String,
}

impl<'a> Ctx<'a> {
    fn new(c: &'a Container) -> Ctx<'a> {
        let m = if c.is_template() {
            format!("{}-%i", unit_value(&c.machine))
        } else {
            unit_value(&c.machine).into_owned()
        };
        let dir = [paths::CONTAINERS_DIR, "/", &m].concat();
        let mount = if c.helper_mounts() {
            None
        } else {
            // The model checked that the name fits.
            mount_unit_name(&[paths::CONTAINERS_DIR, "/", &c.machine, "/merged"].concat()).ok()
        };
        let source_raw = c.source.to_string_lossy().into_owned();
        let mut x = Ctx {
            c,
            lower: String::new(),
            source: unit_value(&source_raw).into_owned(),
            source_raw,
            m,
            dir,
            mount,
            service: service_name(c),
            lower_raw: c.rootfs.lower_dir(),
        };
        x.lower = x.specifiers(unit_value(&x.lower_raw)).into_owned();
        x
    }

    /// Append a command-line word; in a template `%i` keeps its meaning.
    fn word(&self, s: &mut String, prefix: &str, value: &str) {
        s.push(' ');
        // Most words need no quoting or escaping: no copy then (`%` is
        // escaped, so no specifier can appear either).
        if !prefix.is_empty() && value.bytes().all(plain_byte) {
            s.push_str(prefix);
            s.push_str(value);
            return;
        }
        let raw = format!("{prefix}{value}");
        s.push_str(&self.specifiers(exec_word(&raw)));
    }

    /// `%i` in a template's values is the instance name: kept for systemd
    /// to expand in a bare template, written out for a declared instance
    /// (whose prepare and mount units are not instances of anything).
    fn specifiers<'s>(&self, escaped: Cow<'s, str>) -> Cow<'s, str> {
        if !escaped.contains("%%i") {
            return escaped;
        }
        match &self.c.name {
            UnitName::Template(_) => escaped.replace("%%i", "%i").into(),
            UnitName::Instance { instance, .. } => escaped.replace("%%i", instance).into(),
            UnitName::Plain(_) => escaped,
        }
    }

    fn header(&self, s: &mut String) {
        s.push_str("# Automatically generated by sdme-generator from ");
        s.push_str(&self.source_raw);
        s.push_str("\n# Edit that file (or add a drop-in) and run \"systemctl daemon-reload\".\n");
    }

    /// `Requires=`/`After=` (or only `After=`) on the image unit that
    /// imports the lower layer, which must exist before the layers are
    /// prepared and mounted.
    fn image_deps(&self, s: &mut String, require: bool) {
        let mut units: Vec<String> = self.c.image_uses().map(|(u, _)| u.unit()).collect();
        units.dedup();
        let deps: &[&str] = if require {
            &["Requires=", "After="]
        } else {
            &["After="]
        };
        for unit in &units {
            for dep in deps {
                s.push_str(dep);
                s.push_str(unit);
                s.push('\n');
            }
        }
    }

    /// The application's rootfs directory, unless it is the lower layer
    /// too (a checked name: no escaping).
    fn app_lower(&self) -> Option<String> {
        let a = self.c.app.as_ref()?;
        let dir = [paths::ROOTFS_DIR, "/", a.rootfs()].concat();
        (dir != self.lower_raw).then_some(dir)
    }

    /// `RequiresMountsFor=`: the state directory and, for an imported or
    /// given rootfs, the lower layer.
    fn requires_mounts(&self, s: &mut String) {
        s.push_str("RequiresMountsFor=");
        s.push_str(&self.dir);
        if self.c.rootfs != Rootfs::Host {
            s.push(' ');
            s.push_str(&self.lower);
        }
        if let Some(a) = self.app_lower() {
            s.push(' ');
            s.push_str(&a);
        }
        s.push('\n');
    }
}

/// A byte that [`exec_word`] passes through unchanged (given a prefix that
/// keeps the word from being empty or `;`).
fn plain_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b'%' | b'$' | b'"' | b'\'' | b'\\')
}

/// `LIBEXEC_DIR/NAME`.
fn push_helper(s: &mut String, name: &str) {
    s.push_str(paths::LIBEXEC_DIR);
    s.push('/');
    s.push_str(name);
}

pub fn service_name(c: &Container) -> String {
    unit_service_name(&c.name)
}

/// The service of the container file named `name`.
pub fn unit_service_name(name: &UnitName) -> String {
    match name {
        UnitName::Plain(s) => ["sdme-", s, ".service"].concat(),
        UnitName::Template(t) => ["sdme-", t, "@.service"].concat(),
        UnitName::Instance { template, instance } => {
            ["sdme-", template, "@", instance, ".service"].concat()
        }
    }
}

pub fn prepare_unit_name(machine: &str) -> String {
    ["sdme-prepare@", machine, ".service"].concat()
}

/// The relative paths of everything [`render`] writes for `c`, without
/// making the units (to find clashes between files before writing).
pub fn output_paths(c: &Container) -> Vec<String> {
    let mut v = Vec::with_capacity(4);
    v.push(service_name(c));
    if !c.helper_mounts() {
        let merged = [paths::CONTAINERS_DIR, "/", &c.machine, "/merged"].concat();
        if let Ok(mount) = mount_unit_name(&merged) {
            v.push(mount);
        }
    }
    v.extend(install_links(c).into_iter().map(Output::into_path));
    v
}

/// Everything the generator writes for `c`.
pub fn render(c: &Container) -> Vec<Output> {
    let x = Ctx::new(c);
    let mut out = Vec::with_capacity(4);
    out.push(Output::File {
        path: x.service.clone(),
        content: service(&x),
    });
    if let Some(mount) = &x.mount {
        out.push(Output::File {
            path: mount.clone(),
            content: mount_unit(&x),
        });
    }
    out.extend(links(&c.name, &c.install, &x.service));
    out
}

/// The prepare helper's command line; `--mount` for a bare template.
fn prepare_cmd(x: &Ctx, s: &mut String, mount: bool) {
    push_helper(s, "sdme-prepare");
    prepare_args(x, s, mount);
}

/// The prepare helper's arguments, each after a space, then a newline.
fn prepare_args(x: &Ctx, s: &mut String, mount: bool) {
    let c = x.c;
    if mount {
        s.push_str(" --mount");
    }
    x.word(s, "--lower=", &x.lower_raw);
    s.push_str(" --state=");
    s.push_str(&x.dir);
    match &c.hostname {
        Some(h) => x.word(s, "--hostname=", h),
        None => {
            s.push_str(" --hostname=");
            s.push_str(&x.m);
        }
    }
    if c.rootfs == Rootfs::Host {
        s.push_str(" --host-clone");
    }
    if c.host_network() {
        s.push_str(" --host-network");
    }
    for d in &c.opaque_dirs {
        x.word(s, "--opaque=", d);
    }
    if c.nested_sdme {
        s.push_str(" --nested-sdme");
    }
    for e in &c.service_environment {
        x.word(s, "--service-environment=", e);
    }
    if let Some(p) = &c.apparmor_profile {
        x.word(s, "--apparmor-profile=", p);
    }
    if c.private_users_enabled() {
        match c.userns_base() {
            Some(b) => {
                s.push_str(" --private-users=");
                s.push_str(&b.to_string());
            }
            // A bare template: the instance's machine name decides.
            None => s.push_str(" --private-users=yes"),
        }
    }
    if c.private_users_enabled() {
        // nspawn cannot make a missing bind destination on ID-mapped
        // layers: sdme-prepare does.
        for b in &c.binds {
            x.word(s, "--bind=", &b.spec);
        }
    }
    if let Some(a) = &c.app {
        app_args(x, s, a);
    }
    s.push_str(" --source=");
    s.push_str(&exec_word(&c.source.to_string_lossy()));
    if !mount {
        // The umask the admin chose for the container applies to its
        // layer files too (sdme-prepare refuses one that would hide them);
        // the static prepare unit cannot carry it, so it is an argument.
        if let Some(e) = c
            .passthrough
            .iter()
            .filter(|sec| sec.name == "Service")
            .flat_map(|sec| &sec.entries)
            .rfind(|e| e.key == "UMask")
        {
            x.word(s, "--umask=", &e.value);
        }
    }
    // The container's service, recorded in /run/sdme/inuse (the generator
    // keeps a unit that stops the container if its file goes away); from
    // the prepare unit, errors also go to that service's journal.
    s.push_str(" --unit=");
    if c.is_template() {
        s.push_str("%n");
    } else {
        s.push_str(&x.service);
    }
    s.push(' ');
    s.push_str(&x.m);
    s.push('\n');
}

/// The application's keys for sdme-prepare, which merges them with the
/// image's configuration (read from the rootfs's metadata, which the
/// generator may not look at) into the guest's `sdme-app.service`.
/// `AppPod=`: the pod runs before the container (as for `Pod=`, once if
/// both name it), and the host's socket that makes the app's process
/// listens (sdme-pod(8), app-spawn).
fn app_pod_deps(c: &Container, s: &mut String) {
    let Some((pod, _)) = c.app.as_ref().and_then(|a| a.pod.as_ref()) else {
        return;
    };
    if c.pod.as_ref().is_none_or(|(p, _)| p != pod) {
        for dep in ["Requires=", "After="] {
            s.push_str(dep);
            s.push_str(&pod_service_name(pod));
            s.push('\n');
        }
    }
    s.push_str("Wants=sdme-app-pod.socket\nAfter=sdme-app-pod.socket\n");
}

fn app_args(x: &Ctx, s: &mut String, a: &App) {
    for (k, v) in a.settings.options() {
        x.word(s, &[k, "="].concat(), &v);
    }
}

/// What the container's stop timeout adds to `AppStopTimeout=`: the rest
/// of the guest's shutdown (systemd's own default stop timeout).
const APP_STOP_MARGIN: std::time::Duration = std::time::Duration::from_secs(90);

/// Whether the image's ExposedPorts reach nspawn (see [`app_ports`]).
fn app_expose(c: &Container) -> bool {
    c.app
        .as_ref()
        .is_some_and(|a| a.settings.expose != app_ports::ExposePorts::No)
}

const NSPAWN_FIXED: &str =
    "--quiet --keep-unit --boot --notify-ready=yes --settings=no --link-journal=no";

fn nspawn_cmd(x: &Ctx, s: &mut String) {
    let c = x.c;
    s.push_str(paths::NSPAWN);
    s.push(' ');
    s.push_str(NSPAWN_FIXED);
    s.push_str(" --machine=");
    s.push_str(&x.m);
    s.push_str(" --directory=");
    s.push_str(&x.dir);
    s.push_str("/merged");
    if let Some(h) = &c.hostname {
        x.word(s, "--hostname=", h);
    }
    if c.private_users_enabled() {
        // The layers are ID-mapped already (sdme-prepare --mount), so nspawn
        // must not chown anything. A bare template's instances read the
        // base from the root directory's owner, which the mapping makes
        // BASE (nspawn's --private-users=yes).
        match c.userns_base() {
            Some(b) => {
                s.push_str(" --private-users=");
                s.push_str(&b.to_string());
                s.push_str(":65536");
            }
            None => s.push_str(" --private-users=yes"),
        }
        s.push_str(" --private-users-ownership=off");
    }
    if c.private_network {
        s.push_str(" --private-network");
    }
    if let Some(b) = &c.bridge {
        x.word(s, "--network-bridge=", b);
    } else if let Some(z) = &c.zone {
        x.word(s, "--network-zone=", z);
    } else if c.virtual_ethernet || !c.ports.is_empty() {
        // --port needs a veth link to forward to.
        s.push_str(" --network-veth");
    }
    for p in &c.ports {
        x.word(s, "--port=", p);
    }
    if app_expose(c) {
        // The image's ExposedPorts, which only sdme-prepare reads.
        s.push_str(" $");
        s.push_str(app_ports::NSPAWN_VAR);
    }
    for b in &c.binds {
        let opt = if b.read_only { "--bind-ro=" } else { "--bind=" };
        x.word(s, opt, &b.spec);
    }
    if let Some(a) = &c.app {
        // The application's tree, mounted by sdme-prepare (its overlay,
        // the helper and the volumes below it): one recursive bind.
        s.push_str(" --bind=");
        s.push_str(&x.dir);
        s.push_str("/app/merged:");
        s.push_str(&crate::app_unit::app_root_in_guest(a.rootfs()));
    }
    for e in &c.environment {
        if e.bytes().all(plain_byte) {
            s.push_str(" --setenv=");
            s.push_str(e);
            continue;
        }
        s.push(' ');
        let raw = format!("--setenv={e}");
        s.push_str(&x.specifiers(exec_word_expanding(&raw)));
    }
    // By name, so that the line reads like a sorted list.
    let caps = |list: &[u8]| {
        let mut names: Vec<String> = list.iter().map(|n| capability_name(*n)).collect();
        names.sort();
        names.join(",")
    };
    if c.capability_all {
        s.push_str(" --capability=all");
    } else if !c.capabilities.is_empty() {
        s.push_str(" --capability=");
        s.push_str(&caps(&c.capabilities));
    }
    if !c.drop_capabilities.is_empty() {
        s.push_str(" --drop-capability=");
        s.push_str(&caps(&c.drop_capabilities));
    }
    if c.no_new_privileges {
        s.push_str(" --no-new-privileges=yes");
    }
    if c.read_only {
        s.push_str(" --read-only");
    }
    for f in &c.system_call_filter {
        x.word(s, "--system-call-filter=", &f.nspawn_value());
    }
    for a in &c.nspawn_args {
        x.word(s, "", a);
    }
    s.push('\n');
}

/// How every container service stops: `ExecStopPost=` unmounts the
/// overlay of machine `m` (state directory `dir`, both as written into
/// units), then the settings every container service gets. Shared with the
/// units of containers whose file was removed or broke while they ran
/// ([`crate::orphan`]), which must stop the same way.
pub(crate) fn push_stop_half(s: &mut String, dir: &str, m: &str) {
    s.push_str("ExecStopPost=");
    push_helper(s, "sdme-prepare");
    s.push_str(" --unmount --mount-unit --unit=%n --state=");
    s.push_str(dir);
    s.push(' ');
    s.push_str(m);
    s.push('\n');
    s.push_str(SERVICE_SETTINGS);
}

/// Settings every container service gets; most mirror systemd's own
/// systemd-nspawn@.service so that a container behaves like one. `KillMode=
/// mixed`: SIGTERM goes to nspawn alone, which halts the guest (its PID 1
/// would take SIGTERM as "re-execute").
const SERVICE_SETTINGS: &str = "\
KillMode=mixed
Delegate=yes
Slice=machine.slice
TasksMax=16384
DevicePolicy=closed
DeviceAllow=/dev/net/tun rwm
DeviceAllow=char-pts rw
DeviceAllow=/dev/loop-control rw
DeviceAllow=block-loop rw
DeviceAllow=block-blkext rw
DeviceAllow=/dev/mapper/control rw
DeviceAllow=block-device-mapper rw
RestartForceExitStatus=133
SuccessExitStatus=133
";

fn service(x: &Ctx) -> String {
    let c = x.c;
    let mut s = String::with_capacity(2048);
    x.header(&mut s);
    s.push_str("\n[Unit]\n");
    let user_unit = c.passthrough.iter().find(|sec| sec.name == "Unit");
    let has_description =
        user_unit.is_some_and(|u| u.entries.iter().any(|e| e.key == "Description"));
    if !has_description {
        s.push_str("Description=sdme container ");
        s.push_str(&x.m);
        s.push('\n');
    }
    s.push_str("Documentation=man:sdme.container(5)\nSourcePath=");
    s.push_str(&x.source);
    s.push_str("\nPartOf=machines.target\nBefore=machines.target\nAfter=network.target\n");
    // Names the cause of a failure systemd leaves vague (a start timeout),
    // at no cost when nothing fails; see units/sdme-explain@.service.
    s.push_str("OnFailure=sdme-explain@%N.service\n");
    x.image_deps(&mut s, true);
    if let Some((pod, _)) = &c.pod {
        // Starting a member starts the pod; stopping (or restarting) the
        // pod stops (restarts) its members: Requires= propagates both. Not
        // BindsTo=: after a daemon-reload that adds Pod= to a running
        // container whose pod is not running, systemd would stop the
        // container at once (bound to an inactive unit); see
        // sdme.container(5), "CHANGING A RUNNING CONTAINER".
        for dep in ["Requires=", "After="] {
            s.push_str(dep);
            s.push_str(&pod_service_name(pod));
            s.push('\n');
        }
    }
    app_pod_deps(c, &mut s);
    match &x.mount {
        None => {
            s.push_str("RequiresMountsFor=");
            s.push_str(paths::CONTAINERS_DIR);
            if c.rootfs != Rootfs::Host {
                s.push(' ');
                s.push_str(&x.lower);
            }
            if let Some(a) = x.app_lower() {
                s.push(' ');
                s.push_str(&a);
            }
            s.push('\n');
        }
        Some(mount) => {
            // Requires=, not BindsTo=: the mount unit's name follows the
            // machine name, and after a daemon-reload that changes
            // MachineName= of a running container, BindsTo= on the new
            // (inactive) name would stop the container at once. Stopping
            // or restarting the mount unit still stops or restarts the
            // container first; an overlay unmounted underneath it does
            // not stop it (its root lives on in its own mount namespace),
            // as for the overlays the prepare helper mounts.
            for dep in ["Requires=", "After="] {
                s.push_str(dep);
                s.push_str(mount);
                s.push('\n');
            }
        }
    }
    push_entries(&mut s, user_unit);

    s.push_str("\n[Service]\nType=notify\nNotifyAccess=all\n");
    if app_expose(c) {
        // Written by the prepare step, before ExecStart= reads it; "-":
        // systemd reads it for that ExecStartPre= too, which makes it.
        s.push_str("EnvironmentFile=-");
        s.push_str(&x.dir);
        s.push('/');
        s.push_str(app_ports::NSPAWN_ENV);
        s.push('\n');
    }
    if c.helper_mounts() {
        s.push_str("ExecStartPre=");
        prepare_cmd(x, &mut s, true);
    }
    s.push_str("ExecStart=");
    if let Some((pod, _)) = &c.pod {
        // nspawn starts inside the pod's namespace.
        push_helper(&mut s, "sdme-pod");
        s.push_str(" exec ");
        s.push_str(pod);
        s.push_str(" -- ");
    }
    nspawn_cmd(x, &mut s);
    let timeout = format_timespan(c.boot_timeout);
    s.push_str("ExecStartPost=");
    push_helper(&mut s, "sdme-boot-wait");
    s.push_str(" --machine=");
    s.push_str(&x.m);
    s.push_str(" --timeout=");
    s.push_str(&timeout);
    for u in &c.wait_for {
        x.word(&mut s, "--wait-for=", u);
    }
    s.push('\n');
    // Every kind unmounts its overlay here, so that `systemctl stop`
    // (which waits for this unit's job only) returns with it unmounted; a
    // `.mount` unit's own stop job would come after that job. The helper
    // also waits until systemd has seen the unmount (the generated mount
    // unit's stop job must find it inactive; an overlay the helper mounted
    // has a mount unit too, made from mountinfo), see sdme-prepare(8).
    if let Some(old) = &c.running_as {
        // MachineName= changed while it ran: the running container's
        // overlay is the old name's (sdme.container(5), "CHANGING A
        // RUNNING CONTAINER"); unmounting it is a no-op at later stops.
        s.push_str("ExecStopPost=");
        push_helper(&mut s, "sdme-prepare");
        s.push_str(" --unmount --mount-unit --unit=%n --state=");
        s.push_str(&paths::container_dir(old).to_string_lossy());
        s.push(' ');
        s.push_str(old);
        s.push('\n');
    }
    push_stop_half(&mut s, &x.dir, &x.m);
    s.push_str("TimeoutStartSec=");
    s.push_str(&timeout);
    s.push('\n');
    if let Some(t) = c.app.as_ref().and_then(|a| a.settings.stop_timeout) {
        // The guest's shutdown waits for the app's stop timeout first:
        // the container's own (90 s by default) must not cut it short.
        s.push_str("TimeoutStopSec=");
        s.push_str(&format_timespan(t.map(|d| d + APP_STOP_MARGIN)));
        s.push('\n');
    }
    if !c.log_console {
        // nspawn writes the guest's console (read-only mode, no tty) to its
        // stdout and its own messages to stderr; the guest's journal has
        // the console already. /dev/null never blocks the guest. stderr
        // would inherit stdout's null: keep it in the journal.
        s.push_str("StandardOutput=null\nStandardError=journal\n");
    }
    // A unit directive, not an nspawn option; before the admin's own
    // [Service] lines, so that one of theirs wins.
    if let Some(p) = &c.apparmor_profile {
        s.push_str("AppArmorProfile=");
        s.push_str(p);
        s.push('\n');
    }
    push_service_and_x(&mut s, &c.passthrough);
    s
}

/// The file's own `[Service]` lines, then its `X-` sections: the end of
/// every generated service.
fn push_service_and_x(s: &mut String, passthrough: &[crate::syntax::Section]) {
    push_entries(s, passthrough.iter().find(|sec| sec.name == "Service"));
    for sec in passthrough.iter().filter(|sec| sec.name.starts_with("X-")) {
        s.push_str("\n[");
        s.push_str(&sec.name);
        s.push_str("]\n");
        push_entries(s, Some(sec));
    }
}

fn push_entries(s: &mut String, sec: Option<&crate::syntax::Section>) {
    for e in sec.into_iter().flat_map(|sec| &sec.entries) {
        s.push_str(&e.key);
        s.push('=');
        s.push_str(&e.value);
        s.push('\n');
    }
}

fn mount_unit(x: &Ctx) -> String {
    let c = x.c;
    let mut s = String::with_capacity(1024);
    x.header(&mut s);
    let prep = prepare_unit_name(&c.machine);
    s.push_str("\n[Unit]\nDescription=sdme overlay of ");
    s.push_str(&x.m);
    s.push_str("\nDocumentation=man:sdme.container(5)\nSourcePath=");
    s.push_str(&x.source);
    s.push_str(
        "\nDefaultDependencies=no\nConflicts=umount.target\nBefore=umount.target\nAfter=local-fs.target\n",
    );
    for dep in ["Requires=", "After="] {
        s.push_str(dep);
        s.push_str(&prep);
        s.push('\n');
    }
    x.image_deps(&mut s, true);
    // A restart of the container remounts, so the prepare step runs again.
    s.push_str("PartOf=");
    s.push_str(&x.service);
    s.push('\n');
    x.requires_mounts(&mut s);
    s.push_str("StopWhenUnneeded=yes\n");
    // Read by `sdme-prepare --generated=MACHINE`, run by the static
    // sdme-prepare@.service; systemd ignores X- keys.
    let mut args = String::with_capacity(512);
    prepare_args(x, &mut args, false);
    s.push_str("X-SdmePrepare=");
    s.push_str(args.trim_start());
    s.push_str("\n[Mount]\nWhat=overlay\nWhere=");
    s.push_str(&x.dir);
    s.push_str("/merged\nType=overlay\nOptions=lowerdir=");
    s.push_str(&x.lower);
    s.push_str(",upperdir=");
    s.push_str(&x.dir);
    s.push_str("/upper,workdir=");
    s.push_str(&x.dir);
    s.push_str("/work\n");
    s
}

/// `[Install]` as symlinks, since generated units cannot be enabled.
fn install_links(c: &Container) -> Vec<Output> {
    links(&c.name, &c.install, &service_name(c))
}

pub(crate) fn links(name: &UnitName, install: &Install, unit: &str) -> Vec<Output> {
    // A bare template is installed only through DefaultInstance=.
    let (link_name, target): (Cow<str>, &str) = match (name, &install.default_instance) {
        (UnitName::Template(_), Some(inst)) => (
            unit.replacen("@.service", &format!("@{inst}.service"), 1)
                .into(),
            unit,
        ),
        (UnitName::Template(_), None) => return aliases(name, install, unit),
        _ => (unit.into(), unit),
    };
    let mut out = Vec::with_capacity(
        install.wanted_by.len() + install.required_by.len() + install.alias.len(),
    );
    for (dir_suffix, targets) in [
        (".wants/", &install.wanted_by),
        (".requires/", &install.required_by),
    ] {
        for t in targets {
            out.push(Output::Symlink {
                path: [t, dir_suffix, &link_name].concat(),
                target: ["../", target].concat(),
            });
        }
    }
    out.extend(aliases(name, install, unit));
    if out.len() > 1 {
        out.sort_by(|a, b| a.path().cmp(b.path()));
        out.dedup();
    }
    out
}

fn aliases(name: &UnitName, install: &Install, unit: &str) -> Vec<Output> {
    install
        .alias
        .iter()
        .map(|a| Output::Symlink {
            path: match name {
                UnitName::Instance { instance, .. } => {
                    a.replacen("@.", &format!("@{instance}."), 1)
                }
                _ => a.clone(),
            },
            target: unit.to_string(),
        })
        .collect()
}

/// `sdme-pod-NAME.service`.
pub fn pod_service_name(pod: &str) -> String {
    format!("sdme-pod-{pod}.service")
}

/// The relative paths of everything [`render_pod`] writes.
pub fn pod_output_paths(p: &Pod) -> Vec<String> {
    let mut v = vec![pod_service_name(&p.name)];
    v.extend(pod_links(p).iter().map(|o| o.path().to_string()));
    v
}

fn pod_links(p: &Pod) -> Vec<Output> {
    links(&p.unit_name, &p.install, &pod_service_name(&p.name))
}

/// Everything the generator writes for a pod: a one-shot that creates the
/// pod's network namespace and removes it on stop.
pub fn render_pod(p: &Pod) -> Vec<Output> {
    // A template's unit serves every instance: `%i` is its name.
    let name = if p.is_template() {
        format!("{}%i", p.name)
    } else {
        p.name.clone()
    };
    let mut s = String::with_capacity(1024);
    s.push_str("# Automatically generated by sdme-generator from ");
    s.push_str(&p.source.to_string_lossy());
    s.push_str("\n# Edit that file (or add a drop-in) and run \"systemctl daemon-reload\".\n");
    s.push_str("\n[Unit]\n");
    let user_unit = p.passthrough.iter().find(|sec| sec.name == "Unit");
    if !user_unit.is_some_and(|u| u.entries.iter().any(|e| e.key == "Description")) {
        s.push_str("Description=sdme pod ");
        s.push_str(&name);
        s.push('\n');
    }
    s.push_str("Documentation=man:sdme.pod(5)\nSourcePath=");
    s.push_str(&unit_value(&p.source.to_string_lossy()));
    // Stopped with the containers by `systemctl stop machines.target`, or
    // it would stay up without members, its namespace pinned in /run/sdme.
    s.push_str("\nPartOf=machines.target\n");
    push_entries(&mut s, user_unit);
    s.push_str("\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=");
    s.push_str(&paths::helper("sdme-pod"));
    s.push_str(" create ");
    s.push_str(&name);
    s.push_str("\nExecStop=");
    s.push_str(&paths::helper("sdme-pod"));
    s.push_str(" remove ");
    s.push_str(&name);
    s.push('\n');
    push_service_and_x(&mut s, &p.passthrough);
    let mut out = vec![Output::File {
        path: pod_service_name(&p.name),
        content: s,
    }];
    out.extend(pod_links(p));
    out
}

/// The relative paths of everything [`render_image`] writes.
pub fn image_output_paths(img: &Image) -> Vec<String> {
    let mut v = vec![image_service_name(&img.name)];
    v.extend(image_links(img).iter().map(|o| o.path().to_string()));
    v
}

fn image_links(img: &Image) -> Vec<Output> {
    links(
        &UnitName::Plain(img.name.clone()),
        &img.install,
        &image_service_name(&img.name),
    )
}

/// What an image unit and a build unit differ in: both are one-shots
/// that make a rootfs before the prepare steps of the containers on it.
pub(crate) struct RootfsUnit<'a> {
    /// The file (`SourcePath=`, header comment).
    pub source: &'a std::path::Path,
    /// Appended to the header's file name: ` (Image=)`.
    pub source_note: &'a str,
    /// `Description=` unless the file's `[Unit]` has one.
    pub description: String,
    pub documentation: &'a str,
    /// Units to require and order after (a build's From= unit).
    pub requires: Vec<String>,
    /// The machines whose prepare steps wait for it.
    pub prepared_by: &'a [String],
    /// `ExecStart=`'s command line, escaped.
    pub exec_start: String,
    /// `RemainAfterExit=yes`: an image unit stays active once the rootfs
    /// is there; a build unit does not, so that every start of a
    /// container on it runs the builder again (a no-op when up to date,
    /// a rebuild after the file changed).
    pub remain: bool,
    pub passthrough: &'a [crate::syntax::Section],
}

/// The unit file of a [`RootfsUnit`]. No start timeout: a first pull or
/// build takes what it takes; the file may set `TimeoutStartSec=` in
/// `[Service]`.
pub(crate) fn rootfs_unit(u: &RootfsUnit) -> String {
    let mut s = String::with_capacity(1024);
    s.push_str("# Automatically generated by sdme-generator from ");
    s.push_str(&u.source.to_string_lossy());
    s.push_str(u.source_note);
    s.push_str("\n# Edit that file (or add a drop-in) and run \"systemctl daemon-reload\".\n");
    s.push_str("\n[Unit]\n");
    let user_unit = u.passthrough.iter().find(|sec| sec.name == "Unit");
    if !user_unit.is_some_and(|u| u.entries.iter().any(|e| e.key == "Description")) {
        s.push_str("Description=");
        s.push_str(&u.description);
        s.push('\n');
    }
    s.push_str("Documentation=");
    s.push_str(u.documentation);
    s.push_str("\nSourcePath=");
    s.push_str(&unit_value(&u.source.to_string_lossy()));
    s.push_str("\nWants=network-online.target\nAfter=network-online.target\nRequiresMountsFor=");
    s.push_str(paths::ROOTFS_DIR);
    s.push('\n');
    for r in &u.requires {
        for dep in ["Requires=", "After="] {
            s.push_str(dep);
            s.push_str(r);
            s.push('\n');
        }
    }
    for m in u.prepared_by {
        s.push_str("Before=");
        s.push_str(&prepare_unit_name(m));
        s.push('\n');
    }
    if !u.remain {
        // Run again by every start of a container on it: a step of those
        // starts, whose units keep systemd's start rate limit. Restarts
        // in a row must not fail here first ("start request repeated too
        // quickly", seen in e2e 52), as for sdme-prepare@.service.
        s.push_str("StartLimitIntervalSec=0\n");
    }
    push_entries(&mut s, user_unit);
    s.push_str("\n[Service]\nType=oneshot\n");
    if u.remain {
        s.push_str("RemainAfterExit=yes\n");
    }
    s.push_str("ExecStart=");
    s.push_str(&u.exec_start);
    s.push_str("\nTimeoutStartSec=infinity\n");
    push_service_and_x(&mut s, u.passthrough);
    s
}

/// An image unit: a one-shot that imports the rootfs unless it is already
/// there (with the pinned digest, for a reference pinned with `@sha256:`).
pub fn render_image(img: &Image) -> Vec<Output> {
    let spec = &img.spec;
    let mut cmd = format!("{} --if-missing --quiet", paths::SDME_IMPORT);
    let mut word = |prefix: &str, v: &str| {
        cmd.push(' ');
        cmd.push_str(&exec_word(&format!("{prefix}{v}")));
    };
    if let Some(p) = &spec.platform {
        word("--platform=", p);
    }
    if let Some(p) = &spec.install_packages {
        word("--install-packages=", p);
    }
    if let Some(p) = &spec.ca_file {
        word("--ca-file=", p);
    }
    if let Some(n) = spec.max_size {
        word("--max-size=", &n.to_string());
    }
    word("", &spec.source);
    word("", &img.name);
    let content = rootfs_unit(&RootfsUnit {
        source: &img.source,
        source_note: if img.inline { " (Image=)" } else { "" },
        description: format!("sdme image {} ({})", img.name, unit_value(&spec.source)),
        documentation: "man:sdme.image(5) man:sdme-import(1)",
        requires: Vec::new(),
        prepared_by: &img.prepared_by,
        exec_start: cmd,
        remain: true,
        passthrough: &img.passthrough,
    });
    let mut out = vec![Output::File {
        path: image_service_name(&img.name),
        content,
    }];
    out.extend(image_links(img));
    out
}

/// The relative paths of everything [`render_build`] writes.
pub fn build_output_paths(b: &Build) -> Vec<String> {
    let mut v = vec![build_service_name(&b.name)];
    v.extend(build_links(b).iter().map(|o| o.path().to_string()));
    v
}

fn build_links(b: &Build) -> Vec<Output> {
    links(
        &UnitName::Plain(b.name.clone()),
        &b.install,
        &build_service_name(&b.name),
    )
}

/// A build unit: a one-shot that runs the builder on the `.build` file
/// (found again on the search path, with its drop-ins), which builds the
/// rootfs when it is missing or its inputs changed and otherwise does
/// nothing; after the unit that makes its `From=` rootfs; required by the
/// prepare steps of the containers on it. It does not remain active, so
/// the next start of a container (`systemctl restart` too) runs it again
/// and an edited file is built then.
pub fn render_build(b: &Build) -> Vec<Output> {
    let requires = match &b.from {
        Base::Image(n) => vec![image_service_name(n)],
        Base::Build(n) => vec![build_service_name(n)],
        Base::Host | Base::Rootfs(_) => Vec::new(),
    };
    let mut cmd = paths::helper("sdme-build");
    cmd.push_str(" --if-changed ");
    cmd.push_str(&exec_word(&format!("{}.build", b.name)));
    let content = rootfs_unit(&RootfsUnit {
        source: &b.source,
        source_note: "",
        description: format!("sdme build {}", b.name),
        documentation: "man:sdme.build(5)",
        requires,
        prepared_by: &b.prepared_by,
        exec_start: cmd,
        remain: false,
        passthrough: &b.passthrough,
    });
    let unit = build_service_name(&b.name);
    let mut out = vec![Output::File {
        path: unit.clone(),
        content,
    }];
    // The prepare steps require the build, not only start after it: a
    // failed build fails them as a dependency instead of letting them run
    // and report a missing rootfs (a static template cannot name the
    // build itself).
    for m in &b.prepared_by {
        out.push(Output::Symlink {
            path: [&prepare_unit_name(m), ".requires/", &unit].concat(),
            target: ["../", &unit].concat(),
        });
    }
    out.extend(build_links(b));
    out
}
