//! Run the image's own package manager in a sandbox, never as host root.
//!
//! The tree is untrusted: its `/bin/sh` and package manager are whatever
//! the image says they are. They run under `systemd-nspawn` rather than a
//! sandbox of our own, because nspawn already is the sandbox every sdme
//! container gets, maintained and reviewed with systemd:
//!
//! * a user namespace whose root is an unprivileged UID range picked by
//!   nspawn (`--private-users=pick`), with the tree ID-mapped rather than
//!   chowned (`--private-users-ownership=map`): files keep their on-disk
//!   owners, and the process has no capability in the host's namespace;
//! * mount, PID, IPC, UTS and cgroup namespaces, a fresh procfs, a minimal
//!   `/dev` (null, zero, full, random, urandom, tty, pts: no block device);
//! * nspawn's default seccomp filter, `NO_NEW_PRIVS`, its reduced
//!   capability set;
//! * the host's network (the packages are downloaded; a user namespace
//!   cannot reconfigure it), and no other host file system.
//!
//! Every process of the run dies with it: the payload runs as PID 2 under
//! nspawn's stub init, nspawn dies with sdme-import (`PDEATHSIG`), and the
//! container dies with nspawn.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Where nspawn is looked for (package systemd-container).
const NSPAWN: &[&str] = &["/usr/bin/systemd-nspawn", "/bin/systemd-nspawn"];

/// PATH inside the sandbox.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long nspawn may take to tear the sandbox down after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);

fn nspawn() -> Result<&'static str> {
    NSPAWN
        .iter()
        .copied()
        .find(|p| Path::new(p).is_file())
        .context(
            "systemd-nspawn not found (package systemd-container): the image's package \
             manager runs only in its sandbox; import with --install-packages=no to run \
             nothing from the image",
        )
}

/// The nspawn command line that runs `/bin/sh -c script` in `root`.
pub fn command_line(root: &Path, script: &str, env: &[(&str, &str)]) -> Vec<String> {
    let mut v: Vec<String> = [
        "--quiet",
        "--settings=no",
        "--register=no",
        // Stay in our own cgroup (or unit): no scope allocated through
        // systemd, so it works the same from a shell, from an image unit
        // and on a host without systemd.
        "--keep-unit",
        "--private-users=pick",
        "--private-users-ownership=map",
        "--no-new-privileges=yes",
        "--as-pid2",
        "--pipe",
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
        "--kill-signal=SIGKILL",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(format!("--machine=sdme-import-{}", std::process::id()));
    v.push(format!("--directory={}", root.display()));
    v.push(format!("--setenv=PATH={PATH}"));
    v.push("--setenv=LC_ALL=C".into());
    v.push("--setenv=HOME=/root".into());
    for (k, val) in env {
        v.push(format!("--setenv={k}={val}"));
    }
    v.extend(["--", "/bin/sh", "-c", script].map(String::from));
    v
}

/// Run `/bin/sh -c script` in the sandbox over `root`. Output goes to
/// `log`, or to our stderr; `cancelled` is polled and ends the run.
pub fn run(
    root: &Path,
    script: &str,
    env: &[(&str, &str)],
    log: Option<&File>,
    cancelled: &dyn Fn() -> bool,
) -> Result<ExitStatus> {
    let nspawn = nspawn()?;
    let mut cmd = Command::new(nspawn);
    cmd.args(command_line(root, script, env))
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
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
    // SAFETY: prctl only, in the child before exec.
    unsafe {
        cmd.pre_exec(|| {
            // nspawn (and with it the sandbox) dies with sdme-import.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {nspawn}"))?;
    let pid = child.id() as libc::pid_t;
    loop {
        if let Some(s) = child.try_wait().context("waiting for systemd-nspawn")? {
            return Ok(s);
        }
        if cancelled() {
            // SIGTERM lets nspawn kill the payload and unmount; SIGKILL if
            // it does not manage in time.
            // SAFETY: signals our own child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + STOP_GRACE;
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    // SAFETY: signals our own child's process group.
                    unsafe { libc::kill(-pid, libc::SIGKILL) };
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            return Err(crate::cancel::Interrupted.into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// "exit status 100" / "killed by signal 9".
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "unknown status".into(),
    }
}

/// Fail early, with the reason, where the sandbox cannot work: nspawn
/// missing, or no `/bin/sh` in the tree.
pub fn check(root: &Path) -> Result<()> {
    nspawn()?;
    let sh = super::confine::resolve(root, Path::new("/bin/sh"));
    if !sh.is_some_and(|(h, _)| h.is_file()) {
        bail!(
            "{} has no /bin/sh to run the package manager with",
            root.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_confines() {
        let v = command_line(
            Path::new("/var/lib/sdme/import/x.staging"),
            "apt-get update",
            &[("DEBIAN_FRONTEND", "noninteractive")],
        );
        for want in [
            "--private-users=pick",
            "--private-users-ownership=map",
            "--no-new-privileges=yes",
            "--register=no",
            "--directory=/var/lib/sdme/import/x.staging",
            "--setenv=DEBIAN_FRONTEND=noninteractive",
        ] {
            assert!(v.iter().any(|a| a == want), "{want} missing in {v:?}");
        }
        // Nothing that would weaken nspawn's defaults.
        for bad in ["--capability", "--bind", "--private-users=no", "--chown"] {
            assert!(!v.iter().any(|a| a.starts_with(bad)), "{bad} in {v:?}");
        }
        assert_eq!(&v[v.len() - 4..], ["--", "/bin/sh", "-c", "apt-get update"]);
    }
}
