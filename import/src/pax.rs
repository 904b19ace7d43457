//! pax extended headers read by their length prefix.
//!
//! A pax record is `LEN KEY=VALUE\n`, and the length is what lets a value
//! hold any byte, newlines included: GNU tar `--acls` writes ACLs as
//! multi-line text, and a binary xattr (a file capability, an ACL naming
//! id 10) may contain 0x0a. The tar crate (0.4.46) splits the header on
//! newlines instead (composefs/tar-rs#452, still open), so it reports such
//! records as malformed, and can mistake the tail of a value for a record
//! of its own (`...\n22 linkpath=/etc/evil\n`).
//!
//! The tar crate still frames the archive. A [`Tee`] keeps the bytes it
//! reads between the end of one entry's data and the next entry's header;
//! [`Recorder::take`] finds the `x` header among them and parses its
//! records here. The caller then checks that the crate's path, link, size,
//! uid and gid agree with these records ([`Records::check`]) and refuses
//! the archive otherwise: two readers must never see two archives.

use std::cell::RefCell;
use std::io::{self, Read};
use std::rc::Rc;

use anyhow::{anyhow, bail, Result};

const BLOCK: u64 = 512;

/// Bytes kept between two entries at most (extended headers, GNU long
/// names, padding). Data of an entry that was not read is dropped first.
const WINDOW: usize = 8 << 20;

#[derive(Default)]
struct State {
    recording: bool,
    /// Where the extension headers of the next entry may start: the end
    /// of the last entry's data, rounded up to a block.
    from: u64,
    /// Stream position of `buf[0]`.
    start: u64,
    /// Bytes read so far.
    pos: u64,
    buf: Vec<u8>,
}

/// A reader that counts and, while recording, keeps what passes through.
pub struct Tee<R> {
    inner: R,
    state: Rc<RefCell<State>>,
}

/// The other end of a [`Tee`].
#[derive(Clone)]
pub struct Recorder(Rc<RefCell<State>>);

impl<R: Read> Tee<R> {
    /// A tee recording from the start of the stream.
    pub fn new(inner: R) -> (Tee<R>, Recorder) {
        let state = Rc::new(RefCell::new(State {
            recording: true,
            ..State::default()
        }));
        (
            Tee {
                inner,
                state: state.clone(),
            },
            Recorder(state),
        )
    }
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(out)?;
        let mut s = self.state.borrow_mut();
        s.pos += n as u64;
        if s.recording {
            s.buf.extend_from_slice(&out[..n]);
            if s.buf.len() > WINDOW {
                let drop = s.buf.len() - WINDOW / 2;
                s.buf.drain(..drop);
                s.start += drop as u64;
            }
        }
        Ok(n)
    }
}

impl Recorder {
    /// Record again from here: all of an entry's data has been read.
    pub fn resume(&self) {
        let mut s = self.0.borrow_mut();
        s.recording = true;
        s.start = s.pos;
        s.from = s.pos.div_ceil(BLOCK) * BLOCK;
        s.buf.clear();
    }

    /// Stop recording and return what the extension headers before the
    /// entry whose header starts at `header` (already read) say.
    pub fn take(&self, header: u64) -> Result<Records> {
        let mut s = self.0.borrow_mut();
        s.recording = false;
        let from = s.from;
        if from < s.start || header + BLOCK > s.pos || from > header {
            bail!("extended headers too large or archive out of step");
        }
        let at = |p: u64| (p - s.start) as usize;
        let region = &s.buf[at(from)..at(header)];
        let mut r = parse_region(region)?;
        r.header
            .copy_from_slice(&s.buf[at(header)..at(header + BLOCK)]);
        Ok(r)
    }
}

/// What an entry's extension headers say.
#[derive(Debug, Clone)]
pub struct Records {
    /// The `x` header's records, in order.
    pub pax: Vec<(Vec<u8>, Vec<u8>)>,
    /// A GNU long name (`L`) or long link name (`K`), without the NUL.
    pub long_name: Option<Vec<u8>>,
    pub long_link: Option<Vec<u8>>,
    /// The entry's own header block.
    pub header: [u8; 512],
}

impl Records {
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.pax
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }

    fn number(&self, key: &str) -> Result<Option<u64>> {
        self.get(key.as_bytes())
            .map(|v| {
                std::str::from_utf8(v)
                    .ok()
                    .and_then(|t| t.trim().parse::<u64>().ok())
                    .ok_or_else(|| anyhow!("bad pax {key} '{}'", String::from_utf8_lossy(v)))
            })
            .transpose()
    }

    /// Refuse an entry the tar crate read differently than these records
    /// say (its path, link target, size, owner).
    pub fn check<R: Read>(&self, entry: &tar::Entry<'_, R>) -> Result<()> {
        let raw = tar::Header::from_byte_slice(&self.header);
        let path = match (self.get(b"path"), &self.long_name) {
            (Some(p), _) => p.to_vec(),
            (None, Some(l)) => l.clone(),
            (None, None) => raw.path_bytes().into_owned(),
        };
        if path != *entry.path_bytes() {
            bail!("its pax path disagrees with how the archive was read");
        }
        let link = match (self.get(b"linkpath"), &self.long_link) {
            (Some(p), _) => Some(p.to_vec()),
            (None, Some(l)) => Some(l.clone()),
            (None, None) => raw.link_name_bytes().map(|l| l.into_owned()),
        };
        if link.as_deref() != entry.link_name_bytes().as_deref() {
            bail!("its pax link target disagrees with how the archive was read");
        }
        let size = match (self.number("size")?, raw.as_gnu()) {
            (Some(s), _) => s,
            // GNU sparse (type S): the crate gives the real size.
            (None, Some(g)) if raw.entry_type().is_gnu_sparse() => g.real_size()?,
            (None, _) => raw.entry_size()?,
        };
        if size != entry.size() {
            bail!("its pax size disagrees with how the archive was read");
        }
        for (key, have) in [
            ("uid", entry.header().uid()?),
            ("gid", entry.header().gid()?),
        ] {
            let want = match self.number(key)? {
                Some(v) => v,
                None if key == "uid" => raw.uid()?,
                None => raw.gid()?,
            };
            if want != have {
                bail!("its pax {key} disagrees with how the archive was read");
            }
        }
        Ok(())
    }
}

/// The extension headers between two entries: each a header block and its
/// data, padded to blocks.
fn parse_region(mut b: &[u8]) -> Result<Records> {
    let mut r = Records {
        pax: Vec::new(),
        long_name: None,
        long_link: None,
        header: [0; 512],
    };
    // The padding of the previous entry's data has been skipped by the
    // caller (`from` is block-aligned); zero blocks can precede a header.
    while !b.is_empty() {
        if b.len() < BLOCK as usize {
            bail!("archive out of step");
        }
        let (h, rest) = b.split_at(BLOCK as usize);
        if h.iter().all(|&x| x == 0) {
            b = rest;
            continue;
        }
        let size =
            numeric(&h[124..136]).ok_or_else(|| anyhow!("bad size in an extension header"))?;
        let padded = size.div_ceil(BLOCK) * BLOCK;
        if padded > rest.len() as u64 {
            bail!("archive out of step");
        }
        let body = &rest[..size as usize];
        match h[156] {
            b'x' => r.pax.extend(records(body)?),
            b'L' => r.long_name = Some(until_nul(body)),
            b'K' => r.long_link = Some(until_nul(body)),
            _ => {}
        }
        b = &rest[padded as usize..];
    }
    Ok(r)
}

fn until_nul(b: &[u8]) -> Vec<u8> {
    b.split(|&c| c == 0).next().unwrap_or(b).to_vec()
}

/// A tar numeric field: octal (space or NUL terminated) or base-256.
fn numeric(f: &[u8]) -> Option<u64> {
    if f.first().is_some_and(|&c| c & 0x80 != 0) {
        let mut v: u64 = u64::from(f[0] & 0x7f);
        for &c in &f[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(c))?;
        }
        return Some(v);
    }
    let t: Vec<u8> = f
        .iter()
        .copied()
        .skip_while(|&c| c == b' ')
        .take_while(|&c| c != 0 && c != b' ')
        .collect();
    if t.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&t).ok()?, 8).ok()
}

/// The records of an `x` header body, each `LEN KEY=VALUE\n`.
pub fn records(mut b: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let bad = || anyhow!("malformed pax record");
        let sp = b.iter().position(|&c| c == b' ').ok_or_else(bad)?;
        let len: usize = std::str::from_utf8(&b[..sp])
            .ok()
            .filter(|t| !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|t| t.parse().ok())
            .ok_or_else(bad)?;
        if len <= sp + 1 || len > b.len() || b[len - 1] != b'\n' {
            bail!(bad());
        }
        let kv = &b[sp + 1..len - 1];
        let eq = kv.iter().position(|&c| c == b'=').ok_or_else(bad)?;
        out.push((kv[..eq].to_vec(), kv[eq + 1..].to_vec()));
        b = &b[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(k: &str, v: &[u8]) -> Vec<u8> {
        let body = 1 + k.len() + 1 + v.len() + 1;
        let mut len = body + 1;
        while format!("{len}").len() + body != len {
            len += 1;
        }
        let mut r = format!("{len} {k}=").into_bytes();
        r.extend_from_slice(v);
        r.push(b'\n');
        r
    }

    #[test]
    fn values_may_hold_newlines_and_any_byte() {
        let mut b = rec("SCHILY.acl.access", b"user::rw-\ngroup::r--\nother::r--\n");
        b.extend(rec(
            "SCHILY.xattr.security.capability",
            b"\x01\x00\x00\x02\x02\x00\x0a\x00",
        ));
        b.extend(rec("path", b"a\nb"));
        let r = records(&b).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].1, b"user::rw-\ngroup::r--\nother::r--\n");
        assert_eq!(r[1].1, b"\x01\x00\x00\x02\x02\x00\x0a\x00");
        assert_eq!(r[2], (b"path".to_vec(), b"a\nb".to_vec()));
    }

    #[test]
    fn a_value_cannot_smuggle_a_record() {
        // What a newline splitter would read as a linkpath record.
        let b = rec("SCHILY.xattr.user.a", b"AAA\n22 linkpath=/etc/evil\n");
        let r = records(&b).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].0, b"SCHILY.xattr.user.a");
    }

    #[test]
    fn malformed_records_are_refused() {
        for b in [
            &b"5 a=b\n"[..], // length too short for the record
            b"99 a=b\n",     // longer than the header
            b"x a=b\n",      // not a number
            b"6 ab\n\n",     // no '='
            b"7 a=bc ",      // no final newline
            b" 6 a=b\n",     // no length
        ] {
            assert!(records(b).is_err(), "{}", String::from_utf8_lossy(b));
        }
    }

    #[test]
    fn numeric_fields() {
        assert_eq!(numeric(b"00000001750\0"), Some(0o1750));
        assert_eq!(numeric(b"     17 \0\0\0\0"), Some(0o17));
        assert_eq!(numeric(b"\0\0\0\0"), Some(0));
        assert_eq!(
            numeric(&[0x80, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0]),
            Some(2 << 32)
        );
        assert_eq!(numeric(b"0009"), None);
    }

    #[test]
    fn the_tee_keeps_only_what_lies_between_entries() {
        let data: Vec<u8> = (0..4096u32).map(|i| i as u8).collect();
        let (mut tee, rec) = Tee::new(&data[..]);
        let mut buf = [0u8; 1024];
        tee.read_exact(&mut buf).unwrap();
        rec.0.borrow_mut().recording = false;
        tee.read_exact(&mut buf).unwrap();
        rec.resume();
        tee.read_exact(&mut buf).unwrap();
        let s = rec.0.borrow();
        assert_eq!((s.start, s.pos, s.buf.len()), (2048, 3072, 1024));
        assert_eq!(s.buf[0], data[2048]);
    }
}
