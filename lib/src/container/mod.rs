//! The `.container` schema: from a parsed (and merged) unit file to a
//! validated [`Container`]. Every check that can be made without looking at
//! `/var` is made here, so a bad value fails at generation time with its
//! file and line instead of failing a boot later.
//!
//! - `model`: [`Container`] and the types of its fields;
//! - `load`: a file and its drop-ins to a [`Container`];
//! - `build`: each `[Container]` line to the concern that owns its key,
//!   then the checks across keys;
//! - one module per concern, each with its keys, their checks and its
//!   part of the model: `naming`, `rootfs`, `mounts`, `environment`,
//!   `network`, `security` (with `syscall`), `preset`, `boot`, `app` (an
//!   OCI application run inside the guest).
//!
//! The keys themselves are listed once, in [`crate::keys`]; its tests hold
//! that table equal to the keys these modules accept.

mod app;
mod boot;
mod build;
mod environment;
mod image_use;
mod load;
mod model;
mod mounts;
mod naming;
mod network;
mod preset;
mod rootfs;
mod security;
mod syscall;
#[cfg(test)]
mod tests;

pub use app::App;
pub use boot::DEFAULT_BOOT_TIMEOUT;
pub(crate) use environment::{assignments, check_env_word};
pub use image_use::ImageUse;
pub use model::{Bind, Container, Preset, Rootfs};
pub use mounts::HOST_CLONE_OPAQUE;
pub use naming::instance_machine;
pub use preset::{STRICT_APPARMOR_PROFILE, STRICT_KEEP, STRICT_SYSCALL_DENY};
pub use security::check_apparmor_profile;
pub use syscall::SyscallFilter;
