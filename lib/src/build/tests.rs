use std::path::Path;
use std::time::Duration;

use super::*;
use crate::search::FileType;

const PATH: &str = "/etc/sdme/web.build";

fn load(name: &str, text: &str) -> Result<Build, Vec<String>> {
    let path = Path::new(PATH);
    let f = UnitFile::parse(path, text.as_bytes()).unwrap();
    Build::from_unit(&UnitName::from_stem(name), path, f)
        .map_err(|v| v.into_iter().map(|d| d.to_string()).collect())
}

fn err(text: &str) -> Vec<String> {
    load("web", text).unwrap_err()
}

fn texts(b: &Build) -> Vec<String> {
    b.steps.iter().map(Step::text).collect()
}

#[test]
fn a_build_file() {
    let b = load(
        "web",
        "[Build]\nFrom=debian-13\nEnvironment=DEBIAN_FRONTEND=noninteractive \"A=b c\"\nRun=apt-get install -y nginx\nCopy=site/:/var/www/html/\nRun=systemctl enable nginx\nCopy=debian:/etc/os-release:/etc/base-release\nBootTimeout=2min\n[Service]\nTimeoutStartSec=1h\n",
    )
    .unwrap();
    assert_eq!(b.name, "web");
    assert_eq!(b.from, Base::Rootfs("debian-13".into()));
    assert_eq!(b.environment, ["DEBIAN_FRONTEND=noninteractive", "A=b c"]);
    assert_eq!(
        texts(&b),
        [
            "Run=apt-get install -y nginx",
            "Copy=site/:/var/www/html/",
            "Run=systemctl enable nginx",
            "Copy=debian:/etc/os-release:/etc/base-release",
        ]
    );
    assert_eq!(b.steps[0].at().line, 4);
    match &b.steps[1] {
        Step::Copy {
            source: CopySource::Local { dir, rel },
            dest,
            dest_dir,
            ..
        } => {
            assert_eq!(
                (dir.as_path(), rel.as_str()),
                (Path::new("/etc/sdme"), "site/")
            );
            assert_eq!((dest.as_str(), *dest_dir), ("/var/www/html", true));
        }
        s => panic!("{s:?}"),
    }
    assert_eq!(b.boot_timeout, Some(Duration::from_secs(120)));
    assert_eq!(b.passthrough.len(), 1);
}

#[test]
fn from_values() {
    let from = |v: &str| load("web", &format!("[Build]\nFrom={v}\n")).map(|b| b.from);
    assert_eq!(from(""), Ok(Base::Host));
    assert_eq!(from("/"), Ok(Base::Host));
    assert_eq!(from("deb.image"), Ok(Base::Image("deb".into())));
    assert_eq!(from("base.build"), Ok(Base::Build("base".into())));
    assert_eq!(load("web", "[Build]\n").unwrap().from, Base::Host);
    let e = from("a/b").unwrap_err();
    assert!(
        e[0].starts_with(&format!("{PATH}:2: From=a/b: rootfs name")),
        "{e:?}"
    );
    let e = from("x y.build").unwrap_err();
    assert!(e[0].contains("From=x y.build: build name"), "{e:?}");
    // The last From= wins; an empty one is the host again.
    assert_eq!(from("a\nFrom=").unwrap(), Base::Host);
}

#[test]
fn a_build_that_starts_from_itself_is_refused() {
    assert_eq!(
        err("[Build]\nFrom=web.build\n"),
        [format!(
            "{PATH}:2: From=web.build: a build cannot start from its own result"
        )]
    );
}

#[test]
fn chains_into_themselves_are_found() {
    let a = load("a", "[Build]\nFrom=b.build\n").unwrap();
    let (b, c) = (Base::Build("c".into()), Base::Build("a".into()));
    let froms = |n: &str| match n {
        "b" => Some(&b),
        "c" => Some(&c),
        _ => None,
    };
    assert_eq!(
        a.chain(froms),
        Err("the build chains into itself: a.build -> b.build -> c.build -> a.build".into())
    );
    let ok = |n: &str| (n == "b").then_some(&Base::Host);
    assert_eq!(a.chain(ok), Ok(vec!["b"]));
    let host = load("h", "[Build]\nRun=true\n").unwrap();
    assert_eq!(host.chain(|_| None), Ok(vec![]));
}

#[test]
fn empty_steps_are_errors_not_resets() {
    let e = err("[Build]\nRun=true\nRun=\nCopy=\n");
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with(&format!("{PATH}:3: an empty Run= is an error")),
        "{e:?}"
    );
    assert!(
        e[1].starts_with(&format!("{PATH}:4: an empty Copy= is an error")),
        "{e:?}"
    );
}

#[test]
fn copy_destinations_hidden_at_boot_are_refused() {
    for (from, dest, why) in [
        (
            "debian",
            "/tmp/x",
            "under /tmp, which a booted container mounts a tmpfs over",
        ),
        ("debian", "/run", "under /run, which"),
        ("debian", "/dev/shm/a/", "under /dev/shm, which"),
        (
            "debian",
            "/etc/sdme/x.container",
            "under /etc/sdme, an opaque directory",
        ),
        (
            "debian",
            "/var/lib/sdme",
            "under /var/lib/sdme, an opaque directory",
        ),
        ("", "/var/log/x", "under /var/log, an opaque directory"),
        (
            "",
            "/etc/systemd/system/a.service",
            "under /etc/systemd/system, an opaque",
        ),
    ] {
        let e = err(&format!("[Build]\nFrom={from}\nCopy=a:{dest}\n"));
        assert_eq!(e.len(), 1, "{dest}: {e:?}");
        assert!(
            e[0].starts_with(&format!("{PATH}:3: Copy=a:{dest}: the destination ")),
            "{e:?}"
        );
        assert!(e[0].contains(why), "{dest}: {e:?}");
    }
    // Opaque only in a clone of the host; similar names are not under.
    for (from, dest) in [
        ("debian", "/var/log/x"),
        ("debian", "/etc/systemd/system/a"),
        ("", "/tmpx"),
        ("", "/running"),
    ] {
        assert!(
            load("web", &format!("[Build]\nFrom={from}\nCopy=a:{dest}\n")).is_ok(),
            "{dest}"
        );
    }
    // A From= in a drop-in after the Copy= line still counts.
    let e = err("[Build]\nFrom=debian\nCopy=a:/var/log/x\nFrom=\n");
    assert!(e[0].contains("under /var/log"), "{e:?}");
}

#[test]
fn copy_sources_stay_in_the_build_directory() {
    for (v, why) in [
        (
            "../outside:/x",
            "the source '../outside' escapes the build directory /etc/sdme",
        ),
        ("a/../../b:/x", "escapes the build directory"),
        ("/etc/passwd:/x", "the source '/etc/passwd' is absolute"),
        (":/x", "the source is empty"),
        ("a", "expected SRC:DEST or ROOTFS:/PATH:DEST"),
        ("a:x", "destination 'x' is not an absolute path"),
        ("a:/x/../y", "contains '..'"),
        ("a:", "the destination is empty"),
        ("deb:/a/../b:/x", "source path '/a/../b' contains '..'"),
        ("a\u{7}:/x", "control character"),
    ] {
        let e = err(&format!("[Build]\nCopy={v}\n"));
        assert_eq!(e.len(), 1, "{v}: {e:?}");
        assert!(e[0].starts_with(&format!("{PATH}:2: Copy={v}: ")), "{e:?}");
        assert!(e[0].contains(why), "{v}: {e:?}");
    }
    let b = load(
        "web",
        "[Build]\nCopy=.:/srv/\nCopy=files:/etc/x\nCopy=deb:/:/mnt/deb/\n",
    )
    .unwrap();
    assert_eq!(
        texts(&b),
        ["Copy=.:/srv/", "Copy=files:/etc/x", "Copy=deb:/:/mnt/deb/"]
    );
    assert!(
        matches!(&b.steps[2], Step::Copy { source: CopySource::Rootfs { name, path }, .. } if name == "deb" && path == "/")
    );
}

#[test]
fn unknown_keys_sections_and_reserved_service_keys() {
    let e = err("[Build]\nFROM=x\n[Container]\nRootfs=x\n[Service]\nExecStart=/bin/true\nType=simple\n[Install]\nDefaultInstance=a\n");
    assert_eq!(e.len(), 5, "{e:?}");
    assert_eq!(
        e[0],
        format!("{PATH}:2: unknown key 'FROM' in section [Build]")
    );
    assert!(
        e[1].starts_with(&format!(
            "{PATH}:3: unknown section [Container]; a .build file has [Unit], [Build]"
        )),
        "{e:?}"
    );
    assert!(
        e[2].starts_with(&format!("{PATH}:6: ExecStart= cannot be set in [Service]")),
        "{e:?}"
    );
    assert!(
        e[4].contains("DefaultInstance= only applies to container templates"),
        "{e:?}"
    );
    assert_eq!(
        err("[Unit]\nDescription=x\n"),
        [format!("{PATH}: no [Build] section")]
    );
    let e = load("a@b", "[Build]\n").unwrap_err();
    assert!(
        e[0].contains("file name 'a@b' cannot name a build"),
        "{e:?}"
    );
    let e = err("[Build]\nBootTimeout=0\nBootTimeout=soon\nEnvironment=1A=x\n");
    assert_eq!(e.len(), 3, "{e:?}");
}

#[test]
fn boot_timeout_resets_to_the_default() {
    let b = load("web", "[Build]\nBootTimeout=infinity\n").unwrap();
    assert_eq!(b.boot_timeout, None);
    let b = load("web", "[Build]\nBootTimeout=5s\nBootTimeout=\n").unwrap();
    assert_eq!(b.boot_timeout, Some(DEFAULT_BOOT_TIMEOUT));
}

#[test]
fn dropins_append_steps_with_their_own_directory() {
    let t = tempfile::tempdir().unwrap();
    let etc = t.path().join("etc");
    let usr = t.path().join("usr");
    std::fs::create_dir_all(etc.join("web.build.d")).unwrap();
    std::fs::create_dir_all(&usr).unwrap();
    std::fs::write(
        usr.join("web.build"),
        "[Build]\nFrom=deb\nRun=one\nCopy=a:/a\n",
    )
    .unwrap();
    std::fs::write(
        etc.join("web.build.d/10-more.conf"),
        "[Build]\nRun=two\nCopy=b:/b\nEnvironment=X=1\n",
    )
    .unwrap();
    let dirs = [etc.clone(), usr.clone()];
    let s = crate::search::search(&dirs, FileType::Build);
    assert_eq!(s.errors, Vec::<String>::new());
    let b = Build::load(&s.found[0]).unwrap();
    assert_eq!(texts(&b), ["Run=one", "Copy=a:/a", "Run=two", "Copy=b:/b"]);
    let dir_of = |i: usize| match &b.steps[i] {
        Step::Copy {
            source: CopySource::Local { dir, .. },
            ..
        } => dir.clone(),
        s => panic!("{s:?}"),
    };
    assert_eq!(dir_of(1), usr);
    assert_eq!(dir_of(3), etc.join("web.build.d"));
    assert_eq!(
        b.steps[2].at().path.as_path(),
        etc.join("web.build.d/10-more.conf")
    );
    // Shadowed by an empty file in /etc: masked.
    std::fs::write(etc.join("web.build"), "").unwrap();
    let s = crate::search::search(&dirs, FileType::Build);
    assert!(s.found.is_empty());
    assert_eq!(s.masked, [etc.join("web.build")]);
}

fn original(text: &str) -> Result<Build, Vec<String>> {
    parse_original(Path::new("/srv/b/config"), text.as_bytes(), "out")
        .map_err(|v| v.into_iter().map(|d| d.to_string()).collect())
}

#[test]
fn original_format() {
    let b = original(
        "# base\nFROM fs:debian\n\nRUN apt-get update && \\\n    apt-get install -y \\\n    nginx\nCOPY site /var/www/\nCOPY /etc/hostname etc/build-host\nCOPY fs:ubuntu:/etc/os-release /etc/u\nCOPY web:/srv/x /srv/\n  # indented comment\nRUN echo done\n",
    )
    .unwrap();
    assert_eq!(b.format, Format::Original);
    assert_eq!(b.from, Base::Rootfs("debian".into()));
    assert_eq!(b.from_at.as_ref().map(|a| a.line), Some(2));
    assert_eq!(
        texts(&b),
        [
            "Run=apt-get update && apt-get install -y nginx",
            "Copy=/srv/b/site:/var/www/",
            "Copy=/etc/hostname:/etc/build-host",
            "Copy=ubuntu:/etc/os-release:/etc/u",
            "Copy=container web:/srv/x:/srv/",
            "Run=echo done",
        ]
    );
    let lines: Vec<usize> = b.steps.iter().map(|s| s.at().line).collect();
    assert_eq!(lines, [4, 7, 8, 9, 10, 12]);
}

#[test]
fn original_format_errors_name_file_and_line() {
    let p = "/srv/b/config";
    for (text, want) in [
        (
            "RUN x\n",
            format!("{p}:1: FROM must be the first directive"),
        ),
        (
            "FROM a\nFROM b\n",
            format!("{p}:2: duplicate FROM directive"),
        ),
        ("FROM\n", format!("{p}:1: FROM requires a rootfs name")),
        ("FROM a\nRUN\n", format!("{p}:2: RUN requires a command")),
        (
            "FROM a\nCOPY x\n",
            format!("{p}:2: COPY requires two arguments: COPY <src> <dst>"),
        ),
        (
            "FROM a\nADD x y\n",
            format!("{p}:2: unknown directive: ADD"),
        ),
        (
            "FROM a\nCOPY fs:deb /x\n",
            format!("{p}:2: COPY fs: source requires fs:name:/path format"),
        ),
        (
            "FROM a\nCOPY web:x /x\n",
            format!("{p}:2: COPY container source path must be absolute"),
        ),
        (
            "FROM a\nCOPY x ../y\n",
            format!("{p}:2: refusing path with '..' component: ../y"),
        ),
        ("# only\n", format!("{p}: missing FROM directive")),
    ] {
        assert_eq!(original(text).unwrap_err(), [want], "{text}");
    }
    let e = original("FROM a\nCOPY x /tmp/y\nCOPY x /run\n").unwrap_err();
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with(&format!(
            "{p}:2: COPY: the destination /tmp/y is under /tmp"
        )),
        "{e:?}"
    );
    assert!(original("FROM a\n").is_ok());
    let e = parse_original(Path::new(p), b"FROM a\n", "no/name").unwrap_err();
    assert!(e[0].to_string().contains("cannot build 'no/name'"), "{e:?}");
}

#[test]
fn the_same_steps_give_the_same_texts_in_both_formats() {
    let o = original("FROM debian\nRUN dpkg -i /srv/p.deb\nCOPY fs:debian:/etc/hostname /etc/h\n")
        .unwrap();
    let u = load(
        "web",
        "[Build]\nFrom=debian\nRun=dpkg -i /srv/p.deb\nCopy=debian:/etc/hostname:/etc/h\n",
    )
    .unwrap();
    assert_eq!(texts(&o), texts(&u));
    assert_eq!(o.from, u.from);
}
