//! Tar extension header bombs, run through the real `sdme-import` binary:
//! a small archive whose second member is a GNU long name (`L`), long link
//! (`K`), pax (`x`) or pax global (`g`) header declaring 1 GiB, followed by
//! that much data. Each must fail fast, in little memory, naming the
//! header and the limit, and leave nothing in the store.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const GIB: u64 = 1 << 30;
/// Peak resident memory allowed to the importer on a bomb.
const MAX_RSS_KB: i64 = 64 << 10;

fn require_root() {
    // SAFETY: no failure mode.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "this test imports into a store; run cargo test as root"
    );
}

fn header(name: &str, ty: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(ty);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(1_600_000_000);
    h.set_uid(0);
    h.set_gid(0);
    let n = &mut h.as_old_mut().name;
    n[..name.len()].copy_from_slice(name.as_bytes());
    h.set_cksum();
    h
}

/// A first ordinary member, then the header of a `ty` member of 1 GiB.
fn bomb_head(ty: tar::EntryType) -> Vec<u8> {
    let mut a = header("etc", tar::EntryType::Directory, 0)
        .as_bytes()
        .to_vec();
    a.extend_from_slice(header("etc/a", tar::EntryType::Regular, 3).as_bytes());
    a.extend_from_slice(b"abc");
    a.resize(a.len().div_ceil(512) * 512, 0);
    a.extend_from_slice(header("././@LongLink", ty, GIB).as_bytes());
    a
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A .tar.gz of about 1 MB: the head, then 1 GiB of body as 1024 gzip
/// members of 1 MiB of 'a' each (what `gzip` and `pigz` concatenate).
fn write_gz_bomb(path: &Path, ty: tar::EntryType) {
    let chunk = gzip(&vec![b'a'; 1 << 20]);
    let mut f = fs::File::create(path).unwrap();
    f.write_all(&gzip(&bomb_head(ty))).unwrap();
    for _ in 0..GIB >> 20 {
        f.write_all(&chunk).unwrap();
    }
}

/// An uncompressed .tar: the head, then a hole of 1 GiB.
fn write_plain_bomb(path: &Path, ty: tar::EntryType) {
    let mut f = fs::File::create(path).unwrap();
    let head = bomb_head(ty);
    f.write_all(&head).unwrap();
    f.set_len(head.len() as u64 + GIB + 1024).unwrap();
}

struct Run {
    code: i32,
    stderr: String,
    /// Peak resident memory of the child, KiB.
    max_rss_kb: i64,
    wall: Duration,
}

// The child is reaped by wait4, which gives its rusage (std's wait does not).
#[allow(clippy::zombie_processes)]
fn import(state: &Path, source: &Path, name: &str, extra: &[&str]) -> Run {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sdme-import"))
        .arg("--state-dir")
        .arg(state)
        .args(["--quiet", "--install-packages=no", "--max-size=1M"])
        .args(extra)
        .arg(source)
        .arg(name)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid; wait4 fills it in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, which std has not reaped.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut ru) };
    assert_eq!(pid, child.id() as libc::pid_t, "wait4");
    let wall = start.elapsed();
    assert!(libc::WIFEXITED(status), "killed: status {status:#x}");
    Run {
        code: libc::WEXITSTATUS(status),
        stderr,
        max_rss_kb: ru.ru_maxrss,
        wall,
    }
}

/// Nothing of `name` in the store: no tree, no metadata, no staging.
fn assert_nothing_left(state: &Path, name: &str) {
    assert!(!state.join("rootfs").join(name).exists(), "rootfs/{name}");
    assert!(!state.join("meta").join(format!("{name}.json")).exists());
    if let Ok(rd) = fs::read_dir(state.join("import")) {
        for e in rd {
            let n = e.unwrap().file_name();
            assert!(
                !n.to_string_lossy().ends_with(".staging"),
                "left behind: import/{}",
                n.to_string_lossy()
            );
        }
    }
}

#[test]
fn extension_header_bombs_fail_fast_in_little_memory() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let kinds = [
        (tar::EntryType::GNULongName, "long name", "type 'L'"),
        (tar::EntryType::GNULongLink, "long link", "type 'K'"),
        (tar::EntryType::XHeader, "pax", "type 'x'"),
        (tar::EntryType::XGlobalHeader, "pax global", "type 'g'"),
    ];
    for (i, (ty, what, tag)) in kinds.iter().enumerate() {
        let gz = tmp.path().join(format!("bomb{i}.tar.gz"));
        write_gz_bomb(&gz, *ty);
        let plain = tmp.path().join(format!("bomb{i}.tar"));
        write_plain_bomb(&plain, *ty);
        // The same through the image archive unpacker.
        let runs = [
            (&gz, None),
            (&plain, None),
            (&gz, Some("--type=docker-archive")),
            (&plain, Some("--type=oci-archive")),
        ];
        for (src, kind) in runs {
            let name = format!("bomb{i}");
            let r = import(&state, src, &name, kind.as_slice());
            eprintln!(
                "{} {} ({} bytes): exit {}, peak RSS {} KiB, {:.3} s: {}",
                src.file_name().unwrap().to_string_lossy(),
                kind.unwrap_or(""),
                fs::metadata(src).unwrap().len(),
                r.code,
                r.max_rss_kb,
                r.wall.as_secs_f64(),
                r.stderr.trim()
            );
            assert_ne!(r.code, 0, "{what}: {}", r.stderr);
            assert!(
                r.stderr.contains(tag) && r.stderr.contains(what),
                "{what}: {}",
                r.stderr
            );
            assert!(r.stderr.contains("limit of 1M"), "{what}: {}", r.stderr);
            assert!(
                r.max_rss_kb < MAX_RSS_KB,
                "{what}: peak RSS {} KiB",
                r.max_rss_kb
            );
            assert_nothing_left(&state, &name);
        }
    }
}
