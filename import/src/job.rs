//! One import as the fillers of each source kind see it.

use std::path::Path;

use crate::budget::Budget;
use crate::copy::CopyOpts;
use crate::layer::ApplyOpts;
use crate::meta::Meta;
use crate::options::ImportOptions;
use crate::progress::Progress;
use crate::source::Kind;
use crate::store::Store;

/// Everything an importer of one source kind gets: the tree to fill, a
/// scratch directory, the options, progress, the size budget and the
/// metadata to complete (digest, platform, OCI config).
pub struct Job<'a> {
    pub opts: &'a ImportOptions,
    /// SOURCE as given.
    pub source: &'a str,
    pub kind: Kind,
    /// The rootfs name.
    pub name: &'a str,
    /// The tree being built: an empty directory at the start.
    pub root: &'a Path,
    /// For temporary files (downloads, converted disk images); removed
    /// with the staging directory whatever happens.
    pub scratch: &'a Path,
    pub store: &'a Store,
    pub progress: &'a Progress,
    pub budget: &'a Budget,
    pub meta: &'a mut Meta,
}

impl Job<'_> {
    /// Options for applying a tarball (`whiteouts`: an OCI layer).
    pub fn apply_opts(&self, whiteouts: bool) -> ApplyOpts<'_> {
        ApplyOpts {
            whiteouts,
            budget: Some(self.budget),
            ..ApplyOpts::default()
        }
    }

    /// Options for copying a directory tree into `root`.
    pub fn copy_opts(&self) -> CopyOpts<'_> {
        CopyOpts {
            budget: Some(self.budget),
            progress: Some(self.progress),
            ..CopyOpts::default()
        }
    }
}
