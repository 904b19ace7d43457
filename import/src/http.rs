//! The one HTTP(S) client of sdme-import: URLs and OCI registries.
//!
//! * TLS is verified against the system's roots (`/etc/ssl/certs`, or
//!   `SSL_CERT_FILE`) plus an optional `--ca-file`.
//! * Proxies come from `https_proxy`/`http_proxy`/`all_proxy` and are
//!   bypassed per `no_proxy` (lower case first, then upper case), matched
//!   here because the rules (suffixes, ports, `*`, IPs and CIDRs) must be
//!   the same for every request, redirects excepted.
//! * Transient failures (connect errors, 429 with `Retry-After`, 5xx) are
//!   retried with exponential backoff before the body is read; a body that
//!   fails midway is the caller's to retry (blobs are verified and cached
//!   whole, so a retry starts over).
//! * Ctrl+C (the stop flag of [`crate::cancel`]) shuts every connection
//!   down within [`crate::cancel::POLL`], even one whose server stopped
//!   sending: a watcher thread calls `Agent::shutdown`, which wakes reads
//!   blocked in other threads. Retry waits end at once too, and so does the
//!   wait for a name lookup or a TCP connect, which run on a thread of
//!   their own that is left behind.
//! * Bodies are capped (`--max-size`): the reader fails with a one-line
//!   error as soon as more than the cap arrives, and a body shorter than its
//!   `Content-Length` is reported as truncated.

use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::io::{self, Read};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

/// The default cap on one download: 50 GiB.
pub const DEFAULT_MAX_SIZE: u64 = 50 << 30;

/// Where the system's trusted roots live on Debian-like and Fedora-like systems.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

#[derive(Debug, Clone)]
pub struct Options {
    /// An extra PEM bundle trusted besides the system's roots.
    pub ca_file: Option<PathBuf>,
    /// The most bytes one response body may have.
    pub max_size: u64,
    /// How many times a transient failure is retried.
    pub retries: u32,
    /// The first backoff; doubled at each retry.
    pub backoff: Duration,
    pub proxies: ProxyEnv,
    /// When set, every request and body read stops and fails with
    /// [`crate::cancel::Interrupted`].
    pub cancel: Option<&'static AtomicBool>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ca_file: None,
            max_size: DEFAULT_MAX_SIZE,
            retries: 4,
            backoff: Duration::from_millis(500),
            proxies: ProxyEnv::from_env(),
            cancel: Some(crate::cancel::flag()),
        }
    }
}

/// The proxy settings of the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    pub http: Option<String>,
    pub https: Option<String>,
    pub all: Option<String>,
    pub no_proxy: Vec<String>,
}

fn env_either(lower: &str) -> Option<String> {
    [lower.to_string(), lower.to_ascii_uppercase()]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.trim().is_empty())
        .map(|v| v.trim().to_string())
}

impl ProxyEnv {
    pub fn from_env() -> ProxyEnv {
        ProxyEnv::from_vars(
            env_either("http_proxy"),
            env_either("https_proxy"),
            env_either("all_proxy"),
            env_either("no_proxy"),
        )
    }

    pub fn from_vars(
        http: Option<String>,
        https: Option<String>,
        all: Option<String>,
        no_proxy: Option<String>,
    ) -> ProxyEnv {
        let no_proxy = no_proxy
            .unwrap_or_default()
            .split([',', ' ', '\t'])
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        ProxyEnv {
            http,
            https,
            all,
            no_proxy,
        }
    }

    /// The proxy URL for a request to `scheme://host:port`, or None to go direct.
    pub fn for_target(&self, scheme: &str, host: &str, port: u16) -> Option<&str> {
        let proxy = match scheme {
            "https" => self.https.as_deref().or(self.all.as_deref()),
            _ => self.http.as_deref().or(self.all.as_deref()),
        }?;
        if self.bypass(host, port) {
            None
        } else {
            Some(proxy)
        }
    }

    /// Whether `no_proxy` says to reach `host:port` directly. Entries: `*`;
    /// a domain (matching itself and its subdomains, a leading `.` or `*.`
    /// allowed); an IP address; an IP network in CIDR form; each optionally
    /// with `:PORT`, which then must match too.
    pub fn bypass(&self, host: &str, port: u16) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let host_ip: Option<IpAddr> = host.parse().ok();
        self.no_proxy.iter().any(|entry| {
            if entry == "*" {
                return true;
            }
            let (pattern, want_port) = split_entry_port(entry);
            if let Some(p) = want_port {
                if p != port {
                    return false;
                }
            }
            if let Some((net, bits)) = pattern.split_once('/') {
                return match (host_ip, net.parse::<IpAddr>(), bits.parse::<u8>()) {
                    (Some(ip), Ok(net), Ok(bits)) => in_network(ip, net, bits),
                    _ => false,
                };
            }
            if let Ok(ip) = pattern.parse::<IpAddr>() {
                return host_ip == Some(ip);
            }
            let domain = pattern
                .trim_start_matches('*')
                .trim_start_matches('.')
                .trim_end_matches('.');
            !domain.is_empty()
                && (host == domain
                    || (host.ends_with(domain)
                        && host.as_bytes()[host.len() - domain.len() - 1] == b'.'))
        })
    }
}

/// Splits `host:port`, `[v6]:port`, and leaves bare IPv6 addresses alone.
fn split_entry_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        if let Some((addr, tail)) = rest.split_once(']') {
            let port = tail.strip_prefix(':').and_then(|p| p.parse().ok());
            return (addr, port);
        }
    }
    if entry.matches(':').count() == 1 {
        if let Some((h, p)) = entry.rsplit_once(':') {
            if let Ok(p) = p.parse() {
                return (h, Some(p));
            }
        }
    }
    (entry, None)
}

fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// A response whose status the caller looks at; the body is capped.
pub struct Reply {
    pub url: String,
    pub status: u16,
    headers: ureq::http::HeaderMap,
    body: Option<ureq::Body>,
    max_size: u64,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
    }

    /// Fails with a one-line error unless the status is 2xx.
    pub fn ensure_success(self) -> Result<Reply> {
        if (200..300).contains(&self.status) {
            Ok(self)
        } else {
            Err(status_error(&self.url, self.status, &self.headers))
        }
    }

    /// The body as a reader that enforces the size cap and the announced length.
    pub fn into_reader(mut self) -> Result<BodyReader> {
        if let Some(len) = self.content_length() {
            if len > self.max_size {
                bail!(
                    "{}: {} bytes is over the size cap of {} bytes (--max-size)",
                    self.url,
                    len,
                    self.max_size
                );
            }
        }
        let expected = self.content_length();
        let body = self.body.take().context("response body already taken")?;
        Ok(BodyReader {
            inner: Box::new(body.into_with_config().limit(u64::MAX).reader()),
            url: self.url,
            read: 0,
            expected,
            max_size: self.max_size,
        })
    }

    /// A small body (error documents, tokens, manifests) read whole, at most `cap` bytes.
    pub fn read_small(self, cap: u64) -> Result<Vec<u8>> {
        let url = self.url.clone();
        let mut r = self.into_reader()?;
        r.max_size = r.max_size.min(cap);
        let mut out = Vec::new();
        r.read_to_end(&mut out)
            .with_context(|| format!("{url}: reading the response"))?;
        Ok(out)
    }
}

/// A response body: counts bytes, fails past the cap, and calls a body that
/// ends before its `Content-Length` truncated.
pub struct BodyReader {
    inner: Box<dyn Read + Send>,
    url: String,
    read: u64,
    expected: Option<u64>,
    max_size: u64,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            // ureq enforces Content-Length itself: a close before the end
            // is an EOF error, which is a truncated download.
            Err(e)
                if e.kind() == io::ErrorKind::UnexpectedEof
                    && self.expected.is_some_and(|want| self.read < want) =>
            {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{}: truncated download: {} of {} bytes (the connection closed)",
                        self.url,
                        self.read,
                        self.expected.unwrap_or_default()
                    ),
                ))
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "{}: download failed after {} bytes: {}",
                        self.url,
                        self.read,
                        one_line(&e.to_string())
                    ),
                ))
            }
        };
        self.read += n as u64;
        if self.read > self.max_size {
            return Err(io::Error::other(format!(
                "{}: more than the size cap of {} bytes (--max-size)",
                self.url, self.max_size
            )));
        }
        if n == 0 && !buf.is_empty() {
            if let Some(want) = self.expected {
                if self.read < want {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "{}: truncated download: {} of {} bytes",
                            self.url, self.read, want
                        ),
                    ));
                }
            }
        }
        Ok(n)
    }
}

/// The agents of a client, by proxy; none are made once `stopped`.
#[derive(Default)]
struct Agents {
    by_proxy: HashMap<Option<String>, ureq::Agent>,
    stopped: bool,
}

/// The client: one agent per proxy (ureq binds a proxy to an agent), all
/// sharing the same roots and options.
pub struct Client {
    opts: Options,
    roots: Arc<Vec<Certificate<'static>>>,
    agents: Arc<Mutex<Agents>>,
    /// How many requests went out (each retry counts), for tests and figures.
    pub requests: std::sync::atomic::AtomicU64,
}

/// A request: GET or HEAD with extra headers.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: Vec<(&'static str, String)>,
}

impl<'a> Request<'a> {
    pub fn get(url: &'a str) -> Request<'a> {
        Request {
            method: "GET",
            url,
            headers: Vec::new(),
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Request<'a> {
        self.headers.push((name, value.into()));
        self
    }
}

impl Client {
    pub fn new(opts: Options) -> Result<Client> {
        let mut roots = Vec::new();
        let system = std::env::var_os("SSL_CERT_FILE")
            .map(PathBuf::from)
            .into_iter()
            .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from))
            .find(|p| p.is_file());
        if let Some(p) = &system {
            roots.extend(load_pem(p)?);
        }
        if let Some(ca) = &opts.ca_file {
            let extra = load_pem(ca)?;
            if extra.is_empty() {
                bail!("{}: no PEM certificate in the CA file", ca.display());
            }
            roots.extend(extra);
        }
        let agents = Arc::new(Mutex::new(Agents::default()));
        if let Some(flag) = opts.cancel {
            watch(flag, Arc::downgrade(&agents))?;
        }
        Ok(Client {
            opts,
            roots: Arc::new(roots),
            agents,
            requests: Default::default(),
        })
    }

    /// Stops every download in flight at once (reads blocked in other
    /// threads fail) and refuses new requests: for when the import failed
    /// and the downloads are no longer wanted.
    pub fn shutdown(&self) {
        shutdown(&self.agents);
    }

    fn cancelled(&self) -> bool {
        self.opts.cancel.is_some_and(|f| f.load(Ordering::SeqCst))
    }

    /// Fails with [`crate::cancel::Interrupted`] once a stop was asked for.
    fn check_cancel(&self) -> Result<()> {
        if self.cancelled() {
            return Err(crate::cancel::Interrupted.into());
        }
        Ok(())
    }

    /// Waits before a retry; a stop ends the wait.
    fn backoff_sleep(&self, d: Duration) -> Result<()> {
        let d = d.min(Duration::from_secs(60));
        match self.opts.cancel {
            Some(flag) => crate::cancel::sleep(d, flag),
            None => {
                std::thread::sleep(d);
                Ok(())
            }
        }
    }

    pub fn max_size(&self) -> u64 {
        self.opts.max_size
    }

    fn agent_for(&self, url: &str) -> Result<ureq::Agent> {
        let uri: ureq::http::Uri = url.parse().with_context(|| format!("{url}: not a URL"))?;
        let scheme = uri.scheme_str().unwrap_or("");
        if scheme != "http" && scheme != "https" {
            bail!("{url}: only http and https URLs are supported");
        }
        let host = uri.host().with_context(|| format!("{url}: no host"))?;
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let proxy = self
            .opts
            .proxies
            .for_target(scheme, host, port)
            .map(str::to_string);
        let mut agents = self.agents.lock().map_err(|_| anyhow!("agent lock"))?;
        // Checked under the lock the watcher takes to shut the agents down,
        // so no agent made after a stop escapes it.
        if self.cancelled() {
            return Err(crate::cancel::Interrupted.into());
        }
        if agents.stopped {
            bail!("{url}: downloads were stopped");
        }
        if let Some(a) = agents.by_proxy.get(&proxy) {
            return Ok(a.clone());
        }
        let ureq_proxy = match &proxy {
            Some(p) => {
                // A proxy given as host:port means http://host:port, as curl takes it.
                let full = if p.contains("://") {
                    p.clone()
                } else {
                    format!("http://{p}")
                };
                Some(
                    ureq::Proxy::new(&full)
                        .map_err(|e| anyhow!("proxy {p}: {}", one_line(&e.to_string())))?,
                )
            }
            None => None,
        };
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::Specific(self.roots.clone()))
            .build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls)
            .proxy(ureq_proxy)
            .user_agent(concat!("sdme-import/", env!("CARGO_PKG_VERSION")))
            .accept_encoding("identity")
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .timeout_per_read(Some(Duration::from_secs(120)))
            .max_redirects(10)
            // Blob redirects to a storage host (S3, a CDN) must not carry the
            // registry token; same-host redirects keep it.
            .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
            .build()
            .into();
        agents.by_proxy.insert(proxy, agent.clone());
        Ok(agent)
    }

    /// Sends a request, retrying transient failures; returns whatever final
    /// status came (the caller decides about 401 and friends).
    pub fn send(&self, req: &Request) -> Result<Reply> {
        let agent = self.agent_for(req.url)?;
        let mut attempt = 0;
        loop {
            self.check_cancel()?;
            self.requests.fetch_add(1, Ordering::Relaxed);
            let mut b = match req.method {
                "HEAD" => agent.head(req.url),
                _ => agent.get(req.url),
            };
            for (k, v) in &req.headers {
                b = b.header(*k, v);
            }
            let result = self.call(req.url, b)?;
            // A connection shut down by Ctrl+C fails like any other.
            self.check_cancel()?;
            let wait = self.opts.backoff * 2u32.saturating_pow(attempt);
            match result {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let (parts, body) = resp.into_parts();
                    let transient = status == 429 || (500..600).contains(&status);
                    if transient && attempt < self.opts.retries {
                        let wait = retry_after(&parts.headers).unwrap_or(wait);
                        attempt += 1;
                        self.backoff_sleep(wait)?;
                        continue;
                    }
                    return Ok(Reply {
                        url: req.url.to_string(),
                        status,
                        headers: parts.headers,
                        body: Some(body),
                        max_size: self.opts.max_size,
                    });
                }
                Err(e) => {
                    if is_transient(&e) && attempt < self.opts.retries {
                        attempt += 1;
                        self.backoff_sleep(wait)?;
                        continue;
                    }
                    return Err(transport_error(req.url, &e));
                }
            }
        }
    }

    /// Sends a request and reads the response head. With a stop flag, on a
    /// thread of its own: `Agent::shutdown` does not interrupt a name
    /// lookup or a TCP connect, so on Ctrl+C the caller stops waiting and
    /// leaves that thread to end with the process (it only holds a socket).
    fn call(
        &self,
        url: &str,
        b: ureq::RequestBuilder<ureq::typestate::WithoutBody>,
    ) -> Result<Result<ureq::http::Response<ureq::Body>, ureq::Error>> {
        let Some(flag) = self.opts.cancel else {
            return Ok(b.call());
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("http-call".into())
            .spawn(move || {
                // The caller may have stopped waiting: then nobody listens.
                let _ = tx.send(b.call());
            })
            .context("cannot start an HTTP request thread")?;
        loop {
            match rx.recv_timeout(crate::cancel::POLL) {
                Ok(r) => return Ok(r),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if flag.load(Ordering::SeqCst) {
                        return Err(crate::cancel::Interrupted.into());
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("{url}: the request ended without an answer")
                }
            }
        }
    }

    /// GET that must succeed (2xx), as a capped body reader.
    pub fn get(&self, url: &str) -> Result<(Reply, BodyReader)> {
        let reply = self.send(&Request::get(url))?.ensure_success()?;
        let headers = Reply {
            url: reply.url.clone(),
            status: reply.status,
            headers: reply.headers.clone(),
            body: None,
            max_size: reply.max_size,
        };
        Ok((headers, reply.into_reader()?))
    }
}

/// Starts the thread that shuts every agent down (interrupting reads
/// blocked in any thread) once `flag` is set; it ends with the client.
fn watch(flag: &'static AtomicBool, agents: Weak<Mutex<Agents>>) -> Result<()> {
    std::thread::Builder::new()
        .name("http-cancel".into())
        .spawn(move || loop {
            std::thread::sleep(crate::cancel::POLL);
            let Some(agents) = agents.upgrade() else {
                return;
            };
            if flag.load(Ordering::SeqCst) {
                shutdown(&agents);
                return;
            }
        })
        .context("cannot start the HTTP cancel watcher")?;
    Ok(())
}

/// Shuts every agent down and refuses new ones.
fn shutdown(agents: &Mutex<Agents>) {
    if let Ok(mut a) = agents.lock() {
        a.stopped = true;
        for (_, agent) in a.by_proxy.drain() {
            agent.shutdown();
        }
    }
}

fn load_pem(path: &Path) -> Result<Vec<Certificate<'static>>> {
    let data = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(&data) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => out.push(c),
            Ok(_) => {}
            Err(e) => bail!("{}: bad PEM: {e}", path.display()),
        }
    }
    Ok(out)
}

fn retry_after(headers: &ureq::http::HeaderMap) -> Option<Duration> {
    // Only the delta-seconds form; an HTTP date falls back to the backoff.
    let v = headers.get("retry-after")?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn is_transient(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound | ureq::Error::Timeout(_) => true,
        ureq::Error::Io(io) => !matches!(
            io.kind(),
            io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput
        ),
        _ => false,
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One line naming the URL and what went wrong at the transport level.
pub fn transport_error(url: &str, e: &ureq::Error) -> anyhow::Error {
    let msg = one_line(&e.to_string());
    // rustls errors reach us wrapped in io errors; tell them by their text.
    let tls_text = ["certificate", "handshake", "tls", "alert"]
        .iter()
        .any(|w| msg.to_ascii_lowercase().contains(w));
    if tls_text && matches!(e, ureq::Error::Io(_)) {
        return anyhow!("{url}: TLS failure: {msg} (a private CA needs --ca-file)");
    }
    match e {
        ureq::Error::Rustls(_) | ureq::Error::Tls(_) | ureq::Error::Pem(_) => {
            anyhow!("{url}: TLS failure: {msg} (a private CA needs --ca-file)")
        }
        ureq::Error::HostNotFound => anyhow!("{url}: host not found"),
        ureq::Error::ConnectionFailed => anyhow!("{url}: connection failed"),
        ureq::Error::ConnectProxyFailed(_) => anyhow!("{url}: proxy failed: {msg}"),
        ureq::Error::Timeout(_) => anyhow!("{url}: timed out: {msg}"),
        _ => anyhow!("{url}: {msg}"),
    }
}

/// One line naming the URL, the status and what it usually means.
pub fn status_error(url: &str, status: u16, headers: &ureq::http::HeaderMap) -> anyhow::Error {
    let reason = ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let hint = match status {
        401 => " (authentication failed: check the credentials in auth.json)",
        403 => " (access denied)",
        404 => " (not found)",
        429 => " (rate limited, retries exhausted)",
        500..=599 => " (server error, retries exhausted)",
        _ => "",
    };
    let _ = headers;
    anyhow!("{url}: HTTP {status} {reason}{hint}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    fn env(no_proxy: &str) -> ProxyEnv {
        ProxyEnv::from_vars(
            Some("http://hp:3128".into()),
            Some("http://sp:3128".into()),
            None,
            Some(no_proxy.into()),
        )
    }

    #[test]
    fn proxy_by_scheme_and_all_proxy_fallback() {
        let e = env("");
        assert_eq!(
            e.for_target("http", "a.example", 80),
            Some("http://hp:3128")
        );
        assert_eq!(
            e.for_target("https", "a.example", 443),
            Some("http://sp:3128")
        );
        let all = ProxyEnv::from_vars(None, None, Some("http://ap:1".into()), None);
        assert_eq!(all.for_target("https", "x", 443), Some("http://ap:1"));
        assert_eq!(ProxyEnv::default().for_target("https", "x", 443), None);
    }

    #[test]
    fn no_proxy_domains_ports_ips() {
        let e = env("example.com, .corp.net,*.svc,localhost:5000,10.0.0.0/8,::1,192.168.1.7");
        assert!(e.bypass("example.com", 443));
        assert!(e.bypass("reg.example.com", 443));
        assert!(!e.bypass("badexample.com", 443));
        assert!(e.bypass("a.corp.net", 80));
        assert!(e.bypass("corp.net", 80));
        assert!(e.bypass("x.svc", 80));
        assert!(e.bypass("localhost", 5000));
        assert!(!e.bypass("localhost", 5001));
        assert!(e.bypass("10.1.2.3", 80));
        assert!(!e.bypass("11.1.2.3", 80));
        assert!(e.bypass("[::1]", 80));
        assert!(e.bypass("192.168.1.7", 80));
        assert!(!e.bypass("192.168.1.8", 80));
        assert!(env("*").bypass("anything", 1));
        assert!(!env("").bypass("anything", 1));
    }

    /// A one-shot HTTP server on loopback answering each connection with the
    /// next canned response; returns its base URL.
    fn serve(responses: Vec<Vec<u8>>) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for r in responses {
                let (mut s, _) = l.accept().unwrap();
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(&r);
            }
        });
        format!("http://{addr}")
    }

    fn client(max: u64) -> Client {
        Client::new(Options {
            max_size: max,
            retries: 2,
            backoff: Duration::from_millis(10),
            proxies: ProxyEnv::default(),
            ..Options::default()
        })
        .unwrap()
    }

    fn resp(status: &str, extra: &str, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n{extra}\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[test]
    fn retries_503_and_429_then_succeeds() {
        let url = serve(vec![
            resp("503 Service Unavailable", "", ""),
            resp("429 Too Many Requests", "Retry-After: 0\r\n", ""),
            resp("200 OK", "", "hello"),
        ]);
        let c = client(100);
        let (_, mut r) = c.get(&url).unwrap();
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
        assert_eq!(c.requests.load(std::sync::atomic::Ordering::Relaxed), 3);
    }

    #[test]
    fn status_errors_are_one_line_with_url() {
        let url = serve(vec![resp("404 Not Found", "", "nope")]);
        let err = client(100).get(&url).err().unwrap().to_string();
        assert!(err.contains(&url) && err.contains("HTTP 404"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn size_cap_and_truncation() {
        let url = serve(vec![resp("200 OK", "", "0123456789")]);
        let err = client(5).get(&url).err().unwrap().to_string();
        assert!(err.contains("size cap"), "{err}");

        // No Content-Length: the cap applies while streaming.
        let url = serve(vec![
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n0123456789".to_vec(),
        ]);
        let (_, mut r) = client(5).get(&url).unwrap();
        let err = r.read_to_end(&mut Vec::new()).unwrap_err().to_string();
        assert!(err.contains("size cap"), "{err}");

        let url = serve(vec![
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 100\r\n\r\nshort".to_vec(),
        ]);
        let (_, mut r) = client(1000).get(&url).unwrap();
        let err = r.read_to_end(&mut Vec::new()).unwrap_err().to_string();
        assert!(
            err.contains(&url) && err.contains("truncated download: 5 of 100 bytes"),
            "{err}"
        );
    }

    /// A stop flag of its own for a test (the process-wide one would stop
    /// the other tests).
    fn test_flag() -> &'static AtomicBool {
        Box::leak(Box::new(AtomicBool::new(false)))
    }

    /// A client with `o`, no proxies from the environment, stopped by a
    /// flag of its own.
    fn stoppable_client(o: Options) -> (Client, &'static AtomicBool) {
        let flag = test_flag();
        let o = Options {
            proxies: ProxyEnv::default(),
            cancel: Some(flag),
            ..o
        };
        (Client::new(o).unwrap(), flag)
    }

    fn set_after(flag: &'static AtomicBool, ms: u64) {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(ms));
            flag.store(true, Ordering::SeqCst);
        });
    }

    /// A server that sends `head` then keeps the connection open, silent,
    /// for a minute.
    fn serve_stalled(head: &'static [u8]) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let _ = s.read(&mut [0u8; 4096]);
            let _ = s.write_all(head);
            std::thread::sleep(Duration::from_secs(60));
        });
        format!("http://{addr}/stalled.tar")
    }

    #[test]
    fn stop_interrupts_a_stalled_body_read_in_another_thread() {
        let (c, flag) = stoppable_client(Options::default());
        let url = serve_stalled(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789");
        let (_, mut body) = c.get(&url).unwrap();
        let t = std::time::Instant::now();
        // The read blocks in a worker thread, as layer downloads do.
        let reader = std::thread::spawn(move || body.read_to_end(&mut Vec::new()));
        set_after(flag, 200);
        let r = reader.join().unwrap();
        assert!(r.is_err(), "a stopped download must not look complete");
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        // No request goes out after the stop.
        let e = c.get(&url).err().unwrap();
        assert!(crate::cancel::is_interrupted(&e), "{e:#}");
    }

    #[test]
    fn shutdown_ends_a_stalled_read_and_later_requests() {
        let c = client(1 << 20);
        let url = serve_stalled(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123");
        let (_, mut body) = c.get(&url).unwrap();
        let reader = std::thread::spawn(move || body.read_to_end(&mut Vec::new()));
        std::thread::sleep(Duration::from_millis(200));
        let t = std::time::Instant::now();
        c.shutdown();
        assert!(reader.join().unwrap().is_err());
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        let e = c.get(&url).err().unwrap().to_string();
        assert!(e.contains("downloads were stopped"), "{e}");
    }

    #[test]
    fn stop_interrupts_a_stalled_response_and_a_retry_wait() {
        let (c, flag) = stoppable_client(Options::default());
        // No status line ever comes.
        let url = serve_stalled(b"");
        set_after(flag, 200);
        let t = std::time::Instant::now();
        let e = c.get(&url).err().unwrap();
        assert!(crate::cancel::is_interrupted(&e), "{e:#}");
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());

        // 503 with a long Retry-After: the wait ends at the stop.
        let (c, flag) = stoppable_client(Options {
            retries: 3,
            ..Options::default()
        });
        let url = serve(vec![resp(
            "503 Service Unavailable",
            "Retry-After: 50\r\n",
            "",
        )]);
        set_after(flag, 200);
        let t = std::time::Instant::now();
        let e = c.get(&url).err().unwrap();
        assert!(crate::cancel::is_interrupted(&e), "{e:#}");
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert_eq!(c.requests.load(Ordering::Relaxed), 1);
    }

    /// A listener whose accept queue is full, so that the next connect
    /// hangs (Linux drops the SYN); the listener and the queued
    /// connections are returned to keep them open.
    fn hanging_connect() -> (String, TcpListener, Vec<std::net::TcpStream>) {
        use std::os::fd::AsRawFd;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        // SAFETY: listen() again on our own socket only shrinks its backlog.
        assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0);
        let addr = l.local_addr().unwrap();
        let mut queued = Vec::new();
        for _ in 0..4 {
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(s) => queued.push(s),
                Err(_) => break,
            }
        }
        (format!("http://{addr}/x"), l, queued)
    }

    #[test]
    fn stop_does_not_wait_for_a_hanging_connect() {
        let (url, _l, _queued) = hanging_connect();
        let (c, flag) = stoppable_client(Options::default());
        set_after(flag, 300);
        let t = std::time::Instant::now();
        let e = c.get(&url).err().unwrap();
        assert!(crate::cancel::is_interrupted(&e), "{e:#}");
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    }

    #[test]
    fn connection_refused_is_one_line() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/x", l.local_addr().unwrap());
        drop(l);
        let err = client(10).get(&url).err().unwrap().to_string();
        assert!(err.starts_with(&url) && !err.contains('\n'), "{err}");
    }
}
