//! Units for containers that run while their file is removed or broken.
//!
//! A daemon-reload replaces a running container's unit with whatever the
//! generator writes now. Without its file there is no unit at all
//! ("not-found"), and with errors in it there is an error unit
//! ([`crate::broken`], `Type=oneshot`); either way the running container
//! would lose how it stops: systemd's defaults (`KillMode=control-group`)
//! then send SIGTERM to every process at once, the guest's PID 1 included,
//! which takes it as "re-execute" (whether nspawn's halt wins is a race;
//! the stop may end in SIGKILL after 90 s), and nothing unmounts the
//! overlay (measured on systemd 252 and 257: overlay and ID-mapped layers
//! left mounted).
//!
//! So the generator reads the records `sdme-prepare` writes at every
//! start ([`crate::inuse`], `/run/sdme/inuse/MACHINE`: the unit, machine
//! and file of each container whose stop step has not run yet) and, for
//! each recorded unit that no file generates any more, writes an *orphan
//! unit* of that name: the stop half of a container's service, exactly as
//! [`crate::render`] writes it (`Type=notify`, `KillMode=mixed`, the same
//! `ExecStopPost=` unmount line for the recorded machine, `Slice=`,
//! `Delegate=`...), and a start that fails, printing why (the file was
//! removed, or its errors). `Description=` says why too, so `systemctl
//! status` shows it in its first line.
//!
//! Records are root's files in a tmpfs, but they are still read as
//! outside input: at most [`crate::inuse::MAX_RECORDS`] of bounded size,
//! the unit name must be one a container file could have had, and the
//! state directory is derived from the (validated) machine name, never
//! taken from the record; a record whose `merged=` is not that machine's
//! is ignored.
//!
//! A stale record (the stop step never ran) gives an orphan unit for a
//! container that does not run: its start fails with the same message,
//! and the failed start's `ExecStopPost=` removes the record, so the next
//! daemon-reload drops the unit.

use std::path::{Path, PathBuf};

use crate::broken::{first_error, one_line, push_report_exec, report_lines, Broken};
use crate::escape::{mount_unit_name, unit_value};
use crate::inuse::Record;
use crate::name::check_machine_name;
use crate::paths;
use crate::render::{push_stop_half, unit_service_name, Output};
use crate::search::UnitName;

/// Static template units sdme ships: no record may name their instances.
const STATIC_TEMPLATES: [&str; 2] = ["prepare", "explain"];

/// A container that runs (or ran and was not stopped through its unit),
/// from its record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Running {
    /// Its service: `sdme-web.service`, `sdme-web@a.service`.
    pub unit: String,
    pub machine: String,
    /// Its file, when the record names one.
    pub source: Option<PathBuf>,
}

impl Running {
    /// The running container of `rec`; `None` for a record without a unit
    /// (older versions), with a unit no container file could have, or
    /// with a `merged=` that is not its machine's.
    pub fn from_record(rec: &Record) -> Option<Running> {
        check_machine_name(&rec.machine).ok()?;
        let dir = paths::container_dir(&rec.machine);
        if rec.merged != dir.join("merged") {
            return None;
        }
        let unit = rec.unit.as_deref()?;
        crate::value::check_unit_name(unit, "unit").ok()?;
        let stem = unit.strip_prefix("sdme-")?.strip_suffix(".service")?;
        let name = UnitName::from_stem(stem);
        match &name {
            UnitName::Plain(s) => check_machine_name(s).ok()?,
            // A template's unit never runs; its instances do.
            UnitName::Template(_) => return None,
            UnitName::Instance { template, instance } => {
                check_machine_name(template).ok()?;
                if STATIC_TEMPLATES.contains(&template.as_str())
                    || instance.contains('@')
                    || instance.is_empty()
                {
                    return None;
                }
            }
        }
        if unit_service_name(&name) != unit {
            return None;
        }
        Some(Running {
            unit: unit.to_string(),
            machine: rec.machine.clone(),
            source: rec.source.clone(),
        })
    }

    /// `sdme-web@.service` for an instance `sdme-web@a.service`.
    fn template_unit(&self) -> Option<String> {
        let (t, _) = self.unit.split_once('@')?;
        Some(format!("{t}@.service"))
    }
}

/// Why a running container's unit is an orphan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// No file declares it any more; `masked`: a file of its name is
    /// masked.
    Removed { masked: bool },
    /// Its file (or, for an instance, its template) has errors.
    Errors(Box<Broken>),
}

/// The unit of a running container that no file generates any more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Orphan {
    pub running: Running,
    pub cause: Cause,
}

/// The running containers of `records`, one per unit (the first record by
/// machine name wins, records come sorted), in unit order.
pub fn running(records: &[Record]) -> Vec<Running> {
    let mut v: Vec<Running> = records.iter().filter_map(Running::from_record).collect();
    // Stable: among records of one unit the first by machine stays.
    v.sort_by(|a, b| a.unit.cmp(&b.unit));
    v.dedup_by(|a, b| a.unit == b.unit);
    v
}

/// The orphans among `running`: those whose unit `served` says no good
/// file generates (neither the unit nor, for an instance, its template).
/// An error unit of the same name is taken out of `broken` (the orphan
/// unit replaces it, with the same errors); a broken template keeps its
/// error unit for other instances. `masked`: the files skipped as masked.
pub fn find(
    running: &[Running],
    served: impl Fn(&str) -> bool,
    broken: &mut Vec<Broken>,
    masked: &[PathBuf],
) -> Vec<Orphan> {
    let mut out = Vec::new();
    for r in running {
        if served(&r.unit) {
            continue;
        }
        // An error unit of its own name (a broken declared instance
        // shadows a good template) comes before the template.
        if let Some(i) = broken.iter().position(|b| b.unit == r.unit) {
            out.push(Orphan {
                running: r.clone(),
                cause: Cause::Errors(Box::new(broken.remove(i))),
            });
            continue;
        }
        let template = r.template_unit();
        if template.as_deref().is_some_and(&served) {
            continue;
        }
        let cause = if let Some(b) = (broken.iter()).find(|b| Some(&b.unit) == template.as_ref()) {
            Cause::Errors(Box::new(b.clone()))
        } else {
            let name = r.source.as_deref().and_then(Path::file_name);
            Cause::Removed {
                masked: name.is_some_and(|n| masked.iter().any(|m| m.file_name() == Some(n))),
            }
        };
        out.push(Orphan {
            running: r.clone(),
            cause,
        });
    }
    out
}

/// The container's file, as shown.
fn source_text(o: &Orphan) -> String {
    match (&o.cause, &o.running.source) {
        (Cause::Errors(b), _) => one_line(&b.source.to_string_lossy()),
        (_, Some(p)) => one_line(&p.to_string_lossy()),
        (_, None) => "its .container file".to_string(),
    }
}

/// `Description=` after `sdme container MACHINE: `.
fn reason(o: &Orphan) -> String {
    match &o.cause {
        Cause::Removed { masked: false } => format!(
            "{} was removed; stop it, or restore the file and daemon-reload",
            source_text(o)
        ),
        Cause::Removed { masked: true } => format!(
            "{} is masked; stop it, or unmask the file and daemon-reload",
            source_text(o)
        ),
        Cause::Errors(b) => format!(
            "{} has errors{}; stop it, or fix the file and daemon-reload",
            one_line(&b.culprit.to_string_lossy()),
            first_error(b)
        ),
    }
}

/// The generator's log line for an orphan.
pub fn notice(o: &Orphan) -> String {
    let what = match &o.cause {
        Cause::Removed { masked: false } => format!("{} was removed", source_text(o)),
        Cause::Removed { masked: true } => format!("{} is masked", source_text(o)),
        Cause::Errors(b) => format!("{} has errors", one_line(&b.culprit.to_string_lossy())),
    };
    format!(
        "{}: {what} while container {} runs (record {}/{}): the unit only stops it now, its start fails",
        o.running.unit,
        o.running.machine,
        crate::inuse::RECORD_DIR,
        o.running.machine
    )
}

/// What its start prints.
fn start_report(o: &Orphan) -> Vec<String> {
    let unit = &o.running.unit;
    match &o.cause {
        Cause::Removed { masked } => vec![
            format!(
                "{} {} while container {} ran: no file declares {unit} any more",
                source_text(o),
                if *masked { "was masked" } else { "was removed" },
                o.running.machine,
            ),
            format!(
                "{unit} only stops the container now; restore the file and run \"systemctl daemon-reload\" to start it again"
            ),
        ],
        Cause::Errors(b) => report_lines(b),
    }
}

/// The orphan unit: the stop half of the container's service, a start
/// that fails with the reason.
pub fn render_orphan(o: &Orphan) -> Output {
    let r = &o.running;
    // A valid machine name needs no escaping; unit_value all the same.
    let m = unit_value(&r.machine);
    let dir = [paths::CONTAINERS_DIR, "/", &m].concat();
    let mut s = String::with_capacity(2048);
    s.push_str("# Automatically generated by sdme-generator from the record ");
    s.push_str(crate::inuse::RECORD_DIR);
    s.push('/');
    s.push_str(&r.machine);
    s.push_str(
        " of a running container\n\
         # whose file was removed or has errors: this unit stops the container as\n\
         # its own unit would, and its start fails, saying why.\n",
    );
    s.push_str("\n[Unit]\nDescription=sdme container ");
    s.push_str(&m);
    s.push_str(": ");
    s.push_str(&unit_value(&reason(o)));
    s.push_str("\nDocumentation=man:sdme.container(5) man:sdme-generator(8)\n");
    // A missing SourcePath= would make systemd ask for a daemon-reload on
    // every command.
    if let Cause::Errors(b) = &o.cause {
        s.push_str("SourcePath=");
        s.push_str(&unit_value(&one_line(&b.source.to_string_lossy())));
        s.push('\n');
    }
    s.push_str("PartOf=machines.target\nBefore=machines.target\n");
    // Stopped before its overlay at shutdown (the mount unit is now the
    // one systemd made from mountinfo).
    if let Ok(mount) = mount_unit_name(&[&dir, "/merged"].concat()) {
        s.push_str("After=");
        s.push_str(&mount);
        s.push('\n');
    }
    s.push_str("\n[Service]\nType=notify\nNotifyAccess=all\n");
    push_report_exec(&mut s, &start_report(o));
    push_stop_half(&mut s, &dir, &m);
    Output::File {
        path: r.unit.clone(),
        content: s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::FileType;

    fn rec(machine: &str, unit: Option<&str>) -> Record {
        Record {
            machine: machine.into(),
            lower: "/".into(),
            merged: paths::container_dir(machine).join("merged"),
            unit: unit.map(str::to_string),
            source: Some(format!("/etc/sdme/{machine}.container").into()),
            app: None,
        }
    }

    fn broken(stem: &str) -> Broken {
        let path = PathBuf::from(format!("/etc/sdme/{stem}.container"));
        Broken::new(
            FileType::Container,
            &UnitName::from_stem(stem),
            &path,
            vec![format!("{}:2: Bind=srv: not absolute", path.display())],
        )
        .unwrap()
    }

    #[test]
    fn records_are_checked() {
        let ok = |r: &Record| Running::from_record(r).map(|x| x.unit);
        assert_eq!(
            ok(&rec("web", Some("sdme-web.service"))).as_deref(),
            Some("sdme-web.service")
        );
        assert_eq!(
            ok(&rec("web-a", Some("sdme-web@a.service"))).as_deref(),
            Some("sdme-web@a.service")
        );
        // No unit (an older record), not a container's unit, a template,
        // a static unit, another unit type.
        for u in [
            None,
            Some("getty@tty1.service"),
            Some("sdme-web@.service"),
            Some("sdme-prepare@web.service"),
            Some("sdme-explain@web.service"),
            Some("sdme-web.mount"),
            Some("sdme-.service"),
            Some("sdme--x.service"),
            Some("sdme-web@a@b.service"),
        ] {
            assert_eq!(ok(&rec("web", u)), None, "{u:?}");
        }
        // merged= must be the machine's own.
        let mut r = rec("web", Some("sdme-web.service"));
        r.merged = "/var/lib/sdme/containers/other/merged".into();
        assert_eq!(ok(&r), None);
        r.merged = "/etc".into();
        assert_eq!(ok(&r), None);
        let mut r = rec("web", Some("sdme-web.service"));
        r.machine = "../x".into();
        assert_eq!(ok(&r), None);
    }

    #[test]
    fn one_orphan_per_unit_in_unit_order() {
        let recs = [
            rec("b", Some("sdme-x.service")),
            rec("c", Some("sdme-x.service")),
            rec("a", Some("sdme-z.service")),
        ];
        let v = running(&recs);
        let got: Vec<(&str, &str)> = (v.iter())
            .map(|r| (r.unit.as_str(), r.machine.as_str()))
            .collect();
        assert_eq!(got, [("sdme-x.service", "b"), ("sdme-z.service", "a")]);
    }

    #[test]
    fn causes() {
        let run = running(&[
            rec("gone", Some("sdme-gone.service")),
            rec("good", Some("sdme-good.service")),
            rec("bad", Some("sdme-bad.service")),
            rec("t-a", Some("sdme-t@a.service")),
            rec("ok-a", Some("sdme-ok@a.service")),
            rec("hidden", Some("sdme-hidden.service")),
            rec("ok-b", Some("sdme-ok@b.service")),
        ]);
        let served = |u: &str| u == "sdme-good.service" || u == "sdme-ok@.service";
        // ok@b.container has errors: its error unit shadows the template.
        let mut b = vec![broken("bad"), broken("t@"), broken("ok@b")];
        let masked = [PathBuf::from("/etc/sdme/hidden.container")];
        let o = find(&run, served, &mut b, &masked);
        let got: Vec<(&str, &Cause)> = (o.iter())
            .map(|o| (o.running.unit.as_str(), &o.cause))
            .collect();
        assert_eq!(got.len(), 5, "{got:?}");
        assert_eq!(got[0].0, "sdme-bad.service");
        assert!(matches!(got[0].1, Cause::Errors(b) if b.unit == "sdme-bad.service"));
        assert_eq!(
            got[1],
            ("sdme-gone.service", &Cause::Removed { masked: false })
        );
        assert_eq!(
            got[2],
            ("sdme-hidden.service", &Cause::Removed { masked: true })
        );
        assert_eq!(got[3].0, "sdme-ok@b.service");
        assert!(matches!(got[3].1, Cause::Errors(b) if b.unit == "sdme-ok@b.service"));
        assert_eq!(got[4].0, "sdme-t@a.service");
        assert!(matches!(got[4].1, Cause::Errors(b) if b.unit == "sdme-t@.service"));
        // The orphan replaced bad's error unit; the template keeps its own.
        let left: Vec<&str> = b.iter().map(|b| b.unit.as_str()).collect();
        assert_eq!(left, ["sdme-t@.service"]);
    }

    fn content(o: &Orphan) -> String {
        match render_orphan(o) {
            Output::File { content, .. } => content,
            Output::Symlink { .. } => panic!("a file"),
        }
    }

    #[test]
    fn orphan_unit_stops_as_a_container_and_fails_to_start() {
        let o = Orphan {
            running: Running::from_record(&rec("web", Some("sdme-web.service"))).unwrap(),
            cause: Cause::Removed { masked: false },
        };
        let c = content(&o);
        assert!(c.contains("\nDescription=sdme container web: /etc/sdme/web.container was removed; stop it, or restore the file and daemon-reload\n"), "{c}");
        for line in [
            "Type=notify",
            "NotifyAccess=all",
            "KillMode=mixed",
            "Delegate=yes",
            "Slice=machine.slice",
            "After=var-lib-sdme-containers-web-merged.mount",
            "PartOf=machines.target",
        ] {
            assert!(c.lines().any(|l| l == line), "{line}: {c}");
        }
        let stop = format!(
            "ExecStopPost={}/sdme-prepare --unmount --mount-unit --unit=%n --state=/var/lib/sdme/containers/web web",
            paths::LIBEXEC_DIR
        );
        assert!(c.lines().any(|l| l == stop), "{c}");
        assert!(!c.contains("SourcePath="), "{c}");
        assert!(!c.contains("OnFailure="), "{c}");
        assert!(c.contains("exit 1"), "{c}");
    }

    /// The stop half is the generated service's, line for line.
    #[test]
    fn same_stop_half_as_the_generated_service() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("web.container"), "[Container]\n").unwrap();
        let p = crate::generate::plan(&[t.path().to_path_buf()]);
        let svc = crate::render::render(&p.containers[0])
            .into_iter()
            .find_map(|o| match o {
                Output::File { path, content } if path == "sdme-web.service" => Some(content),
                _ => None,
            })
            .unwrap();
        let o = Orphan {
            running: Running::from_record(&rec("web", Some("sdme-web.service"))).unwrap(),
            cause: Cause::Errors(Box::new(broken("web"))),
        };
        let c = content(&o);
        // From ExecStopPost= to the end of the settings every container
        // service gets.
        let block = |u: &str| -> String {
            let from = u.find("\nExecStopPost=").unwrap();
            let to = u.find("\nSuccessExitStatus=133\n").unwrap();
            u[from..to].to_string()
        };
        assert!(c.contains(&block(&svc)), "{c}\n---\n{svc}");
        assert!(block(&svc).contains("\nKillMode=mixed\n"));
        for line in ["Type=notify", "NotifyAccess=all"] {
            assert!(svc.lines().any(|l| l == line) && c.lines().any(|l| l == line));
        }
        assert!(c.contains("has errors: /etc/sdme/web.container:2: Bind=srv: not absolute; stop it, or fix the file and daemon-reload"), "{c}");
        assert!(c.contains("\nSourcePath=/etc/sdme/web.container\n"), "{c}");
    }
}
