//! `PrivateNetwork=`, `VirtualEthernet=`, `Bridge=`, `Zone=`, `Port=` and
//! `Pod=`: a network of the container's own, or its pod's.

use std::collections::BTreeMap;

use crate::diag::Diag;
use crate::name::check_pod_name;
use crate::search::UnitName;
use crate::sections::Shared;
use crate::syntax::{Entry, Location};
use crate::value::check_ifname;

/// The keys that give a container a network of its own, which a pod
/// member cannot have.
const OWN_NETWORK_KEYS: [&str; 5] = [
    "PrivateNetwork",
    "VirtualEthernet",
    "Bridge",
    "Zone",
    "Port",
];

#[derive(Default)]
pub(super) struct Network {
    pub(super) private_network: bool,
    pub(super) virtual_ethernet: bool,
    pub(super) bridge: Option<String>,
    zone: Option<(String, Location)>,
    pub(super) ports: Vec<String>,
    pod: Option<(String, Location)>,
    /// [`OWN_NETWORK_KEYS`] in effect, with the line that set them (to
    /// refuse them next to `Pod=`).
    net_at: BTreeMap<&'static str, Location>,
}

impl Network {
    /// This concern's `[Container]` keys; false for any other key.
    pub(super) fn key(&mut self, f: &mut Shared, e: &Entry) -> bool {
        let v = e.value.as_str();
        match e.key.as_str() {
            "PrivateNetwork" => self.private_network = f.bool(e),
            "VirtualEthernet" => self.virtual_ethernet = f.bool(e),
            "Bridge" => {
                self.bridge = if v.is_empty() {
                    None
                } else {
                    f.check(e, check_ifname(v, "bridge", 15))
                        .map(|_| v.to_string())
                };
            }
            "Zone" => {
                // nspawn names the bridge "vz-ZONE", so 12 bytes are left.
                self.zone = if v.is_empty() {
                    None
                } else {
                    f.check(e, check_ifname(v, "zone", 12))
                        .map(|_| (v.to_string(), e.at.clone()))
                };
            }
            "Port" => {
                if v.is_empty() {
                    self.ports.clear();
                } else if let Some(()) = f.check(e, check_port(v)) {
                    self.ports.push(v.to_string());
                }
            }
            "Pod" => self.pod_key(f, e),
            _ => return false,
        }
        if let Some(k) = OWN_NETWORK_KEYS.iter().copied().find(|k| *k == e.key) {
            if v.is_empty() {
                self.net_at.remove(k);
            } else {
                self.net_at.insert(k, e.at.clone());
            }
        }
        true
    }

    fn pod_key(&mut self, f: &mut Shared, e: &Entry) {
        let v = e.value.as_str();
        if v.is_empty() {
            self.pod = None;
            return;
        }
        let r = match v.strip_suffix(".pod") {
            Some(n) => check_pod_ref(n, &f.name),
            None => Err("expected the name of a pod file, NAME.pod".into()),
        };
        if let Some(n) = f.check(e, r) {
            self.pod = Some((n, e.at.clone()));
        }
    }

    /// A pod member has no network of its own; nspawn attaches the veth
    /// to one bridge.
    pub(super) fn check(&self, f: &mut Shared) {
        if let Some((pod, pod_at)) = &self.pod {
            let set = [
                ("PrivateNetwork", self.private_network),
                ("VirtualEthernet", self.virtual_ethernet),
                ("Bridge", self.bridge.is_some()),
                ("Zone", self.zone.is_some()),
                ("Port", !self.ports.is_empty()),
            ];
            for (k, on) in set {
                if let (true, Some(at)) = (on, self.net_at.get(k)) {
                    f.diags.push(Diag::at(
                        pod_at,
                        format!(
                            "Pod={pod}.pod cannot be combined with {k}= (at {at}): a pod member uses the pod's network namespace"
                        ),
                    ));
                }
            }
        }
        if let (Some(_), Some((_, at))) = (&self.bridge, &self.zone) {
            f.diags.push(Diag::at(
                at,
                "Bridge= and Zone= cannot both be set (nspawn attaches the veth to one bridge)",
            ));
        }
    }

    pub(super) fn zone(&mut self) -> Option<String> {
        self.zone.take().map(|(z, _)| z)
    }

    /// The pod to join: an instance joins the pod instance named like
    /// itself (`Pod=NAME@%i.pod`).
    pub(super) fn pod(&mut self, name: &UnitName) -> Option<(String, Location)> {
        self.pod.take().map(|(p, at)| match name {
            UnitName::Instance { instance, .. } => (p.replace("@%i", &format!("@{instance}")), at),
            _ => (p, at),
        })
    }
}

/// Check the pod a container names with `Pod=`: `NAME`, `NAME@INSTANCE`,
/// or in a container template (and its instances) `NAME@%i`, the pod
/// instance named like the container instance.
pub(super) fn check_pod_ref(n: &str, container: &UnitName) -> Result<String, String> {
    match n.split_once('@') {
        Some((t, "")) => Err(format!(
            "{t}@.pod is a pod template; name one of its instances, {t}@INSTANCE.pod (or {t}@%i.pod in a container template)"
        )),
        Some((t, "%i")) => {
            if matches!(container, UnitName::Plain(_)) {
                return Err(format!(
                    "%i (the instance name) only applies in a template (NAME@.container); name the pod instance, {t}@INSTANCE.pod"
                ));
            }
            check_pod_name(t).map(|_| n.to_string())
        }
        _ => check_pod_name(n).map(|_| n.to_string()),
    }
}

/// nspawn's `--port=[PROTOCOL:]HOSTPORT[:CONTAINERPORT]`.
fn check_port(v: &str) -> Result<(), String> {
    let (proto, rest) = match v.split_once(':') {
        Some((p @ ("tcp" | "udp"), r)) => (p, r),
        _ => ("tcp", v),
    };
    let _ = proto;
    let mut ports = rest.split(':');
    let mut n = 0;
    for p in ports.by_ref() {
        n += 1;
        if n > 2 || p.parse::<u16>().map_or(true, |x| x == 0) {
            return Err("expected [tcp:|udp:]HOSTPORT[:CONTAINERPORT] with ports 1-65535".into());
        }
    }
    Ok(())
}
