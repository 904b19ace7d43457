//! `.pod` files: a network namespace that containers join with
//! `Pod=NAME.pod`. The file has only the shared sections; its own `[Pod]`
//! section has no keys yet.

use std::path::{Path, PathBuf};

use crate::diag::Diag;
use crate::dropins::{for_instance, parse_with_dropins};
use crate::name::{check_machine_name, check_pod_name};
use crate::search::{Found, UnitName};
use crate::sections::{Install, Kind, Shared};
use crate::syntax::{Section, UnitFile};

/// `[Service]` keys the pod unit sets itself.
const POD_RESERVED_SERVICE_KEYS: [(&str, &str); 4] = [
    ("ExecStart", "sdme runs the pod helper"),
    ("ExecStop", "sdme runs the pod helper"),
    ("Type", "the pod unit is a Type=oneshot"),
    (
        "RemainAfterExit",
        "the pod unit stays active while its namespace exists",
    ),
];

/// The shared sections of a `.pod` file.
const POD_KIND: Kind = Kind {
    ext: "pod",
    own: "Pod",
    reserved_service: &POD_RESERVED_SERVICE_KEYS,
    no_reset: &[],
};

/// A validated `.pod` file: a network namespace that containers join with
/// `Pod=NAME.pod`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    /// `web`, `web@` for a template, `web@a` for an instance.
    pub name: String,
    pub unit_name: UnitName,
    /// The file that won on the search path (`SourcePath=`).
    pub source: PathBuf,
    /// `[Unit]`, `[Service]` and `X-` sections, passed through unchanged.
    pub passthrough: Vec<Section>,
    pub install: Install,
}

impl Pod {
    /// Validate `found` with its drop-ins.
    pub fn load(found: &Found) -> Result<Pod, Vec<Diag>> {
        let file = parse_with_dropins(found)?;
        for_instance(found, Pod::from_unit(&found.name, &found.path, file))
    }

    pub fn is_template(&self) -> bool {
        matches!(self.unit_name, UnitName::Template(_))
    }

    /// Validate a parsed file named `name`.
    pub fn from_unit(name: &UnitName, source: &Path, file: UnitFile) -> Result<Pod, Vec<Diag>> {
        let mut b = Shared::new(name.clone(), source);
        let stem = name.stem();
        let checked = match name {
            UnitName::Template(t) => check_pod_name(t),
            _ => check_pod_name(&stem),
        };
        if let Err(m) = checked {
            b.diags.push(Diag::file(
                source,
                format!(
                    "file name '{}' cannot name a pod: {}",
                    stem.escape_default(),
                    m.replacen("pod name", "name", 1)
                ),
            ));
        }
        b.sections(file, &POD_KIND, |b, e| {
            b.err(e, format!("unknown key '{}' in section [Pod]", e.key))
        });
        if let Some((inst, at)) = b.default_instance("pod") {
            if let Err(m) = check_machine_name(&inst) {
                let m = m.replacen("machine name", "pod instance name", 1);
                b.diags
                    .push(Diag::at(&at, format!("DefaultInstance={inst}: {m}")));
            }
        }
        b.check_aliases(!matches!(name, UnitName::Plain(_)));
        if let Some(diags) = b.failed() {
            return Err(diags);
        }
        Ok(Pod {
            name: stem,
            unit_name: name.clone(),
            source: source.to_path_buf(),
            passthrough: b.passthrough,
            install: b.install,
        })
    }
}
