//! sdme-import: bring a root file system into `/var/lib/sdme/rootfs/NAME`.
//!
//! The modules follow the path of an import:
//!
//! * [`cli`]: the command line (a fixed contract: units call it);
//! * [`options`]: what an import is asked to do (any front end fills it);
//! * [`import`]: one run: check, lock, stage, fill, post-process, commit;
//! * [`job`]: one import as the fillers of each source kind see it;
//! * [`source`]: what SOURCE is (detected or `--type=`);
//! * [`store`]: the rootfs store: name locks, staging directories, the
//!   atomic rename into place, cleanup of what a killed run left;
//! * [`meta`]: the metadata file of each rootfs;
//! * [`inuse`]: who uses a rootfs (mounts, `.container` files);
//! * sources: [`tarball`] (with [`compress`], [`pipe`], [`layer`]),
//!   [`copy`] (directories), [`fetch`] (the hand-over to [`http`] for
//!   URLs and [`oci`] for registries, OCI layouts and archives, docker
//!   archives), [`disk`] (disk images);
//! * [`post`]: after the tree is complete (systemd, D-Bus, nspawn patches);
//! * [`progress`], [`cancel`], [`budget`], [`sys`], [`mounts`]: what they
//!   all use.

pub mod acl;
pub mod budget;
pub mod buildcache;
pub mod buildcopy;
pub mod builder;
pub mod buildfrom;
pub mod buildhost;
pub mod buildlayer;
pub mod buildmain;
pub mod buildopts;
pub mod buildpost;
pub mod buildprune;
pub mod buildrun;
pub mod buildsteps;
pub mod buildtrash;
pub mod buildwatch;
pub mod cancel;
pub mod cli;
pub mod compress;
pub mod copy;
pub mod disk;
pub mod export;
pub mod fetch;
pub mod http;
pub mod import;
pub mod inuse;
pub mod job;
pub mod layer;
pub mod meta;
pub mod mounts;
pub mod oci;
pub mod options;
pub mod pax;
pub mod pipe;
pub mod post;
pub mod progress;
pub mod show;
pub mod source;
pub mod sparse;
pub mod store;
pub mod sys;
pub mod tarball;
pub mod targuard;
pub mod writeback;
