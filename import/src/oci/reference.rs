//! Image references: `[REGISTRY/]REPOSITORY[:TAG][@DIGEST]`, with Docker
//! Hub's defaults (`debian:12` is `registry-1.docker.io/library/debian:12`).

use super::digest::Digest;
use anyhow::Result;
use std::fmt;

pub const DOCKER_HUB: &str = "registry-1.docker.io";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The registry host[:port] requests go to.
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference> {
        let bad = |why: &str| anyhow::anyhow!("{s:?}: not an image reference: {why}");
        if s.is_empty() || s.len() > 4096 || s.contains(char::is_whitespace) {
            return Err(bad("empty, too long or has whitespace"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(Digest::parse(d).map_err(|e| bad(&e.to_string()))?)),
            None => (s, None),
        };
        // The first component is a registry when it looks like a host:
        // has a dot or a port, or is `localhost`.
        let (registry, path) = match rest.split_once('/') {
            Some((first, tail))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), tail)
            }
            _ => ("docker.io".to_string(), rest),
        };
        // A tag is after the last ':' that follows the last '/'.
        let (repo, tag) = match path.rfind(':') {
            Some(i) if !path[i..].contains('/') => (&path[..i], Some(path[i + 1..].to_string())),
            _ => (path, None),
        };
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !ok {
                return Err(bad(&format!("bad tag {t:?}")));
            }
        }
        if repo.is_empty()
            || repo.split('/').any(|c| {
                c.is_empty()
                    || !c.chars().all(|ch| {
                        ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch)
                    })
                    || !c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
            })
        {
            return Err(bad(&format!("bad repository {repo:?}")));
        }
        let is_hub = registry == "docker.io" || registry == "index.docker.io";
        let repository = if is_hub && !repo.contains('/') {
            format!("library/{repo}")
        } else {
            repo.to_string()
        };
        let registry = if is_hub {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// Whether SOURCE looks like a registry reference rather than a path or URL.
    pub fn looks_like(s: &str) -> bool {
        !s.starts_with('/')
            && !s.starts_with('.')
            && !s.contains("://")
            && !std::path::Path::new(s).exists()
            && Reference::parse(s).is_ok()
    }

    /// What to ask the registry for: the digest when pinned, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The base URL of the registry's API: HTTPS, except plain HTTP for
    /// loopback registries (`localhost:5000`, `127.0.0.1:5000`) as Docker does.
    pub fn api_base(&self, insecure_loopback_http: bool) -> String {
        let host = self
            .registry
            .rsplit_once(':')
            .map_or(self.registry.as_str(), |(h, _)| h);
        let loopback = host == "localhost" || host == "127.0.0.1" || host == "[::1]";
        let scheme = if insecure_loopback_http && loopback {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}/v2/{}", self.registry, self.repository)
    }

    /// The key credentials are looked up under in auth.json files.
    pub fn auth_key(&self) -> &str {
        if self.registry == DOCKER_HUB {
            "docker.io"
        } else {
            &self.registry
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reg = if self.registry == DOCKER_HUB {
            "docker.io"
        } else {
            &self.registry
        };
        write!(f, "{reg}/{}", self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// The digest a reference pins, if any: what `--if-missing` compares with the
/// digest recorded at the last import.
pub fn pinned_digest(source: &str) -> Option<String> {
    Reference::parse(source).ok()?.digest.map(|d| d.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn docker_hub_defaults() {
        let r = Reference::parse("debian:12").unwrap();
        assert_eq!(r.registry, DOCKER_HUB);
        assert_eq!(r.repository, "library/debian");
        assert_eq!(r.tag.as_deref(), Some("12"));
        assert_eq!(r.to_string(), "docker.io/library/debian:12");
        let r = Reference::parse("docker.io/library/debian:12").unwrap();
        assert_eq!(r.repository, "library/debian");
        let r = Reference::parse("ubuntu").unwrap();
        assert_eq!(r.tag.as_deref(), Some("latest"));
        let r = Reference::parse("someone/app").unwrap();
        assert_eq!(r.repository, "someone/app");
        assert_eq!(r.registry, DOCKER_HUB);
    }

    #[test]
    fn registries_ports_and_digests() {
        let r = Reference::parse(&format!("quay.io/x/y@{D}")).unwrap();
        assert_eq!(r.registry, "quay.io");
        assert_eq!(r.repository, "x/y");
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_ref(), D);
        assert_eq!(
            pinned_digest(&format!("quay.io/x/y@{D}")).as_deref(),
            Some(D)
        );
        assert_eq!(pinned_digest("quay.io/x/y:1"), None);
        let r = Reference::parse("localhost:5000/x:tag").unwrap();
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repository, "x");
        assert_eq!(r.tag.as_deref(), Some("tag"));
        assert_eq!(r.api_base(true), "http://localhost:5000/v2/x");
        assert_eq!(r.api_base(false), "https://localhost:5000/v2/x");
        let r = Reference::parse(&format!("localhost/a/b:t@{D}")).unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("localhost", "a/b")
        );
        assert!(r.tag.is_some() && r.digest.is_some());
    }

    #[test]
    fn bad_references() {
        for s in [
            "",
            "UPPER/case",
            "a b",
            "x:",
            "x:-bad",
            "x@sha256:short",
            "reg.io//x",
            "x/../y",
        ] {
            assert!(Reference::parse(s).is_err(), "{s:?} accepted");
        }
        assert!(!Reference::looks_like("/some/path"));
        assert!(!Reference::looks_like("./x.tar"));
        assert!(!Reference::looks_like("https://x/y"));
    }
}
