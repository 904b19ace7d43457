//! The metadata of each rootfs: `STATE_DIR/meta/NAME.json`.
//!
//! Kept out of `STATE_DIR/rootfs/` so that directory holds nothing but
//! trees (tools and people list it, and `rm -rf rootfs/*` cleans it). It
//! records where the tree came from (source, kind, resolved digest), its
//! os-release and, for OCI images, the image config that later runs the
//! app. It is renamed into place right after the tree; a tree without one
//! was imported by something else (or the run was killed in between).
//!
//! Every field has a default: files written by older versions still read.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub const FORMAT_VERSION: u32 = 1;

/// The parts of an OCI image config sdme uses to run the app.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OciConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=VALUE`, as in the image config.
    pub env: Vec<String>,
    /// `USER`, `UID`, `USER:GROUP` or `UID:GID`, as in the image config.
    pub user: Option<String>,
    pub working_dir: Option<String>,
    /// `80/tcp`, `53/udp`.
    pub exposed_ports: Vec<String>,
    pub volumes: Vec<String>,
    pub stop_signal: Option<String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Meta {
    pub format: u32,
    pub name: String,
    /// SOURCE as given on the command line.
    pub source: String,
    /// The source kind, as `--type=` names it (`tar`, `registry`, ...).
    pub kind: String,
    /// The resolved image manifest digest (`sha256:...`) for registry and
    /// OCI sources.
    pub digest: Option<String>,
    /// The platform chosen from a multi-platform image (`linux/amd64`).
    pub platform: Option<String>,
    /// RFC 3339, UTC.
    pub imported_at: String,
    /// Bytes of file data written into the tree.
    pub size: u64,
    /// `/etc/os-release` (or `/usr/lib/os-release`) of the tree.
    pub os_release: BTreeMap<String, String>,
    pub oci: Option<OciConfig>,
    /// For a rootfs made by a build (sdme.build(5)): what it was built from.
    pub build: Option<BuildInfo>,
}

/// How a built rootfs was made: the file, and each step with its cache key
/// (see `buildcache`); a build whose keys all match is up to date.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BuildInfo {
    /// The build file (`/etc/sdme/web.build`, or the original format's).
    pub file: String,
    /// SHA-256 of the file and its drop-ins, as read.
    pub file_hash: String,
    /// What the build started from, as keyed (`buildcache::base_key`).
    pub base: String,
    pub steps: Vec<BuildStepInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BuildStepInfo {
    /// `Run=...` or `Copy=...`, as `Step::text` writes it.
    pub text: String,
    /// `path:line` of the line that wrote it.
    pub at: String,
    pub key: String,
}

impl Meta {
    pub fn read(path: &Path) -> Result<Option<Meta>> {
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        serde_json::from_slice(&data)
            .map(Some)
            .with_context(|| format!("{}: not an sdme-import metadata file", path.display()))
    }

    pub fn to_json(&self) -> Result<Vec<u8>> {
        let mut v = serde_json::to_vec_pretty(self).context("cannot encode metadata")?;
        v.push(b'\n');
        Ok(v)
    }
}

/// Parse os-release text (KEY=VALUE, values optionally quoted).
pub fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let v = v.trim();
        let v = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with('\'') && v.ends_with('\'')))
        {
            unescape_shell(&v[1..v.len() - 1])
        } else {
            v.to_string()
        };
        m.insert(k.to_string(), v);
    }
    m
}

fn unescape_shell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            if let Some(n) = it.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Now, as RFC 3339 in UTC (`2026-11-29T05:40:00Z`).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

fn rfc3339(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_930_000), "2026-11-29T05:26:40Z");
    }

    #[test]
    fn os_release() {
        let m = parse_os_release(
            "PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nID=debian\n# c\nVERSION_ID='13'\nBAD LINE\nX=\"a\\\"b\"\n",
        );
        assert_eq!(m["PRETTY_NAME"], "Debian GNU/Linux 13 (trixie)");
        assert_eq!(m["ID"], "debian");
        assert_eq!(m["VERSION_ID"], "13");
        assert_eq!(m["X"], "a\"b");
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn roundtrip_and_defaults() {
        let m = Meta {
            format: FORMAT_VERSION,
            name: "deb".into(),
            oci: Some(OciConfig {
                cmd: vec!["nginx".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let j = m.to_json().unwrap();
        assert_eq!(serde_json::from_slice::<Meta>(&j).unwrap(), m);
        let old: Meta = serde_json::from_str("{\"name\":\"x\"}").unwrap();
        assert_eq!(old.name, "x");
        assert!(old.oci.is_none());
    }
}
