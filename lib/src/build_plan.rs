//! The `.build` files of a generator run: each validated, then checked
//! against the others and the `.image` files (a `From=` that names no
//! file, a chain that comes back to itself, a rootfs name an image file
//! makes too). A file that fails gets an error unit, as every kind does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::broken::Broken;
use crate::build::{Base, Build};
use crate::diag::Diag;
use crate::search::{FileType, Search, UnitName};

/// The accepted builds and what went wrong with the others.
#[derive(Debug, Default)]
pub(crate) struct BuildPlan {
    /// In file-name order.
    pub builds: Vec<Build>,
    pub errors: Vec<String>,
    pub skipped: Vec<PathBuf>,
    pub masked: Vec<PathBuf>,
    pub broken: Vec<Broken>,
    /// Files with errors by build name: a container that names one fails
    /// with them.
    pub broken_files: BTreeMap<String, (PathBuf, Vec<String>)>,
}

impl BuildPlan {
    fn refuse(&mut self, name: &UnitName, path: &Path, msgs: Vec<String>) {
        self.errors.extend(msgs.iter().cloned());
        self.skipped.push(path.to_path_buf());
        self.broken_files
            .insert(name.stem(), (path.to_path_buf(), msgs.clone()));
        self.broken
            .extend(Broken::new(FileType::Build, name, path, msgs));
    }
}

/// Validate the found `.build` files; `images`: the names of the accepted
/// `.image` files.
pub(crate) fn plan_builds(s: Search, images: &BTreeSet<String>) -> BuildPlan {
    let mut p = BuildPlan {
        errors: s.errors,
        masked: s.masked,
        ..Default::default()
    };
    let mut loaded = Vec::new();
    for found in &s.found {
        match Build::load(found) {
            Ok(b) if images.contains(&b.name) => {
                let msg = format!(
                    "{}: the rootfs '{}' is also what {n}.image imports; rename one of the two files",
                    b.source.display(),
                    b.name,
                    n = b.name
                );
                p.refuse(&found.name, &found.path, vec![msg]);
            }
            Ok(b) => loaded.push(b),
            Err(diags) => {
                let msgs = diags.iter().map(Diag::to_string).collect();
                p.refuse(&found.name, &found.path, msgs);
            }
        }
    }
    for (name, path, e) in s.unreadable {
        p.broken_files
            .insert(name.stem(), (path.clone(), vec![e.clone()]));
        p.broken
            .extend(Broken::new(FileType::Build, &name, &path, vec![e]));
    }
    // Chains that come back to themselves, then (until nothing changes)
    // builds whose From= names no accepted file.
    let froms: BTreeMap<String, Base> = (loaded.iter())
        .map(|b| (b.name.clone(), b.from.clone()))
        .collect();
    let mut refused: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for b in &loaded {
        if let Err(m) = b.chain(|n| froms.get(n)) {
            let at = b
                .from_at
                .as_ref()
                .map_or_else(|| b.source.display().to_string(), ToString::to_string);
            refused.insert(b.name.clone(), vec![format!("{at}: {m}")]);
        }
    }
    loop {
        let mut more = false;
        for b in &loaded {
            if refused.contains_key(&b.name) {
                continue;
            }
            if let Some(m) = missing_from(b, images, &froms, &refused) {
                refused.insert(b.name.clone(), vec![m]);
                more = true;
            }
        }
        if !more {
            break;
        }
    }
    for b in loaded {
        match refused.remove(&b.name) {
            Some(msgs) => p.refuse(&UnitName::Plain(b.name.clone()), &b.source, msgs),
            None => p.builds.push(b),
        }
    }
    p
}

/// Why `b`'s `From=` names nothing that will be there, if it does not.
fn missing_from(
    b: &Build,
    images: &BTreeSet<String>,
    builds: &BTreeMap<String, Base>,
    refused: &BTreeMap<String, Vec<String>>,
) -> Option<String> {
    let at = b.from_at.as_ref()?;
    match &b.from {
        Base::Image(n) if !images.contains(n) => Some(format!(
            "{at}: From={n}.image: no image file {n}.image on the search path (or it has errors, or is masked)"
        )),
        Base::Build(n) if !builds.contains_key(n) || refused.contains_key(n) => Some(format!(
            "{at}: From={n}.build: no build file {n}.build on the search path (or it has errors, or is masked)"
        )),
        _ => None,
    }
}
