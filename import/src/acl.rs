//! POSIX ACLs given as text in tar pax records (`SCHILY.acl.access` and
//! `SCHILY.acl.default`, what GNU tar `--acls` and star write), turned into
//! the kernel's `system.posix_acl_access`/`_default` xattr format.
//!
//! Written here rather than taken from a crate: the crates that parse ACL
//! text call libacl and resolve user and group names on the host, while a
//! rootfs needs them resolved in its own /etc/passwd and /etc/group.

use std::ffi::CStr;

use anyhow::{anyhow, bail, Result};

/// Which ACL of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Access,
    /// A directory's ACL inherited by what is created in it.
    Default,
}

impl Kind {
    /// The pax record holding this ACL as text.
    pub fn from_pax_key(key: &str) -> Option<Kind> {
        match key {
            "SCHILY.acl.access" => Some(Kind::Access),
            "SCHILY.acl.default" => Some(Kind::Default),
            _ => None,
        }
    }

    pub fn xattr(self) -> &'static CStr {
        match self {
            Kind::Access => c"system.posix_acl_access",
            Kind::Default => c"system.posix_acl_default",
        }
    }
}

// Tags and layout of include/uapi/linux/posix_acl_xattr.h.
const VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;
const UNDEFINED_ID: u32 = u32::MAX;

/// The ACLs of one entry given as text.
pub type Texts = Vec<(Kind, String)>;

/// User and group names of the tree the ACL belongs to.
pub trait Names {
    fn uid(&self, name: &str) -> Option<u32>;
    fn gid(&self, name: &str) -> Option<u32>;
}

/// Names from the contents of an /etc/passwd and an /etc/group.
#[derive(Debug, Default)]
pub struct IdFiles {
    users: Vec<(String, u32)>,
    groups: Vec<(String, u32)>,
}

impl IdFiles {
    pub fn parse(passwd: &str, group: &str) -> IdFiles {
        let table = |text: &str| {
            text.lines()
                .filter_map(|l| {
                    let mut f = l.split(':');
                    let name = f.next()?;
                    let id = f.nth(1)?.parse().ok()?;
                    Some((name.to_string(), id))
                })
                .collect()
        };
        IdFiles {
            users: table(passwd),
            groups: table(group),
        }
    }
}

impl Names for IdFiles {
    fn uid(&self, name: &str) -> Option<u32> {
        self.users
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| *id)
    }
    fn gid(&self, name: &str) -> Option<u32> {
        self.groups
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| *id)
    }
}

/// The xattr value for the ACL `text`: entries `TAG:[QUALIFIER]:PERMS`
/// separated by commas or newlines, `#` comments, tags `user`, `group`,
/// `mask`, `other` or their first letters, a qualifier that is a number or
/// a name, and star's optional numeric id as a fourth field. A missing mask
/// is computed as setfacl does. An error names the entry.
pub fn to_xattr(text: &str, names: &dyn Names) -> Result<Vec<u8>> {
    let mut entries: Vec<(u16, u16, u32)> = Vec::new();
    for raw in text.split(['\n', ',']) {
        let e = raw.split('#').next().unwrap_or("").trim();
        if e.is_empty() {
            continue;
        }
        let entry = parse_entry(e, names).map_err(|err| anyhow!("ACL entry '{e}': {err}"))?;
        if entries.iter().any(|x| (x.0, x.2) == (entry.0, entry.2)) {
            bail!("ACL entry '{e}' is given twice");
        }
        entries.push(entry);
    }
    let has = |tag| entries.iter().any(|e| e.0 == tag);
    for (tag, name) in [
        (USER_OBJ, "user::"),
        (GROUP_OBJ, "group::"),
        (OTHER, "other::"),
    ] {
        if !has(tag) {
            bail!(
                "ACL '{}' has no {name} entry",
                text.trim().replace('\n', ",")
            );
        }
    }
    if !has(MASK) && (has(USER) || has(GROUP)) {
        let perms = entries
            .iter()
            .filter(|e| matches!(e.0, USER | GROUP | GROUP_OBJ))
            .fold(0, |a, e| a | e.1);
        entries.push((MASK, perms, UNDEFINED_ID));
    }
    // The kernel wants them ordered by tag, then id.
    entries.sort_by_key(|e| (e.0, e.2));
    let mut out = Vec::with_capacity(4 + entries.len() * 8);
    out.extend_from_slice(&VERSION.to_le_bytes());
    for (tag, perm, id) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    Ok(out)
}

fn parse_entry(e: &str, names: &dyn Names) -> Result<(u16, u16, u32)> {
    let f: Vec<&str> = e.split(':').map(str::trim).collect();
    if !(3..=4).contains(&f.len()) {
        bail!("not TAG:QUALIFIER:PERMISSIONS");
    }
    let perm = parse_perms(f[2])?;
    let qual = f[1];
    // star appends the numeric id of a named entry.
    let numeric = match f.get(3) {
        Some(n) => Some(
            n.parse::<u32>()
                .map_err(|_| anyhow!("bad numeric id '{n}'"))?,
        ),
        None => qual.parse::<u32>().ok(),
    };
    let (obj, named, is_user) = match f[0] {
        "user" | "u" => (USER_OBJ, USER, true),
        "group" | "g" => (GROUP_OBJ, GROUP, false),
        "mask" | "m" => (MASK, MASK, false),
        "other" | "o" => (OTHER, OTHER, false),
        t => bail!("unknown tag '{t}'"),
    };
    if qual.is_empty() {
        return Ok((obj, perm, UNDEFINED_ID));
    }
    if obj == named {
        bail!("a {} entry takes no qualifier", f[0]);
    }
    let id = match numeric {
        Some(id) if id != UNDEFINED_ID => id,
        Some(_) => bail!("id {UNDEFINED_ID} is reserved"),
        None if is_user => names
            .uid(qual)
            .ok_or_else(|| anyhow!("user '{qual}' is not in the image's /etc/passwd"))?,
        None => names
            .gid(qual)
            .ok_or_else(|| anyhow!("group '{qual}' is not in the image's /etc/group"))?,
    };
    Ok((named, perm, id))
}

fn parse_perms(p: &str) -> Result<u16> {
    if p.is_empty() || p.len() > 3 {
        bail!("bad permissions '{p}'");
    }
    let mut v = 0;
    for (i, c) in p.chars().enumerate() {
        v |= match c {
            'r' if i == 0 || p.len() < 3 => 4,
            'w' if i == 1 || p.len() < 3 => 2,
            'x' if i == 2 || p.len() < 3 => 1,
            '-' => 0,
            _ => bail!("bad permissions '{p}'"),
        };
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> IdFiles {
        IdFiles::parse(
            "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/:/usr/sbin/nologin\n",
            "root:x:0:\nstaff:x:50:\n",
        )
    }

    fn entries(v: &[u8]) -> Vec<(u16, u16, u32)> {
        assert_eq!(&v[..4], &VERSION.to_le_bytes());
        v[4..]
            .chunks(8)
            .map(|c| {
                (
                    u16::from_le_bytes([c[0], c[1]]),
                    u16::from_le_bytes([c[2], c[3]]),
                    u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
                )
            })
            .collect()
    }

    #[test]
    fn gnu_tar_text_with_names_and_numbers() {
        // As GNU tar 1.35 --acls writes it.
        let t = "user::rw-\nuser:1234:r-x\nuser:nobody:rw-\ngroup::r--\ngroup:staff:r--\nmask::rwx\nother::r--\n";
        let u = UNDEFINED_ID;
        assert_eq!(
            entries(&to_xattr(t, &ids()).unwrap()),
            vec![
                (USER_OBJ, 6, u),
                (USER, 5, 1234),
                (USER, 6, 65534),
                (GROUP_OBJ, 4, u),
                (GROUP, 4, 50),
                (MASK, 7, u),
                (OTHER, 4, u)
            ]
        );
    }

    #[test]
    fn same_bytes_as_the_kernel_format_gnu_tar_stores() {
        // The SCHILY.xattr.system.posix_acl_default tar stored beside
        // "user::rwx,user:1234:rwx,group::r-x,mask::rwx,other::r-x".
        let want: Vec<u8> = [
            &[2, 0, 0, 0][..],
            &[1, 0, 7, 0, 255, 255, 255, 255],
            &[2, 0, 7, 0, 0xd2, 4, 0, 0],
            &[4, 0, 5, 0, 255, 255, 255, 255],
            &[0x10, 0, 7, 0, 255, 255, 255, 255],
            &[0x20, 0, 5, 0, 255, 255, 255, 255],
        ]
        .concat();
        let got = to_xattr(
            "user::rwx,user:1234:rwx,group::r-x,mask::rwx,other::r-x",
            &ids(),
        );
        assert_eq!(got.unwrap(), want);
    }

    #[test]
    fn short_forms_star_ids_comments_and_computed_mask() {
        let t = "u::rw, g::r, o::-, # comment\nu:someone:rw:1001\ng:50:x";
        let u = UNDEFINED_ID;
        assert_eq!(
            entries(&to_xattr(t, &ids()).unwrap()),
            vec![
                (USER_OBJ, 6, u),
                (USER, 6, 1001),
                (GROUP_OBJ, 4, u),
                (GROUP, 1, 50),
                (MASK, 7, u),
                (OTHER, 0, u)
            ]
        );
    }

    #[test]
    fn bad_acls_name_the_entry() {
        let err = |t: &str| format!("{:#}", to_xattr(t, &ids()).unwrap_err());
        let base = "user::rw-,group::r--,other::r--";
        assert!(err(&format!("{base},user:alice:r--")).contains("user 'alice' is not in"));
        assert!(err(&format!("{base},group:wheel:r--")).contains("group 'wheel' is not in"));
        assert!(err(&format!("{base},user:1:rwz")).contains("'user:1:rwz': bad permissions"));
        assert!(err(&format!("{base},owner::r--")).contains("unknown tag 'owner'"));
        assert!(err(&format!("{base},mask:1:r--")).contains("takes no qualifier"));
        assert!(err(&format!("{base},user:1:r--,user:1:rw-")).contains("given twice"));
        assert!(err("user::rw-,other::r--").contains("no group:: entry"));
        assert!(err(&format!("{base},user")).contains("not TAG:QUALIFIER:PERMISSIONS"));
        assert!(err(&format!("{base},user:4294967295:r--")).contains("reserved"));
    }
}
