//! Machine and rootfs names.
//!
//! A machine name becomes a hostname, a machined registration, a directory
//! under `/var/lib/sdme/containers` and part of unit names, so it must be
//! valid for all four. We accept what systemd's `hostname_is_valid()`
//! accepts, restricted to ASCII letters, digits, `-`, `_` and `.`.

/// Longest machine name (HOST_NAME_MAX).
pub const MAX_MACHINE_NAME: usize = 64;

/// Check a machine name; the error says what is wrong with it.
pub fn check_machine_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("machine name is empty".into());
    }
    if name.len() > MAX_MACHINE_NAME {
        return Err(format!(
            "machine name '{name}' is longer than {MAX_MACHINE_NAME} bytes"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "machine name '{}' contains '{}'; only ASCII letters, digits, '-', '_' and '.' are allowed",
            name.escape_default(),
            c.escape_default()
        ));
    }
    if name.starts_with(['.', '-']) || name.ends_with(['.', '-']) {
        return Err(format!(
            "machine name '{name}' must not start or end with '.' or '-'"
        ));
    }
    if name.contains("..") {
        return Err(format!("machine name '{name}' contains '..'"));
    }
    Ok(())
}

/// A pod name: `NAME`, or `NAME@INSTANCE` for an instance of a pod
/// template (both parts machine-name-like, so the pinned namespace
/// `/run/sdme/pods/NAME@INSTANCE/netns` stays one plain directory).
pub fn check_pod_name(name: &str) -> Result<(), String> {
    let fix = |m: String| m.replacen("machine name", "pod name", 1);
    match name.split_once('@') {
        None => check_machine_name(name).map_err(fix),
        Some((t, i)) => {
            check_machine_name(t).map_err(fix)?;
            check_machine_name(i).map_err(|m| m.replacen("machine name", "pod instance name", 1))
        }
    }
}

/// Rootfs names follow the same rules: they are directory names under
/// `/var/lib/sdme/rootfs` and appear in unit names of image imports.
pub fn check_rootfs_name(name: &str) -> Result<(), String> {
    check_machine_name(name).map_err(|e| e.replacen("machine name", "rootfs name", 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_hostname_like_names() {
        for n in ["web", "web-01", "a", "db_2", "web.v2", &"x".repeat(64)] {
            assert!(check_machine_name(n).is_ok(), "{n}");
        }
    }

    #[test]
    fn refuses_bad_names() {
        for n in [
            "",
            "-web",
            "web-",
            ".web",
            "web.",
            "a..b",
            "a/b",
            "a b",
            "wéb",
            "a,b",
            "a:b",
            &"x".repeat(65),
        ] {
            assert!(check_machine_name(n).is_err(), "{n}");
        }
    }

    #[test]
    fn pod_names_and_instances() {
        for n in ["web", "grp@a", "grp@zzz", "g.1@x_2"] {
            assert!(check_pod_name(n).is_ok(), "{n}");
        }
        for (n, why) in [
            ("grp@", "pod instance name is empty"),
            ("@a", "pod name is empty"),
            ("grp@a@b", "pod instance name 'a@b' contains '@'"),
            ("grp@%i", "pod instance name '%i' contains '%'"),
            ("grp@../x", "pod instance name '../x' contains '/'"),
        ] {
            let e = check_pod_name(n).unwrap_err();
            assert!(e.starts_with(why), "{n}: {e}");
        }
    }
}
