//! The spawner: `sdme-pod app-spawn`, run by `sdme-app-pod@.service` for
//! one connection to `sdme-app-pod.socket` (the socket is its fd 0). See
//! [`super`] for the whole way.

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use super::peer::{self, Peer};
use super::replicate::Traits;

/// Serve the connection on fd 0: one request, one reply. Errors go to
/// the client (into the guest's journal) and to our stderr (the host's).
pub fn serve(records: &Path, pods: &Path) {
    // The app outlives nothing of ours: a stop of this unit (at shutdown,
    // in no set order with the containers) waits for the app to end, when
    // its container stops, instead of cutting its status off.
    set_mask(
        libc::SIG_BLOCK,
        &[libc::SIGTERM, libc::SIGINT, libc::SIGHUP],
    );
    // SAFETY: systemd passes the connection as fd 0 (StandardInput=socket).
    let sock = unsafe { BorrowedFd::borrow_raw(0) };
    let reply = match request(sock).and_then(|()| spawn(sock, records, pods)) {
        Ok(status) => format!("{}{status}", super::EXIT),
        Err(m) => {
            eprintln!("sdme-pod: app-spawn: {m}");
            format!("{}{m}", super::ERROR)
        }
    };
    // SAFETY: reply is a valid buffer; nothing to do if the client left.
    unsafe {
        libc::send(
            sock.as_raw_fd(),
            reply.as_ptr() as *const libc::c_void,
            reply.len(),
            libc::MSG_NOSIGNAL,
        )
    };
}

fn set_mask(how: libc::c_int, signals: &[libc::c_int]) {
    // SAFETY: a set built here, applied to this single-threaded process.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in signals {
            libc::sigaddset(&mut set, *s);
        }
        libc::sigprocmask(how, &set, std::ptr::null_mut());
    }
}

fn request(sock: BorrowedFd) -> Result<(), String> {
    let mut buf = [0u8; 64];
    // SAFETY: buf is a valid buffer of its length.
    let n = unsafe {
        libc::recv(
            sock.as_raw_fd(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            0,
        )
    };
    if n < 0 || buf[..n as usize] != *super::HELLO {
        return Err("not an sdme-drop-privs --via-pod request".into());
    }
    Ok(())
}

/// The container's pod, from the record sdme-prepare wrote for its unit.
fn pod_of(records: &Path, unit: &str) -> Result<String, String> {
    let path = records.join(unit);
    let mut text = String::new();
    File::open(&path)
        .and_then(|f| f.take(256).read_to_string(&mut text))
        .map_err(|e| {
            format!(
                "{unit} has no AppPod= record ({}: {e}); restart the container",
                path.display()
            )
        })?;
    let pod = text.trim().to_string();
    sdme_core::name::check_pod_name(&pod).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(pod)
}

/// The client's arguments for sdme-drop-privs' own steps: its command
/// line without the program and `--via-pod`.
fn drop_privs_args(cmdline: &[OsString]) -> Result<Vec<OsString>, String> {
    match cmdline {
        [_, flag, rest @ ..] if flag == sdme_core::app_unit::VIA_POD => Ok(rest.to_vec()),
        _ => Err("the asking process is not sdme-drop-privs --via-pod".into()),
    }
}

/// What the child needs, gathered before it exists.
struct Plan {
    traits: Traits,
    args: Vec<OsString>,
    env: Vec<OsString>,
    stdio: [OwnedFd; 3],
    root: OwnedFd,
}

fn spawn(sock: BorrowedFd, records: &Path, pods: &Path) -> Result<i32, String> {
    let p = peer::identify(sock)?;
    let pod = pod_of(records, &p.unit)?;
    let pin = crate::pod::netns_path(pods, &pod);
    if !crate::pod::is_pinned(&pin).map_err(|e| format!("{e:#}"))? {
        return Err(format!(
            "pod {pod} is not running (start sdme-pod-{pod}.service)"
        ));
    }
    let netns = File::open(&pin).map_err(|e| format!("{}: {e}", pin.display()))?;
    let (cmdline, env) = peer::command_and_env(&p.proc_dir)?;
    let plan = Plan {
        traits: Traits::read(&p)?,
        args: drop_privs_args(&cmdline)?,
        env,
        stdio: [
            peer::take_fd(&p.pidfd, 0)?,
            peer::take_fd(&p.pidfd, 1)?,
            peer::take_fd(&p.pidfd, 2)?,
        ],
        root: peer::open_at(&p.proc_dir, "root", libc::O_PATH | libc::O_DIRECTORY)?,
    };
    let cgroup = peer::cgroup_dir(&p.cgroup)?;
    // The pod's network and the client's PID namespace: the next child is
    // born in both (setns of CLONE_NEWPID applies to children).
    setns(
        netns.as_raw_fd(),
        libc::CLONE_NEWNET,
        "the pod's network namespace",
    )?;
    setns(
        p.pidfd.as_raw_fd(),
        libc::CLONE_NEWPID,
        "the container's PID namespace",
    )?;
    let (errors_r, errors_w) = pipe()?;
    let Some((pid, pidfd)) = clone_into(&cgroup)? else {
        drop(errors_r);
        child(&p, &plan, errors_w);
    };
    // Nothing of the app's stays open here but its pidfd and the peer's.
    drop((errors_w, plan, cgroup, netns));
    let mut failed = String::new();
    let _ = File::from(errors_r).take(4096).read_to_string(&mut failed);
    let status = wait(sock, pid, &pidfd)?;
    if !failed.is_empty() {
        return Err(failed);
    }
    Ok(status)
}

fn setns(fd: RawFd, kind: libc::c_int, what: &str) -> Result<(), String> {
    // SAFETY: setns(2) on an open namespace fd or pidfd.
    if unsafe { libc::setns(fd, kind) } != 0 {
        return Err(format!(
            "setns into {what}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: two fresh fds.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// linux/sched.h (Linux 5.7).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// clone3(2) with CLONE_INTO_CGROUP (the child starts in the client's
/// cgroup, where the guest's systemd sees and stops it) and CLONE_PIDFD.
/// Like fork(2) otherwise (this process has one thread): `None` in the
/// child, the child's pid and pidfd in the parent.
fn clone_into(cgroup: &OwnedFd) -> Result<Option<(libc::pid_t, OwnedFd)>, String> {
    let mut pidfd: libc::c_int = -1;
    // SAFETY: all-zero clone_args are valid; the fields are set below.
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = CLONE_INTO_CGROUP | libc::CLONE_PIDFD as u64;
    args.pidfd = &mut pidfd as *mut libc::c_int as u64;
    args.exit_signal = libc::SIGCHLD as u64;
    args.cgroup = cgroup.as_raw_fd() as u64;
    // SAFETY: args is valid for the call; no stack given: fork semantics.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    if r < 0 {
        return Err(format!(
            "clone3 into the application's cgroup: {}",
            std::io::Error::last_os_error()
        ));
    }
    if r == 0 {
        return Ok(None);
    }
    // SAFETY: the kernel stored a fresh pidfd.
    Ok(Some((r as libc::pid_t, unsafe {
        OwnedFd::from_raw_fd(pidfd)
    })))
}

/// Wait for the app; if the client goes away first (killed), kill the app.
fn wait(sock: BorrowedFd, pid: libc::pid_t, pidfd: &OwnedFd) -> Result<i32, String> {
    let mut fds = [
        libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN | libc::POLLRDHUP,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: fds is a valid array of two pollfds.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if r < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if fds[0].revents == 0 && fds[1].revents != 0 {
            // Our own child, through its pidfd (its pid cannot be reused
            // before we reap it); gone already is fine.
            let _ = rustix::process::pidfd_send_signal(pidfd, rustix::process::Signal::KILL);
        }
        break;
    }
    let mut status = 0;
    // SAFETY: our child; status is a valid out pointer.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
    }
    Ok(status)
}

/// The app's process: become the client's twin in the pod's network,
/// then sdme-drop-privs' steps and the exec. Never returns.
fn child(p: &Peer, plan: &Plan, errors: OwnedFd) -> ! {
    if let Err(m) = setup(p, plan, errors.as_raw_fd()) {
        report(&errors, &m);
        // SAFETY: leave at once, nothing of the parent's to flush.
        unsafe { libc::_exit(super::client::EXIT_NETWORK as i32) };
    }
    drop(errors);
    let f = crate::droppriv::run(&plan.args);
    eprintln!("sdme-drop-privs: {}", f.message.replace('\n', " "));
    // SAFETY: as above.
    unsafe { libc::_exit(f.status as i32) }
}

fn report(errors: &OwnedFd, m: &str) {
    // SAFETY: m is a valid buffer; a failed report changes nothing.
    unsafe {
        libc::write(
            errors.as_raw_fd(),
            m.as_ptr() as *const libc::c_void,
            m.len(),
        )
    };
}

fn setup(p: &Peer, plan: &Plan, keep: RawFd) -> Result<(), String> {
    plan.traits.apply_as_host()?;
    plan.traits.enter(&p.pidfd, &plan.root)?;
    // A new session, away from the spawner's, and no signal blocked (as
    // systemd starts a service).
    // SAFETY: plain calls on this process.
    unsafe { libc::setsid() };
    set_mask(libc::SIG_SETMASK, &[]);
    for (n, fd) in plan.stdio.iter().enumerate() {
        // SAFETY: dup2 onto 0, 1, 2 from open fds.
        if unsafe { libc::dup2(fd.as_raw_fd(), n as RawFd) } < 0 {
            return Err(format!(
                "dup2 onto fd {n}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    close_all_but(keep);
    for (k, _) in std::env::vars_os() {
        std::env::remove_var(k);
    }
    for e in &plan.env {
        let s = e.to_string_lossy();
        if let Some((k, v)) = s.split_once('=') {
            if !k.is_empty() {
                std::env::set_var(k, v);
            }
        }
    }
    plan.traits.become_client()
}

/// Close every fd above 2 but `keep` (the error pipe): nothing of the
/// host's (pidfds, the pod's namespace, the cgroup directory) may reach
/// the app or its relay, which does not exec.
fn close_all_but(keep: RawFd) {
    // SAFETY: close_range(2) on ranges of fds this process owns.
    unsafe {
        if keep > 3 {
            libc::syscall(libc::SYS_close_range, 3u32, (keep - 1) as u32, 0u32);
        }
        libc::syscall(libc::SYS_close_range, (keep + 1) as u32, u32::MAX, 0u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_drop_privs_via_pod() {
        let v = |s: &[&str]| s.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            drop_privs_args(&v(&["/.sdme-drop-privs", "--via-pod", "0", "/", "--", "x"])).unwrap(),
            v(&["0", "/", "--", "x"])
        );
        assert!(drop_privs_args(&v(&["/bin/sh", "-c", "x"])).is_err());
        assert!(drop_privs_args(&v(&["x"])).is_err());
    }

    #[test]
    fn the_record_names_a_pod() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("sdme-a.service"), "web\n").unwrap();
        std::fs::write(t.path().join("sdme-b.service"), "../x\n").unwrap();
        assert_eq!(pod_of(t.path(), "sdme-a.service").unwrap(), "web");
        assert!(pod_of(t.path(), "sdme-b.service").is_err());
        let e = pod_of(t.path(), "sdme-c.service").unwrap_err();
        assert!(e.contains("sdme-c.service has no AppPod= record"), "{e}");
    }
}
