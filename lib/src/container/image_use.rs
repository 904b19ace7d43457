//! A rootfs a container needs made before it starts, by an image unit
//! or a build unit: its own (`Image=`, `Rootfs=NAME.image|.build`) or its
//! application's (`App=REF`, `App=NAME.image`).

use crate::syntax::Location;

/// A container's rootfs that an image unit imports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageUse {
    /// The rootfs name (`Rootfs::Named`), also the image unit's name.
    pub name: String,
    /// `Image=REF`: the reference; `None` for `Rootfs=NAME.image`.
    pub inline: Option<String>,
    /// The line that set it.
    pub at: Location,
    /// `Rootfs=NAME.build`: the build unit makes it, not an image unit.
    pub build: bool,
}

impl ImageUse {
    /// The unit that makes the rootfs: `sdme-image-NAME.service` or
    /// `sdme-build-NAME.service`.
    pub fn unit(&self) -> String {
        if self.build {
            crate::build::build_service_name(&self.name)
        } else {
            crate::image::image_service_name(&self.name)
        }
    }
}
