//! sdme-boot-wait: run as `ExecStartPost=` after the guest's READY=1,
//! wait until the machine is registered with machined, its system bus
//! answers with systemd on it, and each `--wait-for` unit is active; all
//! before the boot timeout (see sdme-boot-wait(8)).
//!
//! How each step is checked, cheapest first:
//!
//! 1. registration: machined's state file `/run/systemd/machines/NAME`
//!    (written when nspawn registers, removed when the machine goes away)
//!    names the `LEADER=` pid; the leader must still exist;
//! 2. the bus: connect to `/run/dbus/system_bus_socket` inside the
//!    container, resolved under `/proc/LEADER/root` with
//!    `openat2(RESOLVE_IN_ROOT)` (a symlink in the image cannot point the
//!    check at the host's bus), authenticate, `Hello`, then
//!    `NameHasOwner("org.freedesktop.systemd1")`: `machinectl shell` asks the
//!    guest's systemd over this bus, so both must be up;
//! 3. units: `LoadUnit` + `Properties.Get` of Load/Active/SubState over the
//!    same connection.
//!
//! When `/proc/LEADER/root` cannot be used (user namespaces may block it)
//! or the bus refuses our credentials, steps 2 and 3 go through machined
//! instead: `busctl --machine=NAME` and `systemctl --machine=NAME show`.
//!
//! The deadline: systemd re-arms TimeoutStartSec= at every command it
//! spawns (service_spawn() in src/core/service.c), so `ExecStartPost=`
//! gets a whole new span. BootTimeout= is meant for the whole boot though,
//! so the budget is measured from nspawn's start ($MAINPID's start time in
//! /proc/PID/stat against CLOCK_BOOTTIME, the clock that field uses) and
//! ends a margin before the span runs out, so this helper always gives up
//! (with a message) before systemd kills it. At least one full check is
//! always made, so a boot that used up the budget but is ready passes.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};

use crate::dbus;

pub const USAGE: &str =
    "usage: sdme-boot-wait --machine=NAME [--timeout=SPAN] [--wait-for=UNIT]...";

pub const MACHINES_DIR: &str = "/run/systemd/machines";
pub const BUS_SOCKET: &str = "run/dbus/system_bus_socket";
const NO_SOCKET: &str = "no /run/dbus/system_bus_socket in the container";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub machine: String,
    /// None: infinity.
    pub timeout: Option<Duration>,
    pub timeout_text: String,
    pub wait_for: Vec<String>,
}

/// Check a unit name; a name without a type suffix gets `.service`, as
/// systemctl does.
pub fn check_unit_name(u: &str) -> Result<String> {
    if u.is_empty() {
        bail!("empty unit name in --wait-for");
    }
    if let Some(c) = u
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.' | '\\' | '@')))
    {
        bail!(
            "unit name '{}' contains '{}', which unit names cannot contain",
            u.escape_default(),
            c.escape_default()
        );
    }
    let full = if u.contains('.') && !u.ends_with('.') {
        u.to_string()
    } else {
        format!("{u}.service")
    };
    if full.len() > 255 {
        bail!("unit name '{u}' is longer than 255 bytes");
    }
    if full.starts_with('.') || full.ends_with("@.service") {
        bail!("'{u}' is not a unit name that can be waited for");
    }
    Ok(full)
}

pub fn parse_args(args: Vec<std::ffi::OsString>) -> Result<Options> {
    let mut machine = None;
    let mut timeout = None;
    let mut wait_for = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let a = a
            .into_string()
            .map_err(|a| anyhow!("argument '{}' is not valid UTF-8", a.to_string_lossy()))?;
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        let mut value = || -> Result<String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .and_then(|v| v.into_string().ok())
                    .ok_or_else(|| anyhow!("option {key} needs a value")),
            }
        };
        match key.as_str() {
            "--machine" => machine = Some(value()?),
            "--timeout" => timeout = Some(value()?),
            "--wait-for" => wait_for.push(check_unit_name(&value()?)?),
            _ => bail!("unexpected argument '{a}'\n{USAGE}"),
        }
    }
    let machine = machine.ok_or_else(|| anyhow!("--machine=NAME is required\n{USAGE}"))?;
    sdme_core::name::check_machine_name(&machine).map_err(|e| anyhow!(e))?;
    let timeout_text = timeout.unwrap_or_else(|| "infinity".into());
    let timeout = sdme_core::timespan::parse_timespan(&timeout_text)
        .map_err(|e| anyhow!("--timeout: {e}"))?;
    Ok(Options {
        machine,
        timeout,
        timeout_text: sdme_core::timespan::format_timespan(timeout),
        wait_for,
    })
}

// ------------------------------------------------------------ deadline

/// How long before the span runs out we give up: a tenth of it, between
/// 50 ms and 500 ms (never more than half of a tiny span).
pub fn margin(timeout: Duration) -> Duration {
    (timeout / 10)
        .clamp(Duration::from_millis(50), Duration::from_millis(500))
        .min(timeout / 2)
}

/// Time left for us, given the span and how long ago the service started.
/// None: no limit.
pub fn budget(timeout: Option<Duration>, elapsed: Duration) -> Option<Duration> {
    timeout.map(|t| t.saturating_sub(margin(t)).saturating_sub(elapsed))
}

/// Field 22 (`starttime`, clock ticks after boot) of /proc/PID/stat.
pub fn parse_stat_starttime(stat: &str) -> Option<u64> {
    // comm (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

fn clock_boottime() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a pointer to a timespec we own.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return None;
    }
    Some(Duration::new(
        u64::try_from(ts.tv_sec).ok()?,
        u32::try_from(ts.tv_nsec).ok()?,
    ))
}

/// How long ago process `pid` started. Start times have clock-tick
/// resolution and are rounded down, so this errs on the long side.
pub fn elapsed_since_start(pid: i32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = parse_stat_starttime(&stat)?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz <= 0 {
        return None;
    }
    let start = Duration::from_secs(ticks / hz as u64)
        + Duration::from_nanos((ticks % hz as u64) * 1_000_000_000 / hz as u64);
    Some(clock_boottime()?.saturating_sub(start))
}

/// `$MAINPID` (set by systemd for ExecStartPost=: nspawn's pid).
pub fn main_pid() -> Option<i32> {
    std::env::var("MAINPID")
        .ok()?
        .parse()
        .ok()
        .filter(|p: &i32| *p > 0)
}

/// Poll intervals: 20 ms growing by half up to 250 ms.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: Duration::from_millis(20),
        }
    }
}

impl Backoff {
    pub fn next_interval(&mut self) -> Duration {
        let cur = self.next;
        self.next = (cur * 3 / 2).min(Duration::from_millis(250));
        cur
    }
}

// ------------------------------------------------------------ machined

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineState {
    pub leader: i32,
    pub state: Option<String>,
}

/// Parse machined's state file (`KEY=VALUE` lines, env-file style).
pub fn parse_machine_state(text: &str) -> Option<MachineState> {
    let mut leader = None;
    let mut state = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("LEADER=") {
            leader = v.trim().parse::<i32>().ok().filter(|p| *p > 0);
        } else if let Some(v) = line.strip_prefix("STATE=") {
            state = Some(v.trim().to_string());
        }
    }
    Some(MachineState {
        leader: leader?,
        state,
    })
}

// ------------------------------------------------------------ the wait

/// What we are waiting for, for the timeout message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    Register,
    Bus,
    Unit(usize),
}

/// Outcome of one check.
enum Check {
    Ready,
    NotYet(String),
}

/// How steps 2 and 3 reach the guest.
enum Path2 {
    Direct,
    Machined,
}

struct Waiter<'a> {
    opts: &'a Options,
    main_pid: Option<i32>,
    leader: i32,
    conn: Option<dbus::Conn>,
    via: Path2,
    deadline: Option<Instant>,
    machines_dir: PathBuf,
    /// Since when the guest has had no bus socket at all.
    no_socket_since: Option<Instant>,
}

/// READY=1 comes after sockets.target, so a guest without a bus socket
/// this long after it is an image without D-Bus: fail instead of waiting
/// for the whole timeout.
pub const NO_BUS_GRACE: Duration = Duration::from_secs(3);

/// A single check's own time limit: the deadline, but at least a second
/// (the first check is always made in full).
fn op_deadline(deadline: Option<Instant>) -> Instant {
    let floor = Instant::now() + Duration::from_secs(1);
    match deadline {
        Some(d) if d > floor => d,
        _ => floor,
    }
}

impl Waiter<'_> {
    fn stage_text(&self, stage: &Stage) -> String {
        match stage {
            Stage::Register => format!(
                "machine {} to register with systemd-machined",
                self.opts.machine
            ),
            Stage::Bus => "the container's system bus and systemd on it".to_string(),
            Stage::Unit(i) => format!("unit {} inside the container", self.opts.wait_for[*i]),
        }
    }

    fn check_main_alive(&self) -> Result<()> {
        if let Some(p) = self.main_pid {
            if !Path::new(&format!("/proc/{p}")).exists() {
                bail!("systemd-nspawn (pid {p}) exited while waiting for the container");
            }
        }
        Ok(())
    }

    fn check_register(&mut self) -> Result<Check> {
        let f = self.machines_dir.join(&self.opts.machine);
        let text = match std::fs::read_to_string(&f) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Check::NotYet(format!("no {}", f.display())))
            }
            Err(e) => bail!("cannot read {}: {e}", f.display()),
        };
        let Some(st) = parse_machine_state(&text) else {
            return Ok(Check::NotYet(format!("no LEADER= in {}", f.display())));
        };
        if st.state.as_deref() == Some("closing") {
            return Ok(Check::NotYet("machine is closing".into()));
        }
        if !Path::new(&format!("/proc/{}", st.leader)).exists() {
            return Ok(Check::NotYet(format!("leader pid {} is gone", st.leader)));
        }
        self.leader = st.leader;
        Ok(Check::Ready)
    }

    /// Open the guest's bus socket through /proc/LEADER/root, confined to
    /// the guest's root. Err(None) means "use machined instead".
    fn connect_direct(&self, deadline: Instant) -> std::result::Result<dbus::Conn, Option<String>> {
        let root = format!("/proc/{}/root", self.leader);
        let rootfd = match nix::fcntl::open(
            root.as_str(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ) {
            // SAFETY: a fresh fd from open().
            Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
            Err(Errno::EACCES | Errno::EPERM) => return Err(None),
            Err(e) => return Err(Some(format!("{root}: {e}"))),
        };
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let sockfd = match openat2(rootfd.as_raw_fd(), BUS_SOCKET, how) {
            // SAFETY: a fresh fd from openat2().
            Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
            Err(Errno::EACCES | Errno::EPERM) => return Err(None),
            Err(Errno::ENOENT) => return Err(Some(NO_SOCKET.to_string())),
            Err(e) => return Err(Some(format!("/{BUS_SOCKET}: {e}"))),
        };
        // connect(2) through the O_PATH fd's magic link reaches the inode
        // we resolved, whatever the path looked like.
        let path = format!("/proc/self/fd/{}", sockfd.as_raw_fd());
        match dbus::Conn::connect(Path::new(&path), deadline) {
            Ok(c) => Ok(c),
            Err(dbus::Error::Auth(_)) => Err(None),
            Err(dbus::Error::Io(e)) if e.raw_os_error() == Some(libc::EACCES) => Err(None),
            Err(e) => Err(Some(format!("/{BUS_SOCKET}: {e}"))),
        }
    }

    fn check_bus(&mut self) -> Result<Check> {
        let deadline = op_deadline(self.deadline);
        if let Path2::Machined = self.via {
            return self.check_bus_machined(deadline);
        }
        if self.conn.is_none() {
            match self.connect_direct(deadline) {
                Ok(c) => self.conn = Some(c),
                Err(None) => {
                    self.via = Path2::Machined;
                    return self.check_bus_machined(deadline);
                }
                Err(Some(why)) => {
                    if why == NO_SOCKET {
                        let since = *self.no_socket_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= NO_BUS_GRACE {
                            bail!(
                                "the container has no D-Bus system bus \
                                 (/{BUS_SOCKET} missing after boot); machinectl shell and \
                                 systemctl -M need one: install dbus (or dbus-broker) in the image"
                            );
                        }
                    }
                    return Ok(Check::NotYet(why));
                }
            }
        }
        let Some(conn) = self.conn.as_mut() else {
            return Ok(Check::NotYet("not connected".into()));
        };
        match conn.name_has_owner("org.freedesktop.systemd1", deadline) {
            Ok(true) => Ok(Check::Ready),
            Ok(false) => Ok(Check::NotYet(
                "systemd is not on the container's system bus yet".into(),
            )),
            Err(e) => {
                self.conn = None;
                Ok(Check::NotYet(format!("system bus: {e}")))
            }
        }
    }

    fn check_bus_machined(&mut self, deadline: Instant) -> Result<Check> {
        let secs = deadline
            .saturating_duration_since(Instant::now())
            .as_secs()
            .max(1);
        let out = run_command(
            Command::new("busctl")
                .arg(format!("--machine={}", self.opts.machine))
                .arg(format!("--timeout={secs}s"))
                .args([
                    "call",
                    "org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus",
                    "NameHasOwner",
                    "s",
                    "org.freedesktop.systemd1",
                ]),
            deadline,
        )?;
        match out {
            Ok(s) if s.trim() == "b true" => Ok(Check::Ready),
            Ok(_) => Ok(Check::NotYet(
                "systemd is not on the container's system bus yet".into(),
            )),
            Err(why) => Ok(Check::NotYet(format!("busctl --machine: {why}"))),
        }
    }

    fn check_unit(&mut self, i: usize) -> Result<Check> {
        let unit = &self.opts.wait_for[i];
        let deadline = op_deadline(self.deadline);
        let (load, active, sub) = match self.via {
            Path2::Direct => {
                let Some(conn) = self.conn.as_mut() else {
                    // Lost the connection: go back one step.
                    return Ok(Check::NotYet("reconnecting".into()));
                };
                match conn.unit_state(unit, deadline) {
                    Ok(s) => s,
                    Err(e) => {
                        self.conn = None;
                        return Ok(Check::NotYet(format!("system bus: {e}")));
                    }
                }
            }
            Path2::Machined => {
                let out = run_command(
                    Command::new("systemctl")
                        .arg(format!("--machine={}", self.opts.machine))
                        .args(["show", "--property=LoadState,ActiveState,SubState", "--"])
                        .arg(unit),
                    deadline,
                )?;
                match out {
                    Ok(s) => {
                        let get = |k: &str| {
                            s.lines()
                                .find_map(|l| l.strip_prefix(k))
                                .unwrap_or("")
                                .to_string()
                        };
                        (get("LoadState="), get("ActiveState="), get("SubState="))
                    }
                    Err(why) => return Ok(Check::NotYet(format!("systemctl --machine: {why}"))),
                }
            }
        };
        unit_verdict(unit, &load, &active, &sub)
    }
}

/// Decide from a unit's states: ready, keep waiting, or fail now.
pub fn unit_verdict_text(
    unit: &str,
    load: &str,
    active: &str,
    sub: &str,
) -> Result<Option<String>> {
    match (load, active) {
        ("not-found", _) => bail!("unit {unit} not found inside the container"),
        ("masked", _) => bail!("unit {unit} is masked inside the container"),
        ("bad-setting" | "error", _) => {
            bail!("unit {unit} cannot be loaded inside the container ({load})")
        }
        (_, "active" | "reloading" | "refreshing") => Ok(None),
        (_, "failed") => bail!("unit {unit} failed inside the container (state: failed/{sub})"),
        _ if sub.is_empty() => Ok(Some(format!("state: {active}"))),
        _ => Ok(Some(format!("state: {active}/{sub}"))),
    }
}

fn unit_verdict(unit: &str, load: &str, active: &str, sub: &str) -> Result<Check> {
    Ok(match unit_verdict_text(unit, load, active, sub)? {
        None => Check::Ready,
        Some(s) => Check::NotYet(s),
    })
}

/// Run a command with a time limit; Ok(Err(reason)) when it failed.
fn run_command(
    cmd: &mut Command,
    deadline: Instant,
) -> Result<std::result::Result<String, String>> {
    let mut child = match cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Ok(Err(format!("cannot run {:?}: {e}", cmd.get_program()))),
    };
    // Only used when the direct path is blocked: a short sleep loop while
    // the child runs is fine here.
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(Err("no answer in time".into()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Ok(Err(e.to_string())),
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| anyhow!("waiting for {:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        Ok(Ok(String::from_utf8_lossy(&out.stdout).into_owned()))
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Ok(Err(err.lines().next().unwrap_or("failed").to_string()))
    }
}

/// Wait for everything; Err is the one-line reason.
pub fn wait(opts: &Options) -> Result<()> {
    wait_with(opts, Path::new(MACHINES_DIR), main_pid())
}

/// `wait` with the state directory and main pid given (for tests).
pub fn wait_with(opts: &Options, machines_dir: &Path, main_pid: Option<i32>) -> Result<()> {
    let elapsed = main_pid
        .and_then(elapsed_since_start)
        .unwrap_or(Duration::ZERO);
    let deadline = budget(opts.timeout, elapsed).map(|b| Instant::now() + b);
    let mut w = Waiter {
        opts,
        main_pid,
        leader: 0,
        conn: None,
        // For tests of the fallback on systems where the direct path works.
        via: if std::env::var_os("SDME_BOOT_WAIT_VIA").is_some_and(|v| v == "machined") {
            Path2::Machined
        } else {
            Path2::Direct
        },
        deadline,
        machines_dir: machines_dir.to_path_buf(),
        no_socket_since: None,
    };
    let mut stage = Stage::Register;
    let mut backoff = Backoff::default();
    loop {
        w.check_main_alive()?;
        let res = match stage {
            Stage::Register => w.check_register()?,
            Stage::Bus => w.check_bus()?,
            Stage::Unit(i) => w.check_unit(i)?,
        };
        let detail = match res {
            Check::Ready => {
                stage = match stage {
                    Stage::Register => Stage::Bus,
                    Stage::Bus if opts.wait_for.is_empty() => return Ok(()),
                    Stage::Bus => Stage::Unit(0),
                    Stage::Unit(i) if i + 1 == opts.wait_for.len() => return Ok(()),
                    Stage::Unit(i) => Stage::Unit(i + 1),
                };
                backoff = Backoff::default();
                continue;
            }
            Check::NotYet(d) => d,
        };
        // A lost connection while checking units: redo the bus step.
        if matches!(stage, Stage::Unit(_)) && w.conn.is_none() && matches!(w.via, Path2::Direct) {
            stage = Stage::Bus;
        }
        let now = Instant::now();
        if let Some(d) = w.deadline {
            if now >= d {
                bail!(
                    "timed out after {} waiting for {} ({detail})",
                    opts.timeout_text,
                    w.stage_text(&stage)
                );
            }
        }
        let mut sleep = backoff.next_interval();
        if let Some(d) = w.deadline {
            sleep = sleep.min(d - now);
        }
        std::thread::sleep(sleep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<std::ffi::OsString> {
        v.iter().map(|s| s.into()).collect()
    }

    #[test]
    fn parses_arguments() {
        let o = parse_args(args(&[
            "--machine=web",
            "--timeout=1min 30s",
            "--wait-for=nginx.service",
            "--wait-for",
            "redis",
        ]))
        .unwrap();
        assert_eq!(o.machine, "web");
        assert_eq!(o.timeout, Some(Duration::from_secs(90)));
        assert_eq!(o.timeout_text, "90s");
        assert_eq!(o.wait_for, vec!["nginx.service", "redis.service"]);
        let o = parse_args(args(&["--machine", "a", "--timeout=infinity"])).unwrap();
        assert_eq!(o.timeout, None);
        assert_eq!(parse_args(args(&["--machine=a"])).unwrap().timeout, None);
        for bad in [
            &["--timeout=5s"][..],
            &["--machine=a/b"],
            &["--machine=a", "--timeout=5 parsecs"],
            &["--machine=a", "--wait-for=x y.service"],
            &["--machine=a", "--wait-for=$(x).service"],
            &["--machine=a", "extra"],
            &["--machine=a", "--timeout"],
        ] {
            assert!(parse_args(args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn margin_and_budget() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        assert_eq!(margin(s(30)), ms(500));
        assert_eq!(margin(s(2)), ms(200));
        assert_eq!(margin(ms(300)), ms(50));
        assert_eq!(margin(ms(60)), ms(30));
        assert_eq!(budget(None, s(100)), None);
        assert_eq!(budget(Some(s(30)), s(2)), Some(ms(27_500)));
        assert_eq!(budget(Some(s(30)), s(40)), Some(Duration::ZERO));
    }

    #[test]
    fn stat_start_time() {
        let stat = "1234 (systemd-nspawn) S 1 1234 1234 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 98765 123 456";
        assert_eq!(parse_stat_starttime(stat), Some(98765));
        let evil = "1234 (a) b) S 1 1234 1234 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 55 1 2";
        assert_eq!(parse_stat_starttime(evil), Some(55));
        assert_eq!(parse_stat_starttime("garbage"), None);
        // Our own process started within the last minute or so.
        let me = elapsed_since_start(std::process::id() as i32).unwrap();
        assert!(me < Duration::from_secs(600), "{me:?}");
    }

    #[test]
    fn backoff_grows_to_a_cap() {
        let mut b = Backoff::default();
        let v: Vec<u128> = (0..10).map(|_| b.next_interval().as_millis()).collect();
        assert_eq!(v[0], 20);
        assert!(v.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*v.last().unwrap(), 250);
    }

    #[test]
    fn machine_state_file() {
        let t = "# This is private data. Do not parse.\nNAME=web\nSCOPE=sdme-web.service\nSTATE=running\nLEADER=4242\nCLASS=container\n";
        assert_eq!(
            parse_machine_state(t),
            Some(MachineState {
                leader: 4242,
                state: Some("running".into())
            })
        );
        assert_eq!(parse_machine_state("NAME=web\nLEADER=x\n"), None);
    }

    #[test]
    fn unit_verdicts() {
        assert_eq!(
            unit_verdict_text("a.service", "loaded", "active", "running").unwrap(),
            None
        );
        assert_eq!(
            unit_verdict_text("a.service", "loaded", "activating", "start").unwrap(),
            Some("state: activating/start".into())
        );
        let e = unit_verdict_text("a.service", "loaded", "failed", "failed").unwrap_err();
        assert!(e.to_string().contains("a.service failed"), "{e}");
        assert!(unit_verdict_text("a.service", "not-found", "inactive", "dead").is_err());
    }

    /// No registration ever appears: the wait ends at the budget, with the
    /// stage named, and never much later.
    #[test]
    fn times_out_naming_the_stage() {
        let dir = tempfile::tempdir().unwrap();
        let opts = parse_args(args(&["--machine=ghost", "--timeout=400ms"])).unwrap();
        let t0 = Instant::now();
        let e = wait_with(&opts, dir.path(), None).unwrap_err().to_string();
        let took = t0.elapsed();
        assert!(
            e.contains("timed out after 400ms waiting for machine ghost to register"),
            "{e}"
        );
        // budget = 400 - 50 ms margin
        assert!(took >= Duration::from_millis(340), "{took:?}");
        assert!(took < Duration::from_millis(400), "{took:?}");
    }

    /// A stale state file whose leader is gone is not a registration.
    #[test]
    fn dead_leader_is_not_registered() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m"), "LEADER=2147483646\nSTATE=running\n").unwrap();
        let opts = parse_args(args(&["--machine=m", "--timeout=200ms"])).unwrap();
        let e = wait_with(&opts, dir.path(), None).unwrap_err().to_string();
        assert!(e.contains("leader pid 2147483646 is gone"), "{e}");
    }

    /// A guest without a bus socket fails after the grace period, not at
    /// the timeout. Our own process plays the leader (its root is this
    /// machine's, which has no system bus here).
    #[test]
    fn no_bus_fails_after_the_grace_period() {
        if Path::new("/").join(BUS_SOCKET).exists() {
            eprintln!("skipping: this machine has a system bus");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id();
        std::fs::write(
            dir.path().join("m"),
            format!("LEADER={me}\nSTATE=running\n"),
        )
        .unwrap();
        let opts = parse_args(args(&["--machine=m", "--timeout=30s"])).unwrap();
        let t0 = Instant::now();
        let e = wait_with(&opts, dir.path(), None).unwrap_err().to_string();
        assert!(e.contains("no D-Bus system bus"), "{e}");
        let took = t0.elapsed();
        assert!(
            took >= NO_BUS_GRACE && took < NO_BUS_GRACE + Duration::from_secs(1),
            "{took:?}"
        );
    }

    /// The main process (nspawn) exiting ends the wait at once.
    #[test]
    fn main_process_exit_fails_fast() {
        let dir = tempfile::tempdir().unwrap();
        let opts = parse_args(args(&["--machine=m", "--timeout=10s"])).unwrap();
        let t0 = Instant::now();
        let e = wait_with(&opts, dir.path(), Some(2147483646))
            .unwrap_err()
            .to_string();
        assert!(e.contains("exited"), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(1));
    }
}
