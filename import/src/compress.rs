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
        Compression::Xz => {
            let s = xz2::stream::Stream::new_stream_decoder(MAX_WINDOW, xz2::stream::CONCATENATED)
                .context("cannot start an xz decoder")?;
            Box::new(XzCapped(xz2::bufread::XzDecoder::new_stream(r, s)))
        }
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(r)
                .context("cannot start a zstd decoder")?;
            d.window_log_max(MAX_WINDOW.ilog2())
                .context("cannot start a zstd decoder")?;
            Box::new(d)
        }
    };
    Ok((c, d))
}

/// The most memory a decompressor may use for its window (xz: all of its
/// memory): the zstd default; xz -9 needs 65 MiB. What the stream asks for
/// would be allocated otherwise, up to 1.5 GiB for xz and 2 GiB for zstd
/// --long=31 (which zstd itself refuses to decompress without --long=31).
pub const MAX_WINDOW: u64 = 128 << 20;

/// An xz decoder whose memory limit error says what it means.
struct XzCapped<R>(R);

impl<R: Read> Read for XzCapped<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(out).map_err(|e| {
            if e.to_string() == xz2::stream::Error::MemLimit.to_string() {
                std::io::Error::other(format!(
                    "the xz stream needs more than {} of memory to decompress \
                     (its dictionary); recompress it with a smaller one (xz -9 needs 65M)",
                    crate::budget::human(MAX_WINDOW)
                ))
            } else {
                e
            }
        })
    }
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
    fn windows_are_capped() {
        let data = vec![3u8; 1 << 20];
        // xz with a 256 MiB dictionary (declared in the stream).
        let mut opts = xz2::stream::LzmaOptions::new_preset(1).unwrap();
        opts.dict_size(256 << 20);
        let mut filters = xz2::stream::Filters::new();
        filters.lzma2(&opts);
        let s =
            xz2::stream::Stream::new_stream_encoder(&filters, xz2::stream::Check::Crc64).unwrap();
        let mut e = xz2::write::XzEncoder::new_stream(Vec::new(), s);
        e.write_all(&data).unwrap();
        let packed = e.finish().unwrap();
        let (_, mut r) = decoder(&packed[..]).unwrap();
        let err = r.read_to_end(&mut Vec::new()).unwrap_err().to_string();
        assert!(err.contains("more than 128M"), "{err}");
        // zstd with a 256 MiB window.
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        e.window_log(28).unwrap();
        e.long_distance_matching(true).unwrap();
        e.include_contentsize(false).unwrap();
        e.write_all(&data).unwrap();
        let packed = e.finish().unwrap();
        let (_, mut r) = decoder(&packed[..]).unwrap();
        assert!(r.read_to_end(&mut Vec::new()).is_err());
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
