//! Files the CLI writes into `/etc/sdme`: always a complete file or none,
//! since the generator may read the directory at any moment.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use tempfile::NamedTempFile;

/// `text` in a temporary file in `dir` (created if missing), mode 0644 and
/// synced: the caller links or renames it to its name.
pub fn synced_temp(dir: &Path, prefix: &str, text: &str) -> Result<NamedTempFile> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(prefix)
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())
        .and_then(|_| {
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
        })
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    Ok(tmp)
}
