//! Writing outputs so that a concurrent run can never leave a half file:
//! each file or symlink is made under a temporary name in the same
//! directory and renamed into place.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use sdme_core::render::Output;

/// Shared by the writing threads.
pub struct Writer {
    dir: PathBuf,
    pid: u32,
    made_dirs: Mutex<HashSet<PathBuf>>,
}

impl Writer {
    pub fn new(dir: &Path) -> Writer {
        Writer {
            dir: dir.to_path_buf(),
            pid: std::process::id(),
            made_dirs: Mutex::new(HashSet::new()),
        }
    }

    pub fn write(&self, o: &Output) -> Result<(), String> {
        let rel = Path::new(o.path());
        // Output paths come from validated names; refuse anything that
        // would leave the output directory all the same.
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(format!(
                "refusing to write outside the output directory: {}",
                o.path()
            ));
        }
        let dest = self.dir.join(rel);
        let parent = dest.parent().unwrap_or(&self.dir).to_path_buf();
        {
            // Held while creating, so two threads never race on one mkdir.
            let mut made = self.made_dirs.lock().unwrap_or_else(|p| p.into_inner());
            if !made.contains(&parent) {
                fs::create_dir_all(&parent)
                    .map_err(|e| format!("{}: cannot create directory: {e}", parent.display()))?;
                made.insert(parent.clone());
            }
        }
        let file_name = dest
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{}: no file name", dest.display()))?;
        // Output paths are unique within a run, the PID among runs.
        let tmp = parent.join(format!(".#{file_name}.{}", self.pid));
        let made = match o {
            Output::File { content, .. } => {
                fs::File::create(&tmp).and_then(|mut f| f.write_all(content.as_bytes()))
            }
            Output::Symlink { target, .. } => symlink(target, &tmp).or_else(|_| {
                // A leftover from a run with our PID that was killed.
                let _ = fs::remove_file(&tmp);
                symlink(target, &tmp)
            }),
        };
        made.and_then(|_| fs::rename(&tmp, &dest)).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            format!("{}: cannot write: {e}", dest.display())
        })
    }
}
