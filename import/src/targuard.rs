//! A bound on tar extension headers, enforced before the tar crate reads
//! them.
//!
//! The tar crate (0.4.46) reads the whole body of a GNU long name (`L`),
//! long link name (`K`) and pax header (`x`) into memory
//! (`EntryFields::read_all`) as soon as it meets one, whatever size the
//! header declares: a 1 MB gzip whose second member declares a 1 GiB long
//! name made the importer grow past 3 GB. It has no option to bound them,
//! and no tar-rs issue about it was found; Python's tarfile has the same
//! flaw (python/cpython#155633, proposing a cap on extension sizes).
//! A [`Guard`] sits between the decompressor and the tar crate and parses
//! each header block as it passes, following the archive exactly as the
//! crate frames it (the same checksum rule, the pax `size` override, GNU
//! sparse extension blocks, the first zero block ending the archive); it
//! fails the read that brings an extension header larger than
//! [`MAX_EXTENSION`] (`g` too, which the crate hands over as an entry), or
//! a GNU sparse entry with more than [`MAX_SPARSE_BLOCKS`] extension
//! blocks, before any of its body reaches the crate.
//!
//! Whatever the guard cannot follow (a checksum the crate rejects, a size
//! field it cannot parse) the crate fails on itself; the guard then only
//! passes bytes through. Where each entry the crate hands over starts is
//! kept ([`Guard::entries`]): the caller checks that the crate read each
//! one there, so the two can never frame the archive differently unseen.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use tar::{EntryType, Header, PaxExtensions};

const BLOCK: u64 = 512;

/// The largest body of an `L`, `K`, `x` or `g` header. Together (one of
/// each before an entry) they fit the pax window (see pax).
pub const MAX_EXTENSION: u64 = 1 << 20;

/// The most extension blocks of a GNU sparse map (21 segments each): the
/// tar crate keeps two small records per segment.
pub const MAX_SPARSE_BLOCKS: u64 = 3072;

/// What the next bytes of the stream are.
#[derive(Debug)]
enum Mode {
    /// A header block (`have` bytes of it so far).
    Header,
    /// Extension blocks of a GNU sparse map, then `size` bytes of data.
    SparseExt { size: u64, blocks: u64 },
    /// `left` bytes of member data and padding; the first `keep` bytes
    /// are the body of a pax header, kept to learn the `size` it gives.
    Data { left: u64, keep: u64, pax: bool },
    /// The archive ended, or the crate fails here: nothing more to check.
    Passive,
}

/// A reader that refuses oversized tar extension headers (see the module
/// documentation).
pub struct Guard<R> {
    inner: R,
    /// Stream offset of the next byte read.
    pos: u64,
    mode: Mode,
    block: [u8; BLOCK as usize],
    have: usize,
    /// The body of the pax header that applies to the next entry.
    pax: Option<Vec<u8>>,
    /// The body of the pax header being read.
    body: Vec<u8>,
    /// Stream offset of the last header the crate hands over as an entry.
    entry_at: Rc<Cell<Option<u64>>>,
}

impl<R: Read> Guard<R> {
    pub fn new(inner: R) -> Guard<R> {
        Guard {
            inner,
            pos: 0,
            mode: Mode::Header,
            block: [0; BLOCK as usize],
            have: 0,
            pax: None,
            body: Vec::new(),
            entry_at: Rc::new(Cell::new(None)),
        }
    }

    /// Where the last header the tar crate returns as an entry starts, as
    /// the guard framed the archive (see [`check_entry`]).
    pub fn entries(&self) -> Rc<Cell<Option<u64>>> {
        self.entry_at.clone()
    }

    /// Follow `b`, the bytes just read.
    fn feed(&mut self, mut b: &[u8]) -> io::Result<()> {
        while !b.is_empty() {
            match &mut self.mode {
                Mode::Passive => return Ok(()),
                Mode::Data { left, keep, pax } => {
                    let n = (*left).min(b.len() as u64) as usize;
                    let k = (*keep).min(n as u64) as usize;
                    self.body.extend_from_slice(&b[..k]);
                    *keep -= k as u64;
                    *left -= n as u64;
                    let (done, pax) = (*left == 0, *pax);
                    self.pos += n as u64;
                    b = &b[n..];
                    if done {
                        if pax {
                            self.pax = Some(std::mem::take(&mut self.body));
                        }
                        self.mode = Mode::Header;
                    }
                }
                Mode::Header | Mode::SparseExt { .. } => {
                    let n = (BLOCK as usize - self.have).min(b.len());
                    self.block[self.have..self.have + n].copy_from_slice(&b[..n]);
                    self.have += n;
                    self.pos += n as u64;
                    b = &b[n..];
                    if self.have == BLOCK as usize {
                        self.have = 0;
                        let at = self.pos - BLOCK;
                        self.mode = match std::mem::replace(&mut self.mode, Mode::Passive) {
                            Mode::SparseExt { size, blocks } => {
                                self.sparse_ext(at, size, blocks)?
                            }
                            _ => self.header(at)?,
                        };
                    }
                }
            }
        }
        Ok(())
    }

    /// The mode after the header block at stream offset `at`.
    fn header(&mut self, at: u64) -> io::Result<Mode> {
        if self.block.iter().all(|&c| c == 0) {
            return Ok(Mode::Passive); // the end of the archive
        }
        let h = Header::from_byte_slice(&self.block);
        let sum = self.block[..148]
            .iter()
            .chain(&self.block[156..])
            .fold(0u32, |a, &c| a + u32::from(c))
            + 8 * 32;
        if h.cksum().ok() != Some(sum) {
            return Ok(Mode::Passive);
        }
        let ty = h.entry_type();
        let extension = ty.is_gnu_longname()
            || ty.is_gnu_longlink()
            || ty.is_pax_local_extensions()
            || ty.is_pax_global_extensions();
        // The crate takes a pax size for the entry after a pax header.
        let pax = if extension { None } else { self.pax.take() };
        let size = match pax.as_deref().and_then(pax_size) {
            Some(s) => s,
            None => match h.entry_size() {
                Ok(s) => s,
                Err(_) => return Ok(Mode::Passive),
            },
        };
        if extension && size > MAX_EXTENSION {
            return Err(too_large(at, ty, size));
        }
        let recognized = h.as_gnu().is_some() || h.as_ustar().is_some();
        if !(recognized && extension && !ty.is_pax_global_extensions()) {
            // An entry the crate hands over: what came before was its own.
            self.pax = None;
            self.entry_at.set(Some(at));
        }
        if ty.is_gnu_sparse() && !extension {
            match h.as_gnu() {
                Some(g) if g.is_extended() => return Ok(Mode::SparseExt { size, blocks: 0 }),
                Some(_) => {}
                None => return Ok(Mode::Passive),
            }
        }
        Ok(data(size, recognized && ty.is_pax_local_extensions()))
    }

    /// The mode after a GNU sparse extension block at `at`.
    fn sparse_ext(&mut self, at: u64, size: u64, blocks: u64) -> io::Result<Mode> {
        let blocks = blocks + 1;
        if blocks > MAX_SPARSE_BLOCKS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "tar header at byte {at}: a GNU sparse map of more than \
                     {MAX_SPARSE_BLOCKS} extension blocks (the limit)"
                ),
            ));
        }
        let mut ext = tar::GnuExtSparseHeader::new();
        ext.as_mut_bytes().copy_from_slice(&self.block);
        if ext.is_extended() {
            Ok(Mode::SparseExt { size, blocks })
        } else {
            Ok(data(size, false))
        }
    }
}

/// Refuse an entry the tar crate found elsewhere than the guard (given
/// `entries` of the guard the crate reads through).
pub fn check_entry(entries: &Cell<Option<u64>>, crate_at: u64) -> anyhow::Result<()> {
    if entries.get() != Some(crate_at) {
        anyhow::bail!(
            "archive out of step: an entry at byte {crate_at}, where the header check \
             found {:?}",
            entries.get()
        );
    }
    Ok(())
}

/// `size` bytes of data and their padding to a block; with `pax`, the
/// body of a pax header (at most [`MAX_EXTENSION`] bytes), kept.
fn data(size: u64, pax: bool) -> Mode {
    match size.checked_add(BLOCK - 1) {
        Some(s) if s & !(BLOCK - 1) > 0 => Mode::Data {
            left: s & !(BLOCK - 1),
            keep: if pax { size } else { 0 },
            pax,
        },
        Some(_) => Mode::Header,
        None => Mode::Passive, // the crate fails on it
    }
}

/// The `size` record of a pax header body, read as the tar crate reads it
/// (the first `size` record; none if a record before it is malformed).
fn pax_size(body: &[u8]) -> Option<u64> {
    for ext in PaxExtensions::new(body) {
        let ext = ext.ok()?;
        if ext.key() != Ok("size") {
            continue;
        }
        return ext.value().ok()?.parse().ok();
    }
    None
}

fn kind(ty: EntryType) -> &'static str {
    if ty.is_gnu_longname() {
        "GNU long name header (type 'L')"
    } else if ty.is_gnu_longlink() {
        "GNU long link name header (type 'K')"
    } else if ty.is_pax_local_extensions() {
        "pax extended header (type 'x')"
    } else {
        "pax global header (type 'g')"
    }
}

fn too_large(at: u64, ty: EntryType, size: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "tar header at byte {at}: a {} of {size} bytes, more than the limit of {} ({MAX_EXTENSION} bytes)",
            kind(ty),
            crate::budget::human(MAX_EXTENSION),
        ),
    )
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(out)?;
        self.feed(&out[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, ty: EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(ty);
        h.set_size(size);
        h.set_mode(0o644);
        let n = &mut h.as_old_mut().name;
        n[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        h
    }

    /// Read all of `data` through a guard in reads of `step` bytes.
    fn run(data: &[u8], step: usize) -> io::Result<usize> {
        let mut g = Guard::new(data);
        let mut buf = vec![0u8; step];
        let mut total = 0;
        loop {
            match g.read(&mut buf)? {
                0 => return Ok(total),
                n => total += n,
            }
        }
    }

    fn member(out: &mut Vec<u8>, h: &tar::Header, data: &[u8]) {
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }

    fn pax_body(records: &[(&str, &str)]) -> Vec<u8> {
        let mut b = Vec::new();
        for (k, v) in records {
            let body = 1 + k.len() + 1 + v.len() + 1;
            let mut len = body + 1;
            while format!("{len}").len() + body != len {
                len += 1;
            }
            b.extend(format!("{len} {k}={v}\n").into_bytes());
        }
        b
    }

    #[test]
    fn oversized_extension_headers_fail_at_their_header() {
        for ty in [
            EntryType::GNULongName,
            EntryType::GNULongLink,
            EntryType::XHeader,
            EntryType::XGlobalHeader,
        ] {
            let mut a = Vec::new();
            member(&mut a, &header("a", EntryType::Regular, 3), b"abc");
            a.extend_from_slice(header("././@LongLink", ty, 1 << 30).as_bytes());
            a.extend(vec![b'x'; 8192]);
            for step in [1, 100, 512, 4096, 1 << 20] {
                let e = run(&a, step).unwrap_err().to_string();
                assert!(
                    e.contains("at byte 1024") && e.contains("limit of 1M"),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn extension_headers_within_the_limit_pass() {
        let mut a = Vec::new();
        let name = "n".repeat(1000);
        member(
            &mut a,
            &header("././@LongLink", EntryType::GNULongName, 1001),
            format!("{name}\0").as_bytes(),
        );
        member(&mut a, &header("short", EntryType::Regular, 2), b"hi");
        // A pax size much larger than the header's: the guard follows the
        // pax size, so the 'L' hidden in the data is data.
        let hidden = header("././@LongLink", EntryType::GNULongName, 1 << 40);
        let mut big = hidden.as_bytes().to_vec();
        big.resize(4096, 0);
        let body = pax_body(&[("size", "4096")]);
        member(
            &mut a,
            &header("p", EntryType::XHeader, body.len() as u64),
            &body,
        );
        member(&mut a, &header("big", EntryType::Regular, 0), &big);
        member(&mut a, &header("after", EntryType::Regular, 1), b"z");
        a.extend([0u8; 1024]);
        for step in [1, 7, 512, 1 << 20] {
            assert_eq!(run(&a, step).unwrap(), a.len());
        }
        // Without the pax size the hidden header is one, and refused.
        let mut b = a.clone();
        let p = b.windows(10).position(|w| w == b"size=4096\n").unwrap();
        b[p..p + 4].copy_from_slice(b"sizf");
        let e = run(&b, 512).unwrap_err().to_string();
        assert!(e.contains("GNU long name"), "{e}");
    }

    #[test]
    fn the_guard_frames_entries_where_the_crate_does() {
        let mut b = tar::Builder::new(Vec::new());
        let long = format!("{}/file", "d".repeat(300));
        let mut h = header("x", EntryType::Regular, 5);
        b.append_data(&mut h, &long, &b"hello"[..]).unwrap();
        let mut h = header("l", EntryType::Symlink, 0);
        b.append_link(&mut h, "link", "t".repeat(200)).unwrap();
        b.append_pax_extensions([("size", &b"3"[..]), ("uid", b"7")])
            .unwrap();
        let mut h = header("p", EntryType::Regular, 3);
        b.append(&h, &b"abc"[..]).unwrap();
        h = header("pax_global_header", EntryType::XGlobalHeader, 0);
        b.append(&h, &b""[..]).unwrap();
        let mut sp = header("s", EntryType::GNUSparse, 512);
        sp.as_gnu_mut().unwrap().set_is_extended(true);
        sp.as_gnu_mut().unwrap().set_real_size(512);
        sp.as_gnu_mut().unwrap().sparse[0].offset = *b"00000000000\0";
        sp.as_gnu_mut().unwrap().sparse[0].numbytes = *b"00000001000\0";
        sp.set_cksum();
        let mut a = b.into_inner().unwrap();
        let cut = a.len() - 1024; // the builder's end blocks
        a.truncate(cut);
        a.extend_from_slice(sp.as_bytes());
        a.extend_from_slice(tar::GnuExtSparseHeader::new().as_bytes());
        a.extend([7u8; 512]);
        member(&mut a, &header("last", EntryType::Regular, 1), b"z");
        a.extend([0u8; 1024]);

        let g = Guard::new(&a[..]);
        let framed = g.entries();
        let mut ar = tar::Archive::new(g);
        let mut n = 0;
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            check_entry(&framed, e.raw_header_position()).unwrap();
            io::copy(&mut e, &mut io::sink()).unwrap();
            n += 1;
        }
        assert_eq!(n, 6);
    }

    #[test]
    fn after_the_end_of_the_archive_nothing_is_checked() {
        let mut a = Vec::new();
        member(&mut a, &header("a", EntryType::Regular, 1), b"a");
        a.extend([0u8; 1024]);
        a.extend_from_slice(header("x", EntryType::GNULongName, 1 << 30).as_bytes());
        assert_eq!(run(&a, 4096).unwrap(), a.len());
    }

    #[test]
    fn gnu_sparse_extension_blocks_are_followed_and_bounded() {
        let sparse = |blocks: u64| {
            let mut h = header("s", EntryType::GNUSparse, 512);
            h.as_gnu_mut().unwrap().set_is_extended(true);
            h.set_cksum();
            let mut a = h.as_bytes().to_vec();
            for i in 0..blocks {
                let mut e = tar::GnuExtSparseHeader::new();
                e.set_is_extended(i + 1 < blocks);
                a.extend_from_slice(e.as_bytes());
            }
            // The data: what would be a header, were the blocks not seen.
            let mut d = header("x", EntryType::GNULongName, 1 << 30)
                .as_bytes()
                .to_vec();
            d.resize(512, 0);
            a.extend(d);
            a.extend([0u8; 1024]);
            a
        };
        assert!(run(&sparse(3), 512).is_ok());
        let e = run(&sparse(MAX_SPARSE_BLOCKS + 1), 4096)
            .unwrap_err()
            .to_string();
        assert!(e.contains("GNU sparse map"), "{e}");
    }
}
