//! Read-only loop devices with partition scan, through /dev/loop-control
//! and the loop ioctls (LOOP_CONFIGURE, falling back to LOOP_SET_FD plus
//! LOOP_SET_STATUS64 on kernels before 5.8). No losetup, no NBD.
//!
//! Hand-written rather than the `loopdev` crate: that crate generates its
//! bindings with bindgen at build time (libclang in every build) for the
//! five ioctls and two structs declared here.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;

const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_FLAGS_PARTSCAN: u32 = 8;

/// `struct loop_info64` of <linux/loop.h>.
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config` of <linux/loop.h>.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// What to attach: the whole file with a partition scan, or one region
/// of it (a partition, where the kernel has no parser for the table).
#[derive(Debug, Clone, Copy)]
pub struct Region {
    pub partscan: bool,
    /// Logical sector size the table was written for (512 or 4096).
    pub block_size: u32,
    pub offset: u64,
    /// 0: to the end of the file.
    pub size_limit: u64,
}

fn info(flags: u32, region: &Region, backing: &Path) -> LoopInfo64 {
    // SAFETY: an all-zero loop_info64 is valid (plain integers and arrays).
    let mut info: LoopInfo64 = unsafe { std::mem::zeroed() };
    info.lo_flags = flags;
    info.lo_offset = region.offset;
    info.lo_sizelimit = region.size_limit;
    let name = backing.as_os_str().as_encoded_bytes();
    let n = name.len().min(63);
    info.lo_file_name[..n].copy_from_slice(&name[..n]);
    info
}

/// An attached loop device; detached when dropped (and, with AUTOCLEAR,
/// by the kernel once the last user is gone, even if this process dies).
#[derive(Debug)]
pub struct LoopDevice {
    file: File,
    number: u32,
    path: PathBuf,
}

impl LoopDevice {
    /// Attach `region` of `backing` read-only.
    pub fn attach(backing: &Path, region: Region) -> Result<LoopDevice> {
        let image =
            File::open(backing).with_context(|| format!("cannot open {}", backing.display()))?;
        let control = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open("/dev/loop-control")
            .context("cannot open /dev/loop-control (loop devices unavailable here)")?;
        let mut flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
        if region.partscan {
            flags |= LO_FLAGS_PARTSCAN;
        }
        // Another process may take the free device between GET_FREE and our
        // configure call (EBUSY): ask again.
        let mut last_err = None;
        for _ in 0..20 {
            // SAFETY: LOOP_CTL_GET_FREE takes no argument.
            let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
            if n < 0 {
                return Err(std::io::Error::last_os_error())
                    .context("/dev/loop-control: no free loop device");
            }
            let number = n as u32;
            let path = PathBuf::from(format!("/dev/loop{number}"));
            let dev = open_loop(&path, number)?;
            match configure(&dev, &image, flags, &region, backing) {
                Ok(()) => {
                    return Ok(LoopDevice {
                        file: dev,
                        number,
                        path,
                    })
                }
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    last_err = Some(e);
                    continue;
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot attach {}", path.display()))
                }
            }
        }
        Err(last_err.unwrap_or_else(|| std::io::Error::from_raw_os_error(libc::EBUSY)))
            .context("no loop device could be attached (all busy)")
    }

    pub fn number(&self) -> u32 {
        self.number
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Wait until the kernel has created partition `part` (sysfs
    /// `loopNpK`) and return its `major:minor`, or None when it did not
    /// appear within `timeout` (a kernel without a parser for this table:
    /// the scan runs inside the attach ioctl, so a short wait suffices).
    pub fn wait_partition(&self, part: u32, timeout: Duration) -> Result<Option<(u32, u32)>> {
        let name = format!("loop{}p{}", self.number, part);
        let dev = PathBuf::from(format!("/sys/block/loop{}/{}/dev", self.number, name));
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(s) = std::fs::read_to_string(&dev) {
                return parse_dev(&s)
                    .map(Some)
                    .with_context(|| format!("{}: {s:?}", dev.display()));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `major:minor` of the whole device.
    pub fn dev(&self) -> Result<(u32, u32)> {
        let p = format!("/sys/block/loop{}/dev", self.number);
        let s = std::fs::read_to_string(&p).with_context(|| format!("cannot read {p}"))?;
        parse_dev(&s).with_context(|| format!("{p}: {s:?}"))
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        // With AUTOCLEAR the kernel detaches after the last close anyway;
        // LOOP_CLR_FD makes it immediate when nothing else holds it.
        // SAFETY: LOOP_CLR_FD takes no argument.
        unsafe { libc::ioctl(self.file.as_raw_fd(), LOOP_CLR_FD as _) };
    }
}

fn parse_dev(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.trim().split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Open /dev/loopN; where /dev has no such node (a private /dev without
/// devtmpfs), fail with a message saying so.
fn open_loop(path: &Path, number: u32) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .with_context(|| format!("cannot open {} (loop device {number})", path.display()))
}

fn configure(
    dev: &File,
    image: &File,
    flags: u32,
    region: &Region,
    backing: &Path,
) -> std::io::Result<()> {
    let block_size = region.block_size;
    let cfg = LoopConfig {
        fd: image.as_raw_fd() as u32,
        block_size: if block_size == 512 { 0 } else { block_size },
        info: info(flags, region, backing),
        reserved: [0; 8],
    };
    // SAFETY: cfg is a valid loop_config that outlives the call.
    let r = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE as _, &cfg) };
    if r == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if !matches!(err.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOTTY)) {
        return Err(err);
    }
    // Kernels before 5.8: the old pair. The backing fd is read-only, which
    // makes the device read-only; the flags go in with SET_STATUS64.
    if block_size != 512 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "this kernel lacks LOOP_CONFIGURE, needed for 4096-byte sectors",
        ));
    }
    // SAFETY: LOOP_SET_FD takes the backing file descriptor.
    if unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_SET_FD as _, image.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let info = info(flags & !LO_FLAGS_READ_ONLY, region, backing);
    // SAFETY: info is a valid loop_info64 that outlives the call.
    if unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_SET_STATUS64 as _, &info) } != 0 {
        let err = std::io::Error::last_os_error();
        // SAFETY: undo the attach; LOOP_CLR_FD takes no argument.
        unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CLR_FD as _) };
        return Err(err);
    }
    Ok(())
}
