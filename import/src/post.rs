//! After the tree is complete, before it is committed: systemd and D-Bus
//! checks and installation, patches for nspawn. Owned by the import-disk
//! work; does nothing until then.

use std::path::Path;

use anyhow::Result;

use crate::cli::Args;
use crate::meta::Meta;
use crate::progress::Progress;

/// Post-process the tree at `root` (the staging copy, not yet visible as
/// rootfs/NAME); may record findings in `meta`.
pub fn after_import(root: &Path, args: &Args, progress: &Progress, meta: &mut Meta) -> Result<()> {
    let _ = (root, args, progress, meta);
    Ok(())
}
