//! Run a shell script inside an imported tree, as a package manager
//! needs it: /proc, /sys (read-only) and /dev of the host bind-mounted,
//! the host's resolv.conf in place of the tree's.
//!
//! The child process makes its own mount namespace (propagation from the
//! host as a slave: nothing it mounts reaches the host) and its own PID
//! namespace for what the script starts. So the bind mounts exist only
//! while it runs and vanish with it, on success, failure, Ctrl+C and even
//! `kill -9` of sdme-import: nothing is ever mounted in the tree as the
//! host sees it, and deleting the tree can never reach into /dev or /sys.
//! No daemon a package script starts outlives the run (it dies with the
//! PID namespace).

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::confine;

/// Where the tree's own resolv.conf waits while the host's is in place.
const RESOLV_SAVED: &str = "etc/.resolv.conf.sdme-import";

/// Run `/bin/sh -c script` chrooted into `root`. `host_resolv` is the
/// resolv.conf copied in for the run; the script's stdout and stderr go
/// to `log`, or to our stderr; `cancelled` is polled, and kills the run.
pub fn run(
    root: &Path,
    script: &str,
    env: &[(&str, &str)],
    host_resolv: &Path,
    log: Option<&File>,
    cancelled: &dyn Fn() -> bool,
) -> Result<ExitStatus> {
    let mut targets = Vec::new();
    for d in ["proc", "sys", "dev"] {
        targets.push(confine::create_dirs(root, Path::new(d))?);
    }
    let sh = confine::resolve(root, Path::new("/bin/sh"))
        .filter(|(h, _)| h.is_file())
        .with_context(|| {
            format!(
                "{} has no /bin/sh to run the package manager with",
                root.display()
            )
        })?;
    drop(sh);
    let _resolv = ResolvSwap::install(root, host_resolv)?;

    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).context("path with NUL byte");
    let root_c = c(root)?;
    let binds: Vec<(CString, CString, bool)> = vec![
        (c(Path::new("/proc"))?, c(&targets[0])?, false),
        (c(Path::new("/sys"))?, c(&targets[1])?, true),
        (c(Path::new("/dev"))?, c(&targets[2])?, false),
    ];
    let slash = CString::new("/").expect("static");
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(script)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LC_ALL", "C")
        .env("HOME", "/root")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .process_group(0);
    match log {
        Some(f) => {
            cmd.stdout(f.try_clone().context("log file")?)
                .stderr(f.try_clone().context("log file")?);
        }
        None => {
            let err = std::io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .context("stderr")?;
            cmd.stdout(err);
        }
    }
    unsafe {
        // SAFETY: only async-signal-safe system calls on memory prepared
        // before fork.
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWPID) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let none = std::ptr::null();
            if libc::mount(
                none,
                slash.as_ptr(),
                none,
                libc::MS_REC | libc::MS_SLAVE,
                none as _,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            for (src, dst, ro) in &binds {
                if libc::mount(
                    src.as_ptr(),
                    dst.as_ptr(),
                    none,
                    libc::MS_BIND | libc::MS_REC,
                    none as _,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::mount(
                    none,
                    dst.as_ptr(),
                    none,
                    libc::MS_REC | libc::MS_SLAVE,
                    none as _,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                if *ro {
                    let f = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
                    if libc::mount(none, dst.as_ptr(), none, f, none as _) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
            }
            if libc::chroot(root_c.as_ptr()) != 0 || libc::chdir(slash.as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // unshare(CLONE_NEWPID) applies to children: fork the script as
            // PID 1 of the new namespace and stay as its waiting parent.
            // Both die when sdme-import dies (PDEATHSIG), and with PID 1
            // every process in the namespace.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let pid = libc::fork();
            if pid < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if pid == 0 {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                return Ok(());
            }
            // The waiting parent lets go of every inherited descriptor, so
            // that spawn() sees the exec of the child (its status pipe
            // closes) instead of waiting for the whole run.
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            let mut status = 0;
            while libc::waitpid(pid, &mut status, 0) < 0 {
                if *libc::__errno_location() != libc::EINTR {
                    libc::_exit(127);
                }
            }
            if libc::WIFEXITED(status) {
                libc::_exit(libc::WEXITSTATUS(status));
            }
            libc::_exit(128 + libc::WTERMSIG(status));
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start /bin/sh in a chroot of {}", root.display()))?;
    let pgid = child.id() as libc::pid_t;
    let status = loop {
        if let Some(s) = child.try_wait().context("waiting for the chroot")? {
            break s;
        }
        if cancelled() {
            // SAFETY: signals our own child's process group.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            let _ = child.wait();
            return Err(crate::cancel::Interrupted.into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Stragglers of the process group (the PID namespace took the rest).
    // SAFETY: signals our own child's process group.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    Ok(status)
}

/// "exit status 100" / "killed by signal 9".
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "unknown status".into(),
    }
}

/// The host's resolv.conf as the tree's /etc/resolv.conf for the run; the
/// tree's own (file, symlink or nothing) put back when dropped.
struct ResolvSwap {
    etc: PathBuf,
    had_own: bool,
}

impl ResolvSwap {
    fn install(root: &Path, host_resolv: &Path) -> Result<ResolvSwap> {
        let etc = confine::create_dirs(root, Path::new("etc"))?;
        let content = std::fs::read(host_resolv)
            .with_context(|| format!("cannot read the host's {}", host_resolv.display()))?;
        let own = etc.join("resolv.conf");
        let saved = root.join(RESOLV_SAVED);
        let _ = std::fs::remove_file(&saved);
        let had_own = match std::fs::symlink_metadata(&own) {
            Ok(m) if m.is_dir() => bail!("{} is a directory", own.display()),
            Ok(_) => {
                std::fs::rename(&own, &saved)
                    .with_context(|| format!("cannot move {} aside", own.display()))?;
                true
            }
            Err(_) => false,
        };
        let swap = ResolvSwap { etc, had_own };
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&own)
            .with_context(|| format!("cannot write {}", own.display()))?;
        f.write_all(&content)
            .with_context(|| format!("cannot write {}", own.display()))?;
        Ok(swap)
    }
}

impl Drop for ResolvSwap {
    fn drop(&mut self) {
        // The package scripts ran in the tree: check /etc is still a plain
        // directory before touching anything in it.
        match std::fs::symlink_metadata(&self.etc) {
            Ok(m) if m.is_dir() => {}
            _ => {
                eprintln!(
                    "sdme-import: warning: {} is no longer a directory; resolv.conf not restored",
                    self.etc.display()
                );
                return;
            }
        }
        let own = self.etc.join("resolv.conf");
        let saved = self.etc.join(".resolv.conf.sdme-import");
        if std::fs::symlink_metadata(&own).is_ok_and(|m| !m.is_dir()) {
            let _ = std::fs::remove_file(&own);
        }
        if self.had_own {
            if let Err(e) = std::fs::rename(&saved, &own) {
                eprintln!(
                    "sdme-import: warning: cannot restore {}: {e}",
                    own.display()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn host_resolv(dir: &Path) -> PathBuf {
        let p = dir.join("host-resolv.conf");
        std::fs::write(&p, "nameserver 192.0.2.53\n").unwrap();
        p
    }

    #[test]
    fn resolv_swap_restores_a_symlink() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        symlink(
            "../run/systemd/resolve/stub-resolv.conf",
            root.join("etc/resolv.conf"),
        )
        .unwrap();
        let host = host_resolv(t.path());
        {
            let _swap = ResolvSwap::install(&root, &host).unwrap();
            assert_eq!(
                std::fs::read_to_string(root.join("etc/resolv.conf")).unwrap(),
                "nameserver 192.0.2.53\n"
            );
            // A package script replacing it meanwhile changes nothing.
            std::fs::remove_file(root.join("etc/resolv.conf")).unwrap();
            symlink("/elsewhere", root.join("etc/resolv.conf")).unwrap();
        }
        assert_eq!(
            std::fs::read_link(root.join("etc/resolv.conf")).unwrap(),
            Path::new("../run/systemd/resolve/stub-resolv.conf")
        );
        assert!(std::fs::symlink_metadata(root.join(RESOLV_SAVED)).is_err());
    }

    #[test]
    fn resolv_swap_restores_a_file_and_absence() {
        let t = tempfile::tempdir().unwrap();
        let host = host_resolv(t.path());
        let root = t.path().join("a");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/resolv.conf"), "own\n").unwrap();
        drop(ResolvSwap::install(&root, &host).unwrap());
        assert_eq!(
            std::fs::read_to_string(root.join("etc/resolv.conf")).unwrap(),
            "own\n"
        );
        let root = t.path().join("b");
        std::fs::create_dir_all(&root).unwrap();
        {
            let _swap = ResolvSwap::install(&root, &host).unwrap();
            assert!(root.join("etc/resolv.conf").is_file());
        }
        assert!(std::fs::symlink_metadata(root.join("etc/resolv.conf")).is_err());
    }

    #[test]
    fn resolv_swap_refuses_a_symlinked_etc() {
        let t = tempfile::tempdir().unwrap();
        let host = host_resolv(t.path());
        let outside = t.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("resolv.conf"), "host file\n").unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        symlink(&outside, root.join("etc")).unwrap();
        assert!(ResolvSwap::install(&root, &host).is_err());
        assert_eq!(
            std::fs::read_to_string(outside.join("resolv.conf")).unwrap(),
            "host file\n"
        );
    }
}
