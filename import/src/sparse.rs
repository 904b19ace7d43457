//! GNU tar's pax sparse files (`tar --format=posix --sparse`).
//!
//! The entry is a regular file whose data is the file's non-hole segments
//! packed together; where they go is a map given by pax records:
//!
//! - 0.0: `GNU.sparse.size` (the real size), `GNU.sparse.numblocks`, then
//!   that many `GNU.sparse.offset` / `GNU.sparse.numbytes` pairs;
//! - 0.1: the same with the pairs in one `GNU.sparse.map=OFF,LEN,...`,
//!   and the real name in `GNU.sparse.name`;
//! - 1.0: `GNU.sparse.major=1`, `GNU.sparse.minor=0`, `GNU.sparse.name`,
//!   `GNU.sparse.realsize`, and the map at the start of the data (decimal
//!   numbers, one a line: the count, then the pairs), padded to 512 bytes.
//!
//! The map is bounded ([`MAX_SEGMENTS`]), in order, without overlaps,
//! inside the real size, and its lengths add up to the packed data.
//! (The old GNU format, type `S`, is read by the tar crate itself.)

use std::io::Read;

use anyhow::{anyhow, bail, Context, Result};

use crate::pax::Records;

/// The most segments of a sparse map.
pub const MAX_SEGMENTS: usize = 1 << 16;

/// Where a sparse entry's segments go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sparse {
    /// The file's real name, when the entry's is GNU tar's placeholder.
    pub name: Option<Vec<u8>>,
    pub real_size: u64,
    /// (offset, length) of each segment; `None` until read from the data
    /// (1.0).
    pub map: Option<Vec<(u64, u64)>>,
}

fn number(key: &str, v: &[u8]) -> Result<u64> {
    std::str::from_utf8(v)
        .ok()
        .filter(|t| !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit()))
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| anyhow!("bad {key} '{}'", crate::show::show(v)))
}

fn get_number(r: &Records, key: &str) -> Result<Option<u64>> {
    r.get(key.as_bytes()).map(|v| number(key, v)).transpose()
}

/// The sparse layout an entry's pax records describe, if any.
pub fn from_records(r: &Records) -> Result<Option<Sparse>> {
    if !r.pax.iter().any(|(k, _)| k.starts_with(b"GNU.sparse.")) {
        return Ok(None);
    }
    let name = r.get(b"GNU.sparse.name").map(<[u8]>::to_vec);
    let major = get_number(r, "GNU.sparse.major")?;
    let minor = get_number(r, "GNU.sparse.minor")?;
    if major.is_some() || minor.is_some() {
        if (major, minor) != (Some(1), Some(0)) {
            bail!(
                "GNU sparse format {}.{} is not supported (only 0.0, 0.1 and 1.0); \
                 re-create the archive without --sparse",
                major.unwrap_or(0),
                minor.unwrap_or(0)
            );
        }
        let real_size = get_number(r, "GNU.sparse.realsize")?
            .ok_or_else(|| anyhow!("GNU sparse 1.0 entry without GNU.sparse.realsize"))?;
        return Ok(Some(Sparse {
            name,
            real_size,
            map: None,
        }));
    }
    let real_size = get_number(r, "GNU.sparse.size")?
        .ok_or_else(|| anyhow!("GNU sparse entry without GNU.sparse.size"))?;
    let count = get_number(r, "GNU.sparse.numblocks")?
        .ok_or_else(|| anyhow!("GNU sparse entry without GNU.sparse.numblocks"))?;
    if count > MAX_SEGMENTS as u64 {
        bail!("a sparse map of {count} segments, more than {MAX_SEGMENTS}");
    }
    let map = if let Some(m) = r.get(b"GNU.sparse.map") {
        let nums = m
            .split(|&c| c == b',')
            .map(|v| number("GNU.sparse.map", v))
            .collect::<Result<Vec<u64>>>()?;
        if nums.len() % 2 != 0 {
            bail!("GNU.sparse.map has an odd count of numbers");
        }
        nums.chunks(2).map(|p| (p[0], p[1])).collect()
    } else {
        // 0.0: the pairs in order, as repeated records.
        let mut map = Vec::new();
        let mut off = None;
        for (k, v) in &r.pax {
            match k.as_slice() {
                b"GNU.sparse.offset" => off = Some(number("GNU.sparse.offset", v)?),
                b"GNU.sparse.numbytes" => {
                    let o = off
                        .take()
                        .ok_or_else(|| anyhow!("GNU.sparse.numbytes without an offset"))?;
                    map.push((o, number("GNU.sparse.numbytes", v)?));
                }
                _ => {}
            }
        }
        map
    };
    if map.len() as u64 != count {
        bail!(
            "the sparse map has {} segments, GNU.sparse.numblocks says {count}",
            map.len()
        );
    }
    Ok(Some(Sparse {
        name,
        real_size,
        map: Some(map),
    }))
}

/// Read a 1.0 map from the start of the data; returns it and the bytes it
/// took (padding included).
pub fn read_map(r: &mut impl Read) -> Result<(Vec<(u64, u64)>, u64)> {
    let mut used = 0u64;
    let mut line = || -> Result<u64> {
        let mut digits = Vec::new();
        loop {
            let mut c = [0u8];
            r.read_exact(&mut c)
                .context("the archive ends inside a sparse map")?;
            used += 1;
            match c[0] {
                b'\n' => break,
                d if d.is_ascii_digit() && digits.len() < 20 => digits.push(d),
                _ => bail!("malformed sparse map"),
            }
        }
        number("sparse map entry", &digits)
    };
    let count = line()?;
    if count > MAX_SEGMENTS as u64 {
        bail!("a sparse map of {count} segments, more than {MAX_SEGMENTS}");
    }
    let mut map = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let off = line()?;
        let len = line()?;
        map.push((off, len));
    }
    let padded = used.div_ceil(512) * 512;
    std::io::copy(&mut r.take(padded - used), &mut std::io::sink())
        .context("the archive ends inside a sparse map")?;
    Ok((map, padded))
}

/// Check `map` against the real size and the packed data's length.
pub fn check_map(map: &[(u64, u64)], real_size: u64, packed: u64) -> Result<()> {
    let mut end = 0u64;
    let mut total = 0u64;
    for &(off, len) in map {
        if off < end {
            bail!("sparse map segments out of order or overlapping at offset {off}");
        }
        end = off
            .checked_add(len)
            .filter(|&e| e <= real_size)
            .ok_or_else(|| {
                anyhow!("sparse map segment {off}+{len} beyond the real size {real_size}")
            })?;
        total = total
            .checked_add(len)
            .ok_or_else(|| anyhow!("sparse map too large"))?;
    }
    if total != packed {
        bail!("the sparse map holds {total} bytes, the entry {packed}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(pax: &[(&str, &str)]) -> Records {
        Records {
            pax: pax
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
            long_name: None,
            long_link: None,
            header: [0; 512],
        }
    }

    #[test]
    fn the_three_pax_formats() {
        let want = Some(vec![(10, 5), (100, 0)]);
        let s = from_records(&records(&[
            ("GNU.sparse.size", "100"),
            ("GNU.sparse.numblocks", "2"),
            ("GNU.sparse.offset", "10"),
            ("GNU.sparse.numbytes", "5"),
            ("GNU.sparse.offset", "100"),
            ("GNU.sparse.numbytes", "0"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!((s.real_size, s.map), (100, want.clone()));
        let s = from_records(&records(&[
            ("GNU.sparse.size", "100"),
            ("GNU.sparse.numblocks", "2"),
            ("GNU.sparse.name", "d/f"),
            ("GNU.sparse.map", "10,5,100,0"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!((s.real_size, s.map), (100, want));
        assert_eq!(s.name.as_deref(), Some(&b"d/f"[..]));
        let s = from_records(&records(&[
            ("GNU.sparse.major", "1"),
            ("GNU.sparse.minor", "0"),
            ("GNU.sparse.realsize", "7"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!((s.real_size, s.map), (7, None));
        assert!(from_records(&records(&[("path", "a")])).unwrap().is_none());
    }

    #[test]
    fn bad_maps_are_refused() {
        for pax in [
            &[("GNU.sparse.major", "2"), ("GNU.sparse.minor", "0")][..],
            &[("GNU.sparse.size", "9")],
            &[("GNU.sparse.size", "9"), ("GNU.sparse.numblocks", "1")],
            &[
                ("GNU.sparse.size", "9"),
                ("GNU.sparse.numblocks", "99999999"),
                ("GNU.sparse.map", "1,1"),
            ],
            &[
                ("GNU.sparse.size", "9"),
                ("GNU.sparse.numblocks", "1"),
                ("GNU.sparse.map", "1,x"),
            ],
        ] {
            assert!(from_records(&records(pax)).is_err(), "{pax:?}");
        }
        assert!(check_map(&[(0, 5), (4, 1)], 10, 6).is_err()); // overlap
        assert!(check_map(&[(8, 5)], 10, 5).is_err()); // past the end
        assert!(check_map(&[(u64::MAX, 5)], u64::MAX, 5).is_err()); // overflow
        assert!(check_map(&[(0, 5)], 10, 6).is_err()); // data left over
        check_map(&[(0, 5), (8, 2), (10, 0)], 10, 7).unwrap();
    }

    #[test]
    fn maps_in_the_data() {
        let mut data = b"2\n0\n5\n100\n3\n".to_vec();
        data.resize(512, 0);
        data.extend(b"hello");
        let mut r = &data[..];
        let (map, used) = read_map(&mut r).unwrap();
        assert_eq!((map, used), (vec![(0, 5), (100, 3)], 512));
        assert_eq!(r, b"hello");
        for bad in [&b"1\n0"[..], b"x\n", b"99999999999\n", b"1\n-1\n2\n"] {
            assert!(read_map(&mut &bad[..]).is_err());
        }
    }
}
