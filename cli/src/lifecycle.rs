//! Creating, starting, stopping and restarting containers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use sdme_core::escape::mount_unit_name;
use sdme_core::paths::container_dir;
use sdme_core::render::unit_service_name;
use sdme_core::search::{search, FileType, UnitName};

use crate::create::{self, CreateOpts, ETC_DIR};
use crate::lookup::{config, dirs, load, load_unit, service};
use crate::names;
use crate::sys;

/// `create` with NAME or, without, a generated name; returns the name
/// and the file.
pub fn create_named(name: Option<&str>, opts: &CreateOpts) -> Result<(String, PathBuf)> {
    create::check_umask(create::current_umask())?;
    let name = match name {
        Some(n) => n.to_string(),
        None => {
            let dirs = dirs();
            names::generate(|n| names::in_use(&dirs, n))?
        }
    };
    let path = create(&name, opts)?;
    Ok((name, path))
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
