//! sdme-pod(8): a pod's network namespace.
//!
//! - `create NAME`: a new network namespace with only `lo`, up, pinned by
//!   a bind mount of its nsfs file onto `PODS_DIR/NAME/netns`, so that it
//!   outlives the one-shot unit's process. Already pinned: success.
//! - `remove NAME`: unmount and delete the pin. Missing: success.
//! - `exec NAME -- CMD...`: enter the pinned namespace and exec CMD (the
//!   container unit runs systemd-nspawn this way; entering before nspawn
//!   also works when nspawn then makes a user namespace).
//! - `app-spawn`: the host's side of `AppPod=` ([`crate::apppod`], called
//!   by the binary's main).
//!
//! `PODS_DIR` is `/run/sdme/pods`, or `$SDME_POD_DIR` (for tests).

use std::ffi::{CString, OsString};
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use sdme_core::name::check_pod_name;

pub const DEFAULT_PODS_DIR: &str = "/run/sdme/pods";
pub const PODS_DIR_ENV: &str = "SDME_POD_DIR";

/// statfs magic of nsfs (linux/magic.h).
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Where pods are pinned.
pub fn pods_dir() -> PathBuf {
    match std::env::var_os(PODS_DIR_ENV) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(DEFAULT_PODS_DIR),
    }
}

/// `DIR/NAME/netns`.
pub fn netns_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name).join("netns")
}

fn check_name(name: &str) -> Result<()> {
    check_pod_name(name).map_err(|m| anyhow!("{m}"))
}

fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| anyhow!("{}: NUL in path", p.display()))
}

/// Whether `path` is a pinned namespace (an nsfs file mounted there).
pub fn is_pinned(path: &Path) -> Result<bool> {
    let c = cpath(path)?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid C string, st a valid out buffer.
    let r = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    if r != 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::NotFound {
            return Ok(false);
        }
        return Err(e).with_context(|| format!("{}", path.display()));
    }
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_type as i64 == NSFS_MAGIC)
}

/// A socket and the current flags of `lo` in the calling thread's network
/// namespace (SIOCGIFFLAGS).
fn loopback_flags() -> Result<(OwnedFd, libc::ifreq)> {
    // SAFETY: plain socket call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context("socket");
    }
    // SAFETY: fd is ours.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero ifreq is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo".iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    // SAFETY: req is a valid ifreq for this ioctl.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) } < 0 {
        return Err(io::Error::last_os_error()).context("SIOCGIFFLAGS lo");
    }
    Ok((sock, req))
}

/// Bring `lo` up in the calling thread's network namespace.
fn loopback_up() -> Result<()> {
    let (sock, mut req) = loopback_flags()?;
    // SAFETY: SIOCGIFFLAGS filled the flags member.
    unsafe {
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
    }
    // SAFETY: req is a valid ifreq for this ioctl.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) } < 0 {
        let e = io::Error::last_os_error();
        return Err(anyhow!(with_missing_cap(
            "SIOCSIFFLAGS lo up",
            &e,
            NET_ADMIN
        )));
    }
    Ok(())
}

/// What a pod needs that a container sharing its host's network lacks:
/// systemd-nspawn drops CAP_NET_ADMIN unless the container has a network
/// namespace of its own.
const NET_ADMIN: &str =
    "needs CAP_NET_ADMIN; are you inside a container that shares its host's network?";
/// unshare(CLONE_NEWNET) needs CAP_SYS_ADMIN.
const SYS_ADMIN: &str =
    "needs CAP_SYS_ADMIN; are you running without privileges, or in a container that drops it?";

/// `OP: ERROR`, and when the kernel refused permission, what is missing
/// (`hint`).
fn with_missing_cap(op: &str, e: &io::Error, hint: &str) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => format!("{op}: {e}: {hint}"),
        _ => format!("{op}: {e}"),
    }
}

/// Whether `lo` is up in the calling thread's network namespace.
pub fn loopback_is_up() -> Result<bool> {
    let (_sock, req) = loopback_flags()?;
    // SAFETY: SIOCGIFFLAGS filled the flags member.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    Ok(flags & libc::IFF_UP as libc::c_short != 0)
}

/// `create NAME` under `dir`.
pub fn create(dir: &Path, name: &str) -> Result<()> {
    check_name(name)?;
    let pin = netns_path(dir, name);
    if is_pinned(&pin)? {
        return Ok(());
    }
    let pod_dir = pin.parent().unwrap_or(dir);
    // A concurrent remove of the last other pod may remove the directory
    // between the two steps: try again then.
    let mut tries = 0;
    loop {
        fs::create_dir_all(pod_dir).with_context(|| format!("{}", pod_dir.display()))?;
        match fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&pin)
        {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound && tries < 3 => tries += 1,
            Err(e) => return Err(e).with_context(|| format!("{}", pin.display())),
        }
    }
    let target = cpath(&pin)?;
    // The namespace is made by a thread of its own: network namespaces
    // are per thread, and this one never runs anything else.
    let r = std::thread::spawn(move || -> Result<()> {
        // SAFETY: unshare only changes this thread's namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            let e = io::Error::last_os_error();
            return Err(anyhow!(with_missing_cap(
                "unshare(CLONE_NEWNET)",
                &e,
                SYS_ADMIN
            )));
        }
        loopback_up()?;
        let src = CString::new("/proc/thread-self/ns/net").expect("no NUL");
        // SAFETY: valid C strings; a plain bind mount.
        let r = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error()).context("bind mount of the namespace");
        }
        Ok(())
    })
    .join()
    .map_err(|_| anyhow!("namespace thread panicked"))?;
    if let Err(e) = r {
        let _ = fs::remove_file(&pin);
        return Err(e.context(format!("pinning {}", pin.display())));
    }
    Ok(())
}

/// `remove NAME` under `dir`.
pub fn remove(dir: &Path, name: &str) -> Result<()> {
    check_name(name)?;
    let pin = netns_path(dir, name);
    let c = cpath(&pin)?;
    // Several mounts may be stacked after a racing create: undo them all.
    while is_pinned(&pin)? {
        // SAFETY: valid C string.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
            return Err(io::Error::last_os_error())
                .with_context(|| format!("unmounting {}", pin.display()));
        }
    }
    match fs::remove_file(&pin) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("{}", pin.display())),
    }
    if let Some(d) = pin.parent() {
        match fs::remove_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("{}", d.display())),
        }
    }
    // The last pod leaves no directory behind; another pod keeps it.
    let _ = fs::remove_dir(dir);
    Ok(())
}

/// Enter the pinned namespace of pod `name` (the calling thread).
pub fn enter(dir: &Path, name: &str) -> Result<()> {
    check_name(name)?;
    let pin = netns_path(dir, name);
    if !is_pinned(&pin)? {
        bail!(
            "pod {name} is not running ({} is not a pinned network namespace); start sdme-pod-{name}.service",
            pin.display()
        );
    }
    let f = fs::File::open(&pin).with_context(|| format!("{}", pin.display()))?;
    // SAFETY: f is an open nsfs file.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("entering {}", pin.display()));
    }
    Ok(())
}

/// `exec NAME -- CMD...`: returns only on failure.
pub fn exec(dir: &Path, name: &str, cmd: &[OsString]) -> Result<()> {
    if cmd.is_empty() {
        bail!("exec: no command after --");
    }
    enter(dir, name)?;
    let argv: Vec<CString> = cmd
        .iter()
        .map(|a| CString::new(a.as_bytes()).map_err(|_| anyhow!("NUL in argument")))
        .collect::<Result<_>>()?;
    let e = nix::unistd::execvp(&argv[0], &argv).unwrap_err();
    Err(anyhow!("{}: {}", cmd[0].to_string_lossy(), e.desc()))
}

pub const USAGE: &str = "\
Usage: sdme-pod create NAME
       sdme-pod remove NAME
       sdme-pod exec NAME -- COMMAND [ARGS...]
       sdme-pod app-spawn   (run by sdme-app-pod@.service for AppPod=)
";

/// Run the command line (without argv[0]).
pub fn run(args: &[OsString]) -> Result<()> {
    let dir = pods_dir();
    let s: Vec<Option<&str>> = args.iter().map(|a| a.to_str()).collect();
    match s.as_slice() {
        [Some("create"), Some(name)] => create(&dir, name),
        [Some("remove"), Some(name)] => remove(&dir, name),
        [Some("exec"), Some(name), Some("--"), ..] => exec(&dir, name, &args[3..]),
        [Some("-h" | "--help")] => {
            print!("{USAGE}");
            Ok(())
        }
        _ => bail!("invalid arguments; {}", USAGE.replace('\n', " ").trim()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Namespaces and mounts need root; without it these tests fail
    /// rather than pass silently. CI runs them as root.
    fn root() -> bool {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the sdme-pod tests need root (unshare, setns, mounts)"
        );
        true
    }

    #[test]
    fn bad_names_are_refused() {
        let t = tempfile::tempdir().unwrap();
        for n in [
            "", "../x", "a/b", ".x", "a@", "@b", "a@b@c", "a@../x", "a@%i",
        ] {
            assert!(create(t.path(), n).is_err(), "{n}");
        }
    }

    #[test]
    fn permission_errors_say_what_is_missing() {
        let eperm = io::Error::from_raw_os_error(libc::EPERM);
        assert_eq!(
            with_missing_cap("SIOCSIFFLAGS lo up", &eperm, NET_ADMIN),
            "SIOCSIFFLAGS lo up: Operation not permitted (os error 1): needs CAP_NET_ADMIN; \
are you inside a container that shares its host's network?"
        );
        let eacces = io::Error::from_raw_os_error(libc::EACCES);
        assert!(with_missing_cap("x", &eacces, NET_ADMIN).ends_with(NET_ADMIN));
        // Other errors are not blamed on capabilities.
        let enodev = io::Error::from_raw_os_error(libc::ENODEV);
        assert_eq!(
            with_missing_cap("SIOCSIFFLAGS lo up", &enodev, NET_ADMIN),
            "SIOCSIFFLAGS lo up: No such device (os error 19)"
        );
    }

    #[test]
    fn exec_without_pod_names_the_unit() {
        let t = tempfile::tempdir().unwrap();
        let e = enter(t.path(), "web").unwrap_err().to_string();
        assert!(e.contains("start sdme-pod-web.service"), "{e}");
    }

    #[test]
    fn create_enter_remove_round_trip() {
        assert!(root());
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().to_path_buf();
        create(&dir, "web").unwrap();
        let pin = netns_path(&dir, "web");
        assert!(is_pinned(&pin).unwrap());
        // Idempotent: the same namespace stays.
        let ino = fs::metadata(&pin).unwrap().ino();
        create(&dir, "web").unwrap();
        assert_eq!(fs::metadata(&pin).unwrap().ino(), ino);
        let host_ino = fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
        assert_ne!(ino, host_ino);
        // Entering it (in a thread of its own) gives that namespace, lo up,
        // and no other interface.
        let d = dir.clone();
        let (seen, up, links) = std::thread::spawn(move || {
            enter(&d, "web").unwrap();
            let seen = fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
            let dev = fs::read_to_string("/proc/thread-self/net/dev").unwrap();
            let links: Vec<String> = dev
                .lines()
                .skip(2)
                .filter_map(|l| l.split(':').next().map(|n| n.trim().to_string()))
                .collect();
            (seen, loopback_is_up().unwrap(), links)
        })
        .join()
        .unwrap();
        assert_eq!(seen, ino);
        assert!(up);
        assert_eq!(links, ["lo"]);
        remove(&dir, "web").unwrap();
        assert!(!pin.exists());
        assert!(!pin.parent().unwrap().exists());
        assert!(!dir.exists(), "the last pod removes the pods directory");
        remove(&dir, "web").unwrap();
        assert!(enter(&dir, "web").is_err());
    }
}
