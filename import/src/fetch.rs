//! Where an import run hands over to the importers of remote and image
//! sources: URLs (through [`crate::http`]) and registries, OCI layouts,
//! oci-archives and docker-save archives (through [`crate::oci`]).

use std::fs::File;
use std::io::{BufReader, Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};

use crate::http::{self, Client};
use crate::job::Job;
use crate::meta::OciConfig;
use crate::oci::cache::Cache;
use crate::oci::manifest::Platform;
use crate::oci::{self, layout, PullOptions, Pulled, Reference};
use crate::progress::Counted;
use crate::source::Kind;
use crate::{cancel, compress, disk, tarball};

/// The HTTP client for a job: `--ca-file`, `--max-size`, proxies from the
/// environment.
pub fn client(job: &Job) -> Result<Client> {
    Client::new(http::Options {
        ca_file: job.opts.ca_file.clone(),
        max_size: job.opts.max_size,
        ..http::Options::default()
    })
}

/// File-name endings and content types that say "disk image".
fn looks_like_disk(url: &str, content_type: Option<&str>) -> bool {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    [".qcow2", ".img", ".raw", ".qcow"]
        .iter()
        .any(|e| path.ends_with(e))
        || ct.contains("qemu")
        || ct.contains("x-raw-disk")
}

/// Disk images by magic: QCOW2, or an MBR/GPT signature in a non-tar block.
fn disk_magic(head: &[u8]) -> bool {
    let tar = head.len() >= 263 && &head[257..262] == b"ustar";
    head.starts_with(b"QFI\xfb")
        || (head.len() >= 520 && &head[512..520] == b"EFI PART")
        || (head.len() >= 512 && head[510] == 0x55 && head[511] == 0xaa && !tar)
}

/// An http:// or https:// URL: a tarball streamed into the tree, or a disk
/// image downloaded to a scratch file first (it needs random access).
pub fn url(job: &mut Job) -> Result<()> {
    url_inner(job).or_else(interrupted_first)
}

/// After Ctrl+C, whatever error a stopped download gave is an interruption.
fn interrupted_first(e: anyhow::Error) -> Result<()> {
    cancel::check()?;
    Err(e)
}

fn url_inner(job: &mut Job) -> Result<()> {
    let http = client(job)?;
    let (reply, mut body) = http.get(job.source)?;
    let ct = reply.header("content-type").map(str::to_string);
    let len = reply.content_length();
    // The first bytes decide with the type and the name.
    let mut head = vec![0u8; 4096];
    let mut got = 0;
    while got < head.len() {
        let n = body
            .read(&mut head[got..])
            .with_context(|| format!("{}: reading", job.source))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    head.truncate(got);
    let stream = Cursor::new(head.clone()).chain(body);
    if looks_like_disk(job.source, ct.as_deref()) || disk_magic(&head) {
        let file = job.scratch.join("download.img");
        job.progress
            .begin(format!("downloading {}", job.source), len);
        download_to(stream, &file, job)?;
        job.progress.done();
        let path = file.to_string_lossy().into_owned();
        let mut sub = Job {
            opts: job.opts,
            source: &path,
            kind: Kind::DiskImage,
            name: job.name,
            root: job.root,
            scratch: job.scratch,
            store: job.store,
            progress: job.progress,
            budget: job.budget,
            meta: &mut *job.meta,
        };
        return disk::import(&mut sub);
    }
    if head.is_empty() {
        bail!("{}: empty download", job.source);
    }
    if let Some(c) = ct.as_deref() {
        if c.starts_with("text/html") {
            bail!(
                "{}: the server sent an HTML page, not a tarball or disk image",
                job.source
            );
        }
    }
    job.progress
        .begin(format!("downloading {}", job.source), len);
    let opts = job.apply_opts(false);
    let failed = Arc::new(Mutex::new(None));
    let stream = FirstError {
        inner: stream,
        first: failed.clone(),
    };
    tarball::unpack(Counted::new(stream, job.progress), job.root, &opts).map_err(|e| {
        // "corrupt archive" after a failed download is the download's fault.
        match failed.lock().ok().and_then(|mut f| f.take()) {
            Some(download) => anyhow!(download),
            None => e.context(format!("{}: not a usable tarball", job.source)),
        }
    })?;
    job.progress.done();
    Ok(())
}

/// A reader that keeps the message of its first error.
struct FirstError<R> {
    inner: R,
    first: Arc<Mutex<Option<String>>>,
}

impl<R: Read> Read for FirstError<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let r = self.inner.read(buf);
        if let Err(e) = &r {
            if let Ok(mut f) = self.first.lock() {
                f.get_or_insert_with(|| e.to_string());
            }
        }
        r
    }
}

fn download_to(mut src: impl Read, dest: &Path, job: &Job) -> Result<()> {
    let mut f = File::create(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        cancel::check()?;
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("{}: download failed", job.source)),
        };
        job.progress.add(n as u64);
        f.write_all(&buf[..n])
            .with_context(|| format!("cannot write {}", dest.display()))?;
    }
    f.sync_data().ok();
    Ok(())
}

/// The platform to choose: `--platform` or this machine's.
fn platform(job: &Job) -> Platform {
    match &job.opts.platform {
        Some(p) => Platform {
            os: p.os.clone(),
            architecture: p.arch.clone(),
            variant: p.variant.clone(),
        },
        None => Platform::host(),
    }
}

/// A registry reference, an OCI layout directory, an oci-archive or a
/// docker-save tarball (`job.kind` says which). Layers are applied in
/// order, each verified first; `job.meta` gets the digest, platform and
/// image config.
pub fn oci(job: &mut Job) -> Result<()> {
    oci_inner(job).or_else(interrupted_first)
}

fn oci_inner(job: &mut Job) -> Result<()> {
    let opts = PullOptions {
        platform: platform(job),
        parallel: oci::parallel_from(None)?,
        cancel: Some(cancel::flag()),
    };
    let root = job.root;
    let progress = job.progress;
    let apply_opts = job.apply_opts(true);
    let mut apply = |i: usize, n: usize, path: &Path| -> Result<()> {
        cancel::check()?;
        let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let size = f.metadata().map(|m| m.len()).ok();
        progress.begin_layer("applying", Some((i + 1, n)), size);
        tarball::unpack(Counted::new(f, progress), root, &apply_opts)?;
        progress.done();
        Ok(())
    };
    let label = job.source.to_string();
    let pulled: Pulled = match job.kind {
        Kind::Registry => {
            let reference = Reference::parse(job.source)?;
            let http = client(job)?;
            let cache = Cache::open(&job.store.state_dir().join("blobs"))?;
            let p = oci::pull(&http, &reference, &cache, &opts, &mut apply)?;
            progress.note(&format!(
                "{reference}: {} blob(s) downloaded ({} bytes), {} HTTP request(s); {} layer(s)",
                cache.fetched.load(Ordering::Relaxed),
                cache.fetched_bytes.load(Ordering::Relaxed),
                http.requests.load(Ordering::Relaxed),
                p.layers
            ));
            p
        }
        Kind::OciLayout => {
            let (dir, tag) = layout::split_tag(job.source);
            layout::import_layout(&dir, tag.as_deref(), &label, &opts, &mut apply)?
        }
        Kind::OciArchive | Kind::DockerArchive => {
            let (file, tag) = layout::split_tag(job.source);
            let dir = unpack_archive(&file, &label, job.scratch, job.opts.max_size)?;
            if job.kind == Kind::OciArchive {
                layout::import_layout(&dir, tag.as_deref(), &label, &opts, &mut apply)?
            } else {
                layout::import_docker_archive(&dir, tag.as_deref(), &label, &opts, &mut apply)?
            }
        }
        other => bail!(
            "{}: not an image source ({})",
            job.source,
            other.type_name()
        ),
    };
    record(job, &pulled);
    Ok(())
}

/// Unpacks an image archive (any compression) into the scratch directory.
fn unpack_archive(file: &Path, label: &str, scratch: &Path, max: u64) -> Result<PathBuf> {
    let f = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let (_, mut dec) = compress::decoder(BufReader::with_capacity(1 << 20, f))?;
    let dir = scratch.join("image");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    layout::unpack_image_archive(label, &mut dec, &dir, max)?;
    Ok(dir)
}

/// What the metadata file keeps of an image.
fn record(job: &mut Job, p: &Pulled) {
    job.meta.digest = Some(p.digest.to_string());
    job.meta.platform = Some(p.platform.to_string());
    let c = p.config.config.clone().unwrap_or_default();
    job.meta.oci = Some(OciConfig {
        entrypoint: c.entrypoint.unwrap_or_default(),
        cmd: c.cmd.unwrap_or_default(),
        env: c.env.unwrap_or_default(),
        user: c.user.filter(|u| !u.is_empty()),
        working_dir: c.working_dir.filter(|w| !w.is_empty()),
        exposed_ports: c.exposed_ports.unwrap_or_default().into_keys().collect(),
        volumes: c.volumes.unwrap_or_default().into_keys().collect(),
        stop_signal: c.stop_signal.filter(|s| !s.is_empty()),
        labels: c.labels.unwrap_or_default(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_types() {
        assert!(looks_like_disk("https://x/y.qcow2", None));
        assert!(looks_like_disk("https://x/y.IMG?sig=1", None));
        assert!(!looks_like_disk(
            "https://x/y.tar.gz",
            Some("application/gzip")
        ));
        assert!(disk_magic(b"QFI\xfb\0\0\0\x03"));
        let mut mbr = vec![0u8; 512];
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        assert!(disk_magic(&mbr));
        assert!(!disk_magic(b"\x1f\x8b\x08"));
    }

    #[test]
    fn first_error_is_kept() {
        struct Failing(u32);
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                self.0 += 1;
                Err(std::io::Error::other(format!("failure {}", self.0)))
            }
        }
        let first = Arc::new(Mutex::new(None));
        let mut r = FirstError {
            inner: Failing(0),
            first: first.clone(),
        };
        assert!(r.read(&mut [0u8; 4]).is_err());
        assert!(r.read(&mut [0u8; 4]).is_err());
        assert_eq!(first.lock().unwrap().as_deref(), Some("failure 1"));
    }
}
