//! capget(2)/capset(2) on the calling thread, with 64-bit masks.
//!
//! Masks bit for bit, not capabilities by name: the `caps` crate knows
//! capabilities up to the newest it lists, and a mask read from the
//! kernel (or from `/proc/PID/status`) may hold newer ones, which must be
//! kept as they are.

/// The three sets of a thread, bit N = capability N.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caps {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

#[repr(C)]
struct Header {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// _LINUX_CAPABILITY_VERSION_3: two 32-bit halves per set.
const VERSION_3: u32 = 0x2008_0522;

fn header() -> Header {
    Header {
        version: VERSION_3,
        pid: 0,
    }
}

/// The calling thread's sets.
pub fn get() -> std::io::Result<Caps> {
    let mut hdr = header();
    let mut data = [Data::default(); 2];
    // SAFETY: capget(2) v3 into a header and two data structs of its size.
    if unsafe { libc::syscall(libc::SYS_capget, &mut hdr as *mut Header, data.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let join = |f: fn(&Data) -> u32| u64::from(f(&data[0])) | (u64::from(f(&data[1])) << 32);
    Ok(Caps {
        effective: join(|d| d.effective),
        permitted: join(|d| d.permitted),
        inheritable: join(|d| d.inheritable),
    })
}

/// Set the calling thread's sets.
pub fn set(c: &Caps) -> std::io::Result<()> {
    let hdr = header();
    let half = |m: u64, i: usize| (m >> (32 * i)) as u32;
    let data = [0, 1].map(|i| Data {
        effective: half(c.effective, i),
        permitted: half(c.permitted, i),
        inheritable: half(c.inheritable, i),
    });
    // SAFETY: capset(2) v3 with a header and two data structs of its size.
    if unsafe { libc::syscall(libc::SYS_capset, &hdr as *const Header, data.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_what_was_read_is_a_no_op() {
        let now = get().expect("capget");
        assert_eq!(now.effective & !now.permitted, 0);
        set(&now).expect("capset of the same sets");
        assert_eq!(get().expect("capget"), now);
    }
}
