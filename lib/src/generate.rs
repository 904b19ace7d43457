//! One generator run as a pure function: search path in, outputs and
//! diagnostics out. The binary only adds logging and file writing, so the
//! CLI's `--dry-run`-style checks and the tests use exactly this.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::container::{Container, Diag};
use crate::render::{render, Output};
use crate::search::{search, FileType};

/// What a run produced, besides the outputs it handed on.
#[derive(Debug, Default)]
pub struct Generated {
    /// How many containers generated.
    pub containers: usize,
    /// Every problem, one line each.
    pub errors: Vec<String>,
    /// Files skipped on purpose (masked).
    pub masked: Vec<PathBuf>,
    /// Files skipped because of their errors.
    pub skipped: Vec<PathBuf>,
}

/// Generate units for every file on `dirs`, handing each container's
/// outputs to `emit` as soon as they are rendered (in file-name order), so
/// that a run over many files never holds all units in memory.
pub fn generate(dirs: &[PathBuf], emit: &mut dyn FnMut(Output)) -> Generated {
    let s = search(dirs, FileType::Container);
    let mut g = Generated {
        errors: s.errors,
        masked: s.masked,
        ..Default::default()
    };
    // machine name -> file that claimed it first
    let mut machines: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut written: BTreeSet<String> = BTreeSet::new();
    for found in s.found {
        let c = match Container::load(&found) {
            Ok(c) => c,
            Err(diags) => {
                g.errors.extend(diags.iter().map(Diag::to_string));
                g.skipped.push(found.path);
                continue;
            }
        };
        drop(found);
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
        if let Some(clash) = outs.iter().find(|o| written.contains(o.path())) {
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
            written.insert(o.path().to_string());
            emit(o);
        }
        g.containers += 1;
    }
    g
}
