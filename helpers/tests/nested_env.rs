//! sdme-prepare's opaque sdme directories (`NestedSdme=`) and the
//! `ServiceEnvironment=` drop-in, on real directories with trusted xattrs
//! and a real overlay mount: they need root, as helpers/tests/prepare.rs.

use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;

use sdme_helpers::prepare::{self, Options};

mod common;
use common::{root, Fixture};

const DROPIN: &str = "etc/systemd/system.conf.d/50-sdme-environment.conf";

/// A lower layer as an imported copy of a host that runs sdme.
fn fixture() -> Fixture {
    let f = Fixture::new();
    let lower = &f.lower;
    for d in [
        "etc/sdme",
        "etc/systemd/system",
        "usr/lib/sdme",
        "var/lib/sdme/rootfs/base/etc",
    ] {
        std::fs::create_dir_all(lower.join(d)).unwrap();
    }
    std::fs::write(lower.join("etc/sdme/hello.container"), "[Container]\n").unwrap();
    std::fs::write(lower.join("usr/lib/sdme/vendor.container"), "[Container]\n").unwrap();
    f
}

fn opts(f: &Fixture, extra: &[&str]) -> Options {
    f.opts(extra)
}

fn opaque(p: &Path) -> bool {
    common::opaque(p).as_deref() == Some(&b"y"[..])
}

fn names(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn sdme_dirs_are_opaque_unless_nested() {
    root();
    let f = fixture();
    prepare::run(&opts(&f, &[])).unwrap();
    let up = f.upper();
    for d in ["etc/sdme", "usr/lib/sdme", "var/lib/sdme"] {
        assert!(opaque(&up.join(d)), "{d}");
        assert!(names(&up.join(d)).is_empty(), "{d}");
    }
    // Nothing to hide: nothing made.
    assert!(!up.join("usr/local").exists());
    assert!(!opaque(&up.join("etc")));

    // What the guest writes there is its own: kept, and visible.
    std::fs::write(up.join("etc/sdme/own.container"), "[Container]\n").unwrap();
    prepare::run(&opts(&f, &["--mount"])).unwrap();
    let merged = f.state.join("merged");
    assert_eq!(names(&merged.join("etc/sdme")), ["own.container"]);
    assert!(names(&merged.join("usr/lib/sdme")).is_empty());
    assert!(names(&merged.join("var/lib/sdme")).is_empty());
    prepare::unmount(&f.state).unwrap();

    // NestedSdme=yes: the lower's files show again, the guest's stay.
    prepare::run(&opts(&f, &["--nested-sdme", "--mount"])).unwrap();
    assert_eq!(
        names(&merged.join("etc/sdme")),
        ["hello.container", "own.container"]
    );
    assert_eq!(names(&merged.join("usr/lib/sdme")), ["vendor.container"]);
    assert_eq!(names(&merged.join("var/lib/sdme")), ["rootfs"]);
    prepare::unmount(&f.state).unwrap();
    for d in ["etc/sdme", "usr/lib/sdme", "var/lib/sdme"] {
        assert!(!opaque(&up.join(d)), "{d}");
    }

    // An OpaqueDir= naming one wins over NestedSdme=yes.
    prepare::run(&opts(&f, &["--nested-sdme", "--opaque=/etc/sdme"])).unwrap();
    assert!(opaque(&up.join("etc/sdme")));
    assert!(!opaque(&up.join("usr/lib/sdme")));
    assert_eq!(names(&up.join("etc/sdme")), ["own.container"]);
}

#[test]
fn sdme_dirs_never_follow_or_shadow_symlinks() {
    root();
    let f = fixture();
    let up = f.upper();
    // The guest made /etc/sdme a symlink and deleted /usr/lib/sdme: the
    // lower's are hidden already; nothing is followed or replaced.
    std::fs::create_dir_all(up.join("usr/lib")).unwrap();
    std::fs::create_dir_all(up.join("etc")).unwrap();
    symlink(&f.outside, up.join("etc/sdme")).unwrap();
    nix::sys::stat::mknod(
        &up.join("usr/lib/sdme"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .unwrap();
    // The guest made /var/lib a symlink to outside.
    std::fs::create_dir_all(up.join("var")).unwrap();
    symlink(&f.outside, up.join("var/lib")).unwrap();
    // The lower's /usr/local is a symlink: an upper directory there would
    // hide all of it.
    std::fs::create_dir_all(f.lower.join("opt/local/lib/sdme")).unwrap();
    std::fs::create_dir_all(f.lower.join("usr")).unwrap();
    symlink("../opt/local", f.lower.join("usr/local")).unwrap();
    prepare::run(&opts(&f, &[])).unwrap();
    prepare::run(&opts(&f, &["--nested-sdme"])).unwrap();
    assert!(std::fs::symlink_metadata(up.join("etc/sdme"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::symlink_metadata(up.join("usr/lib/sdme"))
            .unwrap()
            .rdev(),
        0
    );
    assert!(!up.join("usr/local").exists());
    assert!(names(&f.outside).is_empty());
    assert!(!opaque(&f.outside));
}

#[test]
fn service_environment_dropin() {
    root();
    let f = fixture();
    let up = f.upper();
    prepare::run(&opts(
        &f,
        &[
            "--service-environment=GREETING=hello world",
            "--service-environment=Q=a\"b\\c$d%e",
        ],
    ))
    .unwrap();
    let file = up.join(DROPIN);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.ends_with(
            "[Manager]\nDefaultEnvironment=\"GREETING=hello world\"\nDefaultEnvironment=\"Q=a\\\"b\\\\c$d%%e\"\n"
        ),
        "{text}"
    );
    let md = std::fs::symlink_metadata(&file).unwrap();
    assert!(md.is_file());
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (0, 0, 0o644));
    // Directories made as in the lower (0755 root when it has none).
    let dmd = std::fs::metadata(up.join("etc/systemd/system.conf.d")).unwrap();
    assert_eq!((dmd.uid(), dmd.mode() & 0o7777), (0, 0o755));

    // The guest's own drop-ins there stay; ours goes with the key.
    std::fs::write(up.join("etc/systemd/system.conf.d/10-own.conf"), "x").unwrap();
    prepare::run(&opts(&f, &[])).unwrap();
    assert!(!file.exists());
    assert!(up.join("etc/systemd/system.conf.d/10-own.conf").exists());
    // Nothing to remove: no error, nothing made.
    let g = fixture();
    prepare::run(&opts(&g, &[])).unwrap();
    assert!(!g.upper().join("etc/systemd").exists());
}

#[test]
fn service_environment_never_writes_through_symlinks() {
    root();
    let env = "--service-environment=A=1";
    // upper/etc/systemd or system.conf.d planted as a symlink: refused.
    for planted in ["etc/systemd", "etc/systemd/system.conf.d"] {
        let f = fixture();
        let at = f.upper().join(planted);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        symlink(&f.outside, &at).unwrap();
        let e = prepare::run(&opts(&f, &[env])).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("is a symlink"), "{planted}: {msg}");
        assert!(names(&f.outside).is_empty(), "{planted}");
        // Removal does not follow it either.
        std::fs::write(f.outside.join("50-sdme-environment.conf"), "keep").unwrap();
        let mut o = opts(&f, &[]);
        o.service_environment.clear();
        prepare::run(&o).unwrap();
        assert_eq!(
            std::fs::read_to_string(f.outside.join("50-sdme-environment.conf")).unwrap(),
            "keep",
            "{planted}"
        );
    }
    // The file itself a symlink: replaced by a regular file, the target
    // untouched; at removal the link goes, the target stays.
    let f = fixture();
    let file = f.upper().join(DROPIN);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(f.outside.join("victim"), "precious").unwrap();
    symlink(f.outside.join("victim"), &file).unwrap();
    prepare::run(&opts(&f, &[env])).unwrap();
    assert!(std::fs::symlink_metadata(&file).unwrap().is_file());
    assert_eq!(
        std::fs::read_to_string(f.outside.join("victim")).unwrap(),
        "precious"
    );
    std::fs::remove_file(&file).unwrap();
    symlink(f.outside.join("victim"), &file).unwrap();
    prepare::run(&opts(&f, &[])).unwrap();
    assert!(std::fs::symlink_metadata(&file).is_err());
    assert_eq!(
        std::fs::read_to_string(f.outside.join("victim")).unwrap(),
        "precious"
    );
    // A directory at the file's name is an error, not removed.
    std::fs::create_dir(&file).unwrap();
    assert!(prepare::run(&opts(&f, &[env])).is_err());
    assert!(file.is_dir());
}

#[test]
fn service_environment_arguments_are_checked() {
    let bad = |v: &str| {
        prepare::parse_args(
            [
                "--lower=/",
                "--state=/var/lib/sdme/containers/w",
                &format!("--service-environment={v}"),
                "w",
            ]
            .iter()
            .map(std::ffi::OsString::from)
            .collect(),
        )
        .unwrap_err()
        .to_string()
    };
    assert!(bad("1A=x").contains("valid variable name"));
    assert!(bad("novalue").contains("NAME=VALUE"));
    assert!(bad(&format!("A={}", "x".repeat(40000))).contains("at most"));
}
