//! `Bind=`, `BindReadOnly=`, `OpaqueDir=` and `NestedSdme=`: what the
//! container sees of the host besides its layers, and what of its lower
//! layer it does not see.

use crate::sections::Shared;
use crate::syntax::Entry;
use crate::value::check_abs_path;

use super::model::Bind;

/// Opaque directories of a host clone unless `OpaqueDir=` says otherwise:
/// the host's own enabled units and logs must not show through. (sdme's
/// own files and state are hidden in every container, host clone or not,
/// unless `NestedSdme=yes`: see [`crate::paths::NESTED_SDME_DIRS`].)
pub const HOST_CLONE_OPAQUE: [&str; 2] = ["/etc/systemd/system", "/var/log"];

/// Stands for "the defaults" at the head of the `OpaqueDir=` list until we
/// know whether the container is a host clone (`Rootfs=` may come later).
const DEFAULTS_MARKER: &str = "\0defaults";

#[derive(Default)]
pub(super) struct Mounts {
    pub(super) binds: Vec<Bind>,
    opaque: Option<Vec<String>>,
    pub(super) nested_sdme: bool,
}

impl Mounts {
    /// This concern's `[Container]` keys; false for any other key.
    pub(super) fn key(&mut self, f: &mut Shared, e: &Entry) -> bool {
        let v = e.value.as_str();
        match e.key.as_str() {
            "Bind" | "BindReadOnly" => {
                let read_only = e.key == "BindReadOnly";
                if v.is_empty() {
                    self.binds.retain(|b| b.read_only != read_only);
                } else if let Some(()) = f.check(e, check_bind(v)) {
                    self.binds.push(Bind {
                        read_only,
                        spec: v.to_string(),
                    });
                }
            }
            "OpaqueDir" => self.opaque_dir(f, e),
            "NestedSdme" => self.nested_sdme = f.bool(e),
            _ => return false,
        }
        true
    }

    /// `OpaqueDir=`: the file's lines add to the defaults; an empty one
    /// removes them too.
    fn opaque_dir(&mut self, f: &mut Shared, e: &Entry) {
        let v = e.value.as_str();
        if v.is_empty() {
            self.opaque = Some(Vec::new());
            return;
        }
        let r = check_abs_path(v, "opaque directory").and_then(|_| {
            if v == "/" {
                Err("the root directory cannot be opaque".into())
            } else {
                Ok(())
            }
        });
        if let Some(()) = f.check(e, r) {
            self.opaque
                .get_or_insert_with(|| vec![DEFAULTS_MARKER.to_string()])
                .push(v.to_string());
        }
    }

    /// The opaque directories, once it is known whether the container is
    /// a clone of the host: the defaults in place of their marker, each
    /// directory once.
    pub(super) fn opaque_dirs(&mut self, host: bool) -> Vec<String> {
        let defaults = || HOST_CLONE_OPAQUE.iter().map(|s| s.to_string());
        let listed: Vec<String> = match self.opaque.take() {
            None if host => defaults().collect(),
            None => Vec::new(),
            Some(list) => list
                .into_iter()
                .flat_map(|d| {
                    if d != DEFAULTS_MARKER {
                        vec![d]
                    } else if host {
                        defaults().collect()
                    } else {
                        Vec::new()
                    }
                })
                .collect(),
        };
        let mut opaque: Vec<String> = Vec::new();
        for d in listed {
            if !opaque.contains(&d) {
                opaque.push(d);
            }
        }
        opaque
    }
}

/// nspawn's `--bind=SRC[:DST[:OPTIONS]]`, checked so that nspawn will not
/// refuse it at boot.
fn check_bind(v: &str) -> Result<(), String> {
    let mut parts = v.splitn(3, ':');
    let src = parts.next().unwrap_or_default();
    let dst = parts.next();
    let opts = parts.next();
    let src_path = src.strip_prefix('+').unwrap_or(src);
    if src.starts_with('+') && !src_path.starts_with('/') {
        check_abs_path(&format!("/{src_path}"), "source")?;
    } else {
        check_abs_path(src_path, "source")?;
    }
    if let Some(dst) = dst {
        check_abs_path(dst, "destination")?;
    }
    if let Some(opts) = opts {
        for o in opts.split(',') {
            if !matches!(
                o,
                "rbind" | "norbind" | "idmap" | "noidmap" | "rootidmap" | "owneridmap"
            ) {
                return Err(format!(
                    "unknown bind option '{o}' (rbind, norbind, idmap, noidmap, rootidmap, owneridmap)"
                ));
            }
        }
    }
    Ok(())
}
