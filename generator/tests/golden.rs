//! Golden tests, in the style of systemd's zram-generator: every directory
//! under `tests/golden/` is a case holding a fake root (`root/etc/sdme`,
//! `root/usr/lib/sdme`, ...) and what the generator must make of it:
//!
//! - `expected/`: the whole output tree (files compared byte for byte,
//!   symlinks by target); absent means no output at all;
//! - `expected-stderr`: the exact error lines; absent means none, and then
//!   the exit status must be 0, else 1.
//!
//! Paths inside the fake root are shown as if it were `/`. Run with
//! `SDME_GOLDEN_BLESS=1` to rewrite the expectations after a deliberate
//! change, then review the diff.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const SEARCH: [&str; 4] = ["etc/sdme", "run/sdme", "usr/local/lib/sdme", "usr/lib/sdme"];

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden")
}

#[derive(Debug, PartialEq, Eq)]
enum Node {
    File(String),
    Link(String),
}

fn read_tree(dir: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            let ft = e.file_type().unwrap();
            if ft.is_symlink() {
                out.insert(
                    rel,
                    Node::Link(fs::read_link(&p).unwrap().to_string_lossy().into_owned()),
                );
            } else if ft.is_dir() {
                walk(base, &p, out);
            } else {
                out.insert(rel, Node::File(fs::read_to_string(&p).unwrap()));
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

struct Run {
    status: i32,
    stderr: String,
    tree: BTreeMap<String, Node>,
}

/// The case's root seen through a path of fixed length, so that output
/// which depends on the length of a path (the first error in an error
/// unit's `Description=` is cut at a byte budget) is the same in every
/// checkout and every `TMPDIR`.
fn fixed_length_root(case: &Path) -> tempfile::TempDir {
    let t = tempfile::Builder::new()
        .prefix("sdme-golden.")
        .rand_bytes(8)
        .tempdir_in("/tmp")
        .unwrap();
    let real = fs::canonicalize(case.join("root")).unwrap();
    std::os::unix::fs::symlink(real, t.path().join("root")).unwrap();
    t
}

fn run_case(case: &Path) -> Run {
    let fixed = fixed_length_root(case);
    let root = fixed.path().join("root");
    let dirs: Vec<String> = SEARCH
        .iter()
        .map(|d| root.join(d).display().to_string())
        .collect();
    let out = tempfile::tempdir().unwrap();
    let res = Command::new(env!("CARGO_BIN_EXE_sdme-generator"))
        .arg(out.path())
        .arg(out.path())
        .arg(out.path())
        .env("SDME_UNIT_DIRS", dirs.join(":"))
        // The case's use records of running containers (orphan units).
        .env("SDME_INUSE_DIR", root.join("run/sdme/inuse"))
        .env_remove("SYSTEMD_EXEC_PID")
        // Errors only: stderr holds what makes the exit status 1.
        .env("SYSTEMD_LOG_LEVEL", "err")
        .output()
        .unwrap();
    let prefix = root.display().to_string();
    let strip = |s: &str| s.replace(&prefix, "");
    let tree = read_tree(out.path())
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Node::File(s) => Node::File(strip(&s)),
                Node::Link(s) => Node::Link(strip(&s)),
            };
            (k, v)
        })
        .collect();
    Run {
        status: res.status.code().unwrap_or(-1),
        stderr: strip(&String::from_utf8_lossy(&res.stderr)),
        tree,
    }
}

fn bless(case: &Path, run: &Run) {
    let exp = case.join("expected");
    let _ = fs::remove_dir_all(&exp);
    for (rel, node) in &run.tree {
        let p = exp.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        match node {
            Node::File(s) => fs::write(&p, s).unwrap(),
            Node::Link(t) => std::os::unix::fs::symlink(t, &p).unwrap(),
        }
    }
    let err = case.join("expected-stderr");
    if run.stderr.is_empty() {
        let _ = fs::remove_file(err);
    } else {
        fs::write(err, &run.stderr).unwrap();
    }
}

#[test]
fn golden_cases() {
    let mut cases: Vec<PathBuf> = fs::read_dir(cases_dir())
        .expect("tests/golden exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("root").is_dir())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 30,
        "expected at least 30 golden cases, found {}",
        cases.len()
    );
    let blessing = std::env::var_os("SDME_GOLDEN_BLESS").is_some();
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let run = run_case(case);
        if blessing {
            bless(case, &run);
            continue;
        }
        let want_tree = read_tree(&case.join("expected"));
        let want_err = fs::read_to_string(case.join("expected-stderr")).unwrap_or_default();
        let want_status = if want_err.is_empty() { 0 } else { 1 };
        if run.status != want_status {
            failures.push(format!(
                "{name}: exit status {} (want {want_status})\nstderr:\n{}",
                run.status, run.stderr
            ));
        }
        if run.stderr != want_err {
            failures.push(format!(
                "{name}: stderr differs\n--- want\n{want_err}--- got\n{}",
                run.stderr
            ));
        }
        for (rel, node) in &run.tree {
            match want_tree.get(rel) {
                None => failures.push(format!("{name}: unexpected output {rel}")),
                Some(w) if w != node => failures.push(format!(
                    "{name}: {rel} differs\n--- want\n{w:?}\n--- got\n{node:?}"
                )),
                _ => {}
            }
        }
        for rel in want_tree.keys().filter(|k| !run.tree.contains_key(*k)) {
            failures.push(format!("{name}: missing output {rel}"));
        }
        // Same input, byte-identical output.
        let again = run_case(case);
        if again.tree != run.tree || again.stderr != run.stderr {
            failures.push(format!("{name}: output is not deterministic"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden failure(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// sdme writes no `BindsTo=`: after a daemon-reload that binds a running
/// container to an inactive unit (a pod not running, the overlay mount of a
/// new machine name), systemd stops the container at once; see
/// sdme.container(5), "CHANGING A RUNNING CONTAINER". A generator change that
/// writes one into any case's output fails here. (A case whose own files write `BindsTo=` in
/// `[Unit]` may show it.)
#[test]
fn generated_units_have_no_binds_to() {
    for e in fs::read_dir(cases_dir()).expect("tests/golden exists") {
        let case = e.unwrap().path();
        // The fake roots hold invalid UTF-8 on purpose: bytes, not text.
        fn mentions(dir: &Path) -> bool {
            let Ok(rd) = fs::read_dir(dir) else {
                return false;
            };
            rd.map(|e| e.unwrap().path()).any(|p| {
                if p.is_dir() {
                    return mentions(&p);
                }
                let bytes = fs::read(&p).unwrap_or_default();
                bytes.windows(8).any(|w| w == b"BindsTo=")
            })
        }
        if !case.join("root").is_dir() || mentions(&case.join("root")) {
            continue;
        }
        // The generator's own output, not expected/: a bless run rewrites
        // expected/ while this test runs beside it.
        for (rel, node) in run_case(&case).tree {
            if let Node::File(t) = node {
                assert!(
                    !t.lines().any(|l| l.starts_with("BindsTo=")),
                    "{}: {rel} has a BindsTo= line",
                    case.display()
                );
            }
        }
    }
}

/// `--dry-run` shows the same units the generator writes, and its exit
/// status reports errors.
#[test]
fn dry_run_prints_units_and_fails_on_errors() {
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("a.container"), "[Container]\n").unwrap();
    fs::write(t.path().join("bad.container"), "[Container]\nNope=1\n").unwrap();
    let res = Command::new(env!("CARGO_BIN_EXE_sdme-generator"))
        .arg("--dry-run")
        .env("SDME_UNIT_DIRS", t.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&res.stdout);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1));
    assert!(stdout.contains("# sdme-a.service\n"), "{stdout}");
    assert!(stdout.contains("# var-lib-sdme-containers-a-merged.mount\n"));
    assert!(
        stderr.contains("bad.container:2: unknown key 'Nope' in section [Container]"),
        "{stderr}"
    );
}

/// No files at all is success, not an error logged at every reload.
#[test]
fn nothing_to_do_is_success() {
    let t = tempfile::tempdir().unwrap();
    let res = Command::new(env!("CARGO_BIN_EXE_sdme-generator"))
        .arg(t.path())
        .env("SDME_UNIT_DIRS", t.path().join("missing"))
        .output()
        .unwrap();
    assert_eq!(res.status.code(), Some(0));
    assert!(res.stderr.is_empty());
    assert_eq!(fs::read_dir(t.path()).unwrap().count(), 0);
}

#[test]
fn bad_arguments_are_refused() {
    let res = Command::new(env!("CARGO_BIN_EXE_sdme-generator"))
        .output()
        .unwrap();
    assert_eq!(res.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&res.stderr).contains("Usage: sdme-generator"));
}

/// Many files take the parallel path: the result must be what the
/// sequential `--dry-run` shows, the same at every run, and clashes must
/// be decided in file-name order as with few files.
#[test]
fn many_files_in_parallel_are_deterministic() {
    let t = tempfile::tempdir().unwrap();
    let etc = t.path().join("etc");
    fs::create_dir_all(&etc).unwrap();
    for i in 0..300 {
        let mut text = format!("[Container]\nHostname=h{i}\nBind=/srv/{i}:/data\n[Install]\nWantedBy=machines.target\n");
        if i == 250 {
            text.push_str("[Container]\nMachineName=c010\n"); // clashes with c010
        }
        if i == 120 || i == 220 {
            text.push_str("Alias=www.service\n"); // the later one clashes
        }
        if i == 77 {
            text = "[Container]\nBogus=1\n".into();
        }
        fs::write(etc.join(format!("c{i:03}.container")), text).unwrap();
    }
    let run = |out: &Path| {
        Command::new(env!("CARGO_BIN_EXE_sdme-generator"))
            .arg(out)
            .env("SDME_UNIT_DIRS", &etc)
            .output()
            .unwrap()
    };
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    let ra = run(&a);
    let rb = run(&b);
    assert_eq!(ra.status.code(), Some(1));
    assert_eq!(ra.stderr, rb.stderr, "same messages, same order");
    let stderr = String::from_utf8_lossy(&ra.stderr);
    assert!(
        stderr.contains("c077.container:2: unknown key 'Bogus'"),
        "{stderr}"
    );
    assert!(
        stderr.contains("c250.container: machine name 'c010' is already used by"),
        "{stderr}"
    );
    assert!(
        stderr.contains("c220.container: www.service is already generated from another file"),
        "{stderr}"
    );
    let (ta, tb) = (read_tree(&a), read_tree(&b));
    assert_eq!(ta, tb, "byte-identical trees");
    // 297 containers: service, mount and a link each, plus one alias;
    // and the error units of the three refused files.
    assert_eq!(ta.len(), 297 * 3 + 1 + 3);
    assert_eq!(
        ta.get("www.service"),
        Some(&Node::Link("sdme-c120.service".into()))
    );
    for (unit, why) in [
        ("sdme-c077.service", "unknown key 'Bogus'"),
        ("sdme-c220.service", "www.service is already generated"),
        ("sdme-c250.service", "machine name 'c010' is already used"),
    ] {
        match ta.get(unit) {
            Some(Node::File(s)) => assert!(s.contains("has errors") && s.contains(why), "{s}"),
            other => panic!("{unit}: {other:?}"),
        }
    }
    assert!(!ta.contains_key("var-lib-sdme-containers-c250-merged.mount"));
    // What --dry-run prints (sequentially) is exactly what was written.
    let dry = Command::new(env!("CARGO_BIN_EXE_sdme-generator"))
        .arg("--dry-run")
        .env("SDME_UNIT_DIRS", &etc)
        .output()
        .unwrap();
    let printed = String::from_utf8(dry.stdout).unwrap();
    for (path, node) in &ta {
        let want = match node {
            Node::File(content) => format!("# {path}\n{content}\n"),
            Node::Link(target) => format!("# {path} -> {target}\n\n"),
        };
        assert!(printed.contains(&want), "dry run lacks {path}");
    }
    assert!(
        !fs::read_dir(&a).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".#")),
        "no temporary files left"
    );
}

/// A second run into the same directory (names taken) replaces every unit
/// and link whole, through the rename path, and leaves no temporary files.
#[test]
fn rerun_into_the_same_directory_replaces_units() {
    let t = tempfile::tempdir().unwrap();
    let (etc, out) = (t.path().join("etc"), t.path().join("out"));
    fs::create_dir_all(&etc).unwrap();
    let run = || {
        let r = Command::new(env!("CARGO_BIN_EXE_sdme-generator"))
            .arg(&out)
            .env("SDME_UNIT_DIRS", &etc)
            .output()
            .unwrap();
        assert_eq!(
            r.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&r.stderr)
        );
    };
    fs::write(
        etc.join("web.container"),
        "[Container]\nHostname=one\n[Install]\nAlias=www.service\n",
    )
    .unwrap();
    run();
    assert!(fs::read_to_string(out.join("sdme-web.service"))
        .unwrap()
        .contains("--hostname=one"));
    fs::write(
        etc.join("web.container"),
        "[Container]\nHostname=two\n[Install]\nAlias=www.service\n",
    )
    .unwrap();
    fs::write(etc.join("db.container"), "[Container]\n").unwrap();
    fs::remove_file(out.join("www.service")).unwrap();
    std::os::unix::fs::symlink("sdme-old.service", out.join("www.service")).unwrap();
    run();
    let unit = fs::read_to_string(out.join("sdme-web.service")).unwrap();
    assert!(
        unit.contains("--hostname=two") && !unit.contains("--hostname=one"),
        "{unit}"
    );
    assert_eq!(
        fs::read_link(out.join("www.service")).unwrap(),
        Path::new("sdme-web.service")
    );
    assert!(out.join("sdme-db.service").exists());
    let leftovers: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".#"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
