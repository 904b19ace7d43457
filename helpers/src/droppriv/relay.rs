//! `/dev/stdout` for every binary: when fd 1 or 2 is a socket (a journal
//! stream, which the kernel refuses to open again through
//! `/proc/self/fd/N`: ENXIO), the app gets a pipe there instead, and a
//! relay process copies the pipe to the socket.
//!
//! The relay is a grandchild (double fork), so that the app stays the
//! process systemd started (its exit status and signals are the unit's,
//! with nothing in between) and the relay is not a child of the app (a
//! shell's bare `wait` would wait for it forever). It runs with the app's
//! ids, ignores the signals a stop sends to the whole control group (the
//! app's last lines still get through) and exits when every writer has
//! closed the pipe.

use std::io;
use std::os::fd::RawFd;

/// Where the app's ends of the pipes go, and which socket each relays to.
struct Plan {
    /// (socket fd the relay writes to, app fds the pipe replaces)
    routes: Vec<(RawFd, Vec<RawFd>)>,
}

fn stat(fd: RawFd) -> Option<libc::stat> {
    // SAFETY: an all-zero stat is valid; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a valid out buffer.
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some(st)
}

fn is_socket(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFSOCK
}

/// Which of fds 1 and 2 need a pipe; one pipe when both are the same
/// socket (systemd's default), so that their order is kept.
fn plan() -> Plan {
    let (out, err) = (stat(1), stat(2));
    let sock = |s: &Option<libc::stat>| s.as_ref().is_some_and(is_socket);
    let mut routes = Vec::new();
    match (sock(&out), sock(&err)) {
        (true, true) if same(&out, &err) => routes.push((1, vec![1, 2])),
        (o, e) => {
            if o {
                routes.push((1, vec![1]));
            }
            if e {
                routes.push((2, vec![2]));
            }
        }
    }
    Plan { routes }
}

fn same(a: &Option<libc::stat>, b: &Option<libc::stat>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
        _ => false,
    }
}

fn pipe() -> Result<(RawFd, RawFd), String> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", io::Error::last_os_error()));
    }
    Ok((fds[0], fds[1]))
}

/// Give the app pipes where fds 1 and 2 are sockets and start the relay.
/// Nothing to do when neither is a socket.
pub fn setup() -> Result<(), String> {
    let plan = plan();
    if plan.routes.is_empty() {
        return Ok(());
    }
    let mut pipes = Vec::new();
    for (sock, app_fds) in &plan.routes {
        let (r, w) = pipe()?;
        pipes.push((r, w, *sock, app_fds.clone()));
    }
    let reads: Vec<(RawFd, RawFd)> = pipes.iter().map(|p| (p.0, p.2)).collect();
    let writes: Vec<RawFd> = pipes.iter().map(|p| p.1).collect();
    spawn_relay(&reads, &writes)?;
    for (r, w, _, app_fds) in pipes {
        for fd in app_fds {
            // SAFETY: w is our pipe's write end; dup2 clears CLOEXEC on fd.
            if unsafe { libc::dup2(w, fd) } < 0 {
                return Err(format!("dup2 onto fd {fd}: {}", io::Error::last_os_error()));
            }
        }
        // SAFETY: both are ours and no longer needed here.
        unsafe {
            libc::close(r);
            libc::close(w);
        }
    }
    Ok(())
}

/// Fork a child that forks the relay and exits at once, and reap it.
fn spawn_relay(reads: &[(RawFd, RawFd)], writes: &[RawFd]) -> Result<(), String> {
    // SAFETY: the helper is single-threaded.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(format!("fork: {}", io::Error::last_os_error()));
    }
    if child == 0 {
        // SAFETY: single-threaded child.
        let relay = unsafe { libc::fork() };
        if relay == 0 {
            run_relay(reads, writes);
        }
        // SAFETY: leave without running the parent's exit handlers.
        unsafe { libc::_exit(if relay < 0 { 1 } else { 0 }) };
    }
    let mut status = 0;
    // SAFETY: child is ours.
    if unsafe { libc::waitpid(child, &mut status, 0) } != child
        || !libc::WIFEXITED(status)
        || libc::WEXITSTATUS(status) != 0
    {
        return Err("fork of the output relay failed".to_string());
    }
    Ok(())
}

/// The signals a stop sends to the whole control group, and SIGPIPE
/// (a write error ends one route, not the relay).
const IGNORED: [libc::c_int; 7] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGPIPE,
];

/// The relay process: never returns.
fn run_relay(reads: &[(RawFd, RawFd)], writes: &[RawFd]) -> ! {
    for sig in IGNORED {
        // SAFETY: setting a signal to SIG_IGN.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
    // SAFETY: closing our copies of the write ends, naming ourselves.
    unsafe {
        for &w in writes {
            libc::close(w);
        }
        libc::prctl(
            libc::PR_SET_NAME,
            b"sdme-relay\0".as_ptr() as libc::c_ulong,
            0,
            0,
            0,
        );
        libc::chdir(b"/\0".as_ptr().cast());
    }
    copy_until_closed(reads.to_vec());
    // SAFETY: plain exit.
    unsafe { libc::_exit(0) }
}

/// Copy each pipe to its socket until every pipe is at end of file; a
/// route whose socket fails is closed, so that the app sees EPIPE as it
/// would have without the relay.
pub fn copy_until_closed(mut routes: Vec<(RawFd, RawFd)>) {
    let mut buf = vec![0u8; 64 << 10];
    while !routes.is_empty() {
        let mut pfds: Vec<libc::pollfd> = routes
            .iter()
            .map(|&(fd, _)| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: pfds is a valid array of its length.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, -1) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        let mut done = Vec::new();
        for (i, p) in pfds.iter().enumerate() {
            if p.revents != 0 && !pump(routes[i], &mut buf) {
                done.push(i);
            }
        }
        for i in done.into_iter().rev() {
            // SAFETY: our read end.
            unsafe { libc::close(routes[i].0) };
            routes.remove(i);
        }
    }
}

/// One read and its write; false when the route is finished.
fn pump((from, to): (RawFd, RawFd), buf: &mut [u8]) -> bool {
    // SAFETY: buf is valid for its length.
    let n = unsafe { libc::read(from, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return io::Error::last_os_error().kind() == io::ErrorKind::Interrupted;
    }
    n > 0 && write_all(to, &buf[..n as usize])
}

fn write_all(fd: RawFd, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        // SAFETY: data is valid for its length.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n > 0 {
            data = &data[n as usize..];
            continue;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => wait_writable(fd),
            _ => return false,
        }
    }
    true
}

fn wait_writable(fd: RawFd) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, -1) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::{AsRawFd, IntoRawFd};
    use std::os::unix::net::UnixStream;

    #[test]
    fn copies_until_end_of_file_and_stops_on_a_dead_socket() {
        let (r, w) = pipe().unwrap();
        let (sock, mut peer) = UnixStream::pair().unwrap();
        let mut wf = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(w) };
        wf.write_all(b"one\ntwo\n").unwrap();
        drop(wf);
        copy_until_closed(vec![(r, sock.as_raw_fd())]);
        drop(sock);
        let mut got = String::new();
        peer.read_to_string(&mut got).unwrap();
        assert_eq!(got, "one\ntwo\n");

        // The peer is gone: the route ends although the writer is open.
        let (r, w) = pipe().unwrap();
        let (sock, peer) = UnixStream::pair().unwrap();
        drop(peer);
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        let mut wf = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(w) };
        wf.write_all(b"lost\n").unwrap();
        copy_until_closed(vec![(r, sock.into_raw_fd())]);
        // The read end is closed: the writer now gets EPIPE.
        assert_eq!(
            wf.write(b"x").unwrap_err().raw_os_error(),
            Some(libc::EPIPE)
        );
    }
}
