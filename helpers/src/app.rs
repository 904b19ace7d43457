//! The application of a container (`App=`, sdme.container(5) "OCI
//! APPLICATIONS"): what sdme-prepare does for it at each start.
//!
//! The mount mechanism: the application's root is an overlay of its own,
//! mounted by sdme-prepare on the host at `STATE/app/merged` (lower: the
//! imported image tree; upper and work: `STATE/app/{upper,work}`), with
//! sdme-drop-privs (read-only) and the volumes bind-mounted below it; the
//! container's nspawn gets one recursive `--bind=STATE/app/merged:
//! /oci/apps/APP/root`. Not an overlay nested under the container's own
//! `merged/`: that overlay is mounted by a `.mount` unit after this step
//! (or by this helper, over ID-mapped layers), a mount below it would make
//! its unmount fail with EBUSY, and its upper would gain mount points.
//! Mounted apart, the app's overlay is built the same way as the
//! container's (over ID-mapped layers with `PrivateUsers=`, see
//! [`crate::idmap`]), every path from the image is resolved without
//! following a symlink, and the stop step unmounts it like the other.
//!
//! The guest's unit `sdme-app.service` is written into the container's
//! upper layer and enabled there (rewritten at every start, removed when
//! the file no longer has `App=`).

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use sdme_core::app_ports::{nspawn_env, ExposePorts, NSPAWN_ENV};
use sdme_core::app_unit::{
    app_root_in_guest, render_app_unit, AppRun, AppSettings, ImageConfig, APP_POD_IN_APP, APP_UNIT,
    DROP_PRIVS_IN_APP,
};

use crate::fsutil::{container_rel_path, rel_names, DirAttrs, Entry, Lower, SafeDir};
use crate::hostdir::ensure_host_dir;
use crate::overlay;

/// The first line of the unit sdme-prepare writes: a file with it is
/// sdme's to replace or remove.
const UNIT_MARK: &str = "# Written by sdme-prepare";

/// Where the units of the guest's administrator live (the upper layer's).
const SYSTEM_DIR: &str = "etc/systemd/system";

/// Where the host keeps what the application needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppDirs {
    /// `/var/lib/sdme/rootfs`.
    pub rootfs: PathBuf,
    /// `/var/lib/sdme/meta`: sdme-import's metadata, with the OCI config.
    pub meta: PathBuf,
    /// `/var/lib/sdme/volumes`.
    pub volumes: PathBuf,
    /// The sdme-drop-privs binary bound into the app's root.
    pub drop_privs: PathBuf,
    /// `AppPod=`: the directory of the host's sdme-app-pod.socket (bound
    /// into the app's root) and the records of the spawner
    /// ([`crate::apppod`]).
    pub pod_socket_dir: PathBuf,
    pub pod_records: PathBuf,
}

impl Default for AppDirs {
    fn default() -> AppDirs {
        AppDirs {
            rootfs: sdme_core::paths::ROOTFS_DIR.into(),
            meta: sdme_core::paths::META_DIR.into(),
            volumes: sdme_core::paths::VOLUMES_DIR.into(),
            drop_privs: sdme_core::paths::helper("sdme-drop-privs").into(),
            pod_socket_dir: sdme_core::paths::APP_POD_SOCKET_DIR.into(),
            pod_records: sdme_core::paths::APP_POD_RECORDS.into(),
        }
    }
}

/// Metadata bigger than this is not sdme-import's.
const MAX_META: u64 = 16 << 20;

/// The image configuration of rootfs `s.name`, from its metadata.
pub fn image_config(dirs: &AppDirs, s: &AppSettings) -> Result<ImageConfig> {
    use std::io::Read;
    let at = || format!("{}: App= (rootfs {})", s.at, s.name);
    let tree = dirs.rootfs.join(&s.name);
    if !tree.is_dir() {
        bail!(
            "{}: {} not found: import the application's image first (sdme-import, or App= with an OCI reference)",
            at(),
            tree.display()
        );
    }
    let path = dirs.meta.join(format!("{}.json", s.name));
    let mut data = Vec::new();
    match std::fs::File::open(&path) {
        Ok(f) => f
            .take(MAX_META + 1)
            .read_to_end(&mut data)
            .with_context(|| format!("cannot read {}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{}: the rootfs has no OCI image configuration ({} is missing: it was not imported by sdme-import)",
            at(),
            path.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if data.len() as u64 > MAX_META {
        bail!(
            "{}: {} is too big for sdme-import's metadata",
            at(),
            path.display()
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&data)
        .with_context(|| format!("{}: {} is not JSON", at(), path.display()))?;
    let oci = match v.get("oci") {
        Some(o) if o.is_object() => o,
        _ => {
            let kind = v.get("kind").and_then(|k| k.as_str()).unwrap_or("unknown");
            bail!(
                "{}: the rootfs has no OCI image configuration (it was imported from a '{kind}' source, not an OCI image): an application needs its entrypoint, user and environment",
                at()
            )
        }
    };
    let strings = |k: &str| -> Result<Vec<String>> {
        match oci.get(k) {
            None | Some(serde_json::Value::Null) => Ok(Vec::new()),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|x| x.as_str().map(String::from))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    anyhow!(
                        "{}: {}: oci.{k} is not a list of strings",
                        at(),
                        path.display()
                    )
                }),
            Some(_) => bail!("{}: {}: oci.{k} is not a list", at(), path.display()),
        }
    };
    let string = |k: &str| oci.get(k).and_then(|x| x.as_str()).map(String::from);
    Ok(ImageConfig {
        entrypoint: strings("entrypoint")?,
        cmd: strings("cmd")?,
        env: strings("env")?,
        user: string("user"),
        working_dir: string("working_dir"),
        volumes: strings("volumes")?,
        stop_signal: string("stop_signal"),
        exposed_ports: strings("exposed_ports")?,
    })
}

/// `AppPod=`: the record the host's spawner reads ([`crate::apppod`]),
/// one file per container unit, named after it: written at every start
/// with `AppPod=`, removed at a start without it and at stop
/// ([`forget_pod`]).
pub fn record_pod(dirs: &AppDirs, unit: Option<&str>, s: Option<&AppSettings>) -> Result<()> {
    let pod = s.and_then(|s| s.pod.as_deref());
    let Some(unit) = unit else {
        if pod.is_some() {
            bail!("--app-pod needs --unit (the container's unit, which the host's spawner finds in the application's cgroup)");
        }
        return Ok(());
    };
    let Some(pod) = pod else {
        return forget_pod(dirs, Some(unit));
    };
    let path = dirs.pod_records.join(unit);
    let tmp = dirs.pod_records.join(format!(".{unit}.tmp"));
    let mut tries = 0;
    loop {
        ensure_host_dir(&dirs.pod_records, 0o755)?;
        let r =
            std::fs::write(&tmp, format!("{pod}\n")).and_then(|()| std::fs::rename(&tmp, &path));
        match r {
            // The stop of the last other container removed the directory
            // in between (forget_pod): make it again.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 3 => tries += 1,
            r => return r.with_context(|| format!("cannot write {}", path.display())),
        }
    }
}

/// Remove the `AppPod=` record of `unit`, and its directory once empty;
/// none is no error.
pub fn forget_pod(dirs: &AppDirs, unit: Option<&str>) -> Result<()> {
    let Some(unit) = unit else { return Ok(()) };
    let path = dirs.pod_records.join(unit);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => {}
    }
    // Another container's record keeps it (ENOTEMPTY): fine.
    let _ = std::fs::remove_dir(&dirs.pod_records);
    Ok(())
}

/// `STATE/app`: the application's `upper/`, `work/` and `merged/`.
pub fn app_state(state: &Path) -> PathBuf {
    state.join("app")
}

/// The host directory of an anonymous volume: `VOLUMES/MACHINE/ESCAPED`,
/// named after the path (`/var/cache/nginx` gives `var-cache-nginx`).
pub fn anonymous_volume(dirs: &AppDirs, machine: &str, path: &str) -> PathBuf {
    dirs.volumes
        .join(machine)
        .join(sdme_core::escape::path_escape(path))
}

/// Everything for the application but the guest's unit, at every start:
/// its layers, its volumes, its tree mounted at `STATE/app/merged`
/// (unless it is already). Returns what the unit runs.
pub fn prepare(
    dirs: &AppDirs,
    machine: &str,
    state: &Path,
    userns_base: Option<u32>,
    s: &AppSettings,
) -> Result<AppRun> {
    let img = image_config(dirs, s)?;
    let run = AppRun::new(s, &img).map_err(|e| anyhow!(e))?;
    write_nspawn_env(state, s, &run)?;
    let lower_path = dirs.rootfs.join(&s.name);
    let lower = Lower::open(&lower_path)?;
    let app = app_state(state);
    let merged = app.join("merged");
    if overlay::overlay_mounted(&merged)? {
        return Ok(run);
    }
    // Left by a stop that could not finish: the binds must go before the
    // overlay is mounted again.
    unmount(state)?;
    ensure_host_dir(&app, 0o755)?;
    ensure_host_dir(&app.join("upper"), 0o755)?;
    ensure_host_dir(&app.join("work"), 0o700)?;
    ensure_host_dir(&merged, 0o755)?;
    let upper = SafeDir::open(&app.join("upper"))?;
    // Mount points in the app's upper layer, as in the container's: made
    // where the image has nothing, never over a symlink.
    crate::bindpoint::ensure(&upper, &lower, Path::new(&DROP_PRIVS_IN_APP[1..]), true)
        .context("the mount point of sdme-drop-privs in the application's root")?;
    if s.pod.is_some() {
        crate::bindpoint::ensure(&upper, &lower, Path::new(&APP_POD_IN_APP[1..]), false)
            .context("the mount point of the host's AppPod= socket in the application's root")?;
    }
    let mut sources = Vec::with_capacity(run.volumes.len());
    for v in &run.volumes {
        let rel = container_rel_path(&v.path)?;
        crate::bindpoint::ensure(&upper, &lower, &rel, false)
            .with_context(|| format!("the mount point of the volume {}", v.path))?;
        let src = match &v.source {
            Some(src) => {
                let src = PathBuf::from(src);
                ensure_host_dir(&src, 0o755).with_context(|| format!("Volume={}", v.spec()))?;
                src
            }
            None => {
                let dir = anonymous_volume(dirs, machine, &v.path);
                // A new volume gets the owner and mode of the image's
                // directory there (as Docker's copy-up does), so that an
                // app that is not root can write to it.
                let attrs = lower.dir_attrs(&rel).unwrap_or(DirAttrs::DEFAULT);
                new_volume(&dir, attrs, &lower, &rel)?;
                dir
            }
        };
        sources.push((src, rel, v.read_only));
    }
    let key = format!("{machine}@app");
    match userns_base {
        Some(base) => crate::idmap::mount_overlay(&key, &lower_path, &app, &merged, base)?,
        None => overlay::mount_overlay(&lower_path, &app)?,
    }
    let r = mount_binds(dirs, &merged, userns_base, s.pod.is_some(), &sources);
    if r.is_err() {
        let _ = unmount(state);
    }
    r.map(|()| run)
}

/// The image's ports for the container's `ExecStart=` (see
/// [`sdme_core::app_ports`]), written at every start; removed when they do
/// not apply, so that nothing stale is left.
fn write_nspawn_env(state: &Path, s: &AppSettings, run: &AppRun) -> Result<()> {
    let path = state.join(NSPAWN_ENV);
    if s.expose == ExposePorts::No {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove {}", path.display()))
            }
            _ => Ok(()),
        };
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        bail!("{}: not a file below the state directory", path.display());
    };
    ensure_host_dir(dir, 0o755)?;
    let text = nspawn_env(s.expose, &run.ports);
    SafeDir::open(dir)?
        .write_file(name, text.as_bytes(), 0o644)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Create the directory of an anonymous volume when it is missing, with
/// `attrs` and what the image has at `rel` (crate::volseed), made beside
/// it and renamed into place, so that a failed copy leaves no half volume
/// behind; an existing one is kept as it is (the app's data).
fn new_volume(dir: &Path, attrs: DirAttrs, image: &Lower, rel: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::symlink_metadata(dir).is_ok() {
        return ensure_host_dir(dir, attrs.mode);
    }
    let name = dir
        .file_name()
        .context("a volume directory without a name")?;
    let tmp = dir.with_file_name(format!(".new-{}", name.to_string_lossy()));
    let _ = std::fs::remove_dir_all(&tmp);
    ensure_host_dir(&tmp, attrs.mode)?;
    std::os::unix::fs::lchown(&tmp, Some(attrs.uid), Some(attrs.gid))
        .with_context(|| format!("cannot chown {}", tmp.display()))?;
    // chown clears the set-id bits.
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(attrs.mode))
        .with_context(|| format!("cannot chmod {}", tmp.display()))?;
    if let Some(src) = image.open_dir_nofollow(rel)? {
        crate::volseed::seed(&src, &tmp)
            .with_context(|| format!("the new volume /{} from the image", rel.display()))?;
    }
    std::fs::rename(&tmp, dir)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), dir.display()))
}

/// The helper (read-only) and the volumes, bound below the app's root,
/// each target opened without following a symlink.
fn mount_binds(
    dirs: &AppDirs,
    merged: &Path,
    userns_base: Option<u32>,
    pod: bool,
    volumes: &[(PathBuf, PathBuf, bool)],
) -> Result<()> {
    let ns = userns_base.map(crate::idmap::userns_fd).transpose()?;
    let mut helpers = vec![(&dirs.drop_privs, DROP_PRIVS_IN_APP, false)];
    if pod {
        // The directory, not the socket: it outlives a restart of the
        // socket unit (which makes a new socket file). Made here: this
        // step can run before the socket unit.
        ensure_host_dir(&dirs.pod_socket_dir, 0o755)?;
        helpers.push((&dirs.pod_socket_dir, APP_POD_IN_APP, true));
    }
    for (src, at, dir) in helpers {
        let rel = Path::new(&at[1..]);
        let target = open_beneath(merged, rel, dir)?;
        let shown = merged.join(rel);
        crate::idmap::attach(src, crate::idmap::Target::Fd(&target, &shown), None, true)?;
    }
    for (src, rel, ro) in volumes {
        let target = open_beneath(merged, rel, true)
            .with_context(|| format!("the volume /{}", rel.display()))?;
        let shown = merged.join(rel);
        crate::idmap::attach(
            src,
            crate::idmap::Target::Fd(&target, &shown),
            ns.as_ref(),
            *ro,
        )
        .with_context(|| format!("the volume /{}", rel.display()))?;
    }
    Ok(())
}

/// Open `rel` below `root` with `O_PATH`, following no symlink on the
/// way (a symlink in the image cannot send a mount outside its tree).
fn open_beneath(root: &Path, rel: &Path, dir: bool) -> Result<OwnedFd> {
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::Mode;
    let base = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::open(root, base | OFlag::O_DIRECTORY, Mode::empty())
        .map_err(|e| anyhow!("cannot open {}: {e}", root.display()))?;
    // SAFETY: a fresh fd.
    let mut cur = unsafe { OwnedFd::from_raw_fd(fd) };
    let names = rel_names(rel);
    for (i, name) in names.iter().enumerate() {
        let last = i + 1 == names.len();
        let flags = if last && !dir {
            base
        } else {
            base | OFlag::O_DIRECTORY
        };
        let fd = openat(Some(cur.as_raw_fd()), *name, flags, Mode::empty()).map_err(|e| {
            let why = match e {
                nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR => {
                    " (a symlink or a file is on the way: the image's paths are never followed)"
                }
                _ => "",
            };
            anyhow!("cannot open {}: {e}{why}", root.join(rel).display())
        })?;
        // SAFETY: a fresh fd.
        cur = unsafe { OwnedFd::from_raw_fd(fd) };
    }
    if last_is_symlink(&cur)? {
        bail!("{} is a symlink", root.join(rel).display());
    }
    Ok(cur)
}

/// An `O_PATH|O_NOFOLLOW` open of a symlink succeeds on the link itself.
fn last_is_symlink(fd: &OwnedFd) -> Result<bool> {
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).context("fstat")?;
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFLNK)
}

/// Unmount the application's tree (its binds, then its overlay), latest
/// first; nothing mounted is no error. Never lazily, as for the
/// container's overlay (prepare.rs).
pub fn unmount(state: &Path) -> Result<()> {
    use nix::mount::{umount2, MntFlags};
    let merged = app_state(state).join("merged");
    let Ok(canon) = std::fs::canonicalize(&merged) else {
        return Ok(());
    };
    let top = canon.to_string_lossy().into_owned();
    let below = format!("{top}/");
    let mounts = sdme_core::mountinfo::read().context("cannot read /proc/self/mountinfo")?;
    let points: Vec<String> = (mounts.into_iter().rev())
        .map(|m| m.mount_point)
        .filter(|p| *p == top || p.starts_with(&below))
        .collect();
    for p in points {
        match umount2(Path::new(&p), MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(nix::errno::Errno::EBUSY) => bail!(
                "cannot unmount {p} of the application: it is busy (see fuser -vm {p}); \
                 left mounted, the next start reuses it"
            ),
            Err(e) => bail!("cannot unmount {p} of the application: {e}"),
        }
    }
    Ok(())
}

/// Write the guest's unit and its enablement into the container's upper
/// layer, and the mount point of the app's root; or, without an
/// application, remove a unit sdme wrote there before.
pub fn write_unit(
    upper: &SafeDir,
    attrs: &dyn Fn(&Path) -> DirAttrs,
    app: Option<(&AppSettings, &AppRun)>,
    source: &str,
) -> Result<()> {
    let name = OsStr::new(APP_UNIT);
    let wants = Path::new(SYSTEM_DIR).join("multi-user.target.wants");
    let Some((s, run)) = app else {
        let Some(system) = upper.walk_existing(Path::new(SYSTEM_DIR))? else {
            return Ok(());
        };
        let ours = (system.read_small(name, 64 << 10)?)
            .is_some_and(|b| b.starts_with(UNIT_MARK.as_bytes()));
        if ours {
            system.remove_file(name)?;
            if let Some(w) = upper.walk_existing(&wants)? {
                if w.entry(name)? == Entry::Symlink {
                    w.remove_file(name)?;
                }
            }
        }
        return remove_journal_limit(upper);
    };
    write_journal_limit(upper, attrs)?;
    let root = container_rel_path(&app_root_in_guest(&s.name))?;
    upper.walk_create(&root, &|_| DirAttrs::DEFAULT)?;
    let system = upper.walk_create(Path::new(SYSTEM_DIR), attrs)?;
    if let Some(b) = system.read_small(name, 64 << 10)? {
        if !b.starts_with(UNIT_MARK.as_bytes()) {
            bail!(
                "{}/{APP_UNIT} in the container's upper layer is not sdme's (no '{UNIT_MARK}' line): remove it or rename the unit",
                system.path().display()
            );
        }
    }
    let text = render_app_unit(s, run, source);
    debug_assert!(text.starts_with(UNIT_MARK));
    system.write_file(name, text.as_bytes(), 0o644)?;
    let w = upper.walk_create(&wants, attrs)?;
    let target = format!("/{SYSTEM_DIR}/{APP_UNIT}");
    w.symlink(name, OsStr::new(&target))
}

/// Where the guest's journald reads drop-ins (the upper layer's).
const JOURNALD_DIR: &str = "etc/systemd/journald.conf.d";
/// The drop-in that keeps an application container's journal files
/// small; an administrator's later drop-in (60-*.conf) wins.
const JOURNAL_DROPIN: &str = "50-sdme-app.conf";

/// journald allocates its files in steps of 8 MiB, capped at
/// SystemMaxFileSize=: a guest that logs a few lines holds 8 MiB on disk
/// from its first boot, ten application containers 80 MiB. With its
/// minimum, 512K, a file holds what it needs (journald keeps at most 100
/// files, so about 50 MiB of history). Only with `App=`, whose guest runs
/// one application: a whole OS keeps systemd's defaults.
fn write_journal_limit(upper: &SafeDir, attrs: &dyn Fn(&Path) -> DirAttrs) -> Result<()> {
    let dir = upper.walk_create(Path::new(JOURNALD_DIR), attrs)?;
    let name = OsStr::new(JOURNAL_DROPIN);
    if let Some(b) = dir.read_small(name, 64 << 10)? {
        if !b.starts_with(UNIT_MARK.as_bytes()) {
            return Ok(()); // the guest administrator's own: kept
        }
    }
    let text = format!(
        "{UNIT_MARK} at every start of a container with App= (sdme.container(5));\n\
         # edits here are lost: add a later drop-in (60-*.conf) to change it.\n\
         [Journal]\nSystemMaxFileSize=512K\n"
    );
    dir.write_file(name, text.as_bytes(), 0o644)
}

/// Without an application: remove the drop-in sdme wrote, if it did.
fn remove_journal_limit(upper: &SafeDir) -> Result<()> {
    let Some(dir) = upper.walk_existing(Path::new(JOURNALD_DIR))? else {
        return Ok(());
    };
    let name = OsStr::new(JOURNAL_DROPIN);
    if (dir.read_small(name, 64 << 10)?).is_some_and(|b| b.starts_with(UNIT_MARK.as_bytes())) {
        dir.remove_file(name)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(t: &Path) -> AppDirs {
        AppDirs {
            rootfs: t.join("rootfs"),
            meta: t.join("meta"),
            volumes: t.join("volumes"),
            drop_privs: t.join("sdme-drop-privs"),
            pod_socket_dir: t.join("app-pod"),
            pod_records: t.join("app-pods"),
        }
    }

    fn settings() -> AppSettings {
        AppSettings {
            name: "web".into(),
            at: "/etc/sdme/w.container:3".into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_app_pod_record_follows_the_start_and_the_stop() {
        let t = tempfile::tempdir().unwrap();
        let d = dirs(t.path());
        let mut s = settings();
        let rec = d.pod_records.join("sdme-w.service");
        s.pod = Some("grp@one".into());
        record_pod(&d, Some("sdme-w.service"), Some(&s)).unwrap();
        assert_eq!(std::fs::read_to_string(&rec).unwrap(), "grp@one\n");
        let e = record_pod(&d, None, Some(&s)).unwrap_err().to_string();
        assert!(e.starts_with("--app-pod needs --unit"), "{e}");
        // A start without AppPod= removes it, and the empty directory.
        record_pod(&d, Some("sdme-w.service"), Some(&settings())).unwrap();
        assert!(!d.pod_records.exists());
        record_pod(&d, Some("sdme-w.service"), Some(&s)).unwrap();
        record_pod(&d, Some("sdme-x.service"), Some(&s)).unwrap();
        forget_pod(&d, Some("sdme-w.service")).unwrap();
        assert!(!rec.exists() && d.pod_records.join("sdme-x.service").exists());
        forget_pod(&d, Some("sdme-x.service")).unwrap();
        forget_pod(&d, Some("sdme-x.service")).unwrap();
        assert!(!d.pod_records.exists());
    }

    #[test]
    fn the_image_config_from_the_metadata() {
        let t = tempfile::tempdir().unwrap();
        let d = dirs(t.path());
        let e = format!("{:#}", image_config(&d, &settings()).unwrap_err());
        assert!(
            e.starts_with("/etc/sdme/w.container:3: App= (rootfs web): "),
            "{e}"
        );
        assert!(e.contains("rootfs/web not found"), "{e}");
        std::fs::create_dir_all(d.rootfs.join("web")).unwrap();
        std::fs::create_dir_all(&d.meta).unwrap();
        let e = format!("{:#}", image_config(&d, &settings()).unwrap_err());
        assert!(
            e.contains("has no OCI image configuration") && e.contains("web.json is missing"),
            "{e}"
        );
        std::fs::write(d.meta.join("web.json"), r#"{"name":"web","kind":"tar"}"#).unwrap();
        let e = format!("{:#}", image_config(&d, &settings()).unwrap_err());
        assert!(
            e.contains("imported from a 'tar' source, not an OCI image"),
            "{e}"
        );
        std::fs::write(
            d.meta.join("web.json"),
            r#"{"name":"web","oci":{"entrypoint":["/e"],"cmd":["a","b"],"env":["A=1"],"user":"65534","working_dir":"/www","exposed_ports":["80/tcp"],"volumes":["/data"],"stop_signal":"SIGQUIT","labels":{}}}"#,
        )
        .unwrap();
        let c = image_config(&d, &settings()).unwrap();
        assert_eq!(c.entrypoint, ["/e"]);
        assert_eq!(c.cmd, ["a", "b"]);
        assert_eq!(c.user.as_deref(), Some("65534"));
        assert_eq!(c.working_dir.as_deref(), Some("/www"));
        assert_eq!(c.volumes, ["/data"]);
        assert_eq!(c.stop_signal.as_deref(), Some("SIGQUIT"));
        std::fs::write(d.meta.join("web.json"), r#"{"oci":{"cmd":"x"}}"#).unwrap();
        let e = format!("{:#}", image_config(&d, &settings()).unwrap_err());
        assert!(e.contains("oci.cmd is not a list"), "{e}");
    }

    #[test]
    fn volumes_are_named_after_their_path() {
        let d = dirs(Path::new("/v"));
        assert_eq!(
            anonymous_volume(&d, "web", "/var/cache/nginx"),
            Path::new("/v/volumes/web/var-cache-nginx")
        );
        assert_eq!(
            anonymous_volume(&d, "web", "/a-b/.c"),
            Path::new("/v/volumes/web/a\\x2db-.c")
        );
    }

    #[test]
    fn the_unit_is_written_and_removed() {
        let t = tempfile::tempdir().unwrap();
        let upper = SafeDir::open(t.path()).unwrap();
        let attrs = |_: &Path| DirAttrs::DEFAULT;
        let s = settings();
        let img = ImageConfig {
            cmd: vec!["/app".into()],
            ..Default::default()
        };
        let run = AppRun::new(&s, &img).unwrap();
        write_unit(&upper, &attrs, Some((&s, &run)), "/etc/sdme/w.container").unwrap();
        let unit = t.path().join("etc/systemd/system/sdme-app.service");
        let text = std::fs::read_to_string(&unit).unwrap();
        assert!(
            text.contains("ExecStart=/.sdme-drop-privs 0 / -- /app\n"),
            "{text}"
        );
        let link = t
            .path()
            .join("etc/systemd/system/multi-user.target.wants/sdme-app.service");
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("/etc/systemd/system/sdme-app.service")
        );
        assert!(t.path().join("oci/apps/web/root").is_dir());
        let journal = t
            .path()
            .join("etc/systemd/journald.conf.d/50-sdme-app.conf");
        let text = std::fs::read_to_string(&journal).unwrap();
        assert!(
            text.ends_with("[Journal]\nSystemMaxFileSize=512K\n"),
            "{text}"
        );
        // Again (every start), then without App=.
        write_unit(&upper, &attrs, Some((&s, &run)), "/etc/sdme/w.container").unwrap();
        write_unit(&upper, &attrs, None, "").unwrap();
        assert!(!unit.exists() && std::fs::symlink_metadata(&link).is_err());
        assert!(!journal.exists(), "sdme's journald drop-in goes too");
        // The guest administrator's drop-in of that name is theirs.
        std::fs::write(&journal, "[Journal]\nSystemMaxFileSize=8M\n").unwrap();
        write_unit(&upper, &attrs, Some((&s, &run)), "/etc/sdme/w.container").unwrap();
        write_unit(&upper, &attrs, None, "").unwrap();
        assert_eq!(
            std::fs::read_to_string(&journal).unwrap(),
            "[Journal]\nSystemMaxFileSize=8M\n"
        );
        // The guest administrator's own unit of that name is not touched.
        std::fs::write(&unit, "[Service]\nExecStart=/x\n").unwrap();
        write_unit(&upper, &attrs, None, "").unwrap();
        assert!(unit.exists());
        let e = format!(
            "{:#}",
            write_unit(&upper, &attrs, Some((&s, &run)), "f").unwrap_err()
        );
        assert!(e.contains("is not sdme's"), "{e}");
    }

    #[test]
    fn nothing_is_followed_below_the_root() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("a/b")).unwrap();
        std::os::unix::fs::symlink("/etc", t.path().join("a/l")).unwrap();
        std::fs::write(t.path().join("a/f"), "").unwrap();
        assert!(open_beneath(t.path(), Path::new("a/b"), true).is_ok());
        assert!(open_beneath(t.path(), Path::new("a/f"), false).is_ok());
        let e = format!(
            "{:#}",
            open_beneath(t.path(), Path::new("a/l/x"), true).unwrap_err()
        );
        assert!(e.contains("symlink or a file is on the way"), "{e}");
        assert!(open_beneath(t.path(), Path::new("a/l"), true).is_err());
        assert!(open_beneath(t.path(), Path::new("a/l"), false).is_err());
    }

    /// Needs root (it mounts), and a kernel with ID-mapped mounts for
    /// the `PrivateUsers=` half.
    #[test]
    fn the_tree_is_mounted_with_helper_and_volumes() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "this test needs root (it mounts)"
        );
        let t = tempfile::tempdir().unwrap();
        let d = dirs(t.path());
        let img = d.rootfs.join("web");
        std::fs::create_dir_all(img.join("data")).unwrap();
        std::os::unix::fs::chown(img.join("data"), Some(65534), Some(65534)).unwrap();
        // What a new volume starts with: the image's files there.
        std::fs::create_dir_all(img.join("data/sub")).unwrap();
        std::fs::write(img.join("data/seed"), "seed").unwrap();
        std::os::unix::fs::chown(img.join("data/seed"), Some(1234), Some(1234)).unwrap();
        std::fs::set_permissions(img.join("data/seed"), PermissionsExt::from_mode(0o640)).unwrap();
        std::fs::write(img.join("data/sub/deep"), "deep").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", img.join("data/ln")).unwrap();
        nix::unistd::mkfifo(&img.join("data/fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        std::os::unix::fs::symlink("/etc", img.join("escape")).unwrap();
        std::fs::create_dir_all(&d.meta).unwrap();
        std::fs::write(
            d.meta.join("web.json"),
            r#"{"oci":{"cmd":["/app"],"volumes":["/data"]}}"#,
        )
        .unwrap();
        std::fs::write(&d.drop_privs, "helper").unwrap();
        let host = t.path().join("host-dir");
        for (machine, base) in [("plain", None), ("mapped", Some(0x0020_0000u32))] {
            let state = t.path().join(machine);
            let mut s = settings();
            s.volumes =
                vec![
                    sdme_core::app::parse_volume(&format!("{}:/srv/h:ro", host.display())).unwrap(),
                ];
            let run = prepare(&d, machine, &state, base, &s).unwrap();
            assert_eq!(run.volumes.len(), 2);
            let merged = state.join("app/merged");
            let shift = base.unwrap_or(0);
            // As the app's user (65534 in the container).
            let write_as = |uid: u32, p: PathBuf| {
                std::process::Command::new("setpriv")
                    .args([
                        &format!("--reuid={uid}"),
                        &format!("--regid={uid}"),
                        "--clear-groups",
                    ])
                    .args(["sh", "-c", "echo x > \"$0\""])
                    .arg(p)
                    .stderr(std::process::Stdio::null())
                    .status()
                    .unwrap()
                    .success()
            };
            let seen = (
                std::fs::read_to_string(merged.join(".sdme-drop-privs")),
                std::fs::metadata(merged.join("data")).map(|m| m.uid()),
                write_as(65534 + shift, merged.join("data/f")),
                std::fs::write(merged.join("srv/h/f"), "x"),
            );
            // Again: already mounted, nothing changes.
            let again = prepare(&d, machine, &state, base, &s).is_ok();
            unmount(&state).unwrap();
            let vol = anonymous_volume(&d, machine, "/data");
            assert_eq!(seen.0.unwrap(), "helper", "{machine}");
            assert_eq!(
                seen.1.unwrap(),
                65534 + shift,
                "{machine}: the volume's owner"
            );
            assert!(seen.2, "{machine}: the volume is writable by its owner");
            assert!(seen.3.is_err(), "{machine}: a :ro volume is read-only");
            assert!(again, "{machine}");
            assert_eq!(std::fs::read_to_string(vol.join("f")).unwrap(), "x\n");
            assert_eq!(
                std::fs::metadata(vol.join("f")).unwrap().uid(),
                65534,
                "{machine}"
            );
            assert_eq!(
                std::fs::metadata(&vol).unwrap().uid(),
                65534,
                "{machine}: on disk"
            );
            assert!(
                std::fs::read_dir(&merged).unwrap().next().is_none(),
                "unmounted"
            );
            assert!(host.is_dir(), "the host directory is made");
            let seed = std::fs::symlink_metadata(vol.join("seed")).unwrap();
            assert_eq!(std::fs::read_to_string(vol.join("seed")).unwrap(), "seed");
            assert_eq!(
                (seed.uid(), seed.mode() & 0o7777),
                (1234, 0o640),
                "{machine}"
            );
            assert_eq!(
                std::fs::read_to_string(vol.join("sub/deep")).unwrap(),
                "deep"
            );
            assert_eq!(
                std::fs::read_link(vol.join("ln")).unwrap(),
                Path::new("/etc/passwd")
            );
            assert!(
                std::fs::symlink_metadata(vol.join("fifo")).is_err(),
                "no FIFO"
            );
            assert!(!vol.with_file_name(".new-data").exists(), "{machine}");
            // An existing volume is the app's: kept as it is.
            std::fs::write(vol.join("seed"), "mine").unwrap();
            prepare(&d, machine, &state, base, &s).unwrap();
            unmount(&state).unwrap();
            assert_eq!(std::fs::read_to_string(vol.join("seed")).unwrap(), "mine");
        }
        // A volume through a symlink of the image is refused.
        let mut s = settings();
        s.volumes = vec![sdme_core::app::parse_volume("/escape/x").unwrap()];
        let state = t.path().join("bad");
        let e = format!("{:#}", prepare(&d, "bad", &state, None, &s).unwrap_err());
        unmount(&state).unwrap();
        assert!(e.contains("/escape/x"), "{e}");
        assert!(!Path::new("/etc/x").exists());
    }
}
