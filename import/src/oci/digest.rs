//! Content digests (`sha256:HEX`, `sha512:HEX`) and hashing while streaming.

use anyhow::{bail, Context, Result};
use sha2::{Digest as _, Sha256, Sha512};
use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest {
    pub algorithm: Algorithm,
    /// Lower-case hex, validated: safe as a file name.
    pub hex: String,
}

impl Digest {
    pub fn parse(s: &str) -> Result<Digest> {
        let (algo, hex) = s
            .split_once(':')
            .with_context(|| format!("{s:?}: not a digest (ALGORITHM:HEX)"))?;
        let (algorithm, len) = match algo {
            "sha256" => (Algorithm::Sha256, 64),
            "sha512" => (Algorithm::Sha512, 128),
            _ => bail!("{s:?}: unsupported digest algorithm {algo:?}"),
        };
        if hex.len() != len || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            bail!("{s:?}: malformed {algo} digest");
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }

    pub fn algo_name(&self) -> &'static str {
        match self.algorithm {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    pub fn of(algorithm: Algorithm, data: &[u8]) -> Digest {
        let mut h = Hasher::new(algorithm);
        h.update(data);
        h.finish()
    }

    /// Fails with a one-line error when `data` does not have this digest.
    pub fn verify(&self, what: &str, data: &[u8]) -> Result<()> {
        let got = Digest::of(self.algorithm, data);
        if &got != self {
            bail!("{what}: digest mismatch: expected {self}, got {got}");
        }
        Ok(())
    }

    /// Hashes a file and fails when it does not match.
    pub fn verify_file(&self, what: &str, path: &Path) -> Result<u64> {
        let mut f = std::fs::File::open(path)
            .with_context(|| format!("{what}: cannot open {}", path.display()))?;
        let mut h = Hasher::new(self.algorithm);
        let n = io::copy(&mut f, &mut h)
            .with_context(|| format!("{what}: reading {}", path.display()))?;
        let got = h.finish();
        if &got != self {
            bail!("{what}: digest mismatch: expected {self}, got {got}");
        }
        Ok(n)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algo_name(), self.hex)
    }
}

pub enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    pub fn new(a: Algorithm) -> Hasher {
        match a {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Digest {
        let (algorithm, bytes) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, h.finalize().to_vec()),
            Hasher::Sha512(h) => (Algorithm::Sha512, h.finalize().to_vec()),
        };
        let hex = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Digest { algorithm, hex }
    }
}

impl Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Copies `src` to `dst` while hashing; fails on a digest or size mismatch
/// (the caller then throws `dst` away).
pub fn copy_verified(
    what: &str,
    expected: &Digest,
    expected_size: Option<u64>,
    src: &mut dyn Read,
    dst: &mut dyn Write,
) -> Result<u64> {
    let mut h = Hasher::new(expected.algorithm);
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(anyhow::anyhow!("{what}: {e}")),
        };
        total += n as u64;
        if let Some(max) = expected_size {
            if total > max {
                bail!("{what}: larger than the {max} bytes its descriptor says");
            }
        }
        h.update(&buf[..n]);
        dst.write_all(&buf[..n])
            .with_context(|| format!("{what}: writing"))?;
    }
    if let Some(want) = expected_size {
        if total != want {
            bail!("{what}: {total} bytes, its descriptor says {want}");
        }
    }
    let got = h.finish();
    if &got != expected {
        bail!("{what}: digest mismatch: expected {expected}, got {got}");
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn parse_and_hash() {
        let d = Digest::parse(HELLO).unwrap();
        assert_eq!(d.to_string(), HELLO);
        assert_eq!(Digest::of(Algorithm::Sha256, b"hello"), d);
        d.verify("x", b"hello").unwrap();
        let e = d.verify("blob", b"hellO").unwrap_err().to_string();
        assert!(e.starts_with("blob: digest mismatch"), "{e}");
        for bad in ["sha256:XYZ", "md5:abc", "sha256", "sha256:../../etc/passwd"] {
            assert!(Digest::parse(bad).is_err(), "{bad}");
        }
        assert!(Digest::parse(&format!("sha512:{}", "a".repeat(128))).is_ok());
    }

    #[test]
    fn copy_verified_checks_digest_and_size() {
        let d = Digest::parse(HELLO).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            copy_verified("b", &d, Some(5), &mut &b"hello"[..], &mut out).unwrap(),
            5
        );
        assert_eq!(out, b"hello");
        assert!(copy_verified("b", &d, None, &mut &b"hallo"[..], &mut Vec::new()).is_err());
        let e = copy_verified("b", &d, Some(4), &mut &b"hello"[..], &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("descriptor"), "{e}");
    }
}
