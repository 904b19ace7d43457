//! `Hardened=` and `Strict=`: presets of the security keys, applied to the
//! validated container as if written before the file's own lines.

use std::collections::BTreeSet;

use crate::capability::CAPABILITIES;
use crate::sections::Shared;
use crate::syntax::Entry;
use crate::userns::PrivateUsers;

use super::model::{Container, Preset};
use super::syscall::SyscallFilter;

/// `Hardened=` and `Strict=` as last assigned.
#[derive(Default)]
pub(super) struct Presets {
    hardened: bool,
    strict: bool,
}

impl Presets {
    /// This concern's `[Container]` keys; false for any other key.
    pub(super) fn key(&mut self, f: &mut Shared, e: &Entry) -> bool {
        match e.key.as_str() {
            "Hardened" => self.hardened = f.bool(e),
            "Strict" => self.strict = f.bool(e),
            _ => return false,
        }
        true
    }

    /// The preset in effect; `Strict=` includes `Hardened=`.
    pub(super) fn preset(&self) -> Option<Preset> {
        if self.strict {
            Some(Preset::Strict)
        } else if self.hardened {
            Some(Preset::Hardened)
        } else {
            None
        }
    }
}

/// Docker's default capability set (moby's `oci/caps`), which `Strict=`
/// keeps, plus CAP_SYS_ADMIN, without which systemd cannot boot in a
/// container (mounts, namespaces for its own sandboxing), and CAP_SYS_BOOT,
/// without which a reboot inside becomes a power-off (in the container's
/// PID namespace it reboots only the container).
pub const STRICT_KEEP: [&str; 16] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
    "SYS_ADMIN",
    "SYS_BOOT",
];

/// `Strict=`'s system call deny list.
pub const STRICT_SYSCALL_DENY: [&str; 4] = ["@cpu-emulation", "@debug", "@obsolete", "@raw-io"];

/// `Strict=`'s AppArmor profile, shipped in `apparmor/sdme-default`.
pub const STRICT_APPARMOR_PROFILE: &str = "sdme-default";

/// What the file set itself, which a preset leaves alone.
pub(super) struct PresetOverrides<'a> {
    pub(super) seen: &'a BTreeSet<String>,
    pub(super) drop_reset: bool,
    pub(super) syscall_reset: bool,
}

/// Apply a preset as if its settings were written before the file's own
/// lines: a key the file assigns (even to empty) wins over the preset's
/// value for it; for the lists, the file's lines add to the preset's and
/// an empty assignment removes the preset's part too; a capability the
/// file adds with `Capability=` is not dropped.
///
/// - Hardened: `PrivateUsers=yes`; `NoNewPrivileges=yes`; `PrivateNetwork=yes` unless the
///   container already has a network of its own (`Pod=`, veth, bridge,
///   zone, ports, nspawn network options); `DropCapability=` sdme.conf's
///   `[Hardened]` list (default CAP_SYS_PTRACE CAP_NET_RAW CAP_SYS_RAWIO).
/// - Strict: Hardened, plus every capability dropped that is neither in
///   [`STRICT_KEEP`] nor re-added, `SystemCallFilter=~` [`STRICT_SYSCALL_DENY`],
///   `AppArmorProfile=sdme-default`.
pub(super) fn apply_preset(
    c: &mut Container,
    p: Preset,
    hardened_drop: &[u8],
    o: &PresetOverrides,
) {
    let seen = |k: &str| o.seen.contains(k);
    if !seen("PrivateUsers") {
        c.private_users = Some(PrivateUsers::Yes);
    }
    if !seen("NoNewPrivileges") {
        c.no_new_privileges = true;
    }
    if !seen("PrivateNetwork") && c.host_network() {
        c.private_network = true;
    }
    let mut drop: BTreeSet<u8> = hardened_drop.iter().copied().collect();
    if p == Preset::Strict {
        for (n, name) in CAPABILITIES.iter().enumerate() {
            if !STRICT_KEEP.contains(name) {
                drop.insert(n as u8);
            }
        }
    }
    if !o.drop_reset && !c.capability_all {
        let mut all: BTreeSet<u8> = c.drop_capabilities.iter().copied().collect();
        all.extend(drop.into_iter().filter(|n| !c.capabilities.contains(n)));
        c.drop_capabilities = all.into_iter().collect();
    }
    if p == Preset::Strict {
        if !o.syscall_reset {
            c.system_call_filter.insert(
                0,
                SyscallFilter {
                    deny: true,
                    items: STRICT_SYSCALL_DENY.iter().map(|s| s.to_string()).collect(),
                },
            );
        }
        if !seen("AppArmorProfile") {
            c.apparmor_profile = Some(STRICT_APPARMOR_PROFILE.to_string());
        }
    }
}
