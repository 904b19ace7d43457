//! Thin fd-relative syscall wrappers for writing trees we do not trust.
//!
//! Every call names a file by a directory fd and one component (or, for
//! [`open_beneath`], a path the kernel resolves without symlinks and without
//! leaving the directory), so a symlink planted by an archive is never
//! followed. Errors are plain `io::Error`s; callers add the entry's name.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn cvt(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn own(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd from a successful syscall, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A C string of a name from an archive or a directory listing.
pub fn cstring(b: &[u8]) -> io::Result<CString> {
    CString::new(b)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"))
}

pub const DIR_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;

pub fn openat(dir: RawFd, name: &CStr, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: valid NUL-terminated name.
    own(unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC, mode) })
}

/// The kernel's `struct open_how` (libc's is non-exhaustive).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// openat2 with `resolve` flags (`RESOLVE_*`).
pub fn openat2(dir: RawFd, path: &CStr, flags: libc::c_int, resolve: u64) -> io::Result<OwnedFd> {
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve,
    };
    // SAFETY: valid path and open_how of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    own(r as libc::c_int)
}

/// Open `path` below `dir`: no symlink anywhere on the way (ELOOP), no
/// `..` out of it (EXDEV), no magic links.
pub fn open_beneath(dir: RawFd, path: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    openat2(
        dir,
        path,
        flags,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    )
}

pub fn mkdirat(dir: RawFd, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: valid NUL-terminated name.
    cvt(unsafe { libc::mkdirat(dir, name.as_ptr(), mode) })
}

pub fn symlinkat(target: &CStr, dir: RawFd, name: &CStr) -> io::Result<()> {
    // SAFETY: valid NUL-terminated strings.
    cvt(unsafe { libc::symlinkat(target.as_ptr(), dir, name.as_ptr()) })
}

/// A hard link; `old` is not followed if it is a symlink.
pub fn linkat(odir: RawFd, old: &CStr, ndir: RawFd, new: &CStr) -> io::Result<()> {
    // SAFETY: valid NUL-terminated names.
    cvt(unsafe { libc::linkat(odir, old.as_ptr(), ndir, new.as_ptr(), 0) })
}

/// A hard link to the file open as `fd` (an `O_PATH` fd works): the
/// very inode, whatever its path became. Through `/proc/self/fd`, which
/// needs no CAP_DAC_READ_SEARCH (`AT_EMPTY_PATH` does).
pub fn link_fd(fd: RawFd, ndir: RawFd, new: &CStr) -> io::Result<()> {
    let p = proc_fd_path(fd);
    // SAFETY: valid NUL-terminated names.
    cvt(unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            p.as_ptr(),
            ndir,
            new.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    })
}

pub fn mknodat(dir: RawFd, name: &CStr, mode: u32, dev: libc::dev_t) -> io::Result<()> {
    // SAFETY: valid NUL-terminated name.
    cvt(unsafe { libc::mknodat(dir, name.as_ptr(), mode, dev) })
}

pub fn unlinkat(dir: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: valid NUL-terminated name.
    cvt(unsafe { libc::unlinkat(dir, name.as_ptr(), flags) })
}

pub fn lstatat(dir: RawFd, name: &CStr) -> io::Result<libc::stat> {
    // SAFETY: valid name; stat is plain data, filled by the kernel.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        cvt(libc::fstatat(
            dir,
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        ))?;
        Ok(st)
    }
}

pub fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: stat is plain data, filled by the kernel.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        cvt(libc::fstat(fd, &mut st))?;
        Ok(st)
    }
}

pub fn fchown(fd: RawFd, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: plain syscall.
    cvt(unsafe { libc::fchown(fd, uid, gid) })
}

pub fn lchownat(dir: RawFd, name: &CStr, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: valid name.
    cvt(unsafe { libc::fchownat(dir, name.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) })
}

pub fn fchmod(fd: RawFd, mode: u32) -> io::Result<()> {
    // SAFETY: plain syscall.
    cvt(unsafe { libc::fchmod(fd, mode) })
}

/// chmod of a name that is not a symlink (the caller just made it).
pub fn fchmodat(dir: RawFd, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: valid name.
    cvt(unsafe { libc::fchmodat(dir, name.as_ptr(), mode, 0) })
}

pub fn timespec(sec: i64, nsec: i64) -> libc::timespec {
    libc::timespec {
        tv_sec: sec as libc::time_t,
        tv_nsec: nsec as libc::c_long,
    }
}

pub fn futimens(fd: RawFd, times: &[libc::timespec; 2]) -> io::Result<()> {
    // SAFETY: two timespecs, as the call wants.
    cvt(unsafe { libc::futimens(fd, times.as_ptr()) })
}

pub fn lutimensat(dir: RawFd, name: &CStr, times: &[libc::timespec; 2]) -> io::Result<()> {
    // SAFETY: valid name and two timespecs.
    cvt(unsafe {
        libc::utimensat(
            dir,
            name.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

pub fn fsetxattr(fd: RawFd, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: valid name, value buffer of the given length.
    cvt(unsafe { libc::fsetxattr(fd, name.as_ptr(), value.as_ptr().cast(), value.len(), 0) })
}

/// Set an xattr on whatever `fd` (an O_PATH fd of a symlink or device
/// node) refers to, through its /proc/self/fd link.
pub fn setxattr_via_proc(fd: RawFd, name: &CStr, value: &[u8]) -> io::Result<()> {
    let p = cstring(format!("/proc/self/fd/{fd}").as_bytes())?;
    // SAFETY: valid strings and buffer.
    cvt(unsafe {
        libc::setxattr(
            p.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
}

/// The names of the xattrs of `fd` (NUL-separated list split up).
pub fn flistxattr(fd: RawFd) -> io::Result<Vec<CString>> {
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: buffer of the given length.
        let n = unsafe { libc::flistxattr(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            break;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) || buf.len() > 1 << 20 {
            return Err(e);
        }
        buf.resize(buf.len() * 4, 0);
    }
    Ok(buf
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .filter_map(|s| CString::new(s).ok())
        .collect())
}

pub fn fgetxattr(fd: RawFd, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: buffer of the given length.
        let n = unsafe { libc::fgetxattr(fd, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) || buf.len() > 1 << 20 {
            return Err(e);
        }
        buf.resize(buf.len() * 4, 0);
    }
}

/// Write all of `buf` at `off`.
pub fn pwrite_all(fd: RawFd, mut buf: &[u8], mut off: u64) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: buffer of the given length.
        let n = unsafe { libc::pwrite(fd, buf.as_ptr().cast(), buf.len(), off as libc::off_t) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
        }
        buf = &buf[n as usize..];
        off += n as u64;
    }
    Ok(())
}

/// Start writing `fd`'s dirty pages to disk without waiting for them.
pub fn start_writeback(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain syscall.
    cvt(unsafe { libc::sync_file_range(fd, 0, 0, libc::SYNC_FILE_RANGE_WRITE) })
}

pub fn ftruncate(fd: RawFd, len: u64) -> io::Result<()> {
    // SAFETY: plain syscall.
    cvt(unsafe { libc::ftruncate(fd, len as libc::off_t) })
}

/// A directory entry: its name and `d_type` (DT_UNKNOWN on some file
/// systems; callers stat then).
pub struct DirEntry {
    pub name: CString,
    pub d_type: u8,
}

/// The entries of the directory `fd` (without `.` and `..`).
pub fn read_dir(fd: RawFd) -> io::Result<Vec<DirEntry>> {
    // fdopendir takes the fd over: give it a duplicate.
    let dup = own(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: a valid directory fd we own; closedir below closes it.
    let d = unsafe { libc::fdopendir(dup.as_raw_fd()) };
    if d.is_null() {
        return Err(io::Error::last_os_error());
    }
    std::mem::forget(dup); // owned by the DIR now
                           // SAFETY: rewind a valid DIR (the fd offset may be anywhere).
    unsafe { libc::rewinddir(d) };
    let mut out = Vec::new();
    let res = loop {
        // SAFETY: errno is thread-local; readdir on a valid DIR.
        unsafe { *libc::__errno_location() = 0 };
        let ent = unsafe { libc::readdir64(d) };
        if ent.is_null() {
            let e = io::Error::last_os_error();
            break if e.raw_os_error().unwrap_or(0) != 0 {
                Err(e)
            } else {
                Ok(())
            };
        }
        // SAFETY: readdir returned a valid entry with a NUL-terminated name.
        let (name, d_type) = unsafe { (CStr::from_ptr((*ent).d_name.as_ptr()), (*ent).d_type) };
        let b = name.to_bytes();
        if b == b"." || b == b".." {
            continue;
        }
        out.push(DirEntry {
            name: name.to_owned(),
            d_type,
        });
    };
    // SAFETY: closes the DIR and its fd.
    unsafe { libc::closedir(d) };
    res.map(|()| out)
}

/// Remove `name` in `dir` and, if it is a directory, everything below it,
/// never following a symlink.
pub fn remove_all_at(dir: RawFd, name: &CStr) -> io::Result<()> {
    match unlinkat(dir, name, 0) {
        Ok(()) => return Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EISDIR) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    }
    let sub = openat(dir, name, DIR_FLAGS, 0)?;
    for e in read_dir(sub.as_raw_fd())? {
        remove_all_at(sub.as_raw_fd(), &e.name)?;
    }
    drop(sub);
    unlinkat(dir, name, libc::AT_REMOVEDIR)
}

pub fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// The xattr names of the file at `path` (not following a final symlink
/// when `path` is a /proc/self/fd link of an O_PATH fd: the link itself
/// leads to the inode).
pub fn listxattr_path(path: &CStr) -> io::Result<Vec<CString>> {
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: buffer of the given length.
        let n = unsafe { libc::listxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            break;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) || buf.len() > 1 << 20 {
            return Err(e);
        }
        buf.resize(buf.len() * 4, 0);
    }
    Ok(buf
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .filter_map(|s| CString::new(s).ok())
        .collect())
}

pub fn getxattr_path(path: &CStr, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: buffer of the given length.
        let n = unsafe {
            libc::getxattr(
                path.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) || buf.len() > 1 << 20 {
            return Err(e);
        }
        buf.resize(buf.len() * 4, 0);
    }
}

pub fn proc_fd_path(fd: RawFd) -> CString {
    // A decimal number never contains NUL.
    CString::new(format!("/proc/self/fd/{fd}")).unwrap_or_default()
}

pub fn readlinkat(dir: RawFd, name: &CStr) -> io::Result<CString> {
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: buffer of the given length.
        let n = unsafe { libc::readlinkat(dir, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if (n as usize) < buf.len() {
            buf.truncate(n as usize);
            return cstring(&buf);
        }
        if buf.len() > 1 << 16 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "symlink target too long",
            ));
        }
        buf.resize(buf.len() * 4, 0);
    }
}

/// `lseek` with SEEK_DATA/SEEK_HOLE; None when there is no more data
/// (ENXIO).
pub fn seek_data_hole(fd: RawFd, off: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    // SAFETY: plain syscall.
    let r = unsafe { libc::lseek(fd, off as libc::off_t, whence) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENXIO) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(r as u64))
}

/// copy_file_range of up to `len` bytes at `off` in both files; the bytes
/// copied (0 at the source's end).
pub fn copy_file_range(src: RawFd, dst: RawFd, off: u64, len: usize) -> io::Result<usize> {
    let mut a = off as libc::loff_t;
    let mut b = off as libc::loff_t;
    // SAFETY: valid fds and offsets.
    let r = unsafe { libc::copy_file_range(src, &mut a, dst, &mut b, len, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as usize)
}

pub fn pread(fd: RawFd, buf: &mut [u8], off: u64) -> io::Result<usize> {
    loop {
        // SAFETY: buffer of the given length.
        let r = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), off as libc::off_t) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
