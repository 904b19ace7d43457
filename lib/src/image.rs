//! Root file systems declared in files: `NAME.image` files and `Image=` in
//! a `.container`. Either becomes a one-shot `sdme-image-NAME.service` that
//! runs `sdme-import --if-missing` before the container's layers are
//! prepared, so an image-based deployment ships only configuration.
//!
//! - `NAME.image` imports into `/var/lib/sdme/rootfs/NAME`; a container
//!   uses it with `Rootfs=NAME.image`.
//! - `Image=REF` in a `.container` imports into a rootfs named by
//!   [`inline_rootfs_name`]: readable, deterministic and different for
//!   different references. Containers that name the same REF share one
//!   image unit.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::diag::Diag;
use crate::dropins::parse_with_dropins;
use crate::search::{Found, UnitName};
use crate::sections::{Install, Kind, Shared};
use crate::syntax::{Entry, Section, UnitFile};
use crate::value::check_abs_path;

/// What `sdme-import` is asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportSpec {
    /// The source as sdme-import takes it: registry reference, URL, path.
    pub source: String,
    /// `--platform=OS/ARCH[/VARIANT]`.
    pub platform: Option<String>,
    /// `--install-packages=auto|yes|no`.
    pub install_packages: Option<String>,
    /// `--ca-file=PATH`.
    pub ca_file: Option<String>,
    /// `--max-size=BYTES`.
    pub max_size: Option<u64>,
}

impl ImportSpec {
    pub fn new(source: &str) -> ImportSpec {
        ImportSpec {
            source: source.to_string(),
            platform: None,
            install_packages: None,
            ca_file: None,
            max_size: None,
        }
    }

    /// One `[Image]` line; an empty value resets the key.
    fn key(&mut self, b: &mut Shared, e: &Entry) {
        let v = e.value.as_str();
        let opt = |b: &mut Shared, r: Result<(), String>| {
            (!v.is_empty() && b.check(e, r).is_some()).then(|| v.to_string())
        };
        match e.key.as_str() {
            "Image" => {
                self.source = if v.is_empty() {
                    String::new()
                } else {
                    opt(b, check_image_source(v)).unwrap_or_default()
                };
            }
            "Platform" => self.platform = opt(b, check_platform(v)),
            "InstallPackages" => {
                let r = match v {
                    "auto" | "yes" | "no" => Ok(()),
                    _ => Err("expected auto, yes or no".into()),
                };
                self.install_packages = opt(b, r);
            }
            "CAFile" => self.ca_file = opt(b, check_abs_path(v, "CA file")),
            "MaxSize" => {
                self.max_size = if v.is_empty() {
                    None
                } else {
                    b.check(e, parse_size(v))
                };
            }
            k => b.err(e, format!("unknown key '{k}' in section [Image]")),
        }
    }
}

/// An image unit to generate: from a `.image` file, or from the first
/// `.container` (in file-name order) that names an inline `Image=`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The rootfs name: `/var/lib/sdme/rootfs/NAME`.
    pub name: String,
    /// The file it comes from (`SourcePath=`).
    pub source: PathBuf,
    /// Whether it comes from `Image=` in a `.container`.
    pub inline: bool,
    pub spec: ImportSpec,
    /// `[Unit]`, `[Service]` and `X-` sections of a `.image` file.
    pub passthrough: Vec<Section>,
    pub install: Install,
    /// The machines with a generated overlay mount whose rootfs this is:
    /// their `sdme-prepare@MACHINE.service` (an instance of a static
    /// template, which cannot name the image itself) must wait for the
    /// import, so the image unit orders itself `Before=` them.
    pub prepared_by: Vec<String>,
}

/// `sdme-image-NAME.service`.
pub fn image_service_name(name: &str) -> String {
    format!("sdme-image-{name}.service")
}

/// Longest source accepted (a path is at most PATH_MAX; references and
/// URLs are shorter in practice).
const MAX_SOURCE: usize = 4095;

/// Check an `Image=` value: what sdme-import will be given as SOURCE.
/// Whether it is a reference, URL or file is sdme-import's business; here
/// only what would break the unit or be misread is refused.
pub fn check_image_source(v: &str) -> Result<(), String> {
    if v.len() > MAX_SOURCE {
        return Err(format!("longer than {MAX_SOURCE} bytes"));
    }
    if let Some(c) = v.chars().find(|c| c.is_control()) {
        return Err(format!(
            "contains the control character '{}'",
            c.escape_default()
        ));
    }
    if v.starts_with('-') {
        return Err("must not start with '-' (it would be read as an option)".into());
    }
    if v.starts_with("./") || v.starts_with("../") || v == "." || v == ".." || v.starts_with('~') {
        return Err(
            "a file must be given by its absolute path (units run in '/', without a home directory)"
                .into(),
        );
    }
    if v.starts_with('/') {
        check_abs_path(v, "image file")?;
    }
    Ok(())
}

/// File-name extensions left out of an inline image's readable part.
const ARCHIVE_EXTENSIONS: [&str; 16] = [
    ".tar", ".gz", ".tgz", ".xz", ".txz", ".zst", ".tzst", ".bz2", ".tbz2", ".tbz", ".qcow2",
    ".raw", ".img", ".oci", ".ova", ".zstd",
];

/// Longest readable part of an inline image's rootfs name.
const SLUG_MAX: usize = 40;

/// The rootfs name of `Image=REF`: `SLUG-HASH`, where SLUG is REF's last
/// path component (`debian:12` gives `debian-12`; archive extensions,
/// `@sha256:` pins and URL schemes left out; characters outside
/// `A-Za-z0-9_.-` become `-`; at most 40 bytes; `image` when nothing is
/// left) and HASH is the first 16 hex digits of the SHA-256 of REF exactly
/// as written. Different references (even with the same SLUG) give
/// different names; the same reference always gives the same name. The
/// result is a valid rootfs name (at most 57 bytes).
pub fn inline_rootfs_name(source: &str) -> String {
    let mut s = source;
    if let Some((_, rest)) = s.split_once("://") {
        s = rest;
    }
    if let Some(i) = s.find("@sha256:") {
        s = &s[..i];
    }
    let s = s.trim_end_matches('/');
    let mut last = s.rsplit('/').next().unwrap_or_default();
    loop {
        let lower = last.to_ascii_lowercase();
        match ARCHIVE_EXTENSIONS.iter().find(|e| lower.ends_with(*e)) {
            Some(e) if last.len() > e.len() => last = &last[..last.len() - e.len()],
            _ => break,
        }
    }
    let mut slug = String::with_capacity(SLUG_MAX);
    for c in last.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
            c
        } else {
            '-'
        };
        // No "..", no runs of '-' from replaced characters.
        if (c == '.' || c == '-') && slug.ends_with(c) {
            continue;
        }
        slug.push(c);
        if slug.len() == SLUG_MAX {
            break;
        }
    }
    let slug = slug.trim_matches(|c| c == '.' || c == '-');
    let slug = if slug.is_empty() { "image" } else { slug };
    let digest = Sha256::digest(source.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{slug}-{hex}")
}

/// `Platform=`: `OS/ARCH[/VARIANT]` as OCI image indexes spell them.
fn check_platform(v: &str) -> Result<(), String> {
    let parts: Vec<&str> = v.split('/').collect();
    let ok = (2..=3).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err("expected OS/ARCH[/VARIANT] in lower case, such as linux/amd64 or linux/arm/v7".into())
    }
}

/// `MaxSize=`: bytes, or a number with K, M, G or T (powers of 1024).
fn parse_size(v: &str) -> Result<u64, String> {
    let err = || "expected a size in bytes, or with K, M, G or T (1024-based), such as 20G".into();
    let (num, mult) = match v.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (v, 1u64),
        Some((i, _)) => {
            let mult = match &v[i..] {
                "K" => 1u64 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                "T" => 1 << 40,
                _ => return Err(err()),
            };
            (&v[..i], mult)
        }
    };
    let n: u64 = num.parse().map_err(|_| err())?;
    if n == 0 {
        return Err("a size of 0 would refuse every image".into());
    }
    n.checked_mul(mult)
        .ok_or_else(|| "too large for a size in bytes".into())
}

/// `[Service]` keys the image unit sets itself.
const RESERVED_SERVICE_KEYS: [(&str, &str); 3] = [
    (
        "ExecStart",
        "sdme runs sdme-import; set the source with Image= in [Image]",
    ),
    ("Type", "the image unit is a Type=oneshot"),
    (
        "RemainAfterExit",
        "the image unit stays active once the rootfs is there",
    ),
];

/// The shared sections of a `.image` file.
const IMAGE_KIND: Kind = Kind {
    ext: "image",
    own: "Image",
    reserved_service: &RESERVED_SERVICE_KEYS,
    no_reset: &[],
};

impl Image {
    /// Validate `found` (a `.image` file) with its drop-ins.
    pub fn load(found: &Found) -> Result<Image, Vec<Diag>> {
        let file = parse_with_dropins(found)?;
        Image::from_unit(&found.name, &found.path, file)
    }

    /// Validate a parsed `.image` file named `name`.
    pub fn from_unit(name: &UnitName, source: &Path, file: UnitFile) -> Result<Image, Vec<Diag>> {
        let mut b = Shared::new(name.clone(), source);
        let stem = b.rootfs_stem("an image");
        let mut spec = ImportSpec::new("");
        let has_image = file.section("Image").is_some();
        b.sections(file, &IMAGE_KIND, |b, e| spec.key(b, e));
        if !has_image {
            b.diags.push(Diag::file(source, "no [Image] section"));
        } else if spec.source.is_empty() && b.diags.is_empty() {
            b.diags.push(Diag::file(
                source,
                "no Image= in [Image]: say what to import (a registry reference, URL or file)",
            ));
        }
        if let Some(at) = b.install_line("DefaultInstance") {
            b.diags.push(Diag::at(
                &at,
                "DefaultInstance= only applies to container templates",
            ));
        }
        b.check_aliases(false);
        if let Some(diags) = b.failed() {
            return Err(diags);
        }
        Ok(Image {
            name: stem,
            source: source.to_path_buf(),
            inline: false,
            spec,
            passthrough: b.passthrough,
            install: b.install,
            prepared_by: Vec::new(),
        })
    }

    /// The image unit of `Image=REF` in the container file `source`.
    pub fn inline(reference: &str, source: &Path) -> Image {
        Image {
            name: inline_rootfs_name(reference),
            source: source.to_path_buf(),
            inline: true,
            spec: ImportSpec::new(reference),
            passthrough: Vec::new(),
            install: Install::default(),
            prepared_by: Vec::new(),
        }
    }

    /// The image unit of an inline `App=REF`: the application's tree is
    /// imported as it is (`--install-packages=no`), never with systemd and
    /// D-Bus added through its package manager: it runs inside the
    /// container's OS, it does not boot.
    pub fn inline_app(reference: &str, source: &Path) -> Image {
        let mut img = Image::inline(reference, source);
        img.spec.install_packages = Some("no".into());
        img
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::check_rootfs_name;
    use proptest::prelude::*;

    fn load(name: &str, text: &str) -> Result<Image, Vec<String>> {
        let path = Path::new("/etc/sdme/x.image");
        let f = UnitFile::parse(path, text.as_bytes()).unwrap();
        Image::from_unit(&UnitName::from_stem(name), path, f)
            .map_err(|v| v.into_iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn inline_names_are_readable_and_distinct() {
        let n = inline_rootfs_name("docker.io/library/debian:12");
        assert!(
            n.starts_with("debian-12-") && n.len() == "debian-12-".len() + 16,
            "{n}"
        );
        assert_eq!(n, inline_rootfs_name("docker.io/library/debian:12"));
        assert_ne!(n, inline_rootfs_name("debian:12"));
        assert!(inline_rootfs_name("/srv/img/trixie.tar.zst").starts_with("trixie-"));
        assert!(inline_rootfs_name("https://x.org/a/b/disk.QCOW2").starts_with("disk-"));
        assert!(inline_rootfs_name("quay.io/a/b@sha256:0123abcd").starts_with("b-"));
        assert!(inline_rootfs_name("/srv/oci/").starts_with("oci-"));
        assert!(inline_rootfs_name("https://x.org/").starts_with("x.org-"));
        assert!(inline_rootfs_name("...").starts_with("image-"));
        assert!(inline_rootfs_name("a::b..c").starts_with("a-b.c-"));
    }

    proptest! {
        #[test]
        fn inline_names_are_valid_rootfs_names(s in any::<String>()) {
            let n = inline_rootfs_name(&s);
            prop_assert!(check_rootfs_name(&n).is_ok(), "{:?} -> {}", s, n);
        }
    }

    #[test]
    fn sources() {
        for good in [
            "debian:12",
            "/srv/a b.tar",
            "https://x/y.tar.gz",
            "localhost:5000/x@sha256:ab",
        ] {
            assert_eq!(check_image_source(good), Ok(()), "{good}");
        }
        for bad in [
            "-x", "./a.tar", "../a", "~/a.tar", "/a/../b", "a\nb", "/a//b",
        ] {
            assert!(check_image_source(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn image_files() {
        let i = load(
            "deb",
            "[Image]\nImage=debian:12\nPlatform=linux/arm64/v8\nInstallPackages=no\nCAFile=/etc/ca.pem\nMaxSize=2G\n[Service]\nTimeoutStartSec=1h\n",
        )
        .unwrap();
        assert_eq!(i.name, "deb");
        assert_eq!(i.spec.platform.as_deref(), Some("linux/arm64/v8"));
        assert_eq!(i.spec.max_size, Some(2 << 30));
        let e = load("deb", "[Image]\n").unwrap_err();
        assert!(
            e[0].ends_with(
                "no Image= in [Image]: say what to import (a registry reference, URL or file)"
            ),
            "{e:?}"
        );
        let e = load(
            "deb",
            "[Image]\nImage=x\nPlatform=amd64\nInstallPackages=maybe\nMaxSize=1X\nCAFile=ca\nFoo=1\n[Service]\nType=simple\n",
        )
        .unwrap_err();
        assert_eq!(e.len(), 6, "{e:?}");
        assert!(
            e[0].contains(":3: Platform=amd64: expected OS/ARCH"),
            "{e:?}"
        );
        let e = load("a@", "[Image]\nImage=x\n").unwrap_err();
        assert!(
            e[0].contains("file name 'a@' cannot name an image"),
            "{e:?}"
        );
        assert_eq!(
            parse_size("0"),
            Err("a size of 0 would refuse every image".into())
        );
        assert!(parse_size("99999999999T").is_err());
        assert_eq!(parse_size("512"), Ok(512));
    }
}
