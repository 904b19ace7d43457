//! `sdme fs`: the rootfs store. `import` and `rm` are sdme-import's own
//! code (its clap `Args`, its engine, its in-use check); `ls` reads the
//! metadata sdme-import writes; `export` is the reverse of a tarball
//! import, of a rootfs or of a stopped container's merged view.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use sdme_core::container::{Container, Rootfs};
use sdme_core::name::check_rootfs_name;
use sdme_core::paths::{container_dir, ROOTFS_DIR, STATE_DIR};
use sdme_core::search::{search, FileType, UnitName};
use sdme_import::budget::human;
use sdme_import::compress::{for_file_name, Encoder};
use sdme_import::meta::Meta;
use sdme_import::store::Store;

use crate::lookup::{config, dirs, load, service, write_stdout};
use crate::sys;

#[derive(Subcommand)]
pub enum FsCmd {
    /// Import a root file system: sdme-import(1), the same options and
    /// code (and the original sdme's --oci-mode and --base-fs).
    Import(crate::fsimport::ImportCmd),
    /// List the imported root file systems and the containers using them.
    Ls {
        /// One JSON array (see sdme(1) for its fields).
        #[arg(long)]
        json: bool,
    },
    /// Remove root file systems; refused while anything uses them.
    Rm {
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// Write a rootfs, or a stopped container's merged view, as a tarball
    /// (compressed as FILE's suffix says: .tar, .tar.gz, .tar.bz2, .tar.xz,
    /// .tar.zst).
    Export {
        /// A rootfs name or a container name.
        #[arg(value_name = "NAME|CONTAINER")]
        source: String,
        /// The tarball to write (must not exist).
        file: PathBuf,
        /// SOURCE is a rootfs (when a container has the same name).
        #[arg(long, conflicts_with = "container")]
        rootfs: bool,
        /// SOURCE is a container (when a rootfs has the same name).
        #[arg(long)]
        container: bool,
    },
    /// Build a rootfs from a build file (sdme.build(5)), or --prune the
    /// build cache.
    Build(crate::fsbuild::BuildArgs),
}

pub fn run(cmd: FsCmd) -> Result<ExitCode> {
    match cmd {
        FsCmd::Import(cmd) => return crate::fsimport::run(&cmd),
        FsCmd::Ls { json } => ls(json)?,
        FsCmd::Rm { names } => crate::each(&names, rm)?,
        FsCmd::Export {
            source,
            file,
            rootfs,
            container,
        } => export(&source, &file, rootfs, container)?,
        FsCmd::Build(a) => return crate::fsbuild::run(&a),
    }
    Ok(ExitCode::SUCCESS)
}

/// One row of `fs ls`.
#[derive(Debug, Default, PartialEq)]
struct Row {
    name: String,
    os: Option<String>,
    source: Option<String>,
    kind: Option<String>,
    imported: Option<String>,
    size: Option<u64>,
    used_by: Vec<String>,
}

/// The rootfs names in `dir` (directories only; a symlink is listed as
/// nothing sdme made).
fn rootfs_names(dir: &Path) -> Result<Vec<String>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut v = Vec::new();
    for e in rd {
        let e = e.with_context(|| format!("cannot list {}", dir.display()))?;
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        if e.file_type().is_ok_and(|t| t.is_dir()) && check_rootfs_name(&name).is_ok() {
            v.push(name);
        }
    }
    v.sort();
    Ok(v)
}

/// Containers (file stems) by the rootfs their file names.
fn users_by_rootfs() -> BTreeMap<String, Vec<String>> {
    let dirs = dirs();
    let config = config(&dirs);
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in search(&dirs, FileType::Container).found {
        if let Ok(c) = Container::load_with(&f, &config) {
            if let Rootfs::Named(n) = c.rootfs {
                m.entry(n).or_default().push(f.name.stem());
            }
        }
    }
    m
}

fn rows(state: &Path, users: &BTreeMap<String, Vec<String>>) -> Result<Vec<Row>> {
    let mut out = Vec::new();
    for name in rootfs_names(&state.join("rootfs"))? {
        let meta =
            Meta::read(&state.join("meta").join(format!("{name}.json"))).unwrap_or_else(|e| {
                eprintln!("sdme: {e:#}");
                None
            });
        let os_release = match &meta {
            Some(m) if !m.os_release.is_empty() => m.os_release.clone(),
            _ => sdme_import::import::read_os_release(&state.join("rootfs").join(&name)),
        };
        let os = os_release
            .get("PRETTY_NAME")
            .or_else(|| os_release.get("NAME"))
            .cloned();
        out.push(Row {
            used_by: users.get(&name).cloned().unwrap_or_default(),
            os,
            source: meta.as_ref().map(|m| m.source.clone()),
            kind: meta.as_ref().map(|m| m.kind.clone()),
            imported: meta.as_ref().map(|m| m.imported_at.clone()),
            size: meta.as_ref().map(|m| m.size),
            name,
        });
    }
    Ok(out)
}

fn ls(json: bool) -> Result<()> {
    let rows = rows(Path::new(STATE_DIR), &users_by_rootfs())?;
    let text = if json { to_json(&rows) } else { table(&rows) };
    write_stdout(text.as_bytes())
}

fn to_json(rows: &[Row]) -> String {
    let v: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.name,
                "os": r.os,
                "source": r.source,
                "kind": r.kind,
                "imported": r.imported,
                "size": r.size,
                "used_by": r.used_by,
            })
        })
        .collect();
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_else(|_| "[]".into());
    s.push('\n');
    s
}

/// The SOURCE column: what it was imported from, or `build FILE`.
fn source_cell(r: &Row) -> String {
    match (&r.source, r.kind.as_deref()) {
        (Some(s), Some("build")) => format!("build {s}"),
        (Some(s), _) => s.clone(),
        (None, _) => "-".into(),
    }
}

fn table(rows: &[Row]) -> String {
    let dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let mut cells = vec![["NAME", "OS", "SOURCE", "IMPORTED", "SIZE", "USED BY"].map(String::from)];
    for r in rows {
        cells.push([
            r.name.clone(),
            dash(&r.os),
            source_cell(r),
            dash(&r.imported),
            r.size.map_or_else(|| "-".into(), human),
            if r.used_by.is_empty() {
                "-".into()
            } else {
                r.used_by.join(",")
            },
        ]);
    }
    let mut w = [0usize; 6];
    for c in &cells {
        for (i, s) in c.iter().enumerate() {
            w[i] = w[i].max(s.chars().count());
        }
    }
    let mut out = String::new();
    for c in &cells {
        let mut line = String::new();
        for (i, s) in c.iter().enumerate() {
            if i + 1 == c.len() {
                line.push_str(s);
            } else {
                line.push_str(&format!("{s:<width$}  ", width = w[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `fs rm NAME`: sdme-import's removal (its in-use check names every
/// user: running containers, mounts, `.container` files), after refusing
/// anything mounted inside the tree, which a removal would descend into.
fn rm(name: &str) -> Result<()> {
    check_rootfs_name(name).map_err(|e| anyhow!(e))?;
    let path = Path::new(ROOTFS_DIR).join(name);
    if path.symlink_metadata().is_err() {
        bail!("no rootfs named {name} in {ROOTFS_DIR}");
    }
    if let Some(m) = sys::mounts_below(&path)?.first() {
        bail!("rootfs {name}: {m} is mounted; unmount it first, nothing removed");
    }
    sdme_import::import::remove(Path::new(STATE_DIR), name, false)
}

/// What `fs export` writes.
enum Tree {
    /// An imported rootfs, locked against import and removal meanwhile.
    Rootfs(PathBuf),
    /// A stopped container: `upper/` over its lower layer.
    Container {
        lower: PathBuf,
        upper: Option<PathBuf>,
    },
}

fn export(source: &str, file: &Path, want_rootfs: bool, want_container: bool) -> Result<()> {
    let fname = file
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{}: not a file name", file.display()))?;
    let compression = for_file_name(fname).with_context(|| {
        format!(
            "{}: unknown suffix; use .tar, .tar.gz, .tar.bz2, .tar.xz or .tar.zst",
            file.display()
        )
    })?;
    if file.symlink_metadata().is_ok() {
        bail!("{} exists already; nothing written", file.display());
    }
    let parent = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let pmeta = std::fs::metadata(&parent)
        .with_context(|| format!("cannot write to {}", parent.display()))?;
    let is_rootfs = check_rootfs_name(source).is_ok()
        && Path::new(ROOTFS_DIR)
            .join(source)
            .symlink_metadata()
            .is_ok();
    let is_container = crate::create::check_name(source).is_ok()
        && crate::create::existing(&dirs(), source).is_some();
    let use_rootfs = match (is_rootfs, is_container) {
        _ if want_rootfs => true,
        _ if want_container => false,
        (true, true) => bail!(
            "{source} is both a rootfs and a container; say which with --rootfs or --container"
        ),
        (r, c) if r || c => r,
        _ => bail!("no rootfs or container named {source}"),
    };
    // The store's name lock keeps an import --force or a removal of the
    // rootfs from swapping the tree while it is read.
    let mut _lock = None;
    let tree = if use_rootfs {
        check_rootfs_name(source).map_err(|e| anyhow!(e))?;
        let store = Store::open(Path::new(STATE_DIR))?;
        _lock = Some(store.lock(source)?);
        let p = store.rootfs_path(source);
        if !p.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            bail!("no rootfs named {source} in {ROOTFS_DIR}");
        }
        Tree::Rootfs(p)
    } else {
        let (tree, rootfs) = container_tree(source)?;
        if let Some(n) = rootfs {
            _lock = Some(Store::open(Path::new(STATE_DIR))?.lock(&n)?);
        }
        tree
    };
    // The tarball must not be part of what it archives.
    for d in tree.dirs() {
        let dm = std::fs::metadata(d).with_context(|| format!("cannot stat {}", d.display()))?;
        let cparent = parent.canonicalize().unwrap_or_else(|_| parent.clone());
        if dm.dev() == pmeta.dev() && cparent.starts_with(d) {
            bail!(
                "{} is inside the exported tree {}; write it to another file system or directory",
                file.display(),
                d.display()
            );
        }
    }
    let tmp = tempfile::Builder::new()
        .prefix(".sdme-export-")
        .tempfile_in(&parent)
        .with_context(|| format!("cannot create a temporary file in {}", parent.display()))?;
    let out = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file());
    let enc = Encoder::new(compression, out)?;
    let (enc, stats) = tree.write(enc)?;
    let out = enc
        .finish()
        .context("cannot finish the compressed stream")?;
    out.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.path().display()))?;
    tmp.persist_noclobber(file)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot create {}", file.display()))?;
    eprintln!(
        "exported {source} to {}: {} entries, {} of file data{}",
        file.display(),
        stats.entries,
        human(stats.bytes),
        if stats.sockets > 0 {
            format!(" ({} sockets left out)", stats.sockets)
        } else {
            String::new()
        }
    );
    Ok(())
}

/// A container's layers, refused while it runs (its merged view changes
/// under a running guest; stop it for a consistent tarball).
/// Also the rootfs name to lock, for a `Rootfs=NAME` container.
fn container_tree(name: &str) -> Result<(Tree, Option<String>)> {
    let c = load(name)?;
    if matches!(c.name, UnitName::Template(_)) {
        bail!("{name} is a template; export one of its instances");
    }
    let state = sys::active_state(&service(name))?;
    if !matches!(state.as_str(), "inactive" | "failed") {
        bail!("container {name} is {state}; stop it first (sdme stop {name})");
    }
    let dir = container_dir(&c.machine);
    if let Some(m) = sys::mounts_below(&dir)?.first() {
        bail!("container {name}: {m} is still mounted; stop it first");
    }
    let lower = PathBuf::from(c.rootfs.lower_dir());
    if !lower.is_dir() {
        bail!(
            "container {name}: its rootfs {} is missing",
            lower.display()
        );
    }
    let upper = dir.join("upper");
    let upper = match upper.symlink_metadata() {
        Ok(m) if m.is_dir() => Some(upper),
        Ok(_) => bail!("{} is not a directory; not exported", upper.display()),
        Err(_) => None,
    };
    let rootfs = match c.rootfs {
        Rootfs::Named(n) => Some(n),
        _ => None,
    };
    Ok((Tree::Container { lower, upper }, rootfs))
}

impl Tree {
    fn dirs(&self) -> Vec<&Path> {
        match self {
            Tree::Rootfs(p) => vec![p],
            Tree::Container { lower, upper } => {
                let mut v = vec![lower.as_path()];
                v.extend(upper.as_deref());
                v
            }
        }
    }

    fn write<W: std::io::Write>(&self, out: W) -> Result<(W, sdme_import::export::Stats)> {
        match self {
            Tree::Rootfs(p) => sdme_import::export::write_tree(p, out),
            Tree::Container { lower, upper: None } => sdme_import::export::write_tree(lower, out),
            Tree::Container {
                lower,
                upper: Some(upper),
            } => {
                let view = MergedView::mount(upper, lower)?;
                sdme_import::export::write_tree(view.path(), out)
            }
        }
    }
}

/// A read-only overlay of `upper` over `lower` (the kernel applies the
/// whiteouts and opaque directories), mounted in a mount namespace of this
/// process alone: nobody else sees it and it goes away with the process,
/// killed or not.
struct MergedView {
    dir: tempfile::TempDir,
}

impl MergedView {
    fn mount(upper: &Path, lower: &Path) -> Result<MergedView> {
        for p in [upper, lower] {
            let s = p.to_string_lossy();
            if s.contains([',', ':', '\\']) {
                bail!("{s}: a layer path with ',', ':' or '\\' cannot be mounted; not exported");
            }
        }
        // SAFETY: plain syscalls on this thread; no memory is shared.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error())
                    .context("cannot create a private mount namespace");
            }
        }
        mount(None, "/", None, libc::MS_REC | libc::MS_PRIVATE, None)
            .context("cannot make the mount namespace private")?;
        let dir = tempfile::Builder::new()
            .prefix("sdme-export-")
            .tempdir_in("/run")
            .context("cannot create a directory in /run")?;
        // upper/ as the top lower layer: a read-only overlay needs no
        // workdir and writes nothing to either layer.
        let opts = format!(
            "lowerdir={}:{}",
            upper.to_string_lossy(),
            lower.to_string_lossy()
        );
        mount(
            Some("overlay"),
            &dir.path().to_string_lossy(),
            Some("overlay"),
            libc::MS_RDONLY,
            Some(&opts),
        )
        .with_context(|| format!("cannot mount the overlay ({opts})"))?;
        Ok(MergedView { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for MergedView {
    fn drop(&mut self) {
        if let Ok(c) = CString::new(self.dir.path().as_os_str().as_bytes()) {
            // SAFETY: a valid path; failure leaves it to the namespace's end.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

fn mount(
    src: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<()> {
    let c = |s: &str| CString::new(s).map_err(|_| anyhow!("{s}: contains a NUL byte"));
    let src = src.map(c).transpose()?;
    let target = c(target)?;
    let fstype = fstype.map(c).transpose()?;
    let data = data.map(c).transpose()?;
    let p = |o: &Option<CString>| o.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: NUL-terminated strings or null, as mount(2) takes them.
    let r = unsafe { libc::mount(p(&src), target.as_ptr(), p(&fstype), flags, p(&data).cast()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with(names: &[&str]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for n in names {
            std::fs::create_dir_all(t.path().join("rootfs").join(n).join("etc")).unwrap();
        }
        std::fs::create_dir_all(t.path().join("meta")).unwrap();
        t
    }

    #[test]
    fn rows_from_metadata_and_files() {
        let t = state_with(&["deb", "bare", ".hidden-x"]);
        // A symlink in rootfs/ is not a rootfs.
        std::os::unix::fs::symlink("/etc", t.path().join("rootfs/link")).unwrap();
        let m = Meta {
            name: "deb".into(),
            source: "/tmp/deb.tar".into(),
            kind: "tar".into(),
            imported_at: "2026-12-06T15:00:00Z".into(),
            size: 3 << 20,
            os_release: [("PRETTY_NAME".to_string(), "Debian 13".to_string())].into(),
            ..Default::default()
        };
        std::fs::write(t.path().join("meta/deb.json"), m.to_json().unwrap()).unwrap();
        std::fs::write(
            t.path().join("rootfs/bare/etc/os-release"),
            "NAME=\"Bare Linux\"\n",
        )
        .unwrap();
        let users: BTreeMap<String, Vec<String>> =
            [("deb".to_string(), vec!["web".to_string(), "db".to_string()])].into();
        let rows = rows(t.path(), &users).unwrap();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[0].name, "bare");
        assert_eq!(rows[0].os.as_deref(), Some("Bare Linux"));
        assert_eq!(rows[0].size, None);
        assert!(rows[0].used_by.is_empty());
        assert_eq!(rows[1].os.as_deref(), Some("Debian 13"));
        assert_eq!(rows[1].size, Some(3 << 20));
        let tab = table(&rows);
        let lines: Vec<&str> = tab.lines().collect();
        assert!(lines[0].starts_with("NAME  OS "), "{tab}");
        assert!(
            lines[1].starts_with("bare  Bare Linux") && lines[1].ends_with(" -"),
            "{tab}"
        );
        assert!(
            lines[2].contains("/tmp/deb.tar") && lines[2].ends_with("3M    web,db"),
            "{tab}"
        );
        let j: serde_json::Value = serde_json::from_str(&to_json(&rows)).unwrap();
        assert_eq!(j[0]["size"], serde_json::Value::Null);
        assert_eq!(j[1]["used_by"], serde_json::json!(["web", "db"]));
        assert_eq!(j[1]["imported"], "2026-12-06T15:00:00Z");
        assert_eq!(j[1]["kind"], "tar");
    }

    #[test]
    fn built_rootfs_say_so_in_source() {
        let mut r = Row {
            name: "web".into(),
            source: Some("/etc/sdme/web.build".into()),
            kind: Some("build".into()),
            ..Default::default()
        };
        assert_eq!(source_cell(&r), "build /etc/sdme/web.build");
        assert!(table(std::slice::from_ref(&r)).contains(" build /etc/sdme/web.build "));
        r.kind = Some("tar".into());
        assert_eq!(source_cell(&r), "/etc/sdme/web.build");
        r.source = None;
        assert_eq!(source_cell(&r), "-");
    }

    #[test]
    fn no_store_no_rows() {
        let t = tempfile::tempdir().unwrap();
        assert!(rows(t.path(), &BTreeMap::new()).unwrap().is_empty());
    }
}
