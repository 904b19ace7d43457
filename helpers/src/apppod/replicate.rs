//! What the app's process takes on from the client, so that it holds
//! nothing a process the guest started would not: read on the host side
//! ([`Traits::read`]), applied in the child ([`Traits::apply_as_host`],
//! [`Traits::enter`], [`Traits::become_client`]) in an
//! order where each step still has the privileges it needs (resource
//! limits while still the host's root, namespaces and root directory,
//! IDs, then seccomp, capabilities and no_new_privs last).
//!
//! Capabilities are set with prctl(2)/capset(2) from the masks of
//! `/proc/PID/status`, bit for bit (the `caps` crate knows capabilities
//! by name, up to the newest it lists; a mask may hold newer ones).

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

use super::peer::{self, read_at, status_mask, status_number};
use super::seccomp::{self, Filter};

/// Everything the app's process copies from the client.
pub struct Traits {
    inheritable: u64,
    permitted: u64,
    effective: u64,
    bounding: u64,
    ambient: u64,
    no_new_privs: bool,
    umask: u32,
    personality: u64,
    oom_score_adj: Option<CString>,
    /// AppArmor profile to enter at exec; `None`: unconfined.
    apparmor: Option<String>,
    rlimits: Vec<(libc::__rlimit_resource_t, libc::rlimit64)>,
    filters: Vec<Filter>,
    /// Whether the client's user namespace is not ours (setns(2) refuses
    /// to join one's own).
    other_userns: bool,
}

const RLIMITS: [libc::__rlimit_resource_t; 16] = [
    libc::RLIMIT_CPU,
    libc::RLIMIT_FSIZE,
    libc::RLIMIT_DATA,
    libc::RLIMIT_STACK,
    libc::RLIMIT_CORE,
    libc::RLIMIT_RSS,
    libc::RLIMIT_NPROC,
    libc::RLIMIT_NOFILE,
    libc::RLIMIT_MEMLOCK,
    libc::RLIMIT_AS,
    libc::RLIMIT_LOCKS,
    libc::RLIMIT_SIGPENDING,
    libc::RLIMIT_MSGQUEUE,
    libc::RLIMIT_NICE,
    libc::RLIMIT_RTPRIO,
    libc::RLIMIT_RTTIME,
];

/// prctl(2)'s unused arguments, full width (they are variadic longs).
const Z: libc::c_ulong = 0;

fn err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn same_ns(dir: &OwnedFd, name: &str) -> Result<bool, String> {
    let theirs = peer::open_at(dir, &format!("ns/{name}"), libc::O_RDONLY)?;
    let a =
        nix::sys::stat::fstat(theirs.as_raw_fd()).map_err(|e| format!("fstat ns/{name}: {e}"))?;
    let b = nix::sys::stat::stat(format!("/proc/self/ns/{name}").as_str())
        .map_err(|e| format!("stat /proc/self/ns/{name}: {e}"))?;
    Ok(a.st_dev == b.st_dev && a.st_ino == b.st_ino)
}

impl Traits {
    /// Read the client's traits (its process is waiting for us).
    pub fn read(p: &peer::Peer) -> Result<Traits, String> {
        let status =
            String::from_utf8_lossy(&read_at(&p.proc_dir, "status", 64 << 10)?).into_owned();
        let uid_map =
            String::from_utf8_lossy(&read_at(&p.proc_dir, "uid_map", 64 << 10)?).into_owned();
        let gid_map =
            String::from_utf8_lossy(&read_at(&p.proc_dir, "gid_map", 64 << 10)?).into_owned();
        peer::check_root(&status, &uid_map, &gid_map)?;
        let mut rlimits = Vec::with_capacity(RLIMITS.len());
        for r in RLIMITS {
            let mut l = libc::rlimit64 {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: read-only prlimit of another process into l.
            if unsafe { libc::prlimit64(p.pid, r, std::ptr::null(), &mut l) } != 0 {
                return Err(err("prlimit of the application's process"));
            }
            rlimits.push((r, l));
        }
        let personality = String::from_utf8_lossy(&read_at(&p.proc_dir, "personality", 64)?)
            .trim()
            .to_string();
        let oom = String::from_utf8_lossy(&read_at(&p.proc_dir, "oom_score_adj", 64)?)
            .trim()
            .to_string();
        let t = Traits {
            inheritable: status_mask(&status, "CapInh")?,
            permitted: status_mask(&status, "CapPrm")?,
            effective: status_mask(&status, "CapEff")?,
            bounding: status_mask(&status, "CapBnd")?,
            ambient: status_mask(&status, "CapAmb")?,
            no_new_privs: status_number(&status, "NoNewPrivs", 10)? == 1,
            umask: status_number(&status, "Umask", 8)? as u32,
            personality: u64::from_str_radix(&personality, 16)
                .map_err(|e| format!("personality {personality}: {e}"))?,
            oom_score_adj: CString::new(oom).ok(),
            apparmor: apparmor_label(&p.proc_dir),
            rlimits,
            filters: seccomp::dump(p.pid, status_number(&status, "Seccomp", 10)?, &p.pidfd)?,
            other_userns: !same_ns(&p.proc_dir, "user")?,
        };
        if !peer::alive(&p.pidfd) {
            return Err("the application's process ended while it was asking".into());
        }
        Ok(t)
    }

    /// Before the namespaces: what needs the host's privileges.
    pub fn apply_as_host(&self) -> Result<(), String> {
        for (r, l) in &self.rlimits {
            // SAFETY: l is a valid rlimit.
            if unsafe { libc::prlimit64(0, *r, l, std::ptr::null_mut()) } != 0 {
                return Err(err(&format!("setrlimit {r}")));
            }
        }
        if let Some(v) = &self.oom_score_adj {
            std::fs::write("/proc/self/oom_score_adj", v.as_bytes())
                .map_err(|e| format!("oom_score_adj: {e}"))?;
        }
        if let Some(label) = &self.apparmor {
            // aa_change_onexec(3): the profile applies at the app's exec.
            let msg = format!("exec {label}");
            std::fs::write("/proc/self/attr/apparmor/exec", &msg)
                .map_err(|e| format!("AppArmor profile {label}: {e}"))?;
        }
        Ok(())
    }

    /// The client's namespaces but the network (and the PID namespace,
    /// which the process was born in), then its root directory.
    pub fn enter(&self, pidfd: &OwnedFd, root: &OwnedFd) -> Result<(), String> {
        let mut flags =
            libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS | libc::CLONE_NEWCGROUP;
        if self.other_userns {
            flags |= libc::CLONE_NEWUSER;
        }
        // SAFETY: setns(2) with a pidfd joins all of them at once.
        if unsafe { libc::setns(pidfd.as_raw_fd(), flags) } != 0 {
            return Err(err("setns into the container's namespaces"));
        }
        // SAFETY: root is an open directory of the namespace joined.
        if unsafe { libc::fchdir(root.as_raw_fd()) } != 0 {
            return Err(err("fchdir to the application's root"));
        }
        nix::unistd::chroot(".").map_err(|e| format!("chroot to the application's root: {e}"))?;
        nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))?;
        Ok(())
    }

    /// The IDs (the container's root) and the rest, last the filters,
    /// capabilities and no_new_privs.
    pub fn become_client(&self) -> Result<(), String> {
        nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
        let zero_g = nix::unistd::Gid::from_raw(0);
        let zero_u = nix::unistd::Uid::from_raw(0);
        nix::unistd::setresgid(zero_g, zero_g, zero_g).map_err(|e| format!("setresgid 0: {e}"))?;
        nix::unistd::setresuid(zero_u, zero_u, zero_u).map_err(|e| format!("setresuid 0: {e}"))?;
        // A session keyring of its own, not the spawner's (KEYCTL_JOIN_SESSION_KEYRING).
        // SAFETY: a null name makes a new anonymous keyring.
        if unsafe { libc::syscall(libc::SYS_keyctl, 1, std::ptr::null::<libc::c_char>()) } < 0 {
            return Err(err("keyctl(KEYCTL_JOIN_SESSION_KEYRING)"));
        }
        // SAFETY: plain value-setting calls.
        unsafe {
            libc::personality(self.personality as libc::c_ulong);
            libc::umask(self.umask as libc::mode_t);
        }
        seccomp::install(&self.filters)?;
        self.set_capabilities()?;
        if self.no_new_privs {
            // SAFETY: prctl with integer arguments.
            if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, Z, Z, Z) } != 0 {
                return Err(err("PR_SET_NO_NEW_PRIVS"));
            }
        }
        Ok(())
    }

    fn set_capabilities(&self) -> Result<(), String> {
        let last = last_cap();
        for cap in 0..=last {
            if self.bounding & (1 << cap) == 0 {
                // SAFETY: prctl with integer arguments.
                if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, Z, Z, Z) } != 0
                {
                    return Err(err(&format!("PR_CAPBSET_DROP {cap}")));
                }
            }
        }
        let caps = crate::capset::Caps {
            effective: self.effective,
            permitted: self.permitted,
            inheritable: self.inheritable,
        };
        crate::capset::set(&caps).map_err(|e| format!("capset: {e}"))?;
        // SAFETY: prctl with integer arguments.
        if unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                Z,
                Z,
                Z,
            )
        } != 0
        {
            return Err(err("PR_CAP_AMBIENT_CLEAR_ALL"));
        }
        for cap in 0..=last {
            if self.ambient & (1 << cap) != 0 {
                // SAFETY: as above.
                let r = unsafe {
                    libc::prctl(
                        libc::PR_CAP_AMBIENT,
                        libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                        cap as libc::c_ulong,
                        Z,
                        Z,
                    )
                };
                if r != 0 {
                    return Err(err(&format!("PR_CAP_AMBIENT_RAISE {cap}")));
                }
            }
        }
        Ok(())
    }
}

/// `/proc/sys/kernel/cap_last_cap` (40 on Linux 5.9 and later).
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|n| *n < 64)
        .unwrap_or(40)
}

/// The AppArmor label of the client, if it is confined: "NAME (enforce)".
fn apparmor_label(dir: &OwnedFd) -> Option<String> {
    // Only AppArmor's own file: attr/current is whichever LSM is first.
    let raw = read_at(dir, "attr/apparmor/current", 4096).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let label = text
        .trim_end_matches(['\n', '\0'])
        .split(" (")
        .next()?
        .trim()
        .to_string();
    (!label.is_empty() && label != "unconfined").then_some(label)
}
