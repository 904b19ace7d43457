//! Writing outputs so that a concurrent run can never leave a half file:
//! each file or symlink is made under a temporary name in the same
//! directory and renamed into place.

use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Component, Path};

use sdme_core::render::Output;

pub fn output(dir: &Path, o: &Output) -> Result<(), String> {
    let rel = Path::new(o.path());
    // Output paths come from validated names; refuse anything that would
    // leave the output directory all the same.
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(format!(
            "refusing to write outside the output directory: {}",
            o.path()
        ));
    }
    let dest = dir.join(rel);
    let parent = dest.parent().unwrap_or(dir);
    fs::create_dir_all(parent)
        .map_err(|e| format!("{}: cannot create directory: {e}", parent.display()))?;
    let file_name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{}: no file name", dest.display()))?;
    let tmp = parent.join(format!(".#{file_name}.{}", std::process::id()));
    let made = match o {
        Output::File { content, .. } => (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(content.as_bytes())?;
            Ok::<_, std::io::Error>(())
        })(),
        Output::Symlink { target, .. } => {
            let _ = fs::remove_file(&tmp);
            symlink(target, &tmp)
        }
    };
    made.and_then(|_| fs::rename(&tmp, &dest)).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("{}: cannot write: {e}", dest.display())
    })
}
