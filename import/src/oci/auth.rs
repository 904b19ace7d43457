//! Registry credentials (auth.json files) and the WWW-Authenticate challenge.

use anyhow::{Context, Result};
use base64::Engine as _;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// Where they came from, for error messages (never the secret).
    pub origin: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({} from {})", self.username, self.origin)
    }
}

impl Credentials {
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

#[derive(Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The auth files in the order podman and docker consult them.
pub fn auth_files() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE") {
        v.push(PathBuf::from(p));
    }
    let uid = unsafe { libc::getuid() };
    if uid == 0 {
        v.push("/run/containers/0/auth.json".into());
    } else if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR") {
        v.push(Path::new(&x).join("containers/auth.json"));
    }
    v.push("/etc/containers/auth.json".into());
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        v.push(Path::new(&d).join("config.json"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        v.push(Path::new(&h).join(".docker/config.json"));
    }
    v
}

/// Normalizes an auth.json key: drops a scheme and a trailing path the way
/// docker writes them (`https://index.docker.io/v1/`).
fn normalize_key(k: &str) -> String {
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    let k = k
        .strip_suffix("/v1/")
        .or_else(|| k.strip_suffix("/v2/"))
        .unwrap_or(k);
    let k = k.trim_end_matches('/');
    match k {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        _ => k.to_string(),
    }
}

/// The credentials for `registry` (auth key, `docker.io` for Docker Hub) and
/// `repository`: the first file that has an entry wins; inside a file the
/// most specific key (`reg/ns/repo` before `reg/ns` before `reg`).
pub fn lookup(files: &[PathBuf], registry: &str, repository: &str) -> Result<Option<Credentials>> {
    for f in files {
        let data = match std::fs::read(f) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("{}: cannot read", f.display())),
        };
        let parsed: AuthFile = serde_json::from_slice(&data)
            .with_context(|| format!("{}: not an auth.json file", f.display()))?;
        let full = format!("{registry}/{repository}");
        let mut best: Option<(usize, &AuthEntry, &str)> = None;
        for (key, entry) in &parsed.auths {
            let k = normalize_key(key);
            let hit = full == k || full.starts_with(&format!("{k}/"));
            if hit && best.map_or(true, |(len, _, _)| k.len() > len) {
                best = Some((k.len(), entry, key));
            }
        }
        if let Some((_, entry, key)) = best {
            let origin = format!("{} ({key})", f.display());
            if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
                return Ok(Some(Credentials {
                    username: u.clone(),
                    password: p.clone(),
                    origin,
                }));
            }
            if let Some(a) = &entry.auth {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(a.trim())
                    .with_context(|| format!("{origin}: \"auth\" is not base64"))?;
                let s = String::from_utf8(raw)
                    .with_context(|| format!("{origin}: \"auth\" is not UTF-8"))?;
                let (u, p) = s
                    .split_once(':')
                    .with_context(|| format!("{origin}: \"auth\" is not USER:PASSWORD"))?;
                return Ok(Some(Credentials {
                    username: u.to_string(),
                    password: p.to_string(),
                    origin,
                }));
            }
        }
    }
    Ok(None)
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Lower-case scheme: `bearer` or `basic`.
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

/// Parses `Scheme k="v", k2=v2` (one challenge; quoted strings may hold
/// commas and escaped quotes).
pub fn parse_challenge(h: &str) -> Option<Challenge> {
    let h = h.trim();
    let (scheme, rest) = h.split_once(char::is_whitespace).unwrap_or((h, ""));
    if scheme.is_empty() {
        return None;
    }
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            break;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            val.push(n)
                        }
                    }
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                val.push(c);
                chars.next();
            }
            val = val.trim().to_string();
        }
        params.insert(key.to_ascii_lowercase(), val);
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

/// Percent-encodes a query value (RFC 3986 unreserved characters kept).
pub fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The token endpoint's answer: `token` or `access_token`.
#[derive(Deserialize)]
pub struct TokenReply {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/debian:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["service"], "registry.docker.io");
        assert_eq!(c.params["scope"], "repository:library/debian:pull,push");
        let c = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.params["realm"], "Registry Realm");
        let c = parse_challenge(r#"Bearer realm=https://x/t, service = a\"b"#).unwrap();
        assert_eq!(c.params["realm"], "https://x/t");
        assert!(parse_challenge("").is_none());
        assert_eq!(
            query_escape("repository:a/b:pull"),
            "repository%3Aa%2Fb%3Apull"
        );
    }

    #[test]
    fn auth_json_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.json");
        let b = dir.path().join("b.json");
        // "u1:p1" and "u2:p:2"
        std::fs::write(
            &a,
            r#"{"auths":{"quay.io/team":{"auth":"dTE6cDE="},"https://index.docker.io/v1/":{"auth":"dTI6cDoy"}}}"#,
        )
        .unwrap();
        std::fs::write(
            &b,
            r#"{"auths":{"quay.io":{"username":"generic","password":"g"},"localhost:5000":{"username":"l","password":"x"}}}"#,
        )
        .unwrap();
        let files = vec![dir.path().join("missing.json"), a.clone(), b.clone()];
        let c = lookup(&files, "quay.io", "team/app").unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u1", "p1"));
        let c = lookup(&files, "quay.io", "other/app").unwrap().unwrap();
        assert_eq!(c.username, "generic");
        let c = lookup(&files, "docker.io", "library/debian")
            .unwrap()
            .unwrap();
        assert_eq!(c.password, "p:2");
        assert_eq!(c.basic_header(), "Basic dTI6cDoy");
        let c = lookup(&files, "localhost:5000", "x").unwrap().unwrap();
        assert_eq!(c.username, "l");
        assert!(lookup(&files, "ghcr.io", "x/y").unwrap().is_none());
        assert!(lookup(&files, "quay.io.evil", "team/app")
            .unwrap()
            .is_none());
        std::fs::write(&a, "not json").unwrap();
        let e = lookup(&files, "x", "y").unwrap_err().to_string();
        assert!(e.contains("a.json"), "{e}");
    }
}
