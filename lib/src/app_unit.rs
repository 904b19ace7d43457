//! The application's unit inside the guest, `sdme-app.service`: the
//! image's OCI configuration (kept by sdme-import in the rootfs's
//! metadata) merged with the container's `App*` keys and `Volume=`.
//!
//! The generator cannot read the metadata (it never looks at `/var`), so
//! it hands the keys to sdme-prepare as arguments ([`AppSettings`]), and
//! sdme-prepare, at each start, reads the image's configuration
//! ([`ImageConfig`]), merges both ([`AppRun::new`]) and writes the unit
//! ([`render_app_unit`]) into the container's upper layer.

use crate::app::{parse_volume, AppExit, Volume};
use crate::app_ports::{port_forwards, ExposePorts};
use crate::escape::{env_word, exec_word, is_env_name, unit_value};
use crate::timespan::format_timespan;

/// The unit's name in the guest.
pub const APP_UNIT: &str = "sdme-app.service";

/// Where the guest sees the application's root: `/oci/apps/APP/root`, the
/// original tool's path.
pub fn app_root_in_guest(app: &str) -> String {
    format!("/oci/apps/{app}/root")
}

/// Where the app's root holds sdme-drop-privs (a read-only bind of the
/// host's helper: nothing is copied into the image), for `ExecStart=`,
/// which systemd resolves inside `RootDirectory=`.
pub const DROP_PRIVS_IN_APP: &str = "/.sdme-drop-privs";

/// With `AppPod=`: where the app's root holds the host's
/// `paths::APP_POD_SOCKET_DIR` (read-only), and sdme-drop-privs' option
/// that makes it ask the host for the app's process there.
pub const APP_POD_IN_APP: &str = "/.sdme-app-pod";
pub const VIA_POD: &str = "--via-pod";

/// The parts of an image's OCI configuration that run the app (as
/// sdme-import keeps them in the rootfs's metadata).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=VALUE`.
    pub env: Vec<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    /// Paths of anonymous volumes.
    pub volumes: Vec<String>,
    pub stop_signal: Option<String>,
    /// `PORT/PROTO`, as the image lists them.
    pub exposed_ports: Vec<String>,
}

/// The container's application keys, as sdme-prepare receives them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppSettings {
    /// The app's rootfs name (`/var/lib/sdme/rootfs/NAME`), also `APP` in
    /// `/oci/apps/APP/root`.
    pub name: String,
    /// `FILE:LINE` of `App=`, for messages.
    pub at: String,
    pub exec: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    pub user: Option<String>,
    /// `NAME=VALUE`, overriding the image's.
    pub environment: Vec<String>,
    pub working_directory: Option<String>,
    pub volumes: Vec<Volume>,
    pub exit: AppExit,
    /// `AppStopTimeout=`: `None` unset; `Some(None)` infinity.
    pub stop_timeout: Option<Option<std::time::Duration>>,
    /// `AppPod=`: the pod whose network namespace the app's process joins
    /// (sdme-prepare records it for the host's spawner, crate docs of
    /// sdme-helpers' `apppod`).
    pub pod: Option<String>,
    /// Whether the image's ExposedPorts become nspawn port forwards (the
    /// generator knows the container's network).
    pub expose: ExposePorts,
}

/// What the unit runs: both sources merged and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppRun {
    /// USER for sdme-drop-privs (`0` when neither sets one).
    pub user: String,
    pub workdir: String,
    pub command: Vec<String>,
    /// `NAME=VALUE`, the image's first (in its order), each name once.
    pub env: Vec<String>,
    /// `KillSignal=`'s value.
    pub kill_signal: Option<String>,
    /// The image's volumes and `Volume=` (which wins for its path), by
    /// path, so that a volume inside another is mounted after it.
    pub volumes: Vec<Volume>,
    /// nspawn's `--port=` values for the image's ExposedPorts (none when
    /// `AppSettings::expose` is [`ExposePorts::No`]).
    pub ports: Vec<String>,
}

impl AppRun {
    /// Merge `img` with `s`; an error names `App=`'s line and the cause.
    pub fn new(s: &AppSettings, img: &ImageConfig) -> Result<AppRun, String> {
        let err = |m: String| format!("{}: App= (rootfs {}): {m}", s.at, s.name);
        let command = match (&s.exec, &s.args) {
            (Some(exec), args) => [exec.as_slice(), args.as_deref().unwrap_or(&[])].concat(),
            (None, args) => {
                let args = args.as_deref().unwrap_or(&img.cmd);
                [img.entrypoint.as_slice(), args].concat()
            }
        };
        if !matches!(command.first(), Some(c) if !c.is_empty()) {
            return Err(err(
                "the image has no Entrypoint and no Cmd, and AppExec= is not set: nothing to run"
                    .into(),
            ));
        }
        let mut env: Vec<String> = Vec::with_capacity(img.env.len() + s.environment.len());
        for e in img.env.iter().chain(&s.environment) {
            let Some((name, _)) = e.split_once('=').filter(|(n, _)| is_env_name(n)) else {
                return Err(err(format!(
                    "the image's Env has '{}', not NAME=VALUE",
                    e.escape_default()
                )));
            };
            let prefix = format!("{name}=");
            match env.iter_mut().find(|x| x.starts_with(&prefix)) {
                Some(x) => x.clone_from(e),
                None => env.push(e.clone()),
            }
        }
        let user = match (&s.user, img.user.as_deref()) {
            (Some(u), _) => u.clone(),
            (None, Some(u)) if !u.is_empty() => {
                crate::app::check_app_user(u)
                    .map_err(|m| err(format!("the image's User '{}': {m}", u.escape_default())))?;
                u.to_string()
            }
            _ => "0".into(),
        };
        let workdir = match (&s.working_directory, img.working_dir.as_deref()) {
            (Some(w), _) => w.clone(),
            (None, Some(w)) if !w.is_empty() => {
                // OCI asks for an absolute path; Docker reads a relative
                // one from the root.
                let w = if w.starts_with('/') {
                    w.to_string()
                } else {
                    format!("/{w}")
                };
                crate::value::check_abs_path(&w, "working directory").map_err(|m| {
                    err(format!(
                        "the image's WorkingDir '{}': {m}",
                        w.escape_default()
                    ))
                })?;
                w
            }
            _ => "/".into(),
        };
        let kill_signal = img
            .stop_signal
            .as_deref()
            .filter(|v| !v.is_empty())
            .map(|v| kill_signal(v).map_err(err))
            .transpose()?;
        let mut volumes: Vec<Volume> = Vec::new();
        for p in &img.volumes {
            // Docker writes them with a trailing slash at times.
            let p = match p.trim_end_matches('/') {
                "" => "/",
                t => t,
            };
            let v = parse_volume(p)
                .ok()
                .filter(|v| v.source.is_none())
                .ok_or_else(|| {
                    err(format!(
                        "the image's volume '{}' is not an absolute, normalized path (or it is /)",
                        p.escape_default()
                    ))
                })?;
            if !volumes.iter().any(|x| x.path == v.path) {
                volumes.push(v);
            }
        }
        for v in &s.volumes {
            volumes.retain(|x| x.path != v.path);
            volumes.push(v.clone());
        }
        volumes.sort_by(|a, b| a.path.cmp(&b.path));
        let ports = match s.expose {
            ExposePorts::No => Vec::new(),
            _ => port_forwards(&img.exposed_ports).map_err(err)?,
        };
        Ok(AppRun {
            user,
            workdir,
            command,
            env,
            kill_signal,
            volumes,
            ports,
        })
    }
}

/// An OCI StopSignal (`SIGQUIT`, `QUIT`, `3`) as `KillSignal=` takes it.
fn kill_signal(v: &str) -> Result<String, String> {
    if !v.is_empty() && v.len() <= 16 {
        if v.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(n @ 1..=64) = v.parse::<u8>() {
                return Ok(n.to_string());
            }
        } else if v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+') {
            let up = v.to_ascii_uppercase();
            return Ok(if up.starts_with("SIG") {
                up
            } else {
                format!("SIG{up}")
            });
        }
    }
    Err(format!(
        "the image's StopSignal '{}' is not a signal name or number",
        v.escape_default()
    ))
}

/// The unit file. `source` is the container's file (for the header).
pub fn render_app_unit(s: &AppSettings, run: &AppRun, source: &str) -> String {
    let mut u = String::with_capacity(1024);
    u.push_str("# Written by sdme-prepare at every start of the container, from App= in\n# ");
    u.push_str(&source.replace('\n', " "));
    u.push_str(" and the image's configuration; edits here are lost.\n");
    u.push_str("# Add a drop-in (sdme-app.service.d/*.conf) to change it.\n");
    u.push_str("\n[Unit]\nDescription=sdme application ");
    u.push_str(&unit_value(&s.name));
    u.push_str("\nDocumentation=man:sdme.container(5) man:sdme-drop-privs(8)\n");
    if s.exit == AppExit::Stop {
        // The guest's manager exits with the app's status, which nspawn
        // and so the container's unit report (systemd.unit(5),
        // SuccessAction=, FailureActionExitStatus=).
        u.push_str("SuccessAction=exit\nFailureAction=exit\n");
    }
    u.push_str("\n[Service]\nType=exec\nRootDirectory=");
    u.push_str(&unit_value(&app_root_in_guest(&s.name)));
    u.push_str("\nMountAPIVFS=yes\n");
    for e in &run.env {
        u.push_str("Environment=");
        u.push_str(&env_word(e));
        u.push('\n');
    }
    u.push_str("ExecStart=");
    u.push_str(DROP_PRIVS_IN_APP);
    if s.pod.is_some() {
        // The host makes the app's process in the pod's network; this
        // one waits for it and ends with its status (sdme-drop-privs(8)).
        u.push(' ');
        u.push_str(VIA_POD);
    }
    for w in [run.user.as_str(), run.workdir.as_str(), "--"] {
        u.push(' ');
        u.push_str(&exec_word(w));
    }
    for w in &run.command {
        u.push(' ');
        u.push_str(&exec_word(w));
    }
    u.push('\n');
    if let Some(sig) = &run.kill_signal {
        u.push_str("KillSignal=");
        u.push_str(sig);
        u.push('\n');
    }
    if let Some(t) = s.stop_timeout {
        u.push_str("TimeoutStopSec=");
        u.push_str(&format_timespan(t));
        u.push('\n');
    }
    if s.exit == AppExit::Restart {
        u.push_str("Restart=on-failure\n");
    }
    u.push_str("\n[Install]\nWantedBy=multi-user.target\n");
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AppSettings {
        AppSettings {
            name: "web".into(),
            at: "/etc/sdme/w.container:3".into(),
            ..Default::default()
        }
    }

    fn image() -> ImageConfig {
        ImageConfig {
            entrypoint: vec!["/docker-entrypoint.sh".into()],
            cmd: vec!["nginx".into(), "-g".into(), "daemon off;".into()],
            env: vec!["PATH=/usr/bin".into(), "A=1".into()],
            user: Some("101".into()),
            working_dir: Some("/srv".into()),
            volumes: vec!["/var/cache/nginx/".into()],
            stop_signal: Some("SIGQUIT".into()),
            exposed_ports: vec!["80/tcp".into(), "443/sctp".into()],
        }
    }

    #[test]
    fn the_ports_only_where_the_container_forwards_them() {
        assert_eq!(
            AppRun::new(&settings(), &image()).unwrap().ports,
            [] as [&str; 0]
        );
        let mut s = settings();
        s.expose = ExposePorts::WithVeth;
        let e = AppRun::new(&s, &image()).unwrap_err();
        assert!(e.starts_with("/etc/sdme/w.container:3: App= (rootfs web): the image's ExposedPorts has '443/sctp'"), "{e}");
        let mut img = image();
        img.exposed_ports.pop();
        assert_eq!(AppRun::new(&s, &img).unwrap().ports, ["tcp:80:80"]);
    }

    #[test]
    fn the_image_alone() {
        let r = AppRun::new(&settings(), &image()).unwrap();
        assert_eq!(
            r.command,
            ["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]
        );
        assert_eq!((r.user.as_str(), r.workdir.as_str()), ("101", "/srv"));
        assert_eq!(r.kill_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(r.volumes[0].path, "/var/cache/nginx");
        let u = render_app_unit(&settings(), &r, "/etc/sdme/w.container");
        assert!(u.contains("\nRootDirectory=/oci/apps/web/root\n"), "{u}");
        assert!(
            u.contains("\nExecStart=/.sdme-drop-privs 101 /srv -- /docker-entrypoint.sh nginx -g \"daemon off;\"\n"),
            "{u}"
        );
        assert!(
            u.contains("\nKillSignal=SIGQUIT\nRestart=on-failure\n"),
            "{u}"
        );
        assert!(
            !u.contains("TimeoutStopSec") && !u.contains("Action="),
            "{u}"
        );
    }

    #[test]
    fn the_keys_override_the_image() {
        let mut s = settings();
        s.args = Some(vec!["-c".into(), "x".into()]);
        s.environment = vec!["A=2 %h $HOME".into(), "B=3".into()];
        s.user = Some("app:data".into());
        s.working_directory = Some("/w".into());
        s.volumes = vec![
            parse_volume("/h:/var/cache/nginx:ro").unwrap(),
            parse_volume("/a").unwrap(),
        ];
        s.exit = AppExit::Stop;
        s.stop_timeout = Some(Some(std::time::Duration::from_secs(5)));
        let r = AppRun::new(&s, &image()).unwrap();
        assert_eq!(r.command, ["/docker-entrypoint.sh", "-c", "x"]);
        assert_eq!(r.env, ["PATH=/usr/bin", "A=2 %h $HOME", "B=3"]);
        let paths: Vec<(&str, bool)> = r
            .volumes
            .iter()
            .map(|v| (v.path.as_str(), v.read_only))
            .collect();
        assert_eq!(paths, [("/a", false), ("/var/cache/nginx", true)]);
        let u = render_app_unit(&s, &r, "/etc/sdme/w.container");
        assert!(u.contains("\nEnvironment=\"A=2 %%h $HOME\"\n"), "{u}");
        assert!(
            u.contains("\nExecStart=/.sdme-drop-privs app:data /w -- "),
            "{u}"
        );
        assert!(
            u.contains("SuccessAction=exit\nFailureAction=exit\n"),
            "{u}"
        );
        assert!(
            u.contains("\nTimeoutStopSec=5s\n") && !u.contains("Restart="),
            "{u}"
        );
        s.exec = Some(vec!["/bin/sh".into(), "-c".into(), "echo $$X 100%".into()]);
        s.args = None;
        let r = AppRun::new(&s, &image()).unwrap();
        let u = render_app_unit(&s, &r, "/etc/sdme/w.container");
        assert!(u.contains(" -- /bin/sh -c \"echo $$$$X 100%%\"\n"), "{u}");
        s.pod = Some("grp".into());
        let u = render_app_unit(&s, &r, "/etc/sdme/w.container");
        assert!(
            u.contains("\nExecStart=/.sdme-drop-privs --via-pod app:data /w -- /bin/sh "),
            "{u}"
        );
    }

    #[test]
    fn defaults_and_errors() {
        let img = ImageConfig {
            cmd: vec!["/app".into()],
            working_dir: Some("data".into()),
            ..Default::default()
        };
        let r = AppRun::new(&settings(), &img).unwrap();
        assert_eq!((r.user.as_str(), r.workdir.as_str()), ("0", "/data"));
        let e = AppRun::new(&settings(), &ImageConfig::default()).unwrap_err();
        assert_eq!(
            e,
            "/etc/sdme/w.container:3: App= (rootfs web): the image has no Entrypoint and no Cmd, and AppExec= is not set: nothing to run"
        );
        for (bad, what) in [
            (
                ImageConfig {
                    volumes: vec!["data".into()],
                    ..img.clone()
                },
                "volume 'data'",
            ),
            (
                ImageConfig {
                    volumes: vec!["/".into()],
                    ..img.clone()
                },
                "volume '/'",
            ),
            (
                ImageConfig {
                    volumes: vec!["/a/../b".into()],
                    ..img.clone()
                },
                "volume",
            ),
            (
                ImageConfig {
                    env: vec!["1X=2".into()],
                    ..img.clone()
                },
                "Env has '1X=2'",
            ),
            (
                ImageConfig {
                    stop_signal: Some("SIG TERM".into()),
                    ..img.clone()
                },
                "StopSignal",
            ),
            (
                ImageConfig {
                    user: Some("a b".into()),
                    ..img.clone()
                },
                "User 'a b'",
            ),
        ] {
            let e = AppRun::new(&settings(), &bad).unwrap_err();
            assert!(
                e.starts_with("/etc/sdme/w.container:3: App= (rootfs web): ") && e.contains(what),
                "{e}"
            );
        }
        assert_eq!(kill_signal("quit"), Ok("SIGQUIT".into()));
        assert_eq!(kill_signal("15"), Ok("15".into()));
        assert!(kill_signal("99").is_err());
    }
}
