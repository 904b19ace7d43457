//! Compressed streams, told apart by their magic bytes.

use std::io::{BufRead, Read};

use anyhow::{Context, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }
}

/// The compression of a stream that starts with `head`.
pub fn detect(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(b"BZh") {
        Compression::Bzip2
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Compression::Xz
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// A reader of the decompressed bytes of `r`, whose compression is read
/// from its first bytes. Concatenated members (pigz, pbzip2, pixz) are all
/// read.
pub fn decoder<'a, R: BufRead + Send + 'a>(
    mut r: R,
) -> Result<(Compression, Box<dyn Read + Send + 'a>)> {
    let c = detect(r.fill_buf().context("cannot read the source")?);
    let d: Box<dyn Read + Send + 'a> = match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(r)),
        Compression::Xz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(r)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(r).context("cannot start a zstd decoder")?,
        ),
    };
    Ok((c, d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn roundtrip(c: Compression, data: &[u8]) -> Vec<u8> {
        match c {
            Compression::None => data.to_vec(),
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Bzip2 => {
                let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Xz => {
                let mut e = xz2::write::XzEncoder::new(Vec::new(), 1);
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Zstd => zstd::encode_all(data, 1).unwrap(),
        }
    }

    #[test]
    fn every_compression() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Bzip2,
            Compression::Xz,
            Compression::Zstd,
        ] {
            let packed = roundtrip(c, &data);
            // Two members back to back, as parallel compressors write them.
            let mut twice = packed.clone();
            if c != Compression::None {
                twice.extend_from_slice(&packed);
            }
            let (got, mut r) = decoder(&twice[..]).unwrap();
            assert_eq!(got, c);
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            let want = if c == Compression::None { 1 } else { 2 };
            assert_eq!(out.len(), data.len() * want, "{c:?}");
            assert_eq!(&out[..data.len()], &data[..]);
        }
    }

    #[test]
    fn corrupt_gzip_is_an_error() {
        let mut packed = roundtrip(Compression::Gzip, &[7u8; 10000]);
        let n = packed.len();
        packed[n / 2] ^= 0xff;
        packed.truncate(n - 4);
        let (_, mut r) = decoder(&packed[..]).unwrap();
        let mut out = Vec::new();
        assert!(r.read_to_end(&mut out).is_err());
    }
}
