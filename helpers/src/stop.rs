//! The two ends of a container's use of its layers, besides mounting and
//! unmounting (see sdme-prepare(8)):
//!
//! * at start, [`begin_use`]: the rootfs's use lock, shared, for the whole
//!   prepare step, and the record of what the container uses
//!   ([`sdme_core::inuse`]), which `sdme-import --force`/`--remove` check
//!   and from which the generator keeps a unit that stops a container
//!   whose file was removed or broke;
//! * at stop, [`end_use`] removes the record just before the overlay is
//!   unmounted (put back if it stays mounted: a restart's next prepare
//!   step may write its own as soon as the unmount is seen), and
//!   [`wait_mount_unit_inactive`] makes systemd's view of
//!   the overlay's `.mount` unit catch up with the kernel before the
//!   service's stop job ends.
//!
//! Why: `systemctl stop sdme-NAME` waits only for the service's own job,
//! so the service unmounts the overlay itself, from `ExecStopPost=`. The
//! mount unit has a stop (or restart) job of its own in the same
//! transaction (`PartOf=`), ordered after the service's; it must find the
//! unit already inactive. systemd learns of an unmount through
//! `/proc/self/mountinfo` events, which it rate-limits (5 a second): after
//! a burst (nspawn's own mounts at stop) the event can come after the
//! service's stop job has ended, and then the mount's job runs umount(8)
//! on nothing, which fails and leaves the unit "failed" (and a restart
//! fails with it). So wait, while the service is still stopping, until
//! systemd shows the unit inactive: a condition, not a delay.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sdme_core::inuse::{self, Record, UseLock};

use crate::bootwait::Backoff;
use crate::dbus;

/// A prepare step's hold on its layers: its record, and the shared use
/// lock of an imported rootfs.
#[derive(Debug)]
pub struct Use {
    records: std::path::PathBuf,
    machine: String,
    merged: std::path::PathBuf,
    _locks: Vec<UseLock>,
}

impl Use {
    /// The prepare step failed: drop the record unless an overlay is
    /// mounted (a running container's prepare ran again).
    pub fn abandon(&self) {
        if !crate::overlay::is_mounted(&self.merged) {
            let _ = inuse::remove(&self.records, &self.machine);
        }
    }
}

/// At the start of a prepare step: record in `records` (normally
/// [`inuse::RECORD_DIR`]) that `machine` (its service
/// `unit`, declared in `source`) runs on `lower` with its state in
/// `state`, whatever the lower directory; the generator reads the record
/// at every reload. When `lower` is an imported rootfs
/// (`/var/lib/sdme/rootfs/NAME`), which sdme-import may replace, first
/// take `NAME.use` shared (waiting while an import swaps or removes NAME),
/// held until the value is dropped, at the end of the step, after the
/// mount where the step mounts the overlay itself. The same for `app`,
/// the rootfs of the container's application (`App=`).
pub fn begin_use(
    records: &Path,
    machine: &str,
    lower: &Path,
    state: &Path,
    unit: Option<&str>,
    source: Option<&Path>,
    app: Option<&Path>,
) -> Result<Use> {
    let merged = crate::overlay::merged_dir(state);
    let mut locks = Vec::with_capacity(2);
    let mut names: Vec<&str> = [Some(lower), app]
        .into_iter()
        .flatten()
        .filter_map(|l| inuse::rootfs_name(Path::new(sdme_core::paths::ROOTFS_DIR), l))
        .collect();
    // In one order for every taker; once for a rootfs that is both.
    names.sort();
    names.dedup();
    for name in names {
        let lock_dir = Path::new(sdme_core::paths::IMPORT_DIR);
        locks.push(inuse::lock_use(lock_dir, name, false).with_context(|| {
            format!(
                "cannot take the use lock {} of rootfs {name}",
                inuse::use_lock_path(lock_dir, name).display()
            )
        })?);
    }
    let rec = Record {
        machine: machine.to_string(),
        lower: lower.to_path_buf(),
        merged: merged.clone(),
        unit: unit.map(str::to_string),
        source: source.map(Path::to_path_buf),
        app: app.map(Path::to_path_buf),
    };
    inuse::write(records, &rec).with_context(|| {
        format!(
            "cannot record the use of {} in {}",
            lower.display(),
            records.join(machine).display()
        )
    })?;
    Ok(Use {
        records: records.to_path_buf(),
        machine: machine.to_string(),
        merged,
        _locks: locks,
    })
}

/// At stop, right before the overlay is unmounted: the container no
/// longer uses its rootfs.
pub fn end_use(records: &Path, machine: &str) -> Result<()> {
    inuse::remove(records, machine)
        .with_context(|| format!("cannot remove {}", records.join(machine).display()))
}

/// The system bus (systemd answers there; its private socket speaks no
/// `Hello`).
pub const SYSTEM_BUS: &str = "/run/dbus/system_bus_socket";

/// How long systemd may take to notice the unmount: its mountinfo rate
/// limit holds events for at most a second; the rest is margin for a busy
/// manager.
pub const UNIT_SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// Wait until systemd shows the mount unit of `merged` inactive. `Ok(None)`
/// when it does; `Ok(Some(warning))` when that cannot be known (no system
/// bus, e.g. late at shutdown; a timeout): the overlay is unmounted all the
/// same, only the mount unit may end "failed".
pub fn wait_mount_unit_inactive(merged: &Path) -> Option<String> {
    let unit = match sdme_core::escape::mount_unit_name(&merged.to_string_lossy()) {
        Ok(u) => u,
        Err(e) => return Some(format!("{}: {e}", merged.display())),
    };
    let deadline = Instant::now() + UNIT_SYNC_TIMEOUT;
    let mut bus = match dbus::Conn::connect(Path::new(SYSTEM_BUS), deadline) {
        Ok(c) => c,
        Err(e) => {
            return Some(format!(
                "cannot ask systemd about {unit} ({SYSTEM_BUS}: {e}); it may show the unit \
                 failed although the overlay is unmounted"
            ))
        }
    };
    let mut backoff = Backoff::default();
    loop {
        let state = match bus.unit_state(&unit, deadline) {
            Ok((_, active, _)) => active,
            Err(e) => return Some(format!("cannot read the state of {unit}: {e}")),
        };
        if let Some(w) = verdict(&unit, &state) {
            return w;
        }
        let pause = backoff.next_interval();
        if Instant::now() + pause >= deadline {
            return Some(format!(
                "systemd still shows {unit} {state} {} s after the overlay was unmounted",
                UNIT_SYNC_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(pause);
    }
}

/// `None`: keep waiting; `Some(None)`: done; `Some(Some(w))`: done, with a
/// warning.
fn verdict(unit: &str, active: &str) -> Option<Option<String>> {
    match active {
        "inactive" => Some(None),
        "failed" => Some(Some(format!(
            "systemd shows {unit} failed (see systemctl status {unit})"
        ))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_inactive_only() {
        assert_eq!(verdict("a.mount", "inactive"), Some(None));
        assert_eq!(verdict("a.mount", "active"), None);
        assert_eq!(verdict("a.mount", "deactivating"), None);
        let w = verdict("a.mount", "failed").unwrap().unwrap();
        assert!(w.contains("a.mount failed"), "{w}");
    }
}
