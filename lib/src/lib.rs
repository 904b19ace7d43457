//! sdme-core: the one model of sdme's files, shared by the generator, the
//! helpers and the CLI. Nothing else parses `.container` files.
//!
//! - [`syntax`]: systemd unit-file syntax, with file:line errors;
//! - [`search`]: the search path, shadowing, masking, drop-ins, templates;
//! - [`config`]: the global `sdme.conf` and its drop-ins;
//! - [`container`]: the `.container` schema and its validation;
//! - [`pod`]: `.pod` files, network namespaces that containers join;
//! - [`image`]: `.image` files and `Image=`: imports before first start;
//! - [`app`]: the values of the OCI application keys (`App=`, ...);
//!   [`app_unit`]: the guest's `sdme-app.service` made from them and the
//!   image's configuration; [`app_ports`]: the image's `ExposedPorts` as
//!   nspawn port forwards;
//! - [`build`]: `.build` files and the original tool's build files: root
//!   file systems built from steps;
//! - [`keys`]: the table of `[Container]` keys: the parser's keys and the
//!   CLI's options;
//! - [`sections`]: `[Unit]`, `[Service]`, `[Install]` and `X-` sections,
//!   the same for every file kind; `dropins`: a file merged with its
//!   drop-ins;
//! - [`diag`]: errors with their file and line; [`capability`]: kernel
//!   capability names;
//! - [`inuse`]: which rootfs each prepared container uses, and the lock
//!   that keeps a start and a replacement of that rootfs apart;
//! - [`service_env`]: `ServiceEnvironment=` and the guest drop-in it becomes;
//! - [`render`]: units and `[Install]` symlinks from the model;
//! - [`broken`]: the error unit of a file that has errors;
//! - [`orphan`]: the unit that stops a running container whose file was
//!   removed or broke;
//! - [`escape`], [`value`], [`name`], [`timespan`], [`paths`]: the small
//!   rules every one of them relies on.

pub mod app;
pub mod app_options;
pub mod app_ports;
pub mod app_unit;
pub mod bindspec;
pub mod broken;
pub mod build;
mod build_plan;
pub mod capability;
pub mod config;
pub mod container;
pub mod diag;
mod dropins;
pub mod escape;
pub mod generate;
pub mod image;
pub mod inuse;
pub mod keys;
pub mod lockfile;
pub mod mountinfo;
pub mod name;
pub mod orphan;
pub mod parallel;
pub mod paths;
pub mod pod;
pub mod render;
pub mod search;
pub mod sections;
pub mod service_env;
pub mod syntax;
pub mod timespan;
pub mod userns;
pub mod value;
