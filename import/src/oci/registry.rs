//! A client for one repository of an OCI Distribution registry: manifests
//! and blobs, with the anonymous or credentialed bearer-token flow and
//! basic auth.

use super::auth::{self, Challenge, Credentials, TokenReply};
use super::digest::Digest;
use super::manifest::{ACCEPT, MAX_JSON};
use super::reference::Reference;
use crate::http::{BodyReader, Client, Reply, Request};
use anyhow::{anyhow, bail, Context, Result};
use std::sync::Mutex;

pub struct Registry<'a> {
    http: &'a Client,
    pub reference: Reference,
    base: Mutex<String>,
    creds: Option<Credentials>,
    /// The Authorization header that worked last (a token or basic).
    authorization: Mutex<Option<String>>,
}

/// A fetched manifest: its bytes, Content-Type and digest (computed here,
/// never taken from the server).
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
    pub digest: Digest,
}

impl<'a> Registry<'a> {
    pub fn new(http: &'a Client, reference: Reference) -> Result<Registry<'a>> {
        let creds = auth::lookup(
            &auth::auth_files(),
            reference.auth_key(),
            &reference.repository,
        )?;
        Ok(Registry {
            http,
            base: Mutex::new(reference.api_base(false)),
            reference,
            creds,
            authorization: Mutex::new(None),
        })
    }

    fn base(&self) -> String {
        self.base.lock().map(|b| b.clone()).unwrap_or_default()
    }

    /// Sends GET to `PATH` below the repository, answering an auth
    /// challenge once; the reply is 2xx or an error naming the URL.
    fn get(&self, path: &str, accept: Option<&str>) -> Result<Reply> {
        let url = format!("{}/{path}", self.base());
        let reply = match self.send(&url, accept) {
            Ok(r) => r,
            // A loopback registry without TLS, as Docker allows: the TLS
            // handshake meets plain HTTP.
            Err(e) if self.is_loopback() && e.to_string().contains("corrupt message") => {
                let http_base = self.reference.api_base(true);
                if let Ok(mut b) = self.base.lock() {
                    *b = http_base.clone();
                }
                self.send(&format!("{http_base}/{path}"), accept)?
            }
            Err(e) => return Err(e),
        };
        reply.ensure_success()
    }

    fn is_loopback(&self) -> bool {
        self.reference.api_base(true).starts_with("http:")
    }

    fn send(&self, url: &str, accept: Option<&str>) -> Result<Reply> {
        let build = |auth: Option<&String>| {
            let mut r = Request::get(url);
            if let Some(a) = accept {
                r = r.header("Accept", a);
            }
            if let Some(a) = auth {
                r = r.header("Authorization", a.clone());
            }
            r
        };
        let current = self.authorization.lock().ok().and_then(|a| a.clone());
        let reply = self.http.send(&build(current.as_ref()))?;
        if reply.status != 401 {
            return Ok(reply);
        }
        let challenge = reply
            .header("www-authenticate")
            .and_then(auth::parse_challenge)
            .with_context(|| {
                format!("{url}: HTTP 401 Unauthorized without a usable WWW-Authenticate challenge")
            })?;
        let authorization = self.answer(url, &challenge)?;
        let reply = self.http.send(&build(Some(&authorization)))?;
        if reply.status == 401 {
            let who = match &self.creds {
                Some(c) => format!("the credentials of {c:?} were refused"),
                None => format!(
                    "no credentials for {} in the auth files (REGISTRY_AUTH_FILE, /run/containers/0/auth.json, /etc/containers/auth.json, ~/.docker/config.json)",
                    self.reference.auth_key()
                ),
            };
            bail!("{url}: HTTP 401 Unauthorized: {who}");
        }
        if let Ok(mut a) = self.authorization.lock() {
            *a = Some(authorization);
        }
        Ok(reply)
    }

    /// The Authorization header that answers a challenge.
    fn answer(&self, url: &str, c: &Challenge) -> Result<String> {
        match c.scheme.as_str() {
            "basic" => match &self.creds {
                Some(cr) => Ok(cr.basic_header()),
                None => bail!(
                    "{url}: HTTP 401 Unauthorized: the registry wants a password and the auth files have none for {}",
                    self.reference.auth_key()
                ),
            },
            "bearer" => self.token(url, c),
            other => bail!("{url}: unsupported authentication scheme {other:?}"),
        }
    }

    /// The bearer-token flow: GET realm?service=..&scope=.., anonymous or
    /// with basic credentials.
    fn token(&self, url: &str, c: &Challenge) -> Result<String> {
        let realm = c
            .params
            .get("realm")
            .with_context(|| format!("{url}: bearer challenge without realm"))?;
        if !realm.starts_with("https://") && !realm.starts_with("http://") {
            bail!("{url}: bearer realm {realm:?} is not an http(s) URL");
        }
        let scope = c
            .params
            .get("scope")
            .cloned()
            .unwrap_or_else(|| format!("repository:{}:pull", self.reference.repository));
        let mut token_url = format!(
            "{realm}{}scope={}",
            if realm.contains('?') { "&" } else { "?" },
            auth::query_escape(&scope)
        );
        if let Some(s) = c.params.get("service") {
            token_url.push_str(&format!("&service={}", auth::query_escape(s)));
        }
        let mut req = Request::get(&token_url);
        if let Some(cr) = &self.creds {
            req = req.header("Authorization", cr.basic_header());
        }
        let reply = self.http.send(&req)?;
        if reply.status == 401 || reply.status == 403 {
            let who = match &self.creds {
                Some(c) => format!("{c:?} refused by the token service"),
                None => "anonymous access refused by the token service".to_string(),
            };
            bail!(
                "{url}: HTTP {} from the token service {realm}: {who}",
                reply.status
            );
        }
        let body = reply.ensure_success()?.read_small(MAX_JSON)?;
        let t: TokenReply = serde_json::from_slice(&body)
            .with_context(|| format!("{realm}: the token service's answer is not JSON"))?;
        let token = t
            .token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| anyhow!("{realm}: the token service sent no token"))?;
        Ok(format!("Bearer {token}"))
    }

    /// Fetches a manifest by tag or digest; when by digest, the bytes are
    /// verified against it.
    pub fn manifest(&self, reference: &str) -> Result<Fetched> {
        let reply = self.get(&format!("manifests/{reference}"), Some(ACCEPT))?;
        let url = reply.url.clone();
        let content_type = reply.header("content-type").map(str::to_string);
        let bytes = reply.read_small(MAX_JSON)?;
        let digest = match Digest::parse(reference) {
            Ok(d) => {
                d.verify(&format!("manifest {url}"), &bytes)?;
                d
            }
            Err(_) => Digest::of(super::digest::Algorithm::Sha256, &bytes),
        };
        Ok(Fetched {
            bytes,
            content_type,
            digest,
        })
    }

    /// Stops the downloads in flight (see [`Client::shutdown`]).
    pub fn stop(&self) {
        self.http.shutdown();
    }

    /// Starts a blob download; the caller verifies while streaming.
    pub fn blob(&self, d: &Digest) -> Result<(String, BodyReader)> {
        let reply = self.get(&format!("blobs/{d}"), None)?;
        let url = reply.url.clone();
        Ok((url, reply.into_reader()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Options, ProxyEnv};
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex as StdMutex};

    /// A registry on loopback that wants a bearer token from its own
    /// /token realm; records each request line with its Authorization.
    fn fake_registry(manifest: Vec<u8>) -> (String, Arc<StdMutex<Vec<String>>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let log = Arc::new(StdMutex::new(Vec::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { break };
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let mut auth = String::new();
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).unwrap();
                    if h == "\r\n" || h.is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("authorization: ") {
                        auth = v.trim().to_string();
                    }
                }
                let path = line.split(' ').nth(1).unwrap_or("").to_string();
                log2.lock().unwrap().push(format!("{path} [{auth}]"));
                let (status, extra, body): (&str, String, Vec<u8>) = if path.starts_with("/token") {
                    ("200 OK", String::new(), br#"{"token":"T0K"}"#.to_vec())
                } else if auth != "bearer t0k" {
                    (
                        "401 Unauthorized",
                        format!("WWW-Authenticate: Bearer realm=\"http://{addr}/token\",service=\"fake\"\r\n"),
                        Vec::new(),
                    )
                } else {
                    (
                        "200 OK",
                        "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n".into(),
                        manifest.clone(),
                    )
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n{extra}\r\n",
                    body.len()
                );
                let _ = s.write_all(&body);
                let _ = r.read(&mut [0u8; 0]);
            }
        });
        (addr.to_string(), log)
    }

    #[test]
    fn bearer_flow_and_pinned_manifest_verification() {
        let manifest = br#"{"schemaVersion":2}"#.to_vec();
        let (addr, log) = fake_registry(manifest.clone());
        let http = Client::new(Options {
            proxies: ProxyEnv::default(),
            retries: 0,
            ..Options::default()
        })
        .unwrap();
        let mut reference = Reference::parse(&format!("{addr}/team/app:1")).unwrap();
        reference.registry = addr.clone();
        let reg = Registry {
            http: &http,
            base: Mutex::new(format!("http://{addr}/v2/team/app")),
            reference,
            creds: None,
            authorization: Mutex::new(None),
        };
        let f = reg.manifest("1").unwrap();
        assert_eq!(f.bytes, manifest);
        let seen = log.lock().unwrap().clone();
        assert_eq!(seen[0], "/v2/team/app/manifests/1 []");
        assert!(
            seen[1].starts_with("/token?scope=repository%3Ateam%2Fapp%3Apull&service=fake"),
            "{seen:?}"
        );
        assert_eq!(seen[2], "/v2/team/app/manifests/1 [bearer t0k]");
        // The token is reused; a pinned digest that does not match is refused.
        let wrong = Digest::of(super::super::digest::Algorithm::Sha256, b"other");
        let e = reg.manifest(&wrong.to_string()).err().unwrap().to_string();
        assert!(e.contains("digest mismatch"), "{e}");
        assert_eq!(log.lock().unwrap().len(), 4);
        let right = Digest::of(super::super::digest::Algorithm::Sha256, &manifest);
        assert_eq!(reg.manifest(&right.to_string()).unwrap().digest, right);
    }
}
