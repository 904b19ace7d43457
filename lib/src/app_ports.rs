//! The image's `ExposedPorts` as nspawn port forwards (`App=`,
//! sdme.container(5) "OCI APPLICATIONS").
//!
//! The generator decides whether they apply (a container with a network of
//! its own and no `Port=` of its file); only sdme-prepare reads the image's
//! configuration (the generator never looks at `/var`). So the container's
//! `ExecStart=` carries `$SDME_APP_NSPAWN` and reads it from an
//! `EnvironmentFile=` that sdme-prepare writes at every start: systemd
//! reads environment files when it runs each command, so `ExecStart=` sees
//! what the prepare step before it wrote.

/// Whether, and how, the image's ports reach nspawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExposePorts {
    /// Not at all: the container shares the host's network (the app's
    /// ports are the host's already), is in a pod, runs its app in an
    /// `AppPod=`, sets `Port=` itself (then only those), or makes its
    /// network with `NspawnArgs=`.
    #[default]
    No,
    /// `--port=` on the container's own link (`VirtualEthernet=`,
    /// `Bridge=`, `Zone=`).
    OnLink,
    /// `PrivateNetwork=` alone (also from `Hardened=`): a loopback device
    /// cannot be forwarded to, so a veth link too, as `Port=` makes one.
    WithVeth,
}

impl ExposePorts {
    /// sdme-prepare's `--app-expose=` value; `None` for [`ExposePorts::No`].
    pub fn option(self) -> Option<&'static str> {
        match self {
            ExposePorts::No => None,
            ExposePorts::OnLink => Some("link"),
            ExposePorts::WithVeth => Some("veth"),
        }
    }

    pub fn parse(v: &str) -> Result<ExposePorts, String> {
        match v {
            "link" => Ok(ExposePorts::OnLink),
            "veth" => Ok(ExposePorts::WithVeth),
            _ => Err("expected 'link' or 'veth'".into()),
        }
    }
}

/// The variable in the container's `ExecStart=`.
pub const NSPAWN_VAR: &str = "SDME_APP_NSPAWN";

/// The environment file below the container's state directory.
pub const NSPAWN_ENV: &str = "app/nspawn.env";

/// nspawn's `--port=` values for the image's `ExposedPorts`
/// (`PORT`, `PORT/tcp`, `PORT/udp`), each on the same host port, in the
/// image's order. An entry nspawn cannot forward is an error that says
/// how to choose the ports instead.
pub fn port_forwards(exposed: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::with_capacity(exposed.len());
    for e in exposed {
        let (port, proto) = e.split_once('/').unwrap_or((e, "tcp"));
        let digits = (1..=5).contains(&port.len()) && port.bytes().all(|b| b.is_ascii_digit());
        let n = port.parse::<u16>().ok().filter(|n| digits && *n > 0);
        let (Some(n), "tcp" | "udp") = (n, proto) else {
            return Err(format!(
                "the image's ExposedPorts has '{}', which nspawn cannot forward (it takes PORT/tcp and PORT/udp): set Port= in the file to choose the forwards",
                e.escape_default()
            ));
        };
        let f = format!("{proto}:{n}:{n}");
        if !out.contains(&f) {
            out.push(f);
        }
    }
    Ok(out)
}

/// The environment file's text: nspawn's options for `forwards`, with a
/// veth link first when `mode` needs one; empty when there is nothing to
/// forward (the container keeps the network its file gave it).
pub fn nspawn_env(mode: ExposePorts, forwards: &[String]) -> String {
    let mut words: Vec<String> = Vec::with_capacity(forwards.len() + 1);
    if mode == ExposePorts::WithVeth && !forwards.is_empty() {
        words.push("--network-veth".into());
    }
    words.extend(forwards.iter().map(|f| format!("--port={f}")));
    format!(
        "# Written by sdme-prepare at every start: the application image's ExposedPorts\n# as nspawn options (sdme.container(5), \"OCI APPLICATIONS\").\n{NSPAWN_VAR}={}\n",
        words.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn ports_of_the_image() {
        let f = port_forwards(&v(&["80/tcp", "53/udp", "8080", "80/tcp"])).unwrap();
        assert_eq!(f, v(&["tcp:80:80", "udp:53:53", "tcp:8080:8080"]));
        assert_eq!(port_forwards(&[]), Ok(vec![]));
        for bad in ["0/tcp", "65536", "80/sctp", "x/tcp", "+80", "080000", ""] {
            let e = port_forwards(&v(&[bad])).unwrap_err();
            assert!(
                e.contains(&format!("'{bad}'")) && e.contains("Port="),
                "{e}"
            );
        }
    }

    #[test]
    fn the_environment_file() {
        let f = v(&["tcp:80:80"]);
        let t = nspawn_env(ExposePorts::WithVeth, &f);
        assert!(
            t.ends_with("\nSDME_APP_NSPAWN=--network-veth --port=tcp:80:80\n"),
            "{t}"
        );
        let t = nspawn_env(ExposePorts::OnLink, &f);
        assert!(t.ends_with("\nSDME_APP_NSPAWN=--port=tcp:80:80\n"), "{t}");
        let t = nspawn_env(ExposePorts::WithVeth, &[]);
        assert!(t.ends_with("\nSDME_APP_NSPAWN=\n"), "{t}");
        for m in [ExposePorts::OnLink, ExposePorts::WithVeth] {
            assert_eq!(ExposePorts::parse(m.option().unwrap()), Ok(m));
        }
        assert_eq!(ExposePorts::No.option(), None);
    }
}
