//! The `[Container]` keys, one row each. The CLI builds its `create`
//! options from this table and writes the keys in its order; the tests
//! below hold it equal to the keys the parsers in `container/` accept
//! (one concern's module each), so a key added there without a row here
//! fails the build's tests.

/// How a key's values are given on a command line and written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    /// One value, one line.
    One,
    /// Repeatable: one line per value.
    Many,
    /// Repeatable: each value is one word of the key's word list, quoted
    /// as systemd splits words (`Environment=`, `NspawnArgs=`).
    Words,
    /// A switch: present means `KEY=yes`.
    Flag,
}

/// One `[Container]` key.
#[derive(Clone, Copy, Debug)]
pub struct Key {
    /// The key as written in the file.
    pub key: &'static str,
    /// The `sdme create` long option; `None` when the CLI does not offer
    /// it (`MachineName=`: the CLI's NAME is the machine name).
    pub option: Option<&'static str>,
    pub short: Option<char>,
    pub arity: Arity,
    /// Appended to the option's value in the file (`--pod web` gives
    /// `Pod=web.pod`).
    pub suffix: &'static str,
    pub value_name: &'static str,
    pub help: &'static str,
}

const fn key(
    key: &'static str,
    option: Option<&'static str>,
    short: Option<char>,
    arity: Arity,
    value_name: &'static str,
    help: &'static str,
) -> Key {
    Key {
        key,
        option,
        short,
        arity,
        suffix: "",
        value_name,
        help,
    }
}

use Arity::{Flag, Many, One, Words};

/// Every `[Container]` key, in the order `sdme create` writes them.
#[rustfmt::skip]
pub const CONTAINER_KEYS: [Key; 39] = [
    key("Rootfs", Some("rootfs"), Some('r'), One, "NAME|DIR", "Rootfs=: an imported rootfs, NAME.image, NAME.build or a directory (default: a clone of the host)"),
    key("Image", Some("image"), None, One, "REF", "Image=: import REF before the first start and boot it"),
    key("MachineName", None, None, One, "NAME", "MachineName="),
    key("Hostname", Some("hostname"), None, One, "NAME", "Hostname="),
    Key { suffix: ".pod", ..key("Pod", Some("pod"), None, One, "POD", "Pod=POD.pod: join the pod's network namespace") },
    key("PrivateUsers", Some("userns"), Some('u'), Flag, "", "PrivateUsers=yes: a user namespace of its own"),
    key("Hardened", Some("hardened"), None, Flag, "", "Hardened=yes"),
    key("Strict", Some("strict"), None, Flag, "", "Strict=yes"),
    key("Bind", Some("bind"), Some('b'), Many, "SRC[:DST[:OPTS]]", "Bind= (repeatable)"),
    key("BindReadOnly", Some("bind-ro"), None, Many, "SRC[:DST[:OPTS]]", "BindReadOnly= (repeatable)"),
    key("Environment", Some("env"), Some('e'), Words, "NAME=VALUE", "Environment= (repeatable)"),
    key("OpaqueDir", Some("opaque-dir"), Some('o'), Many, "DIR", "OpaqueDir= (repeatable)"),
    key("NestedSdme", Some("nested-sdme"), None, Flag, "", "NestedSdme=yes: the rootfs's sdme files and state stay visible"),
    key("ServiceEnvironment", Some("service-env"), None, Words, "NAME=VALUE", "ServiceEnvironment=: for every service inside (repeatable)"),
    key("PrivateNetwork", Some("private-network"), None, Flag, "", "PrivateNetwork=yes"),
    key("VirtualEthernet", Some("virtual-ethernet"), None, Flag, "", "VirtualEthernet=yes"),
    key("Bridge", Some("bridge"), None, One, "IFNAME", "Bridge="),
    key("Zone", Some("zone"), None, One, "NAME", "Zone="),
    key("Port", Some("port"), Some('p'), Many, "[PROTO:]HOST[:CONTAINER]", "Port= (repeatable)"),
    key("Capability", Some("capability"), None, Many, "CAP", "Capability= (repeatable)"),
    key("DropCapability", Some("drop-capability"), None, Many, "CAP", "DropCapability= (repeatable)"),
    key("NoNewPrivileges", Some("no-new-privileges"), None, Flag, "", "NoNewPrivileges=yes"),
    key("ReadOnly", Some("read-only"), None, Flag, "", "ReadOnly=yes"),
    key("SystemCallFilter", Some("system-call-filter"), None, Many, "LIST", "SystemCallFilter= (repeatable)"),
    key("AppArmorProfile", Some("apparmor-profile"), None, One, "PROFILE", "AppArmorProfile="),
    key("BootTimeout", Some("boot-timeout"), None, One, "TIMESPAN", "BootTimeout="),
    key("WaitFor", Some("wait-for"), None, Many, "UNIT", "WaitFor= (repeatable)"),
    key("LogConsole", Some("log-console"), None, Flag, "", "LogConsole=yes: the guest's console in the unit's journal"),
    key("NspawnArgs", Some("nspawn-arg"), None, Words, "ARG", "NspawnArgs=: one systemd-nspawn option (repeatable)"),
    // OCI applications.
    key("App", Some("app"), None, One, "REF|NAME|NAME.image", "App=: the OCI application image run inside the guest"),
    key("AppExec", Some("app-exec"), None, Words, "ARG", "AppExec=: the command, instead of the image's Entrypoint and Cmd"),
    key("AppArgs", Some("app-args"), None, Words, "ARG", "AppArgs=: the arguments, instead of the image's Cmd"),
    key("AppUser", Some("app-user"), None, One, "USER[:GROUP]", "AppUser=: the user, instead of the image's User"),
    key("AppEnvironment", Some("app-env"), None, Words, "NAME=VALUE", "AppEnvironment=: added to the image's Env (repeatable)"),
    key("AppWorkingDirectory", Some("app-workdir"), None, One, "DIR", "AppWorkingDirectory=: instead of the image's WorkingDir"),
    key("Volume", Some("volume"), None, Many, "[SRC:]/PATH[:ro]", "Volume=: a volume of the application (repeatable)"),
    Key { suffix: ".pod", ..key("AppPod", Some("app-pod"), None, One, "POD", "AppPod=POD.pod: the application joins the pod's network namespace") },
    key("AppExit", Some("app-exit"), None, One, "restart|stop", "AppExit=: what the application's end does to the container"),
    key("AppStopTimeout", Some("app-stop-timeout"), None, One, "TIMESPAN", "AppStopTimeout=: how long the application has to stop"),
];

/// The row of `key`.
pub fn container_key(key: &str) -> Option<&'static Key> {
    CONTAINER_KEYS.iter().find(|k| k.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::Container;
    use crate::search::UnitName;
    use crate::syntax::UnitFile;
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// The keys each concern's parser names, by file: the quoted names of
    /// the `match` arms in its `fn key(`, up to its `_ => return false`.
    fn parser_keys() -> BTreeMap<String, String> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/container");
        let mut keys = BTreeMap::new();
        for f in std::fs::read_dir(dir).unwrap() {
            let path = f.unwrap().path();
            let src = std::fs::read_to_string(&path).unwrap();
            let Some(start) = src.find("fn key(") else {
                continue;
            };
            let end = start
                + src[start..]
                    .find("_ => return false")
                    .expect("no fallthrough arm");
            let file = path.file_name().unwrap().to_string_lossy().to_string();
            for line in src[start..end].lines() {
                let t = line.trim_start();
                // Arms are `"Key" =>` or `"A" | "B" =>` at the start of a line.
                if !t.starts_with('"') || !t.contains("=>") {
                    continue;
                }
                let arm = &t[..t.find("=>").unwrap()];
                for part in arm.split('|') {
                    let key = part.trim().trim_matches('"').to_string();
                    if let Some(other) = keys.insert(key.clone(), file.clone()) {
                        panic!("{key} is parsed in {other} and in {file}");
                    }
                }
            }
        }
        keys
    }

    #[test]
    fn table_equals_the_parsers_keys() {
        let table: BTreeSet<String> = CONTAINER_KEYS.iter().map(|k| k.key.to_string()).collect();
        let parsed: BTreeSet<String> = parser_keys().into_keys().collect();
        assert_eq!(table, parsed);
        assert_eq!(table.len(), CONTAINER_KEYS.len(), "a key is listed twice");
    }

    #[test]
    fn every_row_is_a_known_key() {
        for k in &CONTAINER_KEYS {
            let text = format!("[Container]\n{}=yes\n", k.key);
            let path = Path::new("/etc/sdme/t.container");
            let file = UnitFile::parse(path, text.as_bytes()).unwrap();
            if let Err(diags) = Container::from_unit(UnitName::Plain("t".into()), path, file) {
                for d in diags {
                    assert!(!d.message.contains("unknown key"), "{}: {d}", k.key);
                }
            }
        }
    }

    #[test]
    fn options_are_unique() {
        let opts: Vec<_> = CONTAINER_KEYS.iter().filter_map(|k| k.option).collect();
        let set: BTreeSet<_> = opts.iter().collect();
        assert_eq!(opts.len(), set.len());
        let shorts: Vec<_> = CONTAINER_KEYS.iter().filter_map(|k| k.short).collect();
        let set: BTreeSet<_> = shorts.iter().collect();
        assert_eq!(shorts.len(), set.len());
    }
}
