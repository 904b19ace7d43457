//! Names for `sdme create` and `sdme new` without NAME: adjective-noun
//! from two small built-in lists, never one already in use.

use std::path::Path;

use anyhow::{bail, Result};
use sdme_core::paths::{container_dir, rootfs_dir};

use crate::create;

const ADJECTIVES: [&str; 32] = [
    "amber", "brave", "calm", "clever", "crisp", "eager", "fancy", "gentle", "golden", "happy",
    "jolly", "keen", "lively", "lucky", "mellow", "merry", "misty", "noble", "proud", "quick",
    "quiet", "rapid", "shiny", "silent", "sleepy", "snowy", "steady", "sunny", "swift", "tidy",
    "witty", "young",
];

const NOUNS: [&str; 32] = [
    "badger", "beacon", "brook", "canyon", "cedar", "comet", "crane", "delta", "falcon", "fern",
    "fjord", "glacier", "harbor", "heron", "island", "lagoon", "lark", "maple", "meadow", "otter",
    "panda", "pebble", "pine", "raven", "reef", "river", "robin", "summit", "tiger", "tulip",
    "valley", "willow",
];

/// Tries before giving up: 1024 names exist, so this only fails when
/// nearly all are taken.
const TRIES: usize = 200;

/// A random name for which `taken` is false.
pub fn generate(taken: impl Fn(&str) -> bool) -> Result<String> {
    let mut seed = random_seed();
    for _ in 0..TRIES {
        // xorshift64: the seed comes from the kernel, the sequence only
        // has to differ between tries.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let a = ADJECTIVES[(seed % ADJECTIVES.len() as u64) as usize];
        let n = NOUNS[((seed >> 32) % NOUNS.len() as u64) as usize];
        let name = format!("{a}-{n}");
        if !taken(&name) {
            return Ok(name);
        }
    }
    bail!("no free name found after {TRIES} tries; give one (sdme create NAME)")
}

fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: the buffer is valid for its length; getrandom writes at most that.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    let s = u64::from_ne_bytes(b);
    if n == 8 && s != 0 {
        return s;
    }
    // No entropy (cannot happen on Linux ≥ 3.17): time and pid still
    // differ between runs.
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    (t ^ u64::from(std::process::id())) | 1
}

/// Whether `name` is in use: a file on the search path (or a mask), a
/// registered machine, an imported rootfs, or a leftover state dir.
pub fn in_use(dirs: &[std::path::PathBuf], name: &str) -> bool {
    let exists = |p: &Path| p.symlink_metadata().is_ok();
    create::existing(dirs, name).is_some()
        || exists(&Path::new("/run/systemd/machines").join(name))
        || exists(&rootfs_dir(name))
        || exists(&container_dir(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdme_core::name::check_machine_name;
    use std::collections::HashSet;

    #[test]
    fn names_are_valid_machine_names() {
        for a in ADJECTIVES {
            for n in NOUNS {
                check_machine_name(&format!("{a}-{n}")).unwrap();
            }
        }
        assert_eq!(ADJECTIVES.iter().collect::<HashSet<_>>().len(), 32);
        assert_eq!(NOUNS.iter().collect::<HashSet<_>>().len(), 32);
    }

    #[test]
    fn taken_names_are_skipped() {
        let name = generate(|_| false).unwrap();
        let (a, n) = name.split_once('-').unwrap();
        assert!(ADJECTIVES.contains(&a) && NOUNS.contains(&n), "{name}");
        // Every name but one taken: that one is found (or a clear error).
        let free = "quiet-otter";
        match generate(|n| n != free) {
            Ok(n) => assert_eq!(n, free),
            Err(e) => assert!(e.to_string().contains("no free name"), "{e}"),
        }
        let e = generate(|_| true).unwrap_err();
        assert!(e.to_string().contains("give one"), "{e}");
    }

    #[test]
    fn in_use_sees_the_search_path() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("lucky-otter.container"), "").unwrap();
        let dirs = [d.path().to_path_buf()];
        assert!(in_use(&dirs, "lucky-otter"));
        assert!(!in_use(&dirs, "zz-not-used-zz"));
    }
}
