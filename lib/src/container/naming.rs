//! `MachineName=` and `Hostname=`, and the machine name a container gets:
//! `MachineName=`, else its file name (`PREFIX-INSTANCE` for an instance
//! of a template), checked to fit the paths of its state directory.

use crate::diag::Diag;
use crate::escape::check_mount_unit_name;
use crate::name::check_machine_name;
use crate::paths;
use crate::search::UnitName;
use crate::sections::Shared;
use crate::syntax::{Entry, Location};
use crate::value::check_overlay_path;

/// A template's machine names are `PREFIX-INSTANCE`.
pub fn instance_machine(template: &str, instance: &str) -> String {
    format!("{template}-{instance}")
}

#[derive(Default)]
pub(super) struct Naming {
    machine: Option<(String, Location)>,
    pub(super) hostname: Option<String>,
}

impl Naming {
    /// This concern's `[Container]` keys; false for any other key.
    pub(super) fn key(&mut self, f: &mut Shared, e: &Entry) -> bool {
        let v = e.value.as_str();
        match e.key.as_str() {
            "MachineName" => {
                if v.is_empty() {
                    self.machine = None;
                } else if let Some(()) = f.check(e, check_machine_name(v)) {
                    self.machine = Some((v.to_string(), e.at.clone()));
                }
            }
            "Hostname" => {
                let r = check_machine_name(v).map_err(|m| m.replace("machine name", "hostname"));
                if v.is_empty() {
                    self.hostname = None;
                } else if let Some(()) = f.check(e, r) {
                    self.hostname = Some(v.to_string());
                }
            }
            _ => return false,
        }
        true
    }

    /// The machine name, with the checks of the file name and of the
    /// state directory it gives.
    pub(super) fn machine(&mut self, f: &mut Shared) -> String {
        let machine = self.chosen(f);
        if let Err(m) = check_file_name(&f.name) {
            let stem = f.name.stem();
            f.diags.push(Diag::file(
                &f.source,
                format!(
                    "file name '{stem}' cannot name a container: {}",
                    m.replace("machine name", "name")
                ),
            ));
        } else if !matches!(f.name, UnitName::Template(_)) {
            // A template's instance name is only known at run time; the
            // prepare helper checks it then.
            if let Err(m) = check_machine_name(&machine) {
                f.diags.push(Diag::file(&f.source, m));
            }
            if let Err(m) = check_state_dir(&machine) {
                f.diags.push(Diag::file(
                    &f.source,
                    format!("machine name '{machine}': {m}"),
                ));
            }
        }
        machine
    }

    /// `MachineName=`, else from the file name.
    fn chosen(&mut self, f: &mut Shared) -> String {
        match (&f.name, self.machine.take()) {
            (UnitName::Template(t), Some((_, at))) => {
                f.diags.push(Diag::at(
                    &at,
                    format!(
                        "MachineName= cannot be set in a template; instances are named '{t}-INSTANCE'"
                    ),
                ));
                t.clone()
            }
            (_, Some((m, _))) => m,
            (UnitName::Plain(s), None) => s.clone(),
            (UnitName::Template(t), None) => t.clone(),
            (UnitName::Instance { template, instance }, None) => {
                instance_machine(template, instance)
            }
        }
    }

    /// A template's `DefaultInstance=` must give a valid machine name.
    pub(super) fn check_default_instance(f: &mut Shared) {
        let Some((inst, at)) = f.default_instance("container") else {
            return;
        };
        if let UnitName::Template(t) = &f.name {
            if let Err(m) = check_machine_name(&instance_machine(t, &inst)) {
                f.diags
                    .push(Diag::at(&at, format!("DefaultInstance={inst}: {m}")));
            }
        }
    }
}

/// The file name's parts must be machine names.
fn check_file_name(name: &UnitName) -> Result<(), String> {
    match name {
        UnitName::Plain(s) => check_machine_name(s),
        UnitName::Template(t) => check_machine_name(t),
        UnitName::Instance { template, instance } => {
            check_machine_name(template).and_then(|_| check_machine_name(instance))
        }
    }
}

/// The state directory must fit overlayfs options and a mount unit name.
fn check_state_dir(machine: &str) -> Result<(), String> {
    // A checked name: no `/`, so this is `container_dir(machine)`.
    let dir = [paths::CONTAINERS_DIR, "/", machine].concat();
    check_overlay_path(&[&dir, "/upper"].concat(), "upper directory")
        .and_then(|_| check_mount_unit_name(&[&dir, "/merged"].concat()))
}
