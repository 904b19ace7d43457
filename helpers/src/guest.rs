//! The system state of a running guest (`systemctl -M NAME
//! is-system-running`), asked on the guest's own bus through
//! /proc/LEADER/root without spawning anything: what `sdme ps` shows as
//! HEALTH "degraded" or "starting". The guest is not trusted: its bus
//! socket is resolved inside its root (no symlink out), and the client
//! (crate::dbus) bounds every read and has a deadline.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Instant;

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};

use crate::bootwait::{parse_machine_state, BUS_SOCKET};
use crate::dbus::{self, Value};

/// machined's state files.
const MACHINES_DIR: &str = "/run/systemd/machines";

/// The guest manager's SystemState ("running", "degraded", "starting",
/// ...), or why it cannot be known.
pub fn system_state(machine: &str, deadline: Instant) -> Result<String, String> {
    let f = Path::new(MACHINES_DIR).join(machine);
    let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
    let leader = parse_machine_state(&text)
        .ok_or_else(|| format!("no LEADER= in {}", f.display()))?
        .leader;
    let mut conn = connect(leader, deadline)?;
    let v = conn
        .call(
            "org.freedesktop.systemd1",
            "/org/freedesktop/systemd1",
            "org.freedesktop.DBus.Properties",
            "Get",
            &["org.freedesktop.systemd1.Manager", "SystemState"],
            deadline,
        )
        .map_err(|e| e.to_string())?;
    match v.first() {
        Some(Value::Str(s)) => Ok(s.chars().filter(|c| !c.is_control()).take(64).collect()),
        _ => Err("SystemState is not a string".into()),
    }
}

/// The guest's system bus, its socket opened inside its root.
fn connect(leader: i32, deadline: Instant) -> Result<dbus::Conn, String> {
    let root = format!("/proc/{leader}/root");
    let rootfd = nix::fcntl::open(
        root.as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("{root}: {e}"))?;
    // SAFETY: a fresh fd from open().
    let rootfd = unsafe { OwnedFd::from_raw_fd(rootfd) };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let sockfd =
        openat2(rootfd.as_raw_fd(), BUS_SOCKET, how).map_err(|e| format!("/{BUS_SOCKET}: {e}"))?;
    // SAFETY: a fresh fd from openat2().
    let sockfd = unsafe { OwnedFd::from_raw_fd(sockfd) };
    // connect(2) through the O_PATH fd's magic link reaches the inode
    // resolved above, whatever the path looked like.
    let path = format!("/proc/self/fd/{}", sockfd.as_raw_fd());
    dbus::Conn::connect(Path::new(&path), deadline).map_err(|e| format!("/{BUS_SOCKET}: {e}"))
}
