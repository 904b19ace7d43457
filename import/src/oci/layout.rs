//! Local images: OCI layout directories, `oci-archive` tarballs (a layout
//! in a tar) and `docker save` tarballs (legacy `manifest.json` + layer
//! tars; Docker 25+ writes an OCI layout, which is read as one).

use super::digest::{Algorithm, Digest};
use super::manifest::{self, Descriptor, Document, ImageConfig, Platform};
use super::{fetch_and_apply, read_capped, resolve, BlobSource, PullOptions, Pulled};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::fs;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Component, Path, PathBuf};

use crate::sys;

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// What a tar archive holds, judged from its first entries' names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    OciArchive,
    DockerArchive,
}

/// `oci-layout`, `index.json` or `blobs/` near the start: an OCI archive;
/// `manifest.json`, `repositories` or a 64-hex directory first: a legacy
/// docker save. Anything else is a plain root file system tarball.
pub fn sniff_names<S: AsRef<str>>(first_names: &[S]) -> Option<ArchiveKind> {
    let clean = |s: &str| s.trim_start_matches("./").trim_end_matches('/').to_string();
    let names: Vec<String> = first_names.iter().map(|s| clean(s.as_ref())).collect();
    if names
        .iter()
        .any(|n| n == "oci-layout" || n == "index.json" || n == "blobs" || n.starts_with("blobs/"))
    {
        return Some(ArchiveKind::OciArchive);
    }
    let hexdir = |n: &str| {
        let top = n.split('/').next().unwrap_or("");
        top.len() == 64 && top.bytes().all(|b| b.is_ascii_hexdigit())
    };
    match names.first() {
        Some(n) if n == "manifest.json" || n == "repositories" || hexdir(n) => {
            Some(ArchiveKind::DockerArchive)
        }
        _ => None,
    }
}

/// Names only a docker save archive has at its top: `HEX.tar`, `HEX.json`,
/// `HEX/layer.tar`, `HEX/json`, `HEX/VERSION` (HEX: 64 hex digits).
pub fn docker_save_name(p: &[u8]) -> bool {
    let hex = |b: &[u8]| b.len() == 64 && b.iter().all(|c| c.is_ascii_hexdigit());
    if p.len() < 64 || !hex(&p[..64]) {
        return false;
    }
    matches!(
        &p[64..],
        b".tar" | b".json" | b"/" | b"" | b"/layer.tar" | b"/json" | b"/VERSION"
    )
}

/// `DIR:TAG` names one image of a layout with several; a path that exists
/// as given has no tag.
pub fn split_tag(source: &str) -> (PathBuf, Option<String>) {
    if Path::new(source).exists() {
        return (PathBuf::from(source), None);
    }
    match source.rsplit_once(':') {
        Some((p, t)) if !t.contains('/') && Path::new(p).exists() => {
            (PathBuf::from(p), Some(t.to_string()))
        }
        _ => (PathBuf::from(source), None),
    }
}

/// An OCI layout directory as a blob source: every blob verified in place.
pub struct LayoutSource {
    pub root: PathBuf,
    pub label: String,
}

impl LayoutSource {
    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs").join(d.algo_name()).join(&d.hex)
    }
}

impl BlobSource for LayoutSource {
    fn name(&self) -> String {
        self.label.clone()
    }

    fn manifest(&self, d: &Descriptor) -> Result<(Vec<u8>, Option<String>)> {
        let digest = d.digest()?;
        let bytes = read_capped(&self.blob_path(&digest), manifest::MAX_JSON)?;
        digest.verify(&format!("{}: manifest", self.label), &bytes)?;
        Ok((bytes, None))
    }

    fn blob(&self, what: &str, d: &Descriptor) -> Result<PathBuf> {
        let digest = d.digest()?;
        let p = self.blob_path(&digest);
        let meta = fs::symlink_metadata(&p)
            .with_context(|| format!("{what}: blob missing: {}", p.display()))?;
        if !meta.is_file() {
            bail!("{what}: {} is not a regular file", p.display());
        }
        if meta.len() != d.size {
            bail!(
                "{what}: {} bytes, its descriptor says {}",
                meta.len(),
                d.size
            );
        }
        digest.verify_file(what, &p)?;
        Ok(p)
    }
}

/// Imports from an OCI layout directory.
pub fn import_layout(
    dir: &Path,
    tag: Option<&str>,
    label: &str,
    opts: &PullOptions,
    apply: &mut dyn FnMut(usize, usize, &Path) -> Result<()>,
) -> Result<Pulled> {
    let layout_file = dir.join("oci-layout");
    let lf = read_capped(&layout_file, 4096)
        .with_context(|| format!("{label}: not an OCI layout (no oci-layout file)"))?;
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct LayoutFile {
        image_layout_version: String,
    }
    let v: LayoutFile =
        serde_json::from_slice(&lf).with_context(|| format!("{label}: oci-layout is not JSON"))?;
    if !v.image_layout_version.starts_with("1.") {
        bail!(
            "{label}: unsupported OCI layout version {:?}",
            v.image_layout_version
        );
    }
    let index = read_capped(&dir.join("index.json"), manifest::MAX_JSON)
        .with_context(|| format!("{label}: no index.json"))?;
    let Document::Index(entries) = manifest::parse(
        &format!("{label}: index.json"),
        Some(manifest::OCI_INDEX),
        &index,
    )?
    else {
        bail!("{label}: index.json is not an index");
    };
    let src = LayoutSource {
        root: dir.to_path_buf(),
        label: label.to_string(),
    };
    let names = |es: &[Descriptor]| {
        es.iter()
            .filter_map(|e| e.annotations.get(REF_NAME).cloned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let chosen: Descriptor = match tag {
        Some(t) => entries
            .iter()
            .find(|e| e.annotations.get(REF_NAME).map(String::as_str) == Some(t))
            .cloned()
            .with_context(|| {
                format!("{label}: no image tagged {t:?} (has: {})", names(&entries))
            })?,
        None if entries.len() == 1 => entries[0].clone(),
        None if entries.iter().all(|e| e.platform.is_some()) => {
            manifest::choose(label, &entries, &opts.platform)?.clone()
        }
        None => bail!(
            "{label}: the layout has {} images; name one as DIR:TAG (tags: {})",
            entries.len(),
            names(&entries)
        ),
    };
    let (bytes, _) = src.manifest(&chosen)?;
    let ct = Some(chosen.media_type.as_str()).filter(|s| !s.is_empty());
    let doc = manifest::parse(&format!("{label} {}", chosen.digest), ct, &bytes)?;
    let top = chosen.digest()?;
    let (m, manifest_digest) = resolve(&src, doc, top.clone(), &opts.platform)?;
    let config = fetch_and_apply(&src, &m, opts, apply)?;
    Ok(Pulled {
        digest: top,
        manifest_digest,
        platform: config.platform(),
        layers: m.layers.len(),
        config,
    })
}

/// A directory that removes itself when dropped.
pub struct ScratchDir(pub PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Unpacks the regular files and directories of an archive of an image
/// into `dir`, refusing any path that is absolute or has `..`, and any
/// total over `max_size`.
pub fn unpack_image_archive(
    label: &str,
    reader: &mut dyn Read,
    dir: &Path,
    max_size: u64,
) -> Result<()> {
    let guard = crate::targuard::Guard::new(reader);
    let framed = guard.entries();
    let mut ar = tar::Archive::new(guard);
    let mut total = 0u64;
    let mut links = Vec::new();
    let mut link_bytes = 0;
    for entry in ar
        .entries()
        .with_context(|| format!("{label}: not a tar archive"))?
    {
        let mut entry = entry.with_context(|| format!("{label}: corrupt tar archive"))?;
        crate::targuard::check_entry(&framed, entry.raw_header_position())
            .with_context(|| label.to_string())?;
        let path = entry
            .path()
            .with_context(|| format!("{label}: bad entry name"))?
            .into_owned();
        let mut rel = PathBuf::new();
        for c in path.components() {
            match c {
                Component::Normal(p) => rel.push(p),
                Component::CurDir => {}
                _ => bail!(
                    "{label}: entry {:?} leaves the archive",
                    path.display().to_string()
                ),
            }
        }
        if rel.as_os_str().is_empty() {
            continue;
        }
        let kind = entry.header().entry_type();
        let dest = dir.join(&rel);
        if kind.is_symlink() {
            // docker save links a layer it already wrote (`HEX/layer.tar ->
            // ../HEX2/layer.tar`). Made once every file is written, so
            // that no file is written through one; read through them only
            // beneath `dir` (see inside).
            let target = entry
                .link_name_bytes()
                .map(|t| t.into_owned())
                .unwrap_or_default();
            link_bytes += rel.as_os_str().len() + target.len();
            if link_bytes > MAX_LINK_BYTES {
                bail!(
                    "{label}: more than {MAX_LINK_BYTES} bytes of symlinks; not an image archive"
                );
            }
            links.push((rel, target));
            continue;
        }
        if kind.is_dir() {
            fs::create_dir_all(&dest)
                .with_context(|| format!("{}: cannot create", dest.display()))?;
            continue;
        }
        if !kind.is_file() {
            // Image archives hold only files; links and devices are ignored.
            continue;
        }
        total += entry.size();
        if total > max_size {
            bail!("{label}: more than the size cap of {max_size} bytes (--max-size)");
        }
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("{}: cannot create", parent.display()))?;
        }
        // Regular files only: an existing symlink at dest is replaced, not followed.
        let _ = fs::remove_file(&dest);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&dest)
            .with_context(|| format!("{}: cannot create", dest.display()))?;
        std::io::copy(&mut entry, &mut f)
            .with_context(|| format!("{label}: reading {}", rel.display()))?;
    }
    make_links(label, dir, &links)
}

/// The most bytes of symlink names and targets an image archive may hold
/// (docker save writes one short link per repeated layer).
const MAX_LINK_BYTES: usize = 4 << 20;

/// Create the archive's symlinks as links (never followed: each parent is
/// opened without following any symlink), where nothing else is.
fn make_links(label: &str, dir: &Path, links: &[(PathBuf, Vec<u8>)]) -> Result<()> {
    // Their directories first, while the tree holds no symlink to follow.
    for (rel, _) in links {
        if let Some(parent) = rel.parent() {
            let p = dir.join(parent);
            fs::create_dir_all(&p).with_context(|| format!("{}: cannot create", p.display()))?;
        }
    }
    let root = fs::File::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
    for (rel, target) in links {
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            continue;
        };
        let name = sys::cstring(name.as_encoded_bytes())?;
        let target =
            sys::cstring(target).with_context(|| format!("{label}: symlink {}", rel.display()))?;
        let pfd = if parent.as_os_str().is_empty() {
            None
        } else {
            let p = sys::cstring(parent.as_os_str().as_encoded_bytes())?;
            match sys::open_beneath(root.as_raw_fd(), &p, libc::O_RDONLY | libc::O_DIRECTORY) {
                Ok(fd) => Some(fd),
                // Below another link: skipped (a path through it names
                // the same place through the link).
                Err(_) => continue,
            }
        };
        let pfd = pfd.as_ref().map_or(root.as_raw_fd(), |f| f.as_raw_fd());
        match sys::symlinkat(&target, pfd, &name) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {} // a file won
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("{label}: cannot create symlink {}", rel.display()))
            }
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// A path inside the unpacked archive, confined to it: resolved beneath
/// `dir` (the archive's own symlinks are followed while they stay inside;
/// one leading out is refused). Returns the path with no symlink left.
fn inside(dir: &Path, rel: &str, label: &str) -> Result<PathBuf> {
    let p = Path::new(rel);
    if p.components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        bail!("{label}: manifest.json names {rel:?}, outside the archive");
    }
    let root = fs::File::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
    let c = sys::cstring(rel.as_bytes())?;
    let fd = sys::openat2(
        root.as_raw_fd(),
        &c,
        libc::O_RDONLY,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
    )
    .map_err(|e| match e.raw_os_error() {
        Some(libc::EXDEV) => anyhow::anyhow!(
            "{label}: manifest.json names {rel:?}, which goes through a symlink leading \
             outside the archive; refused"
        ),
        Some(libc::ELOOP) => anyhow::anyhow!("{label}: {rel}: a loop of symlinks"),
        _ => anyhow::anyhow!("{label}: {rel} missing: {e}"),
    })?;
    let f = fs::File::from(fd);
    let meta = f
        .metadata()
        .with_context(|| format!("{label}: cannot stat {rel}"))?;
    if !meta.is_file() {
        bail!("{label}: {rel} is not a regular file");
    }
    // Where it resolved to: beneath dir, with no symlink left in the way.
    let real = fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd()))
        .with_context(|| format!("{label}: cannot resolve {rel}"))?;
    let base =
        fs::canonicalize(dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    if !real.starts_with(&base) {
        bail!("{label}: {rel} resolves outside the archive");
    }
    Ok(real)
}

/// The sha256 a docker-save file name carries (`HEX.json`, `blobs/sha256/HEX`, `HEX/layer.tar`).
fn digest_in_name(rel: &str) -> Option<Digest> {
    rel.split('/')
        .map(|c| c.trim_end_matches(".json").trim_end_matches(".tar"))
        .find_map(|c| Digest::parse(&format!("sha256:{c}")).ok())
}

/// Imports from an unpacked docker-save archive (an OCI layout inside
/// wins). The config's digest is checked against its file name, each layer
/// against the config's `diff_ids`.
pub fn import_docker_archive(
    dir: &Path,
    tag: Option<&str>,
    label: &str,
    opts: &PullOptions,
    apply: &mut dyn FnMut(usize, usize, &Path) -> Result<()>,
) -> Result<Pulled> {
    if dir.join("oci-layout").is_file() && dir.join("index.json").is_file() && tag.is_none() {
        return import_layout(dir, None, label, opts, apply);
    }
    let data = read_capped(&dir.join("manifest.json"), manifest::MAX_JSON)
        .with_context(|| format!("{label}: no manifest.json (not a docker save archive)"))?;
    let entries: Vec<DockerEntry> = serde_json::from_slice(&data)
        .with_context(|| format!("{label}: manifest.json is not a docker save manifest"))?;
    let entry = match tag {
        Some(t) => entries
            .iter()
            .find(|e| {
                e.repo_tags
                    .iter()
                    .flatten()
                    .any(|r| r == t || r.ends_with(&format!("/{t}")))
            })
            .with_context(|| format!("{label}: no image tagged {t:?}"))?,
        None if entries.len() == 1 => &entries[0],
        None => bail!(
            "{label}: the archive has {} images; name one as FILE:TAG",
            entries.len()
        ),
    };
    let cfg_path = inside(dir, &entry.config, label)?;
    let cfg_digest = digest_in_name(&entry.config).with_context(|| {
        format!(
            "{label}: config {:?} is not named by its digest",
            entry.config
        )
    })?;
    let cfg = read_capped(&cfg_path, manifest::MAX_JSON)?;
    cfg_digest.verify(&format!("{label}: config {}", entry.config), &cfg)?;
    let config = ImageConfig::parse(&format!("{label}: config"), &cfg)?;
    let have = config.platform();
    if !have.architecture.is_empty() && !opts.platform.matches(&have) {
        bail!("{label}: the image is for {have}, not {}", opts.platform);
    }
    if config.rootfs.diff_ids.len() != entry.layers.len() {
        bail!(
            "{label}: manifest.json lists {} layers, the config {}",
            entry.layers.len(),
            config.rootfs.diff_ids.len()
        );
    }
    let n = entry.layers.len();
    for (i, (rel, diff)) in entry.layers.iter().zip(&config.rootfs.diff_ids).enumerate() {
        let p = inside(dir, rel, label)?;
        let want = Digest::parse(diff).with_context(|| format!("{label}: config diff_id"))?;
        want.verify_file(&format!("{label}: layer {}/{n} {rel}", i + 1), &p)?;
        apply(i, n, &p).with_context(|| format!("{label}: layer {}/{n} {rel}", i + 1))?;
    }
    Ok(Pulled {
        manifest_digest: Digest::of(Algorithm::Sha256, &data),
        digest: cfg_digest,
        platform: have,
        layers: n,
        config,
    })
}

/// For tests and docs: the platform an index entry must have.
pub fn host_platform() -> Platform {
    Platform::host()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn put_blob(dir: &Path, data: &[u8]) -> (Digest, u64) {
        let d = Digest::of(Algorithm::Sha256, data);
        let p = dir.join("blobs/sha256");
        fs::create_dir_all(&p).unwrap();
        fs::write(p.join(&d.hex), data).unwrap();
        (d, data.len() as u64)
    }

    fn layer_tar(name: &str, content: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, content).unwrap();
        b.into_inner().unwrap()
    }

    /// A layout with one two-layer image; returns the manifest digest.
    fn make_layout(dir: &Path, arch: &str) -> Digest {
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let l1 = put_blob(dir, &layer_tar("a", b"one"));
        let l2 = put_blob(dir, &layer_tar("b", b"two"));
        let cfg = format!(
            r#"{{"architecture":"{arch}","os":"linux","config":{{"Cmd":["/bin/sh"]}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
        );
        let c = put_blob(dir, cfg.as_bytes());
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}},{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
            manifest::OCI_MANIFEST,
            c.0,
            c.1,
            l1.0,
            l1.1,
            l2.0,
            l2.1
        );
        let md = put_blob(dir, m.as_bytes());
        let idx = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{}","size":{},"annotations":{{"{REF_NAME}":"v1"}}}}]}}"#,
            manifest::OCI_MANIFEST,
            md.0,
            md.1
        );
        fs::write(dir.join("index.json"), idx).unwrap();
        md.0
    }

    fn opts(parallel: usize) -> PullOptions<'static> {
        PullOptions {
            platform: Platform::parse("linux/amd64").unwrap(),
            parallel,
            cancel: None,
        }
    }

    #[test]
    fn layout_import_applies_layers_in_order_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let md = make_layout(dir.path(), "amd64");
        for parallel in [1, 4] {
            let seen = Mutex::new(Vec::new());
            let p = import_layout(
                dir.path(),
                None,
                "lay",
                &opts(parallel),
                &mut |i, n, path| {
                    let data = fs::read(path).unwrap();
                    seen.lock().unwrap().push((i, n, data.len()));
                    Ok(())
                },
            )
            .unwrap();
            assert_eq!(p.digest, md);
            assert_eq!(p.layers, 2);
            assert_eq!(p.config.config.unwrap().cmd.unwrap(), vec!["/bin/sh"]);
            let s = seen.into_inner().unwrap();
            assert_eq!(s.iter().map(|x| x.0).collect::<Vec<_>>(), vec![0, 1]);
        }
        assert!(
            import_layout(dir.path(), Some("v1"), "lay", &opts(2), &mut |_, _, _| Ok(
                ()
            ))
            .is_ok()
        );
        let e = import_layout(dir.path(), Some("v2"), "lay", &opts(2), &mut |_, _, _| {
            Ok(())
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("no image tagged \"v2\"") && e.contains("v1"),
            "{e}"
        );

        // Wrong platform.
        let e = import_layout(
            dir.path(),
            None,
            "lay",
            &PullOptions {
                platform: Platform::parse("linux/arm64").unwrap(),
                parallel: 1,
                cancel: None,
            },
            &mut |_, _, _| Ok(()),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("linux/amd64, not linux/arm64"), "{e}");

        // A tampered layer (same size) is refused before it is applied.
        let blobs = dir.path().join("blobs/sha256");
        let mut tampered = false;
        for e in fs::read_dir(&blobs).unwrap() {
            let p = e.unwrap().path();
            let mut data = fs::read(&p).unwrap();
            if data.len() > 1000 && !tampered {
                data[600] ^= 1;
                fs::write(&p, data).unwrap();
                tampered = true;
            }
        }
        assert!(tampered);
        let e =
            import_layout(dir.path(), None, "lay", &opts(2), &mut |_, _, _| Ok(())).unwrap_err();
        assert!(format!("{e:#}").contains("digest mismatch"), "{e:#}");
    }

    /// A docker save archive: `links` (name, target), then `files`, then
    /// manifest.json naming `config` and `layers`.
    fn docker_archive(
        links: &[(&str, &str)],
        files: &[(&str, &[u8])],
        config: &str,
        layers: &[&str],
    ) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, target) in links {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_mode(0o777);
            b.append_link(&mut h, name, target).unwrap();
        }
        let manifest =
            serde_json::json!([{"Config": config, "RepoTags": ["x:1"], "Layers": layers}]);
        let manifest = manifest.to_string();
        let all = files
            .iter()
            .copied()
            .chain([("manifest.json", manifest.as_bytes())]);
        for (name, data) in all {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, data).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// Unpack `archive` into a fresh directory and import it, recording
    /// which layers were applied.
    fn import_docker(archive: &[u8]) -> (Result<Pulled>, Vec<Vec<u8>>) {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("image");
        fs::create_dir(&target).unwrap();
        unpack_image_archive("ar", &mut &archive[..], &target, 1 << 20).unwrap();
        let mut applied = Vec::new();
        let r = import_docker_archive(&target, None, "ar", &opts(1), &mut |_, _, p| {
            applied.push(fs::read(p).unwrap());
            Ok(())
        });
        (r, applied)
    }

    #[test]
    fn docker_archive_paths_stay_inside() {
        let layer = layer_tar("a", b"one");
        let diff = Digest::of(Algorithm::Sha256, &layer);
        let cfg = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff}","{diff}"]}}}}"#
        );
        let cfg_name = format!("{}.json", Digest::of(Algorithm::Sha256, cfg.as_bytes()).hex);
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let (l1, l2) = (format!("{a}/layer.tar"), format!("{b}/layer.tar"));
        // docker save links a layer it already wrote: followed, inside.
        let ok = docker_archive(
            &[(&l2, &format!("../{a}/layer.tar"))],
            &[(&l1, &layer), (&cfg_name, cfg.as_bytes())],
            &cfg_name,
            &[&l1, &l2],
        );
        let (r, applied) = import_docker(&ok);
        r.unwrap();
        assert_eq!(applied, vec![layer.clone(), layer.clone()]);

        // A directory symlinked out of the archive, named by a layer path
        // or the config path: refused before anything is read.
        let secret = tempfile::tempdir().unwrap();
        let outside = secret.path().join("sub");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("layer.tar"), &layer).unwrap();
        fs::write(outside.join(&cfg_name), &cfg).unwrap();
        let out = outside.to_str().unwrap();
        for target in [out.to_string(), format!("../../../../../../..{out}")] {
            for (config, layers) in [
                (
                    cfg_name.clone(),
                    vec![l1.clone(), "evil/layer.tar".to_string()],
                ),
                (format!("evil/{cfg_name}"), vec![l1.clone(), l1.clone()]),
            ] {
                let bad = docker_archive(
                    &[("evil", &target)],
                    &[(&l1, &layer), (&cfg_name, cfg.as_bytes())],
                    &config,
                    &layers.iter().map(String::as_str).collect::<Vec<_>>(),
                );
                let (r, applied) = import_docker(&bad);
                let e = format!("{:#}", r.unwrap_err());
                assert!(
                    e.contains("goes through a symlink leading outside the archive"),
                    "{e}"
                );
                assert!(applied.len() <= 1, "a layer outside was applied");
            }
        }
    }

    #[test]
    fn sniffing_and_unpacking_archives() {
        assert_eq!(
            sniff_names(&["oci-layout", "blobs/"]),
            Some(ArchiveKind::OciArchive)
        );
        assert_eq!(
            sniff_names(&["./blobs/sha256/x"]),
            Some(ArchiveKind::OciArchive)
        );
        let hex = "a".repeat(64);
        assert_eq!(
            sniff_names(&[format!("{hex}/")]),
            Some(ArchiveKind::DockerArchive)
        );
        assert_eq!(
            sniff_names(&["manifest.json"]),
            Some(ArchiveKind::DockerArchive)
        );
        assert_eq!(sniff_names(&["./", "./etc/", "./usr/"]), None);
        assert!(docker_save_name(format!("{hex}.tar").as_bytes()));
        assert!(docker_save_name(format!("{hex}/layer.tar").as_bytes()));
        assert!(!docker_save_name(format!("{hex}/etc/passwd").as_bytes()));
        assert!(!docker_save_name(b"etc/passwd"));

        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "ok/file", &b"x"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        {
            // The builder refuses "..", so write the name by hand.
            let name = b"../escape";
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
        }
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let data = b.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        fs::create_dir(&target).unwrap();
        let e = unpack_image_archive("ar", &mut &data[..], &target, 100)
            .unwrap_err()
            .to_string();
        assert!(e.contains("leaves the archive"), "{e}");
        assert!(!dir.path().join("escape").exists());
        assert!(target.join("ok/file").exists());
    }
}
