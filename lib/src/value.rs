//! Value checks shared by every key: booleans, paths, unit names.

/// systemd's parse_boolean().
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "t" | "on" => Ok(true),
        "0" | "no" | "n" | "false" | "f" | "off" => Ok(false),
        _ => Err(format!(
            "'{s}' is not a boolean (yes/no, true/false, on/off, 1/0)"
        )),
    }
}

/// An absolute, normalized path with no `.` or `..` components, no empty
/// components and no control characters.
pub fn check_abs_path(s: &str, what: &str) -> Result<(), String> {
    if !s.starts_with('/') {
        return Err(format!("{what} '{s}' is not an absolute path"));
    }
    if s.chars().any(char::is_control) {
        return Err(format!(
            "{what} '{}' contains control characters",
            s.escape_default()
        ));
    }
    if s.len() > 4095 {
        return Err(format!("{what} is longer than PATH_MAX"));
    }
    if s != "/" {
        for comp in s[1..].split('/') {
            match comp {
                "" => {
                    return Err(format!(
                        "{what} '{s}' is not normalized (empty component or trailing '/')"
                    ))
                }
                "." => return Err(format!("{what} '{s}' contains a '.' component")),
                ".." => return Err(format!("{what} '{s}' contains '..'")),
                _ => {}
            }
        }
    }
    Ok(())
}

/// A path that goes into overlayfs `Options=`: `,` and `:` separate options
/// and layers there, and util-linux sends every value through fsconfig,
/// which caps a value at 256 bytes.
pub fn check_overlay_path(s: &str, what: &str) -> Result<(), String> {
    if let Some(c) = s
        .chars()
        .find(|c| matches!(c, ',' | ':' | '\\') || c.is_whitespace())
    {
        return Err(format!(
            "{what} '{s}' contains '{}', which cannot appear in overlayfs options",
            c.escape_default()
        ));
    }
    if s.len() >= 256 {
        return Err(format!(
            "{what} '{s}' is {} bytes long; overlayfs option values must be under 256 bytes",
            s.len()
        ));
    }
    Ok(())
}

/// A unit name that may be written in a dependency or as a symlink name.
pub fn check_unit_name(s: &str, what: &str) -> Result<(), String> {
    const SUFFIXES: [&str; 11] = [
        ".service",
        ".socket",
        ".target",
        ".device",
        ".mount",
        ".automount",
        ".swap",
        ".timer",
        ".path",
        ".slice",
        ".scope",
    ];
    let ok_chars = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '-' | '\\' | '@'));
    if s.is_empty() || s.len() > crate::escape::UNIT_NAME_MAX || !ok_chars || s.starts_with('.') {
        return Err(format!("{what} '{s}' is not a valid unit name"));
    }
    if !SUFFIXES
        .iter()
        .any(|suf| s.ends_with(suf) && s.len() > suf.len())
    {
        return Err(format!(
            "{what} '{s}' has no unit type suffix (such as .service or .target)"
        ));
    }
    if s.matches('@').count() > 1 {
        return Err(format!(
            "{what} '{s}' is not a valid unit name (more than one '@')"
        ));
    }
    Ok(())
}

/// A network interface name (bridge), as the kernel limits it.
pub fn check_ifname(s: &str, what: &str, max: usize) -> Result<(), String> {
    if s.is_empty()
        || s.len() > max
        || s == "."
        || s == ".."
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "{what} '{s}' is not a valid interface name (1-{max} ASCII letters, digits, '-', '_', '.')"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans() {
        assert_eq!(parse_bool("Yes"), Ok(true));
        assert_eq!(parse_bool("off"), Ok(false));
        assert!(parse_bool("maybe").is_err());
    }

    #[test]
    fn paths() {
        assert!(check_abs_path("/srv/www", "x").is_ok());
        assert!(check_abs_path("/", "x").is_ok());
        for bad in [
            "srv",
            "/srv/../etc",
            "/srv/./a",
            "/srv//a",
            "/srv/",
            "/a\nb",
        ] {
            assert!(check_abs_path(bad, "x").is_err(), "{bad}");
        }
        assert!(check_overlay_path("/srv/a,b", "x").is_err());
        assert!(check_overlay_path("/srv/a:b", "x").is_err());
        assert!(check_overlay_path(&format!("/{}", "a".repeat(255)), "x").is_err());
        assert!(check_overlay_path("/srv/os", "x").is_ok());
    }

    #[test]
    fn unit_names() {
        assert!(check_unit_name("machines.target", "x").is_ok());
        assert!(check_unit_name("getty@tty1.service", "x").is_ok());
        assert!(check_unit_name("foo", "x").is_err());
        assert!(check_unit_name("a b.service", "x").is_err());
        assert!(check_unit_name("a@b@c.service", "x").is_err());
    }
}
