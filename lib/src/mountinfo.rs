//! Parsing `/proc/self/mountinfo` (proc(5)): one parser for the helpers
//! and sdme-import, which both ask what is mounted where.

/// One line of mountinfo (the fields sdme uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Device of the file system, `(major, minor)`.
    pub dev: (u64, u64),
    /// The directory of the file system that forms this mount's root.
    pub root: String,
    pub mount_point: String,
    pub fs_type: String,
    pub source: String,
    pub super_options: String,
}

/// Undo the octal escapes mountinfo uses for space, tab, newline and `\`.
/// Bytes, because a mount point need not be UTF-8.
pub fn unescape_bytes(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = u32::from(b[i + 1] - b'0') * 64
                + u32::from(b[i + 2] - b'0') * 8
                + u32::from(b[i + 3] - b'0');
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// [`unescape_bytes`] as text (invalid UTF-8 replaced).
pub fn unescape(s: &str) -> String {
    String::from_utf8_lossy(&unescape_bytes(s)).into_owned()
}

/// Parse mountinfo text; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            if l.len() < 6 || r.len() < 3 {
                return None;
            }
            let (ma, mi) = l[2].split_once(':')?;
            Some(MountEntry {
                dev: (ma.parse().ok()?, mi.parse().ok()?),
                root: unescape(l[3]),
                mount_point: unescape(l[4]),
                fs_type: r[0].to_string(),
                source: unescape(r[1]),
                super_options: unescape(r[2]),
            })
        })
        .collect()
}

/// The mounts of the calling process.
pub fn read() -> std::io::Result<Vec<MountEntry>> {
    std::fs::read_to_string("/proc/self/mountinfo").map(|t| parse(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_with_escapes() {
        let t = "36 35 98:0 / /mnt/with\\040space rw,noatime shared:1 - ext3 /dev/root rw,errors=continue\n\
                 40 36 0:50 /sub /var/lib/sdme/containers/a/merged rw,relatime - overlay overlay rw,lowerdir=/,upperdir=/x/upper,workdir=/x/work\n\
                 garbage\n";
        let v = parse(t);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].mount_point, "/mnt/with space");
        assert_eq!(v[0].dev, (98, 0));
        assert_eq!(v[1].root, "/sub");
        assert_eq!(v[1].fs_type, "overlay");
        assert!(v[1].super_options.contains("upperdir=/x/upper"));
    }

    #[test]
    fn unescapes_only_full_octal_escapes() {
        assert_eq!(unescape_bytes("/a\\040b\\134c"), b"/a b\\c");
        assert_eq!(unescape_bytes("/plain\\04"), b"/plain\\04");
    }
}
