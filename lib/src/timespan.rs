//! systemd time spans (systemd.time(7)): `90`, `90s`, `1min 30s`, `2h`,
//! `500ms`, `infinity`. A bare number means seconds.

use std::time::Duration;

/// A parsed span; `None` is `infinity`.
pub fn parse_timespan(s: &str) -> Result<Option<Duration>, String> {
    let t = s.trim();
    if t == "infinity" {
        return Ok(None);
    }
    if t.is_empty() {
        return Err("empty time span".into());
    }
    let mut total: u128 = 0; // microseconds
    let mut rest = t;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() {
            return Err(format!("invalid time span '{t}'"));
        }
        rest = rest[num_len..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let mult: u128 = match unit {
            "" | "s" | "sec" | "second" | "seconds" => 1_000_000,
            "us" | "usec" | "µs" => 1,
            "ms" | "msec" => 1_000,
            "m" | "min" | "minute" | "minutes" => 60_000_000,
            "h" | "hr" | "hour" | "hours" => 3_600_000_000,
            "d" | "day" | "days" => 86_400_000_000,
            "w" | "week" | "weeks" => 604_800_000_000,
            _ => return Err(format!("invalid time unit '{unit}' in '{t}'")),
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if frac.contains('.') || (int.is_empty() && frac.is_empty()) {
            return Err(format!("invalid number '{num}' in time span '{t}'"));
        }
        let int: u128 = if int.is_empty() {
            0
        } else {
            int.parse()
                .map_err(|_| format!("number '{num}' out of range in '{t}'"))?
        };
        let mut frac_us: u128 = 0;
        let mut scale = mult;
        for d in frac.bytes().take(18) {
            scale /= 10;
            frac_us += u128::from(d - b'0') * scale;
        }
        total = int
            .checked_mul(mult)
            .and_then(|v| v.checked_add(frac_us))
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("time span '{t}' is too large"))?;
    }
    let secs =
        u64::try_from(total / 1_000_000).map_err(|_| format!("time span '{t}' is too large"))?;
    Ok(Some(
        Duration::from_secs(secs) + Duration::from_micros((total % 1_000_000) as u64),
    ))
}

/// Render a duration the way systemd accepts it back, in the largest
/// exact unit (`90s`, `2min`, `1500ms`).
pub fn format_timespan(d: Option<Duration>) -> String {
    let Some(d) = d else {
        return "infinity".into();
    };
    let us = d.as_micros();
    if us == 0 {
        return "0".into();
    }
    for (unit, mult) in [
        ("h", 3_600_000_000u128),
        ("min", 60_000_000),
        ("s", 1_000_000),
        ("ms", 1_000),
    ] {
        if us % mult == 0 {
            return format!("{}{unit}", us / mult);
        }
    }
    format!("{us}us")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &str) -> f64 {
        parse_timespan(s).unwrap().unwrap().as_secs_f64()
    }

    #[test]
    fn parses_systemd_spans() {
        assert_eq!(secs("90"), 90.0);
        assert_eq!(secs("90s"), 90.0);
        assert_eq!(secs("1min 30s"), 90.0);
        assert_eq!(secs("1min30s"), 90.0);
        assert_eq!(secs("2h"), 7200.0);
        assert_eq!(secs("500ms"), 0.5);
        assert_eq!(secs("1.5s"), 1.5);
        assert_eq!(secs("0.5min"), 30.0);
        assert_eq!(parse_timespan("infinity").unwrap(), None);
    }

    #[test]
    fn refuses_garbage() {
        for s in [
            "",
            "abc",
            "5 parsecs",
            "1..2s",
            "-3s",
            "s",
            "99999999999999999999999h",
        ] {
            assert!(parse_timespan(s).is_err(), "{s}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for s in ["90s", "2min", "1500ms", "1h", "infinity", "3us"] {
            let d = parse_timespan(s).unwrap();
            assert_eq!(parse_timespan(&format_timespan(d)).unwrap(), d);
        }
        assert_eq!(format_timespan(parse_timespan("90").unwrap()), "90s");
        assert_eq!(format_timespan(parse_timespan("120").unwrap()), "2min");
    }
}
