//! The schema's behaviour, through whole files.

use std::path::Path;

use super::syscall::parse_syscall_filter;
use super::*;
use crate::capability::{capability_name, CAPABILITIES};
use crate::config::Config;
use crate::search::UnitName;
use crate::syntax::UnitFile;
use crate::userns::{self, PrivateUsers};

fn load(name: &str, text: &str) -> Result<Container, Vec<String>> {
    let f = UnitFile::parse(Path::new("/etc/sdme/x.container"), text.as_bytes()).unwrap();
    Container::from_unit(
        UnitName::from_stem(name),
        Path::new("/etc/sdme/x.container"),
        f,
    )
    .map_err(|v| v.into_iter().map(|d| d.to_string()).collect())
}

#[test]
fn host_clone_defaults() {
    let c = load("web", "[Container]\n").unwrap();
    assert_eq!(c.machine, "web");
    assert_eq!(c.rootfs, Rootfs::Host);
    assert_eq!(c.opaque_dirs, HOST_CLONE_OPAQUE);
    assert!(c.host_network());
    assert_eq!(c.boot_timeout, Some(DEFAULT_BOOT_TIMEOUT));
}

#[test]
fn opaque_dirs_append_and_reset() {
    let c = load("w", "[Container]\nOpaqueDir=/srv\n").unwrap();
    let mut want: Vec<&str> = HOST_CLONE_OPAQUE.to_vec();
    want.push("/srv");
    assert_eq!(c.opaque_dirs, want);
    let c = load("w", "[Container]\nOpaqueDir=\nOpaqueDir=/srv\n").unwrap();
    assert_eq!(c.opaque_dirs, ["/srv"]);
    let c = load("w", "[Container]\nRootfs=deb\nOpaqueDir=/srv\n").unwrap();
    assert_eq!(c.opaque_dirs, ["/srv"]);
}

#[test]
fn lists_reset_on_empty() {
    let c = load(
        "w",
        "[Container]\nBind=/a\nBindReadOnly=/b\nBind=\nBind=/c:/d:norbind\n",
    )
    .unwrap();
    assert_eq!(
        c.binds.iter().map(|b| b.spec.as_str()).collect::<Vec<_>>(),
        ["/b", "/c:/d:norbind"]
    );
    let c = load(
        "w",
        "[Container]\nEnvironment=A=1 \"B=x y\"\nEnvironment=\nEnvironment=C=${X}\n",
    )
    .unwrap();
    assert_eq!(c.environment, ["C=${X}"]);
}

#[test]
fn service_environment_and_nested_sdme() {
    let c = load("w", "[Container]\n").unwrap();
    assert!(!c.nested_sdme);
    assert!(c.service_environment.is_empty());
    let c = load(
        "w",
        "[Container]\nNestedSdme=yes\nServiceEnvironment=A=1 \"B=x y\"\nServiceEnvironment=\nServiceEnvironment=C=$X%i 'D=a\\nb'\n",
    )
    .unwrap();
    assert!(c.nested_sdme);
    assert_eq!(c.service_environment, ["C=$X%i", "D=a\nb"]);
    let e = load(
        "w",
        "[Container]\nNestedSdme=maybe\nServiceEnvironment=A=1 1B=2\nServiceEnvironment=\"open\n",
    )
    .unwrap_err();
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        e[0].starts_with("/etc/sdme/x.container:2: NestedSdme=maybe: "),
        "{e:?}"
    );
    assert_eq!(
        e[1],
        "/etc/sdme/x.container:3: ServiceEnvironment=: '1B=2' is not a NAME=VALUE assignment with a valid variable name"
    );
    assert!(
        e[2].starts_with("/etc/sdme/x.container:4: ServiceEnvironment="),
        "{e:?}"
    );
}

#[test]
fn errors_carry_file_and_line() {
    let e = load("w", "[Container]\nBind=srv\nFoo=1\n[Bogus]\n").unwrap_err();
    assert_eq!(
        e,
        [
            "/etc/sdme/x.container:2: Bind=srv: source 'srv' is not an absolute path",
            "/etc/sdme/x.container:3: unknown key 'Foo' in section [Container]",
            "/etc/sdme/x.container:4: unknown section [Bogus]; a .container file has [Unit], [Container], [Service], [Install] and X- sections",
        ]
    );
    let e = load("w", "[Unit]\nDescription=x\n").unwrap_err();
    assert_eq!(e, ["/etc/sdme/x.container: no [Container] section"]);
    let e = load("w", "[Container]\n[Service]\nExecStart=/bin/true\n").unwrap_err();
    assert!(e[0].starts_with("/etc/sdme/x.container:3: ExecStart= cannot be set in [Service]"));
}

#[test]
fn template_names() {
    let c = load(
        "web@",
        "[Container]\n[Install]\nDefaultInstance=a\nWantedBy=machines.target\n",
    )
    .unwrap();
    assert!(c.is_template());
    assert_eq!(c.machine, "web");
    let c = load("web@b", "[Container]\n").unwrap();
    assert_eq!(c.machine, "web-b");
    let e = load("web@", "[Container]\nMachineName=x\n").unwrap_err();
    assert!(
        e[0].contains("MachineName= cannot be set in a template"),
        "{e:?}"
    );
    let e = load("web", "[Container]\n[Install]\nDefaultInstance=a\n").unwrap_err();
    assert!(
        e[0].contains("DefaultInstance= only applies to templates"),
        "{e:?}"
    );
}

#[test]
fn ports_and_networks() {
    let c = load("w", "[Container]\nPort=tcp:8080:80\nPort=443\n").unwrap();
    assert!(!c.host_network());
    for bad in ["Port=0", "Port=sctp:1", "Port=1:2:3", "Port=x"] {
        assert!(
            load("w", &format!("[Container]\n{bad}\n")).is_err(),
            "{bad}"
        );
    }
    let e = load("w", "[Container]\nBridge=br0\nZone=z\n").unwrap_err();
    assert!(e[0].contains("Bridge= and Zone= cannot both be set"));
}

#[test]
fn pods() {
    let c = load("w", "[Container]\nPod=web.pod\n").unwrap();
    assert_eq!(c.pod.as_ref().map(|(n, _)| n.as_str()), Some("web"));
    assert!(
        !c.host_network(),
        "a pod member does not share the host's network"
    );
    let c = load("w", "[Container]\nPod=web.pod\nPod=\nPrivateNetwork=yes\n").unwrap();
    assert!(c.pod.is_none());
    let e = load("w", "[Container]\nPort=80\nPod=web.pod\n").unwrap_err();
    assert_eq!(
        e,
        ["/etc/sdme/x.container:3: Pod=web.pod cannot be combined with Port= (at /etc/sdme/x.container:2): a pod member uses the pod's network namespace"]
    );
    let e = load("w", "[Container]\nPod=web\n").unwrap_err();
    assert!(
        e[0].contains(":2: Pod=web: expected the name of a pod file"),
        "{e:?}"
    );
}

#[test]
fn capabilities() {
    let c = load(
        "w",
        "[Container]\nCapability=net_admin CAP_SYS_TIME\nCapability=Cap_Net_Admin mknod\nDropCapability=sys_boot\nDropCapability=\nDropCapability=sys_ptrace\n",
    )
    .unwrap();
    assert_eq!(c.capabilities, [12, 25, 27]);
    assert!(!c.capability_all);
    assert_eq!(c.drop_capabilities, [19]);
    assert_eq!(capability_name(40), "CAP_CHECKPOINT_RESTORE");
    let c = load(
        "w",
        "[Container]\nCapability=all\nDropCapability=sys_ptrace\n",
    )
    .unwrap();
    assert!(c.capability_all);
    let e = load("w", "[Container]\nCapability=cap_foo\nDropCapability=all\n").unwrap_err();
    assert!(
        e[0].contains("2: Capability=cap_foo: unknown capability 'cap_foo'"),
        "{e:?}"
    );
    assert!(
        e[1].contains("3: DropCapability=all: 'all' can only be added"),
        "{e:?}"
    );
    let e = load(
        "w",
        "[Container]\nCapability=net_admin\nDropCapability=CAP_NET_ADMIN\n",
    )
    .unwrap_err();
    assert_eq!(
        e,
        ["/etc/sdme/x.container:3: CAP_NET_ADMIN is both added (Capability= at /etc/sdme/x.container:2) and dropped (DropCapability= at /etc/sdme/x.container:3); remove it from one of them"]
    );
}

#[test]
fn booleans_and_syscall_filter() {
    let c = load(
        "w",
        "[Container]\nNoNewPrivileges=yes\nReadOnly=1\nSystemCallFilter=@clock\nSystemCallFilter=\nSystemCallFilter=~@swap  reboot\nSystemCallFilter=@known\n",
    )
    .unwrap();
    assert!(c.no_new_privileges && c.read_only);
    let v: Vec<String> = c.system_call_filter.iter().map(|f| f.value()).collect();
    assert_eq!(v, ["~@swap reboot", "@known"]);
    // Deny lists spell out the members nspawn allows by name.
    let f = parse_syscall_filter("~@debug ptrace @swap").unwrap();
    assert_eq!(
        f.nspawn_value(),
        "~@debug lookup_dcookie perf_event_open pidfd_getfd ptrace rtas s390_runtime_instr sys_debug_setcontext @swap"
    );
    let f = parse_syscall_filter("@debug").unwrap();
    assert_eq!(f.nspawn_value(), "@debug");
    for bad in ["@clocks", "Chroot", "a-b", "@clock ~@swap", "~"] {
        let e = load("w", &format!("[Container]\nSystemCallFilter={bad}\n")).unwrap_err();
        assert!(
            e[0].starts_with("/etc/sdme/x.container:2: SystemCallFilter="),
            "{e:?}"
        );
    }
    assert!(load("w", "[Container]\nReadOnly=maybe\n").is_err());
}

#[test]
fn private_users() {
    let c = load("web", "[Container]\n").unwrap();
    assert_eq!(c.private_users, None);
    assert!(!c.private_users_enabled() && !c.helper_mounts());
    let c = load("web", "[Container]\nPrivateUsers=yes\n").unwrap();
    assert_eq!(c.private_users, Some(PrivateUsers::Yes));
    assert_eq!(c.userns_base(), Some(userns::base_for("web")));
    assert!(c.helper_mounts());
    let c = load(
        "web",
        "[Container]\nPrivateUsers=yes\nPrivateUsers=1048576\n",
    )
    .unwrap();
    assert_eq!(c.userns_base(), Some(1048576));
    let c = load("web", "[Container]\nPrivateUsers=yes\nPrivateUsers=\n").unwrap();
    assert_eq!(c.private_users, None);
    let c = load("web", "[Container]\nPrivateUsers=no\n").unwrap();
    assert_eq!(c.private_users, Some(PrivateUsers::No));
    assert_eq!(c.userns_base(), None);
    let c = load("web@", "[Container]\nPrivateUsers=yes\n").unwrap();
    assert_eq!(c.userns_base(), None);
    assert!(c.private_users_enabled());
    let c = load("web@a", "[Container]\nPrivateUsers=yes\n").unwrap();
    assert_eq!(c.userns_base(), Some(userns::base_for("web-a")));
    let e = load("web@", "[Container]\nPrivateUsers=1048576\n").unwrap_err();
    assert!(
        e[0].contains(":2: PrivateUsers=1048576: a fixed UID base in a template"),
        "{e:?}"
    );
    let e = load("w", "[Container]\nPrivateUsers=1048577\n").unwrap_err();
    assert!(e[0].starts_with("/etc/sdme/x.container:2: PrivateUsers=1048577: UID base 1048577 is not a multiple of 65536"), "{e:?}");
    let e = load("w", "[Container]\nNspawnArgs=--private-users=pick\n").unwrap_err();
    assert!(e[0].contains("use PrivateUsers="), "{e:?}");
}

#[test]
fn presets() {
    let c = load("w", "[Container]\nHardened=yes\n").unwrap();
    assert_eq!(c.preset, Some(Preset::Hardened));
    assert_eq!(c.private_users, Some(PrivateUsers::Yes));
    assert!(c.no_new_privileges && c.private_network);
    assert_eq!(c.drop_capabilities, [13, 17, 19]);
    assert!(c.system_call_filter.is_empty() && c.apparmor_profile.is_none());
    // Explicit keys win, wherever they are.
    let c = load(
        "w",
        "[Container]\nPrivateNetwork=no\nHardened=yes\nPrivateUsers=no\nCapability=sys_ptrace\n",
    )
    .unwrap();
    assert_eq!(c.private_users, Some(PrivateUsers::No));
    assert!(!c.private_network && c.host_network());
    assert_eq!(c.drop_capabilities, [13, 17]);
    let c = load(
        "w",
        "[Container]\nStrict=yes\nDropCapability=\nSystemCallFilter=\nAppArmorProfile=\n",
    )
    .unwrap();
    assert_eq!(c.preset, Some(Preset::Strict));
    assert!(c.drop_capabilities.is_empty() && c.system_call_filter.is_empty());
    assert_eq!(c.apparmor_profile, None);
    let c = load("w", "[Container]\nStrict=yes\n").unwrap();
    let kept: Vec<&str> = (0..CAPABILITIES.len() as u8)
        .filter(|n| !c.drop_capabilities.contains(n))
        .map(|n| CAPABILITIES[usize::from(n)])
        .collect();
    let mut want: Vec<&str> = STRICT_KEEP
        .iter()
        .copied()
        .filter(|k| *k != "NET_RAW")
        .collect();
    want.sort_by_key(|k| CAPABILITIES.iter().position(|c| c == k));
    assert_eq!(kept, want);
    assert_eq!(c.apparmor_profile.as_deref(), Some("sdme-default"));
    assert_eq!(
        c.system_call_filter[0].value(),
        "~@cpu-emulation @debug @obsolete @raw-io"
    );
    // A config's list replaces the built-in one.
    let f = UnitFile::parse(Path::new("/x.container"), b"[Container]\nHardened=yes\n").unwrap();
    let cfg = Config {
        hardened_drop: vec![5],
        ..Config::default()
    };
    let c = Container::from_unit_with(UnitName::from_stem("w"), Path::new("/x.container"), f, &cfg)
        .unwrap();
    assert_eq!(c.drop_capabilities, [5]);
    let c = load("w", "[Container]\nHardened=yes\nHardened=\n").unwrap();
    assert_eq!(c.preset, None);
    assert!(!c.no_new_privileges);
}

#[test]
fn apparmor_profile() {
    let c = load(
        "w",
        "[Container]\nAppArmorProfile=other\nAppArmorProfile=sdme-default\n",
    )
    .unwrap();
    assert_eq!(c.apparmor_profile.as_deref(), Some("sdme-default"));
    let c = load("w", "[Container]\nAppArmorProfile=x\nAppArmorProfile=\n").unwrap();
    assert_eq!(c.apparmor_profile, None);
    for good in ["/usr/bin/foo", "unconfined", "a.b+c:d@e_f-g", "_x"] {
        assert_eq!(check_apparmor_profile(good), Ok(()), "{good}");
    }
    for bad in ["/", "//", "-x", ".x", "a b", "a%i", "a\tb", "x$y", "\"q\""] {
        let e = load("w", &format!("[Container]\nAppArmorProfile={bad}\n")).unwrap_err();
        assert!(
            e[0].starts_with("/etc/sdme/x.container:2: AppArmorProfile="),
            "{bad}: {e:?}"
        );
    }
    assert!(check_apparmor_profile(&"a".repeat(256)).is_err());
}
