//! systemd and machined through their D-Bus APIs on the system bus.
//!
//! The client is the project's own (sdme_helpers::dbus), not zbus.
//! Measured in a booted Debian 13 test host (an e2e scenario running two
//! static release binaries, `-C target-feature=+crt-static`, one per
//! client, alternating, medians of 10 runs; zbus 5.19 with
//! default-features off, `async-io` and `blocking-api`, as sdme 0.22):
//!
//! | what                                        | own      | zbus     |
//! |---------------------------------------------|----------|----------|
//! | connect + Hello                             | 0.45 ms  | 3.24 ms  |
//! | ActiveState of a loaded unit, 100 times     | 38 ms    | 75 ms    |
//! | (LoadUnit + Properties.Get each)            |          |          |
//! | the same for 100 units not loaded           | 1071 ms  | 1082 ms  |
//! | ListUnitsByPatterns sdme-* (30 units)       | 0.93 ms  | 1.47 ms  |
//! | static binary (the benchmark alone)         | 1.4 MB   | 3.6 MB   |
//!
//! (Loading a unit dominates the third line: systemd reads its files.)
//! Both build static. zbus brings about 60 crates and runs an async
//! executor behind its blocking API; the own client is half the cost per
//! call, six times cheaper to connect (every `sdme` command connects
//! once), adds no crate, and keeps every bound on the peer in view: it is
//! the one already used on the hostile buses of guests (`sdme ps` asks
//! each running guest's SystemState with it too, and `sdme exec` starts
//! its command on the guest's bus with it, passing its stdin, stdout and
//! stderr as descriptors: crate::exec).
//!
//! Errors name the method, the unit and D-Bus's error name and message.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use sdme_core::mountinfo;
use sdme_helpers::dbus::{self, Call, Conn, Message, Value};

const SYSTEM_BUS: &str = "/run/dbus/system_bus_socket";
pub(crate) const SYSTEMD: &str = "org.freedesktop.systemd1";
pub(crate) const SYSTEMD_PATH: &str = "/org/freedesktop/systemd1";
pub(crate) const MANAGER: &str = "org.freedesktop.systemd1.Manager";
pub(crate) const UNIT: &str = "org.freedesktop.systemd1.Unit";
pub(crate) const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
const MACHINED: &str = "org.freedesktop.machine1";
const MACHINED_PATH: &str = "/org/freedesktop/machine1";
const MACHINED_MANAGER: &str = "org.freedesktop.machine1.Manager";
const MACHINE: &str = "org.freedesktop.machine1.Machine";

/// A single method call (not a job) answers within this.
/// A manager object: the service that owns it, its path and interface.
#[derive(Clone, Copy)]
struct Manager(&'static str, &'static str, &'static str);

impl Manager {
    fn method<'a>(self, member: &'a str, sig: &'a str) -> Call<'a> {
        let Manager(dest, path, iface) = self;
        Call {
            dest,
            path,
            iface,
            member,
            sig,
        }
    }
}

const SYSTEMD_MGR: Manager = Manager(SYSTEMD, SYSTEMD_PATH, MANAGER);
const MACHINED_MGR: Manager = Manager(MACHINED, MACHINED_PATH, MACHINED_MANAGER);

const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// daemon-reload regenerates every unit: give it longer.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// A connection to the system bus.
pub struct Bus {
    conn: Conn,
}

impl Drop for Bus {
    fn drop(&mut self) {
        // The handler must not shut down a later socket of that number.
        let _ = WAIT_FD.compare_exchange(
            self.conn.as_raw_fd(),
            -1,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }
}

/// Set by the SIGINT handler [`catch_sigint`] installs.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// The socket of the wait that Ctrl+C ends ([`Bus::end_on_sigint`]).
static WAIT_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
    // A signal that comes between the client's check of the flag and its
    // read(2) would not interrupt that read: shutting the socket down
    // ends it either way (shutdown(2) is async-signal-safe).
    let fd = WAIT_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: fd is the bus socket, kept open while registered.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    }
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// From now on Ctrl+C sets a flag instead of ending sdme, and interrupts
/// a wait on the bus (no SA_RESTART), which then fails with
/// [`dbus::Error::Interrupted`]: the caller undoes what it started.
pub fn catch_sigint() {
    // SAFETY: the handler only stores to an atomic (async-signal-safe);
    // the sigaction struct is zeroed and filled before use.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        sa.sa_flags = 0;
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
    }
}

/// Did Ctrl+C come since [`catch_sigint`]? Clears the flag, so that
/// undoing what was interrupted can wait on the bus again.
pub fn take_interrupt() -> bool {
    WAIT_FD.store(-1, Ordering::SeqCst);
    INTERRUPTED.swap(false, Ordering::SeqCst)
}

fn call_err(e: dbus::Error, what: &str) -> anyhow::Error {
    anyhow!("{what}: {e}")
}

/// Values of a reply, named for errors.
fn str_at(v: &[Value], i: usize, what: &str) -> Result<String> {
    match v.get(i) {
        Some(Value::Str(s)) => Ok(s.clone()),
        other => bail!("{what}: unexpected reply {other:?}"),
    }
}

/// One row of ListUnits: (name, load state, active state, sub state).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitRow {
    pub name: String,
    pub load: String,
    pub active: String,
    pub sub: String,
}

fn unit_rows(v: &[Value]) -> Result<Vec<UnitRow>> {
    let Some(Value::Array(rows)) = v.first() else {
        bail!("ListUnits: unexpected reply");
    };
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let Value::Struct(f) = r else {
            bail!("ListUnits: unexpected row {r:?}");
        };
        out.push(UnitRow {
            name: str_at(f, 0, "ListUnits")?,
            load: str_at(f, 2, "ListUnits")?,
            active: str_at(f, 3, "ListUnits")?,
            sub: str_at(f, 4, "ListUnits")?,
        });
    }
    Ok(out)
}

/// How a job ended: JobRemoved's result ("done", "failed", "timeout",
/// "canceled", "dependency", "skipped").
pub type JobResult = String;

impl Bus {
    pub fn system() -> Result<Bus> {
        let deadline = Instant::now() + CALL_TIMEOUT;
        let mut conn = Conn::connect(Path::new(SYSTEM_BUS), deadline)
            .map_err(|e| anyhow!("connecting to the system bus {SYSTEM_BUS}: {e}"))?;
        conn.set_interrupt(interrupted);
        Ok(Bus { conn })
    }

    /// Ctrl+C (after [`catch_sigint`]) ends this connection's waits at
    /// once; until [`take_interrupt`] or the connection's drop.
    pub fn end_on_sigint(&mut self) {
        WAIT_FD.store(self.conn.as_raw_fd(), Ordering::SeqCst);
    }

    fn call(
        &mut self,
        c: Call,
        args: &[Value],
        timeout: Duration,
        what: &str,
    ) -> Result<Vec<Value>> {
        self.conn
            .call_with(&c, args, Instant::now() + timeout)
            .map_err(|e| call_err(e, what))
    }

    /// A method of systemd's or machined's manager object.
    fn manager(
        &mut self,
        m: Manager,
        member: &str,
        sig: &str,
        args: &[Value],
        what: &str,
    ) -> Result<Vec<Value>> {
        self.call(m.method(member, sig), args, CALL_TIMEOUT, what)
    }

    /// Manager.Reload: the reply comes once the reload is done.
    pub fn reload(&mut self) -> Result<()> {
        let c = SYSTEMD_MGR.method("Reload", "");
        self.call(c, &[], RELOAD_TIMEOUT, "daemon-reload")?;
        Ok(())
    }

    /// The loaded units matching `patterns`, in one call.
    pub fn list_units(&mut self, patterns: &[&str]) -> Result<Vec<UnitRow>> {
        let pats = Value::Array(patterns.iter().map(|p| Value::Str(p.to_string())).collect());
        let v = self.manager(
            SYSTEMD_MGR,
            "ListUnitsByPatterns",
            "asas",
            &[Value::Array(vec![]), pats],
            "listing units",
        )?;
        unit_rows(&v)
    }

    /// The named units (loaded for the question if they are not), in
    /// one call.
    pub fn units_by_name(&mut self, units: &[String]) -> Result<Vec<UnitRow>> {
        let names = Value::Array(units.iter().map(|u| Value::Str(u.clone())).collect());
        let v = self.manager(
            SYSTEMD_MGR,
            "ListUnitsByNames",
            "as",
            &[names],
            "listing units",
        )?;
        unit_rows(&v)
    }

    fn unit_path(&mut self, unit: &str) -> Result<String> {
        let v = self.manager(
            SYSTEMD_MGR,
            "LoadUnit",
            "s",
            &[Value::Str(unit.into())],
            unit,
        )?;
        str_at(&v, 0, unit)
    }

    /// A property of `unit` on interface `iface`.
    pub fn unit_property(&mut self, unit: &str, iface: &str, prop: &str) -> Result<Value> {
        let path = self.unit_path(unit)?;
        self.get(&path, iface, prop, &format!("{unit} {prop}"))
    }

    fn get(&mut self, path: &str, iface: &str, prop: &str, what: &str) -> Result<Value> {
        self.get_from(SYSTEMD, path, iface, prop, what)
    }

    /// Properties.Get of `prop` on `dest`'s object `path`.
    fn get_from(
        &mut self,
        dest: &str,
        path: &str,
        iface: &str,
        prop: &str,
        what: &str,
    ) -> Result<Value> {
        let c = Call {
            dest,
            path,
            iface: PROPERTIES,
            member: "Get",
            sig: "ss",
        };
        let args = [Value::Str(iface.into()), Value::Str(prop.into())];
        let v = self.call(c, &args, CALL_TIMEOUT, what)?;
        v.into_iter()
            .next()
            .with_context(|| format!("{what}: empty reply"))
    }

    pub fn active_state(&mut self, unit: &str) -> Result<String> {
        match self.unit_property(unit, UNIT, "ActiveState")? {
            Value::Str(s) => Ok(s),
            v => bail!("{unit} ActiveState: unexpected {v:?}"),
        }
    }

    fn add_match(&mut self, rule: &str) -> Result<()> {
        let c = Call {
            dest: "org.freedesktop.DBus",
            path: "/org/freedesktop/DBus",
            iface: "org.freedesktop.DBus",
            member: "AddMatch",
            sig: "s",
        };
        self.call(c, &[Value::Str(rule.into())], CALL_TIMEOUT, "AddMatch")?;
        Ok(())
    }

    /// Receive systemd's JobRemoved signals: asked before the job is
    /// queued, so that a job that ends at once is not missed.
    pub fn subscribe_jobs(&mut self) -> Result<()> {
        self.add_match(&format!(
            "type='signal',sender='{SYSTEMD}',path='{SYSTEMD_PATH}',\
             interface='{MANAGER}',member='JobRemoved'"
        ))?;
        self.manager(SYSTEMD_MGR, "Subscribe", "", &[], "Subscribe")?;
        Ok(())
    }

    /// Queue a job (`method` is StartUnit, StopUnit or RestartUnit, mode
    /// "replace") and wait up to `timeout` for its end. Needs
    /// [`Bus::subscribe_jobs`] first.
    pub fn job(&mut self, method: &str, unit: &str, timeout: Duration) -> Result<JobResult> {
        let v = self.manager(
            SYSTEMD_MGR,
            method,
            "ss",
            &[Value::Str(unit.into()), Value::Str("replace".into())],
            &format!("{method} {unit}"),
        )?;
        let job = str_at(&v, 0, method)?;
        self.wait_job(&job, unit, timeout)
    }

    fn wait_job(&mut self, job: &str, unit: &str, timeout: Duration) -> Result<JobResult> {
        let deadline = Instant::now() + timeout;
        let m = self
            .conn
            .wait_signal(|m| job_removed(m, job).is_some(), deadline)
            .map_err(|e| match e {
                dbus::Error::Timeout => anyhow!(
                    "{unit}: its job {job} did not end within {} s",
                    timeout.as_secs()
                ),
                e => call_err(e, &format!("waiting for {unit}")),
            })?;
        str_at(&m.args, 3, "JobRemoved")
    }

    /// Manager.KillUnit(unit, "all", signal).
    pub fn kill_unit(&mut self, unit: &str, signal: i32) -> Result<()> {
        let args = [
            Value::Str(unit.into()),
            Value::Str("all".into()),
            Value::I32(signal),
        ];
        self.manager(
            SYSTEMD_MGR,
            "KillUnit",
            "ssi",
            &args,
            &format!("KillUnit {unit}"),
        )?;
        Ok(())
    }

    pub fn reset_failed(&mut self, unit: &str) -> Result<()> {
        let args = [Value::Str(unit.into())];
        self.manager(
            SYSTEMD_MGR,
            "ResetFailedUnit",
            "s",
            &args,
            &format!("ResetFailedUnit {unit}"),
        )?;
        Ok(())
    }

    /// SetUnitProperties(unit, runtime, props): `props` are (name,
    /// D-Bus type, value).
    pub fn set_properties(
        &mut self,
        unit: &str,
        runtime: bool,
        props: Vec<(String, Value)>,
    ) -> Result<()> {
        let arr = props
            .into_iter()
            .map(|(k, v)| {
                let sig = match v {
                    Value::U64(_) => "t",
                    Value::Str(_) => "s",
                    Value::Bool(_) => "b",
                    _ => "u",
                };
                Value::Struct(vec![Value::Str(k), Value::Variant(sig.into(), Box::new(v))])
            })
            .collect();
        let args = [
            Value::Str(unit.into()),
            Value::Bool(runtime),
            Value::Array(arr),
        ];
        self.manager(
            SYSTEMD_MGR,
            "SetUnitProperties",
            "sba(sv)",
            &args,
            &format!("SetUnitProperties {unit}"),
        )?;
        Ok(())
    }

    /// Wait until `unit` is inactive or failed (returned), watching its
    /// PropertiesChanged signals (the match is added before the state
    /// is read, so a change in between is not missed).
    pub fn wait_inactive(&mut self, unit: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let path = self.unit_path(unit)?;
        self.add_match(&format!(
            "type='signal',sender='{SYSTEMD}',path='{path}',\
             interface='{PROPERTIES}',member='PropertiesChanged'"
        ))?;
        loop {
            let state = match self.get(&path, UNIT, "ActiveState", unit) {
                Ok(Value::Str(s)) => s,
                // Unloaded once stopped (garbage-collected): inactive.
                Err(_) => return Ok("inactive".into()),
                Ok(v) => bail!("{unit} ActiveState: unexpected {v:?}"),
            };
            if matches!(state.as_str(), "inactive" | "failed") {
                return Ok(state);
            }
            self.conn
                .wait_signal(
                    |m| m.path == path && m.member == "PropertiesChanged",
                    deadline,
                )
                .map_err(|e| match e {
                    dbus::Error::Timeout => {
                        anyhow!("{unit} is still {state} after {} s", timeout.as_secs())
                    }
                    e => call_err(e, &format!("waiting for {unit}")),
                })?;
        }
    }

    /// machined's TerminateMachine; false when no such machine runs.
    pub fn terminate_machine(&mut self, machine: &str) -> Result<bool> {
        let what = format!("TerminateMachine {machine}");
        let c = MACHINED_MGR.method("TerminateMachine", "s");
        match self.conn.call_with(
            &c,
            &[Value::Str(machine.into())],
            Instant::now() + CALL_TIMEOUT,
        ) {
            Ok(_) => Ok(true),
            Err(dbus::Error::Reply(n, _)) if n == "org.freedesktop.machine1.NoSuchMachine" => {
                Ok(false)
            }
            Err(e) => Err(call_err(e, &what)),
        }
    }

    /// The registered machines: (name, class, unit).
    pub fn machines(&mut self) -> Result<Vec<(String, String, String)>> {
        let v = self.manager(MACHINED_MGR, "ListMachines", "", &[], "ListMachines")?;
        let Some(Value::Array(rows)) = v.first() else {
            bail!("ListMachines: unexpected reply");
        };
        let mut out = Vec::new();
        for r in rows {
            if let Value::Struct(f) = r {
                out.push((
                    str_at(f, 0, "ListMachines")?,
                    str_at(f, 1, "ListMachines")?,
                    str_at(f, 2, "ListMachines")?,
                ));
            }
        }
        Ok(out)
    }

    /// The leader PID of a registered machine (machined's GetMachine,
    /// then its Leader property); None when no such machine is registered.
    pub fn machine_leader(&mut self, machine: &str) -> Result<Option<u32>> {
        let what = format!("GetMachine {machine}");
        let c = MACHINED_MGR.method("GetMachine", "s");
        let v = match self.conn.call_with(
            &c,
            &[Value::Str(machine.into())],
            Instant::now() + CALL_TIMEOUT,
        ) {
            Ok(v) => v,
            Err(dbus::Error::Reply(n, _)) if n == "org.freedesktop.machine1.NoSuchMachine" => {
                return Ok(None)
            }
            Err(e) => return Err(call_err(e, &what)),
        };
        let path = str_at(&v, 0, &what)?;
        let what = format!("{machine} Leader");
        match self.get_from(MACHINED, &path, MACHINE, "Leader", &what)? {
            Value::U32(p) if p > 0 => Ok(Some(p)),
            v => bail!("{what}: unexpected {v:?}"),
        }
    }

    /// GetMachineAddresses, formatted ("10.0.0.2", "fe80::1").
    pub fn machine_addresses(&mut self, machine: &str) -> Result<Vec<String>> {
        let v = self.manager(
            MACHINED_MGR,
            "GetMachineAddresses",
            "s",
            &[Value::Str(machine.into())],
            &format!("GetMachineAddresses {machine}"),
        )?;
        Ok(format_addresses(v.first()))
    }
}

/// The result of JobRemoved for `job` ("done", "failed", ...), or None
/// for any other message.
pub fn job_removed(m: &Message, job: &str) -> Option<String> {
    if m.member != "JobRemoved" || m.interface != MANAGER {
        return None;
    }
    match (m.args.get(1), m.args.get(3)) {
        (Some(Value::Str(j)), Some(Value::Str(r))) if j == job => Some(r.clone()),
        _ => None,
    }
}

/// a(iay) of GetMachineAddresses as text; malformed entries are skipped.
pub fn format_addresses(v: Option<&Value>) -> Vec<String> {
    let Some(Value::Array(rows)) = v else {
        return Vec::new();
    };
    rows.iter()
        .filter_map(|r| match r {
            Value::Struct(f) => match (f.first(), f.get(1)) {
                (Some(Value::I32(libc::AF_INET)), Some(Value::Bytes(b))) => {
                    let a: [u8; 4] = b.as_slice().try_into().ok()?;
                    Some(std::net::Ipv4Addr::from(a).to_string())
                }
                (Some(Value::I32(libc::AF_INET6)), Some(Value::Bytes(b))) => {
                    let a: [u8; 16] = b.as_slice().try_into().ok()?;
                    Some(std::net::Ipv6Addr::from(a).to_string())
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}

pub fn daemon_reload() -> Result<()> {
    Bus::system()?.reload()
}

/// ActiveState and SubState of each unit, in order, in one call.
pub fn states(units: &[String]) -> Result<Vec<(String, String)>> {
    if units.is_empty() {
        return Ok(Vec::new());
    }
    let rows = Bus::system()?.units_by_name(units)?;
    Ok(states_in_order(&rows, units))
}

/// Looked up by name, so the order of the reply is not relied on.
fn states_in_order(rows: &[UnitRow], units: &[String]) -> Vec<(String, String)> {
    units
        .iter()
        .map(|u| {
            rows.iter()
                .find(|r| &r.name == u)
                .map(|r| (r.active.clone(), r.sub.clone()))
                .unwrap_or_else(|| ("unknown".into(), "unknown".into()))
        })
        .collect()
}

/// The loaded units matching `patterns`.
pub fn loaded_units(patterns: &[&str]) -> Result<Vec<UnitRow>> {
    Bus::system()?.list_units(patterns)
}

pub fn active_state(unit: &str) -> Result<String> {
    Bus::system()?.active_state(unit)
}

/// Stop `unit` and wait for the job to end (at most `wait`).
pub fn stop(unit: &str, wait: Duration) -> Result<()> {
    let mut bus = Bus::system()?;
    bus.subscribe_jobs()?;
    match bus.job("StopUnit", unit, wait)?.as_str() {
        "done" => Ok(()),
        r => bail!("{unit}: StopUnit job {r}"),
    }
}

pub fn reset_failed(unit: &str) -> Result<()> {
    Bus::system()?.reset_failed(unit)
}

/// Mount points at or below `dir`.
pub fn mounts_below(dir: &Path) -> Result<Vec<String>> {
    let d = dir.to_str().context("state directory is not UTF-8")?;
    let prefix = format!("{}/", d.trim_end_matches('/'));
    Ok(mountinfo::read()
        .context("reading /proc/self/mountinfo")?
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p == d || p.starts_with(&prefix))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, active: &str, sub: &str) -> Value {
        let s = |x: &str| Value::Str(x.into());
        Value::Struct(vec![
            s(name),
            s("desc"),
            s("loaded"),
            s(active),
            s(sub),
            s(""),
            s("/org/freedesktop/systemd1/unit/x"),
            Value::U32(0),
            s(""),
            s("/"),
        ])
    }

    #[test]
    fn states_by_name() {
        let reply = [Value::Array(vec![
            row("sdme-b.service", "inactive", "dead"),
            row("sdme-a.service", "active", "running"),
        ])];
        let rows = unit_rows(&reply).unwrap();
        assert_eq!(rows[1].load, "loaded");
        let units = [
            "sdme-a.service".to_string(),
            "sdme-b.service".into(),
            "x".into(),
        ];
        assert_eq!(
            states_in_order(&rows, &units),
            [
                ("active".into(), "running".into()),
                ("inactive".into(), "dead".into()),
                ("unknown".to_string(), "unknown".to_string())
            ]
        );
        assert!(unit_rows(&[Value::U32(1)]).is_err());
    }

    #[test]
    fn addresses_are_formatted_and_junk_skipped() {
        let a = Value::Array(vec![
            Value::Struct(vec![
                Value::I32(libc::AF_INET),
                Value::Bytes(vec![10, 0, 0, 2]),
            ]),
            Value::Struct(vec![Value::I32(libc::AF_INET), Value::Bytes(vec![10, 0])]),
            Value::Struct(vec![Value::I32(libc::AF_INET6), {
                let mut b = vec![0xfe, 0x80];
                b.extend([0; 13]);
                b.push(1);
                Value::Bytes(b)
            }]),
            Value::U32(3),
        ]);
        assert_eq!(format_addresses(Some(&a)), ["10.0.0.2", "fe80::1"]);
        assert!(format_addresses(None).is_empty());
    }

    #[test]
    fn job_removed_matches_its_job_only() {
        let m = |job: &str| Message {
            kind: 4,
            reply_serial: None,
            error_name: None,
            signature: "uoss".into(),
            path: SYSTEMD_PATH.into(),
            interface: MANAGER.into(),
            member: "JobRemoved".into(),
            unix_fds: 0,
            args: vec![
                Value::U32(7),
                Value::Str(job.into()),
                Value::Str("sdme-a.service".into()),
                Value::Str("done".into()),
            ],
        };
        let job = "/org/freedesktop/systemd1/job/7";
        assert_eq!(job_removed(&m(job), job).as_deref(), Some("done"));
        assert_eq!(
            job_removed(&m("/org/freedesktop/systemd1/job/8"), job),
            None
        );
    }
}
