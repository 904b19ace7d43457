//! What an import SOURCE is.

/// The kinds of source `sdme-import` understands, detected from SOURCE or
/// forced with `--type=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Directory,
    Tarball,
    Url,
    Registry,
    OciLayout,
    OciArchive,
    DockerArchive,
    DiskImage,
}
