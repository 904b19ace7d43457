//! Tarball sources: a file (or any stream, e.g. a download or an image
//! layer) in any of the compressions `compress` knows, unpacked with two
//! threads (see `pipe`).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use anyhow::{Context, Result};

use crate::compress;
use crate::layer::{self, ApplyOpts, Stats};
use crate::pipe;
use crate::progress::{Counted, Progress};

/// Decompress (detected by magic) and apply `reader` onto `root`.
pub fn unpack<R: Read + Send>(reader: R, root: &Path, opts: &ApplyOpts) -> Result<Stats> {
    let (_, dec) = compress::decoder(BufReader::with_capacity(1 << 20, reader))?;
    pipe::threaded(dec, |r| layer::apply(r, root, opts))
}

/// Unpack the tarball at `path` onto `root`, with progress over the file's
/// bytes.
pub fn unpack_file(
    path: &Path,
    root: &Path,
    opts: &ApplyOpts,
    progress: &Progress,
) -> Result<Stats> {
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let md = f
        .metadata()
        .with_context(|| format!("cannot stat {}", path.display()))?;
    if !md.is_file() {
        anyhow::bail!("{} is not a regular file", path.display());
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    progress.begin(format!("unpacking {name}"), Some(md.len()));
    let st = unpack(Counted::new(f, progress), root, opts)?;
    progress.done();
    Ok(st)
}
