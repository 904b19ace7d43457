//! What the container's `ExecStopPost=` does besides unmounting (see
//! sdme-prepare(8)): [`wait_mount_unit_inactive`] makes systemd's view of
//! the overlay's `.mount` unit catch up with the kernel before the
//! service's stop job ends.
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

use crate::bootwait::Backoff;
use crate::dbus;

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
