//! The client: `sdme-drop-privs --via-pod USER WORKDIR -- COMMAND...`, the
//! main process of the guest's `sdme-app.service` when the container has
//! `AppPod=` (see [`super`]). Its exit is the app's.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::droppriv::{parse_args, Failure};

/// systemd's EXIT_NETWORK: "failed to set up network namespacing".
pub const EXIT_NETWORK: u8 = 225;

fn fail(message: String) -> Failure {
    Failure {
        status: EXIT_NETWORK,
        message: format!("AppPod=: {message}"),
    }
}

fn last_error() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// Run as the client; returns only on failure (success exits with the
/// app's status, or dies of its signal).
pub fn run(args: &[OsString], socket: &Path) -> Failure {
    if let Err(f) = parse_args(args) {
        return f;
    }
    block_signals();
    let sock = match connect(socket) {
        Ok(s) => s,
        Err(e) => {
            return fail(format!(
                "cannot reach the host's sdme-app-pod.socket at {}: {e}",
                socket.display()
            ))
        }
    };
    // SAFETY: HELLO is a valid buffer; a short send of a datagram fails.
    let sent = unsafe {
        libc::send(
            sock.as_raw_fd(),
            super::HELLO.as_ptr() as *const libc::c_void,
            super::HELLO.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    if sent < 0 {
        return fail(format!("send to sdme-app-pod.socket: {}", last_error()));
    }
    match reply(&sock) {
        Ok(r) => answer(&r),
        Err(e) => fail(format!("waiting for the host's spawner: {e}")),
    }
}

/// Every signal a stop sends to the control group reaches the app, which
/// ends; this process waits for its status and is not to die first.
fn block_signals() {
    // SAFETY: a full set, blocked for this single-threaded process.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn connect(path: &Path) -> std::io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(last_error());
    }
    // SAFETY: a fresh fd.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero sockaddr_un is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(std::io::Error::other("socket path too long"));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: addr is a valid sockaddr_un of len bytes.
    let r = unsafe {
        libc::connect(
            sock.as_raw_fd(),
            &addr as *const libc::sockaddr_un as *const libc::sockaddr,
            len,
        )
    };
    if r != 0 {
        return Err(last_error());
    }
    Ok(sock)
}

/// The spawner's one message; EINTR (a ptrace stop while the spawner
/// reads this process) is retried.
fn reply(sock: &OwnedFd) -> std::io::Result<String> {
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: buf is a valid buffer of its length.
        let n = unsafe {
            libc::recv(
                sock.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
            )
        };
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(String::from_utf8_lossy(&buf).into_owned());
        }
        let e = last_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn answer(r: &str) -> Failure {
    if let Some(s) = r.strip_prefix(super::EXIT) {
        match s.trim().parse::<i32>() {
            Ok(status) => exit_like(status),
            Err(_) => fail(format!("a bad reply from the host's spawner: {r}")),
        }
    } else if let Some(m) = r.strip_prefix(super::ERROR) {
        fail(m.to_string())
    } else if r.is_empty() {
        fail("the host's spawner ended without the application's status (see journalctl -u 'sdme-app-pod@*' on the host)".into())
    } else {
        fail(format!("a bad reply from the host's spawner: {r}"))
    }
}

/// End as the app ended: its exit status, or its signal (default action,
/// unblocked), so that systemd sees the same result.
fn exit_like(status: i32) -> ! {
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        // SAFETY: default action for sig, unblocked, then raised.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::raise(sig);
        }
        std::process::exit(128 + sig);
    }
    std::process::exit(libc::WEXITSTATUS(status));
}

/// The socket inside the app's root.
pub fn socket_path() -> PathBuf {
    Path::new(sdme_core::app_unit::APP_POD_IN_APP).join(super::SOCKET_NAME)
}
