//! sdme-import: bring a root file system into `/var/lib/sdme/rootfs/NAME`.
//!
//! The modules follow the path of an import:
//!
//! * [`source`]: what SOURCE is (directory, tarball, URL, registry
//!   reference, OCI layout or archive, docker-save archive, disk image).
//! * [`store`]: the rootfs store: name locks, staging directories, the
//!   atomic rename into place, cleanup of what a killed run left.
//!
//! More modules arrive with the importers of each source kind.

pub mod http;
pub mod oci;
pub mod source;
pub mod store;
