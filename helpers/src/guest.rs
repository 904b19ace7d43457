//! The system state of a running guest (`systemctl -M NAME
//! is-system-running`), asked on the guest's own bus through
//! /proc/LEADER/root without spawning anything: what `sdme ps` shows as
//! HEALTH "degraded" or "starting". The guest is not trusted: its bus
//! socket is resolved inside its root (no symlink out), and the client
//! (crate::dbus) bounds every read and has a deadline.
//!
//! [`connect_root`] gives `sdme exec` the guest's bus as the guest's root,
//! which may start units. The bus knows a client by the credentials of
//! the process that called connect(2). Without PrivateUsers= the guest
//! shares our user namespace and our uid 0 is its root. With it, our uid
//! is not mapped in the guest (the bus would see 65534), so a child joins
//! the guest's user namespace, becomes its uid 0 and connects a socket
//! made before the fork, which stays ours: what sd-bus does for
//! `systemd-run -M` (x-machine-unix), without entering the mount
//! namespace, since the socket is resolved inside the guest's root here.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
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
    let mut conn = connect(leader(machine)?, deadline)?;
    manager_state(&mut conn, deadline)
}

/// SystemState and the ActiveState of the guest's `unit` ("active",
/// "failed", ...), asked on one connection.
pub fn system_and_unit_state(
    machine: &str,
    unit: &str,
    deadline: Instant,
) -> Result<(String, String), String> {
    let mut conn = connect(leader(machine)?, deadline)?;
    let system = manager_state(&mut conn, deadline)?;
    let path = unit_path(unit);
    let active = get_str(
        &mut conn,
        &path,
        "org.freedesktop.systemd1.Unit",
        "ActiveState",
        deadline,
    )?;
    Ok((system, active))
}

fn manager_state(conn: &mut dbus::Conn, deadline: Instant) -> Result<String, String> {
    let manager = "org.freedesktop.systemd1.Manager";
    get_str(
        conn,
        "/org/freedesktop/systemd1",
        manager,
        "SystemState",
        deadline,
    )
}

/// A string property of systemd's object `path`, without control
/// characters, at most 64 of them (the guest is not trusted).
fn get_str(
    conn: &mut dbus::Conn,
    path: &str,
    iface: &str,
    prop: &str,
    deadline: Instant,
) -> Result<String, String> {
    let v = conn
        .call(
            "org.freedesktop.systemd1",
            path,
            "org.freedesktop.DBus.Properties",
            "Get",
            &[iface, prop],
            deadline,
        )
        .map_err(|e| e.to_string())?;
    match v.first() {
        Some(Value::Str(s)) => Ok(s.chars().filter(|c| !c.is_control()).take(64).collect()),
        _ => Err(format!("{prop} is not a string")),
    }
}

/// systemd's object path of a unit: every byte but [A-Za-z0-9] as _XX.
pub fn unit_path(unit: &str) -> String {
    let mut p = String::from("/org/freedesktop/systemd1/unit/");
    for b in unit.bytes() {
        if b.is_ascii_alphanumeric() {
            p.push(b as char);
        } else {
            p.push_str(&format!("_{b:02x}"));
        }
    }
    p
}

/// The leader PID of a registered machine, from machined's state file.
pub fn leader(machine: &str) -> Result<i32, String> {
    let f = Path::new(MACHINES_DIR).join(machine);
    let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
    parse_machine_state(&text)
        .map(|m| m.leader)
        .ok_or_else(|| format!("no LEADER= in {}", f.display()))
}

/// The guest's system bus, its socket opened inside its root.
fn connect(leader: i32, deadline: Instant) -> Result<dbus::Conn, String> {
    let sockfd = bus_socket(leader)?;
    // connect(2) through the O_PATH fd's magic link reaches the inode
    // resolved above, whatever the path looked like.
    let path = format!("/proc/self/fd/{}", sockfd.as_raw_fd());
    dbus::Conn::connect(Path::new(&path), deadline).map_err(|e| format!("/{BUS_SOCKET}: {e}"))
}

/// An O_PATH descriptor of the bus socket, resolved inside the guest's
/// root (symlinks cannot leave it).
fn bus_socket(leader: i32) -> Result<OwnedFd, String> {
    in_root(leader, BUS_SOCKET)
}

/// The mode (type and permissions) of `path` inside the guest's root,
/// symlinks resolved in it; None when it does not exist there.
pub fn mode(leader: i32, path: &str) -> Option<u32> {
    let fd = in_root(leader, path).ok()?;
    nix::sys::stat::fstat(fd.as_raw_fd())
        .ok()
        .map(|st| st.st_mode)
}

/// An O_PATH descriptor of `path` resolved inside the guest's root.
fn in_root(leader: i32, path: &str) -> Result<OwnedFd, String> {
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
    let rel = path.trim_start_matches('/');
    let fd = openat2(rootfd.as_raw_fd(), rel, how).map_err(|e| format!("/{rel}: {e}"))?;
    // SAFETY: a fresh fd from openat2().
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The guest's system bus as the guest's root, with descriptor passing
/// negotiated (see the module's header).
pub fn connect_root(leader: i32, deadline: Instant) -> Result<dbus::Conn, String> {
    let path = bus_socket(leader)?;
    let ns = format!("/proc/{leader}/ns/user");
    let same = std::fs::metadata(&ns)
        .and_then(|g| std::fs::metadata("/proc/self/ns/user").map(|o| (g, o)))
        .map(|(g, o)| (g.dev(), g.ino()) == (o.dev(), o.ino()))
        .map_err(|e| format!("{ns}: {e}"))?;
    let sock = if same {
        UnixStream::connect(format!("/proc/self/fd/{}", path.as_raw_fd()))
            .map_err(|e| format!("/{BUS_SOCKET}: {e}"))?
    } else {
        let nsfd = std::fs::File::open(&ns).map_err(|e| format!("{ns}: {e}"))?;
        connect_in_userns(&nsfd, &path)
            .map_err(|e| format!("/{BUS_SOCKET} as root of the guest's user namespace: {e}"))?
    };
    dbus::Conn::handshake_unix_fd(sock, deadline).map_err(|e| format!("/{BUS_SOCKET}: {e}"))
}

/// A socket of ours connected to `path` (an O_PATH descriptor of a unix
/// socket) by a child that joined the user namespace `ns` as its uid 0.
fn connect_in_userns(ns: &impl AsRawFd, path: &OwnedFd) -> std::io::Result<UnixStream> {
    // SAFETY: plain socket(2); the result is checked.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor from socket().
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let (addr, len) = sockaddr(&format!("/proc/self/fd/{}", path.as_raw_fd()))?;
    // Everything the child needs is prepared above: after fork(2) in a
    // process with threads it only makes system calls.
    // SAFETY: fork; the child calls only async-signal-safe functions.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: raw system calls on descriptors and memory prepared
        // before the fork; _exit never returns.
        unsafe { child_connect(ns.as_raw_fd(), sock.as_raw_fd(), &addr, len) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
        (true, 0) => Ok(UnixStream::from(sock)),
        (true, errno) => Err(std::io::Error::from_raw_os_error(errno)),
        _ => Err(std::io::Error::other("the connecting child was killed")),
    }
}

/// In the forked child: join the user namespace, become its root
/// (setgroups may be refused there: not needed), connect, and exit with
/// 0 or the errno.
///
/// # Safety
/// Only after fork(2); `addr` must be a valid sockaddr_un of `len` bytes.
unsafe fn child_connect(ns: i32, sock: i32, addr: &libc::sockaddr_un, len: u32) -> ! {
    let fail = || libc::_exit(*libc::__errno_location());
    if libc::setns(ns, libc::CLONE_NEWUSER) != 0 {
        fail();
    }
    libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>());
    if libc::syscall(libc::SYS_setresgid, 0, 0, 0) != 0
        || libc::syscall(libc::SYS_setresuid, 0, 0, 0) != 0
    {
        fail();
    }
    let a = addr as *const libc::sockaddr_un as *const libc::sockaddr;
    if libc::connect(sock, a, len) != 0 {
        fail();
    }
    libc::_exit(0)
}

/// A sockaddr_un for `path` and its length.
fn sockaddr(path: &str) -> std::io::Result<(libc::sockaddr_un, u32)> {
    // SAFETY: all zeroes is a valid sockaddr_un.
    let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    a.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let b = path.as_bytes();
    if b.len() >= a.sun_path.len() {
        return Err(std::io::Error::other("socket path too long"));
    }
    for (d, s) in a.sun_path.iter_mut().zip(b) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + b.len() + 1;
    Ok((a, len as u32))
}
