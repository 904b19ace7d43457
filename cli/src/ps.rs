//! `sdme ps`: the containers on the search path and their state.

use anyhow::Result;
use sdme_core::container::{Container, Rootfs};
use sdme_core::render::unit_service_name;
use sdme_core::search::{search, FileType, Found, UnitName};

use crate::lookup::{config, dirs, write_stdout};
use crate::sys;

fn rootfs_label(r: &Rootfs) -> String {
    match r {
        Rootfs::Host => "(host)".into(),
        Rootfs::Named(n) => n.clone(),
        Rootfs::Dir(d) => d.clone(),
    }
}

fn status_word(active: &str, sub: &str) -> String {
    match active {
        "active" => "running".into(),
        "inactive" => "stopped".into(),
        "activating" => "starting".into(),
        "deactivating" => "stopping".into(),
        "failed" => "failed".into(),
        _ => format!("{active}/{sub}"),
    }
}

/// One row per file on the search path (bare templates are not listed:
/// their instances are).
pub fn ps() -> Result<()> {
    let dirs = dirs();
    let config = config(&dirs);
    let found: Vec<Found> = search(&dirs, FileType::Container)
        .found
        .into_iter()
        .filter(|f| !matches!(f.name, UnitName::Template(_)))
        .collect();
    let units: Vec<String> = found.iter().map(|f| unit_service_name(&f.name)).collect();
    let states = sys::states(&units)?;
    let mut rows = vec![(
        "NAME".to_string(),
        "ROOTFS".to_string(),
        "STATE".to_string(),
    )];
    for (f, (active, sub)) in found.iter().zip(states) {
        let (rootfs, state) = match Container::load_with(f, &config) {
            Ok(c) => (rootfs_label(&c.rootfs), status_word(&active, &sub)),
            Err(_) => ("-".into(), "file error".into()),
        };
        rows.push((f.name.stem(), rootfs, state));
    }
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (n, r, s) in rows {
        out.push_str(&format!("{n:w0$}  {r:w1$}  {s}\n"));
    }
    write_stdout(out.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_words() {
        assert_eq!(status_word("active", "running"), "running");
        assert_eq!(status_word("failed", "failed"), "failed");
        assert_eq!(status_word("reloading", "x"), "reloading/x");
    }
}
