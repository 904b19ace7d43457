//! Supplementary groups, gid, uid: set in that order (each later step
//! needs the privilege the earlier ones still have), then read back.

use std::io;

use super::ids::Ids;

/// Which part of the drop failed (systemd's GROUP or USER status).
#[derive(Debug, PartialEq, Eq)]
pub enum Failed {
    Group(String),
    User(String),
}

/// Become `ids`; an error names the step.
pub fn drop_to(ids: &Ids) -> Result<(), Failed> {
    let groups: Vec<libc::gid_t> = ids.groups.clone();
    let os = io::Error::last_os_error;
    // SAFETY: groups is a valid array of its length.
    if unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } != 0 {
        return Err(Failed::Group(format!(
            "setgroups {:?}: {}",
            ids.groups,
            os()
        )));
    }
    // SAFETY: plain syscalls.
    if unsafe { libc::setresgid(ids.gid, ids.gid, ids.gid) } != 0 {
        return Err(Failed::Group(format!("setresgid {}: {}", ids.gid, os())));
    }
    // SAFETY: plain syscall.
    if unsafe { libc::setresuid(ids.uid, ids.uid, ids.uid) } != 0 {
        return Err(Failed::User(format!("setresuid {}: {}", ids.uid, os())));
    }
    verify(ids).map_err(Failed::User)
}

/// Real, effective and saved uids; the same gids; the groups (sorted).
pub type Current = ([u32; 3], [u32; 3], Vec<u32>);

/// What the kernel says the process is now.
pub fn current() -> Result<Current, String> {
    let (mut r, mut e, mut s) = (0, 0, 0);
    let (mut gr, mut ge, mut gs) = (0, 0, 0);
    // SAFETY: valid out pointers.
    let ok = unsafe {
        libc::getresuid(&mut r, &mut e, &mut s) == 0
            && libc::getresgid(&mut gr, &mut ge, &mut gs) == 0
    };
    if !ok {
        return Err(format!("getresuid: {}", io::Error::last_os_error()));
    }
    let groups = nix::unistd::getgroups().map_err(|e| format!("getgroups: {e}"))?;
    let mut groups: Vec<u32> = groups.iter().map(|g| g.as_raw()).collect();
    groups.sort_unstable();
    groups.dedup();
    Ok(([r, e, s], [gr, ge, gs], groups))
}

fn verify(ids: &Ids) -> Result<(), String> {
    let (uids, gids, groups) = current()?;
    if uids != [ids.uid; 3] || gids != [ids.gid; 3] || groups != ids.groups {
        return Err(format!(
            "after the drop the process has uids {uids:?}, gids {gids:?}, groups {groups:?}, \
             not {}:{} with {:?}",
            ids.uid, ids.gid, ids.groups
        ));
    }
    Ok(())
}
