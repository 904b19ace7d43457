//! Disk images (QCOW2 and raw): find the root file system and mount it
//! read-only so it can be copied into the staging directory.
//!
//! The path of an import: QCOW2 is converted to a sparse raw file with
//! `qemu-img convert` (raw images are used as they are); the partition
//! table is read here ([`table`]) and the root partition chosen (the
//! host's root type of the Discoverable Partitions Specification, else the
//! largest partition holding a Linux file system, else a bare file system
//! without table); a read-only loop device with partition scan exposes it
//! ([`loopdev`]; there is no NBD on the kernels we target); it is mounted
//! read-only, nodev, nosuid, noexec, without journal replay, in a private
//! work directory. Guards release the mount, the loop device and the
//! converted file in reverse order on every path, including errors and
//! Ctrl+C (the caller's copy stops and returns an error; the guards run).
//!
//! All of that happens on a thread of its own in a private mount namespace
//! (propagation slave): the host's mount table never shows the image, and
//! when the import dies, even by SIGKILL, the namespace and its mount die
//! with it, which releases the loop device (it is set to autoclear).

pub mod fs;
pub mod loopdev;
pub mod probe;
pub mod table;

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::cancel::Interrupted;
use crate::copy;
use crate::job::Job;
use crate::mounts::unmount_below;
use fs::Fs;
use loopdev::{LoopDevice, Region};
use probe::{detect, Format};
use table::{Partition, Table};

/// Import the root file system of the disk image `job.source` into
/// `job.root`.
pub fn import(job: &mut Job) -> Result<()> {
    let progress = job.progress;
    let root = job.root;
    let opts = job.copy_opts();
    let source = job.source;
    with_root(
        Path::new(source),
        job.scratch,
        job.opts.max_size,
        &crate::cancel::requested,
        &mut |s| progress.note(s),
        |mnt| {
            progress.begin(format!("copying the root file system of {source}"), None);
            copy::copy_tree(mnt, root, &opts)?;
            progress.done();
            Ok(())
        },
    )
}

/// Where the root file system was found, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Partition number (`loopNpK`), or None for a bare file system.
    pub partition: Option<u32>,
    pub fs: Fs,
    /// Why this one: "root partition type ...", "largest Linux file system", ...
    pub reason: String,
}

/// Choose the root file system of a raw image: the partitions with the
/// host's DPS root type first, else the largest partition holding a Linux
/// file system, else a file system at offset 0 when there is no table.
pub fn choose_root(file: &File, len: u64, table: &Table) -> Result<Found> {
    let parts: &[Partition] = match table {
        Table::Gpt { partitions, .. } | Table::Mbr { partitions } => partitions,
        Table::None => {
            return match fs::probe(file, 0, len) {
                Some(fs) => Ok(Found {
                    partition: None,
                    fs,
                    reason: "a file system without partition table".into(),
                }),
                None => Err(anyhow!(
                    "no partition table and no Linux file system (ext2/3/4, xfs, btrfs, squashfs, erofs)"
                )),
            };
        }
    };
    let probed: Vec<(&Partition, Option<Fs>)> = parts
        .iter()
        .map(|p| (p, fs::probe(file, p.start, p.size)))
        .collect();
    if let Some(root) = table::types::host_root() {
        if let Some((p, Some(fs))) = probed
            .iter()
            .find(|(p, fs)| p.gpt_type == Some(root) && fs.is_some())
        {
            return Ok(Found {
                partition: Some(p.number),
                fs: *fs,
                reason: format!("root partition type {root} ({})", std::env::consts::ARCH),
            });
        }
    }
    let best = probed
        .iter()
        .filter_map(|(p, fs)| fs.map(|fs| (p, fs)))
        .max_by_key(|(p, _)| (p.size, std::cmp::Reverse(p.number)));
    match best {
        Some((p, fs)) => Ok(Found {
            partition: Some(p.number),
            fs,
            reason: "the largest partition with a Linux file system".into(),
        }),
        None => Err(anyhow!(
            "no Linux file system (ext2/3/4, xfs, btrfs, squashfs, erofs) in its {} partition{}",
            parts.len(),
            if parts.len() == 1 { "" } else { "s" }
        )),
    }
}

/// Mount the root file system of disk image `image` read-only and call
/// `f` with the mount point. `work` is a private directory of the caller
/// (on the state directory's file system: a converted QCOW2 image lands
/// there); `cancelled` is polled while qemu-img runs. Every mount, loop
/// device and temporary file is gone when this returns, whatever `f` or
/// anything else returned.
pub fn with_root<T: Send>(
    image: &Path,
    work: &Path,
    max_size: u64,
    cancelled: &(dyn Fn() -> bool + Sync),
    report: &mut (dyn FnMut(&str) + Send),
    f: impl FnOnce(&Path) -> Result<T> + Send,
) -> Result<T> {
    in_private_mount_ns(|| with_root_here(image, work, max_size, cancelled, report, f))
}

/// Run `f` on a new thread in a mount namespace of its own, whose mounts
/// do not propagate to the host's (threads and processes it starts share
/// it). A thread, because the calling one may share its file system
/// context (`CLONE_FS`) with others, and the namespace then ends with it.
pub fn in_private_mount_ns<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        let thread = std::thread::Builder::new()
            .name("disk-image".into())
            .spawn_scoped(s, || {
                private_mount_ns()?;
                f()
            })
            .context("cannot start a thread for the disk image")?;
        match thread.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Move the calling thread into a new mount namespace whose mounts stay in
/// it: unshare its file system context and mount namespace, then make
/// every mount a slave (events from the host still come in, none go out).
fn private_mount_ns() -> Result<()> {
    use nix::mount::{mount, MsFlags};
    use nix::sched::{unshare, CloneFlags};
    unshare(CloneFlags::CLONE_FS | CloneFlags::CLONE_NEWNS)
        .context("cannot unshare a private mount namespace for the disk image")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .context("cannot make the disk image's mount namespace private (mount --make-rslave /)")
}

fn with_root_here<T>(
    image: &Path,
    work: &Path,
    max_size: u64,
    cancelled: &dyn Fn() -> bool,
    report: &mut dyn FnMut(&str),
    f: impl FnOnce(&Path) -> Result<T>,
) -> Result<T> {
    // Absolute: qemu-img must not read a relative name as a protocol
    // ("nbd:...", "json:...").
    let image = image.canonicalize()?;
    let file = File::open(&image)?;
    // Not recognised: read as raw, which ends in "no partition table and
    // no Linux file system" (the caller chose --type=disk or saw a boot
    // sector signature).
    let format = detect(&file)?.unwrap_or(Format::Raw);

    // Guards, dropped in reverse order: mount, device node, loop, work dir.
    let dir = WorkDir::create(work)?;
    let raw_path;
    let raw = match format {
        Format::Raw => file,
        Format::Qcow2 => {
            drop(file);
            raw_path = dir.path.join("image.raw");
            report("converting QCOW2 to a sparse raw file (qemu-img convert)");
            qemu_img_convert(&image, &raw_path, max_size, cancelled)?;
            File::open(&raw_path).context("the converted raw file")?
        }
    };
    let backing = match format {
        Format::Raw => image.clone(),
        Format::Qcow2 => dir.path.join("image.raw"),
    };
    // Seek, not stat: a block device has a stat size of 0.
    let len = (&raw).seek(SeekFrom::End(0))?;
    let table = table::read(&raw, len)?;
    let found = choose_root(&raw, len, &table)?;
    drop(raw);
    if cancelled() {
        return Err(Interrupted.into());
    }
    report(&match found.partition {
        Some(n) => format!(
            "root file system: partition {n}, {} ({})",
            found.fs.mount_type(),
            found.reason
        ),
        None => format!(
            "root file system: {} ({})",
            found.fs.mount_type(),
            found.reason
        ),
    });

    let block_size = match table {
        Table::Gpt { sector_size, .. } => sector_size,
        _ => 512,
    };
    let whole = Region {
        partscan: found.partition.is_some(),
        block_size,
        offset: 0,
        size_limit: 0,
    };
    let mut lo = LoopDevice::attach(&backing, whole)?;
    let mut dev = None;
    if let Some(n) = found.partition {
        dev = lo.wait_partition(n, Duration::from_secs(1))?;
        match dev {
            Some(_) => check_partition_start(&lo, n, &table)?,
            None => {
                // The kernel has no parser for this table (a kernel built
                // without CONFIG_EFI_PARTITION/CONFIG_MSDOS_PARTITION):
                // a loop device over just the partition, from our parse.
                let p = partition(&table, n).context("chosen partition vanished")?;
                report(&format!(
                    "partition {n} through a loop device at its offset (this kernel does not parse the partition table)"
                ));
                drop(lo);
                let region = Region {
                    partscan: false,
                    block_size,
                    offset: p.start,
                    size_limit: p.size,
                };
                lo = LoopDevice::attach(&backing, region)?;
            }
        }
    }
    let (major, minor) = match dev {
        Some(d) => d,
        None => lo.dev()?,
    };
    let node = DevNode::for_device(&dir.path, major, minor)?;
    let target = dir.path.join("root");
    std::fs::create_dir(&target).with_context(|| format!("mkdir {}", target.display()))?;
    let mnt = Mount::read_only(&node.path, &target, found.fs)?;
    let result = f(&mnt.target);
    drop(mnt);
    drop(node);
    drop(lo);
    drop(dir);
    result
}

/// The kernel's view of partition `n` must start where our parser says:
/// otherwise we would mount something else than we probed.
fn check_partition_start(lo: &LoopDevice, n: u32, table: &Table) -> Result<()> {
    let Some(p) = partition(table, n) else {
        return Ok(());
    };
    let sys = format!("/sys/block/loop{0}/loop{0}p{1}/start", lo.number(), n);
    let start: u64 = std::fs::read_to_string(&sys)
        .with_context(|| format!("cannot read {sys}"))?
        .trim()
        .parse()
        .with_context(|| format!("{sys}: not a number"))?;
    if start * 512 != p.start {
        bail!(
            "the kernel sees partition {n} at byte {}, the table says {}",
            start * 512,
            p.start
        );
    }
    Ok(())
}

fn partition(table: &Table, n: u32) -> Option<&Partition> {
    match table {
        Table::Gpt { partitions, .. } | Table::Mbr { partitions } => {
            partitions.iter().find(|p| p.number == n)
        }
        Table::None => None,
    }
}

/// qemu-img convert to a sparse raw file, refusing QCOW2 images with a
/// backing or external data file (they would read files of this host).
fn qemu_img_convert(
    image: &Path,
    raw: &Path,
    max_size: u64,
    cancelled: &dyn Fn() -> bool,
) -> Result<()> {
    let out = Command::new("qemu-img")
        .args(["info", "--output=json", "-f", "qcow2"])
        .arg(image)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| qemu_img_error(e, "info"))?;
    if !out.status.success() {
        bail!(
            "corrupt QCOW2 image: qemu-img info: {}",
            one_line(&String::from_utf8_lossy(&out.stderr))
        );
    }
    let info: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("qemu-img info: unreadable JSON")?;
    if let Some(b) = info.get("backing-filename") {
        bail!(
            "QCOW2 image with a backing file ({b}) refused: convert it to a standalone image first"
        );
    }
    if info.pointer("/format-specific/data/data-file").is_some() {
        bail!("QCOW2 image with an external data file refused");
    }
    let mut child = Command::new("qemu-img")
        .args(["convert", "-q", "-f", "qcow2", "-O", "raw"])
        .arg(image)
        .arg(raw)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| qemu_img_error(e, "convert"))?;
    let status = loop {
        if let Some(s) = child.try_wait().context("waiting for qemu-img")? {
            break s;
        }
        if cancelled() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Interrupted.into());
        }
        // Compressed clusters can expand a small file into a huge one:
        // the blocks written count against --max-size.
        let written = std::fs::metadata(raw).map_or(0, |m| m.blocks() * 512);
        if written > max_size {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the converted image is over the size cap ({max_size} bytes; see --max-size)");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        bail!("corrupt QCOW2 image: qemu-img convert: {}", one_line(&err));
    }
    Ok(())
}

fn qemu_img_error(e: std::io::Error, what: &str) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        anyhow!("qemu-img is needed for QCOW2 images and is not installed (Debian: qemu-utils)")
    } else {
        anyhow!("cannot run qemu-img {what}: {e}")
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A private work directory, removed with what is in it.
struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    fn create(parent: &Path) -> Result<WorkDir> {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        let path = parent.join(format!("disk-{}", std::process::id()));
        // A leftover of a killed run with our pid: release and remove it.
        if path.exists() {
            unmount_below(&path)?;
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
        std::fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .with_context(|| format!("chmod {}", path.display()))?;
        Ok(WorkDir { path })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        // Never delete through a mount that is still there.
        if unmount_below(&self.path).is_ok() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A block device node for `major:minor`: /dev/loopNpK when /dev has it
/// (devtmpfs), else one made with mknod in the work directory.
struct DevNode {
    path: PathBuf,
    made: bool,
}

impl DevNode {
    fn for_device(work: &Path, major: u32, minor: u32) -> Result<DevNode> {
        let rdev = libc::makedev(major, minor);
        let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
        if let Ok(target) = std::fs::read_link(&sys) {
            if let Some(name) = target.file_name() {
                let dev = Path::new("/dev").join(name);
                if let Ok(m) = std::fs::metadata(&dev) {
                    if m.file_type().is_block_device() && m.rdev() == rdev {
                        return Ok(DevNode {
                            path: dev,
                            made: false,
                        });
                    }
                }
            }
        }
        let path = work.join(format!("dev-{major}-{minor}"));
        let c = CString::new(path.as_os_str().as_bytes()).context("device node path")?;
        // SAFETY: c is a valid NUL-terminated path.
        if unsafe { libc::mknod(c.as_ptr(), libc::S_IFBLK | 0o600, rdev) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("mknod {} ({major}:{minor})", path.display()));
        }
        Ok(DevNode { path, made: true })
    }
}

impl Drop for DevNode {
    fn drop(&mut self) {
        if self.made {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A read-only mount, unmounted when dropped (lazily if it is busy).
struct Mount {
    target: PathBuf,
}

impl Mount {
    fn read_only(source: &Path, target: &Path, fs: Fs) -> Result<Mount> {
        use nix::mount::{mount, MsFlags};
        let flags =
            MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
        let data = fs.mount_data();
        let mut r = mount(
            Some(source),
            target,
            Some(fs.mount_type()),
            flags,
            Some(data),
        );
        if r == Err(nix::errno::Errno::EINVAL) && !data.is_empty() {
            // An older kernel without this option (btrfs before rescue=).
            r = mount(
                Some(source),
                target,
                Some(fs.mount_type()),
                flags,
                None::<&str>,
            );
        }
        r.with_context(|| {
            format!(
                "cannot mount its {} file system read-only (corrupt, or no {} support in this kernel)",
                fs.mount_type(),
                fs.mount_type()
            )
        })?;
        Ok(Mount {
            target: target.to_path_buf(),
        })
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        use nix::mount::{umount2, MntFlags};
        if umount2(&self.target, MntFlags::empty()).is_err() {
            let _ = umount2(&self.target, MntFlags::MNT_DETACH);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use probe::tests::file_of;
    use table::types;

    fn mnt_ns() -> u64 {
        std::fs::metadata("/proc/thread-self/ns/mnt").unwrap().ino()
    }

    fn mounted_at(dir: &Path, mountinfo: &str) -> bool {
        let needle = format!(" {} ", dir.display());
        std::fs::read_to_string(mountinfo)
            .unwrap()
            .lines()
            .any(|l| l.contains(&needle))
    }

    /// Needs root (it mounts); fails loudly without.
    #[test]
    fn disk_mounts_stay_in_a_namespace_of_their_own() {
        use nix::mount::{mount, MsFlags};
        // SAFETY: geteuid has no preconditions.
        assert!(
            unsafe { libc::geteuid() } == 0,
            "this test needs root (it mounts)"
        );
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().to_path_buf();
        // Another thread sharing our file system context, as in sdme-import.
        let (stop, wait) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || wait.recv());
        let outer = mnt_ns();
        let inner = in_private_mount_ns(|| {
            mount(
                Some("tmpfs"),
                &dir,
                Some("tmpfs"),
                MsFlags::empty(),
                None::<&str>,
            )?;
            assert!(mounted_at(&dir, "/proc/thread-self/mountinfo"));
            // Seen from the process's main view and the host's: nothing.
            assert!(!mounted_at(&dir, "/proc/1/mountinfo"));
            assert!(!mounted_at(&dir, "/proc/self/mountinfo"));
            std::fs::write(dir.join("x"), "in the namespace")?;
            Ok(mnt_ns())
        })
        .unwrap();
        stop.send(()).unwrap();
        other.join().unwrap().unwrap();
        assert_ne!(inner, outer);
        assert_eq!(mnt_ns(), outer);
        // Never unmounted by us: gone with the thread's namespace.
        assert!(!mounted_at(&dir, "/proc/thread-self/mountinfo"));
        assert!(!dir.join("x").exists());
    }

    fn with_ext(mut img: Vec<u8>, lba: u64) -> Vec<u8> {
        let o = (lba * 512 + 0x438) as usize;
        img[o] = 0x53;
        img[o + 1] = 0xEF;
        img
    }

    #[test]
    fn root_type_wins_over_larger_partition() {
        let img = table::tests::gpt_image(
            8192,
            &[
                (types::LINUX_DATA, 34, 6000, "big-data"),
                (types::ROOT_X86_64, 6001, 8100, "root"),
            ],
        );
        let img = with_ext(with_ext(img, 34), 6001);
        let f = file_of(&img);
        let t = table::read(&f, img.len() as u64).unwrap();
        let found = choose_root(&f, img.len() as u64, &t).unwrap();
        if std::env::consts::ARCH == "x86_64" {
            assert_eq!(found.partition, Some(2));
            assert!(found.reason.contains("4F68BCE3"), "{}", found.reason);
        } else {
            assert_eq!(found.partition, Some(1));
        }
    }

    #[test]
    fn largest_linux_fs_without_root_type() {
        let img = table::tests::gpt_image(
            8192,
            &[
                (types::ESP, 34, 6000, "esp-without-linux-fs"),
                (types::LINUX_DATA, 6001, 6500, "small"),
                (types::LINUX_DATA, 6501, 8100, "larger"),
            ],
        );
        let img = with_ext(with_ext(img, 6001), 6501);
        let f = file_of(&img);
        let t = table::read(&f, img.len() as u64).unwrap();
        let found = choose_root(&f, img.len() as u64, &t).unwrap();
        assert_eq!(found.partition, Some(3));
        assert_eq!(found.fs, Fs::Ext);
    }

    #[test]
    fn no_linux_fs_is_an_error() {
        let img = table::tests::gpt_image(8192, &[(types::ESP, 34, 6000, "esp")]);
        let f = file_of(&img);
        let t = table::read(&f, img.len() as u64).unwrap();
        let err = choose_root(&f, img.len() as u64, &t)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no Linux file system"), "{err}");
        assert!(err.contains("1 partition"), "{err}");
    }

    #[test]
    fn bare_file_system() {
        let img = with_ext(vec![0u8; 8192], 0);
        let f = file_of(&img);
        assert_eq!(detect(&f).unwrap(), Some(Format::Raw));
        let t = table::read(&f, img.len() as u64).unwrap();
        assert_eq!(t, Table::None);
        let found = choose_root(&f, img.len() as u64, &t).unwrap();
        assert_eq!(found.partition, None);
    }
}
