//! The commands, on the files and on systemd.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use sdme_core::config::Config;
use sdme_core::container::{Container, Rootfs};
use sdme_core::escape::mount_unit_name;
use sdme_core::paths::{container_dir, unit_dirs};
use sdme_core::render::{prepare_unit_name, unit_service_name};
use sdme_core::search::{search, FileType, Found, UnitName};

use crate::create::{self, CreateOpts, ETC_DIR};
use crate::sys;

pub fn dirs() -> Vec<PathBuf> {
    let (dirs, errors) = unit_dirs();
    for e in errors {
        eprintln!("sdme: {e}");
    }
    dirs
}

pub fn config(dirs: &[PathBuf]) -> Config {
    // The generator reports the configuration's own errors; here only
    // the values matter.
    Config::load(dirs).0
}

pub fn service(name: &str) -> String {
    unit_service_name(&UnitName::Plain(name.into()))
}

/// The container named `name`, validated as the generator does.
fn load(name: &str) -> Result<Container> {
    create::check_name(name)?;
    load_unit(&UnitName::Plain(name.into()))
}

/// The container of the file `name` (an instance too), validated.
fn load_unit(name: &UnitName) -> Result<Container> {
    let dirs = dirs();
    let found = search(&dirs, FileType::Container)
        .found
        .into_iter()
        .find(|f| f.name == *name)
        .with_context(|| {
            let n = name.stem();
            format!("no container {n} (no {n}.container on the search path)")
        })?;
    Container::load_with(&found, &config(&dirs)).map_err(|d| {
        let lines: Vec<String> = d.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("{}", lines.join("\n"))
    })
}

pub fn create(name: &str, opts: &CreateOpts) -> Result<PathBuf> {
    create::check_name(name)?;
    let dirs = dirs();
    if let Some(p) = create::existing(&dirs, name) {
        bail!("container {name} exists already: {}", p.display());
    }
    let text = create::render(opts)?;
    let path = Path::new(ETC_DIR).join(format!("{name}.container"));
    if let Err(errors) = create::validate(name, &path, &text, &config(&dirs)) {
        bail!("{}", errors.join("\n"));
    }
    let path = create::write_new(Path::new(ETC_DIR), name, &text)?;
    sys::daemon_reload()?;
    Ok(path)
}

/// create + start (+ exec). `join` is not there yet: without a command,
/// `new` leaves the container running and says how to get in. A failed
/// start removes what `new` created.
pub fn new(name: &str, opts: &CreateOpts, remove: bool, command: &[String]) -> Result<ExitCode> {
    create(name, opts)?;
    if let Err(e) = start(name) {
        if let Err(e2) = rm(name, true) {
            eprintln!("sdme: removing {name} again: {e2:#}");
        }
        return Err(e.context(format!("{name} did not start and was removed")));
    }
    if command.is_empty() {
        println!("{name} is running; enter it with: machinectl shell {name}");
        return Ok(ExitCode::SUCCESS);
    }
    if !remove {
        return exec(name, command);
    }
    // --rm: run COMMAND as a child, then remove; COMMAND's status is ours.
    let mut child = exec_command(&load(name)?.machine, command)
        .spawn()
        .context("running systemd-run")?;
    // Ctrl+C is for COMMAND (the child, spawned with the default
    // disposition): sdme stays to remove the container.
    // SAFETY: setting a signal disposition to SIG_IGN installs no handler.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    let st = child.wait().context("waiting for systemd-run")?;
    rm(name, true)?;
    let code = st
        .code()
        .or_else(|| st.signal().map(|s| 128 + s))
        .unwrap_or(1);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

pub fn start(name: &str) -> Result<()> {
    start_verb(name, "start")
}

/// `sdme restart`: stop and start in one systemd job (the overlay's mount
/// unit, PartOf= the service, is restarted with it).
pub fn restart(name: &str) -> Result<()> {
    start_verb(name, "restart")
}

fn start_verb(name: &str, verb: &str) -> Result<()> {
    load(name)?;
    let unit = service(name);
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if sys::run("systemctl", &[verb, &unit]).is_err() {
        // What the unit logged during this start: the helpers' reason
        // (boot-wait, sdme-explain), nspawn's lines, and the guest's
        // console with LogConsole=yes.
        let _ = Command::new("journalctl")
            .args(["--no-pager", "-o", "cat", "-n", "20", "-u", &unit])
            .arg(format!("--since=@{since}"))
            .status();
        bail!("{verb}ing {unit} failed");
    }
    Ok(())
}

/// How `stop` ends the container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// The guest shuts down (systemctl stop: SIGTERM to nspawn, which
    /// halts the guest's init).
    Graceful,
    /// SIGKILL to every process of the unit, no shutdown in the guest.
    Kill,
}

pub fn stop(name: &str, mode: StopMode) -> Result<()> {
    create::check_name(name)?;
    stop_unit(&UnitName::Plain(name.into()), mode)
}

fn stop_unit(name: &UnitName, mode: StopMode) -> Result<()> {
    let c = load_unit(name)?;
    let unit = unit_service_name(name);
    let killed = mode == StopMode::Kill && sys::active_state(&unit)? != "inactive";
    if killed {
        // The unit then runs its ExecStopPost= (the unmount) and ends
        // failed (killed by a signal); the stop below waits for that.
        sys::run("systemctl", &["kill", "--signal=SIGKILL", &unit])?;
    }
    sys::run("systemctl", &["stop", &unit])?;
    if killed && sys::active_state(&unit)? == "failed" {
        // Asked for: not a failure to keep listed.
        sys::run("systemctl", &["reset-failed", &unit])?;
    }
    // The overlay's mount unit stops in a job of its own; wait for it
    // too, so that a following rm never meets a mounted tree.
    let merged = container_dir(&c.machine).join("merged");
    if !sys::mounts_below(&merged)?.is_empty() && !c.helper_mounts() {
        let m = mount_unit_name(&merged.to_string_lossy()).map_err(anyhow::Error::msg)?;
        sys::run("systemctl", &["stop", &m])?;
    }
    if let Some(m) = sys::mounts_below(&merged)?.first() {
        bail!("{} stopped, but {m} is still mounted", name.stem());
    }
    Ok(())
}

/// `stop --all`: every container (instances too) whose unit is not
/// stopped; all are tried, every failure is printed.
pub fn stop_all(mode: StopMode) -> Result<()> {
    let found: Vec<UnitName> = search(&dirs(), FileType::Container)
        .found
        .into_iter()
        .map(|f| f.name)
        .filter(|n| !matches!(n, UnitName::Template(_)))
        .collect();
    let units: Vec<String> = found.iter().map(unit_service_name).collect();
    let mut failed = 0;
    let mut running = 0;
    for (n, (active, _)) in found.iter().zip(sys::states(&units)?) {
        if matches!(active.as_str(), "inactive" | "failed") {
            continue;
        }
        running += 1;
        if let Err(e) = stop_unit(n, mode) {
            eprintln!("sdme: {e:#}");
            failed += 1;
        }
    }
    if failed > 0 {
        bail!("{failed} of {running} failed");
    }
    Ok(())
}

/// Remove a file or a tree without following symlinks: a symlink is
/// removed as a link (std's remove_dir_all does not follow links below).
fn remove_tree(p: &Path) -> Result<()> {
    match p.symlink_metadata() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("inspecting {}", p.display())),
        Ok(m) if m.is_dir() => {
            std::fs::remove_dir_all(p).with_context(|| format!("removing {}", p.display()))
        }
        Ok(_) => std::fs::remove_file(p).with_context(|| format!("removing {}", p.display())),
    }
}

/// `rm` removes only `/etc/sdme/NAME.container` (whoever wrote it: the
/// file is the container, however it was made) with its drop-ins in
/// `/etc/sdme/NAME.container.d/`, then the state. Files elsewhere on the
/// search path belong to the vendor or to runtime tools: refused.
pub fn rm(name: &str, force: bool) -> Result<()> {
    create::check_name(name)?;
    let dirs = dirs();
    let etc = Path::new(ETC_DIR).join(format!("{name}.container"));
    let files: Vec<PathBuf> = dirs
        .iter()
        .map(|d| d.join(format!("{name}.container")))
        .filter(|p| p.symlink_metadata().is_ok())
        .collect();
    match files.first() {
        None => bail!("no container {name} (no {name}.container on the search path)"),
        Some(p) if *p != etc => bail!(
            "{name} is defined by {}, not by a file in {ETC_DIR}; sdme rm does not remove vendor or runtime files (mask it with a symlink to /dev/null in {ETC_DIR})",
            p.display()
        ),
        Some(_) => {}
    }
    if let Some(other) = files.get(1) {
        bail!(
            "removing {} would bring back {}, which defines {name} too; remove or mask that one instead",
            etc.display(),
            other.display()
        );
    }
    if std::fs::read_link(&etc).is_ok_and(|t| t == Path::new("/dev/null")) {
        bail!(
            "{} masks {name}; remove the link by hand to unmask it",
            etc.display()
        );
    }
    // The machine name (MachineName=) decides the state directory; a
    // file with errors has no machine name but its file name.
    let machine = load(name).map_or_else(|_| name.to_string(), |c| c.machine);
    let unit = service(name);
    let state = sys::active_state(&unit)?;
    if !matches!(state.as_str(), "inactive" | "failed") {
        if !force {
            bail!("{name} is {state}; stop it first or use rm -f");
        }
        stop(name, StopMode::Graceful)?;
    }
    let dir = container_dir(&machine);
    if let Some(m) = sys::mounts_below(&dir)?.first() {
        bail!("{m} is still mounted; nothing removed");
    }
    std::fs::remove_file(&etc).with_context(|| format!("removing {}", etc.display()))?;
    remove_tree(&Path::new(ETC_DIR).join(format!("{name}.container.d")))?;
    sys::daemon_reload()?;
    // A failed start leaves failed units that would stay listed.
    let mut units = vec![unit, prepare_unit_name(&machine)];
    if let Ok(m) = mount_unit_name(&dir.join("merged").to_string_lossy()) {
        units.push(m);
    }
    for (u, (active, _)) in units.iter().zip(sys::states(&units)?) {
        if active == "failed" {
            sys::run("systemctl", &["reset-failed", u])?;
        }
    }
    // Checked again: a start between the two checks would be refused by
    // systemd now that the file is gone, but a mount by hand would not.
    if let Some(m) = sys::mounts_below(&dir)?.first() {
        bail!("{m} is mounted; {} kept", dir.display());
    }
    remove_tree(&dir)
}

fn rootfs_label(r: &Rootfs) -> String {
    match r {
        Rootfs::Host => "(host)".into(),
        Rootfs::Named(n) => n.clone(),
        Rootfs::Dir(d) => d.clone(),
    }
}

fn status_word(active: &str, sub: &str) -> String {
    match active {
        "active" => "running".into(),
        "inactive" => "stopped".into(),
        "activating" => "starting".into(),
        "deactivating" => "stopping".into(),
        "failed" => "failed".into(),
        _ => format!("{active}/{sub}"),
    }
}

/// One row per file on the search path (bare templates are not listed:
/// their instances are).
pub fn ps() -> Result<()> {
    let dirs = dirs();
    let config = config(&dirs);
    let found: Vec<Found> = search(&dirs, FileType::Container)
        .found
        .into_iter()
        .filter(|f| !matches!(f.name, UnitName::Template(_)))
        .collect();
    let units: Vec<String> = found.iter().map(|f| unit_service_name(&f.name)).collect();
    let states = sys::states(&units)?;
    let mut rows = vec![(
        "NAME".to_string(),
        "ROOTFS".to_string(),
        "STATE".to_string(),
    )];
    for (f, (active, sub)) in found.iter().zip(states) {
        let (rootfs, state) = match Container::load_with(f, &config) {
            Ok(c) => (rootfs_label(&c.rootfs), status_word(&active, &sub)),
            Err(_) => ("-".into(), "file error".into()),
        };
        rows.push((f.name.stem(), rootfs, state));
    }
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (n, r, s) in rows {
        out.push_str(&format!("{n:w0$}  {r:w1$}  {s}\n"));
    }
    write_stdout(out.as_bytes())
}

/// Write all of `out`; a closed pipe (`sdme ps | head -1`) is not an error.
pub fn write_stdout(out: &[u8]) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().write_all(out) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to stdout"),
    }
}

/// Run `command` in the running container: systemd-run forwards the
/// exit status (machinectl shell does not, DESIGN.md), and sdme becomes
/// it, so signals and the status pass through unchanged.
pub fn exec(name: &str, command: &[String]) -> Result<ExitCode> {
    let c = load(name)?;
    let state = sys::active_state(&service(name))?;
    if state != "active" {
        bail!("{name} is not running ({state})");
    }
    let e = exec_command(&c.machine, command).exec();
    Err(e).context("running systemd-run")
}

fn exec_command(machine: &str, command: &[String]) -> Command {
    let mut cmd = Command::new("systemd-run");
    cmd.args(["-M", machine, "--wait", "--pipe", "-q", "--collect", "--"])
        .args(command);
    cmd
}

pub fn logs(name: &str, follow: bool, lines: Option<u32>) -> Result<ExitCode> {
    load(name)?;
    let mut cmd = Command::new("journalctl");
    cmd.args(["-u", &service(name)]);
    if follow {
        cmd.arg("-f");
    }
    if let Some(n) = lines {
        cmd.arg(format!("--lines={n}"));
    }
    Err(cmd.exec()).context("running journalctl")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_tree_removes_links_not_targets() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        let state = d.path().join("state");
        std::fs::create_dir_all(state.join("a/b")).unwrap();
        std::os::unix::fs::symlink(&outside, state.join("upper")).unwrap();
        std::os::unix::fs::symlink(&outside, state.join("a/b/link")).unwrap();
        remove_tree(&state).unwrap();
        assert!(!state.exists());
        assert!(outside.join("keep").exists());
        // A state directory that is itself a link: the link goes.
        let link = d.path().join("evil");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        remove_tree(&link).unwrap();
        assert!(link.symlink_metadata().is_err());
        assert!(outside.join("keep").exists());
        remove_tree(&link).unwrap();
    }

    #[test]
    fn status_words() {
        assert_eq!(status_word("active", "running"), "running");
        assert_eq!(status_word("failed", "failed"), "failed");
        assert_eq!(status_word("reloading", "x"), "reloading/x");
    }
}
