//! sdme-prepare: create a container's overlay directories and write the
//! files sdme owns into `upper/` (see sdme-prepare(8) for the contract).
//!
//! Ownership rules (what "idempotent" means here), applied at every start:
//!
//! * rewritten every time (derived from the configuration): `etc/hostname`,
//!   `etc/hosts`, the opaque xattr of `OpaqueDir=` directories and of
//!   sdme's own directories (removed again with `--nested-sdme`, see
//!   [`crate::nested`]), sdme's `DefaultEnvironment=` drop-in
//!   `etc/systemd/system.conf.d/50-sdme-environment.conf` (removed, as a
//!   file or symlink, when there is no `--service-environment`);
//! * written only when the container has not put something of its own
//!   there: `etc/machine-id` (when missing or empty: a non-empty id was
//!   written by the container itself, e.g. `systemd-machine-id-setup
//!   --commit`, and is kept), `etc/resolv.conf` (with the host's network
//!   only, when not a regular file),
//!   the `etc/fstab`/`crypttab` stubs (when not a regular file), masks and
//!   the `dbus.service` alias (when nothing but a whiteout is there);
//! * never touched: everything else in `upper/`. Nothing is ever deleted
//!   except whiteouts and symlinks at the names listed above.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::fsutil::{check_host_path, container_rel_path, DirAttrs, Entry, Lower, SafeDir};
use crate::hostdir::ensure_host_dir;
use crate::mountinfo;
use crate::overlay;

/// What the invocation asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Prepare `upper/` (the `.mount` unit mounts the overlay).
    Prepare,
    /// Prepare, then mount the overlay (template instances).
    Mount,
    /// Unmount `merged/` and nothing else.
    Unmount,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub machine: String,
    pub action: Action,
    pub lower: Option<PathBuf>,
    pub state: PathBuf,
    pub hostname: String,
    pub source: Option<PathBuf>,
    /// The container's service, when prepare runs in a unit of its own:
    /// errors are also logged there (see `journal`).
    pub unit: Option<String>,
    pub host_clone: bool,
    pub host_network: bool,
    /// Relative to the container's root, validated.
    pub opaque: Vec<PathBuf>,
    /// `NestedSdme=yes`: sdme's directories of the lower layer stay visible.
    pub nested_sdme: bool,
    /// `ServiceEnvironment=`: `NAME=VALUE` assignments, checked.
    pub service_environment: Vec<String>,
    /// `AppArmorProfile=`: checked to be loaded where the kernel runs
    /// AppArmor (see [`check_apparmor`]).
    pub apparmor_profile: Option<String>,
    /// `PrivateUsers=`: the UID base the layers are ID-mapped to (with
    /// `--mount` only; see [`crate::idmap`]).
    pub userns_base: Option<u32>,
    /// `--bind=SPEC` (with `PrivateUsers=`): binds whose missing
    /// destinations prepare makes, as (source, destination relative to
    /// the container's root).
    pub binds: Vec<(String, PathBuf)>,
    /// `UMask=` of the container's service, set before anything is made
    /// (the static prepare unit cannot carry a per-container `UMask=`).
    pub umask: Option<u32>,
    /// `--unmount --mount-unit`: after unmounting, wait until systemd
    /// shows the overlay's `.mount` unit (generated, or made from
    /// mountinfo) inactive (see [`crate::stop`]).
    pub mount_unit: bool,
    /// Where the start records live: [`sdme_core::inuse::RECORD_DIR`]
    /// (tests use their own).
    pub records: PathBuf,
    /// `--app=ROOTFS` and its options: the container's application.
    pub app: Option<sdme_core::app_unit::AppSettings>,
    /// Where the application's image, metadata and volumes are (tests use
    /// their own).
    pub app_dirs: crate::app::AppDirs,
}

pub const USAGE: &str = "usage: sdme-prepare [--mount] --lower=DIR --state=DIR --hostname=NAME \
[--host-clone] [--host-network] [--opaque=PATH]... [--nested-sdme] \
[--service-environment=NAME=VALUE]... [--apparmor-profile=PROFILE] \
[--private-users=BASE|yes] [--bind=SPEC]... [--umask=MODE] \
[--app=ROOTFS [--app-at=FILE:LINE] [--app-exec=WORD]... [--app-args=WORD]... [--app-user=USER] \
[--app-env=NAME=VALUE]... [--app-workdir=DIR] [--volume=SPEC]... [--app-exit=restart|stop] \
[--app-stop-timeout=TIMESPAN] [--app-pod=POD]] [--source=FILE] [--unit=UNIT] MACHINE\n       \
sdme-prepare --generated=MACHINE\n       \
sdme-prepare --unmount [--mount-unit] --state=DIR MACHINE";

/// The key of the generated mount unit that holds the prepare arguments.
pub const ARGS_KEY: &str = "X-SdmePrepare";

/// `--generated=MACHINE` (the whole command line of the static
/// `sdme-prepare@.service`): the arguments written into the mount unit of
/// MACHINE in `dir` (systemd's generator directory), as the generator
/// escaped them for a command line. Any other command line is returned as
/// it is. Reading them from the mount unit systemd has loaded (rather than
/// from the `.container` file, which may have changed since the last
/// daemon-reload) keeps the prepared layers and the mount in step.
pub fn expand_generated(args: Vec<OsString>, dir: &Path) -> Result<Vec<OsString>> {
    let machine = match args.as_slice() {
        [a] => match a.to_str().and_then(|a| a.strip_prefix("--generated=")) {
            Some(m) => m.to_string(),
            None => return Ok(args),
        },
        [a, m] if a == "--generated" => utf8(m.clone(), "machine name")?,
        _ if args
            .iter()
            .any(|a| a.to_string_lossy().starts_with("--generated")) =>
        {
            bail!("--generated=MACHINE takes no other argument\n{USAGE}")
        }
        _ => return Ok(args),
    };
    sdme_core::name::check_machine_name(&machine).map_err(|e| anyhow!(e))?;
    generated_args(&machine, dir).map_err(|e| anyhow!("{machine}: {e:#}"))
}

fn generated_args(machine: &str, dir: &Path) -> Result<Vec<OsString>> {
    let merged = [sdme_core::paths::CONTAINERS_DIR, "/", machine, "/merged"].concat();
    let unit = sdme_core::escape::mount_unit_name(&merged).map_err(|e| anyhow!(e))?;
    let path = dir.join(&unit);
    let data = match read_bounded(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no generated mount unit {}: no .container file declares the machine '{machine}' \
             (or \"systemctl daemon-reload\" has not run since one does; instances of a bare \
             template NAME@.container are prepared by their own service)",
            path.display(),
        ),
        Err(e) => bail!("cannot read {}: {e}", path.display()),
    };
    let file = sdme_core::syntax::UnitFile::parse(&path, &data).map_err(|e| anyhow!("{e}"))?;
    let line = file
        .section("Unit")
        .and_then(|s| s.entries.iter().rfind(|e| e.key == ARGS_KEY))
        .ok_or_else(|| {
            anyhow!(
                "{}: no {ARGS_KEY}= in [Unit]; it was not written by this sdme-generator \
                 (run \"systemctl daemon-reload\")",
                path.display()
            )
        })?;
    let words = sdme_core::escape::split_words(&line.value)
        .map_err(|e| anyhow!("{}: {ARGS_KEY}=: {e}", path.display()))?;
    // What systemd would have undone in a command line: doubled `%`, `$`.
    let args: Vec<OsString> = words
        .iter()
        .map(|w| w.replace("%%", "%").replace("$$", "$").into())
        .collect();
    if machine_guess(&args).as_deref() != Some(machine) {
        bail!(
            "{}: {ARGS_KEY}= is for another machine than '{machine}'",
            path.display()
        );
    }
    Ok(args)
}

/// A generated unit file; anything bigger than a unit file can be is
/// refused unread.
fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut data = Vec::new();
    std::fs::File::open(path)?
        .take(sdme_core::search::MAX_FILE_SIZE + 1)
        .read_to_end(&mut data)?;
    if data.len() as u64 > sdme_core::search::MAX_FILE_SIZE {
        return Err(std::io::Error::other("file too big for a unit file"));
    }
    Ok(data)
}

fn utf8(v: OsString, what: &str) -> Result<String> {
    v.into_string()
        .map_err(|v| anyhow!("{what} '{}' is not valid UTF-8", v.to_string_lossy()))
}

/// The last argument that is not an option: used to name the machine in
/// error messages even when the rest of the command line is bad.
pub fn machine_guess(args: &[OsString]) -> Option<String> {
    args.iter()
        .rev()
        .find(|a| !a.to_string_lossy().starts_with('-'))
        .map(|a| a.to_string_lossy().into_owned())
}

/// Parse the command line (without argv[0]). Options take `--opt=VALUE`
/// or `--opt VALUE`.
pub fn parse_args(args: Vec<OsString>) -> Result<Options> {
    let mut lower = None;
    let mut state = None;
    let mut hostname = None;
    let mut source = None;
    let mut unit = None;
    let mut host_clone = false;
    let mut host_network = false;
    let mut opaque = Vec::new();
    let mut binds = Vec::new();
    let mut nested_sdme = false;
    let mut service_environment = Vec::new();
    let mut apparmor_profile = None;
    let mut private_users = None;
    let mut umask = None;
    let mut mount = false;
    let mut unmount = false;
    let mut mount_unit = false;
    let mut app = sdme_core::app_options::AppOptions::default();
    let mut positional = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let a = utf8(a, "argument")?;
        if !a.starts_with("--") || a == "--" {
            if a == "--" {
                for rest in it.by_ref() {
                    positional.push(utf8(rest, "argument")?);
                }
                break;
            }
            positional.push(a);
            continue;
        }
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        let mut value = |key: &str| -> Result<String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => match it.next() {
                    Some(v) => utf8(v, key),
                    None => bail!("option {key} needs a value"),
                },
            }
        };
        match key.as_str() {
            "--lower" => lower = Some(value("--lower")?),
            "--state" => state = Some(value("--state")?),
            "--hostname" => hostname = Some(value("--hostname")?),
            "--source" => source = Some(value("--source")?),
            "--unit" => unit = Some(value("--unit")?),
            "--opaque" => opaque.push(value("--opaque")?),
            "--bind" => binds.push(value("--bind")?),
            "--service-environment" => {
                let v = value("--service-environment")?;
                sdme_core::service_env::check_service_env(&v)
                    .map_err(|e| anyhow!("--service-environment: {e}"))?;
                service_environment.push(v);
            }
            "--apparmor-profile" => apparmor_profile = Some(value("--apparmor-profile")?),
            "--private-users" => private_users = Some(value("--private-users")?),
            "--umask" => umask = Some(parse_umask(&value("--umask")?)?),
            "--host-clone" | "--host-network" | "--mount" | "--unmount" | "--mount-unit"
            | "--nested-sdme" | "--help" => {
                if inline.is_some() {
                    bail!("option {key} takes no value");
                }
                match key.as_str() {
                    "--host-clone" => host_clone = true,
                    "--host-network" => host_network = true,
                    "--mount" => mount = true,
                    "--unmount" => unmount = true,
                    "--mount-unit" => mount_unit = true,
                    "--nested-sdme" => nested_sdme = true,
                    _ => bail!("{USAGE}"),
                }
            }
            _ if app.take(&key, &mut value)? => {}
            _ => bail!("unknown option {key}\n{USAGE}"),
        }
    }
    let app = app.finish().map_err(|e| anyhow!(e))?;
    let machine = match positional.as_slice() {
        [m] => m.clone(),
        [] => bail!("no machine name given\n{USAGE}"),
        _ => bail!("expected one machine name, got {}", positional.join(" ")),
    };
    sdme_core::name::check_machine_name(&machine).map_err(|e| anyhow!(e))?;
    let action = match (mount, unmount) {
        (true, true) => bail!("--mount and --unmount exclude each other"),
        (true, false) => Action::Mount,
        (false, true) => Action::Unmount,
        (false, false) => Action::Prepare,
    };
    if mount_unit && action != Action::Unmount {
        bail!("--mount-unit goes with --unmount only");
    }
    let state = check_host_path(
        "state directory",
        &state.ok_or_else(|| anyhow!("--state=DIR is required"))?,
    )?;
    if state.parent().is_none() {
        bail!("state directory must not be /");
    }
    let source = source
        .map(|s| check_host_path("source file", &s))
        .transpose()?;
    let (lower, hostname) = if action == Action::Unmount {
        (None, machine.clone())
    } else {
        let l = lower.ok_or_else(|| anyhow!("--lower=DIR is required"))?;
        let l = check_host_path("lower directory", &l)?;
        let h = hostname.unwrap_or_else(|| machine.clone());
        sdme_core::name::check_machine_name(&h)
            .map_err(|e| anyhow!(e.replacen("machine name", "hostname", 1)))?;
        (Some(l), h)
    };
    let opaque = opaque
        .iter()
        .map(|p| container_rel_path(p).with_context(|| "--opaque".to_string()))
        .collect::<Result<Vec<_>>>()?;
    let binds = binds
        .iter()
        .map(|b| bind_point(b).with_context(|| format!("--bind={}", b.escape_default())))
        .collect::<Result<Vec<_>>>()?;
    if let Some(u) = &unit {
        sdme_core::value::check_unit_name(u, "--unit").map_err(|e| anyhow!(e))?;
    }
    if let Some(p) = &apparmor_profile {
        sdme_core::container::check_apparmor_profile(p)
            .map_err(|e| anyhow!("--apparmor-profile={}: {e}", p.escape_default()))?;
    }
    let userns_base = match private_users.as_deref() {
        None => None,
        // A template instance: the base comes from its machine name, as
        // the generator derives it for declared containers.
        Some("yes") => Some(sdme_core::userns::base_for(&machine)),
        Some(v) => {
            let n: u32 = v
                .parse()
                .map_err(|_| anyhow!("--private-users={v}: expected a UID base or yes"))?;
            sdme_core::userns::check_base(n).map_err(|e| anyhow!("--private-users={v}: {e}"))?;
            Some(n)
        }
    };
    if !binds.is_empty() && userns_base.is_none() {
        bail!("--bind is for --private-users only (nspawn makes its mount points otherwise)");
    }
    if userns_base.is_some() && action != Action::Mount {
        bail!("--private-users needs --mount (the overlay over ID-mapped layers is mounted by sdme-prepare itself)");
    }
    Ok(Options {
        machine,
        action,
        lower,
        state,
        hostname,
        source,
        unit,
        host_clone,
        host_network,
        opaque,
        nested_sdme,
        service_environment,
        apparmor_profile,
        userns_base,
        binds,
        umask,
        mount_unit,
        records: PathBuf::from(sdme_core::inuse::RECORD_DIR),
        app,
        app_dirs: crate::app::AppDirs::default(),
    })
}

/// An octal mode as systemd's `UMask=` takes it.
fn parse_umask(v: &str) -> Result<u32> {
    match u32::from_str_radix(v, 8) {
        Ok(m) if !v.starts_with('+') && m <= 0o7777 => Ok(m),
        _ => bail!(
            "--umask={}: expected an octal mode such as 0022",
            v.escape_default()
        ),
    }
}

/// Whether an `AppArmorProfile=` can be applied, on the system whose
/// `/sys` is below `root` (`/`; a fake tree in tests).
///
/// `Ok(true)`: the kernel runs AppArmor and the profile is loaded.
/// `Ok(false)`: the kernel does not run AppArmor (no
/// `/sys/module/apparmor/parameters/enabled`, or not `Y`), so systemd
/// ignores the directive without a word; the caller warns.
/// An error: AppArmor runs and the profile is not loaded (systemd would
/// fail the start with a bare "Failed to prepare AppArmor profile"), or
/// the kernel's profile list cannot be read.
pub fn check_apparmor(root: &Path, profile: &str) -> Result<bool> {
    let enabled = root.join("sys/module/apparmor/parameters/enabled");
    match std::fs::read_to_string(&enabled) {
        Ok(v) if v.trim() == "Y" => {}
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => bail!("cannot read {}: {e}", enabled.display()),
    }
    let list = root.join("sys/kernel/security/apparmor/profiles");
    let text = std::fs::read_to_string(&list).with_context(|| {
        format!(
            "AppArmorProfile={profile}: the kernel runs AppArmor but its profile list {} \
             cannot be read (is securityfs mounted?)",
            list.display()
        )
    })?;
    // Lines are "NAME (MODE)"; a name has no white space (checked).
    let loaded = text.lines().any(|l| {
        let name = l.rsplit_once(" (").map_or(l, |(n, _)| n);
        name == profile
    });
    if !loaded {
        bail!(
            "AppArmorProfile={profile}: the AppArmor profile '{profile}' is not loaded \
             (it is not listed in /sys/kernel/security/apparmor/profiles); load it with \
             'apparmor_parser -r /etc/apparmor.d/{profile}' (package apparmor), \
             then start the container again"
        );
    }
    Ok(true)
}

/// The warning for a profile the kernel cannot apply.
pub fn apparmor_ignored(profile: &str) -> String {
    format!("AppArmorProfile={profile} ignored: the kernel does not run AppArmor")
}

/// Refuse a umask that strips read or execute from "other".
pub fn check_umask(mask: u32) -> Result<()> {
    if mask & 0o005 != 0 {
        bail!(
            "process umask {mask:04o} removes read or execute permission for others; \
             directories and files created in upper/ would be unreadable to non-root \
             services in the container (D-Bus would not start); run with UMask=0022"
        );
    }
    Ok(())
}

/// The current process umask.
pub fn current_umask() -> u32 {
    // Linux ≥ 4.7 reports it without changing it.
    if let Ok(s) = std::fs::read_to_string("/proc/self/status") {
        if let Some(v) = s
            .lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        {
            return v;
        }
    }
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    nix::sys::stat::umask(old);
    old.bits()
}

fn lower_missing_message(opts: &Options, lower: &Path, what: &str) -> String {
    let under_rootfs = lower.starts_with(sdme_core::paths::ROOTFS_DIR);
    let kind = if under_rootfs {
        "rootfs"
    } else {
        "lower directory"
    };
    let src = opts
        .source
        .as_ref()
        .map(|s| s.display().to_string())
        .unwrap_or_else(|| "the container's file".into());
    if under_rootfs {
        format!(
            "{kind} {} {what}: import it with sdme-import or fix Rootfs= in {src}",
            lower.display()
        )
    } else {
        format!("{kind} {} {what}: fix Rootfs= in {src}", lower.display())
    }
}

/// Check the lower layer and open it.
fn open_lower(opts: &Options, lower: &Path) -> Result<Lower> {
    match std::fs::metadata(lower) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!(lower_missing_message(opts, lower, "is not a directory")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(lower_missing_message(opts, lower, "not found"))
        }
        Err(e) => bail!("cannot access lower directory {}: {e}", lower.display()),
    }
    Lower::open(lower)
}

/// systemd-nspawn (256+) mounts a tmpfs on /run/systemd/nspawn/unix-export/
/// MACHINE and removes it when it exits; killed with SIGKILL it leaves it
/// there, and the next nspawn of that name refuses to start ("Mount point
/// ... exists already, refusing"; nspawn --cleanup, its own remedy, is not
/// in 257). With no machine of that name registered it is stale: unmount it
/// (a warning says so). Best effort: a failure is a warning too.
fn clear_stale_unix_export(machine: &str, report: &mut Report) {
    use nix::mount::{umount2, MntFlags};
    let dir = Path::new("/run/systemd/nspawn/unix-export").join(machine);
    if Path::new("/run/systemd/machines").join(machine).exists()
        || !matches!(mountinfo::mounted_at(&dir), Ok(Some(_)))
    {
        return;
    }
    match umount2(&dir, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
        Ok(()) => {
            let _ = std::fs::remove_dir(&dir);
            report.warnings.push(format!(
                "unmounted {}, left by a systemd-nspawn that was killed",
                dir.display()
            ));
        }
        Err(e) => report
            .warnings
            .push(format!("cannot unmount the stale {}: {e}", dir.display())),
    }
}

/// Units to mask in a clone of the host: the `.mount`, `.swap` and
/// `.automount` units the host's administrator put into or enabled from
/// `/etc/systemd/system` (they name the host's disks and swap, which do not
/// exist inside a container; their jobs would fail or wait 90 s for a
/// device). Vendor units under /usr/lib (tmp.mount, dev-hugepages.mount,
/// ...) are not masked: they carry their own `ConditionVirtualization=` and
/// work in containers. What systemd-fstab-generator would make from the
/// host's fstab is handled by the fstab stub. `-.mount` is never masked.
pub fn host_units_to_mask(lower: &Lower) -> Result<Vec<OsString>> {
    fn is_mountish(n: &OsStr) -> bool {
        let s = n.to_string_lossy();
        (s.ends_with(".mount") || s.ends_with(".swap") || s.ends_with(".automount"))
            && s != "-.mount"
            && !s.starts_with('.')
    }
    fn is_mask(d: &crate::fsutil::LowerDir, n: &OsStr) -> bool {
        d.readlink(n).is_some_and(|t| t == "/dev/null")
    }
    let mut out = Vec::new();
    let Some(dir) = lower.open_dir(Path::new("etc/systemd/system"))? else {
        return Ok(out);
    };
    for name in dir.names()? {
        let s = name.to_string_lossy().into_owned();
        match dir.entry(&name) {
            Entry::File { .. } if is_mountish(&name) => out.push(name),
            Entry::Symlink if is_mountish(&name) && !is_mask(&dir, &name) => out.push(name),
            Entry::Dir
                if s.ends_with(".wants") || s.ends_with(".requires") || s.ends_with(".upholds") =>
            {
                let Some(sub) = dir.subdir(&name) else {
                    continue;
                };
                for n in sub.names()? {
                    if is_mountish(&n)
                        && matches!(sub.entry(&n), Entry::Symlink | Entry::File { .. })
                    {
                        out.push(n);
                    }
                }
            }
            _ => {}
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Targets a `dbus.service` alias may point at.
pub fn valid_dbus_alias_target(target: &OsStr) -> bool {
    let t = target.to_string_lossy();
    ["/usr/lib/systemd/system/", "/lib/systemd/system/"]
        .iter()
        .any(|dir| {
            t.strip_prefix(dir)
                .is_some_and(|n| n == "dbus-broker.service" || n == "dbus-daemon.service")
        })
}

/// The lower's `dbus.service` alias target, when it is a valid alias whose
/// unit exists in the lower. Err(reason) when there is one but it is not
/// usable; Ok(None) when there is none (dbus.service is then a real unit
/// under /usr/lib, as with Debian's dbus-daemon, or D-Bus is not installed).
pub fn lower_dbus_alias(lower: &Lower) -> Result<Option<OsString>, String> {
    let dir = match lower.open_dir(Path::new("etc/systemd/system")) {
        Ok(Some(d)) => d,
        Ok(None) => return Ok(None),
        Err(e) => return Err(format!("{e:#}")),
    };
    let name = OsStr::new("dbus.service");
    match dir.entry(name) {
        Entry::Missing => Ok(None),
        Entry::Symlink => {
            let t = dir
                .readlink(name)
                .ok_or_else(|| format!("cannot read {}/dbus.service", dir.path().display()))?;
            if !valid_dbus_alias_target(&t) {
                return Err(format!(
                    "{}/dbus.service points to '{}', not to dbus-broker.service or \
                     dbus-daemon.service under /usr/lib/systemd/system or /lib/systemd/system",
                    dir.path().display(),
                    t.to_string_lossy()
                ));
            }
            // The unit must exist inside the image (resolved in the image).
            let rel = Path::new(&t).strip_prefix("/").unwrap_or(Path::new(&t));
            if lower
                .open_dir(rel.parent().unwrap_or(Path::new("")))
                .ok()
                .flatten()
                .map(|d| {
                    matches!(
                        d.entry(OsStr::new(rel.file_name().unwrap_or_default())),
                        Entry::File { .. } | Entry::Symlink
                    )
                })
                != Some(true)
            {
                return Err(format!(
                    "{}/dbus.service points to {} which does not exist in the lower layer",
                    dir.path().display(),
                    t.to_string_lossy()
                ));
            }
            Ok(Some(t))
        }
        _ => Err(format!(
            "{}/dbus.service is not a symlink; not copying it",
            dir.path().display()
        )),
    }
}

/// Is `rel` (a container path) at or below one of the opaque directories?
fn covered_by_opaque(opts: &Options, rel: &Path) -> bool {
    opts.opaque.iter().any(|o| rel.starts_with(o))
}

const HOSTS_HEADER: &str = "# Written by sdme-prepare at every start of the container.\n";

pub fn hosts_content(hostname: &str) -> String {
    let short = hostname.split('.').next().unwrap_or(hostname);
    let names = if short != hostname {
        format!("{hostname} {short}")
    } else {
        hostname.to_string()
    };
    format!(
        "{HOSTS_HEADER}127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{names}\n"
    )
}

const STUB: &str = "# Written by sdme-prepare: this container is a clone of the host's /;\n\
# the host's disks, file systems and swap are not set up inside it.\n";

const RESOLV_PLACEHOLDER: &str = "# Placeholder written by sdme-prepare; systemd-nspawn \
--resolv-conf= replaces it at start.\n";

/// What a run did, for tests and the info line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub already_mounted: bool,
    pub masked: Vec<String>,
    pub dbus_alias: Option<String>,
    pub warnings: Vec<String>,
    /// Warnings also sent to the container's journal (with `--unit`).
    pub unit_warnings: Vec<String>,
    pub mounted: bool,
}

/// Do everything for `Prepare` and `Mount`, holding the rootfs's use lock
/// and recording the use (see [`crate::stop::begin_use`]).
pub fn prepare(opts: &Options) -> Result<Report> {
    let lower = opts
        .lower
        .as_deref()
        .ok_or_else(|| anyhow!("--lower=DIR is required"))?;
    let app_lower = (opts.app.as_ref()).map(|a| opts.app_dirs.rootfs.join(&a.name));
    let using = crate::stop::begin_use(
        &opts.records,
        &opts.machine,
        lower,
        &opts.state,
        opts.unit.as_deref(),
        opts.source.as_deref(),
        app_lower.as_deref(),
    )?;
    let r = prepare_layers(opts);
    if r.is_err() {
        using.abandon();
        // A failed start leaves no application tree mounted (no stop step
        // runs after it), unless the container runs on it.
        if opts.app.is_some() && !overlay::is_mounted(&overlay::merged_dir(&opts.state)) {
            let _ = crate::app::unmount(&opts.state);
        }
    }
    r
}

fn prepare_layers(opts: &Options) -> Result<Report> {
    let mut report = Report::default();
    crate::app::record_pod(&opts.app_dirs, opts.unit.as_deref(), opts.app.as_ref())?;
    if let Some(m) = opts.umask {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(m & 0o777));
    }
    check_umask(current_umask())?;
    if let Some(p) = &opts.apparmor_profile {
        if !check_apparmor(Path::new("/"), p)? {
            report.unit_warnings.push(apparmor_ignored(p));
        }
    }
    let lower_path = opts
        .lower
        .as_deref()
        .ok_or_else(|| anyhow!("--lower=DIR is required"))?;
    let lower = open_lower(opts, lower_path)?;

    // 1. Directories on the host.
    let state = &opts.state;
    ensure_host_dir(state, 0o755)?;
    ensure_host_dir(&state.join("upper"), 0o755)?;
    ensure_host_dir(&state.join("work"), 0o700)?;
    let merged = overlay::merged_dir(state);
    ensure_host_dir(&merged, 0o755)?;
    clear_stale_unix_export(&opts.machine, &mut report);

    // 2. An overlay already mounted on these layers must not have its upper
    //    layer changed underneath (overlayfs(5): undefined behaviour). It was
    //    prepared before it was mounted; leave it.
    if overlay::overlay_mounted(&merged)? {
        // A template instance mounts its overlay itself and unmounts it from
        // ExecStopPost=; killed with SIGKILL (systemd 257 kills the stop
        // commands too) it leaves the overlay behind. With no machine of
        // that name running it is stale: unmount it and prepare afresh.
        let running = Path::new("/run/systemd/machines")
            .join(&opts.machine)
            .exists();
        if opts.action == Action::Mount && !running {
            unmount(state)?;
            crate::idmap::release(&opts.machine)?;
            report.warnings.push(format!(
                "unmounted a stale overlay on {} (its container is not running)",
                merged.display()
            ));
        } else {
            report.already_mounted = true;
            // The application's tree, unless it is mounted too; the
            // container's upper is left alone.
            if let Some(a) = &opts.app {
                crate::app::prepare(&opts.app_dirs, &opts.machine, state, opts.userns_base, a)?;
            }
            return Ok(report);
        }
    }

    let upper = SafeDir::open(&state.join("upper"))?;
    let attrs = |rel: &Path| lower.dir_attrs(rel).unwrap_or(DirAttrs::DEFAULT);

    // 3. Opaque directories first: files below are then written into them.
    for rel in &opts.opaque {
        let d = upper.walk_create(rel, &attrs)?;
        d.set_opaque()?;
    }
    // sdme's own directories: hidden unless nesting is asked for; under an
    // OpaqueDir= (or one itself) they are hidden either way.
    for dir in sdme_core::paths::NESTED_SDME_DIRS {
        let rel = container_rel_path(dir)?;
        if covered_by_opaque(opts, &rel) {
            continue;
        }
        if opts.nested_sdme {
            crate::nested::reveal(&upper, &rel)?;
        } else {
            crate::nested::hide(&upper, &lower, &rel)?;
        }
    }

    // 4. Files in etc/.
    let etc = upper.walk_create(Path::new("etc"), &attrs)?;
    etc.write_file(
        OsStr::new("hostname"),
        format!("{}\n", opts.hostname).as_bytes(),
        0o644,
    )?;
    etc.write_file(
        OsStr::new("hosts"),
        hosts_content(&opts.hostname).as_bytes(),
        0o644,
    )?;
    let mid = OsStr::new("machine-id");
    let lower_ids = lower_machine_ids(&lower);
    match etc.entry(mid)? {
        // The container's own id (committed by systemd-machine-id-commit),
        // unless it is a copy of the lower's: then it is the host's or the
        // image's id, which the container must not share.
        Entry::File { size } if size > 0 => {
            let own = etc.read_small(mid, 128)?.unwrap_or_default();
            let own = String::from_utf8_lossy(&own).trim().to_string();
            if lower_ids.contains(&own) {
                etc.write_file(mid, b"", 0o444)?;
                report.warnings.push(format!(
                    "etc/machine-id in upper/ was the lower layer's id {own}; reset to empty"
                ));
            }
        }
        _ => etc.write_file(mid, b"", 0o444)?,
    }
    // systemd initialises an empty /etc/machine-id from
    // /var/lib/dbus/machine-id when that exists, which in a clone of the
    // host (or a shared image) is the host's (image's) id: point it at
    // /etc/machine-id instead, as systemd and D-Bus recommend.
    dbus_machine_id_link(&upper, &lower, &attrs)?;
    // Only with the host's network: nspawn's --resolv-conf=auto then copies
    // the host's DNS configuration, but not over a symlink. With a private
    // network auto leaves the file alone, and the guest's own (often a
    // symlink to its resolved stub) must stay.
    let resolv = OsStr::new("resolv.conf");
    if opts.host_network && !matches!(etc.entry(resolv)?, Entry::File { .. }) {
        etc.write_file(resolv, RESOLV_PLACEHOLDER.as_bytes(), 0o644)?;
    }

    // The guest manager's DefaultEnvironment= (or its removal).
    crate::service_env::apply(&upper, &lower, &opts.service_environment)?;

    // 5. Clone of the host: stubs and masks.
    let system_rel = Path::new("etc/systemd/system");
    let mut masks: Vec<OsString> = Vec::new();
    if opts.host_clone {
        stub(&etc, &lower, "fstab", true)?;
        // A host crypttab makes systemd-cryptsetup-generator wait for
        // devices that never appear in a container (90 s per entry).
        for f in ["crypttab", "integritytab", "veritytab"] {
            stub(&etc, &lower, f, false)?;
        }
        // With /etc/systemd/system opaque the host's units and enablement
        // symlinks there are hidden already; nothing to mask.
        if !covered_by_opaque(opts, system_rel) {
            masks.extend(host_units_to_mask(&lower)?);
        }
    }
    if opts.host_network {
        masks.push("systemd-resolved.service".into());
    }
    // systemd-container's var-lib-machines.mount (a loopback image for
    // machined's pool) has nothing to mount without /var/lib/machines.raw,
    // yet its job holds local-fs.target back until systemd's mountinfo rate
    // limit lifts: about 0.9 s of every boot of a clone of a host that runs
    // sdme (measured on systemd 257).
    if lower_has_unit(&lower, "var-lib-machines.mount")
        && lower
            .read_small(Path::new("var/lib/machines.raw"), 0)
            .is_none()
        && lower.dir_attrs(Path::new("var/lib/machines.raw")).is_none()
    {
        masks.push("var-lib-machines.mount".into());
    }
    let system_opaque = opts.opaque.iter().any(|o| o == system_rel);
    let alias = if system_opaque {
        match lower_dbus_alias(&lower) {
            Ok(a) => a,
            Err(w) => {
                report.warnings.push(w);
                None
            }
        }
    } else {
        None
    };
    if !masks.is_empty() || alias.is_some() {
        let system = upper.walk_create(system_rel, &attrs)?;
        for m in &masks {
            match system.entry(m)? {
                Entry::Missing | Entry::Whiteout => {
                    system.symlink(m, OsStr::new("/dev/null"))?;
                    report.masked.push(m.to_string_lossy().into_owned());
                }
                Entry::Symlink if system.readlink(m)? == "/dev/null" => {
                    report.masked.push(m.to_string_lossy().into_owned());
                }
                _ => {} // the container's own unit file or link: keep it
            }
        }
        if let Some(target) = alias {
            let name = OsStr::new("dbus.service");
            let replace = match system.entry(name)? {
                Entry::Missing | Entry::Whiteout => true,
                // Our earlier copy (or an equivalent alias): refresh it.
                Entry::Symlink => valid_dbus_alias_target(&system.readlink(name)?),
                _ => false, // the container's own dbus.service: keep it
            };
            if replace {
                system.symlink(name, &target)?;
            }
            report.dbus_alias = Some(target.to_string_lossy().into_owned());
        }
    }

    // 6. An opaque /var/log hides the lower's journal directory, and
    //    journald then keeps the guest's journal in /run only: recreate the
    //    directory (with the lower's mode and group) so that the guest's
    //    logs persist across stops, as they do in the lower system.
    let journal = Path::new("var/log/journal");
    if covered_by_opaque(opts, journal) && lower.dir_attrs(journal).is_some() {
        upper.walk_create(journal, &attrs)?;
    }

    // 7. With PrivateUsers= nspawn cannot create its mount points itself.
    if opts.userns_base.is_some() {
        ensure_mount_points(&upper, &lower)?;
        for (src, dst) in &opts.binds {
            crate::bindpoint::ensure(&upper, &lower, dst, bind_source_is_file(src))
                .with_context(|| format!("the mount point /{} of Bind=", dst.display()))?;
        }
    }

    // 8. The application (App=): its tree mounted at STATE/app/merged
    //    (see crate::app for why there), its unit in the guest.
    let run = match &opts.app {
        Some(a) => Some(crate::app::prepare(
            &opts.app_dirs,
            &opts.machine,
            state,
            opts.userns_base,
            a,
        )?),
        None => None,
    };
    let source = (opts.source.as_ref()).map_or_else(
        || "the container's file".to_string(),
        |p| p.display().to_string(),
    );
    crate::app::write_unit(&upper, &attrs, opts.app.as_ref().zip(run.as_ref()), &source)?;

    // 9. Template instances mount the overlay themselves.
    if opts.action == Action::Mount {
        match opts.userns_base {
            Some(base) => {
                crate::idmap::mount_overlay(&opts.machine, lower_path, state, &merged, base)?
            }
            None => overlay::mount_overlay(lower_path, state)?,
        }
        report.mounted = true;
    }
    Ok(report)
}

/// A `--bind=SPEC`: its source and its destination as a container path.
fn bind_point(spec: &str) -> Result<(String, PathBuf)> {
    let (src, dst) = sdme_core::bindspec::source_and_destination(spec);
    Ok((src.to_string(), container_rel_path(dst)?))
}

/// A bind of a file needs a file as its mount point; a source relative to
/// the container (`+`) or missing gets a directory (nspawn reports a
/// missing source itself).
fn bind_source_is_file(src: &str) -> bool {
    !src.starts_with('+') && std::fs::metadata(src).is_ok_and(|m| !m.is_dir())
}

/// The directories nspawn mounts on or writes to at the top of the tree,
/// and their modes when the lower layer has none.
pub const MOUNT_POINTS: [(&str, u32); 6] = [
    ("dev", 0o755),
    ("proc", 0o755),
    ("run", 0o755),
    ("sys", 0o755),
    ("tmp", 0o1777),
    ("root", 0o700),
];

/// Create in `upper/` the mount points nspawn needs that neither layer
/// has (many OCI images lack `/tmp`). On an overlay of ID-mapped layers
/// nspawn, as host root (no ID in the mapping), cannot create them:
/// mkdir fails with EOVERFLOW. They are owned by 0 on disk, the
/// container's root (the mapped layers show them as the UID base).
pub fn ensure_mount_points(upper: &SafeDir, lower: &Lower) -> Result<()> {
    let top = lower.open_dir(Path::new("."))?;
    for (name, mode) in MOUNT_POINTS {
        let name = OsStr::new(name);
        let in_lower = top
            .as_ref()
            .is_some_and(|d| d.entry(name) != Entry::Missing);
        // A whiteout hides the lower's: the container deleted it.
        let needed = match upper.entry(name)? {
            Entry::Missing => !in_lower,
            Entry::Whiteout => true,
            _ => false,
        };
        if needed {
            let attrs = DirAttrs {
                mode,
                uid: 0,
                gid: 0,
            };
            upper.subdir(name, attrs).with_context(|| {
                format!(
                    "/{} is missing from the rootfs, and PrivateUsers= needs it",
                    name.to_string_lossy()
                )
            })?;
        }
    }
    Ok(())
}

/// Whether the lower layer ships a unit file of that name.
fn lower_has_unit(lower: &Lower, unit: &str) -> bool {
    ["usr/lib/systemd/system", "lib/systemd/system"]
        .iter()
        .any(|d| lower.read_small(&Path::new(d).join(unit), 0).is_some())
}

/// The machine ids in the lower layer (its /etc/machine-id and
/// /var/lib/dbus/machine-id), trimmed, non-empty.
fn lower_machine_ids(lower: &Lower) -> Vec<String> {
    ["etc/machine-id", "var/lib/dbus/machine-id"]
        .iter()
        .filter_map(|p| lower.read_small(Path::new(p), 128))
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Put `var/lib/dbus/machine-id -> /etc/machine-id` into upper/ when the
/// lower has that file as anything else and the container has not put its
/// own there.
fn dbus_machine_id_link(
    upper: &SafeDir,
    lower: &Lower,
    attrs: &dyn Fn(&Path) -> DirAttrs,
) -> Result<()> {
    let rel = Path::new("var/lib/dbus");
    let name = OsStr::new("machine-id");
    let Some(ldir) = lower.open_dir(rel)? else {
        return Ok(());
    };
    let follows_etc = |t: OsString| t == "/etc/machine-id" || t == "../../../etc/machine-id";
    match ldir.entry(name) {
        Entry::Missing => return Ok(()),
        Entry::Symlink if ldir.readlink(name).is_some_and(follows_etc) => return Ok(()),
        _ => {}
    }
    let dir = upper.walk_create(rel, attrs)?;
    if matches!(dir.entry(name)?, Entry::Missing | Entry::Whiteout) {
        dir.symlink(name, OsStr::new("/etc/machine-id"))?;
    }
    Ok(())
}

/// Write a comment-only stub for `etc/NAME` when the container has no
/// regular file of its own there (`always`: even when the host has none).
fn stub(etc: &SafeDir, lower: &Lower, name: &str, always: bool) -> Result<()> {
    let n = OsStr::new(name);
    if !always {
        let in_lower = lower
            .open_dir(Path::new("etc"))?
            .is_some_and(|d| d.entry(n) != Entry::Missing);
        if !in_lower {
            return Ok(());
        }
    }
    if !matches!(etc.entry(n)?, Entry::File { .. }) {
        etc.write_file(n, STUB.as_bytes(), 0o644)?;
    }
    Ok(())
}

/// Unmount STATE/merged if an overlay is mounted there (the container's
/// `ExecStopPost=`, so that `systemctl stop` returns with the overlay
/// unmounted). Never lazily: a detached overlay would live on unseen while
/// the next start mounts a second one on the same upper/work directories
/// (overlayfs does not support that), and a script that removes the state
/// directory after stop would not learn that something still used it. A
/// busy overlay is an error at once, naming the mount point: waiting
/// would only hide whoever holds it; left mounted, the next start reuses
/// it.
pub fn unmount(state: &Path) -> Result<()> {
    use nix::mount::{umount2, MntFlags};
    // The application's tree first (nothing there without App=).
    crate::app::unmount(state)?;
    let merged = overlay::merged_dir(state);
    while overlay::overlay_mounted(&merged)? {
        match umount2(&merged, MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => {}                                     // stacked mounts: check again
            Err(nix::errno::Errno::EINVAL) => return Ok(()), // not a mount point (raced)
            Err(nix::errno::Errno::EBUSY) => bail!(
                "cannot unmount the overlay at {m}: it is busy (a process still uses it or \
                 something is mounted below it; see fuser -vm {m} and findmnt -R {m}); \
                 left mounted, the next start reuses it",
                m = merged.display()
            ),
            Err(e) => bail!("cannot unmount the overlay at {}: {e}", merged.display()),
        }
    }
    Ok(())
}

/// At stop, the unit (other than `--unit`) that the record of the machine
/// names: the last prepare step of that machine was another unit's.
fn other_owner(opts: &Options) -> Option<String> {
    let me = opts.unit.as_deref()?;
    let owner = sdme_core::inuse::read(&opts.records, &opts.machine)?.unit?;
    (owner != me).then_some(owner)
}

/// Entry point shared by the binary and tests: run the action.
pub fn run(opts: &Options) -> Result<Report> {
    match opts.action {
        Action::Unmount => {
            if let Some(owner) = other_owner(opts) {
                // The machine name moved to another file while both ran
                // (sdme.container(5), "CHANGING A RUNNING CONTAINER"):
                // the overlay is that unit's, not ours.
                let mut report = Report::default();
                report.warnings.push(format!(
                    "the overlay of machine {} is in use by {owner} (its record in {}); \
                     not unmounted",
                    opts.machine,
                    opts.records.display()
                ));
                return Ok(report);
            }
            // The record goes before the unmount: in a restart, the next
            // prepare step runs as soon as systemd sees the overlay gone
            // (the mount unit's restart job then ends) and writes its
            // own record, which a removal after the unmount would delete.
            // It comes back if the overlay stays mounted.
            let record = sdme_core::inuse::read(&opts.records, &opts.machine);
            crate::stop::end_use(&opts.records, &opts.machine)?;
            crate::app::forget_pod(&opts.app_dirs, opts.unit.as_deref())?;
            if let Err(e) = unmount(&opts.state) {
                if let Some(r) = &record {
                    let _ = sdme_core::inuse::write(&opts.records, r);
                }
                return Err(e);
            }
            // Left only by a prepare that was killed between its mounts.
            crate::idmap::release(&opts.machine)?;
            crate::idmap::release(&format!("{}@app", opts.machine))?;
            let mut report = Report::default();
            if opts.mount_unit {
                report
                    .warnings
                    .extend(crate::stop::wait_mount_unit_inactive(&overlay::merged_dir(
                        &opts.state,
                    )));
            }
            Ok(report)
        }
        Action::Prepare | Action::Mount => prepare(opts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sys(enabled: Option<&str>, profiles: Option<&str>) -> tempdir::Dir {
        let d = tempdir::Dir::new();
        if let Some(e) = enabled {
            let p = d.0.join("sys/module/apparmor/parameters");
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("enabled"), e).unwrap();
        }
        if let Some(l) = profiles {
            let p = d.0.join("sys/kernel/security/apparmor");
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("profiles"), l).unwrap();
        }
        d
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                use std::sync::atomic::{AtomicUsize, Ordering};
                static N: AtomicUsize = AtomicUsize::new(0);
                let p = std::env::temp_dir().join(format!(
                    "sdme-apparmor-test-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::SeqCst)
                ));
                let _ = std::fs::remove_dir_all(&p);
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn apparmor_without_kernel_support_is_ignored() {
        let d = sys(None, None);
        assert!(!check_apparmor(&d.0, "sdme-default").unwrap());
        let d = sys(Some("N\n"), Some("sdme-default (enforce)\n"));
        assert!(!check_apparmor(&d.0, "sdme-default").unwrap());
        assert_eq!(
            apparmor_ignored("p"),
            "AppArmorProfile=p ignored: the kernel does not run AppArmor"
        );
    }

    #[test]
    fn apparmor_profile_must_be_loaded() {
        let list =
            "/usr/bin/man (enforce)\nsdme-default (complain)\nsdme-default//null-x (enforce)\n";
        let d = sys(Some("Y\n"), Some(list));
        assert!(check_apparmor(&d.0, "sdme-default").unwrap());
        assert!(check_apparmor(&d.0, "/usr/bin/man").unwrap());
        let e = format!("{:#}", check_apparmor(&d.0, "sdme").unwrap_err());
        assert!(e.contains("profile 'sdme' is not loaded"), "{e}");
        assert!(e.contains("apparmor_parser -r /etc/apparmor.d/sdme"), "{e}");
        assert!(e.contains("package apparmor"), "{e}");
        let d = sys(Some("Y\n"), None);
        let e = format!("{:#}", check_apparmor(&d.0, "sdme-default").unwrap_err());
        assert!(e.contains("cannot be read"), "{e}");
    }

    #[test]
    fn bind_option() {
        let a = |extra: &[&str]| {
            let mut v = vec!["--lower=/", "--state=/var/lib/sdme/containers/w"];
            v.extend_from_slice(extra);
            v.push("w");
            parse_args(v.iter().map(OsString::from).collect())
        };
        let o = a(&[
            "--mount",
            "--private-users=yes",
            "--bind=/a:/b/c:idmap",
            "--bind=+/d",
        ])
        .unwrap();
        assert_eq!(
            o.binds,
            [
                ("/a".to_string(), PathBuf::from("b/c")),
                ("+/d".into(), "d".into())
            ]
        );
        let e = a(&["--bind=/a:/b"]).unwrap_err().to_string();
        assert!(e.contains("--private-users only"), "{e}");
        let e = format!(
            "{:#}",
            a(&["--mount", "--private-users=yes", "--bind=/a:/../x"]).unwrap_err()
        );
        assert!(e.contains("--bind=/a:/../x"), "{e}");
    }

    #[test]
    fn apparmor_profile_option() {
        let a = |v: &str| {
            parse_args(
                ["--lower=/", "--state=/var/lib/sdme/containers/w", v, "w"]
                    .iter()
                    .map(OsString::from)
                    .collect(),
            )
        };
        let o = a("--apparmor-profile=sdme-default").unwrap();
        assert_eq!(o.apparmor_profile.as_deref(), Some("sdme-default"));
        assert!(a("--apparmor-profile=a b").is_err());
        assert!(a("--apparmor-profile=/").is_err());
    }
}
