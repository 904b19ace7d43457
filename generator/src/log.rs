//! Logging as systemd's own generators do it: to `/dev/kmsg` when systemd
//! runs us (it sets `SYSTEMD_EXEC_PID` to our PID), to stderr otherwise,
//! filtered by `SYSTEMD_LOG_LEVEL`.

use std::fs::OpenOptions;
use std::io::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Err = 3,
    Info = 6,
    Debug = 7,
}

pub struct Logger {
    max: u8,
    kmsg: bool,
}

/// LOG_DAEMON, as systemd's generators log.
const FACILITY: u8 = 3 << 3;

impl Logger {
    pub fn from_env() -> Logger {
        let max = std::env::var("SYSTEMD_LOG_LEVEL")
            .ok()
            .and_then(|v| parse_level(&v))
            .unwrap_or(Level::Info as u8);
        let kmsg = std::env::var("SYSTEMD_EXEC_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            == Some(std::process::id());
        Logger { max, kmsg }
    }

    /// Whether messages of `level` are shown (to build costly ones only
    /// then).
    pub fn enabled(&self, level: Level) -> bool {
        level as u8 <= self.max
    }

    pub fn log(&self, level: Level, msg: &str) {
        if !self.enabled(level) {
            return;
        }
        if self.kmsg && self.to_kmsg(level, msg) {
            return;
        }
        eprintln!("sdme-generator: {msg}");
    }

    /// Errors: kmsg when run by systemd, and stderr always.
    pub fn error_everywhere(&self, msg: &str) {
        if self.kmsg {
            self.to_kmsg(Level::Err, msg);
        }
        eprintln!("sdme-generator: {msg}");
    }

    fn to_kmsg(&self, level: Level, msg: &str) -> bool {
        let Ok(mut f) = OpenOptions::new().write(true).open("/dev/kmsg") else {
            return false;
        };
        let line = format!(
            "<{}>sdme-generator[{}]: {}\n",
            FACILITY | level as u8,
            std::process::id(),
            msg
        );
        f.write_all(line.as_bytes()).is_ok()
    }
}

/// systemd's log level names and numbers.
fn parse_level(v: &str) -> Option<u8> {
    let n = match v.trim() {
        "emerg" => 0,
        "alert" => 1,
        "crit" => 2,
        "err" => 3,
        "warning" => 4,
        "notice" => 5,
        "info" => 6,
        "debug" => 7,
        n => n.parse::<u8>().ok().filter(|&n| n <= 7)?,
    };
    Some(n)
}

#[cfg(test)]
mod tests {
    #[test]
    fn levels() {
        assert_eq!(super::parse_level("debug"), Some(7));
        assert_eq!(super::parse_level("3"), Some(3));
        assert_eq!(super::parse_level("loud"), None);
        assert_eq!(super::parse_level("9"), None);
    }
}
