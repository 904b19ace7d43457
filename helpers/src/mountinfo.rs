//! Reading `/proc/self/mountinfo` to ask "what is mounted at this path?".

use std::path::Path;

use anyhow::{Context, Result};

/// One line of mountinfo (only what we need).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_point: String,
    pub fs_type: String,
    pub source: String,
    pub super_options: String,
}

/// Undo the octal escapes mountinfo uses for space, tab, newline, `\`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse mountinfo text; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<MountEntry> {
    let mut v = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let lf: Vec<&str> = left.split(' ').collect();
        let rf: Vec<&str> = right.split(' ').collect();
        if lf.len() < 6 || rf.len() < 3 {
            continue;
        }
        v.push(MountEntry {
            mount_point: unescape(lf[4]),
            fs_type: rf[0].to_string(),
            source: unescape(rf[1]),
            super_options: unescape(rf[2]),
        });
    }
    v
}

/// The topmost mount at exactly `path` (which must be canonical), if any.
pub fn mounted_at(path: &Path) -> Result<Option<MountEntry>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .context("cannot read /proc/self/mountinfo")?;
    let want = path.to_string_lossy();
    Ok(parse(&text)
        .into_iter()
        .rev()
        .find(|m| m.mount_point == want))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_with_escapes() {
        let t = "36 35 98:0 / /mnt/with\\040space rw,noatime shared:1 - ext3 /dev/root rw,errors=continue\n\
                 40 36 0:50 / /var/lib/sdme/containers/a/merged rw,relatime - overlay overlay rw,lowerdir=/,upperdir=/x/upper,workdir=/x/work\n\
                 garbage\n";
        let v = parse(t);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].mount_point, "/mnt/with space");
        assert_eq!(v[1].fs_type, "overlay");
        assert!(v[1].super_options.contains("upperdir=/x/upper"));
    }
}
