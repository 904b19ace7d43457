//! OCI and Docker schema-2 manifests, indexes and image configs, and the
//! choice of a platform from an index.

use super::digest::Digest;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// What a registry is told we accept.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Manifests and configs are small; anything bigger is refused.
pub const MAX_JSON: u64 = 4 << 20;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    pub fn digest(&self) -> Result<Digest> {
        Digest::parse(&self.digest)
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// `OS/ARCH[/VARIANT]` as `--platform` takes it.
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok =
            |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| ok(p)) {
            bail!("--platform={s:?}: expected OS/ARCH[/VARIANT], e.g. linux/arm64");
        }
        Ok(Platform {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }

    /// The platform this program runs on, in OCI's names.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "powerpc64" => ("ppc64le", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: variant.map(str::to_string),
        }
    }

    /// Whether an index entry's platform satisfies this wanted platform.
    /// A wanted variant must match (arm64's `v8` equals no variant); without
    /// one any variant does.
    pub fn matches(&self, have: &Platform) -> bool {
        if self.os != have.os || self.architecture != have.architecture {
            return false;
        }
        let norm = |v: &Option<String>| -> Option<String> {
            match (self.architecture.as_str(), v.as_deref()) {
                ("arm64", None) => Some("v8".into()),
                (_, v) => v.map(str::to_string),
            }
        };
        match &self.variant {
            None => true,
            Some(_) => norm(&self.variant) == norm(&have.variant),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

#[derive(Debug, Clone)]
pub enum Document {
    Index(Vec<Descriptor>),
    Manifest(Manifest),
}

#[derive(Debug, Clone)]
pub struct Manifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// Parses a manifest or index; `content_type` (from HTTP) wins over the
/// document's own mediaType, which wins over its shape.
pub fn parse(what: &str, content_type: Option<&str>, data: &[u8]) -> Result<Document> {
    let raw: Raw =
        serde_json::from_slice(data).with_context(|| format!("{what}: not a JSON manifest"))?;
    let ct = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
        .filter(|c| c.contains("manifest") || c.contains("index"));
    let mt = ct.or(raw.media_type.clone()).unwrap_or_default();
    if raw.schema_version == Some(1) || mt.contains("manifest.v1+prettyjws") {
        bail!("{what}: Docker schema 1 manifests are not supported");
    }
    let is_index = match mt.as_str() {
        OCI_INDEX | DOCKER_LIST => true,
        OCI_MANIFEST | DOCKER_MANIFEST => false,
        "" => raw.manifests.is_some(),
        other => bail!("{what}: unsupported manifest media type {other:?}"),
    };
    if is_index {
        let m = raw
            .manifests
            .with_context(|| format!("{what}: index without manifests"))?;
        return Ok(Document::Index(m));
    }
    let config = raw
        .config
        .with_context(|| format!("{what}: manifest without config"))?;
    let layers = raw.layers.unwrap_or_default();
    for l in &layers {
        if !is_layer_type(&l.media_type) {
            bail!(
                "{what}: layer {} has media type {:?}, not a file system layer",
                l.digest,
                l.media_type
            );
        }
    }
    if !config.media_type.is_empty()
        && !matches!(
            config.media_type.as_str(),
            "application/vnd.oci.image.config.v1+json"
                | "application/vnd.docker.container.image.v1+json"
        )
    {
        bail!(
            "{what}: config media type {:?} is not a container image (an artifact?)",
            config.media_type
        );
    }
    Ok(Document::Manifest(Manifest { config, layers }))
}

fn is_layer_type(t: &str) -> bool {
    t.is_empty()
        || t.starts_with("application/vnd.oci.image.layer.")
        || t.starts_with("application/vnd.docker.image.rootfs.")
}

/// Picks the manifest for `want` from an index; attestations and other
/// unknown/unknown entries are skipped. Fails with one line listing what
/// the index offers.
pub fn choose<'a>(
    what: &str,
    entries: &'a [Descriptor],
    want: &Platform,
) -> Result<&'a Descriptor> {
    let candidates: Vec<&Descriptor> = entries
        .iter()
        .filter(|d| {
            !d.annotations.contains_key("vnd.docker.reference.type")
                && matches!(
                    d.media_type.as_str(),
                    OCI_MANIFEST | DOCKER_MANIFEST | OCI_INDEX | DOCKER_LIST | ""
                )
        })
        .collect();
    if let Some(d) = candidates
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| want.matches(p)))
    {
        return Ok(d);
    }
    let offered: Vec<String> = candidates
        .iter()
        .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
        .collect();
    bail!(
        "{what}: no manifest for platform {want} (the index has: {})",
        if offered.is_empty() {
            "none".to_string()
        } else {
            offered.join(", ")
        }
    )
}

/// The parts of an image config that say how to run it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    pub stop_signal: Option<String>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: Option<RunConfig>,
    #[serde(default)]
    pub rootfs: RootFs,
}

impl ImageConfig {
    pub fn parse(what: &str, data: &[u8]) -> Result<ImageConfig> {
        serde_json::from_slice(data).with_context(|| format!("{what}: not an image config"))
    }

    pub fn platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(p: &str) -> String {
        format!("sha256:{}", p.repeat(64))
    }

    #[test]
    fn index_choice_by_platform() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
            {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"architecture":"amd64","os":"linux"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"architecture":"arm","os":"linux","variant":"v7"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"architecture":"unknown","os":"unknown"}},"annotations":{{"vnd.docker.reference.type":"attestation-manifest"}}}}]}}"#,
            d("a"),
            d("b"),
            d("c"),
            d("e")
        );
        let Document::Index(entries) = parse("idx", None, json.as_bytes()).unwrap() else {
            panic!("not an index")
        };
        let pick = |p: &str| {
            choose("idx", &entries, &Platform::parse(p).unwrap()).map(|d| d.digest.clone())
        };
        assert_eq!(pick("linux/amd64").unwrap(), d("a"));
        assert_eq!(pick("linux/arm64").unwrap(), d("b"));
        assert_eq!(pick("linux/arm64/v8").unwrap(), d("b"));
        assert_eq!(pick("linux/arm/v7").unwrap(), d("c"));
        let e = pick("linux/s390x").unwrap_err().to_string();
        assert!(
            e.contains("no manifest for platform linux/s390x") && e.contains("linux/arm/v7"),
            "{e}"
        );
        assert!(!e.contains("unknown"));
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux/amd64/v1/x").is_err());
    }

    #[test]
    fn manifests_docker_and_oci() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{}","size":7}},
            "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{}","size":9}}]}}"#,
            d("a"),
            d("b")
        );
        let Document::Manifest(m) = parse("m", None, json.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(m.layers.len(), 1);
        assert_eq!(m.config.size, 7);
        // An artifact (e.g. a Helm chart) is refused.
        let art = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"{}","size":7}},"layers":[]}}"#,
            d("a")
        );
        assert!(parse("m", Some(OCI_MANIFEST), art.as_bytes()).is_err());
        assert!(parse("m", None, br#"{"schemaVersion":1,"fsLayers":[]}"#).is_err());
        assert!(parse("m", None, b"<html>").is_err());
    }

    #[test]
    fn image_config() {
        let c = ImageConfig::parse(
            "c",
            br#"{"architecture":"amd64","os":"linux","config":{"User":"101","Env":["A=1"],"Entrypoint":["/e"],"Cmd":["c"],"WorkingDir":"/w","ExposedPorts":{"80/tcp":{}},"Volumes":{"/data":{}},"StopSignal":"SIGQUIT"},"rootfs":{"type":"layers","diff_ids":["x"]}}"#,
        )
        .unwrap();
        let r = c.config.unwrap();
        assert_eq!(r.user.as_deref(), Some("101"));
        assert_eq!(r.stop_signal.as_deref(), Some("SIGQUIT"));
        assert!(r.exposed_ports.unwrap().contains_key("80/tcp"));
        assert_eq!(c.rootfs.diff_ids, vec!["x"]);
    }
}
