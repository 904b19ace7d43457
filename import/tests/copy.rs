//! Copying directory trees: everything a root file system holds survives.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use sdme_import::copy::{copy_tree, CopyOpts};

fn require_root() {
    // SAFETY: no failure mode.
    assert!(
        unsafe { libc::geteuid() } == 0,
        "this test needs root (owners, device nodes); run cargo test as root"
    );
}

fn cpath(p: &Path) -> std::ffi::CString {
    std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
}

#[test]
fn copies_what_a_rootfs_holds() {
    require_root();
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    let dst = t.path().join("dst");
    fs::create_dir_all(src.join("etc/sub")).unwrap();
    fs::create_dir(&dst).unwrap();
    fs::write(src.join("etc/a"), "hello").unwrap();
    fs::hard_link(src.join("etc/a"), src.join("etc/sub/a-link")).unwrap();
    std::os::unix::fs::symlink("../etc/a", src.join("etc/sub/sym")).unwrap();
    fs::set_permissions(src.join("etc/a"), fs::Permissions::from_mode(0o4751)).unwrap();
    std::os::unix::fs::chown(src.join("etc/sub"), Some(12), Some(34)).unwrap();
    // SAFETY: valid paths.
    unsafe {
        assert_eq!(
            libc::mknod(
                cpath(&src.join("null")).as_ptr(),
                libc::S_IFCHR | 0o666,
                libc::makedev(1, 3)
            ),
            0
        );
        assert_eq!(libc::mkfifo(cpath(&src.join("fifo")).as_ptr(), 0o640), 0);
        let v = b"on";
        let n = std::ffi::CString::new("user.flag").unwrap();
        assert_eq!(
            libc::setxattr(
                cpath(&src.join("etc/a")).as_ptr(),
                n.as_ptr(),
                v.as_ptr().cast(),
                2,
                0
            ),
            0
        );
    }
    let _sock = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
    // A sparse file: 4 KiB of data 8 MiB in.
    let f = fs::File::create(src.join("sparse")).unwrap();
    f.set_len(16 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&[9u8; 4096], 8 << 20).unwrap();
    drop(f);
    let times = [libc::timespec {
        tv_sec: 1_500_000_000,
        tv_nsec: 7,
    }; 2];
    // SAFETY: valid path and times.
    unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            cpath(&src.join("etc")).as_ptr(),
            times.as_ptr(),
            0,
        )
    };

    let st = copy_tree(&src, &dst, &CopyOpts::default()).unwrap();
    assert!(st.entries >= 9, "{st:?}");

    let a = fs::metadata(dst.join("etc/a")).unwrap();
    assert_eq!(a.mode() & 0o7777, 0o4751);
    assert_eq!(fs::read_to_string(dst.join("etc/a")).unwrap(), "hello");
    assert_eq!(
        a.ino(),
        fs::metadata(dst.join("etc/sub/a-link")).unwrap().ino()
    );
    assert_eq!(
        fs::read_link(dst.join("etc/sub/sym")).unwrap(),
        Path::new("../etc/a")
    );
    let sub = fs::metadata(dst.join("etc/sub")).unwrap();
    assert_eq!((sub.uid(), sub.gid()), (12, 34));
    let etc = fs::metadata(dst.join("etc")).unwrap();
    assert_eq!((etc.mtime(), etc.mtime_nsec()), (1_500_000_000, 7));
    let null = fs::symlink_metadata(dst.join("null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), libc::makedev(1, 3));
    assert!(fs::symlink_metadata(dst.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert!(fs::symlink_metadata(dst.join("sock"))
        .unwrap()
        .file_type()
        .is_socket());
    let sp = fs::metadata(dst.join("sparse")).unwrap();
    assert_eq!(sp.len(), 16 << 20);
    assert!(
        sp.blocks() * 512 <= 64 << 10,
        "not sparse: {} blocks",
        sp.blocks()
    );
    assert_eq!(
        fs::read(dst.join("sparse")).unwrap(),
        fs::read(src.join("sparse")).unwrap()
    );
    let mut buf = [0u8; 8];
    let n = std::ffi::CString::new("user.flag").unwrap();
    // SAFETY: valid strings and buffer.
    let r = unsafe {
        libc::getxattr(
            cpath(&dst.join("etc/a")).as_ptr(),
            n.as_ptr(),
            buf.as_mut_ptr().cast(),
            8,
        )
    };
    assert_eq!(&buf[..r.max(0) as usize], b"on");
}

/// The builder's result: files of an overlay's lowers are hard-linked
/// (the very inode the view shows, from the layer it is in), the rest
/// copied; a file carrying an xattr a copy leaves out is copied.
#[test]
fn files_of_the_lowers_are_linked() {
    require_root();
    let t = tempfile::tempdir().unwrap();
    let (top, low, view) = (
        t.path().join("top"),
        t.path().join("low"),
        t.path().join("m"),
    );
    for d in [
        top.join("etc"),
        low.join("etc"),
        low.join("usr"),
        view.clone(),
    ] {
        fs::create_dir_all(d).unwrap();
    }
    fs::write(low.join("etc/a"), "a").unwrap();
    fs::write(low.join("etc/b"), "old b").unwrap();
    fs::write(top.join("etc/b"), "new b").unwrap();
    fs::write(low.join("usr/tagged"), "t").unwrap();
    // In a directory only the lower tree has.
    fs::write(low.join("usr/plain"), "p").unwrap();
    std::os::unix::fs::symlink("etc/a", low.join("sym")).unwrap();
    let c = |p: &Path| cpath(p);
    // SAFETY: valid paths and value.
    let r = unsafe {
        libc::setxattr(
            c(&low.join("usr/tagged")).as_ptr(),
            c"trusted.overlay.origin".as_ptr(),
            b"x".as_ptr().cast(),
            1,
            0,
        )
    };
    assert_eq!(r, 0, "setxattr: {}", std::io::Error::last_os_error());
    let data = format!("lowerdir={}:{}", top.display(), low.display());
    let out = std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &data])
        .arg(&view)
        .status()
        .unwrap();
    assert!(out.success());
    let copy = |name: &str, lowers: &[std::path::PathBuf]| {
        let dst = t.path().join(name);
        fs::create_dir(&dst).unwrap();
        let opts = CopyOpts {
            link_from: lowers,
            ..CopyOpts::default()
        };
        (copy_tree(&view, &dst, &opts), dst)
    };
    let (linked, dst) = copy("dst", &[top.clone(), low.clone()]);
    let (plain, dst3) = copy("dst3", &[]);
    let (unrelated, dst2) = copy("dst2", std::slice::from_ref(&dst3));
    let umount = std::process::Command::new("umount")
        .arg(&view)
        .status()
        .unwrap();
    assert!(umount.success());
    let ino = |p: &Path| fs::symlink_metadata(p).unwrap().ino();
    let s = linked.unwrap();
    assert_eq!((s.linked, s.linked_bytes), (3, 7), "{s:?}");
    assert_eq!(ino(&dst.join("usr/plain")), ino(&low.join("usr/plain")));
    assert_eq!(ino(&dst.join("etc/a")), ino(&low.join("etc/a")));
    assert_eq!(ino(&dst.join("etc/b")), ino(&top.join("etc/b")));
    assert_eq!(fs::read_to_string(dst.join("etc/b")).unwrap(), "new b");
    assert_ne!(ino(&dst.join("usr/tagged")), ino(&low.join("usr/tagged")));
    assert_eq!(fs::read_to_string(dst.join("usr/tagged")).unwrap(), "t");
    assert!(fs::symlink_metadata(dst.join("sym")).unwrap().is_symlink());
    // Same names, other inodes: copied.
    assert_eq!(unrelated.unwrap().linked, 0);
    assert_ne!(ino(&dst2.join("etc/a")), ino(&dst.join("etc/a")));
    assert_ne!(ino(&dst2.join("etc/a")), ino(&dst3.join("etc/a")));
    assert_eq!(plain.unwrap().linked, 0);
}
