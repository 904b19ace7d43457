//! Creating, starting, stopping and restarting containers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use sdme_core::escape::mount_unit_name;
use sdme_core::inuse;
use sdme_core::paths::container_dir;
use sdme_core::render::unit_service_name;
use sdme_core::search::{search, FileType, UnitName};

use crate::create::{self, CreateOpts, ETC_DIR};
use crate::lookup::{config, dirs, load, load_unit, service};
use crate::names;
use crate::sys::{self, Bus};
use sdme_helpers::dbus::Value;

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
    start_verb(name, "StartUnit")
}

/// `sdme restart`: stop and start in one systemd job (the overlay's mount
/// unit, PartOf= the service, is restarted with it).
pub fn restart(name: &str) -> Result<()> {
    start_verb(name, "RestartUnit")
}

/// A start's job: the container's boot, as long as BootTimeout= allows
/// (systemd enforces it); this bound only guards against a lost signal.
const START_WAIT: Duration = Duration::from_secs(24 * 3600);
const STOP_WAIT: Duration = Duration::from_secs(90);
const TERM_WAIT: Duration = Duration::from_secs(30);
const KILL_WAIT: Duration = Duration::from_secs(15);

/// Exit status of a start that Ctrl+C ended (128 + SIGINT).
pub const INTERRUPTED_EXIT: u8 = 130;

/// Ctrl+C during a start: the container was stopped again.
#[derive(Debug)]
pub struct Interrupted(pub String);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted: {} stopped again", self.0)
    }
}

impl std::error::Error for Interrupted {}

fn start_verb(name: &str, method: &str) -> Result<()> {
    load(name)?;
    let unit = service(name);
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    sys::catch_sigint();
    let mut bus = Bus::system()?;
    bus.end_on_sigint();
    bus.subscribe_jobs()?;
    let result = match bus.job(method, &unit, START_WAIT) {
        Ok(r) => r,
        Err(_) if sys::take_interrupt() => return Err(undo_start(name, &unit)),
        Err(e) => return Err(e),
    };
    if result == "done" {
        return Ok(());
    }
    // What the unit logged during this start: the helpers' reason
    // (boot-wait, sdme-explain), nspawn's lines, and the guest's console
    // with LogConsole=yes.
    let _ = Command::new("journalctl")
        .args(["--no-pager", "-o", "cat", "-n", "20", "-u", &unit])
        .arg(format!("--since=@{since}"))
        .status();
    let why = match bus.unit_property(&unit, "org.freedesktop.systemd1.Service", "Result") {
        Ok(Value::Str(r)) if r != "success" => format!(", Result={r}"),
        _ => String::new(),
    };
    bail!("{unit} did not start (job result: {result}{why})")
}

/// Ctrl+C during a start: stop what was started, on a fresh connection
/// (the interrupted one may hold half a message), and say so.
fn undo_start(name: &str, unit: &str) -> anyhow::Error {
    let stopped = Bus::system().and_then(|mut b| {
        b.subscribe_jobs()?;
        b.job("StopUnit", unit, STOP_WAIT)?;
        // The canceled start leaves the unit failed: asked for, not a
        // failure to keep listed.
        if b.active_state(unit)? == "failed" {
            b.reset_failed(unit)?;
        }
        Ok(())
    });
    if let Err(e) = stopped {
        return e.context(format!("interrupted; stopping {name} again failed"));
    }
    if let Err(e) = unmounted(&UnitName::Plain(name.into())) {
        return e.context("interrupted");
    }
    anyhow::Error::new(Interrupted(name.into()))
}

/// How `stop` ends the container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// StopUnit: the guest shuts down (SIGTERM to nspawn, which halts
    /// the guest's init); 90 s.
    Graceful,
    /// machined's TerminateMachine, then wait for the unit; 30 s.
    Term,
    /// SIGKILL to every process of the unit, no shutdown in the guest,
    /// then stop and reset-failed; 15 s.
    Kill,
}

pub fn stop(name: &str, mode: StopMode) -> Result<()> {
    create::check_name(name)?;
    stop_unit(&UnitName::Plain(name.into()), mode)
}

pub fn stop_unit(name: &UnitName, mode: StopMode) -> Result<()> {
    let c = load_unit(name)?;
    let unit = unit_service_name(name);
    let mut bus = Bus::system()?;
    bus.subscribe_jobs()?;
    match mode {
        StopMode::Graceful => job_done(&mut bus, "StopUnit", &unit, STOP_WAIT)?,
        StopMode::Term => {
            let machine = c.running_as.clone().unwrap_or_else(|| c.machine.clone());
            bus.terminate_machine(&machine)?;
            if bus.wait_inactive(&unit, TERM_WAIT)? == "failed" {
                // Asked for: not a failure to keep listed.
                bus.reset_failed(&unit)?;
            }
        }
        StopMode::Kill => {
            let deadline = Instant::now() + KILL_WAIT;
            if !matches!(bus.active_state(&unit)?.as_str(), "inactive" | "failed") {
                // The unit then runs its ExecStopPost= (the unmount) and
                // ends failed (killed by a signal). A stop job queued
                // meanwhile would cut that short: wait for the end first.
                bus.kill_unit(&unit, libc::SIGKILL)?;
                bus.wait_inactive(&unit, KILL_WAIT)?;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            job_done(
                &mut bus,
                "StopUnit",
                &unit,
                left.max(Duration::from_secs(1)),
            )?;
            if bus.active_state(&unit)? == "failed" {
                // Asked for: not a failure to keep listed.
                bus.reset_failed(&unit)?;
            }
        }
    }
    // The overlay's mount unit stops in a job of its own; wait for it
    // too, so that a following rm never meets a mounted tree.
    let merged = container_dir(&c.machine).join("merged");
    if !sys::mounts_below(&merged)?.is_empty() && !c.helper_mounts() {
        let m = mount_unit_name(&merged.to_string_lossy()).map_err(anyhow::Error::msg)?;
        job_done(&mut bus, "StopUnit", &m, STOP_WAIT)?;
    }
    unmounted(name)?;
    if mode == StopMode::Kill {
        end_use_after_kill(&c.running_as.unwrap_or(c.machine), &unit)?;
    }
    Ok(())
}

/// SIGKILL to every process of the unit also kills its own stop step
/// (ExecStopPost=, `sdme-prepare --unmount`) when it was already
/// running: once the overlay is unmounted, remove the use record as that
/// step would have (sdme_core::inuse), if the record is this unit's.
fn end_use_after_kill(machine: &str, unit: &str) -> Result<()> {
    let dir = Path::new(inuse::RECORD_DIR);
    if inuse::read(dir, machine).and_then(|r| r.unit).as_deref() == Some(unit) {
        inuse::remove(dir, machine)
            .with_context(|| format!("removing {}", dir.join(machine).display()))?;
    }
    Ok(())
}

/// A job that must end "done".
fn job_done(bus: &mut Bus, method: &str, unit: &str, wait: Duration) -> Result<()> {
    match bus.job(method, unit, wait)?.as_str() {
        "done" => Ok(()),
        r => bail!("{unit}: {method} job {r}"),
    }
}

/// Nothing mounted below the container's overlay any more.
fn unmounted(name: &UnitName) -> Result<()> {
    let c = load_unit(name)?;
    let merged = container_dir(&c.machine).join("merged");
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
