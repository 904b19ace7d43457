//! How a build runs (the build unit's way or `sdme fs build`'s), kept
//! apart from the builder so that its parts can take it without going
//! back up to it.

/// The default bound of a host snapshot: sdme-import's `--max-size`.
pub const HOST_MAX_SIZE: u64 = 50 << 30;

/// How a build runs: the build unit's (`sdme-build --if-changed`) or
/// `sdme fs build`'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opts {
    /// Nothing to do when the rootfs exists and was built from the same
    /// base and steps (the build unit).
    pub if_changed: bool,
    /// Replace an existing rootfs of the same name (the build unit, and
    /// `sdme fs build -f`); without it an existing rootfs is refused
    /// before anything runs.
    pub replace: bool,
    /// Run every step (and snapshot the host again) instead of reusing
    /// cached layers; the new layers replace the cached ones.
    pub no_cache: bool,
    /// The largest snapshot of the host's `/` (a build without
    /// `From=`), in bytes of file data.
    pub max_size: u64,
}

impl Opts {
    /// What the build unit does.
    pub const UNIT: Opts = Opts {
        if_changed: true,
        replace: true,
        no_cache: false,
        max_size: HOST_MAX_SIZE,
    };
}
