//! What an import SOURCE is.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::compress;

/// The kinds of source `sdme-import` understands, detected from SOURCE or
/// forced with `--type=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Directory,
    Tarball,
    Url,
    Registry,
    OciLayout,
    OciArchive,
    DockerArchive,
    DiskImage,
}

impl Kind {
    /// The `--type=` names, in the order of the man page.
    pub const TYPE_NAMES: [&'static str; 8] = [
        "dir",
        "tar",
        "url",
        "registry",
        "oci-layout",
        "oci-archive",
        "docker-archive",
        "disk",
    ];

    pub fn from_type_name(s: &str) -> Option<Kind> {
        Some(match s {
            "dir" => Kind::Directory,
            "tar" => Kind::Tarball,
            "url" => Kind::Url,
            "registry" => Kind::Registry,
            "oci-layout" => Kind::OciLayout,
            "oci-archive" => Kind::OciArchive,
            "docker-archive" => Kind::DockerArchive,
            "disk" => Kind::DiskImage,
            _ => return None,
        })
    }

    /// The `--type=` name (also what the metadata file records).
    pub fn type_name(self) -> &'static str {
        match self {
            Kind::Directory => "dir",
            Kind::Tarball => "tar",
            Kind::Url => "url",
            Kind::Registry => "registry",
            Kind::OciLayout => "oci-layout",
            Kind::OciArchive => "oci-archive",
            Kind::DockerArchive => "docker-archive",
            Kind::DiskImage => "disk",
        }
    }
}

/// The digest a registry reference is pinned to (`...@sha256:HEX`).
pub fn pinned_digest(source: &str) -> Option<&str> {
    let (_, d) = source.rsplit_once('@')?;
    let hex = d.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(d)
}

/// Whether SOURCE has the shape of a registry reference
/// (`[HOST[:PORT]/]PATH[:TAG][@DIGEST]`). The OCI importer parses it for
/// real; this only decides what to try.
pub fn looks_like_reference(s: &str) -> bool {
    if s.is_empty() || s.starts_with(['/', '.', '-', ':', '@']) || s.contains("://") {
        return false;
    }
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':' | '@'))
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
}

/// Decide what SOURCE is: a URL by its scheme, an existing path by its
/// contents, otherwise a registry reference.
pub fn detect(source: &str) -> Result<Kind> {
    if source.starts_with("http://") || source.starts_with("https://") {
        return Ok(Kind::Url);
    }
    let path = Path::new(source);
    match std::fs::metadata(path) {
        Ok(md) if md.is_dir() => {
            if path.join("oci-layout").is_file() && path.join("index.json").is_file() {
                Ok(Kind::OciLayout)
            } else {
                Ok(Kind::Directory)
            }
        }
        Ok(md) if md.is_file() || md.file_type_is_block() => detect_file(path),
        Ok(_) => bail!("not a directory, a regular file or a block device"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // PATH:TAG names one image of an OCI layout or image archive.
            if let (path, Some(_)) = crate::oci::layout::split_tag(source) {
                if path.join("oci-layout").is_file() {
                    return Ok(Kind::OciLayout);
                }
                if path.is_file() {
                    if let Ok(k @ (Kind::OciArchive | Kind::DockerArchive)) = detect_file(&path) {
                        return Ok(k);
                    }
                }
            }
            if source.contains('/') && (source.starts_with('/') || source.starts_with('.')) {
                bail!("no such file or directory");
            }
            if looks_like_reference(source) {
                Ok(Kind::Registry)
            } else {
                bail!("no such file or directory, and not a registry reference")
            }
        }
        Err(e) => bail!("{e}"),
    }
}

trait BlockDev {
    fn file_type_is_block(&self) -> bool;
}

impl BlockDev for std::fs::Metadata {
    fn file_type_is_block(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.file_type().is_block_device()
    }
}

/// How many tar headers and bytes we look at to tell a rootfs tarball from
/// an image archive.
const SNIFF_ENTRIES: usize = 32;
const SNIFF_BYTES: u64 = 64 << 20;

fn detect_file(path: &Path) -> Result<Kind> {
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut r = BufReader::with_capacity(1 << 16, f);
    let head = r
        .fill_buf()
        .with_context(|| format!("cannot read {}", path.display()))?
        .to_vec();
    if is_disk_image(&head, path)? {
        return Ok(Kind::DiskImage);
    }
    let (comp, dec) = compress::decoder(r)?;
    match sniff_tar(dec) {
        Ok(Some(k)) => Ok(k),
        Ok(None) => Ok(Kind::Tarball),
        Err(e) if comp != compress::Compression::None => {
            Err(e.context(format!("corrupt {} data, or not a tarball", comp.name())))
        }
        Err(_) => bail!("unknown format (not a tar archive, a compressed tarball or a disk image)"),
    }
}

/// QCOW2 by magic; a raw disk by its MBR/GPT signature or an ext2/3/4
/// superblock.
fn is_disk_image(head: &[u8], path: &Path) -> Result<bool> {
    if head.starts_with(b"QFI\xfb") {
        return Ok(true);
    }
    // Signatures beyond the first read: re-read the first 2 KiB.
    let mut buf = vec![0u8; 2048];
    let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut n = 0;
    while n < buf.len() {
        let k = f
            .read(&mut buf[n..])
            .with_context(|| format!("cannot read {}", path.display()))?;
        if k == 0 {
            break;
        }
        n += k;
    }
    buf.truncate(n);
    let gpt = buf.len() >= 520 && &buf[512..520] == b"EFI PART";
    let mbr = buf.len() >= 512 && buf[510] == 0x55 && buf[511] == 0xaa && !is_tar_header(&buf);
    let ext = buf.len() >= 1082 && buf[1080] == 0x53 && buf[1081] == 0xef;
    // Also xfs, btrfs, squashfs and erofs without partition table.
    Ok(gpt || mbr || ext || crate::disk::probe::detect(&f)?.is_some())
}

fn is_tar_header(b: &[u8]) -> bool {
    b.len() >= 263 && (&b[257..262] == b"ustar")
}

/// Look at the first entries of a tar stream: image archives have their
/// layout files at the top.
fn sniff_tar(r: impl Read) -> Result<Option<Kind>> {
    let mut ar = tar::Archive::new(crate::targuard::Guard::new(r.take(SNIFF_BYTES)));
    let mut seen = 0;
    for e in ar.entries()? {
        let e = match e {
            Ok(e) => e,
            Err(_) if seen > 0 => break, // past the sniff window
            Err(e) => return Err(e.into()),
        };
        let p = e.path_bytes();
        let p = p.strip_prefix(b"./").unwrap_or(&p);
        match p {
            b"oci-layout" | b"index.json" => return Ok(Some(Kind::OciArchive)),
            b"manifest.json" | b"repositories" => return Ok(Some(Kind::DockerArchive)),
            _ if p.starts_with(b"blobs/sha256/") => return Ok(Some(Kind::OciArchive)),
            // docker save puts its (large) layers before manifest.json.
            _ if crate::oci::layout::docker_save_name(p) => return Ok(Some(Kind::DockerArchive)),
            _ => {}
        }
        seen += 1;
        if seen >= SNIFF_ENTRIES {
            break;
        }
    }
    if seen == 0 {
        bail!("empty or not a tar archive");
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(pinned_digest(&format!("quay.io/x/y@{d}")), Some(d.as_str()));
        assert_eq!(pinned_digest("debian:12"), None);
        assert_eq!(pinned_digest("x@sha256:abc"), None);
    }

    #[test]
    fn references() {
        for ok in [
            "debian:12",
            "docker.io/library/debian:12",
            "localhost:5000/x:tag",
            "quay.io/x/y@sha256:0123",
        ] {
            assert!(looks_like_reference(ok), "{ok}");
        }
        for bad in ["/x", "./x", "", "a b", "http://x/y", "-x"] {
            assert!(!looks_like_reference(bad), "{bad}");
        }
    }

    #[test]
    fn types() {
        for n in Kind::TYPE_NAMES {
            assert_eq!(Kind::from_type_name(n).unwrap().type_name(), n);
        }
    }

    fn tar_with(names: &[&str]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for n in names {
            let mut h = tar::Header::new_gnu();
            h.set_size(1);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, n, &b"x"[..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn detects_files() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("a");
        std::fs::write(&p, tar_with(&["etc/os-release", "bin/sh"])).unwrap();
        assert_eq!(detect(p.to_str().unwrap()).unwrap(), Kind::Tarball);
        std::fs::write(&p, tar_with(&["oci-layout", "index.json"])).unwrap();
        assert_eq!(detect(p.to_str().unwrap()).unwrap(), Kind::OciArchive);
        std::fs::write(&p, tar_with(&["abc/layer.tar", "manifest.json"])).unwrap();
        assert_eq!(detect(p.to_str().unwrap()).unwrap(), Kind::DockerArchive);
        std::fs::write(&p, b"QFI\xfb\0\0\0\x03").unwrap();
        assert_eq!(detect(p.to_str().unwrap()).unwrap(), Kind::DiskImage);
        std::fs::write(&p, b"hello, this is not an archive").unwrap();
        let e = detect(p.to_str().unwrap()).unwrap_err().to_string();
        assert!(e.contains("unknown format"), "{e}");
        assert_eq!(detect(t.path().to_str().unwrap()).unwrap(), Kind::Directory);
        assert_eq!(detect("debian:12").unwrap(), Kind::Registry);
        assert!(detect("/nonexistent/x.tar").is_err());
        assert_eq!(detect("https://x/y.tar").unwrap(), Kind::Url);
    }
}
