//! Partition tables of a raw disk image: GPT (parsed and checked here, it
//! is small) and the MBR's primary and logical partitions.
//!
//! Everything read comes from an untrusted image: sizes and counts are
//! bounded, CRCs are checked, every offset is computed with checked
//! arithmetic, and partitions that reach past the end of the image are
//! refused.
//!
//! Hand-written rather than the `gpt`/`mbrman` crates: reading is all we
//! need (a few hundred lines), those crates are made to edit tables and add
//! dependencies to a static binary, and here every bound on an untrusted
//! field stays in view.

use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt;

use anyhow::{bail, Context, Result};

/// A GPT partition type or unique GUID (16 bytes, in the mixed-endian
/// on-disk order: the first three fields little-endian).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// Parse the textual form `4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709`.
    pub const fn from_str_const(s: &str) -> Guid {
        let b = s.as_bytes();
        // Byte order of the text: fields 1-3 big-endian as written.
        let mut text = [0u8; 16];
        let mut i = 0;
        let mut n = 0;
        while i < b.len() {
            if b[i] == b'-' {
                i += 1;
                continue;
            }
            text[n] = (hex(b[i]) << 4) | hex(b[i + 1]);
            n += 1;
            i += 2;
        }
        let mut d = [0u8; 16];
        d[0] = text[3];
        d[1] = text[2];
        d[2] = text[1];
        d[3] = text[0];
        d[4] = text[5];
        d[5] = text[4];
        d[6] = text[7];
        d[7] = text[6];
        let mut k = 8;
        while k < 16 {
            d[k] = text[k];
            k += 1;
        }
        Guid(d)
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
}

const fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => panic!("not a hex digit"),
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.0;
        write!(
            f,
            "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-",
            d[3], d[2], d[1], d[0], d[5], d[4], d[7], d[6], d[8], d[9]
        )?;
        for b in &d[10..] {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Root partition types of the Discoverable Partitions Specification.
pub mod types {
    use super::Guid;
    pub const ROOT_X86_64: Guid = Guid::from_str_const("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709");
    pub const ROOT_X86: Guid = Guid::from_str_const("44479540-F297-41B2-9AF7-D131D5F0458A");
    pub const ROOT_ARM64: Guid = Guid::from_str_const("B921B045-1DF0-41C3-AF44-4C6F280D3FAE");
    pub const ROOT_ARM: Guid = Guid::from_str_const("69DAD710-2CE4-4E3C-B16C-21A1D49ABED3");
    pub const ROOT_RISCV64: Guid = Guid::from_str_const("72EC70A6-CF74-40E6-BD49-4BDA08E8F224");
    pub const ROOT_PPC64LE: Guid = Guid::from_str_const("C31C45E6-3F39-412E-80FB-4809C4980599");
    pub const ROOT_S390X: Guid = Guid::from_str_const("5EEAD9A9-FE09-4A1E-A1D7-520D00531306");
    pub const ROOT_LOONGARCH64: Guid = Guid::from_str_const("77055800-792C-4F94-B39A-98C91B762BB6");
    pub const ESP: Guid = Guid::from_str_const("C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
    pub const LINUX_DATA: Guid = Guid::from_str_const("0FC63DAF-8483-4772-8E79-3D69D8477DE4");

    /// The root partition type for the architecture this binary runs on.
    pub fn host_root() -> Option<Guid> {
        match std::env::consts::ARCH {
            "x86_64" => Some(ROOT_X86_64),
            "x86" => Some(ROOT_X86),
            "aarch64" => Some(ROOT_ARM64),
            "arm" => Some(ROOT_ARM),
            "riscv64" => Some(ROOT_RISCV64),
            "powerpc64" if cfg!(target_endian = "little") => Some(ROOT_PPC64LE),
            "s390x" => Some(ROOT_S390X),
            "loongarch64" => Some(ROOT_LOONGARCH64),
            _ => None,
        }
    }
}

/// One partition: its number as the kernel counts it (`loopNpK`), where it
/// lies in bytes, and its GPT type when the table is a GPT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub number: u32,
    pub start: u64,
    pub size: u64,
    pub gpt_type: Option<Guid>,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Table {
    /// A GPT with this logical sector size (512 or 4096).
    Gpt {
        sector_size: u32,
        partitions: Vec<Partition>,
    },
    Mbr {
        partitions: Vec<Partition>,
    },
    /// No partition table (maybe a bare file system).
    None,
}

/// Upper bound of the partition entry array we read (the usual one is 16 KiB).
const MAX_ENTRY_ARRAY: u64 = 1 << 20;
/// Upper bound of logical partitions followed in an MBR extended chain.
const MAX_LOGICAL: u32 = 128;

/// Read the partition table of a disk image of `len` bytes.
pub fn read(file: &File, len: u64) -> Result<Table> {
    for sector_size in [512u32, 4096] {
        if let Some(partitions) = read_gpt(file, len, sector_size)? {
            return Ok(Table::Gpt {
                sector_size,
                partitions,
            });
        }
    }
    if let Some(partitions) = read_mbr(file, len)? {
        return Ok(Table::Mbr { partitions });
    }
    Ok(Table::None)
}

fn read_at(file: &File, off: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, off)
        .with_context(|| format!("reading {len} bytes at offset {off}"))?;
    Ok(buf)
}

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn le64(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

/// The GPT at LBA 1 for `sector_size`, or None when there is no "EFI PART"
/// signature there. A signature with a bad header is an error (a corrupt
/// image), not "no GPT": the primary header is what the kernel reads too.
fn read_gpt(file: &File, len: u64, sector_size: u32) -> Result<Option<Vec<Partition>>> {
    let ss = u64::from(sector_size);
    if len < ss.saturating_mul(2) {
        return Ok(None);
    }
    let hdr = read_at(file, ss, sector_size as usize)?;
    if &hdr[0..8] != b"EFI PART" {
        return Ok(None);
    }
    let hdr_size = le32(&hdr, 12) as usize;
    if !(92..=sector_size as usize).contains(&hdr_size) {
        bail!("corrupt GPT: header size {hdr_size}");
    }
    let mut h = hdr[..hdr_size].to_vec();
    let want_crc = le32(&h, 16);
    h[16..20].fill(0);
    if crc32(&h) != want_crc {
        bail!("corrupt GPT: header checksum mismatch");
    }
    let first_usable = le64(&hdr, 40);
    let last_usable = le64(&hdr, 48);
    let entries_lba = le64(&hdr, 72);
    let count = u64::from(le32(&hdr, 80));
    let entry_size = u64::from(le32(&hdr, 84));
    let entries_crc = le32(&hdr, 88);
    if entry_size < 128 || entry_size % 8 != 0 || count.saturating_mul(entry_size) > MAX_ENTRY_ARRAY
    {
        bail!("corrupt GPT: {count} entries of {entry_size} bytes");
    }
    // Bounded above, so neither product nor offset can overflow unnoticed.
    let array_len = count
        .checked_mul(entry_size)
        .context("corrupt GPT: partition entry array size overflows")?;
    let array_off = entries_lba
        .checked_mul(ss)
        .filter(|o| o.checked_add(array_len).is_some_and(|end| end <= len))
        .with_context(|| {
            format!("corrupt GPT: the partition entries at LBA {entries_lba} lie beyond the end of the image")
        })?;
    let array = read_at(file, array_off, array_len as usize)?;
    if crc32(&array) != entries_crc {
        bail!("corrupt GPT: partition entry checksum mismatch");
    }
    let mut parts = Vec::new();
    for (i, e) in array.chunks_exact(entry_size as usize).enumerate() {
        let mut t = [0u8; 16];
        t.copy_from_slice(&e[0..16]);
        let gpt_type = Guid(t);
        if gpt_type.is_zero() {
            continue;
        }
        let first = le64(e, 32);
        let last = le64(e, 40);
        let number = i as u32 + 1;
        if last < first || first < first_usable || last > last_usable {
            bail!("corrupt GPT: partition {number} spans LBA {first}..{last}, outside {first_usable}..{last_usable}");
        }
        // last >= first; a count past u64 saturates, to be refused below.
        let sectors = (last - first).saturating_add(1);
        let (start, size) = lba_extent(first, sectors, ss, len)
            .with_context(|| format!("corrupt GPT: partition {number} (LBA {first}..{last})"))?;
        let name: Vec<u16> = e[56..128]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&c| c != 0)
            .collect();
        parts.push(Partition {
            number,
            start,
            size,
            gpt_type: Some(gpt_type),
            name: String::from_utf16_lossy(&name),
        });
    }
    Ok(Some(parts))
}

/// Byte offset and size of `sectors` sectors of `ss` bytes from `lba`,
/// refused unless it all lies within an image of `len` bytes.
fn lba_extent(lba: u64, sectors: u64, ss: u64, len: u64) -> Result<(u64, u64)> {
    let start = lba
        .checked_mul(ss)
        .with_context(|| format!("start LBA {lba} overflows a byte offset"))?;
    let size = sectors
        .checked_mul(ss)
        .with_context(|| format!("{sectors} sectors overflow a byte size"))?;
    match start.checked_add(size) {
        Some(end) if end <= len => Ok((start, size)),
        _ => bail!("reaches past the end of the image ({len} bytes)"),
    }
}

/// MBR partitions: primaries 1-4 and logical partitions from 5 in an
/// extended partition's chain, numbered as the kernel numbers them. A GPT
/// protective MBR (type 0xEE) is not a table of its own.
fn read_mbr(file: &File, len: u64) -> Result<Option<Vec<Partition>>> {
    if len < 512 {
        return Ok(None);
    }
    let mbr = read_at(file, 0, 512)?;
    if le16(&mbr, 510) != 0xAA55 {
        return Ok(None);
    }
    let entries = mbr_entries(&mbr);
    // Boot flags other than 0x00/0x80 mean this is a boot sector, not a
    // partition table (a FAT file system also ends in 55 AA).
    if entries.iter().any(|e| e.boot & 0x7f != 0) || entries.iter().any(|e| e.kind == 0xEE) {
        return Ok(None);
    }
    let mut parts = Vec::new();
    let mut extended = None;
    for (i, e) in entries.iter().enumerate() {
        if e.kind == 0 || e.sectors == 0 {
            continue;
        }
        let (start, size) = lba_extent(u64::from(e.lba), u64::from(e.sectors), 512, len)
            .with_context(|| format!("corrupt MBR: partition {}", i + 1))?;
        if matches!(e.kind, 0x05 | 0x0F | 0x85) {
            extended = Some(u64::from(e.lba));
            continue;
        }
        parts.push(Partition {
            number: i as u32 + 1,
            start,
            size,
            gpt_type: None,
            name: String::new(),
        });
    }
    if parts.is_empty() && extended.is_none() {
        return Ok(None);
    }
    if let Some(ext_base) = extended {
        let mut ebr_lba = ext_base;
        for number in 5..5 + MAX_LOGICAL {
            let (off, _) = lba_extent(ebr_lba, 1, 512, len)
                .with_context(|| format!("corrupt MBR: extended boot record at LBA {ebr_lba}"))?;
            let ebr = read_at(file, off, 512)?;
            if le16(&ebr, 510) != 0xAA55 {
                bail!("corrupt MBR: extended boot record at LBA {ebr_lba} has no signature");
            }
            let e = mbr_entries(&ebr);
            if e[0].kind != 0 && e[0].sectors != 0 {
                let lba = ebr_lba
                    .checked_add(u64::from(e[0].lba))
                    .with_context(|| format!("corrupt MBR: partition {number} start overflows"))?;
                let (start, size) = lba_extent(lba, u64::from(e[0].sectors), 512, len)
                    .with_context(|| format!("corrupt MBR: partition {number}"))?;
                parts.push(Partition {
                    number,
                    start,
                    size,
                    gpt_type: None,
                    name: String::new(),
                });
            }
            if e[1].kind == 0 || e[1].lba == 0 {
                break;
            }
            let next = ext_base
                .checked_add(u64::from(e[1].lba))
                .context("corrupt MBR: extended partition chain overflows")?;
            if next <= ebr_lba {
                bail!("corrupt MBR: extended partition chain loops");
            }
            ebr_lba = next;
        }
    }
    Ok(Some(parts))
}

struct MbrEntry {
    boot: u8,
    kind: u8,
    lba: u32,
    sectors: u32,
}

fn mbr_entries(sector: &[u8]) -> [MbrEntry; 4] {
    std::array::from_fn(|i| {
        let o = 446 + i * 16;
        MbrEntry {
            boot: sector[o],
            kind: sector[o + 4],
            lba: le32(sector, o + 8),
            sectors: le32(sector, o + 12),
        }
    })
}

/// CRC-32 (IEEE 802.3, reflected), as GPT uses it.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn crc32_known_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn guid_text_round_trip_and_disk_order() {
        let g = types::ROOT_X86_64;
        assert_eq!(g.to_string(), "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709");
        // On disk the first field is little-endian.
        assert_eq!(&g.0[..4], &[0xE3, 0xBC, 0x68, 0x4F]);
        assert_eq!(&g.0[8..], &[0x96, 0xE7, 0xFB, 0xCA, 0xF9, 0x84, 0xB7, 0x09]);
    }

    /// A crafted GPT disk image: `parts` are (type, first LBA, last LBA,
    /// name) in 512-byte sectors on a disk of `sectors` sectors.
    pub fn gpt_image(sectors: u64, parts: &[(Guid, u64, u64, &str)]) -> Vec<u8> {
        let mut img = vec![0u8; (sectors * 512) as usize];
        // Protective MBR.
        img[446 + 4] = 0xEE;
        img[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
        img[446 + 12..446 + 16].copy_from_slice(&((sectors - 1) as u32).to_le_bytes());
        img[510] = 0x55;
        img[511] = 0xAA;
        let mut array = vec![0u8; 128 * 128];
        for (i, (t, first, last, name)) in parts.iter().enumerate() {
            let e = &mut array[i * 128..(i + 1) * 128];
            e[0..16].copy_from_slice(&t.0);
            e[16] = i as u8 + 1; // unique GUID, not checked
            e[32..40].copy_from_slice(&first.to_le_bytes());
            e[40..48].copy_from_slice(&last.to_le_bytes());
            for (k, c) in name.encode_utf16().enumerate() {
                e[56 + 2 * k..58 + 2 * k].copy_from_slice(&c.to_le_bytes());
            }
        }
        img[1024..1024 + array.len()].copy_from_slice(&array);
        let mut h = vec![0u8; 92];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&1u64.to_le_bytes());
        h[32..40].copy_from_slice(&(sectors - 1).to_le_bytes());
        h[40..48].copy_from_slice(&34u64.to_le_bytes());
        h[48..56].copy_from_slice(&(sectors - 34).to_le_bytes());
        h[72..80].copy_from_slice(&2u64.to_le_bytes());
        h[80..84].copy_from_slice(&128u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        h[88..92].copy_from_slice(&crc32(&array).to_le_bytes());
        let c = crc32(&h);
        h[16..20].copy_from_slice(&c.to_le_bytes());
        img[512..512 + 92].copy_from_slice(&h);
        img
    }

    fn table_of(img: &[u8]) -> Result<Table> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(img).unwrap();
        read(&f, img.len() as u64)
    }

    #[test]
    fn gpt_partitions_types_and_names() {
        let img = gpt_image(
            4096,
            &[
                (types::ESP, 34, 2047, "esp"),
                (types::ROOT_X86_64, 2048, 4061, "root-x86-64"),
            ],
        );
        let Table::Gpt {
            sector_size,
            partitions,
        } = table_of(&img).unwrap()
        else {
            panic!("not a GPT");
        };
        assert_eq!(sector_size, 512);
        assert_eq!(
            partitions,
            vec![
                Partition {
                    number: 1,
                    start: 34 * 512,
                    size: 2014 * 512,
                    gpt_type: Some(types::ESP),
                    name: "esp".into()
                },
                Partition {
                    number: 2,
                    start: 2048 * 512,
                    size: 2014 * 512,
                    gpt_type: Some(types::ROOT_X86_64),
                    name: "root-x86-64".into()
                },
            ]
        );
    }

    #[test]
    fn gpt_empty_slots_keep_kernel_numbering() {
        let mut img = gpt_image(
            4096,
            &[
                (types::ESP, 34, 2047, "a"),
                (types::LINUX_DATA, 2048, 4061, "b"),
            ],
        );
        // Clear entry 1: entry 2 stays partition 2 (loopNp2).
        img[1024..1024 + 128].fill(0);
        let crc = crc32(&img[1024..1024 + 128 * 128]);
        img[512 + 88..512 + 92].copy_from_slice(&crc.to_le_bytes());
        img[512 + 16..512 + 20].fill(0);
        let c = crc32(&img[512..512 + 92]);
        img[512 + 16..512 + 20].copy_from_slice(&c.to_le_bytes());
        let Table::Gpt { partitions, .. } = table_of(&img).unwrap() else {
            panic!("not a GPT");
        };
        assert_eq!(partitions.len(), 1);
        assert_eq!(partitions[0].number, 2);
    }

    #[test]
    fn gpt_bad_header_crc_is_corrupt() {
        let mut img = gpt_image(4096, &[(types::ESP, 34, 2047, "esp")]);
        img[512 + 40] ^= 1;
        let err = table_of(&img).unwrap_err().to_string();
        assert!(err.contains("header checksum"), "{err}");
    }

    #[test]
    fn gpt_bad_entry_crc_is_corrupt() {
        let mut img = gpt_image(4096, &[(types::ESP, 34, 2047, "esp")]);
        img[1024 + 40] ^= 1;
        let err = table_of(&img).unwrap_err().to_string();
        assert!(err.contains("entry checksum"), "{err}");
    }

    #[test]
    fn gpt_partition_outside_usable_range_is_corrupt() {
        let img = gpt_image(4096, &[(types::ESP, 34, 9000, "big")]);
        let err = table_of(&img).unwrap_err().to_string();
        assert!(err.contains("partition 1"), "{err}");
    }

    #[test]
    fn gpt_huge_entry_count_refused() {
        let mut img = gpt_image(4096, &[(types::ESP, 34, 2047, "esp")]);
        img[512 + 80..512 + 84].copy_from_slice(&u32::MAX.to_le_bytes());
        img[512 + 16..512 + 20].fill(0);
        let c = crc32(&img[512..512 + 92]);
        img[512 + 16..512 + 20].copy_from_slice(&c.to_le_bytes());
        let err = table_of(&img).unwrap_err().to_string();
        assert!(err.contains("entries of"), "{err}");
    }

    /// Change the GPT header of `img` with `f`, then fix its checksum.
    fn edit_header(img: &mut [u8], f: impl FnOnce(&mut [u8])) {
        f(&mut img[512..512 + 92]);
        img[512 + 16..512 + 20].fill(0);
        let c = crc32(&img[512..512 + 92]);
        img[512 + 16..512 + 20].copy_from_slice(&c.to_le_bytes());
    }

    /// Set the first and last LBA of entry 1, then fix both checksums.
    fn edit_entry(img: &mut [u8], first: u64, last: u64) {
        img[1024 + 32..1024 + 40].copy_from_slice(&first.to_le_bytes());
        img[1024 + 40..1024 + 48].copy_from_slice(&last.to_le_bytes());
        let crc = crc32(&img[1024..1024 + 128 * 128]);
        edit_header(img, |h| h[88..92].copy_from_slice(&crc.to_le_bytes()));
    }

    /// A GPT whose usable range claims the whole 64-bit LBA space.
    fn wide_gpt() -> Vec<u8> {
        let mut img = gpt_image(4096, &[(types::ESP, 34, 2047, "esp")]);
        edit_header(&mut img, |h| {
            h[40..48].copy_from_slice(&0u64.to_le_bytes());
            h[48..56].copy_from_slice(&u64::MAX.to_le_bytes());
        });
        img
    }

    #[test]
    fn gpt_lba_overflowing_a_byte_offset_refused() {
        // first * 512 wraps to 0: a release build used to accept it.
        let first = (u64::MAX / 512) + 1;
        let mut img = wide_gpt();
        edit_entry(&mut img, first, first + 10);
        let err = format!("{:#}", table_of(&img).unwrap_err());
        assert!(err.contains("partition 1"), "{err}");
        assert!(
            err.contains(&format!("start LBA {first} overflows")),
            "{err}"
        );
    }

    #[test]
    fn gpt_size_overflowing_refused() {
        let mut img = wide_gpt();
        edit_entry(&mut img, 0, u64::MAX);
        let err = format!("{:#}", table_of(&img).unwrap_err());
        assert!(err.contains("partition 1"), "{err}");
        assert!(err.contains("overflow"), "{err}");
        edit_entry(&mut img, 1, u64::MAX / 256);
        let err = format!("{:#}", table_of(&img).unwrap_err());
        assert!(err.contains("sectors overflow a byte size"), "{err}");
    }

    #[test]
    fn gpt_partition_past_the_image_refused() {
        let mut img = wide_gpt();
        edit_entry(&mut img, 34, 4096);
        let err = format!("{:#}", table_of(&img).unwrap_err());
        assert!(err.contains("partition 1"), "{err}");
        assert!(err.contains("past the end of the image"), "{err}");
    }

    #[test]
    fn gpt_last_before_first_refused() {
        let mut img = gpt_image(4096, &[(types::ESP, 34, 2047, "esp")]);
        edit_entry(&mut img, 2000, 1999);
        let err = format!("{:#}", table_of(&img).unwrap_err());
        assert!(err.contains("partition 1 spans LBA 2000..1999"), "{err}");
    }

    #[test]
    fn gpt_entry_array_out_of_reach_refused() {
        let mut img = gpt_image(4096, &[(types::ESP, 34, 2047, "esp")]);
        edit_header(&mut img, |h| {
            h[72..80].copy_from_slice(&u64::MAX.to_le_bytes())
        });
        let err = format!("{:#}", table_of(&img).unwrap_err());
        assert!(err.contains("entries at LBA 18446744073709551615"), "{err}");
        // The largest count times the largest entry size.
        edit_header(&mut img, |h| {
            h[72..80].copy_from_slice(&2u64.to_le_bytes());
            h[80..84].copy_from_slice(&u32::MAX.to_le_bytes());
            h[84..88].copy_from_slice(&(!7u32).to_le_bytes());
        });
        let err = format!("{:#}", table_of(&img).unwrap_err());
        assert!(
            err.contains("4294967295 entries of 4294967288 bytes"),
            "{err}"
        );
    }

    #[test]
    fn mbr_partition_past_the_image_refused() {
        let mut img = vec![0u8; 64 * 512];
        let o = 446 + 16;
        img[o + 4] = 0x83;
        img[o + 8..o + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        img[o + 12..o + 16].copy_from_slice(&u32::MAX.to_le_bytes());
        img[510] = 0x55;
        img[511] = 0xAA;
        let err = format!("{:#}", table_of(&img).unwrap_err());
        assert!(err.contains("corrupt MBR: partition 2"), "{err}");
        assert!(err.contains("past the end of the image"), "{err}");
    }

    #[test]
    fn mbr_primary_and_logical() {
        let mut img = vec![0u8; 8192 * 512];
        let set = |img: &mut [u8], sector: usize, slot: usize, kind: u8, lba: u32, n: u32| {
            let o = sector * 512 + 446 + slot * 16;
            img[o + 4] = kind;
            img[o + 8..o + 12].copy_from_slice(&lba.to_le_bytes());
            img[o + 12..o + 16].copy_from_slice(&n.to_le_bytes());
            img[sector * 512 + 510] = 0x55;
            img[sector * 512 + 511] = 0xAA;
        };
        set(&mut img, 0, 0, 0x83, 2048, 2048);
        set(&mut img, 0, 1, 0x05, 4096, 4096);
        // First EBR at 4096: a logical partition at +64, next EBR at +2048.
        set(&mut img, 4096, 0, 0x83, 64, 1000);
        set(&mut img, 4096, 1, 0x05, 2048, 2048);
        set(&mut img, 6144, 0, 0x83, 64, 1500);
        let Table::Mbr { partitions } = table_of(&img).unwrap() else {
            panic!("not an MBR");
        };
        let got: Vec<(u32, u64, u64)> = partitions
            .iter()
            .map(|p| (p.number, p.start / 512, p.size / 512))
            .collect();
        assert_eq!(got, vec![(1, 2048, 2048), (5, 4160, 1000), (6, 6208, 1500)]);
    }

    #[test]
    fn fat_boot_sector_is_not_a_table() {
        let mut img = vec![0u8; 4096];
        img[0] = 0xEB;
        img[446] = 0x31; // boot code, not a boot flag
        img[510] = 0x55;
        img[511] = 0xAA;
        assert_eq!(table_of(&img).unwrap(), Table::None);
    }

    #[test]
    fn mbr_loop_in_extended_chain_refused() {
        let mut img = vec![0u8; 8192 * 512];
        let set = |img: &mut [u8], sector: usize, slot: usize, kind: u8, lba: u32, n: u32| {
            let o = sector * 512 + 446 + slot * 16;
            img[o + 4] = kind;
            img[o + 8..o + 12].copy_from_slice(&lba.to_le_bytes());
            img[o + 12..o + 16].copy_from_slice(&n.to_le_bytes());
            img[sector * 512 + 510] = 0x55;
            img[sector * 512 + 511] = 0xAA;
        };
        set(&mut img, 0, 0, 0x05, 4096, 4096);
        // EBR 4096 links to 4097, which links to itself.
        set(&mut img, 4096, 1, 0x05, 1, 16);
        set(&mut img, 4097, 1, 0x05, 1, 16);
        let err = table_of(&img).unwrap_err().to_string();
        assert!(err.contains("loops"), "{err}");
    }
}
