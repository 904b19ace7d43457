//! OCI images: registry references, OCI layout directories, `oci-archive`
//! tarballs and `docker save` tarballs. Every source ends in the same
//! steps: resolve an index to the wanted platform's manifest, fetch and
//! verify the config and the layers (in parallel, bounded), and hand the
//! layers to the caller in order, each a verified local file.

pub mod auth;
pub mod cache;
pub mod digest;
pub mod layout;
pub mod manifest;
pub mod reference;
pub mod registry;

use anyhow::{anyhow, bail, Context, Result};
use cache::Cache;
use digest::Digest;
use manifest::{Descriptor, Document, ImageConfig, Manifest, Platform};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

pub use reference::{pinned_digest, Reference};

/// How many layers are downloaded at once unless told otherwise
/// (`--parallel` or `SDME_IMPORT_PARALLEL`).
pub const DEFAULT_PARALLEL: usize = 4;

pub struct PullOptions<'a> {
    pub platform: Platform,
    /// Whether `platform` was asked for (then a single-platform image of
    /// another platform is refused too) or is the host's default.
    pub parallel: usize,
    /// Set by Ctrl+C: downloads stop at the next read.
    pub cancel: Option<&'a AtomicBool>,
}

/// What an image import resolved, for the metadata file.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The digest the reference resolves to (an index's, when it is one):
    /// what a pinned `@sha256:` reference names and `--if-missing` compares.
    pub digest: Digest,
    /// The chosen platform's manifest.
    pub manifest_digest: Digest,
    pub config: ImageConfig,
    pub platform: Platform,
    pub layers: usize,
}

/// Where manifests and blobs come from.
pub trait BlobSource: Sync {
    /// A name for messages (`docker.io/library/debian:12`, a path).
    fn name(&self) -> String;
    /// The manifest or index a descriptor points to, verified.
    fn manifest(&self, d: &Descriptor) -> Result<(Vec<u8>, Option<String>)>;
    /// A local file holding the blob, verified against the descriptor.
    fn blob(&self, what: &str, d: &Descriptor) -> Result<PathBuf>;
    /// Stop downloads in flight: applying a layer failed.
    fn stop(&self) {}
}

/// Follows indexes down to one manifest for `want`.
pub fn resolve(
    src: &dyn BlobSource,
    mut doc: Document,
    mut digest: Digest,
    want: &Platform,
) -> Result<(Manifest, Digest)> {
    for _ in 0..4 {
        match doc {
            Document::Manifest(m) => return Ok((m, digest)),
            Document::Index(entries) => {
                let d = manifest::choose(&src.name(), &entries, want)?.clone();
                let (bytes, ct) = src.manifest(&d)?;
                digest = d.digest()?;
                doc = manifest::parse(
                    &format!("{} {}", src.name(), d.digest),
                    ct.as_deref()
                        .or(Some(d.media_type.as_str()))
                        .filter(|s| !s.is_empty()),
                    &bytes,
                )?;
            }
        }
    }
    bail!("{}: indexes nested too deep", src.name())
}

/// Fetches the config, checks its platform, then fetches the layers with
/// `parallel` workers and calls `apply(i, n, path)` for each in order as soon
/// as it and all before it are there.
pub fn fetch_and_apply(
    src: &dyn BlobSource,
    m: &Manifest,
    opts: &PullOptions,
    apply: &mut dyn FnMut(usize, usize, &Path) -> Result<()>,
) -> Result<ImageConfig> {
    let name = src.name();
    let cfg_path = src.blob(&format!("{name}: config"), &m.config)?;
    let cfg_bytes = read_capped(&cfg_path, manifest::MAX_JSON)?;
    let config = ImageConfig::parse(&format!("{name}: config {}", m.config.digest), &cfg_bytes)?;
    let have = config.platform();
    if !have.architecture.is_empty() && !opts.platform.matches(&have) {
        bail!(
            "{name}: the image is for {have}, not {} (choose with --platform)",
            opts.platform
        );
    }
    let n = m.layers.len();
    if n == 0 {
        bail!("{name}: the image has no layers");
    }
    let workers = opts.parallel.clamp(1, 16).min(n);
    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(usize, Result<PathBuf>)>();
    std::thread::scope(|s| -> Result<()> {
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, abort) = (&next, &abort);
            let cancel = opts.cancel;
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n
                    || abort.load(Ordering::SeqCst)
                    || cancel.is_some_and(|c| c.load(Ordering::SeqCst))
                {
                    break;
                }
                let what = format!("{}: layer {}/{n} {}", src.name(), i + 1, m.layers[i].digest);
                let r = src.blob(&what, &m.layers[i]);
                let failed = r.is_err();
                if tx.send((i, r)).is_err() || failed {
                    break;
                }
            });
        }
        drop(tx);
        let mut ready: BTreeMap<usize, PathBuf> = BTreeMap::new();
        let mut applied = 0;
        let result = (|| -> Result<()> {
            while applied < n {
                if let Some(p) = ready.remove(&applied) {
                    apply(applied, n, &p).with_context(|| {
                        format!(
                            "{name}: layer {}/{n} {}",
                            applied + 1,
                            m.layers[applied].digest
                        )
                    })?;
                    applied += 1;
                    continue;
                }
                match rx.recv() {
                    Ok((i, Ok(p))) => {
                        ready.insert(i, p);
                    }
                    Ok((_, Err(e))) => return Err(e),
                    Err(_) => {
                        if opts.cancel.is_some_and(|c| c.load(Ordering::SeqCst)) {
                            bail!("{name}: interrupted");
                        }
                        bail!(
                            "{name}: layer downloads stopped before layer {}",
                            applied + 1
                        );
                    }
                }
            }
            Ok(())
        })();
        if result.is_err() {
            abort.store(true, Ordering::SeqCst);
            src.stop();
        }
        result
    })?;
    Ok(config)
}

fn read_capped(p: &Path, cap: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(p).with_context(|| format!("{}: cannot open", p.display()))?;
    let mut v = Vec::new();
    f.take(cap + 1)
        .read_to_end(&mut v)
        .with_context(|| format!("{}: cannot read", p.display()))?;
    if v.len() as u64 > cap {
        bail!("{}: larger than {cap} bytes", p.display());
    }
    Ok(v)
}

/// A reader that fails once `cancel` or `stop` is set, so a download stops
/// promptly.
pub struct Cancellable<'a, R> {
    pub inner: R,
    pub cancel: Option<&'a AtomicBool>,
    pub stop: Option<&'a AtomicBool>,
}

impl<R: std::io::Read> std::io::Read for Cancellable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.cancel.is_some_and(|c| c.load(Ordering::SeqCst))
            || self.stop.is_some_and(|c| c.load(Ordering::SeqCst))
        {
            // Not ErrorKind::Interrupted: read loops retry that.
            return Err(std::io::Error::other("interrupted"));
        }
        self.inner.read(buf)
    }
}

/// A registry repository as a blob source: blobs through the cache.
pub struct RegistrySource<'a> {
    pub registry: registry::Registry<'a>,
    pub cache: &'a Cache,
    pub cancel: Option<&'a AtomicBool>,
    pub attempts: u32,
    pub stopped: AtomicBool,
}

impl BlobSource for RegistrySource<'_> {
    fn name(&self) -> String {
        self.registry.reference.to_string()
    }

    fn manifest(&self, d: &Descriptor) -> Result<(Vec<u8>, Option<String>)> {
        let digest = d.digest()?;
        if let Some(p) = self.cache.get(&digest, Some(d.size)) {
            return Ok((read_capped(&p, manifest::MAX_JSON)?, None));
        }
        let f = self.registry.manifest(&digest.to_string())?;
        if f.bytes.len() as u64 != d.size {
            bail!(
                "{}: manifest {digest} is {} bytes, its descriptor says {}",
                self.name(),
                f.bytes.len(),
                d.size
            );
        }
        self.cache
            .put("manifest", &digest, Some(d.size), &mut &f.bytes[..])?;
        Ok((f.bytes, f.content_type))
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        // Reads blocked on a silent server would otherwise hold the
        // failure up until their timeout.
        self.registry.stop();
    }

    fn blob(&self, what: &str, d: &Descriptor) -> Result<PathBuf> {
        let digest = d.digest()?;
        if let Some(p) = self.cache.get(&digest, Some(d.size)) {
            return Ok(p);
        }
        // A body that fails midway (connection reset) is fetched again;
        // a digest mismatch is not retried.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (url, body) = self.registry.blob(&digest)?;
            let mut r = Cancellable {
                inner: body,
                cancel: self.cancel,
                stop: Some(&self.stopped),
            };
            match self
                .cache
                .put(&format!("{what} ({url})"), &digest, Some(d.size), &mut r)
            {
                Ok(p) => return Ok(p),
                Err(e) => {
                    let msg = e.to_string();
                    let transient = msg.contains("download failed") || msg.contains("truncated");
                    if !transient
                        || attempt >= self.attempts
                        || self.cancel.is_some_and(|c| c.load(Ordering::SeqCst))
                    {
                        return Err(e);
                    }
                }
            }
        }
    }
}

/// Pulls `reference` from its registry: resolves it to the wanted platform,
/// fills the cache and applies the layers in order.
pub fn pull(
    http: &crate::http::Client,
    reference: &Reference,
    cache: &Cache,
    opts: &PullOptions,
    apply: &mut dyn FnMut(usize, usize, &Path) -> Result<()>,
) -> Result<Pulled> {
    let registry = registry::Registry::new(http, reference.clone())?;
    let name = reference.to_string();
    // A pinned manifest that is cached needs no request at all.
    let top = match &reference.digest {
        Some(d) if cache.get(d, None).is_some() => {
            let p = cache.path(d);
            let bytes = read_capped(&p, manifest::MAX_JSON)?;
            d.verify(&format!("{name}: cached manifest"), &bytes)?;
            (bytes, None, d.clone())
        }
        _ => {
            let f = registry.manifest(&reference.manifest_ref())?;
            if reference.digest.is_some() {
                cache.put("manifest", &f.digest, None, &mut &f.bytes[..])?;
            }
            (f.bytes, f.content_type, f.digest)
        }
    };
    let (bytes, ct, top_digest) = top;
    let doc = manifest::parse(&name, ct.as_deref(), &bytes)?;
    let src = RegistrySource {
        registry,
        cache,
        cancel: opts.cancel,
        attempts: 3,
        stopped: AtomicBool::new(false),
    };
    let (m, manifest_digest) = resolve(&src, doc, top_digest.clone(), &opts.platform)?;
    let config = fetch_and_apply(&src, &m, opts, apply)?;
    Ok(Pulled {
        digest: top_digest,
        manifest_digest,
        platform: config.platform(),
        config,
        layers: m.layers.len(),
    })
}

/// The platform to pull: `--platform` or the host's.
pub fn platform_from(opt: Option<&str>) -> Result<Platform> {
    match opt {
        Some(s) => Platform::parse(s),
        None => Ok(Platform::host()),
    }
}

/// The number of parallel downloads: `--parallel`, `SDME_IMPORT_PARALLEL`,
/// or the default.
pub fn parallel_from(opt: Option<usize>) -> Result<usize> {
    if let Some(n) = opt {
        return Ok(n.max(1));
    }
    match std::env::var("SDME_IMPORT_PARALLEL") {
        Ok(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=64).contains(n))
            .ok_or_else(|| anyhow!("SDME_IMPORT_PARALLEL={v:?}: expected a number from 1 to 64")),
        Err(_) => Ok(DEFAULT_PARALLEL),
    }
}
