//! Which Linux file system a partition holds, told by its superblock magic.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// The Linux file systems a root partition may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fs {
    /// ext2, ext3 and ext4 (the ext4 driver mounts all three).
    Ext,
    Xfs,
    Btrfs,
    Squashfs,
    Erofs,
}

impl Fs {
    /// The type name for mount(2).
    pub fn mount_type(self) -> &'static str {
        match self {
            Fs::Ext => "ext4",
            Fs::Xfs => "xfs",
            Fs::Btrfs => "btrfs",
            Fs::Squashfs => "squashfs",
            Fs::Erofs => "erofs",
        }
    }

    /// Mount data for a read-only mount that never writes to the image:
    /// no journal or log replay.
    pub fn mount_data(self) -> &'static str {
        match self {
            Fs::Ext => "noload",
            Fs::Xfs => "norecovery",
            Fs::Btrfs => "rescue=nologreplay",
            Fs::Squashfs | Fs::Erofs => "",
        }
    }
}

/// (offset, magic) pairs, checked in this order.
const MAGICS: &[(u64, &[u8], Fs)] = &[
    (0x438, &[0x53, 0xEF], Fs::Ext),
    (0, b"XFSB", Fs::Xfs),
    (0x10040, b"_BHRfS_M", Fs::Btrfs),
    (0, b"hsqs", Fs::Squashfs),
    (0x400, &[0xE2, 0xE1, 0xF5, 0xE0], Fs::Erofs),
];

/// The Linux file system at `start` in `file` (a region of `size` bytes),
/// if any. Short reads (a region smaller than the superblock offset) mean
/// "none".
pub fn probe(file: &File, start: u64, size: u64) -> Option<Fs> {
    MAGICS.iter().find_map(|&(off, magic, fs)| {
        if off + magic.len() as u64 > size {
            return None;
        }
        let mut buf = vec![0u8; magic.len()];
        file.read_exact_at(&mut buf, start + off).ok()?;
        (buf == magic).then_some(fs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(len: usize, at: usize, bytes: &[u8]) -> File {
        let mut v = vec![0u8; len];
        v[at..at + bytes.len()].copy_from_slice(bytes);
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&v).unwrap();
        f
    }

    #[test]
    fn magics() {
        assert_eq!(
            probe(&file_with(4096, 0x438, &[0x53, 0xEF]), 0, 4096),
            Some(Fs::Ext)
        );
        assert_eq!(probe(&file_with(4096, 0, b"XFSB"), 0, 4096), Some(Fs::Xfs));
        assert_eq!(
            probe(&file_with(0x20000, 0x10040, b"_BHRfS_M"), 0, 0x20000),
            Some(Fs::Btrfs)
        );
        assert_eq!(
            probe(&file_with(4096, 0, b"hsqs"), 0, 4096),
            Some(Fs::Squashfs)
        );
        assert_eq!(
            probe(&file_with(4096, 0, b"\xEB\x3C\x90mkfs.fat"), 0, 4096),
            None
        );
    }

    #[test]
    fn probe_at_partition_offset_and_bounded_by_its_size() {
        let f = file_with(8192, 4096 + 0x438, &[0x53, 0xEF]);
        assert_eq!(probe(&f, 4096, 4096), Some(Fs::Ext));
        assert_eq!(probe(&f, 0, 4096), None);
        // A region too small to hold the superblock.
        assert_eq!(probe(&f, 4096, 0x400), None);
    }
}
