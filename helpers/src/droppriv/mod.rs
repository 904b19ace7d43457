//! sdme-drop-privs(8): run an OCI app as its image's user.
//!
//! `sdme-drop-privs USER WORKDIR -- COMMAND [ARG...]`, run by the app's
//! unit with `RootDirectory=` the app's root: resolve USER in that root's
//! `/etc/passwd` and `/etc/group` (systemd's `User=` goes through the
//! host's NSS before `RootDirectory=` applies, so an image-only user fails
//! there), set groups, gid, uid and check them, set HOME, chdir, give the
//! app pipes where its stdout/stderr are sockets ([`relay`]), look the
//! command up in PATH, exec. Failures exit with systemd's status numbers.

pub mod creds;
pub mod etc;
pub mod ids;
pub mod path;
pub mod relay;

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// systemd's exit statuses (systemd.exec(5), "Process Exit Codes").
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_CHDIR: u8 = 200;
pub const EXIT_EXEC: u8 = 203;
pub const EXIT_STDOUT: u8 = 209;
pub const EXIT_GROUP: u8 = 216;
pub const EXIT_USER: u8 = 217;

pub const PASSWD: &str = "/etc/passwd";
pub const GROUP: &str = "/etc/group";

/// A failure: one line for stderr and the exit status.
#[derive(Debug)]
pub struct Failure {
    pub status: u8,
    pub message: String,
}

fn fail(status: u8, message: impl Into<String>) -> Failure {
    Failure {
        status,
        message: message.into(),
    }
}

/// The parsed command line.
pub struct Args<'a> {
    pub user: &'a str,
    pub workdir: &'a Path,
    pub command: &'a [OsString],
}

const USAGE: &str = "usage: sdme-drop-privs [--via-pod] USER WORKDIR -- COMMAND [ARG...]";

pub fn parse_args(args: &[OsString]) -> Result<Args<'_>, Failure> {
    let usage = |why: &str| fail(EXIT_USAGE, format!("{why}; {USAGE}"));
    if args.len() < 4 || args[2] != "--" {
        return Err(usage("expected USER WORKDIR -- COMMAND"));
    }
    let user = args[0].to_str().ok_or_else(|| usage("USER is not UTF-8"))?;
    let workdir = Path::new(&args[1]);
    if !workdir.is_absolute() {
        return Err(usage(&format!(
            "WORKDIR {} is not absolute",
            workdir.display()
        )));
    }
    Ok(Args {
        user,
        workdir,
        command: &args[3..],
    })
}

/// Resolve USER in the image's files.
pub fn resolve_user(user: &str) -> Result<ids::Ids, Failure> {
    let passwd = etc::read_lines(Path::new(PASSWD)).map_err(|e| fail(EXIT_USER, e))?;
    let group = etc::read_lines(Path::new(GROUP)).map_err(|e| fail(EXIT_GROUP, e))?;
    ids::resolve(user, &etc::users(&passwd), &etc::groups(&group)).map_err(|e| match e {
        ids::IdError::Syntax(m) => fail(EXIT_USER, m),
        ids::IdError::NoUser(u) => fail(EXIT_USER, format!("user {u} does not exist in {PASSWD}")),
        ids::IdError::NoGroup(g) => {
            fail(EXIT_GROUP, format!("group {g} does not exist in {GROUP}"))
        }
    })
}

/// HOME as Docker sets it: the image's Env wins, else the passwd entry's.
fn set_home(home: &str) {
    if std::env::var_os("HOME").map_or(true, |h| h.is_empty()) {
        std::env::set_var("HOME", home);
    }
}

fn exec(file: &Path, argv: &[OsString]) -> Failure {
    let cstr = |s: &OsStr| CString::new(s.as_bytes()).ok();
    let (Some(f), Some(argv)) = (
        cstr(file.as_os_str()),
        argv.iter()
            .map(|a| cstr(a))
            .collect::<Option<Vec<CString>>>(),
    ) else {
        return fail(EXIT_EXEC, "NUL byte in the command");
    };
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    extern "C" {
        static environ: *const *const libc::c_char;
    }
    // Rust's runtime ignores SIGPIPE (and so does systemd's default
    // IgnoreSIGPIPE=yes), and an ignored signal stays ignored across exec:
    // the app gets the default, as an OCI runtime starts it.
    // SAFETY: restoring a signal's default action.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // SAFETY: f and ptrs are NUL-terminated and outlive the call; environ is
    // the process's environment (set_var above keeps it valid).
    unsafe { libc::execve(f.as_ptr(), ptrs.as_ptr(), environ) };
    let e = std::io::Error::last_os_error();
    fail(EXIT_EXEC, format!("exec {}: {e}", file.display()))
}

fn lookup(cmd: &OsStr) -> Result<std::path::PathBuf, Failure> {
    let path_var = std::env::var_os("PATH");
    path::resolve(cmd, path_var.as_deref()).map_err(|e| match e {
        path::Lookup::NotFound if cmd.as_bytes().contains(&b'/') => fail(
            EXIT_EXEC,
            format!("{}: no such file", Path::new(cmd).display()),
        ),
        path::Lookup::NotFound => fail(
            EXIT_EXEC,
            format!(
                "{}: not found in PATH={}",
                Path::new(cmd).display(),
                path_var
                    .as_deref()
                    .unwrap_or(OsStr::new(path::DEFAULT_PATH))
                    .to_string_lossy()
            ),
        ),
        path::Lookup::NotExecutable(p) => fail(
            EXIT_EXEC,
            format!("{}: not an executable file", p.display()),
        ),
    })
}

/// Everything; returns only on failure (success is the exec).
pub fn run(args: &[OsString]) -> Failure {
    match run_inner(args) {
        Ok(f) | Err(f) => f,
    }
}

fn run_inner(args: &[OsString]) -> Result<Failure, Failure> {
    let a = parse_args(args)?;
    let ids = resolve_user(a.user)?;
    creds::drop_to(&ids).map_err(|e| match e {
        creds::Failed::Group(m) => fail(EXIT_GROUP, m),
        creds::Failed::User(m) => fail(EXIT_USER, m),
    })?;
    set_home(&ids.home);
    std::env::set_current_dir(a.workdir)
        .map_err(|e| fail(EXIT_CHDIR, format!("chdir {}: {e}", a.workdir.display())))?;
    let file = lookup(&a.command[0])?;
    relay::setup().map_err(|m| fail(EXIT_STDOUT, format!("output relay: {m}")))?;
    Ok(exec(&file, a.command))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn arguments() {
        let v = os(&["app", "/srv", "--", "nginx", "-g", "daemon off;"]);
        let a = parse_args(&v).unwrap();
        assert_eq!((a.user, a.workdir), ("app", Path::new("/srv")));
        assert_eq!(a.command.len(), 3);
        for bad in [
            &["app", "/srv", "nginx"][..],
            &["app", "/srv", "--"],
            &["app", "srv", "--", "x"],
            &["app", "/srv", "-", "x"],
        ] {
            let e = parse_args(&os(bad)).err().unwrap();
            assert_eq!(e.status, EXIT_USAGE);
            assert!(
                e.message.contains("usage: sdme-drop-privs"),
                "{}",
                e.message
            );
        }
    }
}
