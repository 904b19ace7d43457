//! Escaping and splitting as systemd does it.
//!
//! Everything the generator writes into a unit goes through here: `%` is a
//! specifier everywhere, `$` expands in command lines, white space and
//! quotes split `ExecStart=` words, and mount unit names come from path
//! escaping (systemd-escape --path).

use std::borrow::Cow;

/// Longest unit name systemd accepts (UNIT_NAME_MAX).
pub const UNIT_NAME_MAX: usize = 255;

/// A value for any unit setting: specifiers disarmed.
pub fn unit_value(s: &str) -> Cow<'_, str> {
    if s.contains('%') {
        s.replace('%', "%%").into()
    } else {
        s.into()
    }
}

/// One word of a command line (`ExecStart=`): quoted when needed, `%` and
/// `$` doubled so systemd passes it through literally.
pub fn exec_word(s: &str) -> Cow<'_, str> {
    exec_word_with(s, Dollar::Literal)
}

/// As [`exec_word`], but `${NAME}` references are left for systemd to
/// expand (used for `Environment=` values; see sdme.container(5)).
pub fn exec_word_expanding(s: &str) -> Cow<'_, str> {
    exec_word_with(s, Dollar::Braced)
}

/// One word of an `Environment=` line (`NAME=VALUE`), which systemd
/// splits and unquotes as a command line but never expands `$` in: only
/// quoting, C escapes and `%` are needed.
pub fn env_word(s: &str) -> Cow<'_, str> {
    exec_word_with(s, Dollar::Plain)
}

/// What a `$` needs in the word.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dollar {
    /// Doubled always (a literal dollar in a command line).
    Literal,
    /// Kept before `${NAME}`, doubled elsewhere.
    Braced,
    /// Kept (not a command line).
    Plain,
}

fn exec_word_with(s: &str, dollar: Dollar) -> Cow<'_, str> {
    let special =
        |b: u8| matches!(b, b'%' | b'"' | b'\'' | b'\\') || b == b'$' && dollar != Dollar::Plain;
    // Most words need nothing: keep them as they are.
    if !s.is_empty() && s != ";" && s.bytes().all(|b| b.is_ascii_graphic() && !special(b)) {
        return s.into();
    }
    let needs_quotes = s.is_empty()
        || s == ";"
        || s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '\\'));
    let mut out = String::with_capacity(s.len() + 2);
    if needs_quotes {
        out.push('"');
    }
    for (i, c) in s.char_indices() {
        match c {
            '%' => out.push_str("%%"),
            '$' if dollar == Dollar::Literal
                || dollar == Dollar::Braced && !is_braced_var(&s[i..]) =>
            {
                out.push_str("$$")
            }
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
            c => out.push(c),
        }
    }
    if needs_quotes {
        out.push('"');
    }
    out.into()
}

/// `${NAME}` with a valid variable name at the start of `s`.
fn is_braced_var(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("${") else {
        return false;
    };
    match rest.find('}') {
        Some(end) => is_env_name(&rest[..end]),
        None => false,
    }
}

/// A valid environment variable name (as systemd's env_name_is_valid).
pub fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A complete command line from words.
pub fn exec_line(words: &[String]) -> String {
    words.join(" ")
}

/// systemd's path escaping (`systemd-escape --path`), the basis of mount
/// unit names. The path must be absolute and normalized.
pub fn path_escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    path_escape_into(path, &mut out);
    out
}

fn path_escape_into(path: &str, out: &mut String) {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        out.push('-');
        return;
    }
    for (i, b) in trimmed.bytes().enumerate() {
        match b {
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b if b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'.') => {
                out.push(b as char)
            }
            b => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\x");
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 0xf)] as char);
            }
        }
    }
}

/// The `.mount` unit name for a mount point, refused when systemd could
/// not load it.
pub fn mount_unit_name(path: &str) -> Result<String, String> {
    let mut name = String::with_capacity(path.len() + 16);
    path_escape_into(path, &mut name);
    name.push_str(".mount");
    if name.len() > UNIT_NAME_MAX {
        return Err(format!(
            "the mount unit name for '{path}' would be {} bytes long; systemd allows {UNIT_NAME_MAX}",
            name.len()
        ));
    }
    Ok(name)
}

/// Whether [`mount_unit_name`] accepts `path`.
pub fn check_mount_unit_name(path: &str) -> Result<(), String> {
    mount_unit_name(path).map(|_| ())
}

/// Split a string into words as systemd does for command lines and
/// `Environment=`: white space separates, single and double quotes group
/// (anywhere in a word), C escapes are decoded.
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (_, '\\') => {
                in_word = true;
                let Some(e) = chars.next() else {
                    return Err(format!("trailing backslash in '{s}'"));
                };
                cur.push_str(&c_unescape_one(e, &mut chars, s)?);
            }
            (_, c) => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if let Some(q) = quote {
        return Err(format!("unterminated {q} quote in '{s}'"));
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

fn c_unescape_one(
    e: char,
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    whole: &str,
) -> Result<String, String> {
    let mut take_digits = |n: usize, radix: u32| -> Result<u32, String> {
        let mut v = 0u32;
        for _ in 0..n {
            let d = chars
                .next()
                .and_then(|c| c.to_digit(radix))
                .ok_or_else(|| format!("invalid escape sequence in '{whole}'"))?;
            v = v * radix + d;
        }
        Ok(v)
    };
    let c = match e {
        'a' => '\u{7}',
        'b' => '\u{8}',
        'f' => '\u{c}',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\u{b}',
        's' => ' ',
        '\\' | '"' | '\'' => e,
        'x' => {
            let v = take_digits(2, 16)?;
            return byte_char(v, whole);
        }
        '0'..='7' => {
            let rest = take_digits(2, 8)?;
            let v = (e as u32 - '0' as u32) * 64 + rest;
            return byte_char(v, whole);
        }
        'u' => code_point(take_digits(4, 16)?, whole)?,
        'U' => code_point(take_digits(8, 16)?, whole)?,
        _ => return Err(format!("invalid escape sequence '\\{e}' in '{whole}'")),
    };
    Ok(c.to_string())
}

fn byte_char(v: u32, whole: &str) -> Result<String, String> {
    // Only ASCII bytes may be written as \x or octal escapes: a lone
    // non-ASCII byte would not be UTF-8.
    match char::from_u32(v) {
        Some(c) if v > 0 && v < 0x80 => Ok(c.to_string()),
        _ => Err(format!(
            "escape for byte {v:#04x} in '{whole}' is not allowed"
        )),
    }
}

fn code_point(v: u32, whole: &str) -> Result<char, String> {
    char::from_u32(v)
        .filter(|&c| c != '\0')
        .ok_or_else(|| format!("invalid code point {v:#x} in '{whole}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_escaping_matches_systemd_escape() {
        // Expected values from `systemd-escape --path`.
        assert_eq!(
            path_escape("/var/lib/sdme/containers/web-01/merged"),
            "var-lib-sdme-containers-web\\x2d01-merged"
        );
        assert_eq!(path_escape("/"), "-");
        assert_eq!(path_escape("/a b/.c"), "a\\x20b-.c");
        assert_eq!(path_escape("/.hidden"), "\\x2ehidden");
        assert_eq!(path_escape("/srv/wéb"), "srv-w\\xc3\\xa9b");
        assert_eq!(path_escape("/a\\b:c_d"), "a\\x5cb:c_d");
    }

    #[test]
    fn mount_names_are_bounded() {
        assert!(mount_unit_name(&format!("/{}", "a".repeat(249))).is_ok());
        let e = mount_unit_name(&format!("/{}", "a".repeat(250))).unwrap_err();
        assert!(e.contains("256 bytes long"), "{e}");
    }

    #[test]
    fn exec_words() {
        assert_eq!(exec_word("--bind=/a:/b"), "--bind=/a:/b");
        assert_eq!(exec_word("a b"), "\"a b\"");
        assert_eq!(exec_word("100%"), "100%%");
        assert_eq!(exec_word("$HOME"), "$$HOME");
        assert_eq!(exec_word("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(exec_word("a\\b"), "\"a\\\\b\"");
        assert_eq!(exec_word(""), "\"\"");
        assert_eq!(exec_word(";"), "\";\"");
        assert_eq!(exec_word("it's"), "\"it's\"");
        assert_eq!(exec_word("wéb"), "wéb");
        assert_eq!(exec_word_expanding("T=${TOKEN} $X"), "\"T=${TOKEN} $$X\"");
        assert_eq!(exec_word_expanding("${1BAD}"), "$${1BAD}");
    }

    #[test]
    fn split_words_like_systemd() {
        let w = |s: &str| split_words(s).unwrap();
        assert_eq!(w("a b  c"), ["a", "b", "c"]);
        assert_eq!(
            w("\"VAR1=word1 word2\" VAR2=word3"),
            ["VAR1=word1 word2", "VAR2=word3"]
        );
        assert_eq!(w("A=\"x y\" B='p q'"), ["A=x y", "B=p q"]);
        assert_eq!(w("a\\sb \\x41 \\101 \\u00e9"), ["a b", "A", "A", "é"]);
        assert_eq!(w("\"\""), [""]);
        assert_eq!(w(""), Vec::<String>::new());
        assert!(split_words("\"open").is_err());
        assert!(split_words("a\\").is_err());
        assert!(split_words("\\q").is_err());
        assert!(split_words("\\xff").is_err());
    }

    #[test]
    fn exec_word_round_trips_through_split() {
        for s in [
            "a b",
            "q\"uote",
            "back\\slash",
            "tab\there",
            "",
            "it's",
            "ünï",
        ] {
            let quoted = exec_word(s);
            assert_eq!(split_words(&quoted).unwrap(), [s.to_string()], "{quoted}");
        }
    }
}
