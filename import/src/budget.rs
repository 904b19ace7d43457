//! `--max-size`: one budget of bytes for an import, shared by every thread
//! that writes or downloads.

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Result};

#[derive(Debug)]
pub struct Budget {
    max: u64,
    used: AtomicU64,
}

impl Budget {
    pub fn new(max: u64) -> Budget {
        Budget {
            max,
            used: AtomicU64::new(0),
        }
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Account for `n` more bytes; fails once the total passes the cap.
    pub fn take(&self, n: u64) -> Result<()> {
        let total = self.used.fetch_add(n, Ordering::Relaxed).saturating_add(n);
        if total > self.max {
            bail!(
                "the import is larger than --max-size={} ({} bytes)",
                human(self.max),
                self.max
            );
        }
        Ok(())
    }
}

/// 1.5G, 300M, 12K, 17 (powers of 1024).
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["", "K", "M", "G", "T"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}")
    } else if v.fract() == 0.0 || v >= 100.0 {
        format!("{v:.0}{}", UNITS[i])
    } else {
        format!("{v:.1}{}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps() {
        let b = Budget::new(100);
        b.take(60).unwrap();
        b.take(40).unwrap();
        let e = b.take(1).unwrap_err().to_string();
        assert!(e.contains("--max-size=100"), "{e}");
    }

    #[test]
    fn humans() {
        assert_eq!(human(50 << 30), "50G");
        assert_eq!(human(1536), "1.5K");
        assert_eq!(human(17), "17");
    }
}
