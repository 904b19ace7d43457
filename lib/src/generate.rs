//! One generator run as a pure function: search path in, outputs and
//! diagnostics out. The binary only adds logging and file writing, so the
//! CLI's `--dry-run`-style checks and the tests use exactly this.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::container::{Container, Diag};
use crate::render::{render, Output};
use crate::search::{search, FileType};

/// What a run produced.
#[derive(Debug, Default)]
pub struct Generated {
    /// Outputs by relative path (sorted, so writing order is stable).
    pub outputs: BTreeMap<String, Output>,
    /// Containers that generated, in file-name order.
    pub containers: Vec<Container>,
    /// Every problem, one line each.
    pub errors: Vec<String>,
    /// Files skipped on purpose (masked).
    pub masked: Vec<PathBuf>,
    /// Files skipped because of their errors.
    pub skipped: Vec<PathBuf>,
}

/// Generate units for every file on `dirs`.
pub fn generate(dirs: &[PathBuf]) -> Generated {
    let s = search(dirs, FileType::Container);
    let mut g = Generated {
        errors: s.errors,
        masked: s.masked,
        ..Default::default()
    };
    // machine name -> file that claimed it first
    let mut machines: BTreeMap<String, PathBuf> = BTreeMap::new();
    for found in &s.found {
        let c = match Container::load(found) {
            Ok(c) => c,
            Err(diags) => {
                g.errors.extend(diags.iter().map(Diag::to_string));
                g.skipped.push(found.path.clone());
                continue;
            }
        };
        if !c.is_template() {
            if let Some(other) = machines.get(&c.machine) {
                g.errors.push(format!(
                    "{}: machine name '{}' is already used by {}",
                    c.source.display(),
                    c.machine,
                    other.display()
                ));
                g.skipped.push(c.source.clone());
                continue;
            }
        }
        let outs = render(&c);
        if let Some(clash) = outs.iter().find(|o| g.outputs.contains_key(o.path())) {
            g.errors.push(format!(
                "{}: {} is already generated from another file",
                c.source.display(),
                clash.path()
            ));
            g.skipped.push(c.source.clone());
            continue;
        }
        if !c.is_template() {
            machines.insert(c.machine.clone(), c.source.clone());
        }
        for o in outs {
            g.outputs.insert(o.path().to_string(), o);
        }
        g.containers.push(c);
    }
    g
}
