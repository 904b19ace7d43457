//! `PrivateUsers=`: a container's own user namespace and its UID range.
//!
//! Every container with a user namespace gets 65 536 UIDs and GIDs
//! (`BASE` to `BASE+65535` on the host are 0 to 65535 inside). The base is
//! either fixed in the file or derived from the machine name, so that it
//! is the same at every start and on every host, and the generator (which
//! sees all containers) can refuse two containers whose ranges collide.
//! The range is the one systemd-nspawn's `--private-users=pick` uses
//! (0x00080000 to 0x6FFF0000, in steps of 0x10000), so sdme's ranges and
//! nspawn's own picks come from the same pool and a pick never lands on a
//! range below 524 288, where system and regular users live.

use crate::value::parse_bool;

/// UIDs per container.
pub const RANGE: u32 = 0x10000;
/// Lowest base (nspawn's UID_SHIFT_PICK_MIN).
pub const BASE_MIN: u32 = 0x0008_0000;
/// Highest base (nspawn's UID_SHIFT_PICK_MAX).
pub const BASE_MAX: u32 = 0x6FFF_0000;
/// How many bases there are.
const SLOTS: u32 = (BASE_MAX - BASE_MIN) / RANGE + 1;

/// The value of `PrivateUsers=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrivateUsers {
    /// No user namespace (the default).
    No,
    /// A user namespace whose base is derived from the machine name.
    Yes,
    /// A user namespace with this base (checked: a multiple of 65536 in
    /// [`BASE_MIN`]..=[`BASE_MAX`]).
    Base(u32),
}

impl PrivateUsers {
    /// `yes`, `no` (and systemd's other booleans), or a base in decimal.
    pub fn parse(v: &str) -> Result<PrivateUsers, String> {
        if let Ok(b) = parse_bool(v) {
            return Ok(if b {
                PrivateUsers::Yes
            } else {
                PrivateUsers::No
            });
        }
        if v.bytes().all(|b| b.is_ascii_digit()) && !v.is_empty() {
            let n: u32 = v.parse().map_err(|_| out_of_range(v))?;
            check_base(n).map_err(|_| out_of_range(v))?;
            return Ok(PrivateUsers::Base(n));
        }
        Err(format!(
            "expected yes, no or a UID base (a multiple of 65536 from {BASE_MIN} to {BASE_MAX}, in decimal)"
        ))
    }

    pub fn enabled(self) -> bool {
        self != PrivateUsers::No
    }
}

fn out_of_range(v: &str) -> String {
    format!(
        "UID base {v} is not a multiple of 65536 from {BASE_MIN} to {BASE_MAX} (0x{BASE_MIN:08X} to 0x{BASE_MAX:08X}, the range systemd-nspawn picks from)"
    )
}

/// A base must be a multiple of [`RANGE`] within nspawn's pick range.
pub fn check_base(n: u32) -> Result<(), String> {
    if n & (RANGE - 1) != 0 || !(BASE_MIN..=BASE_MAX).contains(&n) {
        return Err(out_of_range(&n.to_string()));
    }
    Ok(())
}

/// The base derived from a machine name: FNV-1a (64 bit) of the name,
/// modulo the number of bases. Written out here rather than taken from
/// std's hasher, whose output may change between Rust releases: a base
/// that changed would not break anything on disk (files in `upper/` are
/// stored unshifted) but would move the container's range under the
/// administrator's feet.
pub fn base_for(machine: &str) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in machine.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // SLOTS < 2^16, so the remainder fits.
    let slot = u32::try_from(h % u64::from(SLOTS)).unwrap_or(0);
    BASE_MIN + slot * RANGE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_booleans_and_bases() {
        assert_eq!(PrivateUsers::parse("yes"), Ok(PrivateUsers::Yes));
        assert_eq!(PrivateUsers::parse("on"), Ok(PrivateUsers::Yes));
        assert_eq!(PrivateUsers::parse("no"), Ok(PrivateUsers::No));
        assert_eq!(PrivateUsers::parse("0"), Ok(PrivateUsers::No));
        assert_eq!(PrivateUsers::parse("1"), Ok(PrivateUsers::Yes));
        assert_eq!(
            PrivateUsers::parse("524288"),
            Ok(PrivateUsers::Base(524288))
        );
        assert_eq!(
            PrivateUsers::parse("1878982656"),
            Ok(PrivateUsers::Base(BASE_MAX))
        );
        for bad in [
            "65536",
            "524289",
            "1879048192",
            "99999999999",
            "0x80000",
            "pick",
            "-1",
        ] {
            assert!(PrivateUsers::parse(bad).is_err(), "{bad}");
        }
        let e = PrivateUsers::parse("524289").unwrap_err();
        assert!(e.contains("not a multiple of 65536"), "{e}");
    }

    #[test]
    fn derived_bases_are_stable_and_valid() {
        // Fixed values: a change here moves every container's range.
        assert_eq!(base_for("web"), 0x09E9_0000);
        assert_eq!(base_for("web"), base_for("web"));
        assert_ne!(base_for("web"), base_for("web2"));
        for name in ["a", "web", "db-1", &"x".repeat(64)] {
            let b = base_for(name);
            assert_eq!(check_base(b), Ok(()), "{name}: {b:#x}");
        }
    }
}
