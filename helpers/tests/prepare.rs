//! Real tests of sdme-prepare: real directories, trusted xattrs and
//! overlay mounts. They need root (CAP_SYS_ADMIN); as another user they
//! print a note and pass.

use std::ffi::OsStr;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use sdme_helpers::fsutil::SafeDir;
use sdme_helpers::prepare::{self, Options};

mod common;
use common::{opaque, root, Fixture};

/// A small fake OS tree as lower layer.
fn fixture() -> Fixture {
    let f = Fixture::new();
    let lower = &f.lower;
    let sys = lower.join("etc/systemd/system");
    std::fs::create_dir_all(&sys).unwrap();
    std::fs::create_dir_all(lower.join("usr/lib/systemd/system")).unwrap();
    std::fs::create_dir_all(lower.join("var/log")).unwrap();
    std::fs::set_permissions(
        lower.join("var/log"),
        std::fs::Permissions::from_mode(0o2755),
    )
    .unwrap();
    std::fs::write(lower.join("var/log/old.log"), "old\n").unwrap();
    std::fs::write(lower.join("etc/hostname"), "host\n").unwrap();
    std::fs::write(
        lower.join("etc/machine-id"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    std::fs::create_dir_all(lower.join("var/lib/dbus")).unwrap();
    std::fs::write(
        lower.join("var/lib/dbus/machine-id"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    std::fs::write(lower.join("etc/fstab"), "/dev/sda1 / ext4 defaults 0 1\n").unwrap();
    std::fs::write(lower.join("etc/crypttab"), "data UUID=x none luks\n").unwrap();
    symlink(
        "../run/systemd/resolve/stub-resolv.conf",
        lower.join("etc/resolv.conf"),
    )
    .unwrap();
    std::fs::write(
        lower.join("usr/lib/systemd/system/dbus-broker.service"),
        "[Unit]\n",
    )
    .unwrap();
    symlink(
        "/usr/lib/systemd/system/dbus-broker.service",
        sys.join("dbus.service"),
    )
    .unwrap();
    // The host administrator's own mounts and swap.
    std::fs::write(sys.join("srv-data.mount"), "[Mount]\nWhat=/dev/sdb1\n").unwrap();
    std::fs::write(sys.join("-.mount"), "[Mount]\n").unwrap();
    symlink("/dev/null", sys.join("already-masked.mount")).unwrap();
    std::fs::create_dir_all(sys.join("local-fs.target.wants")).unwrap();
    symlink(
        "/etc/systemd/system/srv-data.mount",
        sys.join("local-fs.target.wants/srv-data.mount"),
    )
    .unwrap();
    symlink(
        "/usr/lib/systemd/system/tmp.mount",
        sys.join("local-fs.target.wants/tmp.mount"),
    )
    .unwrap();
    std::fs::create_dir_all(sys.join("swap.target.wants")).unwrap();
    symlink(
        "/etc/systemd/system/swapfile.swap",
        sys.join("swap.target.wants/swapfile.swap"),
    )
    .unwrap();
    std::fs::create_dir_all(sys.join("multi-user.target.wants")).unwrap();
    symlink(
        "/usr/lib/systemd/system/cron.service",
        sys.join("multi-user.target.wants/cron.service"),
    )
    .unwrap();
    f
}

fn opts(f: &Fixture, extra: &[&str]) -> Options {
    f.opts(&[&["--hostname=web"], extra].concat())
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

fn link(p: &Path) -> String {
    std::fs::read_link(p)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn writes_the_upper_layer_of_a_host_clone() {
    if !root() {
        return;
    }
    let f = fixture();
    let r = prepare::run(&opts(&f, &["--host-clone", "--host-network"])).unwrap();
    let up = f.state.join("upper");
    assert_eq!(mode(&f.state), 0o755);
    assert_eq!(mode(&up), 0o755);
    assert_eq!(mode(&f.state.join("work")), 0o700);
    assert_eq!(mode(&f.state.join("merged")), 0o755);
    assert_eq!(read(&up.join("etc/hostname")), "web\n");
    let hosts = read(&up.join("etc/hosts"));
    assert!(hosts.contains("127.0.0.1\tlocalhost\n"), "{hosts}");
    assert!(hosts.contains("::1\tlocalhost"), "{hosts}");
    assert!(hosts.contains("127.0.1.1\tweb\n"), "{hosts}");
    assert_eq!(read(&up.join("etc/machine-id")), "");
    let rc = std::fs::symlink_metadata(up.join("etc/resolv.conf")).unwrap();
    assert!(rc.file_type().is_file());
    for f in ["hostname", "hosts", "resolv.conf", "fstab", "crypttab"] {
        assert_eq!(mode(&up.join("etc").join(f)), 0o644, "{f}");
    }
    assert_eq!(mode(&up.join("etc/machine-id")), 0o444);
    assert!(read(&up.join("etc/fstab"))
        .lines()
        .all(|l| l.starts_with('#')));
    assert!(read(&up.join("etc/crypttab"))
        .lines()
        .all(|l| l.starts_with('#')));
    assert!(
        !up.join("etc/integritytab").exists(),
        "no stub for what the host lacks"
    );
    // Masks: the admin's mounts and swap and resolved; not -.mount, not
    // what is masked already, not services.
    assert_eq!(
        r.masked,
        vec![
            "srv-data.mount",
            "swapfile.swap",
            "tmp.mount",
            "systemd-resolved.service"
        ]
    );
    let sys = up.join("etc/systemd/system");
    for m in &r.masked {
        assert_eq!(link(&sys.join(m)), "/dev/null", "{m}");
    }
    for not in [
        "-.mount",
        "already-masked.mount",
        "cron.service",
        "dbus.service",
    ] {
        assert!(std::fs::symlink_metadata(sys.join(not)).is_err(), "{not}");
    }
    assert_eq!(link(&up.join("var/lib/dbus/machine-id")), "/etc/machine-id");
    // Directories created in upper take the lower's mode and owner.
    assert_eq!(mode(&up.join("etc")), mode(&f.lower.join("etc")));
    // The lower is untouched.
    assert_eq!(read(&f.lower.join("etc/hostname")), "host\n");
    assert!(std::fs::symlink_metadata(f.lower.join("etc/resolv.conf"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn opaque_dirs_and_the_dbus_alias() {
    if !root() {
        return;
    }
    let f = fixture();
    let r = prepare::run(&opts(
        &f,
        &[
            "--host-clone",
            "--opaque=/etc/systemd/system",
            "--opaque=/var/log",
        ],
    ))
    .unwrap();
    let up = f.state.join("upper");
    assert_eq!(
        opaque(&up.join("etc/systemd/system")).as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(opaque(&up.join("var/log")).as_deref(), Some(&b"y"[..]));
    assert_eq!(opaque(&up.join("etc")), None);
    // Mode copied from the lower (setgid kept).
    assert_eq!(mode(&up.join("var/log")), 0o2755);
    assert!(!up.join("var/log/old.log").exists());
    assert_eq!(
        link(&up.join("etc/systemd/system/dbus.service")),
        "/usr/lib/systemd/system/dbus-broker.service"
    );
    assert_eq!(
        r.dbus_alias.as_deref(),
        Some("/usr/lib/systemd/system/dbus-broker.service")
    );
    // The opaque dir hides the host's units: nothing to mask.
    assert!(r.masked.is_empty(), "{:?}", r.masked);
}

#[test]
fn invalid_dbus_alias_is_not_copied() {
    if !root() {
        return;
    }
    for target in [
        "/tmp/evil.service",
        "/usr/lib/systemd/system/../../../../tmp/dbus-broker.service",
        "dbus-broker.service",
        "/usr/lib/systemd/system/dbus-daemon.service", // missing in the lower
    ] {
        let f = fixture();
        let alias = f.lower.join("etc/systemd/system/dbus.service");
        std::fs::remove_file(&alias).unwrap();
        symlink(target, &alias).unwrap();
        let r = prepare::run(&opts(&f, &["--opaque=/etc/systemd/system"])).unwrap();
        assert_eq!(r.dbus_alias, None, "{target}");
        assert_eq!(r.warnings.len(), 1, "{target}: {:?}", r.warnings);
        assert!(
            std::fs::symlink_metadata(f.state.join("upper/etc/systemd/system/dbus.service"))
                .is_err()
        );
    }
    // dbus-daemon distributions without an alias: nothing to copy, no warning.
    let f = fixture();
    std::fs::remove_file(f.lower.join("etc/systemd/system/dbus.service")).unwrap();
    let r = prepare::run(&opts(&f, &["--opaque=/etc/systemd/system"])).unwrap();
    assert_eq!(r.dbus_alias, None);
    assert!(r.warnings.is_empty());
}

#[test]
fn rerun_keeps_what_the_container_wrote() {
    if !root() {
        return;
    }
    let f = fixture();
    prepare::run(&opts(&f, &["--host-clone", "--host-network"])).unwrap();
    let up = f.state.join("upper");
    std::fs::write(up.join("etc/motd"), "mine\n").unwrap();
    std::fs::write(
        up.join("etc/machine-id"),
        "fedcba9876543210fedcba9876543210\n",
    )
    .unwrap();
    std::fs::write(up.join("etc/resolv.conf"), "nameserver 10.0.0.1\n").unwrap();
    std::fs::write(up.join("etc/fstab"), "tmpfs /scratch tmpfs defaults 0 0\n").unwrap();
    std::fs::write(up.join("etc/hostname"), "changed\n").unwrap();
    // The container unmasked resolved by putting its own unit there.
    let sys = up.join("etc/systemd/system");
    std::fs::remove_file(sys.join("systemd-resolved.service")).unwrap();
    std::fs::write(sys.join("systemd-resolved.service"), "[Unit]\n").unwrap();
    std::fs::create_dir_all(up.join("var/lib/app")).unwrap();
    std::fs::write(up.join("var/lib/app/data"), "x").unwrap();

    let mut o = opts(&f, &["--host-clone", "--host-network"]);
    o.hostname = "web2".into();
    prepare::run(&o).unwrap();
    assert_eq!(read(&up.join("etc/motd")), "mine\n");
    assert_eq!(
        read(&up.join("etc/machine-id")),
        "fedcba9876543210fedcba9876543210\n"
    );
    assert_eq!(read(&up.join("etc/resolv.conf")), "nameserver 10.0.0.1\n");
    assert_eq!(
        read(&up.join("etc/fstab")),
        "tmpfs /scratch tmpfs defaults 0 0\n"
    );
    assert_eq!(read(&up.join("etc/hostname")), "web2\n");
    assert!(read(&up.join("etc/hosts")).contains("127.0.1.1\tweb2\n"));
    assert_eq!(read(&sys.join("systemd-resolved.service")), "[Unit]\n");
    assert_eq!(read(&up.join("var/lib/app/data")), "x");
    // An empty machine-id (ours) stays empty; no temporary files are left.
    let names: Vec<_> = std::fs::read_dir(up.join("etc"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        names.iter().all(|n| !n.to_string_lossy().starts_with(".#")),
        "{names:?}"
    );
}

#[test]
fn symlinks_in_upper_are_never_followed() {
    if !root() {
        return;
    }
    // upper/etc -> outside: refused, nothing written outside.
    let f = fixture();
    std::fs::create_dir_all(f.state.join("upper")).unwrap();
    symlink(&f.outside, f.state.join("upper/etc")).unwrap();
    let e = prepare::run(&opts(&f, &[])).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("upper/etc is a symlink"), "{msg}");
    assert_eq!(std::fs::read_dir(&f.outside).unwrap().count(), 0);

    // upper/etc/hostname -> outside/file: replaced, target untouched.
    let f = fixture();
    std::fs::create_dir_all(f.state.join("upper/etc")).unwrap();
    std::fs::write(f.outside.join("victim"), "precious\n").unwrap();
    for n in ["hostname", "hosts", "machine-id", "resolv.conf"] {
        symlink(f.outside.join("victim"), f.state.join("upper/etc").join(n)).unwrap();
    }
    prepare::run(&opts(&f, &["--host-network"])).unwrap();
    assert_eq!(read(&f.outside.join("victim")), "precious\n");
    for n in ["hostname", "hosts", "machine-id", "resolv.conf"] {
        let m = std::fs::symlink_metadata(f.state.join("upper/etc").join(n)).unwrap();
        assert!(m.file_type().is_file(), "{n}");
    }

    // A symlinked parent of an opaque dir or of the masks: refused.
    let f = fixture();
    std::fs::create_dir_all(f.state.join("upper/etc")).unwrap();
    symlink(&f.outside, f.state.join("upper/etc/systemd")).unwrap();
    let e = prepare::run(&opts(&f, &["--host-network"])).unwrap_err();
    assert!(format!("{e:#}").contains("is a symlink"), "{e:#}");
    let e = prepare::run(&opts(&f, &["--opaque=/etc/systemd/system"])).unwrap_err();
    assert!(format!("{e:#}").contains("is a symlink"), "{e:#}");
    assert_eq!(std::fs::read_dir(&f.outside).unwrap().count(), 0);

    // The state's own upper/ being a symlink is refused too.
    let f = fixture();
    std::fs::create_dir_all(&f.state).unwrap();
    symlink(&f.outside, f.state.join("upper")).unwrap();
    assert!(prepare::run(&opts(&f, &[])).is_err());
    assert_eq!(std::fs::read_dir(&f.outside).unwrap().count(), 0);
}

#[test]
fn resolv_conf_placeholder_only_with_the_host_network() {
    if !root() {
        return;
    }
    // A private network: nspawn --resolv-conf=auto leaves /etc/resolv.conf
    // alone, so the lower's own (a symlink to its resolved stub) must show.
    let f = fixture();
    prepare::run(&opts(&f, &["--host-clone"])).unwrap();
    assert!(std::fs::symlink_metadata(f.state.join("upper/etc/resolv.conf")).is_err());
    // The host's network: a regular file for nspawn to copy into.
    prepare::run(&opts(&f, &["--host-clone", "--host-network"])).unwrap();
    let rc = std::fs::symlink_metadata(f.state.join("upper/etc/resolv.conf")).unwrap();
    assert!(rc.file_type().is_file());
}

#[test]
fn a_deleted_directory_comes_back_opaque() {
    if !root() {
        return;
    }
    let f = fixture();
    let sysdir = f.state.join("upper/etc/systemd");
    std::fs::create_dir_all(&sysdir).unwrap();
    // The container ran rm -rf /etc/systemd/system: a whiteout.
    nix::sys::stat::mknod(
        &sysdir.join("system"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .unwrap();
    prepare::run(&opts(&f, &["--host-network"])).unwrap();
    let sys = sysdir.join("system");
    assert!(sys.is_dir());
    assert_eq!(opaque(&sys).as_deref(), Some(&b"y"[..]));
    assert_eq!(link(&sys.join("systemd-resolved.service")), "/dev/null");
}

#[test]
fn umask_is_checked() {
    assert!(prepare::check_umask(0o022).is_ok());
    assert!(prepare::check_umask(0o002).is_ok());
    for bad in [0o027, 0o077, 0o001, 0o004] {
        let e = prepare::check_umask(bad).unwrap_err().to_string();
        assert!(e.contains(&format!("{bad:04o}")), "{e}");
    }
    if !root() {
        return;
    }
    let f = fixture();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 027; exec {} --lower={} --state={} --hostname=web web",
            env!("CARGO_BIN_EXE_sdme-prepare"),
            f.lower.display(),
            f.state.display()
        ))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("sdme-prepare: web: process umask 0027"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!f.state.exists(), "nothing is created under a bad umask");
}

fn bin(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sdme-prepare"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn missing_rootfs_is_named() {
    let out = bin(&[
        "--lower=/var/lib/sdme/rootfs/no-such-rootfs-for-tests",
        "--state=/tmp/sdme-test-never-created",
        "--hostname=web",
        "--source=/etc/sdme/web.container",
        "web",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim_end(),
        "sdme-prepare: web: rootfs /var/lib/sdme/rootfs/no-such-rootfs-for-tests not found: \
         import it with sdme-import or fix Rootfs= in /etc/sdme/web.container"
    );
    assert!(!Path::new("/tmp/sdme-test-never-created").exists());
    // Bad command lines fail the same way.
    for (args, want) in [
        (&["--state=/x", "--lower=/", "we/b"][..], "we/b"),
        (&["--state=x", "--lower=/", "web"], "not an absolute path"),
        (&["--state=/x/../y", "--lower=/", "web"], "contains '..'"),
        (
            &["--state=/x", "--lower=/", "--opaque=etc", "web"],
            "not absolute",
        ),
        (
            &["--state=/x", "--lower=/", "--opaque=/", "web"],
            "root directory",
        ),
        (
            &["--state=/x", "--lower=/", "--bogus", "web"],
            "unknown option --bogus",
        ),
        (&["--state=/x", "web"], "--lower=DIR is required"),
        (
            &["--state=/x", "--lower=/", "--mount", "--unmount", "web"],
            "exclude",
        ),
        (
            &["--state=/x", "--lower=/", "--mount-unit", "web"],
            "--mount-unit goes with --unmount only",
        ),
    ] {
        let out = bin(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("sdme-prepare: "), "{err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

fn overlay_at(p: &Path) -> bool {
    let canon = std::fs::canonicalize(p).unwrap();
    sdme_helpers::mountinfo::mounted_at(&canon)
        .unwrap()
        .is_some_and(|m| m.fs_type == "overlay")
}

#[test]
fn machines_mount_masked_and_journal_kept() {
    if !root() {
        return;
    }
    let f = fixture();
    std::fs::write(
        f.lower
            .join("usr/lib/systemd/system/var-lib-machines.mount"),
        "[Mount]\n",
    )
    .unwrap();
    std::fs::create_dir_all(f.lower.join("var/log/journal")).unwrap();
    std::fs::set_permissions(
        f.lower.join("var/log/journal"),
        std::fs::Permissions::from_mode(0o2755),
    )
    .unwrap();
    let o = opts(&f, &["--host-clone", "--opaque=/var/log"]);
    prepare::run(&o).unwrap();
    let upper = f.state.join("upper");
    assert_eq!(
        link(&upper.join("etc/systemd/system/var-lib-machines.mount")),
        "/dev/null"
    );
    assert!(upper.join("var/log/journal").is_dir());
    assert_eq!(mode(&upper.join("var/log/journal")), 0o2755);
    assert_eq!(opaque(&upper.join("var/log")), Some(b"y".to_vec()));

    // With a machines.raw image there is something to mount: not masked.
    let g = fixture();
    std::fs::write(
        g.lower
            .join("usr/lib/systemd/system/var-lib-machines.mount"),
        "[Mount]\n",
    )
    .unwrap();
    std::fs::create_dir_all(g.lower.join("var/lib")).unwrap();
    std::fs::write(g.lower.join("var/lib/machines.raw"), "").unwrap();
    prepare::run(&opts(&g, &["--host-clone", "--opaque=/var/log"])).unwrap();
    let m = g
        .state
        .join("upper/etc/systemd/system/var-lib-machines.mount");
    assert!(std::fs::symlink_metadata(&m).is_err(), "not masked");
    assert!(
        !g.state.join("upper/var/log/journal").exists(),
        "no journal dir in the lower"
    );
}

#[test]
fn mount_and_unmount_round_trip() {
    if !root() {
        return;
    }
    let f = fixture();
    let lower = f.lower.to_str().unwrap();
    let state = f.state.to_str().unwrap();
    let args = [
        "--mount",
        &format!("--lower={lower}"),
        &format!("--state={state}"),
        "--hostname=web",
        "--opaque=/var/log",
        "web-a",
    ];
    let out = bin(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let merged = f.state.join("merged");
    assert!(overlay_at(&merged));
    assert_eq!(read(&merged.join("etc/hostname")), "web\n");
    assert_eq!(read(&merged.join("etc/machine-id")), "");
    assert!(!merged.join("var/log/old.log").exists(), "opaque /var/log");
    assert!(merged
        .join("usr/lib/systemd/system/dbus-broker.service")
        .exists());
    // Copy-on-write: a write lands in upper/, the lower is untouched.
    std::fs::write(merged.join("etc/new-file"), "cow\n").unwrap();
    assert_eq!(read(&f.state.join("upper/etc/new-file")), "cow\n");
    assert!(!f.lower.join("etc/new-file").exists());
    // Again, with no machine "web-a" running: the overlay is a stale one
    // (a killed instance's), so it is unmounted and prepared afresh.
    let out = bin(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unmounted a stale overlay"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read(&merged.join("etc/new-file")), "cow\n", "upper/ kept");
    let count = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(merged.to_str().unwrap()))
        .count();
    assert_eq!(count, 1, "mounted once");
    // Unmount, twice.
    for _ in 0..2 {
        let out = bin(&["--unmount", &format!("--state={state}"), "web-a"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!overlay_at(&merged));
    }
    assert_eq!(
        read(&f.state.join("upper/etc/new-file")),
        "cow\n",
        "stop keeps upper/"
    );
    // A bad instance name from the runtime is refused.
    let out = bin(&[
        "--mount",
        &format!("--lower={lower}"),
        &format!("--state={state}"),
        "web-a b",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("contains ' '"));
}

#[test]
fn overlay_of_the_real_root() {
    if !root() {
        return;
    }
    // The host-clone case: lowerdir=/ with the state below it.
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let state = tmp.path().join("c");
    let s = state.to_str().unwrap();
    let out = bin(&[
        "--mount",
        "--lower=/",
        &format!("--state={s}"),
        "--hostname=clone",
        "--host-clone",
        "--opaque=/etc/systemd/system",
        "clone",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let merged = state.join("merged");
    // Unmount even when an assertion fails.
    struct Unmount(String);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = bin(&["--unmount", &format!("--state={}", self.0), "clone"]);
        }
    }
    let guard = Unmount(s.to_string());
    assert_eq!(read(&merged.join("etc/hostname")), "clone\n");
    assert!(read(&merged.join("etc/fstab")).starts_with('#'));
    assert!(merged.join("usr/bin").is_dir());
    assert!(merged.join(OsStr::new("etc/os-release")).exists());
    drop(guard);
    assert!(!overlay_at(&merged));
}

#[test]
fn the_lower_machine_id_is_never_kept() {
    if !root() {
        return;
    }
    let f = fixture();
    prepare::run(&opts(&f, &["--host-clone"])).unwrap();
    let up = f.state.join("upper");
    // As systemd would have committed it from /var/lib/dbus/machine-id
    // before sdme-prepare linked that to /etc/machine-id.
    std::fs::write(
        up.join("etc/machine-id"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    let r = prepare::run(&opts(&f, &["--host-clone"])).unwrap();
    assert_eq!(read(&up.join("etc/machine-id")), "");
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    // A lower whose dbus id already follows /etc/machine-id gets no link.
    let f = fixture();
    let d = f.lower.join("var/lib/dbus/machine-id");
    std::fs::remove_file(&d).unwrap();
    symlink("/etc/machine-id", &d).unwrap();
    prepare::run(&opts(&f, &[])).unwrap();
    assert!(!f.state.join("upper/var/lib/dbus").exists());
}

/// PrivateUsers=: the mount points nspawn cannot create on the mapped
/// overlay are made in upper/ (owned by 0, the container's root on disk)
/// when neither layer has them; what the lower has is left to it.
#[test]
fn mount_points_for_private_users() {
    use sdme_helpers::fsutil::Lower;
    if !root() {
        return;
    }
    let f = fixture();
    std::fs::create_dir_all(f.lower.join("run")).unwrap();
    symlink("run", f.lower.join("dev")).unwrap();
    std::fs::create_dir_all(f.lower.join("proc")).unwrap();
    let upper = f.state.join("upper");
    std::fs::create_dir_all(&upper).unwrap();
    // The container deleted /proc: a whiteout hides the lower's.
    nix::sys::stat::mknod(
        &upper.join("proc"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .unwrap();
    let lower = Lower::open(&f.lower).unwrap();
    let up = SafeDir::open(&upper).unwrap();
    prepare::ensure_mount_points(&up, &lower).unwrap();
    for (name, want) in [("tmp", 0o1777), ("root", 0o700), ("sys", 0o755)] {
        let md = std::fs::symlink_metadata(upper.join(name)).unwrap();
        assert!(md.is_dir(), "{name}");
        assert_eq!((md.uid(), md.gid()), (0, 0), "{name}");
        assert_eq!(md.mode() & 0o7777, want, "{name}");
    }
    assert!(upper.join("proc").is_dir());
    assert_eq!(opaque(&upper.join("proc")).as_deref(), Some(&b"y"[..]));
    // The lower's own (a directory, a symlink) are left to it.
    assert!(!upper.join("run").exists());
    assert!(std::fs::symlink_metadata(upper.join("dev")).is_err());
    // Idempotent.
    prepare::ensure_mount_points(&up, &lower).unwrap();
    // A symlink the container put at /tmp is its own: kept, not followed.
    std::fs::remove_dir(upper.join("tmp")).unwrap();
    symlink(&f.outside, upper.join("tmp")).unwrap();
    std::fs::remove_dir(upper.join("root")).unwrap();
    prepare::ensure_mount_points(&up, &lower).unwrap();
    assert_eq!(link(&upper.join("tmp")), f.outside.display().to_string());
    assert_eq!(std::fs::read_dir(&f.outside).unwrap().count(), 0);
    assert_eq!(mode(&upper.join("root")), 0o700);
}

/// PrivateUsers= with Bind=: a missing destination is made in upper/
/// (a directory, or an empty file for a file source), its missing parents
/// with the lower's attributes; nothing is made through a symlink or over
/// what either layer has, and an opaque upper directory hides the lower.
#[test]
fn bind_destinations_for_private_users() {
    use sdme_helpers::bindpoint;
    use sdme_helpers::fsutil::Lower;
    if !root() {
        return;
    }
    let f = fixture();
    std::fs::create_dir_all(f.lower.join("srv")).unwrap();
    std::fs::set_permissions(f.lower.join("srv"), std::fs::Permissions::from_mode(0o750)).unwrap();
    symlink("usr/lib", f.lower.join("lib")).unwrap();
    let upper = f.state.join("upper");
    std::fs::create_dir_all(&upper).unwrap();
    let lower = Lower::open(&f.lower).unwrap();
    let up = SafeDir::open(&upper).unwrap();
    let ensure = |rel: &str, file: bool| bindpoint::ensure(&up, &lower, Path::new(rel), file);

    ensure("srv/data/deep", false).unwrap();
    assert_eq!(
        mode(&upper.join("srv")),
        0o750,
        "copied up with the lower's mode"
    );
    assert_eq!(mode(&upper.join("srv/data")), 0o755);
    let md = std::fs::metadata(upper.join("srv/data/deep")).unwrap();
    assert!(md.is_dir());
    assert_eq!((md.uid(), md.gid()), (0, 0));

    ensure("etc/extra.conf", true).unwrap();
    let md = std::fs::symlink_metadata(upper.join("etc/extra.conf")).unwrap();
    assert!(md.is_file());
    assert_eq!((md.len(), md.mode() & 0o777), (0, 0o644));

    // Through a symlink of the lower: nothing made, the link stays its own.
    ensure("lib/x", false).unwrap();
    assert!(std::fs::symlink_metadata(upper.join("lib")).is_err());
    // What the lower has (a directory, a file) is left to it.
    ensure("var/log", false).unwrap();
    ensure("etc/hostname", true).unwrap();
    assert!(!upper.join("var").exists());
    assert!(!upper.join("etc/hostname").exists());
    // A symlink the container put in upper/ is never followed.
    symlink(&f.outside, upper.join("opt")).unwrap();
    ensure("opt/y", false).unwrap();
    assert_eq!(std::fs::read_dir(&f.outside).unwrap().count(), 0);
    // Below an opaque upper directory the lower's entries do not count.
    std::fs::create_dir_all(upper.join("usr")).unwrap();
    let opq = SafeDir::open(&upper.join("usr")).unwrap();
    opq.set_opaque().unwrap();
    ensure("usr/lib/systemd", false).unwrap();
    assert!(upper.join("usr/lib/systemd").is_dir());
    // Idempotent.
    ensure("srv/data/deep", false).unwrap();
    ensure("etc/extra.conf", true).unwrap();
}

/// Every start is recorded, whatever the lower layer (the generator keeps
/// a stopping unit from it), with its unit and file; the stop removes it.
#[test]
fn start_record_names_unit_and_file_and_goes_with_the_stop() {
    if !root() {
        return;
    }
    let f = fixture();
    let o = opts(
        &f,
        &[
            "--host-clone",
            "--unit=sdme-web.service",
            "--source=/etc/sdme/web.container",
        ],
    );
    prepare::run(&o).unwrap();
    let recs = sdme_core::inuse::read_all(&o.records).unwrap();
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0].machine, "web");
    assert_eq!(recs[0].lower, f.lower);
    assert_eq!(recs[0].merged, f.state.join("merged"));
    assert_eq!(recs[0].unit.as_deref(), Some("sdme-web.service"));
    assert_eq!(
        recs[0].source.as_deref(),
        Some(Path::new("/etc/sdme/web.container"))
    );
    prepare::run(&stop_opts(&f, &o, None)).unwrap();
    assert!(!o.records.exists(), "record and empty directory removed");
}

/// The options of the stop of machine `web` (`--unmount`, as its
/// `ExecStopPost=` runs it, as `unit` when given), with the records of
/// its start `o`.
fn stop_opts(f: &Fixture, o: &Options, unit: Option<&str>) -> Options {
    let mut args: Vec<std::ffi::OsString> = vec!["--unmount".into()];
    args.extend(unit.map(|u| format!("--unit={u}").into()));
    args.push(format!("--state={}", f.state.display()).into());
    args.push("web".into());
    let mut stop = prepare::parse_args(args).unwrap();
    stop.records = o.records.clone();
    stop
}

/// A stop leaves alone an overlay whose record names another unit (the
/// machine name moved to another file while both ran): only the unit
/// whose start mounted it unmounts it.
#[test]
fn stop_of_another_unit_leaves_the_overlay_mounted() {
    if !root() {
        return;
    }
    let f = fixture();
    let o = opts(&f, &["--mount", "--unit=sdme-web.service"]);
    prepare::run(&o).unwrap();
    let merged = f.state.join("merged");
    assert!(overlay_at(&merged));
    let stop_as = |unit: &str| prepare::run(&stop_opts(&f, &o, Some(unit))).unwrap();
    let report = stop_as("sdme-other.service");
    assert!(overlay_at(&merged), "another unit's stop unmounted it");
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("in use by sdme-web.service")),
        "{:?}",
        report.warnings
    );
    assert!(
        sdme_core::inuse::read(&o.records, "web").is_some(),
        "record kept"
    );
    stop_as("sdme-web.service");
    assert!(!overlay_at(&merged), "its own unit's stop unmounts it");
    assert!(!o.records.exists(), "record removed");
}

/// A stop that cannot unmount (something holds the overlay) keeps the
/// record, which goes just before the unmount (so that a restart's next
/// prepare step, running once the unmount is seen, keeps its own): the
/// container still uses its layers.
#[test]
fn busy_overlay_keeps_its_record() {
    if !root() {
        return;
    }
    let f = fixture();
    let o = opts(&f, &["--mount", "--unit=sdme-web.service"]);
    prepare::run(&o).unwrap();
    let merged = f.state.join("merged");
    assert!(overlay_at(&merged));
    let holder = std::fs::File::open(merged.join("etc/hostname")).unwrap();
    let stop = stop_opts(&f, &o, Some("sdme-web.service"));
    let e = format!("{:#}", prepare::run(&stop).unwrap_err());
    assert!(e.contains("busy"), "{e}");
    assert!(overlay_at(&merged));
    let rec = sdme_core::inuse::read(&o.records, "web").expect("record kept while mounted");
    assert_eq!(rec.unit.as_deref(), Some("sdme-web.service"));
    drop(holder);
    prepare::run(&stop).unwrap();
    assert!(!overlay_at(&merged));
    assert!(!o.records.exists(), "record removed");
}

/// `--app`: a prepare with `--mount` mounts the container's overlay and
/// the application's tree, writes the guest's unit; the stop step
/// unmounts both. A prepare that fails after the application's tree was
/// mounted (the guest administrator's own sdme-app.service is in the way)
/// leaves nothing mounted.
#[test]
fn an_application_is_mounted_and_unmounted() {
    assert!(root());
    let f = Fixture::new();
    let apps = f.state.parent().unwrap().with_file_name("apps");
    let dirs = sdme_helpers::app::AppDirs {
        rootfs: apps.join("rootfs"),
        meta: apps.join("meta"),
        volumes: apps.join("volumes"),
        drop_privs: apps.join("sdme-drop-privs"),
        pod_socket_dir: apps.join("app-pod"),
        pod_records: apps.join("app-pods"),
    };
    std::fs::create_dir_all(dirs.rootfs.join("bb/www")).unwrap();
    std::fs::create_dir_all(&dirs.meta).unwrap();
    std::fs::write(dirs.meta.join("bb.json"), r#"{"oci":{"cmd":["/app"]}}"#).unwrap();
    std::fs::write(&dirs.drop_privs, "helper").unwrap();
    let mut o = opts(
        &f,
        &[
            "--mount",
            "--app=bb",
            "--app-at=/etc/sdme/web.container:2",
            "--volume=/data",
        ],
    );
    o.app_dirs = dirs.clone();
    let app_merged = f.state.join("app/merged");
    prepare::run(&o).unwrap();
    let seen = (
        mountpoint(&f.state.join("merged")),
        mountpoint(&app_merged),
        app_merged.join("www").is_dir(),
        mountpoint(&app_merged.join("data")),
    );
    prepare::run(&stop_opts(&f, &o, None)).unwrap();
    assert_eq!(seen, (true, true, true, true));
    assert!(!mountpoint(&app_merged) && !mountpoint(&f.state.join("merged")));
    let unit = read(&f.upper().join("etc/systemd/system/sdme-app.service"));
    assert!(unit.contains("RootDirectory=/oci/apps/bb/root\n"), "{unit}");
    assert!(dirs.volumes.join("web/data").is_dir());
    // The guest's own unit of that name: the start fails, nothing stays.
    std::fs::write(
        f.upper().join("etc/systemd/system/sdme-app.service"),
        "[Service]\n",
    )
    .unwrap();
    let e = format!("{:#}", prepare::run(&o).unwrap_err());
    let left = (mountpoint(&app_merged), mountpoint(&f.state.join("merged")));
    let _ = prepare::run(&stop_opts(&f, &o, None));
    assert!(e.contains("is not sdme's"), "{e}");
    assert_eq!(
        left,
        (false, false),
        "a failed start leaves nothing mounted"
    );
}

fn mountpoint(p: &Path) -> bool {
    let Ok(c) = std::fs::canonicalize(p) else {
        return false;
    };
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(c.to_str().unwrap()))
}
