//! sdme-drop-privs end to end, as root: a fake image root in a temporary
//! directory with its own /etc/passwd and /etc/group (and the host's /usr,
//! /proc and /dev bound in, in a mount namespace of the child's own), the
//! helper run chrooted there as a unit's `RootDirectory=` would run it.

use std::ffi::CString;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
    # a comment, a malformed line, a long gecos\n\
    broken:x:12\n\
    app:x:4242:4242:App only in the image:/home/app:/bin/sh\n";
const GROUP: &str = "root:x:0:\napp:x:4242:\ndata:x:5000:web,app\nweb:x:5001:web\n";

struct Image {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

fn image() -> Image {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the sdme-drop-privs tests need root (chroot, mounts, setuid)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    for d in ["etc", "usr", "proc", "dev", "srv", "home/app", "opt/bin"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for l in ["bin", "lib", "lib64", "sbin"] {
        std::os::unix::fs::symlink(format!("usr/{l}"), root.join(l)).unwrap();
    }
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(root.join("etc/passwd"), PASSWD).unwrap();
    std::fs::write(root.join("etc/group"), GROUP).unwrap();
    let hello = root.join("opt/bin/hello");
    std::fs::write(&hello, "#!/bin/sh\necho \"hello from $0\"\n").unwrap();
    std::fs::set_permissions(&hello, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(root.join("sdme-drop-privs"), "").unwrap();
    Image { _tmp: tmp, root }
}

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
}

/// In the forked child: a private mount namespace, the host's /usr, /proc,
/// /dev and the helper bound into the image, then chroot into it.
fn enter(root: &Path) -> impl FnMut() -> std::io::Result<()> {
    let helper = c(Path::new(env!("CARGO_BIN_EXE_sdme-drop-privs")));
    let binds: Vec<(CString, CString)> = ["usr", "proc", "dev"]
        .iter()
        .map(|d| (c(&Path::new("/").join(d)), c(&root.join(d))))
        .chain([(helper, c(&root.join("sdme-drop-privs")))])
        .collect();
    let root = c(root);
    move || {
        let err = || Err(std::io::Error::last_os_error());
        // SAFETY: plain syscalls on prepared C strings in the forked child.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNS) != 0
                || libc::mount(
                    std::ptr::null(),
                    b"/\0".as_ptr().cast(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
            {
                return err();
            }
            for (from, to) in &binds {
                if libc::mount(
                    from.as_ptr(),
                    to.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ) != 0
                {
                    return err();
                }
            }
            if libc::chroot(root.as_ptr()) != 0 || libc::chdir(b"/\0".as_ptr().cast()) != 0 {
                return err();
            }
        }
        Ok(())
    }
}

fn helper(img: &Image, args: &[&str]) -> Command {
    let mut cmd = Command::new("/sdme-drop-privs");
    cmd.args(args).env_clear().env("PATH", "/opt/bin:/usr/bin");
    // SAFETY: the closure only makes syscalls.
    unsafe { cmd.pre_exec(enter(&img.root)) };
    cmd
}

fn run(img: &Image, args: &[&str]) -> Output {
    helper(img, args).output().unwrap()
}

const SHOW: &str = "grep -E '^(Uid|Gid|Groups):' /proc/self/status | tr -s '\\t ' ' '; \
    echo \"HOME=$HOME\"; echo \"PWD=$(pwd)\"";

fn show(img: &Image, user: &str, workdir: &str) -> String {
    let o = run(img, &[user, workdir, "--", "sh", "-c", SHOW]);
    assert!(o.status.success(), "{o:?}");
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn a_user_only_in_the_image() {
    let img = image();
    assert_eq!(
        show(&img, "app", "/srv"),
        "Uid: 4242 4242 4242 4242\nGid: 4242 4242 4242 4242\nGroups: 4242 5000 \n\
         HOME=/home/app\nPWD=/srv\n"
    );
    assert_eq!(
        show(&img, "app:web", "/"),
        "Uid: 4242 4242 4242 4242\nGid: 5001 5001 5001 5001\nGroups: 5000 5001 \n\
         HOME=/home/app\nPWD=/\n"
    );
    // A numeric uid without an entry: gid 0 and HOME / (as Docker).
    assert_eq!(
        show(&img, "65534", "/srv"),
        "Uid: 65534 65534 65534 65534\nGid: 0 0 0 0\nGroups: 0 \nHOME=/\nPWD=/srv\n"
    );
    // The image's Env HOME wins over passwd.
    let o = helper(&img, &["app", "/", "--", "sh", "-c", "echo $HOME"])
        .env("HOME", "/data")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "/data\n");
}

fn failure(img: &Image, args: &[&str], status: i32, msg: &str) {
    let o = run(img, args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(status), "{o:?}");
    assert_eq!(err, format!("sdme-drop-privs: {msg}\n"));
}

#[test]
fn missing_users_groups_and_commands() {
    let img = image();
    failure(
        &img,
        &["ghost", "/", "--", "true"],
        217,
        "user ghost does not exist in /etc/passwd",
    );
    failure(
        &img,
        &["app:nogrp", "/", "--", "true"],
        216,
        "group nogrp does not exist in /etc/group",
    );
    failure(
        &img,
        &["app", "/nodir", "--", "true"],
        200,
        "chdir /nodir: No such file or directory (os error 2)",
    );
    failure(
        &img,
        &["app", "/", "--", "nope"],
        203,
        "nope: not found in PATH=/opt/bin:/usr/bin",
    );
    failure(
        &img,
        &["app", "/", "--", "/etc/passwd"],
        203,
        "/etc/passwd: not an executable file",
    );
    // /root is 0700 root: the chdir is checked as the user.
    std::fs::create_dir_all(img.root.join("root")).unwrap();
    std::fs::set_permissions(
        img.root.join("root"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    failure(
        &img,
        &["app", "/root", "--", "true"],
        200,
        "chdir /root: Permission denied (os error 13)",
    );
}

#[test]
fn command_through_the_image_path() {
    let img = image();
    let o = run(&img, &["app", "/", "--", "hello"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "hello from /opt/bin/hello\n"
    );
}

/// What a program writes to /dev/stdout, /dev/stderr and /proc/self/fd/*
/// reaches the socket its unit gave it; its exit status and its death by
/// a signal are the helper's.
#[test]
fn dev_stdout_on_a_socket() {
    let img = image();
    let script = "echo out > /dev/stdout && echo err > /dev/stderr && \
        echo fd1 > /proc/self/fd/1 && echo fd2 >> /proc/self/fd/2 && exit 3";
    let (ours, theirs) = UnixStream::pair().unwrap();
    let err = theirs.try_clone().unwrap();
    let mut cmd = helper(&img, &["app", "/", "--", "sh", "-c", script]);
    let mut child = cmd
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stderr(Stdio::from(std::os::fd::OwnedFd::from(err)))
        .spawn()
        .unwrap();
    drop(cmd);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3));
    // The relay ends when the app's pipe closes, and closes the socket.
    let mut got = String::new();
    (&ours).read_to_string(&mut got).unwrap();
    assert_eq!(got, "out\nerr\nfd1\nfd2\n");

    // Without the helper, the same open fails: the test tests something.
    let (ours, theirs) = UnixStream::pair().unwrap();
    let o = Command::new("sh")
        .args(["-c", "echo out > /dev/stdout"])
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .output()
        .unwrap();
    drop(ours);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("No such device or address"));

    let (_ours, theirs) = UnixStream::pair().unwrap();
    let status = helper(&img, &["app", "/", "--", "sh", "-c", "kill -TERM $$"])
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(libc::SIGTERM));
}
