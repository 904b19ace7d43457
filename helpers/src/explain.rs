//! `sdme-boot-wait --explain=UNIT`: run by `sdme-explain@UNIT.service`,
//! which a container service starts through `OnFailure=`. It names the
//! cause of failures that systemd's own messages leave vague, in the
//! failed unit's journal (see `journal`), and costs nothing when nothing
//! fails (an `ExecStopPost=` would run at every stop).
//!
//! Three causes so far: the start timeout (systemd says only "start
//! operation timed out", while the cause is a guest that did not finish
//! booting within `BootTimeout=`), a host out of inotify instances (the
//! unit says only "exit-code", while the guest's systemd said why on its
//! console, which the journal holds with `LogConsole=yes`), and a host
//! system bus that refuses root another connection (nspawn says only "No
//! buffer space available").

use std::process::Command;

use anyhow::{bail, Context, Result};

/// The properties of the failed unit that say what happened.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Failure {
    pub result: String,
    pub timeout: String,
    /// The start that failed: its journal entries carry it as
    /// `_SYSTEMD_INVOCATION_ID=`.
    pub invocation: String,
    /// nspawn's exit status, which is the guest's init's: 255 when the
    /// guest's systemd could not set itself up.
    pub status: String,
}

/// The properties `run` asks systemctl for.
const PROPERTIES: [&str; 4] = [
    "Result",
    "TimeoutStartUSec",
    "InvocationID",
    "ExecMainStatus",
];

/// Parse `systemctl show` output of [`PROPERTIES`].
pub fn parse_show(text: &str) -> Failure {
    let mut f = Failure::default();
    for line in text.lines() {
        match line.split_once('=') {
            Some(("Result", v)) => f.result = v.to_string(),
            Some(("TimeoutStartUSec", v)) => f.timeout = v.to_string(),
            Some(("InvocationID", v)) => f.invocation = v.to_string(),
            Some(("ExecMainStatus", v)) => f.status = v.to_string(),
            _ => {}
        }
    }
    f
}

/// The sysctl.d file sdme ships (Makefile, debian/rules).
pub const SYSCTL_FILE: &str = "/usr/lib/sysctl.d/60-sdme.conf";
/// Its name, as systemd-sysctl takes it (then /etc/sysctl.d overrides it).
const SYSCTL_NAME: &str = "60-sdme.conf";
const INOTIFY_INSTANCES: &str = "/proc/sys/fs/inotify/max_user_instances";

/// What the host's inotify instances look like when the explanation is
/// made: fs.inotify.max_user_instances and the instances open (of every
/// user: an upper bound of root's), None where unreadable.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Inotify {
    pub limit: Option<u64>,
    pub open: Option<u64>,
}

/// How close to the limit the instances open after the failure must be to
/// name the limit without the guest's own message: an idle booted Debian
/// guest holds 7 (its systemd 5, dbus-daemon and agetty 1 each), a booting
/// one more; a failed guest's are closed by the time this runs.
const INOTIFY_MARGIN: u64 = 16;

/// The explanation for a failure, when there is one to give. `journal`
/// holds the unit's messages of the failed start (the guest's console
/// with `LogConsole=yes`).
pub fn explanation(f: &Failure, journal: &str, ino: Inotify) -> Option<String> {
    if f.result == "timeout" {
        return Some(format!(
            "the container did not finish booting within BootTimeout={}: systemd-nspawn did not \
report the guest ready in time; the guest's boot messages are above, or raise BootTimeout= \
in the .container file",
            f.timeout
        ));
    }
    let limit = ino.limit.map_or("unknown".to_string(), |l| l.to_string());
    let open = ino.open.map_or("unknown".to_string(), |o| o.to_string());
    let raise = format!(
        "every container of root counts against it, with or without a user namespace; raise it \
with `sysctl -w fs.inotify.max_user_instances=8192`, or apply {SYSCTL_FILE}, which sdme ships \
for this (`/usr/lib/systemd/systemd-sysctl {SYSCTL_NAME}`), then start the container again"
    );
    if journal.lines().any(is_bus_exhaustion) {
        return Some(BUS_LIMIT.to_string());
    }
    if journal.lines().any(is_inotify_exhaustion) {
        return Some(format!(
            "the guest's systemd could not create an inotify instance (\"Too many open files\"): \
the host's limit fs.inotify.max_user_instances (now {limit}, {open} instances open) was \
reached; {raise}"
        ));
    }
    // Without the console (LogConsole=no) the guest's message is gone:
    // name the limit when the guest's init failed (255) next to it.
    let near = matches!((ino.limit, ino.open), (Some(l), Some(o)) if o + INOTIFY_MARGIN >= l);
    if f.result == "exit-code" && f.status == "255" && near {
        return Some(format!(
            "the guest's init exited with status 255 while {open} inotify instances were open on \
the host, next to its limit fs.inotify.max_user_instances (now {limit}): most likely the \
guest's systemd could not create one (LogConsole=yes shows its message); {raise}"
        ));
    }
    None
}

/// Whether a journal line is the guest's systemd failing to get an inotify
/// instance (systemd 252 and 257 word it so, and then fail with "Failed
/// to allocate manager object: Too many open files"). EMFILE from
/// inotify_init1() is the per-user instance limit; the process's own file
/// limit is far higher in a booting systemd (it raises RLIMIT_NOFILE).
pub fn is_inotify_exhaustion(line: &str) -> bool {
    line.contains("inotify") && line.contains("Too many open files")
}

/// What [`is_bus_exhaustion`] means, and what to do.
const BUS_LIMIT: &str = "systemd-nspawn could not register the machine with systemd-machined: the \
host's system bus refused root another connection (org.freedesktop.DBus.Error.LimitsExceeded, \
which nspawn reports as \"No buffer space available\"); dbus-daemon allows \
max_connections_per_user=256 connections per user and max_completed_connections=2048 in all by \
default, and every running container's systemd-nspawn holds one of root's; raise both in \
/etc/dbus-1/system-local.conf (see \"MANY CONTAINERS\" in sdme.container(5)), run `systemctl \
reload dbus`, then start the container again";

/// Whether a journal line is the host's system bus refusing root's next
/// connection: dbus-daemon answers org.freedesktop.DBus.Error.
/// LimitsExceeded, which sd-bus turns into ENOBUFS, so nspawn's message
/// is "Failed to register machine: No buffer space available" (systemd
/// 252 and 257); sdme's helpers name the D-Bus error itself.
pub fn is_bus_exhaustion(line: &str) -> bool {
    line.contains("Failed to register machine: No buffer space available")
        || line.contains("org.freedesktop.DBus.Error.LimitsExceeded")
}

/// Look at `unit` and log the explanation, if any, in its journal.
pub fn run(unit: &str) -> Result<()> {
    sdme_core::value::check_unit_name(unit, "--explain").map_err(anyhow::Error::msg)?;
    let mut show = Command::new("systemctl");
    show.arg("show");
    for p in PROPERTIES {
        show.args(["-p", p]);
    }
    let out = show
        .args(["--", unit])
        .output()
        .context("cannot run systemctl show")?;
    if !out.status.success() {
        bail!(
            "systemctl show {unit}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let f = parse_show(&String::from_utf8_lossy(&out.stdout));
    let journal = if f.result == "timeout" {
        String::new()
    } else {
        journal_of(&f.invocation)?
    };
    let ino = Inotify {
        limit: std::fs::read_to_string(INOTIFY_INSTANCES)
            .ok()
            .and_then(|v| v.trim().parse().ok()),
        open: (f.result == "exit-code").then(count_inotify).flatten(),
    };
    if let Some(why) = explanation(&f, &journal, ino) {
        eprintln!("sdme-boot-wait: {unit}: {why}");
        crate::journal::send_about_unit(unit, "sdme-boot-wait", 3, &why);
    }
    Ok(())
}

/// The inotify instances open on the host: file descriptors that read as
/// `anon_inode:inotify` in /proc/PID/fd (a shared one counts once per
/// holder). Runs only after a failure.
fn count_inotify() -> Option<u64> {
    let mut n = 0;
    for proc in std::fs::read_dir("/proc").ok()?.flatten() {
        if !proc
            .file_name()
            .as_encoded_bytes()
            .iter()
            .all(u8::is_ascii_digit)
        {
            continue;
        }
        // Processes come and go while this runs: skip what vanished.
        let Ok(fds) = std::fs::read_dir(proc.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == "anon_inode:inotify") {
                n += 1;
            }
        }
    }
    Some(n)
}

/// The last messages of one start of a unit (its invocation), bounded.
fn journal_of(invocation: &str) -> Result<String> {
    // An ID is 32 hex digits; anything else would be a journalctl option
    // or another match.
    if invocation.len() != 32 || !invocation.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(String::new());
    }
    // The guest's last console lines reach journald through nspawn's
    // stdout stream, which may still be queued when this runs: "any log
    // messages written before its invocation" are stored after --sync.
    let _ = Command::new("journalctl").arg("--sync").status();
    let out = Command::new("journalctl")
        .args(["--no-pager", "-q", "-o", "cat", "-n", "300"])
        .arg(format!("_SYSTEMD_INVOCATION_ID={invocation}"))
        .output()
        .context("cannot run journalctl")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_only_timeouts() {
        let f = parse_show("Result=timeout\nTimeoutStartUSec=1s\nInvocationID=ab12\n");
        assert_eq!(
            f,
            Failure {
                result: "timeout".into(),
                timeout: "1s".into(),
                invocation: "ab12".into(),
                status: String::new(),
            }
        );
        let why = explanation(&f, "", NEAR).unwrap();
        assert!(
            why.starts_with("the container did not finish booting within BootTimeout=1s"),
            "{why}"
        );
        let exit = parse_show("Result=exit-code\nTimeoutStartUSec=1min 30s\nExecMainStatus=1\n");
        assert_eq!(explanation(&exit, BOOT_OK, NEAR), None);
        assert_eq!(explanation(&parse_show(""), "", Inotify::default()), None);
    }

    /// 120 of 128 open: next to the limit.
    const NEAR: Inotify = Inotify {
        limit: Some(128),
        open: Some(120),
    };

    /// A guest console that booted (LogConsole=yes), trimmed.
    const BOOT_OK: &str = "\
systemd 257.9-1~deb13u1 running in system mode (+PAM +AUDIT +SELINUX)
Detected virtualization systemd-nspawn.
Welcome to Debian GNU/Linux 13 (trixie)!
[  OK  ] Reached target multi-user.target - Multi-User System.
";

    #[test]
    fn names_the_inotify_limit() {
        // As the guest's systemd 257 and 252 print them on the console
        // (issue 17: 30 host clones started at once, limit 128).
        for journal in [
            "systemd 257.9-1~deb13u1 running in system mode (+PAM +AUDIT)\n\
Detected virtualization systemd-nspawn.\n\
Failed to create control group inotify object: Too many open files\n\
Failed to allocate manager object: Too many open files\n\
[!!!!!!] Failed to allocate manager object.\n\
Exiting PID 1...\n",
            "Failed to create control group inotify object: Too many open files\n",
        ] {
            let f = parse_show("Result=exit-code\nTimeoutStartUSec=1min 30s\nExecMainStatus=255\n");
            let far = Inotify {
                limit: Some(128),
                open: Some(30),
            };
            let why = explanation(&f, journal, far).unwrap();
            assert!(
                why.contains("fs.inotify.max_user_instances (now 128, 30 instances open)"),
                "{why}"
            );
            assert!(
                why.contains("sysctl -w fs.inotify.max_user_instances="),
                "{why}"
            );
            assert!(why.contains(SYSCTL_FILE), "{why}");
            assert!(!why.contains('\n'), "one line: {why}");
        }
        let why = explanation(
            &parse_show("Result=exit-code\n"),
            "Failed to create control group inotify object: Too many open files\n",
            Inotify::default(),
        )
        .unwrap();
        assert!(
            why.contains("(now unknown, unknown instances open)"),
            "{why}"
        );
    }

    #[test]
    fn without_the_console_only_status_255_next_to_the_limit() {
        let f = parse_show("Result=exit-code\nExecMainStatus=255\n");
        let why = explanation(&f, "", NEAR).unwrap();
        assert!(
            why.starts_with("the guest's init exited with status 255 while 120 inotify"),
            "{why}"
        );
        assert!(
            why.contains("(now 128)") && why.contains(SYSCTL_FILE),
            "{why}"
        );
        assert!(!why.contains('\n'), "one line: {why}");
        // Far from the limit, another status, or unknown counts: nothing.
        let far = Inotify {
            limit: Some(128),
            open: Some(40),
        };
        assert_eq!(explanation(&f, "", far), None);
        let status1 = parse_show("Result=exit-code\nExecMainStatus=1\n");
        assert_eq!(explanation(&status1, "", NEAR), None);
        let unknown = Inotify {
            limit: Some(128),
            open: None,
        };
        assert_eq!(explanation(&f, "", unknown), None);
    }

    #[test]
    fn only_an_invocation_id_reaches_journalctl() {
        // Anything but 32 hex digits reads nothing (no journalctl run).
        for bad in [
            "",
            "--all",
            "0123456789abcdef0123456789abcde",
            "_PID=1 MESSAGE=x",
        ] {
            assert_eq!(journal_of(bad).unwrap(), "", "{bad}");
        }
    }

    #[test]
    fn names_the_bus_connection_limit() {
        // As the journal of a container had them at 300 containers
        // (tests/bench/scale 300: 253 came up).
        let journal = "\
Failed to register machine: No buffer space available
sdme-s254.service: Main process exited, code=exited, status=1/FAILURE
";
        let f = parse_show("Result=exit-code\nExecMainStatus=1\n");
        let why = explanation(&f, journal, NEAR).unwrap();
        assert!(why.contains("max_connections_per_user=256"), "{why}");
        assert!(why.contains("/etc/dbus-1/system-local.conf"), "{why}");
        assert!(!why.contains('\n'), "one line: {why}");
        assert!(is_bus_exhaustion(
            "sdme-prepare: s254: warning: cannot ask systemd about x.mount (/run/dbus/system_bus_socket: org.freedesktop.DBus.Error.LimitsExceeded: The maximum number of active connections for UID 0 has been reached)"
        ));
        assert!(!is_bus_exhaustion(
            "Failed to register machine: Connection timed out"
        ));
    }

    #[test]
    fn other_emfile_is_not_inotify() {
        assert!(!is_inotify_exhaustion(
            "Failed to open /etc/passwd: Too many open files"
        ));
        assert!(!is_inotify_exhaustion(
            "Failed to add inotify watch: No space left on device"
        ));
        assert!(is_inotify_exhaustion(
            "Failed to create control group inotify object: Too many open files"
        ));
    }
}
