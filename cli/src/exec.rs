//! `sdme exec` (and `sdme new NAME -- COMMAND`): the command as a
//! transient unit of the guest's systemd, started on the guest's own bus,
//! natively: what `systemd-run -M NAME --wait --pipe` does, without
//! running systemd-run and without machined's bridge to the guest's bus.
//!
//! - The guest's bus socket is resolved inside its root and connected as
//!   its root (sdme_helpers::guest::connect_root: through its user
//!   namespace for PrivateUsers= guests).
//! - StartTransientUnit `run-sdme-PID-NS.service`, ExecStartEx with
//!   no-env-expand (the words as given: `$HOME` and `$$` are the
//!   command's business), Type=exec (the start
//!   job fails when the command cannot be executed), our stdin, stdout and
//!   stderr passed as descriptors (so nothing is copied or buffered in
//!   between), AddRef (the unit stays loaded until we read how it ended),
//!   CollectMode=inactive-or-failed (then it goes), IgnoreSIGPIPE=no (a
//!   reader that goes away, `| head -1`, ends the command quietly as in a
//!   shell), TERM when one of the three is a terminal, as systemd-run.
//! - The matches are added and Subscribe asked in the same write as the
//!   start, before it, so neither the job's end nor the unit's is missed:
//!   first JobRemoved of the start job, then ActiveState inactive or
//!   failed (read once after the job, then from PropertiesChanged).
//! - Exit status: ExecMainStatus when the command exited, 128 + the
//!   signal when it was killed (as a shell says it); for systemd's 203
//!   (EXEC), 127 when the command does not exist in the guest, 126 when
//!   it is not an executable file.
//! - SIGINT, SIGTERM and SIGHUP to sdme: KillUnit with that signal on a
//!   second connection to the guest's bus, then the wait goes on.
//!
//! Measured against `systemd-run -M` and sdme 0.22 by tests/bench/cli.

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use sdme_helpers::dbus::{Call, Conn, Error, Message, Value};
use sdme_helpers::guest::{self, unit_path};

use crate::signals::Signals;
use crate::sys::{self, MANAGER, PROPERTIES, SYSTEMD, SYSTEMD_PATH, UNIT};

const SERVICE: &str = "org.freedesktop.systemd1.Service";

/// Connecting and each call (not the command) answer within this.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The command itself may run for as long as it likes.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 86400);
/// systemd's exit status for a command that could not be executed.
const EXIT_EXEC: i32 = 203;
/// Where systemd looks up a command given by name (its fixed search path).
const SEARCH_PATH: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// `sdme exec --app`: what the application's unit gives its command,
/// for this one: its root (`RootDirectory=`), its environment, and its
/// user and working directory through sdme-drop-privs (the `prefix`).
pub struct InApp {
    pub root: String,
    pub env: Vec<String>,
    /// `/.sdme-drop-privs USER WORKDIR --`.
    pub prefix: Vec<String>,
}

/// Run `command` in `machine` (with `app`, in its application); its exit
/// status.
pub fn exec_in(
    machine: &str,
    command: &[String],
    app: Option<&InApp>,
    sig: &Signals,
) -> Result<ExitCode> {
    let Some(cmd) = command.first() else {
        bail!("no command to run");
    };
    let leader = guest::leader(machine).map_err(|e| anyhow!("{machine}: {e}"))?;
    let deadline = Instant::now() + CALL_TIMEOUT;
    let mut conn = guest::connect_root(leader, deadline)
        .map_err(|e| anyhow!("{machine}: connecting to its bus: {e}"))?;
    let unit = unit_name();
    let path = unit_path(&unit);
    let stdio = Stdio::ours()?;
    let start = start_calls(&unit, &path, &stdio.props(command, app)?);
    let replies = conn
        .call_all(&start, deadline)
        .map_err(|e| anyhow!("{machine}: starting {cmd}: {e}"))?;
    let job = match replies.last().and_then(|r| r.first()) {
        Some(Value::Str(j)) => j.clone(),
        other => bail!("{machine}: StartTransientUnit: unexpected reply {other:?}"),
    };
    // systemd holds its own copies now (a /dev/null stand-in can go).
    drop(stdio);
    forward_signals(sig, leader, &unit);
    let end = wait_end(&mut conn, &job, &path)
        .map_err(|e| anyhow!("{machine}: waiting for {cmd}: {e}"))?;
    if app.is_some() {
        // sdme-drop-privs said why on stderr; its status is systemd's.
        return exit_status(&end, cmd, machine, None);
    }
    exit_status(&end, cmd, machine, Some(leader))
}

/// How the unit ended: the start job's result and the main process's.
#[derive(Debug, Clone, PartialEq, Eq)]
struct End {
    job: String,
    /// Service.Result ("success", "exit-code", "signal", ...).
    result: String,
    /// ExecMainCode: CLD_EXITED, CLD_KILLED or CLD_DUMPED (0: never ran).
    code: i32,
    /// ExecMainStatus: the exit status or the signal.
    status: i32,
}

/// A unit name unique in the guest: our pid and the time.
fn unit_name() -> String {
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("run-sdme-{}-{ns}.service", std::process::id())
}

/// Our stdin, stdout and stderr as descriptors to pass; /dev/null for a
/// closed one (kept open until the start was sent).
struct Stdio {
    fds: [RawFd; 3],
    _null: Option<File>,
    tty: bool,
}

impl Stdio {
    fn ours() -> Result<Stdio> {
        let mut fds = [0, 1, 2];
        let mut null = None;
        for fd in &mut fds {
            // SAFETY: F_GETFD only asks whether the descriptor is open.
            if unsafe { libc::fcntl(*fd, libc::F_GETFD) } < 0 {
                let f = match null.take() {
                    Some(f) => f,
                    None => File::options()
                        .read(true)
                        .write(true)
                        .open("/dev/null")
                        .map_err(|e| anyhow!("/dev/null: {e}"))?,
                };
                *fd = f.as_raw_fd();
                null = Some(f);
            }
        }
        // SAFETY: isatty on descriptors checked above.
        let tty = fds.iter().any(|fd| unsafe { libc::isatty(*fd) } == 1);
        Ok(Stdio {
            fds,
            _null: null,
            tty,
        })
    }

    /// The transient unit's properties.
    fn props(&self, command: &[String], app: Option<&InApp>) -> Result<Value> {
        let s = |v: &str| Value::Str(v.into());
        let prop = |name: &str, sig: &str, v: Value| {
            Value::Struct(vec![s(name), Value::Variant(sig.into(), Box::new(v))])
        };
        let prefix = app.map_or(&[][..], |a| &a.prefix[..]);
        let words: Vec<&String> = prefix.iter().chain(command).collect();
        let argv = Value::Array(words.iter().map(|a| s(a)).collect());
        // ExecStartEx with no-env-expand: the words as given (ExecStart
        // would expand $VAR and turn $$ into $, as systemd-run does).
        let flags = Value::Array(vec![s("no-env-expand")]);
        let exec = Value::Struct(vec![s(words[0]), argv, flags]);
        let mut p = vec![
            prop("Description", "s", s(&description(command))),
            prop("Type", "s", s("exec")),
            prop("AddRef", "b", Value::Bool(true)),
            prop("CollectMode", "s", s("inactive-or-failed")),
            prop("IgnoreSIGPIPE", "b", Value::Bool(false)),
            prop("StandardInputFileDescriptor", "h", Value::Fd(self.fds[0])),
            prop("StandardOutputFileDescriptor", "h", Value::Fd(self.fds[1])),
            prop("StandardErrorFileDescriptor", "h", Value::Fd(self.fds[2])),
        ];
        let mut env: Vec<Value> = app.map_or(Vec::new(), |a| a.env.iter().map(|e| s(e)).collect());
        if let (true, Ok(t)) = (self.tty, std::env::var("TERM")) {
            env.push(s(&format!("TERM={t}")));
        }
        if !env.is_empty() {
            p.push(prop("Environment", "as", Value::Array(env)));
        }
        if let Some(a) = app {
            p.push(prop("RootDirectory", "s", s(&a.root)));
            p.push(prop("MountAPIVFS", "b", Value::Bool(true)));
        }
        p.push(prop("ExecStartEx", "a(sasas)", Value::Array(vec![exec])));
        Ok(Value::Array(p))
    }
}

/// "sdme exec CMD ARGS", at most 200 bytes (a whole character).
fn description(command: &[String]) -> String {
    let mut d = format!("sdme exec {}", command.join(" "));
    if d.len() > 200 {
        let mut end = 200;
        while !d.is_char_boundary(end) {
            end -= 1;
        }
        d.truncate(end);
    }
    d
}

/// AddMatch for the unit's PropertiesChanged and for JobRemoved,
/// Subscribe, StartTransientUnit: sent in one write, in this order.
fn start_calls(unit: &str, path: &str, props: &Value) -> Vec<(Call<'static>, Vec<Value>)> {
    let add_match = Call {
        dest: "org.freedesktop.DBus",
        path: "/org/freedesktop/DBus",
        iface: "org.freedesktop.DBus",
        member: "AddMatch",
        sig: "s",
    };
    let manager = |member, sig| Call {
        dest: SYSTEMD,
        path: SYSTEMD_PATH,
        iface: MANAGER,
        member,
        sig,
    };
    let rule = |r: String| vec![Value::Str(r)];
    vec![
        (
            add_match,
            rule(format!(
                "type='signal',sender='{SYSTEMD}',path='{path}',\
                 interface='{PROPERTIES}',member='PropertiesChanged'"
            )),
        ),
        (
            add_match,
            rule(format!(
                "type='signal',sender='{SYSTEMD}',path='{SYSTEMD_PATH}',\
                 interface='{MANAGER}',member='JobRemoved'"
            )),
        ),
        (manager("Subscribe", ""), vec![]),
        (
            manager("StartTransientUnit", "ssa(sv)a(sa(sv))"),
            vec![
                Value::Str(unit.into()),
                Value::Str("fail".into()),
                props.clone(),
                Value::Array(vec![]),
            ],
        ),
    ]
}

/// From now on a signal to sdme is sent to the unit's processes; one
/// that came already is sent at once.
fn forward_signals(sig: &Signals, leader: i32, unit: &str) {
    let u = unit.to_string();
    sig.on_signal(move |s| kill_unit(leader, &u, s));
    if let Some(s) = sig.received() {
        kill_unit(leader, unit, s);
    }
}

/// KillUnit(unit, "all", signal) on a connection of its own (the first
/// one is busy waiting); an error is reported, the wait goes on.
fn kill_unit(leader: i32, unit: &str, signal: i32) {
    let deadline = Instant::now() + CALL_TIMEOUT;
    let call = Call {
        dest: SYSTEMD,
        path: SYSTEMD_PATH,
        iface: MANAGER,
        member: "KillUnit",
        sig: "ssi",
    };
    let args = [
        Value::Str(unit.into()),
        Value::Str("all".into()),
        Value::I32(signal),
    ];
    let r = guest::connect_root(leader, deadline).and_then(|mut c| {
        match c.call_with(&call, &args, deadline) {
            // The command ended meanwhile: nothing to pass it to.
            Err(Error::Reply(n, _)) if GONE.contains(&n.as_str()) => Ok(vec![]),
            r => r.map_err(|e| e.to_string()),
        }
    });
    if let Err(e) = r {
        eprintln!("sdme: passing signal {signal} to {unit}: {e}");
    }
}

/// KillUnit's errors for a unit without processes or already gone.
const GONE: [&str; 2] = [
    "org.freedesktop.systemd1.NoSuchProcess",
    "org.freedesktop.systemd1.NoSuchUnit",
];

/// Wait for the start job's end, then for the unit's; read how it ended.
fn wait_end(conn: &mut Conn, job: &str, path: &str) -> sdme_helpers::dbus::Result<End> {
    let far = Instant::now() + FOREVER;
    let result = loop {
        let m = conn.next_signal(far)?;
        if let Some(r) = sys::job_removed(&m, job) {
            break r;
        }
    };
    loop {
        let end = read_end(conn, path, &result)?;
        if end.1 {
            return Ok(end.0);
        }
        // Only states signalled after the job's end count: an earlier
        // "inactive" is the one before the start.
        loop {
            let m = conn.next_signal(far)?;
            if m.path == path && ended(&m) {
                break;
            }
        }
    }
}

/// A PropertiesChanged of the Unit interface saying ActiveState is
/// inactive or failed, or invalidating it.
fn ended(m: &Message) -> bool {
    if m.member != "PropertiesChanged"
        || !matches!(m.args.first(), Some(Value::Str(i)) if i == UNIT)
    {
        return false;
    }
    let changed = match m.args.get(1) {
        Some(Value::Array(entries)) => entries.iter().find_map(|e| match e {
            Value::Struct(f) if f.first() == Some(&Value::Str("ActiveState".into())) => f.get(1),
            _ => None,
        }),
        _ => None,
    };
    let invalidated = matches!(m.args.get(2), Some(Value::Array(names))
        if names.contains(&Value::Str("ActiveState".into())));
    invalidated || matches!(changed, Some(Value::Str(s)) if is_done(s))
}

fn is_done(state: &str) -> bool {
    matches!(state, "inactive" | "failed")
}

/// ActiveState, Result, ExecMainCode and ExecMainStatus in one round
/// trip; true when the unit has ended.
fn read_end(conn: &mut Conn, path: &str, job: &str) -> sdme_helpers::dbus::Result<(End, bool)> {
    let get = Call {
        dest: SYSTEMD,
        path,
        iface: PROPERTIES,
        member: "Get",
        sig: "ss",
    };
    let ask =
        |iface: &str, prop: &str| (get, vec![Value::Str(iface.into()), Value::Str(prop.into())]);
    let calls = [
        ask(UNIT, "ActiveState"),
        ask(SERVICE, "Result"),
        ask(SERVICE, "ExecMainCode"),
        ask(SERVICE, "ExecMainStatus"),
    ];
    let r = conn.call_all(&calls, Instant::now() + CALL_TIMEOUT)?;
    let text = |i: usize| match r.get(i).and_then(|v| v.first()) {
        Some(Value::Str(s)) => s.clone(),
        _ => String::new(),
    };
    let int = |i: usize| match r.get(i).and_then(|v| v.first()) {
        Some(Value::I32(n)) => *n,
        _ => 0,
    };
    let end = End {
        job: job.to_string(),
        result: text(1),
        code: int(2),
        status: int(3),
    };
    Ok((end, is_done(&text(0))))
}

/// sdme's exit status for how the unit ended; a command that did not
/// run gets a line on stderr. The start job's result does not say it:
/// systemd 252 fails the job of a command that exits before the job ends.
/// Without `leader` a 203 is left as it is.
fn exit_status(end: &End, cmd: &str, machine: &str, leader: Option<i32>) -> Result<ExitCode> {
    let why = |l| not_executed(l, cmd);
    let code = match end.code {
        libc::CLD_EXITED if end.status == EXIT_EXEC => match leader.and_then(why) {
            Some((code, what)) => {
                eprintln!("sdme: {cmd}: {what} in {machine}");
                code
            }
            None => end.status,
        },
        libc::CLD_EXITED => end.status,
        libc::CLD_KILLED | libc::CLD_DUMPED => 128 + end.status,
        _ => bail!(
            "{machine}: {cmd} did not run (job {}, result {})",
            end.job,
            end.result
        ),
    };
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// Why systemd could not execute `cmd` (status 203), as a shell says it:
/// it does not exist in the guest (127) or is not an executable file
/// (126); None when it is one (then 203 was the command's own status).
/// A name is looked up where systemd looks; all inside the guest's root.
fn not_executed(leader: i32, cmd: &str) -> Option<(i32, &'static str)> {
    let mode = if cmd.contains('/') {
        guest::mode(leader, cmd)
    } else {
        SEARCH_PATH
            .iter()
            .find_map(|d| guest::mode(leader, &format!("{d}/{cmd}")))
    };
    match mode {
        None => Some((127, "command not found")),
        Some(m) if m & libc::S_IFMT != libc::S_IFREG || m & 0o111 == 0 => {
            Some((126, "cannot be executed"))
        }
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_paths_escape_as_systemd_does() {
        assert_eq!(
            unit_path("run-sdme-12-3.service"),
            "/org/freedesktop/systemd1/unit/run_2dsdme_2d12_2d3_2eservice"
        );
        let u = unit_name();
        assert!(u.starts_with("run-sdme-") && u.ends_with(".service"), "{u}");
    }

    fn end(job: &str, code: i32, status: i32) -> End {
        End {
            job: job.into(),
            result: "exit-code".into(),
            code,
            status,
        }
    }

    fn status_of(e: &End) -> Result<u8> {
        // The process's exit code is opaque: compare through Debug.
        let c = exit_status(e, "x", "m", Some(i32::MAX))?;
        (0..=255u8)
            .find(|n| format!("{c:?}") == format!("{:?}", ExitCode::from(*n)))
            .ok_or_else(|| anyhow!("no code"))
    }

    #[test]
    fn exit_status_as_a_shell_says_it() {
        assert_eq!(status_of(&end("done", libc::CLD_EXITED, 7)).unwrap(), 7);
        // systemd 252 fails the job of a command that ends quickly.
        assert_eq!(status_of(&end("failed", libc::CLD_EXITED, 7)).unwrap(), 7);
        assert_eq!(status_of(&end("failed", libc::CLD_KILLED, 9)).unwrap(), 137);
        assert_eq!(status_of(&end("done", libc::CLD_EXITED, 0)).unwrap(), 0);
        assert_eq!(status_of(&end("done", libc::CLD_KILLED, 2)).unwrap(), 130);
        assert_eq!(status_of(&end("done", libc::CLD_DUMPED, 11)).unwrap(), 139);
        // Not executed: nothing exists in a guest whose root is gone.
        assert_eq!(
            status_of(&end("failed", libc::CLD_EXITED, 203)).unwrap(),
            127
        );
        let e = status_of(&end("failed", 0, 0)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "m: x did not run (job failed, result exit-code)"
        );
    }

    fn signal(iface: &str, changed: Vec<(&str, &str)>, invalidated: Vec<&str>) -> Message {
        let s = |v: &str| Value::Str(v.into());
        Message {
            kind: 4,
            reply_serial: None,
            error_name: None,
            signature: "sa{sv}as".into(),
            path: "/p".into(),
            interface: PROPERTIES.into(),
            member: "PropertiesChanged".into(),
            unix_fds: 0,
            args: vec![
                s(iface),
                Value::Array(
                    changed
                        .into_iter()
                        .map(|(k, v)| Value::Struct(vec![s(k), s(v)]))
                        .collect(),
                ),
                Value::Array(invalidated.into_iter().map(s).collect()),
            ],
        }
    }

    #[test]
    fn the_end_is_inactive_or_failed_of_the_unit_interface() {
        assert!(ended(&signal(
            UNIT,
            vec![("ActiveState", "inactive")],
            vec![]
        )));
        assert!(ended(&signal(
            UNIT,
            vec![("ActiveState", "failed")],
            vec![]
        )));
        assert!(ended(&signal(UNIT, vec![], vec!["ActiveState"])));
        assert!(!ended(&signal(
            UNIT,
            vec![("ActiveState", "active")],
            vec![]
        )));
        assert!(!ended(&signal(UNIT, vec![("SubState", "dead")], vec![])));
        assert!(!ended(&signal(
            SERVICE,
            vec![("ActiveState", "inactive")],
            vec![]
        )));
    }

    /// Our descriptors as they are, none a terminal.
    fn no_tty() -> Stdio {
        Stdio {
            fds: [0, 1, 2],
            _null: None,
            tty: false,
        }
    }

    #[test]
    fn properties_carry_the_command_and_our_descriptors() {
        let io = no_tty();
        let cmd = ["wc".to_string(), "-l".into()];
        let Value::Array(p) = io.props(&cmd, None).unwrap() else {
            panic!()
        };
        let names: Vec<String> = p
            .iter()
            .filter_map(|e| match e {
                Value::Struct(f) => match f.first() {
                    Some(Value::Str(n)) => Some(n.clone()),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        assert!(names.contains(&"StandardInputFileDescriptor".into()));
        assert!(
            !names.contains(&"Environment".into()),
            "no TERM without a terminal"
        );
        let Some(Value::Struct(last)) = p.last() else {
            panic!()
        };
        let exec = Value::Array(vec![Value::Struct(vec![
            Value::Str("wc".into()),
            Value::Array(vec![Value::Str("wc".into()), Value::Str("-l".into())]),
            Value::Array(vec![Value::Str("no-env-expand".into())]),
        ])]);
        assert_eq!(last[0], Value::Str("ExecStartEx".into()));
        assert_eq!(last[1], Value::Variant("a(sasas)".into(), Box::new(exec)));
        assert_eq!(description(&["x".repeat(300)]).len(), 200);
    }

    #[test]
    fn in_the_app_the_command_goes_through_drop_privs_in_its_root() {
        let io = no_tty();
        let app = InApp {
            root: "/oci/apps/web/root".into(),
            env: vec!["PATH=/bin".into()],
            prefix: ["/.sdme-drop-privs", "65534", "/www", "--"]
                .map(String::from)
                .into(),
        };
        let Value::Array(p) = io.props(&["id".to_string()], Some(&app)).unwrap() else {
            panic!()
        };
        let get = |name: &str| {
            p.iter().find_map(|e| match e {
                Value::Struct(f) if f[0] == Value::Str(name.into()) => Some(f[1].clone()),
                _ => None,
            })
        };
        let v = |sig: &str, v: Value| Some(Value::Variant(sig.into(), Box::new(v)));
        let strs = |w: &[&str]| Value::Array(w.iter().map(|x| Value::Str(x.to_string())).collect());
        assert_eq!(
            get("RootDirectory"),
            v("s", Value::Str("/oci/apps/web/root".into()))
        );
        assert_eq!(get("MountAPIVFS"), v("b", Value::Bool(true)));
        assert_eq!(get("Environment"), v("as", strs(&["PATH=/bin"])));
        let argv = strs(&["/.sdme-drop-privs", "65534", "/www", "--", "id"]);
        let exec = Value::Array(vec![Value::Struct(vec![
            Value::Str("/.sdme-drop-privs".into()),
            argv,
            strs(&["no-env-expand"]),
        ])]);
        assert_eq!(get("ExecStartEx"), v("a(sasas)", exec));
    }
}
