//! The global configuration: `sdme.conf` and `sdme.conf.d/*.conf` on the
//! search path (`/etc/sdme`, `/run/sdme`, `/usr/local/lib/sdme`,
//! `/usr/lib/sdme`, or `$SDME_UNIT_DIRS`), found as systemd finds
//! `system.conf` and read with the same syntax as the unit files.
//!
//! What it holds (sdme.conf(5)):
//! - `[Hardened] DropCapability=`: the capabilities `Hardened=yes` (and so
//!   `Strict=yes`) drops. The built-in list acts as if written first;
//!   lines add to it and an empty assignment empties it.
//! - `[App] DefaultRootfs=`: the rootfs a container with `App=` and no
//!   `Rootfs=` boots (the original tool's `default_base_fs`); unset, a
//!   clone of the host.

use std::path::PathBuf;

use crate::capability::{capability_name, parse_capability};
use crate::diag::Diag;
use crate::dropins::read_and_parse;
use crate::name::check_rootfs_name;
use crate::search::Listings;
use crate::syntax::{Entry, UnitFile};

/// The file name on the search path.
pub const CONFIG_NAME: &str = "sdme.conf";

/// `Hardened=`'s drop list unless `sdme.conf` says otherwise. Not
/// CAP_SYS_BOOT: in its own PID namespace it only reboots the container,
/// and without it the guest's systemd turns a reboot into an exit (a
/// power-off, the unit ends inactive instead of restarting).
pub const DEFAULT_HARDENED_DROP: [&str; 3] = ["CAP_SYS_PTRACE", "CAP_NET_RAW", "CAP_SYS_RAWIO"];

/// The parsed global configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `[Hardened] DropCapability=`: capability numbers, sorted, unique.
    pub hardened_drop: Vec<u8>,
    /// `[App] DefaultRootfs=`: an imported rootfs's name.
    pub app_default_rootfs: Option<String>,
    /// The files read, in order.
    pub files: Vec<PathBuf>,
}

impl Default for Config {
    fn default() -> Config {
        let mut hardened_drop: Vec<u8> = DEFAULT_HARDENED_DROP
            .iter()
            .filter_map(|c| parse_capability(c).ok())
            .collect();
        hardened_drop.sort_unstable();
        Config {
            hardened_drop,
            app_default_rootfs: None,
            files: Vec::new(),
        }
    }
}

impl Config {
    /// Read `sdme.conf` and its drop-ins from `dirs`. Problems come back
    /// as diagnostics next to the configuration built from what was good.
    pub fn load(dirs: &[PathBuf]) -> (Config, Vec<Diag>) {
        Config::load_from(&Listings::new(dirs))
    }

    /// [`Config::load`] from directories listed already.
    pub fn load_from(listings: &Listings) -> (Config, Vec<Diag>) {
        let (files, errors) = listings.config_files(CONFIG_NAME);
        let mut diags: Vec<Diag> = errors
            .into_iter()
            .map(|e| Diag::file(&PathBuf::from(CONFIG_NAME), e))
            .collect();
        let mut merged = UnitFile::default();
        for f in &files {
            match read_and_parse(f) {
                Ok(u) => merged.merge(u),
                Err(d) => diags.push(d),
            }
        }
        let mut c = Config::from_unit(&merged, &mut diags);
        c.files = files;
        (c, diags)
    }

    /// The configuration a merged file gives; errors go to `diags`.
    pub fn from_unit(file: &UnitFile, diags: &mut Vec<Diag>) -> Config {
        let mut c = Config::default();
        for sec in &file.sections {
            match sec.name.as_str() {
                "Hardened" => sec.entries.iter().for_each(|e| c.hardened_key(e, diags)),
                "App" => sec.entries.iter().for_each(|e| c.app_key(e, diags)),
                n => diags.push(Diag::at(
                    &sec.at,
                    format!("unknown section [{n}]; sdme.conf has [Hardened] and [App] sections"),
                )),
            }
        }
        c.hardened_drop.sort_unstable();
        c.hardened_drop.dedup();
        c
    }

    /// One `[Hardened]` line: `DropCapability=` adds to the list, an empty
    /// one empties it.
    fn hardened_key(&mut self, e: &Entry, diags: &mut Vec<Diag>) {
        if e.key != "DropCapability" {
            let msg = format!("unknown key '{}' in section [Hardened]", e.key);
            return diags.push(Diag::at(&e.at, msg));
        }
        if e.value.is_empty() {
            self.hardened_drop.clear();
        }
        for w in e.value.split_whitespace() {
            let r = if w.eq_ignore_ascii_case("all") {
                Err("'all' cannot be dropped: without any capability the container's systemd cannot boot".into())
            } else {
                parse_capability(w)
            };
            match r {
                Ok(n) => self.hardened_drop.push(n),
                Err(m) => diags.push(Diag::at(&e.at, format!("DropCapability={}: {m}", e.value))),
            }
        }
    }

    /// One `[App]` line: `DefaultRootfs=NAME`; empty: the host's clone.
    fn app_key(&mut self, e: &Entry, diags: &mut Vec<Diag>) {
        if e.key != "DefaultRootfs" {
            let msg = format!("unknown key '{}' in section [App]", e.key);
            return diags.push(Diag::at(&e.at, msg));
        }
        if e.value.is_empty() {
            self.app_default_rootfs = None;
            return;
        }
        match check_rootfs_name(&e.value) {
            Ok(()) => self.app_default_rootfs = Some(e.value.clone()),
            Err(m) => diags.push(Diag::at(&e.at, format!("DefaultRootfs={}: {m}", e.value))),
        }
    }

    /// The drop list by name, for messages and tests.
    pub fn hardened_drop_names(&self) -> Vec<String> {
        self.hardened_drop
            .iter()
            .map(|n| capability_name(*n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(p: &std::path::Path, s: &str) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, s).unwrap();
    }

    #[test]
    fn defaults_without_files() {
        let t = tempfile::tempdir().unwrap();
        let (c, d) = Config::load(&[t.path().to_path_buf()]);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(
            c.hardened_drop_names(),
            ["CAP_NET_RAW", "CAP_SYS_RAWIO", "CAP_SYS_PTRACE"]
        );
    }

    #[test]
    fn files_dropins_shadowing_and_masking() {
        let t = tempfile::tempdir().unwrap();
        let etc = t.path().join("etc");
        let usr = t.path().join("usr");
        write(&usr.join("sdme.conf"), "[Hardened]\nDropCapability=mknod\n");
        write(
            &etc.join("sdme.conf"),
            "[Hardened]\nDropCapability=\nDropCapability=sys_admin\n",
        );
        write(
            &usr.join("sdme.conf.d/10-a.conf"),
            "[Hardened]\nDropCapability=CAP_KILL\n",
        );
        write(
            &etc.join("sdme.conf.d/10-a.conf"),
            "[Hardened]\nDropCapability=CAP_CHOWN\n",
        );
        write(
            &usr.join("sdme.conf.d/20-b.conf"),
            "[Hardened]\nDropCapability=cap_lease\n",
        );
        write(&etc.join("sdme.conf.d/30-masked.conf"), "");
        let (c, d) = Config::load(&[etc.clone(), usr.clone()]);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(
            c.files,
            [
                etc.join("sdme.conf"),
                etc.join("sdme.conf.d/10-a.conf"),
                usr.join("sdme.conf.d/20-b.conf"),
            ]
        );
        assert_eq!(
            c.hardened_drop_names(),
            ["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_LEASE"]
        );
    }

    #[test]
    fn errors_have_file_and_line() {
        let t = tempfile::tempdir().unwrap();
        write(
            &t.path().join("sdme.conf"),
            "[Hardened]\nDropCapability=cap_nope all\nFoo=1\n[Strict]\n",
        );
        let (_, d) = Config::load(&[t.path().to_path_buf()]);
        let d: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        let p = t.path().join("sdme.conf").display().to_string();
        assert_eq!(d.len(), 4, "{d:?}");
        assert!(
            d[0].starts_with(&format!(
                "{p}:2: DropCapability=cap_nope all: unknown capability 'cap_nope'"
            )),
            "{d:?}"
        );
        assert!(
            d[1].starts_with(&format!(
                "{p}:2: DropCapability=cap_nope all: 'all' cannot be dropped"
            )),
            "{d:?}"
        );
        assert_eq!(
            d[2],
            format!("{p}:3: unknown key 'Foo' in section [Hardened]")
        );
        assert_eq!(
            d[3],
            format!("{p}:4: unknown section [Strict]; sdme.conf has [Hardened] and [App] sections")
        );
    }

    #[test]
    fn app_default_rootfs() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("sdme.conf");
        write(&p, "[App]\nDefaultRootfs=debian\n");
        let (c, d) = Config::load(&[t.path().to_path_buf()]);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(c.app_default_rootfs.as_deref(), Some("debian"));
        write(&p, "[App]\nDefaultRootfs=debian\nDefaultRootfs=\n");
        assert_eq!(
            Config::load(&[t.path().to_path_buf()]).0.app_default_rootfs,
            None
        );
        write(&p, "[App]\nDefaultRootfs=../x\nBase=y\n");
        let (c, d) = Config::load(&[t.path().to_path_buf()]);
        let d: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        let p = p.display();
        assert!(
            d[0].starts_with(&format!("{p}:2: DefaultRootfs=../x: rootfs name")),
            "{d:?}"
        );
        assert_eq!(d[1], format!("{p}:3: unknown key 'Base' in section [App]"));
        assert_eq!(c.app_default_rootfs, None);
    }
}
