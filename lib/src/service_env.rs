//! `ServiceEnvironment=`: variables for every service of the guest, as a
//! `[Manager] DefaultEnvironment=` drop-in that sdme-prepare writes into
//! the container's upper layer at every start.
//!
//! `Environment=` is nspawn's `--setenv`: it reaches the guest's PID 1 only,
//! and systemd does not pass its own environment on to the services it
//! starts. The guest manager's `DefaultEnvironment=` does reach every
//! service (and `systemd-run -M`, `machinectl shell`).
//!
//! The drop-in is read by the guest's systemd with its configuration
//! parser: one assignment per line, a double-quoted word unescaped as C
//! (`extract_first_word` with `EXTRACT_CUNESCAPE|EXTRACT_UNQUOTE`), no `$`
//! expansion, but the system specifiers (`%H`, `%m`, ...; measured on
//! systemd 252 and 257: `50%n` is dropped, `%%` is `%`), so `%` is
//! doubled. Every value but one with a NUL byte can be
//! written that way; the length is bounded so that the assignment also
//! fits the prepare helper's command line (one argument of at most 128 KiB).

use crate::escape::is_env_name;

/// Where the drop-in lives in the container, relative to its root.
pub const DROPIN_DIR: &str = "etc/systemd/system.conf.d";
/// The drop-in's name: sdme's own file, rewritten or removed at every start.
pub const DROPIN_NAME: &str = "50-sdme-environment.conf";
/// The longest `NAME=VALUE` accepted, in bytes.
pub const MAX_ASSIGNMENT: usize = 32 * 1024;

/// Check one `NAME=VALUE` word of `ServiceEnvironment=`.
pub fn check_service_env(w: &str) -> Result<(), String> {
    let shown = || {
        let mut s: String = w
            .chars()
            .take(64)
            .collect::<String>()
            .escape_default()
            .to_string();
        if w.chars().count() > 64 {
            s.push_str("...");
        }
        s
    };
    match w.split_once('=') {
        Some((k, _)) if is_env_name(k) => {}
        _ => {
            return Err(format!(
                "'{}' is not a NAME=VALUE assignment with a valid variable name",
                shown()
            ))
        }
    }
    if w.contains('\0') {
        return Err(format!("'{}' contains a NUL byte", shown()));
    }
    if w.len() > MAX_ASSIGNMENT {
        return Err(format!(
            "'{}' is {} bytes long; at most {MAX_ASSIGNMENT} are allowed",
            shown(),
            w.len()
        ));
    }
    Ok(())
}

/// `w` as one double-quoted word of a systemd configuration file, `%`
/// doubled (specifiers are expanded there).
pub fn conf_word(w: &str) -> String {
    let mut out = String::with_capacity(w.len() + 2);
    out.push('"');
    for c in w.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            // Other ASCII control characters (not NUL: refused).
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The drop-in for these (checked) assignments.
pub fn dropin(assignments: &[String]) -> String {
    let mut s = String::from(
        "# Written by sdme-prepare at every start from the container's\n\
         # ServiceEnvironment= setting; edit that, not this file.\n\
         [Manager]\n",
    );
    for a in assignments {
        s.push_str("DefaultEnvironment=");
        s.push_str(&conf_word(a));
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::escape::split_words;

    #[test]
    fn checks() {
        assert!(check_service_env("A=").is_ok());
        assert!(check_service_env("_x1=a b\n\"c\"").is_ok());
        for bad in ["=x", "1A=x", "A-B=x", "novalue", "A=\0"] {
            assert!(check_service_env(bad).is_err(), "{bad:?}");
        }
        let long = format!("A={}", "x".repeat(MAX_ASSIGNMENT));
        let e = check_service_env(&long).unwrap_err();
        assert!(e.contains("at most 32768"), "{e}");
        assert!(e.len() < 200, "{e}");
    }

    #[test]
    fn words_read_back_as_systemd_splits_them() {
        for w in [
            "A=plain",
            "B=two words",
            "C=q\"uo'te",
            "D=back\\slash\\",
            "E=line\nbreak\ttab\rcr",
            "F=bell\u{7}del\u{7f}",
            "G=$HOME %i ${X} ; # ünï",
            "H=",
        ] {
            let q = conf_word(w);
            assert!(!q.contains('\n'), "{q}");
            assert!(q.chars().all(|c| !c.is_ascii_control()), "{q:?}");
            // What systemd does after unquoting: specifiers, `%%` is `%`.
            let read: Vec<String> = split_words(&q)
                .unwrap()
                .iter()
                .map(|r| r.replace("%%", "%"))
                .collect();
            assert_eq!(read, [w.to_string()], "{q}");
        }
    }

    #[test]
    fn dropin_text() {
        let d = dropin(&["A=1".into(), "B=x y".into()]);
        assert!(
            d.ends_with("[Manager]\nDefaultEnvironment=\"A=1\"\nDefaultEnvironment=\"B=x y\"\n"),
            "{d}"
        );
        assert!(d.lines().filter(|l| !l.starts_with('#')).count() == 3);
    }
}
