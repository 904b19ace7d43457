//! `Rootfs=` and `Image=`: the container's lower layer, and the image unit
//! that imports it (or the build unit that builds it) before the first
//! start.

use crate::diag::Diag;
use crate::image::{check_image_source, inline_rootfs_name};
use crate::name::check_rootfs_name;
use crate::sections::Shared;
use crate::syntax::{Entry, Location};
use crate::value::{check_abs_path, check_overlay_path};

use super::image_use::ImageUse;
use super::model::Rootfs;

pub(super) struct RootfsKeys {
    rootfs: Rootfs,
    rootfs_at: Option<Location>,
    /// `Rootfs=` with a value, and the line (to refuse it next to `Image=`).
    rootfs_set: Option<Location>,
    /// `Rootfs=NAME.image` or `Rootfs=NAME.build`: NAME, and whether it
    /// is built.
    rootfs_image: Option<(String, bool)>,
    /// `Image=REF`: REF and its line.
    image: Option<(String, Location)>,
}

impl RootfsKeys {
    pub(super) fn new() -> RootfsKeys {
        RootfsKeys {
            rootfs: Rootfs::Host,
            rootfs_at: None,
            rootfs_set: None,
            rootfs_image: None,
            image: None,
        }
    }

    /// This concern's `[Container]` keys; false for any other key.
    pub(super) fn key(&mut self, f: &mut Shared, e: &Entry) -> bool {
        let v = e.value.as_str();
        match e.key.as_str() {
            "Rootfs" => {
                self.rootfs_at = Some(e.at.clone());
                self.rootfs_set = (!v.is_empty()).then(|| e.at.clone());
                self.rootfs_image = None;
                if let Some(r) = f.check(e, parse_rootfs(v)) {
                    self.rootfs_image = match (v.strip_suffix(".image"), v.strip_suffix(".build")) {
                        (Some(n), _) => Some((n.to_string(), false)),
                        (_, Some(n)) => Some((n.to_string(), true)),
                        _ => None,
                    };
                    self.rootfs = r;
                }
            }
            "Image" => {
                if v.is_empty() {
                    self.image = None;
                } else if let Some(()) = f.check(e, check_image_source(v)) {
                    self.image = Some((v.to_string(), e.at.clone()));
                }
            }
            _ => return false,
        }
        true
    }

    /// `[App] DefaultRootfs=` of sdme.conf: the rootfs of a container with
    /// `App=` that sets neither `Rootfs=` nor `Image=`.
    pub(super) fn default_for_app(&mut self, name: &str) {
        if self.rootfs_at.is_none() && self.image.is_none() {
            self.rootfs = Rootfs::Named(name.to_string());
        }
    }

    /// The lower layer and the image unit that imports it. `Image=` names
    /// the rootfs itself, so it cannot be combined with `Rootfs=`.
    pub(super) fn resolve(&mut self, f: &mut Shared) -> (Rootfs, Option<ImageUse>) {
        let image = match (self.image.take(), &self.rootfs_set) {
            (Some((r, at)), Some(r_at)) => {
                f.diags.push(Diag::at(
                    &at,
                    format!(
                        "Image={r} cannot be combined with Rootfs= (at {r_at}): Image= names the rootfs to import; use one of them"
                    ),
                ));
                None
            }
            (Some((r, at)), None) => {
                let name = inline_rootfs_name(&r);
                self.rootfs = Rootfs::Named(name.clone());
                Some(ImageUse {
                    name,
                    inline: Some(r),
                    at,
                    build: false,
                })
            }
            (None, Some(at)) => self.rootfs_image.take().map(|(name, build)| ImageUse {
                name,
                inline: None,
                at: at.clone(),
                build,
            }),
            (None, None) => None,
        };
        if let Rootfs::Named(_) = &self.rootfs {
            if let Err(m) = check_overlay_path(&self.rootfs.lower_dir(), "rootfs directory") {
                f.diags.push(match &self.rootfs_at {
                    Some(at) => Diag::at(at, m),
                    None => Diag::file(&f.source, m),
                });
            }
        }
        (self.rootfs.clone(), image)
    }
}

/// A `Rootfs=` value: empty or `/` (the host), `NAME.image`, `NAME.build`,
/// a directory or an imported rootfs's name.
fn parse_rootfs(v: &str) -> Result<Rootfs, String> {
    if v.is_empty() || v == "/" {
        return Ok(Rootfs::Host);
    }
    if let Some(n) = v.strip_suffix(".image") {
        check_rootfs_name(n).map_err(|m| m.replace("rootfs name", "image name"))?;
        return Ok(Rootfs::Named(n.to_string()));
    }
    if let Some(n) = v.strip_suffix(".build") {
        check_rootfs_name(n).map_err(|m| m.replace("rootfs name", "build name"))?;
        return Ok(Rootfs::Named(n.to_string()));
    }
    if v.starts_with('/') {
        check_abs_path(v, "rootfs directory")
            .and_then(|_| check_overlay_path(v, "rootfs directory"))?;
        return Ok(Rootfs::Dir(v.to_string()));
    }
    check_rootfs_name(v)?;
    Ok(Rootfs::Named(v.to_string()))
}
