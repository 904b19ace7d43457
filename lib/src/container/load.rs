//! Loading a `.container` file: the file with its drop-ins, through the
//! shared sections, into [`Keys`] and out as a validated [`Container`].

use std::path::Path;

use crate::config::Config;
use crate::diag::Diag;
use crate::dropins::{for_instance, parse_with_dropins};
use crate::search::{Found, UnitName};
use crate::sections::{Kind, Shared};
use crate::syntax::UnitFile;

use super::build::Keys;
use super::model::Container;

/// `[Service]` keys sdme sets itself; a second value would break the unit.
const RESERVED_SERVICE_KEYS: [(&str, &str); 4] = [
    ("ExecStart", "sdme writes the systemd-nspawn command line; use NspawnArgs= in [Container] to add options"),
    ("Type", "the container service must be Type=notify so that start waits for the boot"),
    ("NotifyAccess", "nspawn and its payload must be able to notify"),
    ("TimeoutStartSec", "use BootTimeout= in [Container], which the boot-wait helper honours too"),
];

/// Keys whose empty assignment would reset what sdme wrote (its helpers,
/// its mount dependency) and leave a container that cannot start right.
const NO_RESET_KEYS: [(&str, &str); 6] = [
    ("Service", "ExecStartPre"),
    ("Service", "ExecStartPost"),
    ("Service", "ExecStopPost"),
    ("Unit", "After"),
    ("Unit", "Requires"),
    ("Unit", "RequiresMountsFor"),
];

/// The shared sections of a `.container` file.
const CONTAINER_KIND: Kind = Kind {
    ext: "container",
    own: "Container",
    reserved_service: &RESERVED_SERVICE_KEYS,
    no_reset: &NO_RESET_KEYS,
};

impl Container {
    /// Validate `found` (its bytes were read by the search) with its
    /// drop-ins, with the built-in global configuration.
    pub fn load(found: &Found) -> Result<Container, Vec<Diag>> {
        Container::load_with(found, &Config::default())
    }

    /// Validate `found` with its drop-ins and the global configuration.
    pub fn load_with(found: &Found, config: &Config) -> Result<Container, Vec<Diag>> {
        let file = parse_with_dropins(found)?;
        for_instance(
            found,
            Container::from_unit_with(found.name.clone(), &found.path, file, config),
        )
    }

    /// Validate a parsed file named `name`, with the built-in global
    /// configuration.
    pub fn from_unit(
        name: UnitName,
        source: &Path,
        file: UnitFile,
    ) -> Result<Container, Vec<Diag>> {
        Container::from_unit_with(name, source, file, &Config::default())
    }

    /// Validate a parsed file named `name`; presets take their lists from
    /// `config`.
    pub fn from_unit_with(
        name: UnitName,
        source: &Path,
        file: UnitFile,
        config: &Config,
    ) -> Result<Container, Vec<Diag>> {
        let mut f = Shared::new(name, source);
        if file.section("Container").is_none() {
            f.diags.push(Diag::file(source, "no [Container] section"));
        }
        let mut keys = Keys::new(config);
        f.sections(file, &CONTAINER_KIND, |f, e| keys.apply(f, e));
        keys.finish(f)
    }
}
