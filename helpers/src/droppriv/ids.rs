//! USER (`name`, `uid`, `name:group`, `uid:gid`, and the mixed forms OCI
//! allows) resolved against the image's passwd and group entries.
//!
//! As runc and Docker do: a numeric uid without a passwd entry runs with
//! gid 0 and HOME `/`; a numeric gid without a group entry is used as is;
//! a name that is not there is an error. Supplementary groups are the
//! primary gid plus every group that lists the user's name, as initgroups
//! (and so systemd's `User=`) makes them.

use sdme_core::app::split_app_user;

use super::etc::{parse_id, Group, User};

/// What the process becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
    /// Sorted, without duplicates, the primary gid included.
    pub groups: Vec<u32>,
    pub home: String,
}

/// Why USER cannot be resolved; the exit status follows systemd's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdError {
    Syntax(String),
    NoUser(String),
    NoGroup(String),
}

/// Split USER into the user part and the optional group part, with the
/// parser that checks `AppUser=` (sdme-core), so the generator and this
/// helper never disagree on what a valid USER is.
pub fn split_spec(spec: &str) -> Result<(&str, Option<&str>), IdError> {
    split_app_user(spec).map_err(|e| {
        IdError::Syntax(format!(
            "user {spec:?}: {e} (expected NAME, UID, NAME:GROUP or UID:GID)"
        ))
    })
}

fn numeric(s: &str) -> Option<u32> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        parse_id(s)
    } else {
        None
    }
}

/// The passwd entry of the user part, if any (None: a numeric uid
/// without an entry).
fn find_user<'a>(users: &'a [User], user: &str) -> Result<Option<&'a User>, IdError> {
    match numeric(user) {
        Some(uid) => Ok(users.iter().find(|u| u.uid == uid)),
        None => users
            .iter()
            .find(|u| u.name == user)
            .map(Some)
            .ok_or_else(|| IdError::NoUser(user.to_string())),
    }
}

fn find_gid(groups: &[Group], group: &str) -> Result<u32, IdError> {
    if let Some(gid) = numeric(group) {
        return Ok(gid);
    }
    groups
        .iter()
        .find(|g| g.name == group)
        .map(|g| g.gid)
        .ok_or_else(|| IdError::NoGroup(group.to_string()))
}

/// Resolve USER against the parsed files.
pub fn resolve(spec: &str, users: &[User], groups: &[Group]) -> Result<Ids, IdError> {
    let (user, group) = split_spec(spec)?;
    let entry = find_user(users, user)?;
    let uid = match entry {
        Some(u) => u.uid,
        None => numeric(user).unwrap_or(0),
    };
    let gid = match group {
        Some(g) => find_gid(groups, g)?,
        None => entry.map_or(0, |u| u.gid),
    };
    let mut list = vec![gid];
    if let Some(u) = entry {
        let member = groups.iter().filter(|g| g.members.contains(&u.name));
        list.extend(member.map(|g| g.gid));
    }
    list.sort_unstable();
    list.dedup();
    let home = entry.map_or(String::new(), |u| u.home.clone());
    let home = if home.is_empty() {
        "/".to_string()
    } else {
        home
    };
    Ok(Ids {
        uid,
        gid,
        groups: list,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::super::etc::{parse_group, parse_user};
    use super::*;

    fn fixture() -> (Vec<User>, Vec<Group>) {
        let users = [
            "root:x:0:0:root:/root:/bin/sh",
            "app:x:4242:4242:App:/home/app:/bin/sh",
            "nohome:x:300:300:::/bin/sh",
            "1000:x:1001:1001::/named-digits:/bin/sh",
        ];
        let groups = [
            "root:x:0:",
            "app:x:4242:",
            "data:x:5000:web,app",
            "web:x:5001:web",
            "other:x:5002:application",
        ];
        (
            users.iter().filter_map(|l| parse_user(l)).collect(),
            groups.iter().filter_map(|l| parse_group(l)).collect(),
        )
    }

    fn ids(uid: u32, gid: u32, groups: &[u32], home: &str) -> Ids {
        Ids {
            uid,
            gid,
            groups: groups.to_vec(),
            home: home.to_string(),
        }
    }

    #[test]
    fn by_name_and_number() {
        let (u, g) = fixture();
        let app = ids(4242, 4242, &[4242, 5000], "/home/app");
        assert_eq!(resolve("app", &u, &g), Ok(app.clone()));
        assert_eq!(resolve("4242", &u, &g), Ok(app));
        assert_eq!(resolve("root", &u, &g), Ok(ids(0, 0, &[0], "/root")));
        assert_eq!(resolve("nohome", &u, &g), Ok(ids(300, 300, &[300], "/")));
        // Digits are a uid, never a name.
        assert_eq!(resolve("1000", &u, &g).unwrap().uid, 1000);
    }

    #[test]
    fn with_a_group() {
        let (u, g) = fixture();
        assert_eq!(
            resolve("app:data", &u, &g),
            Ok(ids(4242, 5000, &[5000], "/home/app"))
        );
        assert_eq!(
            resolve("app:web", &u, &g),
            Ok(ids(4242, 5001, &[5000, 5001], "/home/app"))
        );
        assert_eq!(
            resolve("4242:77", &u, &g),
            Ok(ids(4242, 77, &[77, 5000], "/home/app"))
        );
        assert_eq!(resolve("9:data", &u, &g), Ok(ids(9, 5000, &[5000], "/")));
    }

    #[test]
    fn numeric_ids_without_entries_are_allowed() {
        let (u, g) = fixture();
        assert_eq!(resolve("65534", &u, &g), Ok(ids(65534, 0, &[0], "/")));
        assert_eq!(
            resolve("65534:65534", &u, &g),
            Ok(ids(65534, 65534, &[65534], "/"))
        );
        // With no files at all.
        assert_eq!(resolve("7:8", &[], &[]), Ok(ids(7, 8, &[8], "/")));
    }

    #[test]
    fn missing_names_and_bad_syntax() {
        let (u, g) = fixture();
        assert_eq!(
            resolve("ghost", &u, &g),
            Err(IdError::NoUser("ghost".into()))
        );
        assert_eq!(
            resolve("app:nogroup", &u, &g),
            Err(IdError::NoGroup("nogroup".into()))
        );
        assert_eq!(
            resolve("ghost", &[], &[]),
            Err(IdError::NoUser("ghost".into()))
        );
        for bad in [
            "",
            ":",
            "app:",
            ":data",
            "a:b:c",
            "4294967295",
            "99999999999",
            "1:4294967295",
        ] {
            assert!(
                matches!(resolve(bad, &u, &g), Err(IdError::Syntax(_))),
                "{bad:?}"
            );
        }
    }
}
