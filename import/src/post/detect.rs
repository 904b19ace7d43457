//! What an imported tree has: systemd, D-Bus, login/PAM, its distribution
//! and package manager. Everything is looked up inside the tree with
//! [`confine::resolve`], never on the host.

use std::path::{Path, PathBuf};

use super::confine::resolve;

/// The package managers sdme-import can drive in its sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageManager {
    Apt,
    Dnf,
    Yum,
    Pacman,
    Zypper,
}

impl PackageManager {
    pub fn name(self) -> &'static str {
        match self {
            PackageManager::Apt => "apt-get",
            PackageManager::Dnf => "dnf",
            PackageManager::Yum => "yum",
            PackageManager::Pacman => "pacman",
            PackageManager::Zypper => "zypper",
        }
    }

    /// Where its binary lives in the guest (any of these).
    fn binaries(self) -> &'static [&'static str] {
        match self {
            PackageManager::Apt => &["/usr/bin/apt-get"],
            PackageManager::Dnf => &["/usr/bin/dnf", "/usr/bin/dnf5"],
            PackageManager::Yum => &["/usr/bin/yum"],
            PackageManager::Pacman => &["/usr/bin/pacman"],
            PackageManager::Zypper => &["/usr/bin/zypper"],
        }
    }

    /// The packages that give a bootable nspawn guest: systemd, a D-Bus
    /// system bus, and PAM's login service for `machinectl shell`.
    pub fn packages(self) -> &'static [&'static str] {
        match self {
            PackageManager::Apt => &["systemd", "dbus", "libpam-systemd", "login"],
            PackageManager::Dnf | PackageManager::Yum => &["systemd", "dbus", "util-linux", "pam"],
            PackageManager::Pacman => &["systemd", "dbus", "util-linux", "pam"],
            PackageManager::Zypper => &["systemd", "dbus-1", "util-linux", "pam"],
        }
    }

    /// The shell script run in the sandbox (arguments are fixed words, no
    /// quoting needed).
    pub fn install_script(self) -> String {
        let pkgs = self.packages().join(" ");
        match self {
            PackageManager::Apt => format!(
                "apt-get update -q && apt-get install -y -q --no-install-recommends {pkgs} && apt-get clean"
            ),
            PackageManager::Dnf => format!(
                "dnf -y --setopt=install_weak_deps=False install {pkgs} && dnf clean all"
            ),
            PackageManager::Yum => format!("yum -y install {pkgs} && yum clean all"),
            PackageManager::Pacman => format!(
                "pacman -Sy --noconfirm --needed {pkgs} && pacman -Scc --noconfirm"
            ),
            PackageManager::Zypper => format!(
                "zypper --non-interactive install --no-recommends {pkgs} && zypper clean --all"
            ),
        }
    }
}

/// ID and ID_LIKE of the tree's os-release.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    pub id: String,
    pub id_like: Vec<String>,
    pub pretty_name: String,
}

/// What the tree has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detected {
    pub os: OsRelease,
    /// Guest path of the systemd binary, if any.
    pub systemd: Option<PathBuf>,
    /// Guest path of the D-Bus daemon or broker, if any.
    pub dbus: Option<PathBuf>,
    /// /etc/pam.d/login and a login binary present.
    pub login: bool,
    pub nixos: bool,
    pub package_manager: Option<PackageManager>,
}

pub fn detect(root: &Path) -> Detected {
    let os = os_release(root);
    let nixos = os.id == "nixos" || resolve(root, Path::new("/nix/store")).is_some();
    let systemd = find_systemd(root);
    let dbus = first_file(
        root,
        &[
            "/usr/bin/dbus-broker-launch",
            "/usr/bin/dbus-broker",
            "/usr/bin/dbus-daemon",
            "/bin/dbus-daemon",
        ],
    )
    .or_else(|| {
        nix_store_file(
            root,
            &["-dbus-broker-", "-dbus-"],
            &["bin/dbus-broker-launch", "bin/dbus-daemon"],
        )
    });
    let login = first_file(root, &["/etc/pam.d/login"]).is_some()
        && first_file(root, &["/usr/bin/login", "/bin/login"])
            .or_else(|| nix_store_file(root, &["-shadow-", "-util-linux-"], &["bin/login"]))
            .is_some();
    let package_manager = package_manager(root, &os);
    Detected {
        os,
        systemd,
        dbus,
        login,
        nixos,
        package_manager,
    }
}

/// systemd as nspawn finds it (/usr/lib/systemd/systemd, /lib/systemd/systemd,
/// /sbin/init pointing to systemd), or in a NixOS store
/// (/nix/store/*-systemd-*/lib/systemd/systemd; /run/current-system exists
/// only once NixOS has booted, so it is not looked at).
fn find_systemd(root: &Path) -> Option<PathBuf> {
    if let Some(p) = first_file(root, &["/usr/lib/systemd/systemd", "/lib/systemd/systemd"]) {
        return Some(p);
    }
    for init in ["/sbin/init", "/usr/sbin/init"] {
        if let Some((host, guest)) = resolve(root, Path::new(init)) {
            if host.is_file() && guest.to_string_lossy().contains("systemd") {
                return Some(guest);
            }
        }
    }
    nix_store_file(root, &["-systemd-"], &["lib/systemd/systemd"])
}

/// The guest path of the first of `paths` that is a regular file.
fn first_file(root: &Path, paths: &[&str]) -> Option<PathBuf> {
    paths.iter().find_map(|p| {
        let (host, guest) = resolve(root, Path::new(p))?;
        host.is_file().then_some(guest)
    })
}

/// A file `rel` inside a NixOS store path whose name contains one of
/// `markers` (store names are HASH-NAME-VERSION).
fn nix_store_file(root: &Path, markers: &[&str], rels: &[&str]) -> Option<PathBuf> {
    let (store, _) = resolve(root, Path::new("/nix/store"))?;
    let mut names: Vec<String> = std::fs::read_dir(store)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| markers.iter().any(|m| n.contains(m)))
        .collect();
    names.sort();
    names.iter().find_map(|n| {
        rels.iter().find_map(|r| {
            let guest = format!("/nix/store/{n}/{r}");
            let (host, g) = resolve(root, Path::new(&guest))?;
            host.is_file().then_some(g)
        })
    })
}

/// /etc/os-release, else /usr/lib/os-release, of the tree.
pub fn os_release(root: &Path) -> OsRelease {
    let text = ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|p| {
            let (host, _) = resolve(root, Path::new(p))?;
            let meta = std::fs::metadata(&host).ok()?;
            // Bounded: a real one is under 1 KiB.
            (meta.is_file() && meta.len() < 64 * 1024)
                .then(|| std::fs::read_to_string(&host).ok())
                .flatten()
        })
        .unwrap_or_default();
    parse_os_release(&text)
}

pub fn parse_os_release(text: &str) -> OsRelease {
    let mut os = OsRelease::default();
    for line in text.lines() {
        let Some((k, v)) = line.trim().split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches(|c| c == '"' || c == '\'');
        match k {
            "ID" => os.id = v.to_ascii_lowercase(),
            "ID_LIKE" => {
                os.id_like = v
                    .split_whitespace()
                    .map(|s| s.to_ascii_lowercase())
                    .collect()
            }
            "PRETTY_NAME" => os.pretty_name = v.to_string(),
            _ => {}
        }
    }
    os
}

/// The distribution's package manager, from os-release ID/ID_LIKE, and
/// only if its binary is in the tree; without a known ID, the first
/// package manager binary found.
pub fn package_manager(root: &Path, os: &OsRelease) -> Option<PackageManager> {
    use PackageManager::*;
    let present = |pm: PackageManager| first_file(root, pm.binaries()).is_some();
    let ids = std::iter::once(os.id.as_str()).chain(os.id_like.iter().map(String::as_str));
    for id in ids {
        let want: &[PackageManager] = match id {
            "debian" | "ubuntu" => &[Apt],
            "fedora" | "rhel" | "centos" | "rocky" | "almalinux" | "amzn" | "ol" => &[Dnf, Yum],
            "arch" | "archlinux" => &[Pacman],
            "suse" | "sles" | "opensuse" => &[Zypper],
            id if id.starts_with("opensuse") => &[Zypper],
            _ => continue,
        };
        return want.iter().copied().find(|&pm| present(pm));
    }
    [Apt, Dnf, Yum, Zypper, Pacman]
        .into_iter()
        .find(|&pm| present(pm))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn touch(root: &Path, p: &str) {
        let p = root.join(p.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "").unwrap();
    }

    #[test]
    fn debian_minbase_has_no_systemd() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        touch(r, "usr/bin/apt-get");
        touch(r, "usr/bin/login");
        touch(r, "etc/pam.d/login");
        std::fs::write(
            r.join("etc/os-release"),
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n",
        )
        .unwrap();
        let d = detect(r);
        assert_eq!(d.os.id, "debian");
        assert_eq!(d.systemd, None);
        assert_eq!(d.dbus, None);
        assert!(d.login);
        assert!(!d.nixos);
        assert_eq!(d.package_manager, Some(PackageManager::Apt));
    }

    #[test]
    fn merged_usr_debian_with_systemd_and_dbus() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        touch(r, "usr/lib/systemd/systemd");
        touch(r, "usr/bin/dbus-daemon");
        symlink("usr/lib", r.join("lib")).unwrap();
        symlink("usr/bin", r.join("bin")).unwrap();
        std::fs::create_dir(r.join("sbin")).unwrap();
        symlink("/lib/systemd/systemd", r.join("sbin/init")).unwrap();
        let d = detect(r);
        assert_eq!(
            d.systemd.as_deref(),
            Some(Path::new("/usr/lib/systemd/systemd"))
        );
        assert_eq!(d.dbus.as_deref(), Some(Path::new("/usr/bin/dbus-daemon")));
        assert!(!d.login);
        assert_eq!(d.package_manager, None);
    }

    #[test]
    fn systemd_only_through_sbin_init() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        touch(r, "opt/systemd/bin/systemd");
        std::fs::create_dir(r.join("sbin")).unwrap();
        symlink("/opt/systemd/bin/systemd", r.join("sbin/init")).unwrap();
        assert_eq!(
            detect(r).systemd.as_deref(),
            Some(Path::new("/opt/systemd/bin/systemd"))
        );
        // A busybox init is not systemd.
        std::fs::remove_file(r.join("sbin/init")).unwrap();
        touch(r, "bin/busybox");
        symlink("/bin/busybox", r.join("sbin/init")).unwrap();
        assert_eq!(detect(r).systemd, None);
    }

    #[test]
    fn nixos_store_layout() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        touch(r, "nix/store/abc123-systemd-255.4/lib/systemd/systemd");
        touch(r, "nix/store/def456-dbus-1.14.10/bin/dbus-daemon");
        touch(r, "nix/store/0aa-systemd-255.4-man/share/man/man1/x.1");
        std::fs::create_dir(r.join("sbin")).unwrap();
        symlink("/nix/store/zzz-nixos-system/init", r.join("sbin/init")).unwrap();
        std::fs::write(r.join("nix/store/.links"), "").unwrap();
        touch(r, "etc/os-release");
        std::fs::write(r.join("etc/os-release"), "ID=nixos\n").unwrap();
        let d = detect(r);
        assert!(d.nixos);
        assert_eq!(
            d.systemd.as_deref(),
            Some(Path::new(
                "/nix/store/abc123-systemd-255.4/lib/systemd/systemd"
            ))
        );
        assert_eq!(
            d.dbus.as_deref(),
            Some(Path::new("/nix/store/def456-dbus-1.14.10/bin/dbus-daemon"))
        );
        assert_eq!(d.package_manager, None);
    }

    #[test]
    fn package_manager_from_id_like_and_binaries() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        touch(r, "usr/bin/dnf");
        touch(r, "usr/bin/apt-get");
        let rocky = parse_os_release("ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n");
        assert_eq!(package_manager(r, &rocky), Some(PackageManager::Dnf));
        let mint = parse_os_release("ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n");
        assert_eq!(package_manager(r, &mint), Some(PackageManager::Apt));
        let tw = parse_os_release("ID=\"opensuse-tumbleweed\"\nID_LIKE=\"opensuse suse\"\n");
        // Zypper's binary is absent: no package manager, not a wrong one.
        assert_eq!(package_manager(r, &tw), None);
        touch(r, "usr/bin/zypper");
        assert_eq!(package_manager(r, &tw), Some(PackageManager::Zypper));
        let arch = parse_os_release("ID=arch\n");
        assert_eq!(package_manager(r, &arch), None);
        touch(r, "usr/bin/pacman");
        assert_eq!(package_manager(r, &arch), Some(PackageManager::Pacman));
        // Unknown ID: by binary, in a fixed order.
        assert_eq!(
            package_manager(r, &OsRelease::default()),
            Some(PackageManager::Apt)
        );
        let yum_only = tempfile::tempdir().unwrap();
        touch(yum_only.path(), "usr/bin/yum");
        let centos7 = parse_os_release("ID=\"centos\"\nID_LIKE=\"rhel fedora\"\n");
        assert_eq!(
            package_manager(yum_only.path(), &centos7),
            Some(PackageManager::Yum)
        );
    }

    #[test]
    fn install_scripts() {
        assert_eq!(
            PackageManager::Apt.install_script(),
            "apt-get update -q && apt-get install -y -q --no-install-recommends systemd dbus libpam-systemd login && apt-get clean"
        );
        assert!(PackageManager::Zypper.install_script().contains("dbus-1"));
    }
}
