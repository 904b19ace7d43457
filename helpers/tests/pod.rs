//! The sdme-pod binary end to end: create, exec in the pod, remove, in a
//! temporary pod directory ($SDME_POD_DIR). Needs root.

use std::os::unix::fs::MetadataExt;
use std::process::Command;

fn pod(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sdme-pod"))
        .env("SDME_POD_DIR", dir)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn create_exec_remove() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the sdme-pod tests need root (unshare, setns, mounts)"
    );
    let t = tempfile::tempdir().unwrap();
    let dir = &t.path().join("pods");
    let o = pod(dir, &["exec", "web", "--", "true"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("sdme-pod: pod web is not running")
            && err.contains("sdme-pod-web.service")
            && err.lines().count() == 1,
        "{err}"
    );
    assert!(pod(dir, &["create", "web"]).status.success());
    assert!(pod(dir, &["create", "web"]).status.success());
    let ino = std::fs::metadata(dir.join("web/netns")).unwrap().ino();
    // Two commands in the pod see the same namespace, only lo, and can talk
    // over it; the host's namespace is another one.
    let o = pod(dir, &["exec", "web", "--", "readlink", "/proc/self/ns/net"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("net:[{ino}]")
    );
    let o = pod(dir, &["exec", "web", "--", "cat", "/proc/self/net/dev"]);
    let dev = String::from_utf8_lossy(&o.stdout);
    let links: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(str::trim))
        .collect();
    assert_eq!(links, ["lo"]);
    let host = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(host.to_string_lossy(), format!("net:[{ino}]"));
    let o = pod(dir, &["exec", "web", "--", "/nonexistent-cmd"]);
    assert!(!o.status.success());
    assert!(pod(dir, &["remove", "web"]).status.success());
    assert!(!dir.join("web").exists());
    assert!(pod(dir, &["remove", "web"]).status.success());
    let o = pod(dir, &["create", "../x"]);
    assert!(!o.status.success());
}
