//! The process that asks (the client, in a container's `sdme-app.service`):
//! who it is, from the kernel only (its socket credentials, a pidfd, its
//! `/proc` directory opened while the pidfd shows it alive), and what it
//! is (everything [`super::replicate`] gives the app's process).
//!
//! Nothing the client says is trusted: the container comes from its
//! cgroup (the host's part of the path), the pod from the record
//! sdme-prepare wrote for that container, and the client must be its
//! container's root (which could start any process in the guest anyway).

use std::ffi::{CString, OsString};
use std::io::Read;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// Bounds of what is read from `/proc` (ARG_MAX-sized lists at most).
const MAX_LIST: u64 = 8 << 20;
const MAX_SMALL: u64 = 64 << 10;

/// Not in the libc crate for every target: asm-generic/socket.h.
const SO_PEERPIDFD: libc::c_int = 77;

/// The client, identified.
pub struct Peer {
    pub pid: libc::pid_t,
    pub pidfd: OwnedFd,
    /// `/proc/PID`, opened while `pidfd` showed the process alive.
    pub proc_dir: OwnedFd,
    /// The container's unit (`sdme-NAME.service`), from the cgroup path.
    pub unit: String,
    /// The client's cgroup below `/sys/fs/cgroup`.
    pub cgroup: String,
}

fn last_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// The socket's peer: its pid (in our PID namespace) and a pidfd for it.
pub fn identify(sock: BorrowedFd) -> Result<Peer, String> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are valid out buffers of the right size.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut libc::ucred as *mut libc::c_void,
            &mut len,
        )
    };
    if r != 0 || cred.pid <= 0 {
        return Err(last_error("SO_PEERCRED"));
    }
    let pidfd = peer_pidfd(sock, cred.pid)?;
    let proc_dir = open_proc(cred.pid, &pidfd)?;
    let line = read_at(&proc_dir, "cgroup", MAX_SMALL)?;
    let (unit, cgroup) = unit_of(&String::from_utf8_lossy(&line))?;
    Ok(Peer {
        pid: cred.pid,
        pidfd,
        proc_dir,
        unit,
        cgroup,
    })
}

/// SO_PEERPIDFD (Linux 6.5) names the very process that connected;
/// before it, pidfd_open of the pid from SO_PEERCRED, checked by
/// [`open_proc`] like every later read.
fn peer_pidfd(sock: BorrowedFd, pid: libc::pid_t) -> Result<OwnedFd, String> {
    let mut fd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: fd and len are valid out buffers.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PEERPIDFD,
            &mut fd as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    };
    if r == 0 && fd >= 0 {
        // SAFETY: a fresh fd the kernel gave us.
        return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    let pid = rustix::process::Pid::from_raw(pid).ok_or("pidfd_open: no peer pid")?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .map_err(|e| format!("pidfd_open: {e}"))
}

/// Whether the pidfd's process is still alive (so a pid seen before this
/// call was still its pid).
pub fn alive(pidfd: &OwnedFd) -> bool {
    // Signal 0, which rustix's Signal cannot be.
    // SAFETY: signal 0 only checks; no siginfo, no flags.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        ) == 0
    }
}

fn open_proc(pid: libc::pid_t, pidfd: &OwnedFd) -> Result<OwnedFd, String> {
    let path = CString::new(format!("/proc/{pid}")).map_err(|e| e.to_string())?;
    // SAFETY: a valid C string.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(last_error("open /proc/PID"));
    }
    // SAFETY: a fresh fd.
    let dir = unsafe { OwnedFd::from_raw_fd(fd) };
    if !alive(pidfd) {
        return Err("the application's process ended while it was asking".into());
    }
    Ok(dir)
}

/// Open `name` below `/proc/PID` (no symlink followed but `ns/*`, `root`).
pub fn open_at(dir: &OwnedFd, name: &str, flags: libc::c_int) -> Result<OwnedFd, String> {
    let c = CString::new(name).map_err(|e| e.to_string())?;
    // SAFETY: dir is open, c a valid C string.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(last_error(&format!("open /proc/PID/{name}")));
    }
    // SAFETY: a fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Read `/proc/PID/name`, at most `max` bytes (more is an error).
pub fn read_at(dir: &OwnedFd, name: &str, max: u64) -> Result<Vec<u8>, String> {
    let fd = open_at(dir, name, libc::O_RDONLY)?;
    let mut buf = Vec::new();
    std::fs::File::from(fd)
        .take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("read /proc/PID/{name}: {e}"))?;
    if buf.len() as u64 > max {
        return Err(format!("/proc/PID/{name} is larger than {max} bytes"));
    }
    Ok(buf)
}

/// The container's unit and the cgroup path from `/proc/PID/cgroup`
/// (cgroup v2: `0::/machine.slice/sdme-web.service/payload/…/sdme-app.service`).
/// The first `.service` is the container's unit: the path above it is the
/// host's; the guest names only what is below it. The client must be
/// below it, in the guest: its `sdme-app.service`, or the transient unit
/// of `sdme exec --app`.
pub fn unit_of(text: &str) -> Result<(String, String), String> {
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("the application's process is not in a cgroup v2 hierarchy (AppPod= needs the unified hierarchy)")?;
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let at = parts.iter().position(|p| p.ends_with(".service"));
    match at {
        Some(i) if parts[i].starts_with("sdme-") && i + 1 < parts.len() => {
            Ok((parts[i].to_string(), path.to_string()))
        }
        _ => Err(format!(
            "cgroup {path} is not in the guest of an sdme container"
        )),
    }
}

/// The host ID that ID 0 of the peer's user namespace maps to
/// (`/proc/PID/uid_map` or `gid_map`); 0 without a user namespace.
pub fn root_of(map: &str) -> Option<u32> {
    map.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        match (w.next(), w.next()) {
            (Some("0"), Some(outside)) => outside.parse().ok(),
            _ => None,
        }
    })
}

/// The values of a `/proc/PID/status` field.
pub fn status_field<'a>(status: &'a str, key: &str) -> Option<Vec<&'a str>> {
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == key).then(|| v.split_whitespace().collect())
    })
}

/// A hex mask of `/proc/PID/status` (CapBnd: and the like).
pub fn status_mask(status: &str, key: &str) -> Result<u64, String> {
    let v = status_field(status, key).ok_or_else(|| format!("no {key} in /proc/PID/status"))?;
    let s = v.first().ok_or_else(|| format!("{key}: empty"))?;
    u64::from_str_radix(s, 16).map_err(|e| format!("{key}: {s}: {e}"))
}

/// A decimal (or, for Umask:, octal) number of `/proc/PID/status`.
pub fn status_number(status: &str, key: &str, radix: u32) -> Result<u64, String> {
    let v = status_field(status, key).ok_or_else(|| format!("no {key} in /proc/PID/status"))?;
    let s = v.first().ok_or_else(|| format!("{key}: empty"))?;
    u64::from_str_radix(s, radix).map_err(|e| format!("{key}: {s}: {e}"))
}

/// The peer must be its container's root: every UID and GID of
/// `/proc/PID/status` the host ID of the namespace's 0, no supplementary
/// group.
pub fn check_root(status: &str, uid_map: &str, gid_map: &str) -> Result<(), String> {
    let (uid0, gid0) = (root_of(uid_map), root_of(gid_map));
    let all = |key: &str, want: Option<u32>| -> bool {
        let Some(want) = want else { return false };
        status_field(status, key)
            .is_some_and(|v| v.len() == 4 && v.iter().all(|x| x.parse::<u32>().ok() == Some(want)))
    };
    let groups = status_field(status, "Groups").unwrap_or_default();
    if all("Uid", uid0) && all("Gid", gid0) && groups.is_empty() {
        Ok(())
    } else {
        Err("only the container's root may ask for AppPod= (sdme-app.service runs as root until sdme-drop-privs changes user)".into())
    }
}

/// A NUL-separated list (`cmdline`, `environ`).
pub fn nul_list(buf: Vec<u8>) -> Vec<OsString> {
    buf.split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| OsString::from_vec(w.to_vec()))
        .collect()
}

/// `cmdline` and `environ` of the client.
pub fn command_and_env(dir: &OwnedFd) -> Result<(Vec<OsString>, Vec<OsString>), String> {
    let cmd = nul_list(read_at(dir, "cmdline", MAX_LIST)?);
    let env = nul_list(read_at(dir, "environ", MAX_LIST)?);
    Ok((cmd, env))
}

/// A copy of the client's fd `n` (pidfd_getfd(2)): its stdin, and the
/// journal streams systemd gave it as stdout and stderr.
pub fn take_fd(pidfd: &OwnedFd, n: RawFd) -> Result<OwnedFd, String> {
    use rustix::process::{pidfd_getfd, PidfdGetfdFlags};
    pidfd_getfd(pidfd, n, PidfdGetfdFlags::empty())
        .map_err(|e| format!("pidfd_getfd of fd {n}: {e}"))
}

/// `/sys/fs/cgroup/PATH` as a directory fd for clone3's CLONE_INTO_CGROUP.
pub fn cgroup_dir(path: &str) -> Result<OwnedFd, String> {
    let full = PathBuf::from("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    let c = CString::new(full.into_os_string().into_vec()).map_err(|e| e.to_string())?;
    // SAFETY: a valid C string.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(last_error(&format!("open the cgroup /sys/fs/cgroup{path}")));
    }
    // SAFETY: a fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_container_comes_from_the_hosts_part_of_the_path() {
        let (u, p) =
            unit_of("0::/machine.slice/sdme-web.service/payload/system.slice/sdme-app.service\n")
                .unwrap();
        assert_eq!(u, "sdme-web.service");
        assert_eq!(
            p,
            "/machine.slice/sdme-web.service/payload/system.slice/sdme-app.service"
        );
        // A guest naming its own cgroups like a container's changes nothing.
        let (u, _) = unit_of(
            "0::/machine.slice/sdme-t@one.service/payload/sdme-other.service/sdme-app.service",
        )
        .unwrap();
        assert_eq!(u, "sdme-t@one.service");
        for bad in [
            "0::/machine.slice/sdme-web.service",
            "0::/system.slice/other.service/sdme-app.service",
            "0::/system.slice/sdme-app.service",
            "1:name=systemd:/x\n",
        ] {
            assert!(unit_of(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_the_containers_root() {
        let map = "         0     655360      65536\n";
        let st = |u: &str, g: &str, groups: &str| {
            format!(
                "Name:\tx\nUid:\t{u}\t{u}\t{u}\t{u}\nGid:\t{g}\t{g}\t{g}\t{g}\nGroups:\t{groups}\n"
            )
        };
        assert!(check_root(&st("655360", "655360", ""), map, map).is_ok());
        assert!(check_root(&st("655361", "655360", ""), map, map).is_err());
        assert!(check_root(&st("655360", "655360", "655364"), map, map).is_err());
        let host = "0 0 4294967295\n";
        assert!(check_root(&st("0", "0", ""), host, host).is_ok());
        assert!(check_root(&st("0", "0", ""), "1 0 1\n", host).is_err());
    }

    #[test]
    fn status_values() {
        let s = "CapBnd:\t000001ffffffffff\nUmask:\t0022\nNoNewPrivs:\t1\n";
        assert_eq!(status_mask(s, "CapBnd").unwrap(), 0x1ff_ffff_ffff);
        assert_eq!(status_number(s, "Umask", 8).unwrap(), 0o22);
        assert_eq!(status_number(s, "NoNewPrivs", 10).unwrap(), 1);
        assert!(status_mask(s, "CapAmb").is_err());
    }

    #[test]
    fn lists() {
        let v = nul_list(b"a\0b c\0\0".to_vec());
        assert_eq!(v, [OsString::from("a"), OsString::from("b c")]);
    }
}
