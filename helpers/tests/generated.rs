//! `sdme-prepare --generated=MACHINE`: the arguments come from the
//! `X-SdmePrepare=` line of the mount unit the real generator code wrote,
//! escaping and all, and anything else is a clear error.

use std::ffi::OsString;
use std::path::Path;

use sdme_core::generate::plan;
use sdme_core::render::{render, Output};
use sdme_helpers::prepare::{self, expand_generated, parse_args};

/// Generate the units of `files` (name, content) and write the mount
/// units into `out`, as systemd's generator directory would hold them.
fn generate(dir: &Path, files: &[(&str, &str)]) -> std::path::PathBuf {
    let etc = dir.join("etc sdme%x$y");
    std::fs::create_dir_all(&etc).unwrap();
    for (name, text) in files {
        std::fs::write(etc.join(name), text).unwrap();
    }
    let out = dir.join("generator");
    std::fs::create_dir_all(&out).unwrap();
    let p = plan(&[etc]);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    for c in &p.containers {
        for o in render(c) {
            if let Output::File { path, content } = o {
                if path.ends_with(".mount") {
                    std::fs::write(out.join(path), content).unwrap();
                }
            }
        }
    }
    out
}

fn generated(m: &str) -> Vec<OsString> {
    vec![format!("--generated={m}").into()]
}

#[test]
fn arguments_round_trip_through_the_mount_unit() {
    let t = tempfile::tempdir().unwrap();
    let out = generate(
        t.path(),
        &[(
            "web-01.container",
            "[Container]\nRootfs=/srv/roots/a%b$c\nOpaqueDir=/var/cache/x y\nOpaqueDir=/opt/\"q\"\\\\z\n\
             [Service]\nUMask=0027\n",
        )],
    );
    let args = expand_generated(generated("web-01"), &out).unwrap();
    let o = parse_args(args).unwrap();
    assert_eq!(o.machine, "web-01");
    assert_eq!(o.action, prepare::Action::Prepare);
    assert_eq!(o.lower.as_deref(), Some(Path::new("/srv/roots/a%b$c")));
    assert_eq!(o.state, Path::new("/var/lib/sdme/containers/web-01"));
    assert_eq!(
        o.opaque,
        vec![Path::new("var/cache/x y"), Path::new("opt/\"q\"\\\\z")]
    );
    assert_eq!(o.umask, Some(0o027));
    assert_eq!(o.unit.as_deref(), Some("sdme-web-01.service"));
    let source = t.path().join("etc sdme%x$y/web-01.container");
    assert_eq!(o.source.as_deref(), Some(source.as_path()));
}

#[test]
fn a_declared_instance_has_its_instance_written_out() {
    let t = tempfile::tempdir().unwrap();
    let out = generate(
        t.path(),
        &[
            ("web@.container", "[Container]\nOpaqueDir=/srv/%i\n"),
            ("web@a.container", "[Container]\nOpaqueDir=/srv/%i\n"),
        ],
    );
    let o = parse_args(expand_generated(generated("web-a"), &out).unwrap()).unwrap();
    assert_eq!(
        o.opaque.last().map(|p| p.as_path()),
        Some(Path::new("srv/a"))
    );
    assert_eq!(o.unit.as_deref(), Some("sdme-web@a.service"));
}

#[test]
fn other_command_lines_pass_through() {
    let out = Path::new("/nonexistent");
    let a: Vec<OsString> = vec!["--lower=/".into(), "--state=/s/x".into(), "x".into()];
    assert_eq!(expand_generated(a.clone(), out).unwrap(), a);
}

#[test]
fn errors_name_the_machine_and_the_file() {
    let t = tempfile::tempdir().unwrap();
    let out = generate(t.path(), &[("web.container", "[Container]\n")]);
    let err = |args: Vec<OsString>| format!("{:#}", expand_generated(args, &out).unwrap_err());

    let e = err(generated("db"));
    assert!(e.starts_with("db: no generated mount unit "), "{e}");
    assert!(e.contains("var-lib-sdme-containers-db-merged.mount"), "{e}");
    assert!(e.contains("daemon-reload"), "{e}");

    assert!(err(generated("../x")).contains("machine name"));
    assert!(err(vec!["--generated=web".into(), "--mount".into()]).contains("no other argument"));

    let mount = out.join("var-lib-sdme-containers-web-merged.mount");
    let text = std::fs::read_to_string(&mount).unwrap();
    std::fs::write(&mount, text.replace(" web\n\n[Mount]", " db\n\n[Mount]")).unwrap();
    let e = err(generated("web"));
    assert!(
        e.contains("X-SdmePrepare= is for another machine than 'web'"),
        "{e}"
    );

    std::fs::write(&mount, "[Unit]\nDescription=x\n").unwrap();
    let e = err(generated("web"));
    assert!(e.starts_with("web: "), "{e}");
    assert!(e.contains("no X-SdmePrepare= in [Unit]"), "{e}");

    std::fs::write(&mount, "[Unit]\nX-SdmePrepare=--lower=\"/ x\n").unwrap();
    assert!(err(generated("web")).contains("unterminated"));

    std::fs::write(&mount, vec![b'#'; 5 << 20]).unwrap();
    assert!(err(generated("web")).contains("too big"));
}

#[test]
fn umask_values() {
    let a = |v: &str| {
        parse_args(vec![
            "--lower=/".into(),
            "--state=/s/x".into(),
            format!("--umask={v}").into(),
            "x".into(),
        ])
    };
    assert_eq!(a("0022").unwrap().umask, Some(0o22));
    assert_eq!(a("77").unwrap().umask, Some(0o77));
    for bad in ["", "8", "0o22", "+22", "-1", "77777"] {
        let e = format!("{:#}", a(bad).unwrap_err());
        assert!(e.contains("expected an octal mode"), "{bad}: {e}");
    }
}
