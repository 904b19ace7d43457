//! Kernel capabilities by name and number, for `Capability=`,
//! `DropCapability=` and sdme.conf's `[Hardened]` list.

/// The kernel's capability names without `CAP_`, indexed by number, up to
/// CAP_CHECKPOINT_RESTORE (40, Linux 5.9), as in linux/capability.h.
pub const CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// `CAP_NAME` of capability number `n`.
pub fn capability_name(n: u8) -> String {
    format!("CAP_{}", CAPABILITIES[usize::from(n)])
}

/// A capability name, `CAP_` optional, any case, to its number.
pub(crate) fn parse_capability(word: &str) -> Result<u8, String> {
    let up = word.to_ascii_uppercase();
    let bare = up.strip_prefix("CAP_").unwrap_or(&up);
    CAPABILITIES
        .iter()
        .position(|c| *c == bare)
        .and_then(|n| u8::try_from(n).ok())
        .ok_or_else(|| {
            format!(
                "unknown capability '{}' (the kernel's names, such as CAP_NET_ADMIN; see capabilities(7))",
                word.escape_default()
            )
        })
}
