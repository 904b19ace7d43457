//! `SystemCallFilter=`: the checked value, and the form nspawn's
//! `--system-call-filter=` needs for it.

/// One `SystemCallFilter=` line: nspawn's `--system-call-filter=`, where a
/// leading `~` makes the whole list a deny list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyscallFilter {
    pub deny: bool,
    /// System call names and `@group`s, as written (normalized spacing).
    pub items: Vec<String>,
}

/// Members of the groups that a deny list must spell out for nspawn
/// (`systemd-analyze syscall-filter`, systemd 252). nspawn applies `~LIST`
/// by leaving LIST's words out of its own allow list, comparing them as
/// written: `~@debug` alone leaves `ptrace` allowed, because nspawn allows
/// it by name whenever CAP_SYS_PTRACE is kept (measured: PTRACE_TRACEME
/// succeeded under `~@debug` with `Capability=CAP_SYS_PTRACE`). These are
/// the groups holding a system call that nspawn's allow list names on its
/// own (ptrace, reboot) and the ones `Strict=` denies.
const DENY_GROUP_MEMBERS: [(&str, &[&str]); 5] = [
    (
        "@cpu-emulation",
        &[
            "modify_ldt",
            "subpage_prot",
            "switch_endian",
            "vm86",
            "vm86old",
        ],
    ),
    (
        "@debug",
        &[
            "lookup_dcookie",
            "perf_event_open",
            "pidfd_getfd",
            "ptrace",
            "rtas",
            "s390_runtime_instr",
            "sys_debug_setcontext",
        ],
    ),
    (
        "@obsolete",
        &[
            "_sysctl",
            "afs_syscall",
            "bdflush",
            "break",
            "create_module",
            "ftime",
            "get_kernel_syms",
            "getpmsg",
            "gtty",
            "idle",
            "lock",
            "mpx",
            "prof",
            "profil",
            "putpmsg",
            "query_module",
            "security",
            "sgetmask",
            "ssetmask",
            "stime",
            "stty",
            "sysfs",
            "tuxcall",
            "ulimit",
            "uselib",
            "ustat",
            "vserver",
        ],
    ),
    (
        "@raw-io",
        &[
            "ioperm",
            "iopl",
            "pciconfig_iobase",
            "pciconfig_read",
            "pciconfig_write",
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
        ],
    ),
    ("@reboot", &["kexec_file_load", "kexec_load", "reboot"]),
];

impl SyscallFilter {
    /// The value of nspawn's `--system-call-filter=`: for a deny list,
    /// each group is followed by the members nspawn needs by name (see
    /// `DENY_GROUP_MEMBERS`); the group itself stays, for the groups
    /// nspawn's allow list names (such as `@raw-io`).
    pub fn nspawn_value(&self) -> String {
        if !self.deny {
            return self.value();
        }
        let mut words: Vec<&str> = Vec::new();
        for item in &self.items {
            let members = DENY_GROUP_MEMBERS
                .iter()
                .find(|(g, _)| g == item)
                .map_or(&[][..], |(_, m)| *m);
            for w in std::iter::once(item.as_str()).chain(members.iter().copied()) {
                if !words.contains(&w) {
                    words.push(w);
                }
            }
        }
        format!("~{}", words.join(" "))
    }

    /// The value as written (normalized spacing).
    pub fn value(&self) -> String {
        let list = self.items.join(" ");
        if self.deny {
            format!("~{list}")
        } else {
            list
        }
    }
}

/// systemd's system call groups (`systemd-analyze syscall-filter`).
const SYSCALL_GROUPS: [&str; 29] = [
    "@aio",
    "@basic-io",
    "@chown",
    "@clock",
    "@cpu-emulation",
    "@debug",
    "@file-system",
    "@io-event",
    "@ipc",
    "@keyring",
    "@memlock",
    "@module",
    "@mount",
    "@network-io",
    "@obsolete",
    "@pkey",
    "@privileged",
    "@process",
    "@raw-io",
    "@reboot",
    "@resources",
    "@sandbox",
    "@setuid",
    "@signal",
    "@swap",
    "@sync",
    "@system-service",
    "@timer",
    "@known",
];

/// One `SystemCallFilter=` value (not empty).
pub(super) fn parse_syscall_filter(v: &str) -> Result<SyscallFilter, String> {
    let (deny, list) = match v.strip_prefix('~') {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let mut items = Vec::new();
    for w in list.split_whitespace() {
        if w.starts_with('~') {
            return Err(format!(
                "'~' must start the value and then applies to the whole list ('{w}' is not the first word); put allowed and denied system calls on separate lines"
            ));
        }
        if w.starts_with('@') {
            if !(SYSCALL_GROUPS.contains(&w) || w == "@default") {
                return Err(format!(
                    "unknown system call group '{}' (see 'systemd-analyze syscall-filter')",
                    w.escape_default()
                ));
            }
        } else if !w
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(format!(
                "'{}' is neither a system call name (lower-case letters, digits, '_') nor an @group",
                w.escape_default()
            ));
        }
        items.push(w.to_string());
    }
    if items.is_empty() {
        return Err("'~' without system calls".into());
    }
    Ok(SyscallFilter { deny, items })
}
