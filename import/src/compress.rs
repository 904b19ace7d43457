//! Compressed streams, told apart by their magic bytes.

use std::io::{BufRead, Read, Write};

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

/// The compression an output file's name asks for: `.tar`, `.tar.gz` or
/// `.tgz`, `.tar.bz2`, `.tar.xz` or `.txz`, `.tar.zst` or `.tzst`.
pub fn for_file_name(name: &str) -> Option<Compression> {
    let n = name.to_ascii_lowercase();
    [
        (".tar", Compression::None),
        (".tar.gz", Compression::Gzip),
        (".tgz", Compression::Gzip),
        (".tar.bz2", Compression::Bzip2),
        (".tar.xz", Compression::Xz),
        (".txz", Compression::Xz),
        (".tar.zst", Compression::Zstd),
        (".tzst", Compression::Zstd),
    ]
    .into_iter()
    .find(|(suffix, _)| n.ends_with(suffix))
    .map(|(_, c)| c)
}

/// A compressing writer; [`Encoder::finish`] ends the stream and reports
/// what dropping it would lose.
pub enum Encoder<W: Write> {
    None(W),
    Gzip(flate2::write::GzEncoder<W>),
    Bzip2(bzip2::write::BzEncoder<W>),
    Xz(xz2::write::XzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    /// Default levels: gzip 6, bzip2 9, xz 6, zstd 3 (each tool's own).
    pub fn new(c: Compression, w: W) -> Result<Encoder<W>> {
        Ok(match c {
            Compression::None => Encoder::None(w),
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                w,
                flate2::Compression::default(),
            )),
            Compression::Bzip2 => {
                Encoder::Bzip2(bzip2::write::BzEncoder::new(w, bzip2::Compression::best()))
            }
            Compression::Xz => Encoder::Xz(xz2::write::XzEncoder::new(w, 6)),
            Compression::Zstd => Encoder::Zstd(
                zstd::stream::write::Encoder::new(w, 3).context("cannot start a zstd encoder")?,
            ),
        })
    }

    pub fn finish(self) -> std::io::Result<W> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Bzip2(e) => e.finish(),
            Encoder::Xz(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Bzip2(e) => e.write(buf),
            Encoder::Xz(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Bzip2(e) => e.flush(),
            Encoder::Xz(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

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
    fn encoders_by_file_name() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 13) as u8).collect();
        for (name, want) in [
            ("a.tar", Compression::None),
            ("a.TAR.GZ", Compression::Gzip),
            ("a.tgz", Compression::Gzip),
            ("a.tar.bz2", Compression::Bzip2),
            ("a.tar.xz", Compression::Xz),
            ("a.tar.zst", Compression::Zstd),
        ] {
            let c = for_file_name(name).unwrap();
            assert_eq!(c, want, "{name}");
            let mut e = Encoder::new(c, Vec::new()).unwrap();
            e.write_all(&data).unwrap();
            let packed = e.finish().unwrap();
            let (got, mut r) = decoder(&packed[..]).unwrap();
            assert_eq!(got, c);
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, data, "{name}");
        }
        for bad in ["a.zip", "a.gz", "a", "a.tar.lz4"] {
            assert!(for_file_name(bad).is_none(), "{bad}");
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
