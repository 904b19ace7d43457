//! `BootTimeout=`, `WaitFor=`, `LogConsole=` and `NspawnArgs=`: how the
//! container is started and when its start counts as done.

use std::time::Duration;

use crate::escape::split_words;
use crate::sections::Shared;
use crate::syntax::Entry;
use crate::timespan::parse_timespan;
use crate::value::check_unit_name;

/// Default `BootTimeout=`, as systemd's DefaultTimeoutStartSec.
pub const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(90);

pub(super) struct Boot {
    pub(super) boot_timeout: Option<Duration>,
    pub(super) wait_for: Vec<String>,
    /// `LogConsole=yes`: the guest's console in the unit's journal too.
    pub(super) log_console: bool,
    pub(super) nspawn_args: Vec<String>,
}

impl Boot {
    pub(super) fn new() -> Boot {
        Boot {
            boot_timeout: Some(DEFAULT_BOOT_TIMEOUT),
            wait_for: Vec::new(),
            log_console: false,
            nspawn_args: Vec::new(),
        }
    }

    /// This concern's `[Container]` keys; false for any other key.
    pub(super) fn key(&mut self, f: &mut Shared, e: &Entry) -> bool {
        let v = e.value.as_str();
        match e.key.as_str() {
            "BootTimeout" => {
                if v.is_empty() {
                    self.boot_timeout = Some(DEFAULT_BOOT_TIMEOUT);
                } else if let Some(t) = f.check(e, parse_timespan(v)) {
                    if t == Some(Duration::ZERO) {
                        f.err(e, "BootTimeout=0: use 'infinity' to wait without limit");
                    } else {
                        self.boot_timeout = t;
                    }
                }
            }
            "WaitFor" => {
                if v.is_empty() {
                    self.wait_for.clear();
                }
                for u in v.split_whitespace() {
                    if let Some(()) = f.check(e, check_unit_name(u, "unit")) {
                        self.wait_for.push(u.to_string());
                    }
                }
            }
            "LogConsole" => self.log_console = f.bool(e),
            "NspawnArgs" => {
                if v.is_empty() {
                    self.nspawn_args.clear();
                } else if let Some(words) = f.check(e, split_words(v)) {
                    for w in words {
                        if let Some(()) = f.check(e, check_nspawn_arg(&w)) {
                            self.nspawn_args.push(w);
                        }
                    }
                }
            }
            _ => return false,
        }
        true
    }
}

/// nspawn options that sdme sets itself or that do nothing under
/// `--keep-unit`; in `NspawnArgs=` they would conflict or be silently
/// ignored, so they are refused with the key to use instead.
const SDME_NSPAWN_OPTIONS: [(&str, &str); 18] = [
    ("--machine", "set by sdme; use MachineName="),
    ("-M", "set by sdme; use MachineName="),
    ("--directory", "set by sdme; use Rootfs="),
    ("-D", "set by sdme; use Rootfs="),
    ("--image", "sdme boots an overlay directory; use Rootfs="),
    ("-i", "sdme boots an overlay directory; use Rootfs="),
    ("--boot", "always set by sdme"),
    ("-b", "always set by sdme"),
    ("--keep-unit", "always set by sdme"),
    (
        "--notify-ready",
        "always set by sdme (start waits for the boot)",
    ),
    (
        "--settings",
        "set by sdme: the .container file is the whole configuration",
    ),
    (
        "--register",
        "machined registration is what machinectl and boot-wait use",
    ),
    (
        "--property",
        "has no effect with --keep-unit; put the setting in [Service]",
    ),
    (
        "--slice",
        "has no effect with --keep-unit; use Slice= in [Service]",
    ),
    (
        "--private-users",
        "use PrivateUsers= (nspawn's own ownership modes chown or copy up the whole overlay)",
    ),
    (
        "-U",
        "use PrivateUsers= (nspawn's own ownership modes chown or copy up the whole overlay)",
    ),
    (
        "--private-users-ownership",
        "set by sdme; use PrivateUsers=",
    ),
    ("--private-users-chown", "set by sdme; use PrivateUsers="),
];

fn check_nspawn_arg(word: &str) -> Result<(), String> {
    let name = word.split_once('=').map_or(word, |(n, _)| n);
    match SDME_NSPAWN_OPTIONS.iter().find(|(o, _)| *o == name) {
        Some((o, why)) => Err(format!("{o} cannot be given here: {why}")),
        None => Ok(()),
    }
}
