//! [`AppSettings`] on sdme-prepare's command line: the generator writes
//! them as options ([`AppSettings::options`]) and sdme-prepare reads them
//! back ([`AppOptions`]). One list of options and one checker for both
//! ends, so that they cannot disagree.

use crate::app::{check_app_user, parse_app_exit, parse_volume, AppExit};
use crate::app_ports::ExposePorts;
use crate::app_unit::AppSettings;
use crate::escape::is_env_name;
use crate::timespan::{format_timespan, parse_timespan};

/// Every option, as sdme-prepare(8) documents it.
const OPTIONS: [&str; 12] = [
    "--app",
    "--app-at",
    "--app-exec",
    "--app-args",
    "--app-user",
    "--app-env",
    "--app-workdir",
    "--volume",
    "--app-exit",
    "--app-stop-timeout",
    "--app-pod",
    "--app-expose",
];

impl AppSettings {
    /// `(option, value)` pairs for sdme-prepare, in a fixed order (the
    /// generator's output is deterministic).
    pub fn options(&self) -> Vec<(&'static str, String)> {
        let mut o = vec![("--app", self.name.clone()), ("--app-at", self.at.clone())];
        for (k, words) in [("--app-exec", &self.exec), ("--app-args", &self.args)] {
            o.extend(words.iter().flatten().map(|w| (k, w.clone())));
        }
        o.extend(self.user.iter().map(|u| ("--app-user", u.clone())));
        o.extend(self.environment.iter().map(|e| ("--app-env", e.clone())));
        o.extend((self.working_directory.iter()).map(|w| ("--app-workdir", w.clone())));
        o.extend(self.volumes.iter().map(|v| ("--volume", v.spec())));
        if self.exit == AppExit::Stop {
            o.push(("--app-exit", "stop".into()));
        }
        if let Some(t) = self.stop_timeout {
            o.push(("--app-stop-timeout", format_timespan(t)));
        }
        o.extend(self.pod.iter().map(|p| ("--app-pod", p.clone())));
        o.extend(self.expose.option().map(|e| ("--app-expose", e.into())));
        o
    }
}

/// The application's options, gathered while sdme-prepare parses its
/// command line.
#[derive(Default)]
pub struct AppOptions {
    given: Vec<(&'static str, String)>,
}

impl AppOptions {
    /// Take the option `key` if it is one of these, with its value from
    /// `value` (called with the option's name).
    pub fn take<E>(
        &mut self,
        key: &str,
        value: impl FnOnce(&'static str) -> Result<String, E>,
    ) -> Result<bool, E> {
        let Some(k) = OPTIONS.iter().copied().find(|k| *k == key) else {
            return Ok(false);
        };
        let v = value(k)?;
        self.given.push((k, v));
        Ok(true)
    }

    /// The settings, checked as the generator checked the keys; `None`
    /// without any option. An error names the option and its value.
    pub fn finish(self) -> Result<Option<AppSettings>, String> {
        let mut s = AppSettings::default();
        let mut name = None;
        for (k, v) in &self.given {
            let shown = || format!("{k}={}", v.escape_default());
            set(&mut s, &mut name, k, v).map_err(|e| format!("{}: {e}", shown()))?;
        }
        match (name, self.given.first()) {
            (Some(n), _) => s.name = n,
            (None, Some((k, _))) => return Err(format!("{k} goes with --app=ROOTFS only")),
            (None, None) => return Ok(None),
        }
        if s.at.is_empty() {
            s.at = "App=".into();
        }
        Ok(Some(s))
    }
}

/// One option into `s` (`--app` into `name`), checked.
fn set(s: &mut AppSettings, name: &mut Option<String>, k: &str, v: &str) -> Result<(), String> {
    let push = |w: &mut Option<Vec<String>>| w.get_or_insert_with(Vec::new).push(v.into());
    match k {
        "--app" => *name = Some(crate::name::check_rootfs_name(v).map(|()| v.into())?),
        "--app-at" => s.at = v.into(),
        "--app-exec" => push(&mut s.exec),
        "--app-args" => push(&mut s.args),
        "--app-user" => s.user = Some(check_app_user(v).map(|()| v.into())?),
        "--app-env" => {
            let ok = v.split_once('=').is_some_and(|(n, _)| is_env_name(n));
            s.environment
                .push(ok.then(|| v.into()).ok_or("not NAME=VALUE")?);
        }
        "--app-workdir" => {
            crate::value::check_abs_path(v, "working directory")?;
            s.working_directory = Some(v.into());
        }
        "--volume" => s.volumes.push(parse_volume(v)?),
        "--app-exit" => s.exit = parse_app_exit(v)?,
        "--app-pod" => s.pod = Some(crate::name::check_pod_name(v).map(|()| v.into())?),
        "--app-expose" => s.expose = ExposePorts::parse(v)?,
        _ => s.stop_timeout = Some(parse_timespan(v)?),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn read(o: &[(&str, &str)]) -> Result<Option<AppSettings>, String> {
        let mut a = AppOptions::default();
        for (k, v) in o {
            assert!(
                a.take(k, |_| Ok::<_, String>(v.to_string())).unwrap(),
                "{k}"
            );
        }
        a.finish()
    }

    #[test]
    fn what_the_generator_writes_is_read_back() {
        let s = AppSettings {
            name: "web".into(),
            at: "/etc/sdme/w.container:3".into(),
            exec: Some(vec!["/bin/sh".into(), "-c".into(), "echo a b".into()]),
            args: Some(vec!["x".into()]),
            user: Some("101:101".into()),
            environment: vec!["A=1".into(), "B= two".into()],
            working_directory: Some("/srv".into()),
            volumes: vec![
                parse_volume("/data").unwrap(),
                parse_volume("/h:/c:ro").unwrap(),
            ],
            exit: AppExit::Stop,
            stop_timeout: Some(Some(Duration::from_secs(90))),
            pod: Some("grp@one".into()),
            expose: ExposePorts::WithVeth,
        };
        let o = s.options();
        let o: Vec<(&str, &str)> = o.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(read(&o), Ok(Some(s)));
        let bare = AppSettings {
            name: "web".into(),
            at: "App=".into(),
            ..Default::default()
        };
        assert_eq!(read(&[("--app", "web")]), Ok(Some(bare)));
        assert_eq!(read(&[]), Ok(None));
        let forever = read(&[("--app", "w"), ("--app-stop-timeout", "infinity")]);
        assert_eq!(forever.unwrap().unwrap().stop_timeout, Some(None));
    }

    #[test]
    fn bad_options_are_named() {
        let mut a = AppOptions::default();
        assert_eq!(
            a.take("--lower", |_| Ok::<_, String>("x".into())),
            Ok(false)
        );
        for (o, want) in [
            (
                vec![("--app-user", "a")],
                "--app-user goes with --app=ROOTFS only",
            ),
            (
                vec![("--app", "web"), ("--app-user", "a b")],
                "--app-user=a b: ",
            ),
            (
                vec![("--app", "web"), ("--app-env", "1=x")],
                "--app-env=1=x: not NAME=VALUE",
            ),
            (
                vec![("--app", "web"), ("--app-workdir", "srv")],
                "--app-workdir=srv: ",
            ),
            (
                vec![("--app", "web"), ("--volume", "/a:/b:xx")],
                "--volume=/a:/b:xx: ",
            ),
            (
                vec![("--app", "web"), ("--app-exit", "never")],
                "--app-exit=never: ",
            ),
            (vec![("--app", "../x")], "--app=../x: "),
            (
                vec![("--app", "web"), ("--app-pod", "a/b")],
                "--app-pod=a/b: ",
            ),
            (
                vec![("--app", "web"), ("--app-expose", "all")],
                "--app-expose=all: expected",
            ),
        ] {
            let e = read(&o).unwrap_err();
            assert!(e.starts_with(want), "{o:?}: {e}");
        }
    }
}
