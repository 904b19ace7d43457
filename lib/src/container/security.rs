//! `Capability=`, `DropCapability=`, `NoNewPrivileges=`, `ReadOnly=`,
//! `SystemCallFilter=`, `AppArmorProfile=` and `PrivateUsers=`: what the
//! container's processes may do.

use std::collections::BTreeMap;

use crate::capability::{capability_name, parse_capability};
use crate::diag::Diag;
use crate::search::UnitName;
use crate::sections::Shared;
use crate::syntax::{Entry, Location};
use crate::userns::PrivateUsers;

use super::syscall::{parse_syscall_filter, SyscallFilter};

/// `Capability=all` in [`Security::cap_add`].
const CAP_ALL: u8 = u8::MAX;

#[derive(Default)]
pub(super) struct Security {
    /// Capability number (or [`CAP_ALL`]) to the line that added it.
    cap_add: BTreeMap<u8, Location>,
    cap_drop: BTreeMap<u8, Location>,
    pub(super) no_new_privileges: bool,
    pub(super) read_only: bool,
    pub(super) syscall_filter: Vec<SyscallFilter>,
    pub(super) apparmor_profile: Option<String>,
    private_users: Option<(PrivateUsers, Location)>,
    /// An empty `DropCapability=` / `SystemCallFilter=` was seen: the
    /// preset's part of that list is reset with the rest.
    pub(super) drop_reset: bool,
    pub(super) syscall_reset: bool,
}

impl Security {
    /// This concern's `[Container]` keys; false for any other key.
    pub(super) fn key(&mut self, f: &mut Shared, e: &Entry) -> bool {
        let v = e.value.as_str();
        match e.key.as_str() {
            "Capability" | "DropCapability" => self.capabilities(f, e),
            "NoNewPrivileges" => self.no_new_privileges = f.bool(e),
            "ReadOnly" => self.read_only = f.bool(e),
            "SystemCallFilter" => {
                if v.is_empty() {
                    self.syscall_filter.clear();
                    self.syscall_reset = true;
                } else if let Some(sf) = f.check(e, parse_syscall_filter(v)) {
                    self.syscall_filter.push(sf);
                }
            }
            "AppArmorProfile" => {
                if v.is_empty() {
                    self.apparmor_profile = None;
                } else if f.check(e, check_apparmor_profile(v)).is_some() {
                    self.apparmor_profile = Some(v.to_string());
                }
            }
            "PrivateUsers" => {
                if v.is_empty() {
                    self.private_users = None;
                } else if let Some(p) = f.check(e, PrivateUsers::parse(v)) {
                    self.private_users = Some((p, e.at.clone()));
                }
            }
            _ => return false,
        }
        true
    }

    /// `Capability=` and `DropCapability=`: lists of names; empty resets.
    fn capabilities(&mut self, f: &mut Shared, e: &Entry) {
        let add = e.key == "Capability";
        if e.value.is_empty() {
            if add {
                self.cap_add.clear();
            } else {
                self.cap_drop.clear();
                self.drop_reset = true;
            }
            return;
        }
        for w in e.value.split_whitespace() {
            let n = if !w.eq_ignore_ascii_case("all") {
                f.check(e, parse_capability(w))
            } else if add {
                Some(CAP_ALL)
            } else {
                f.check::<u8>(e, Err("'all' can only be added (Capability=all); without any capability the container's systemd cannot boot".into()))
            };
            if let Some(n) = n {
                let map = if add {
                    &mut self.cap_add
                } else {
                    &mut self.cap_drop
                };
                map.insert(n, e.at.clone());
            }
        }
    }

    /// A capability cannot be both added and dropped; a template cannot
    /// give every instance one fixed UID range.
    pub(super) fn check(&self, f: &mut Shared) {
        for (n, drop_at) in &self.cap_drop {
            if let Some(add_at) = self.cap_add.get(n) {
                f.diags.push(Diag::at(
                    drop_at,
                    format!(
                        "{} is both added (Capability= at {add_at}) and dropped (DropCapability= at {drop_at}); remove it from one of them",
                        capability_name(*n),
                    ),
                ));
            }
        }
        if let (UnitName::Template(_), Some((PrivateUsers::Base(n), at))) =
            (&f.name, &self.private_users)
        {
            f.diags.push(Diag::at(
                at,
                format!(
                    "PrivateUsers={n}: a fixed UID base in a template would give every instance the same range; use PrivateUsers=yes (each instance's base then comes from its machine name)"
                ),
            ));
        }
    }

    /// `Capability=all`.
    pub(super) fn capability_all(&self) -> bool {
        self.cap_add.contains_key(&CAP_ALL)
    }

    /// `Capability=`: numbers, sorted, unique.
    pub(super) fn capabilities_added(&self) -> Vec<u8> {
        self.cap_add
            .keys()
            .copied()
            .filter(|n| *n != CAP_ALL)
            .collect()
    }

    /// `DropCapability=`: numbers, sorted, unique.
    pub(super) fn capabilities_dropped(&self) -> Vec<u8> {
        self.cap_drop.keys().copied().collect()
    }

    pub(super) fn private_users(&self) -> Option<PrivateUsers> {
        self.private_users.as_ref().map(|(p, _)| *p)
    }
}

/// Longest `AppArmorProfile=` accepted (a file name in /etc/apparmor.d).
const APPARMOR_PROFILE_MAX: usize = 255;

/// Check an `AppArmorProfile=` value (not empty).
///
/// AppArmor itself allows almost any byte in a profile name, but the name
/// goes into a unit file (`AppArmorProfile=`) and onto the prepare
/// helper's command line, and is looked up in the kernel's profile list
/// (`NAME (mode)` lines). So the rule is strict: ASCII letters, digits and
/// `_ - . + : @ /` only (no white space, control characters, quotes, `%`
/// specifiers or `$`); it must start with a letter, digit, `_` or `/` (a
/// leading `-` would be systemd's "ignore errors" prefix, which sdme does
/// not offer: a profile that cannot be applied fails the start), and it
/// must not be made of `/` alone (not a name). Paths such as
/// `/usr/bin/foo`, AppArmor's names for attached profiles, are allowed.
pub fn check_apparmor_profile(v: &str) -> Result<(), String> {
    let rule = "an AppArmor profile name has ASCII letters, digits and '_-.+:@/' only, starts with a letter, digit, '_' or '/' and is not made of '/' alone";
    if v.is_empty() {
        return Err(format!("empty profile name; {rule}"));
    }
    if v.len() > APPARMOR_PROFILE_MAX {
        return Err(format!(
            "profile name longer than {APPARMOR_PROFILE_MAX} bytes"
        ));
    }
    if let Some(c) = v
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_-.+:@/".contains(*c)))
    {
        return Err(format!(
            "'{}' is not allowed in a profile name; {rule}",
            c.escape_default()
        ));
    }
    let first = v.as_bytes()[0];
    if !(first.is_ascii_alphanumeric() || first == b'_' || first == b'/') {
        return Err(format!(
            "a profile name cannot start with '{}'; {rule}",
            char::from(first)
        ));
    }
    if v.bytes().all(|b| b == b'/') {
        return Err(format!("'{v}' is not a profile name; {rule}"));
    }
    Ok(())
}
