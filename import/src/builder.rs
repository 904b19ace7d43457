//! The builder (sdme.build(5), issue 15): run a build's steps with the
//! step cache and store the result like an import.
//!
//! Each step runs on an overlay whose lowers are the base (the `From=`
//! rootfs, or the host's `/`) and the cache layers of the steps before
//! it, with a fresh upper that becomes the step's cache layer
//! (`STATE/build/layers/KEY`, renamed into place when the step
//! succeeded). A `Copy=` step writes into that upper directly (no
//! container needed); a `Run=` step boots a private container on the
//! overlay (one per step: the simplest way for every step to end with
//! its own upper, and Copy= never has to write under a running guest),
//! runs the command in it, and stops it. The result is the overlay of
//! every layer, copied into a staging directory of the store and renamed
//! into place.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use sdme_core::build::{Base, Build, CopySource, Step};
use sdme_core::inuse::UseLock;
use sha2::{Digest, Sha256};

use crate::budget::human;
use crate::buildcache::base_key;
use crate::buildcopy::copy_step;
use crate::buildhost::host_base;
use crate::buildlayer::{copy_opts, skip_state_dir, store_layer, RUN_DIR};
pub use crate::buildopts::Opts;
use crate::buildrun::{failure, run_streaming, step_command, LAST_LINES};
use crate::buildsteps::{build_info, cached_prefix, copy_source_path, plan, up_to_date, Planned};
use crate::buildwatch::Watch;
use crate::copy::{copy_tree, Stats};
use crate::meta::{self, Meta};
use crate::store::{remove_tree, Store};
use crate::{buildpost, buildtrash, cancel, import};

/// The longest overlay mount data: the legacy mount(2) call copies at
/// most a page of options.
const MOUNT_DATA_MAX: usize = 4095;

/// The machine name of the build container of `name`.
pub fn machine(name: &str) -> String {
    format!("sdme-build-{name}")
}

/// The transient unit that runs the build container of `name`.
pub fn boot_unit(name: &str) -> String {
    format!("sdme-build-{name}-boot.service")
}

/// The overlay mount data for `lowers` (top first) and an optional
/// `(upper, work)`. The paths are relative to the layer directory (the
/// builder's working directory at mount time), which keeps each cached
/// layer at 65 bytes (its key and a `:`): with the legacy mount(2) data
/// limited to a page, a build fits about 60 steps; more is refused here
/// with a clear error rather than by the kernel with EINVAL.
pub fn overlay_data(lowers: &[String], upper: Option<(&str, &str)>) -> Result<String> {
    // No redirects or metacopy: an upper must stand on its own, since it
    // becomes a layer under other uppers.
    let mut d = format!(
        "lowerdir={},redirect_dir=off,metacopy=off,index=off",
        lowers.join(":")
    );
    if let Some((u, w)) = upper {
        d.push_str(&format!(",upperdir={u},workdir={w}"));
    }
    if d.len() > MOUNT_DATA_MAX {
        bail!(
            "too many layers: the overlay's mount options take {} bytes, more than a page ({MOUNT_DATA_MAX}); split the build (From= another .build)",
            d.len()
        );
    }
    if let Some(bad) = lowers
        .iter()
        .find(|l| l.contains([':', ',']) || l.is_empty())
    {
        bail!("{bad:?}: a layer path with ':' or ',' cannot be an overlay lower");
    }
    Ok(d)
}

/// Hold the `From=` rootfs's use lock shared for the whole build, as a
/// container's prepare step does while it prepares: `sdme-import --force`
/// or `--remove` of it (which take the lock exclusively at commit) waits
/// until the build ends, so the tree the keys were computed from is the
/// one every step mounts, also between steps, when no overlay shows the
/// use. `None` for a build from the host.
pub(crate) fn use_base(store: &Store, from: &Base) -> Result<Option<UseLock>> {
    // A missing rootfs gets no lock file; base() says it is missing.
    let Some(n) = from.rootfs().filter(|n| store.rootfs_path(n).is_dir()) else {
        return Ok(None);
    };
    let dir = store.import_dir();
    let lock = sdme_core::inuse::lock_use(&dir, n, false).with_context(|| {
        format!(
            "cannot lock {}",
            sdme_core::inuse::use_lock_path(&dir, n).display()
        )
    })?;
    Ok(Some(lock))
}

/// What the build starts from: its root (`None`: the host, see
/// [`host_base`]) and its identity for the base key.
pub(crate) fn base(store: &Store, from: &Base) -> Result<(Option<PathBuf>, String)> {
    let Some(n) = from.rootfs() else {
        // What the host is: its release and its packages (a host that
        // installed or upgraded a package gets a new snapshot).
        // `snapshot-2`: the snapshot hides what a host clone hides
        // (buildhost), unlike the earlier full copies.
        let mut id = String::from("host snapshot-2");
        for f in [
            "/etc/os-release",
            "/var/lib/dpkg/status",
            "/var/lib/rpm/rpmdb.sqlite",
        ] {
            if let Ok(h) = file_hash(Path::new(f)) {
                id.push_str(&format!(" {f}={h}"));
            }
        }
        return Ok((None, id));
    };
    let root = store.rootfs_path(n);
    if !root.is_dir() {
        bail!(
            "From={n}: no rootfs {n} in {}",
            store.rootfs_dir().display()
        );
    }
    // A re-import (or a rebuild) of the base changes its metadata, and so
    // every key.
    let m = fs::read(store.meta_path(n)).unwrap_or_default();
    let h: String = Sha256::digest(&m)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((Some(root), format!("rootfs {n} {h}")))
}

fn file_hash(path: &Path) -> Result<String> {
    let data = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Build `b` into the store at `state_dir`, as `opts` says.
pub fn build(b: &Build, state_dir: &Path, opts: Opts, out: &mut dyn Write) -> Result<()> {
    let t0 = Instant::now();
    let store = Store::open(state_dir)?;
    let lock = store.lock(&b.name)?;
    if !opts.replace && store.exists(&b.name) {
        bail!("rootfs {} already exists; use -f to replace it", b.name);
    }
    let _base_use = use_base(&store, &b.from)?;
    let (root, identity) = base(&store, &b.from)?;
    let base = base_key(&identity);
    let steps = plan(b, &base, &store.rootfs_dir())?;
    let meta = store.meta(&b.name)?;
    if opts.if_changed && store.exists(&b.name) && up_to_date(meta.as_ref(), &base, &steps) {
        let _ = writeln!(
            out,
            "{}: rootfs {} is up to date ({} steps, checked in {} ms)",
            b.source.display(),
            b.name,
            steps.len(),
            t0.elapsed().as_millis()
        );
        return Ok(());
    }
    // The result would replace a rootfs a running container uses (the
    // store refuses that when storing it): say so before any step runs.
    // The build unit gets here when a container on a shared build is
    // restarted alone while another one runs on the old result.
    if store.exists(&b.name) {
        let path = store.rootfs_path(&b.name);
        import::in_use(&b.name, &path, false, "rebuilding it")?;
    }
    if let Some(r) = &root {
        buildpost::check_base(b, r)?;
    }
    let trash = buildtrash::dir(state_dir, &b.name);
    let layers = state_dir.join("build/layers");
    fs::create_dir_all(&layers).with_context(|| format!("cannot create {}", layers.display()))?;
    let root = match root {
        Some(r) => r,
        None => host_base(&layers, state_dir, &base, &b.name, opts, out)?,
    };
    let cached = if opts.no_cache {
        0
    } else {
        cached_prefix(&steps, &layers)
    };
    let mut w = Work::new(&b.name, &layers, &root)?;
    // Once the build shows in RUN_DIR, which --prune waits for.
    buildtrash::sweep_in_background(&trash);
    w.replace_layers = opts.no_cache;
    run_steps(&mut w, b, &steps, cached, &store, out)?;
    let t = Instant::now();
    let view = w.view(&steps)?;
    let staging = store.staging(&lock)?;
    let lowers: Vec<PathBuf> = (steps.iter().rev())
        .map(|s| layers.join(&s.key))
        .chain([root.clone()])
        .collect();
    let stats = copy_result(&view, &staging.root, state_dir, &lowers)?;
    w.unmount()?;
    cancel::check()?;
    buildpost::after_build(&staging.root, &b.name, out)?;
    let m = Meta {
        format: meta::FORMAT_VERSION,
        name: b.name.clone(),
        source: b.source.to_string_lossy().into_owned(),
        kind: "build".to_string(),
        imported_at: meta::now_rfc3339(),
        size: stats.bytes + stats.linked_bytes,
        os_release: import::read_os_release(&staging.root),
        build: Some(build_info(&b.source, &file_hash(&b.source)?, &base, &steps)),
        ..Meta::default()
    };
    let path = store.rootfs_path(&b.name);
    let copied = t.elapsed();
    staging.commit_to(
        &m,
        opts.replace,
        &|| import::in_use(&b.name, &path, false, "replacing it"),
        Some(&trash),
    )?;
    // Where the storing goes: the tree, then the sync and the swap (the
    // tree it replaced is removed by the next build, see buildtrash).
    let _ = writeln!(
        out,
        "result of {}: made in {:.1} s, synced and put in place in {:.1} s",
        b.name,
        copied.as_secs_f64(),
        (t.elapsed() - copied).as_secs_f64()
    );
    let _ = writeln!(
        out,
        "built rootfs {} ({} steps, {cached} from the cache; result stored in {:.1} s, {} files linked, {} copied, {:.1} s in all)",
        b.name,
        steps.len(),
        t.elapsed().as_secs_f64(),
        stats.linked,
        human(stats.bytes),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Say which of `steps` come from the cache (the first `cached`) and
/// run the others.
fn run_steps(
    w: &mut Work,
    b: &Build,
    steps: &[Planned],
    cached: usize,
    store: &Store,
    out: &mut dyn Write,
) -> Result<()> {
    let n = steps.len();
    for (i, s) in steps[..cached].iter().enumerate() {
        let _ = writeln!(
            out,
            "step {}/{n} {}: {}: from the cache",
            i + 1,
            s.at,
            s.text
        );
    }
    for i in cached..n {
        cancel::check()?;
        let t = Instant::now();
        let _ = writeln!(out, "step {}/{n} {}: {}", i + 1, steps[i].at, steps[i].text);
        w.step(b, &b.steps[i], &steps[..i], &steps[i], store, out)?;
        let _ = writeln!(
            out,
            "step {}/{n} done in {:.1} s",
            i + 1,
            t.elapsed().as_secs_f64()
        );
    }
    cancel::check()
}

/// Copy the result `view` (an overlay of `lowers`, top first, or the
/// base itself) into the staging tree `root`. Regular files are
/// hard-linked from the layer or base they are in: nothing writes a
/// layer or a rootfs of the store in place (containers and build steps
/// use them as overlay lowers, and copy-up never writes a lower inode;
/// imports and rebuilds replace a rootfs by rename and unlink the old
/// one; a layer is only replaced whole), so the shared inodes never
/// change. A rebuild then writes only directories, symlinks and the
/// files that carry xattrs a copy leaves out.
fn copy_result(view: &Path, root: &Path, state_dir: &Path, lowers: &[PathBuf]) -> Result<Stats> {
    // A clone of the host sees the state directory in its base: copied
    // empty, as an import of / does.
    let skip = skip_state_dir(view, state_dir);
    copy_tree(view, root, &copy_opts(&skip, lowers))
        .with_context(|| format!("cannot copy the result into {}", root.display()))
}

/// A build in progress: the overlay mount point and the layer directory;
/// dropped, it stops the build container, unmounts and removes the
/// unfinished upper (what an error or Ctrl+C leaves is only the finished
/// layers).
struct Work {
    name: String,
    layers: PathBuf,
    base: String,
    merged: PathBuf,
    /// `.tmp-NAME` (relative to `layers`): prep, upper and work of the
    /// current step.
    tmp: String,
    mounted: bool,
    booted: bool,
    /// `--no-cache`: a finished step replaces a cached layer of its key.
    replace_layers: bool,
}

impl Work {
    fn new(name: &str, layers: &Path, root: &Path) -> Result<Work> {
        let merged = Path::new(RUN_DIR).join(name);
        fs::create_dir_all(&merged)
            .with_context(|| format!("cannot create {}", merged.display()))?;
        // Mounts use paths relative to the layer directory (see
        // overlay_data).
        std::env::set_current_dir(layers)
            .with_context(|| format!("cannot enter {}", layers.display()))?;
        let w = Work {
            name: name.to_string(),
            layers: layers.to_path_buf(),
            base: root.to_string_lossy().into_owned(),
            merged,
            tmp: format!(".tmp-{name}"),
            mounted: false,
            booted: false,
            replace_layers: false,
        };
        // What a killed build left (we hold NAME's lock): its container,
        // its mount (EINVAL: not mounted), its unfinished upper.
        let _ = Command::new("systemctl")
            .args(["stop", &boot_unit(name)])
            .stderr(std::process::Stdio::null())
            .status();
        match umount2(&w.merged, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
            Err(e) => bail!("cannot unmount {}: {e}", w.merged.display()),
        }
        remove_tree(&layers.join(&w.tmp))?;
        Ok(w)
    }

    /// The tree with the layers of `done` on the base, read-only: the
    /// base itself when there are none (an overlay without an upper
    /// needs two lowers).
    fn view(&mut self, done: &[Planned]) -> Result<PathBuf> {
        if done.is_empty() {
            return Ok(PathBuf::from(&self.base));
        }
        self.mount(done, None)?;
        Ok(self.merged.clone())
    }

    /// Mount the base, the layers of `done` and, with `upper`, the
    /// current step's upper (and the build container's prep layer).
    fn mount(&mut self, done: &[Planned], upper: Option<bool>) -> Result<()> {
        let mut lowers: Vec<String> = Vec::new();
        if upper.is_some() {
            lowers.push(format!("{}/prep", self.tmp));
        }
        lowers.extend(done.iter().rev().map(|s| s.key.clone()));
        lowers.push(self.base.clone());
        let (u, w) = (format!("{}/upper", self.tmp), format!("{}/work", self.tmp));
        let data = overlay_data(&lowers, upper.map(|_| (u.as_str(), w.as_str())))?;
        let flags = if upper.is_some() {
            MsFlags::empty()
        } else {
            MsFlags::MS_RDONLY
        };
        mount(
            Some("overlay"),
            &self.merged,
            Some("overlay"),
            flags,
            Some(data.as_str()),
        )
        .map_err(|e| {
            anyhow!(
                "cannot mount the build overlay on {}: {e}",
                self.merged.display()
            )
        })?;
        self.mounted = true;
        Ok(())
    }

    fn unmount(&mut self) -> Result<()> {
        if self.mounted {
            umount2(&self.merged, MntFlags::empty())
                .with_context(|| format!("cannot unmount {}", self.merged.display()))?;
            self.mounted = false;
        }
        Ok(())
    }

    /// Run one step into a fresh upper and keep that as the step's layer.
    fn step(
        &mut self,
        b: &Build,
        step: &Step,
        done: &[Planned],
        this: &Planned,
        store: &Store,
        out: &mut dyn Write,
    ) -> Result<()> {
        let tmp = self.layers.join(&self.tmp);
        remove_tree(&tmp)?;
        mkdir(&tmp)?;
        for d in ["upper", "work"] {
            mkdir(&tmp.join(d))?;
        }
        match step {
            Step::Copy {
                source,
                dest,
                dest_dir,
                ..
            } => {
                let src = copy_source_path(source, &store.rootfs_dir())
                    .with_context(|| this.at.clone())?;
                let contents = match source {
                    CopySource::Local { rel, .. } => rel.ends_with('/') || rel == ".",
                    CopySource::Host(p) => p.to_string_lossy().ends_with('/'),
                    CopySource::Rootfs { path, .. } => path.ends_with('/'),
                    CopySource::Container { path, .. } => path.ends_with('/'),
                };
                // The view the destination is resolved in: the layers so far.
                let view = self.view(done)?;
                let opts = copy_opts(&[], &[]);
                let r = copy_step(
                    &src.path,
                    contents,
                    &view,
                    &tmp.join("upper"),
                    dest,
                    *dest_dir,
                    &opts,
                );
                self.unmount()?;
                r.with_context(|| format!("{}: {}", this.at, this.text))?;
            }
            Step::Run { command, .. } => {
                let id = new_machine_id()?;
                self.write_prep(&tmp.join("prep"), b.from == Base::Host, &id)?;
                self.mount(done, Some(true))?;
                let watch = Watch::start(boot_unit(&self.name));
                self.boot(b, &id)?;
                let cmd = step_command(&machine(&self.name), &b.environment, command);
                let r = run_streaming(cmd, out, LAST_LINES, &|c| watch.client(c));
                drop(watch);
                let (status, last) = r?;
                self.stop()?;
                self.unmount()?;
                forget_boot_state(&tmp.join("upper"), &id)?;
                cancel::check()?;
                if !status.success() {
                    bail!("{}", failure(&this.at, &this.text, status, &last));
                }
            }
        }
        store_layer(
            &tmp.join("upper"),
            &self.layers.join(&this.key),
            self.replace_layers,
        )?;
        remove_tree(&tmp)
    }

    /// The build container's own layer (the top lower, never part of the
    /// result): what every boot would otherwise write into the step's
    /// layer, set up so that it does not. A fresh machine id, `id` (with
    /// an empty file systemd 252 takes D-Bus's id, which may be the
    /// host's, and writes it into the tree; an id in an image would be
    /// shared by all its containers); a volatile journal
    /// (journal files belong to the build container); no random seed
    /// saved (it must never be shared); the host's resolv.conf as a file,
    /// since nspawn runs with --resolv-conf=off (the other modes write
    /// into the tree); for a clone of the host an empty fstab, or its
    /// mounts fail the boot.
    fn write_prep(&self, prep: &Path, host: bool, id: &str) -> Result<()> {
        for d in ["etc/systemd/system", "etc/systemd/journald.conf.d"] {
            mkdir_all(&prep.join(d))?;
        }
        let resolv = fs::read("/etc/resolv.conf").unwrap_or_default();
        let mid = format!("{id}\n");
        let mut files: Vec<(&str, &[u8])> = vec![
            ("etc/machine-id", mid.as_bytes()),
            ("etc/resolv.conf", &resolv),
            (
                "etc/systemd/journald.conf.d/sdme-build.conf",
                b"[Journal]\nStorage=volatile\n",
            ),
        ];
        if host {
            files.push(("etc/fstab", b""));
        }
        for (p, data) in files {
            let p = prep.join(p);
            fs::write(&p, data).with_context(|| format!("cannot write {}", p.display()))?;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644))
                .with_context(|| format!("cannot set the mode of {}", p.display()))?;
        }
        let mask = prep.join("etc/systemd/system/systemd-random-seed.service");
        std::os::unix::fs::symlink("/dev/null", &mask)
            .with_context(|| format!("cannot write {}", mask.display()))
    }

    /// Boot the build container on the mounted overlay; returns when its
    /// systemd has finished booting (READY=1 through --notify-ready).
    fn boot(&mut self, b: &Build, id: &str) -> Result<()> {
        let unit = boot_unit(&self.name);
        // A unit left failed by a killed build would refuse the name.
        let _ = Command::new("systemctl")
            .args(["reset-failed", &unit])
            .stderr(std::process::Stdio::null())
            .status();
        let timeout = b.boot_timeout.map_or(90, |t| t.as_secs().max(1));
        let mut c = Command::new("systemd-run");
        c.args([
            "--quiet",
            "--collect",
            "-p",
            "Type=notify",
            "-p",
            "KillMode=mixed",
        ]);
        c.arg(format!("--unit={unit}"));
        c.args(["-p", &format!("TimeoutStartSec={timeout}")]);
        c.args([
            "--",
            "systemd-nspawn",
            "--quiet",
            "--boot",
            "--notify-ready=yes",
            "--keep-unit",
            "--register=yes",
            "--resolv-conf=off",
            "--timezone=off",
            "--link-journal=no",
            "--console=passive",
        ]);
        c.arg(format!("--machine={}", machine(&self.name)));
        c.arg(format!("--uuid={id}"));
        c.arg("-D").arg(&self.merged);
        self.booted = true;
        let st = c.status().context("cannot run systemd-run")?;
        if !st.success() {
            bail!(
                "the build container did not boot (see journalctl -u {unit}); does the base boot systemd?"
            );
        }
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        if self.booted {
            let unit = boot_unit(&self.name);
            let st = Command::new("systemctl")
                .args(["stop", &unit])
                .stderr(std::process::Stdio::null())
                .status()
                .context("cannot run systemctl")?;
            // Stopped already (by the Ctrl+C watcher) and collected: the
            // unit is gone, which is what was asked.
            if !st.success() && unit_loaded(&unit) {
                bail!("cannot stop the build container {unit} (see journalctl -u {unit})");
            }
            self.booted = false;
        }
        Ok(())
    }
}

/// Whether systemd still knows `unit` (a transient unit run with
/// `--collect` is gone once stopped).
fn unit_loaded(unit: &str) -> bool {
    Command::new("systemctl")
        .args(["show", "-p", "LoadState", "--value", unit])
        .output()
        .map_or(true, |o| {
            String::from_utf8_lossy(&o.stdout).trim() != "not-found"
        })
}

impl Drop for Work {
    fn drop(&mut self) {
        for r in [
            self.stop(),
            self.unmount(),
            remove_tree(&self.layers.join(&self.tmp)),
        ] {
            if let Err(e) = r {
                eprintln!("sdme-build: {e:#}");
            }
        }
        let _ = fs::remove_dir(&self.merged);
        // Only if no other build uses it.
        let _ = fs::remove_dir(RUN_DIR);
    }
}

/// Remove from a step's upper what booting the build container (whose
/// machine id is `id`) wrote there despite the prep layer (seen in the
/// trixie and bookworm test hosts): its journal directory
/// `var/log/journal/ID` (systemd-tmpfiles makes it at every boot, even
/// with a volatile journal), the login records of its boot and shutdown
/// (`var/log/wtmp`), and `etc/machine-id` when it holds that id or
/// nothing (a copy-up of the prep layer's, or a step that emptied it
/// the way images are prepared: the base's shows through). They name a machine that no longer exists;
/// removed from the upper, the base's own files show through again.
pub fn forget_boot_state(upper: &Path, id: &str) -> Result<()> {
    let mid = upper.join("etc/machine-id");
    if let Ok(text) = fs::read_to_string(&mid) {
        if matches!(text.trim(), "" | "uninitialized") || text.trim() == id {
            remove_file(&mid)?;
        }
    }
    let wtmp = upper.join("var/log/wtmp");
    if fs::symlink_metadata(&wtmp).is_ok_and(|m| m.is_file()) {
        remove_file(&wtmp)?;
    }
    let journal = upper.join("var/log/journal").join(id);
    if journal.is_dir() {
        remove_tree(&journal)?;
    }
    Ok(())
}

fn remove_file(p: &Path) -> Result<()> {
    fs::remove_file(p).with_context(|| format!("cannot remove {}", p.display()))
}

/// A fresh machine id (32 hex digits) for a build container.
fn new_machine_id() -> Result<String> {
    let mut b = [0u8; 16];
    std::io::Read::read_exact(&mut fs::File::open("/dev/urandom")?, &mut b)
        .context("cannot read /dev/urandom")?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn mkdir(p: &Path) -> Result<()> {
    fs::create_dir(p).with_context(|| format!("cannot create {}", p.display()))?;
    fs::set_permissions(p, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot set the mode of {}", p.display()))
}

fn mkdir_all(p: &Path) -> Result<()> {
    if let Some(parent) = p.parent() {
        if !parent.is_dir() {
            mkdir_all(parent)?;
        }
    }
    if !p.is_dir() {
        mkdir(p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buildopts::HOST_MAX_SIZE;

    #[test]
    fn a_build_holds_its_base_in_use() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path()).unwrap();
        fs::create_dir_all(store.rootfs_path("deb")).unwrap();
        let dir = store.import_dir();
        let held = use_base(&store, &Base::Rootfs("deb".into())).unwrap();
        assert!(held.is_some());
        let try_lock = |excl| sdme_core::inuse::try_lock_use(&dir, "deb", excl).unwrap();
        assert!(try_lock(true).is_none(), "a replacement must wait");
        assert!(try_lock(false).is_some(), "containers still start");
        drop(held);
        assert!(try_lock(true).is_some());
        // No lock file for a missing rootfs, none for the host.
        assert!(use_base(&store, &Base::Rootfs("nosuch".into()))
            .unwrap()
            .is_none());
        assert!(!sdme_core::inuse::use_lock_path(&dir, "nosuch").exists());
        assert!(use_base(&store, &Base::Host).unwrap().is_none());
    }

    #[test]
    fn an_existing_rootfs_is_refused_before_anything_runs() {
        use sdme_core::search::UnitName;
        use sdme_core::syntax::UnitFile;
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("rootfs/web/etc")).unwrap();
        let path = t.path().join("web.build");
        let text = "[Build]\nFrom=nosuch\nRun=true\n";
        let f = UnitFile::parse(&path, text.as_bytes()).unwrap();
        let b = Build::from_unit(&UnitName::from_stem("web"), &path, f).unwrap();
        let opts = Opts {
            if_changed: false,
            replace: false,
            no_cache: false,
            max_size: HOST_MAX_SIZE,
        };
        let e = format!(
            "{:#}",
            build(&b, t.path(), opts, &mut Vec::new()).unwrap_err()
        );
        assert_eq!(e, "rootfs web already exists; use -f to replace it");
        // With -f it gets as far as the base.
        let opts = Opts {
            replace: true,
            ..opts
        };
        let e = format!(
            "{:#}",
            build(&b, t.path(), opts, &mut Vec::new()).unwrap_err()
        );
        assert!(e.starts_with("From=nosuch: no rootfs nosuch"), "{e}");
        assert!(!t.path().join("build").exists());
    }

    #[test]
    fn overlay_data_is_bounded_and_checked() {
        let key = "a".repeat(64);
        let d = overlay_data(&[key.clone(), "/".into()], Some(("t/upper", "t/work"))).unwrap();
        assert_eq!(
            d,
            format!("lowerdir={key}:/,redirect_dir=off,metacopy=off,index=off,upperdir=t/upper,workdir=t/work")
        );
        let many: Vec<String> = (0..70).map(|_| key.clone()).collect();
        let e = overlay_data(&many, None).unwrap_err().to_string();
        assert!(
            e.starts_with("too many layers: the overlay's mount options take"),
            "{e}"
        );
        // About 60 steps fit.
        assert!(overlay_data(&many[..60], None).is_ok());
        let e = overlay_data(&["a:b".into()], None).unwrap_err().to_string();
        assert!(e.contains("cannot be an overlay lower"), "{e}");
    }

    #[test]
    fn only_the_boot_state_is_forgotten() {
        let t = tempfile::tempdir().unwrap();
        let u = t.path();
        let id = "0123456789abcdef0123456789abcdef";
        let other = "fedcba9876543210fedcba9876543210";
        let j = u.join("var/log/journal");
        for d in [j.join(id), j.join(other), u.join("etc")] {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(j.join(id).join("system.journal"), "x").unwrap();
        fs::write(u.join("var/log/wtmp"), "x").unwrap();
        fs::write(u.join("etc/machine-id"), format!("{id}\n")).unwrap();
        forget_boot_state(u, id).unwrap();
        assert!(!j.join(id).exists());
        assert!(j.join(other).is_dir());
        assert!(!u.join("var/log/wtmp").exists());
        assert!(!u.join("etc/machine-id").exists());
        // An empty one (a copy-up of the prep layer's) goes; another id,
        // which a step wrote, stays.
        fs::write(u.join("etc/machine-id"), "").unwrap();
        forget_boot_state(u, id).unwrap();
        assert!(!u.join("etc/machine-id").exists());
        fs::write(u.join("etc/machine-id"), format!("{other}\n")).unwrap();
        forget_boot_state(u, id).unwrap();
        assert!(u.join("etc/machine-id").is_file());
        // Nothing there: nothing to do.
        forget_boot_state(&u.join("none"), id).unwrap();
        assert_eq!(new_machine_id().unwrap().len(), 32);
    }
}
