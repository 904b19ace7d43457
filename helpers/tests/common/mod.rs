//! The fixture the sdme-prepare integration tests (prepare.rs,
//! nested_env.rs) share: a temporary tree with a lower layer, the state
//! directory of a container `web` and a directory outside both, which a
//! symlink planted in the state must never reach.

// Each test crate that includes this module uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use sdme_helpers::fsutil::SafeDir;
use sdme_helpers::prepare::{self, Options};

/// These tests need root (trusted xattrs, mounts); without it they fail
/// rather than pass silently. CI runs them as root.
pub fn root() -> bool {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the sdme-prepare tests need root (trusted.* xattrs, overlay mounts)"
    );
    true
}

pub struct Fixture {
    pub _tmp: tempfile::TempDir,
    pub lower: PathBuf,
    pub state: PathBuf,
    pub outside: PathBuf,
}

impl Fixture {
    /// An empty lower layer (the caller fills it), no state yet.
    pub fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let lower = tmp.path().join("lower");
        std::fs::create_dir_all(&lower).unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        Fixture {
            lower,
            state: tmp.path().join("containers/web"),
            outside,
            _tmp: tmp,
        }
    }

    pub fn upper(&self) -> PathBuf {
        self.state.join("upper")
    }

    /// sdme-prepare's options for `web` on this fixture, `extra` before
    /// the name. The start record goes next to the state, never to the
    /// host's /run.
    pub fn opts(&self, extra: &[&str]) -> Options {
        let mut a: Vec<std::ffi::OsString> = vec![
            format!("--lower={}", self.lower.display()).into(),
            format!("--state={}", self.state.display()).into(),
        ];
        a.extend(extra.iter().map(|s| s.into()));
        a.push("web".into());
        let mut o = prepare::parse_args(a).unwrap();
        o.records = self.state.with_file_name("inuse");
        o
    }
}

/// The overlay's opaque xattr of the directory `p`.
pub fn opaque(p: &Path) -> Option<Vec<u8>> {
    SafeDir::open(p).unwrap().opaque_value().unwrap()
}
