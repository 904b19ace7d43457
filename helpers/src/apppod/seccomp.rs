//! The client's seccomp filters, copied onto the app's process: nspawn's
//! own (and any the guest's unit adds) are inherited by every process a
//! guest starts, and a process the host makes has none, so it gets the
//! same programs, installed in the same order.
//!
//! Read with ptrace(2): PTRACE_SECCOMP_GET_FILTER (as CRIU does; it needs
//! CAP_SYS_ADMIN and a stopped tracee). The client is seized and
//! interrupted while it waits for us, and detached at once; its wait goes
//! on. No crate reads another process's filters; seccompiler and
//! libseccomp build new ones (and seccompiler sets no_new_privs, which the
//! app must only get when the client has it).

use std::os::fd::OwnedFd;

const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;
const PTRACE_SECCOMP_GET_METADATA: libc::c_uint = 0x420d;
/// The filter flags worth keeping (the others only matter at install time
/// of the original: TSYNC, NEW_LISTENER).
const KEPT_FLAGS: u64 = libc::SECCOMP_FILTER_FLAG_LOG | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW;
/// More instructions than the kernel accepts in one filter.
const MAX_INSNS: usize = 4096;
/// More filters than any real process has.
const MAX_FILTERS: u64 = 256;

/// Variadic ptrace arguments are read as longs: pass full-width zeros.
const NULL: *mut libc::c_void = std::ptr::null_mut();

/// One classic BPF program and its flags.
pub struct Filter {
    pub insns: Vec<libc::sock_filter>,
    pub flags: u64,
}

#[repr(C)]
struct Metadata {
    filter_off: u64,
    flags: u64,
}

fn err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// Detaches the tracee when dropped, on every path.
struct Seized(libc::pid_t);

impl Drop for Seized {
    fn drop(&mut self) {
        // SAFETY: detach our tracee; nothing else to do on failure.
        unsafe { libc::ptrace(libc::PTRACE_DETACH, self.0, NULL, NULL) };
    }
}

fn seize(pid: libc::pid_t) -> Result<Seized, String> {
    // SAFETY: ptrace requests on a pid, no memory passed.
    if unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid, NULL, NULL) } != 0 {
        return Err(err(
            "ptrace(PTRACE_SEIZE) of the application's process (is something tracing it?)",
        ));
    }
    let s = Seized(pid);
    // SAFETY: as above.
    if unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, pid, NULL, NULL) } != 0 {
        return Err(err("ptrace(PTRACE_INTERRUPT)"));
    }
    let mut status = 0;
    // SAFETY: status is a valid out pointer.
    if unsafe { libc::waitpid(pid, &mut status, libc::__WALL) } != pid {
        return Err(err("waitpid of the stopped process"));
    }
    Ok(s)
}

/// The filters of `pid`, oldest first; none when `mode` (Seccomp: of its
/// status) is 0. Mode 1 (strict) cannot be asked for by a unit.
pub fn dump(pid: libc::pid_t, mode: u64, pidfd: &OwnedFd) -> Result<Vec<Filter>, String> {
    match mode {
        0 => return Ok(Vec::new()),
        2 => {}
        m => return Err(format!("the application's process has seccomp mode {m}")),
    }
    let _seized = seize(pid)?;
    if !super::peer::alive(pidfd) {
        return Err("the application's process ended while it was asking".into());
    }
    // Index 0 is the oldest filter (the kernel's get_nth_filter).
    let mut filters = Vec::new();
    for i in 0..MAX_FILTERS {
        // SAFETY: with a null buffer the call returns the length only.
        let n = unsafe { libc::ptrace(PTRACE_SECCOMP_GET_FILTER, pid, i as usize, NULL) };
        if n < 0 {
            return match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::ENOENT) => Ok(filters),
                // The kernel's rule: a tracer under seccomp reads no filter.
                Some(libc::EACCES) => Err(err(
                    "cannot read the seccomp filters of the application's unit (ptrace); \
                     the host's sdme-pod runs under a seccomp filter itself (a host that is a \
                     container?), and the application does not run without them",
                )),
                _ => Err(err("ptrace(PTRACE_SECCOMP_GET_FILTER)")),
            };
        }
        let n = n as usize;
        if n == 0 || n > MAX_INSNS {
            return Err(format!("seccomp filter {i} has {n} instructions"));
        }
        let mut insns = vec![
            libc::sock_filter {
                code: 0,
                jt: 0,
                jf: 0,
                k: 0
            };
            n
        ];
        // SAFETY: insns holds n instructions, as the kernel said.
        let got = unsafe {
            libc::ptrace(
                PTRACE_SECCOMP_GET_FILTER,
                pid,
                i as usize,
                insns.as_mut_ptr(),
            )
        };
        if got as usize != n {
            return Err(err("ptrace(PTRACE_SECCOMP_GET_FILTER)"));
        }
        let mut md = Metadata {
            filter_off: i,
            flags: 0,
        };
        // SAFETY: md is a valid buffer of the size passed.
        let r = unsafe {
            libc::ptrace(
                PTRACE_SECCOMP_GET_METADATA,
                pid,
                std::mem::size_of::<Metadata>(),
                &mut md as *mut Metadata,
            )
        };
        if r < 0 {
            return Err(err("ptrace(PTRACE_SECCOMP_GET_METADATA)"));
        }
        filters.push(Filter {
            insns,
            flags: md.flags & KEPT_FLAGS,
        });
    }
    Err(format!("more than {MAX_FILTERS} seccomp filters"))
}

/// Install `filters` (oldest first) on the calling thread. Needs
/// CAP_SYS_ADMIN in its user namespace or no_new_privs.
pub fn install(filters: &[Filter]) -> Result<(), String> {
    for f in filters {
        let prog = libc::sock_fprog {
            len: f.insns.len() as u16,
            filter: f.insns.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: prog points at f.insns, alive for the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                f.flags as libc::c_uint,
                &prog as *const libc::sock_fprog,
            )
        };
        if r != 0 {
            return Err(err("seccomp(SECCOMP_SET_MODE_FILTER)"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
        libc::sock_filter { code, jt, jf, k }
    }

    const RET: u16 = 0x06; // BPF_RET | BPF_K
    const ALLOW: u32 = 0x7fff_0000; // SECCOMP_RET_ALLOW
    const ERRNO: u32 = 0x0005_0000; // SECCOMP_RET_ERRNO

    /// Two filters: allow everything; getpriority(2) fails with errno 42.
    fn filters() -> Vec<Filter> {
        let nr = libc::SYS_getpriority as u32;
        vec![
            Filter {
                insns: vec![insn(RET, 0, 0, ALLOW)],
                flags: 0,
            },
            Filter {
                insns: vec![
                    insn(0x20, 0, 0, 0),  // BPF_LD | BPF_W | BPF_ABS: seccomp_data.nr
                    insn(0x15, 0, 1, nr), // BPF_JMP | BPF_JEQ | BPF_K
                    insn(RET, 0, 0, ERRNO | 42),
                    insn(RET, 0, 0, ALLOW),
                ],
                flags: 0,
            },
        ]
    }

    fn getpriority_errno() -> i32 {
        // SAFETY: a plain system call.
        let r = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        if r == -1 {
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
        } else {
            0
        }
    }

    /// The kernel's PTRACE_SECCOMP_GET_FILTER needs root and a tracer
    /// without filters; CI runs the tests as root. Without root this test
    /// fails rather than passing silently.
    #[test]
    fn filters_read_from_a_process_are_installed_again_in_order() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root (ptrace of seccomp filters)"
        );
        let mut ready = [0; 2];
        let mut done = [0; 2];
        // SAFETY: two pipes into valid arrays.
        unsafe {
            assert_eq!(libc::pipe(ready.as_mut_ptr()), 0);
            assert_eq!(libc::pipe(done.as_mut_ptr()), 0);
        }
        // SAFETY: the child only makes system calls, then _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let ok = install(&filters()).is_ok() && getpriority_errno() == 42;
            // SAFETY: report, wait for the parent, leave.
            unsafe {
                libc::write(ready[1], [ok as u8].as_ptr().cast(), 1);
                let mut b = [0u8; 1];
                libc::read(done[0], b.as_mut_ptr().cast(), 1);
                libc::_exit(0);
            }
        }
        let mut b = [0u8; 1];
        // SAFETY: reading one byte from our pipe.
        unsafe { libc::read(ready[0], b.as_mut_ptr().cast(), 1) };
        assert_eq!(b[0], 1, "the child could not install the filters");
        let pidfd = rustix::process::pidfd_open(
            rustix::process::Pid::from_raw(pid).unwrap(),
            rustix::process::PidfdFlags::empty(),
        )
        .unwrap();
        let got = dump(pid, 2, &pidfd);
        // SAFETY: release the child and reap it.
        unsafe {
            libc::write(done[1], [0u8].as_ptr().cast(), 1);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        let got = got.unwrap();
        let lens: Vec<usize> = got.iter().map(|f| f.insns.len()).collect();
        assert_eq!(lens, [1, 4], "oldest first");
        assert_eq!(got[1].insns[2].k, ERRNO | 42);
        // Installed again in another process: the same behaviour.
        // SAFETY: as above.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let ok = install(&got).is_ok() && getpriority_errno() == 42;
            // SAFETY: leave with the result.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: reaping our child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert!(
            dump(pid, 0, &pidfd).unwrap().is_empty(),
            "mode 0: no filter to read"
        );
    }
}
