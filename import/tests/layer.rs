//! Applying archives: every kind of entry, whiteouts, and every way an
//! entry could try to leave the target. Archives are built here byte by
//! byte (tar::Builder refuses the malicious names on purpose).

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use sdme_import::budget::Budget;
use sdme_import::layer::{apply, ApplyOpts};

fn is_root() -> bool {
    // SAFETY: no failure mode.
    unsafe { libc::geteuid() == 0 }
}

fn require_root() {
    assert!(
        is_root(),
        "this test needs root (owners, device nodes); run cargo test as root"
    );
}

/// An archive under construction.
struct Ar(tar::Builder<Vec<u8>>);

impl Ar {
    fn new() -> Ar {
        Ar(tar::Builder::new(Vec::new()))
    }

    fn header(name: &[u8], ty: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(ty);
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        let n = &mut h.as_old_mut().name;
        assert!(name.len() < n.len());
        n[..name.len()].copy_from_slice(name);
        h
    }

    fn add(&mut self, mut h: tar::Header, data: &[u8]) -> &mut Self {
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        let h = Self::header(
            name.as_bytes(),
            tar::EntryType::Regular,
            data.len() as u64,
            0o644,
        );
        self.add(h, data)
    }

    fn file_owned(&mut self, name: &str, data: &[u8], mode: u32, uid: u64, gid: u64) -> &mut Self {
        let mut h = Self::header(
            name.as_bytes(),
            tar::EntryType::Regular,
            data.len() as u64,
            mode,
        );
        h.set_uid(uid);
        h.set_gid(gid);
        self.add(h, data)
    }

    fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        let h = Self::header(name.as_bytes(), tar::EntryType::Directory, 0, mode);
        self.add(h, b"")
    }

    fn link(&mut self, ty: tar::EntryType, name: &str, target: &str) -> &mut Self {
        let mut h = Self::header(name.as_bytes(), ty, 0, 0o777);
        h.set_link_name_literal(target.as_bytes()).unwrap();
        self.add(h, b"")
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.link(tar::EntryType::Symlink, name, target)
    }

    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.link(tar::EntryType::Link, name, target)
    }

    fn node(&mut self, name: &str, ty: tar::EntryType, major: u32, minor: u32) -> &mut Self {
        let mut h = Self::header(name.as_bytes(), ty, 0, 0o620);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.add(h, b"")
    }

    /// A pax header for the next entry.
    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (k, v) in records {
            let body_len = 1 + k.len() + 1 + v.len() + 1;
            let mut len = body_len + 1;
            while format!("{len}").len() + body_len != len {
                len += 1;
            }
            data.extend_from_slice(format!("{len} {k}=").as_bytes());
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        let h = Self::header(
            b"././@PaxHeader",
            tar::EntryType::XHeader,
            data.len() as u64,
            0o644,
        );
        self.add(h, &data)
    }

    fn bytes(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }
}

fn opts(whiteouts: bool) -> ApplyOpts<'static> {
    ApplyOpts {
        whiteouts,
        ..ApplyOpts::default()
    }
}

/// A target directory with a sibling "outside" directory that nothing
/// may touch.
struct Trees {
    _t: tempfile::TempDir,
    target: std::path::PathBuf,
    outside: std::path::PathBuf,
}

fn trees() -> Trees {
    let t = tempfile::tempdir().unwrap();
    let target = t.path().join("target");
    let outside = t.path().join("outside");
    fs::create_dir(&target).unwrap();
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), "keep").unwrap();
    Trees {
        target,
        outside,
        _t: t,
    }
}

fn listing(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = walk(p, p);
    v.sort();
    v
}

fn walk(root: &Path, p: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for e in fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let md = e.path().symlink_metadata().unwrap();
        let rel = e.path().strip_prefix(root).unwrap().display().to_string();
        v.push(rel);
        if md.is_dir() {
            v.extend(walk(root, &e.path()));
        }
    }
    v
}

fn outside_untouched(t: &Trees) {
    assert_eq!(listing(&t.outside), ["secret"]);
    assert_eq!(
        fs::read_to_string(t.outside.join("secret")).unwrap(),
        "keep"
    );
}

#[test]
fn every_entry_kind() {
    require_root();
    let t = trees();
    let mut big = vec![0u8; 1 << 20];
    big[0] = 1; // data, then a megabyte of zeros: a hole
    let data = Ar::new()
        .dir("./", 0o755)
        .dir("etc/", 0o750)
        .file_owned("etc/shadow", b"root:*:", 0o640, 0, 42)
        .file_owned("usr/bin/su", b"ELF", 0o4755, 0, 0)
        .symlink("etc/mtab", "/proc/self/mounts")
        .hardlink("usr/bin/su2", "usr/bin/su")
        .node("dev/null", tar::EntryType::Char, 1, 3)
        .node("dev/loop0", tar::EntryType::Block, 7, 0)
        .node("run/fifo", tar::EntryType::Fifo, 0, 0)
        .pax(&[
            ("SCHILY.xattr.user.test", b"v1"),
            ("SCHILY.xattr.security.selinux", b"x"),
            ("mtime", b"1600000000.5"),
        ])
        .file("xattr-file", b"x")
        .file("sparse", &big)
        .bytes();
    let st = apply(&data[..], &t.target, &opts(false)).unwrap();
    assert_eq!(st.entries, 11);
    let r = &t.target;
    let md = fs::metadata(r.join("etc")).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o750);
    assert_eq!(md.mtime(), 1_600_000_000);
    let md = fs::metadata(r.join("etc/shadow")).unwrap();
    assert_eq!((md.mode() & 0o7777, md.uid(), md.gid()), (0o640, 0, 42));
    assert_eq!(
        fs::metadata(r.join("usr/bin/su")).unwrap().mode() & 0o7777,
        0o4755
    );
    assert_eq!(
        fs::read_link(r.join("etc/mtab")).unwrap(),
        Path::new("/proc/self/mounts")
    );
    assert_eq!(
        fs::metadata(r.join("usr/bin/su2")).unwrap().ino(),
        fs::metadata(r.join("usr/bin/su")).unwrap().ino()
    );
    let null = fs::symlink_metadata(r.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), libc::makedev(1, 3));
    assert!(fs::symlink_metadata(r.join("dev/loop0"))
        .unwrap()
        .file_type()
        .is_block_device());
    assert!(fs::symlink_metadata(r.join("run/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    let x = xattr(&r.join("xattr-file"), "user.test");
    assert_eq!(x.as_deref(), Some(&b"v1"[..]));
    assert_eq!(xattr(&r.join("xattr-file"), "security.selinux"), None);
    let md = fs::metadata(r.join("xattr-file")).unwrap();
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_600_000_000, 500_000_000));
    let sp = fs::metadata(r.join("sparse")).unwrap();
    assert_eq!(sp.len(), 1 << 20);
    assert!(
        sp.blocks() * 512 < 64 << 10,
        "not sparse: {} blocks",
        sp.blocks()
    );
    assert_eq!(fs::read(r.join("sparse")).unwrap(), big);
}

fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let p = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid strings and buffer.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return None;
    }
    buf.truncate(r as usize);
    Some(buf)
}

/// Each archive must fail naming the entry, and leave `outside` as it was.
#[test]
fn escapes_are_refused() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dotdot",
            Ar::new().file("../outside/secret", b"pwned").bytes(),
            "'..'",
        ),
        (
            "dotdot-inner",
            Ar::new().file("a/../../outside/x", b"pwned").bytes(),
            "'..'",
        ),
        (
            "absolute",
            Ar::new()
                .file("/tmp/sdme-import-test-abs", b"pwned")
                .bytes(),
            "absolute",
        ),
        (
            "symlinked-parent",
            Ar::new()
                .symlink("evil", "../outside")
                .file("evil/secret", b"pwned")
                .bytes(),
            "symlink",
        ),
        (
            "symlinked-parent-absolute",
            Ar::new()
                .symlink("evil", "/")
                .file("evil/tmp/sdme-import-test-x", b"pwned")
                .bytes(),
            "symlink",
        ),
        (
            "deep-symlinked-parent",
            Ar::new()
                .dir("a/", 0o755)
                .symlink("a/b", "../../outside")
                .file("a/b/c/secret", b"pwned")
                .bytes(),
            "symlink",
        ),
        (
            "hardlink-dotdot",
            Ar::new().hardlink("h", "../outside/secret").bytes(),
            "'..'",
        ),
        (
            "hardlink-absolute",
            Ar::new().hardlink("h", "/etc/passwd").bytes(),
            "absolute",
        ),
        (
            "hardlink-through-symlink",
            Ar::new()
                .symlink("s", "../outside")
                .hardlink("h", "s/secret")
                .bytes(),
            "symlink",
        ),
        (
            "hardlink-missing",
            Ar::new().hardlink("h", "nothing").bytes(),
            "not in the tree",
        ),
    ];
    for (what, data, want) in cases {
        let t = trees();
        let e = apply(&data[..], &t.target, &opts(true)).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("tar entry '"), "{what}: {msg}");
        assert!(msg.contains(want), "{what}: {msg}");
        assert!(!msg.contains('\n'), "{what}: {msg}");
        outside_untouched(&t);
        assert!(!Path::new("/tmp/sdme-import-test-abs").exists());
        assert!(!Path::new("/tmp/sdme-import-test-x").exists());
    }
}

/// A file entry whose name is a symlink replaces the link; it is never
/// written through it. A hard link to a symlink is a second link.
#[test]
fn symlinks_are_replaced_not_followed() {
    let t = trees();
    let target = t.outside.join("secret");
    let data = Ar::new()
        .symlink("s", target.to_str().unwrap())
        .file("s", b"new")
        .symlink("l", target.to_str().unwrap())
        .hardlink("l2", "l")
        .bytes();
    apply(&data[..], &t.target, &opts(false)).unwrap();
    outside_untouched(&t);
    assert_eq!(fs::read_to_string(t.target.join("s")).unwrap(), "new");
    assert!(fs::symlink_metadata(t.target.join("l2"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn whiteouts_and_opaque_directories() {
    let t = trees();
    let l1 = Ar::new()
        .file("a/x", b"1")
        .file("a/y", b"1")
        .file("b/z", b"1")
        .file("c/w", b"1")
        .file("d/v", b"1")
        .file("e/keep", b"1")
        .bytes();
    apply(&l1[..], &t.target, &opts(true)).unwrap();
    let l2 = Ar::new()
        .file("a/.wh.x", b"")
        .file(".wh.b", b"")
        .file("c/.wh..wh..opq", b"")
        .file("c/new", b"2")
        .file("d/new", b"2") // before the opaque marker: kept
        .file("d/.wh..wh..opq", b"")
        .file("e", b"now a file") // a directory replaced by a file
        .file("f/.wh..wh.plnk", b"") // aufs bookkeeping: ignored
        .bytes();
    apply(&l2[..], &t.target, &opts(true)).unwrap();
    assert_eq!(
        listing(&t.target),
        ["a", "a/y", "c", "c/new", "d", "d/new", "e"]
    );
    assert_eq!(
        fs::read_to_string(t.target.join("e")).unwrap(),
        "now a file"
    );
    // Without whiteout semantics the names are ordinary files.
    let t2 = trees();
    apply(&l2[..], &t2.target, &opts(false)).unwrap();
    assert!(t2.target.join("a/.wh.x").is_file());
    assert!(t2.target.join("c/.wh..wh..opq").is_file());
}

#[test]
fn the_size_cap_holds() {
    let t = trees();
    let data = Ar::new()
        .file("a", &[1u8; 1000])
        .file("b", &[1u8; 1000])
        .bytes();
    let b = Budget::new(1500);
    let o = ApplyOpts {
        budget: Some(&b),
        ..opts(false)
    };
    let e = format!("{:#}", apply(&data[..], &t.target, &o).unwrap_err());
    assert!(
        e.contains("tar entry 'b'") && e.contains("--max-size"),
        "{e}"
    );
}

#[test]
fn truncated_and_corrupt_archives_fail() {
    let t = trees();
    let data = Ar::new().file("a", &[7u8; 5000]).bytes();
    let e = apply(&data[..2000], &t.target, &opts(false)).unwrap_err();
    assert!(format!("{e:#}").contains("tar entry 'a'"), "{e:#}");
    let mut bad = data.clone();
    bad[100] ^= 0x55; // header checksum no longer matches
    assert!(apply(&bad[..], &trees().target, &opts(false)).is_err());
}

#[test]
fn existing_trees_are_updated_in_place() {
    let t = trees();
    apply(
        &Ar::new().dir("d/", 0o700).file("d/f", b"old").bytes()[..],
        &t.target,
        &opts(false),
    )
    .unwrap();
    apply(
        &Ar::new().dir("d/", 0o755).file("d/f", b"new").bytes()[..],
        &t.target,
        &opts(false),
    )
    .unwrap();
    assert_eq!(fs::read_to_string(t.target.join("d/f")).unwrap(), "new");
    assert_eq!(
        fs::metadata(t.target.join("d")).unwrap().mode() & 0o777,
        0o755
    );
}

/// A directory's default ACL is set after its contents, as GNU tar does:
/// files the archive puts below it keep exactly their archived attributes.
#[test]
fn directory_acls_apply_after_their_contents() {
    require_root();
    let t = trees();
    // user::rwx user:1234:rwx group::r-x mask::rwx other::r-x
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (1u16, 7u16, u32::MAX),
        (2, 7, 1234),
        (4, 5, u32::MAX),
        (0x10, 7, u32::MAX),
        (0x20, 5, u32::MAX),
    ] {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&id.to_le_bytes());
    }
    let data = Ar::new()
        .pax(&[("SCHILY.xattr.system.posix_acl_default", &acl)])
        .dir("d/", 0o755)
        .file("d/f", b"x")
        .bytes();
    apply(&data[..], &t.target, &opts(false)).unwrap();
    assert_eq!(
        xattr(&t.target.join("d"), "system.posix_acl_default").as_deref(),
        Some(&acl[..])
    );
    assert_eq!(
        xattr(&t.target.join("d/f"), "system.posix_acl_access"),
        None
    );
    assert_eq!(
        fs::metadata(t.target.join("d/f")).unwrap().mode() & 0o777,
        0o644
    );
}

/// ACLs as GNU tar --acls stores them (text only, names of the image's own
/// users): turned into the kernel's xattrs, names looked up in the tree's
/// /etc/passwd and /etc/group even when those come later in the archive.
#[test]
fn text_acls_from_gnu_tar() {
    require_root();
    let t = trees();
    let data = Ar::new()
        .pax(&[(
            "SCHILY.acl.access",
            b"user::rw-\nuser:1234:r-x\nuser:webadm:rw-\ngroup::r--\ngroup:www:r--\nmask::rwx\nother::r--\n",
        )])
        .file("srv/f", b"x")
        .pax(&[("SCHILY.acl.default", b"user::rwx\nuser:1234:rwx\ngroup::r-x\nmask::rwx\nother::r-x\n")])
        .dir("srv/d/", 0o755)
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\nwebadm:x:2001:2001::/:/bin/false\n")
        .file("etc/group", b"root:x:0:\nwww:x:3001:\n")
        .bytes();
    apply(&data[..], &t.target, &opts(false)).unwrap();
    let entries = |v: Vec<u8>| -> Vec<(u16, u16, u32)> {
        v[4..]
            .chunks(8)
            .map(|c| {
                (
                    u16::from_le_bytes([c[0], c[1]]),
                    u16::from_le_bytes([c[2], c[3]]),
                    u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
                )
            })
            .collect()
    };
    let u = u32::MAX;
    assert_eq!(
        entries(xattr(&t.target.join("srv/f"), "system.posix_acl_access").unwrap()),
        vec![
            (1, 6, u),
            (2, 5, 1234),
            (2, 6, 2001),
            (4, 4, u),
            (8, 4, 3001),
            (0x10, 7, u),
            (0x20, 4, u)
        ]
    );
    assert_eq!(
        entries(xattr(&t.target.join("srv/d"), "system.posix_acl_default").unwrap()),
        vec![
            (1, 7, u),
            (2, 7, 1234),
            (4, 5, u),
            (0x10, 7, u),
            (0x20, 5, u)
        ]
    );
    // The mask shows as the group bits, as after GNU tar's extraction.
    assert_eq!(
        fs::metadata(t.target.join("srv/f")).unwrap().mode() & 0o777,
        0o674
    );
}

/// A name the image does not define: one error naming the entry and the
/// name, nothing guessed from the host's users.
#[test]
fn text_acl_with_an_unknown_name_is_refused() {
    require_root();
    let t = trees();
    let data = Ar::new()
        .pax(&[(
            "SCHILY.acl.access",
            b"user::rw-,user:root:r--,group::r--,other::r--",
        )])
        .file("f", b"x")
        .bytes();
    let err = format!(
        "{:#}",
        apply(&data[..], &t.target, &opts(false)).unwrap_err()
    );
    assert!(
        err.contains("tar entry 'f'")
            && err.contains("user 'root' is not in the image's /etc/passwd"),
        "{err}"
    );
}

/// A pax value that a newline-splitting reader takes for a record of its
/// own (the tar crate's parser reads `linkpath=/etc/evil` here, GNU tar
/// and Go's archive/tar do not): refused, never written either way.
#[test]
fn a_pax_value_smuggling_a_record_is_refused() {
    require_root();
    let t = trees();
    let data = Ar::new()
        .pax(&[("SCHILY.xattr.user.a", b"AAA\n22 linkpath=/etc/evil\n")])
        .symlink("l", "harmless")
        .bytes();
    let err = format!(
        "{:#}",
        apply(&data[..], &t.target, &opts(false)).unwrap_err()
    );
    assert!(
        err.contains("tar entry 'l'") && err.contains("link target disagrees"),
        "{err}"
    );
    assert!(fs::symlink_metadata(t.target.join("l")).is_err());
}

/// Binary xattr values holding newlines (a file capability with 0x0a)
/// are kept byte for byte.
#[test]
fn binary_xattrs_with_newlines() {
    require_root();
    let t = trees();
    let value = b"\x01\x00\x00\x02\x02\x00\x0a\x00\n\n";
    let data = Ar::new()
        .pax(&[("SCHILY.xattr.user.bin", value), ("mtime", b"1700000000.5")])
        .file("f", b"x")
        .bytes();
    apply(&data[..], &t.target, &opts(false)).unwrap();
    assert_eq!(
        xattr(&t.target.join("f"), "user.bin").as_deref(),
        Some(&value[..])
    );
    assert_eq!(
        fs::metadata(t.target.join("f")).unwrap().mtime(),
        1_700_000_000
    );
}
