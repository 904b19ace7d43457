//! `sdme pod`: `.pod` files in `/etc/sdme` (see sdme.pod(5)), written
//! and validated as `create` does for containers, listed with their
//! members, removed (or masked, for a vendor file).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use sdme_core::container::Container;
use sdme_core::name::check_pod_name;
use sdme_core::pod::Pod;
use sdme_core::render::pod_service_name;
use sdme_core::search::{search, FileType, UnitName};
use sdme_core::syntax::UnitFile;

use crate::create::ETC_DIR;
use crate::lifecycle::{stop_unit, StopMode};
use crate::lookup::{config, dirs, write_stdout};
use crate::sys;

/// A pod's unit only removes its network namespace.
const POD_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(90);

#[derive(Subcommand)]
pub enum PodCmd {
    /// Write /etc/sdme/NAME.pod (or, for NAME@, the template NAME@.pod)
    /// and reload systemd.
    New {
        /// The pod's name; NAME@ makes a template, whose instances
        /// (NAME@INSTANCE) need no file.
        name: String,
        /// Start the pod at boot ([Install] WantedBy=machines.target).
        #[arg(long)]
        enable: bool,
    },
    /// List the pods on the search path (templates and their running
    /// instances too), their state and their members.
    Ls {
        /// One JSON array (see sdme(1) for its fields).
        #[arg(long)]
        json: bool,
    },
    /// Remove pods (a vendor file is masked); refused while a member runs.
    /// NAME@ removes a template, refused while a member of any of its
    /// instances runs.
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
        /// Stop running members and the pod (for a template: its running
        /// instances) first instead of refusing.
        #[arg(short, long)]
        force: bool,
    },
}

pub fn run(cmd: PodCmd) -> Result<()> {
    match cmd {
        PodCmd::New { name, enable } => new(&name, enable).map(|_| ()),
        PodCmd::Ls { json } => ls(json),
        PodCmd::Rm { names, force } => crate::each(&names, |n| rm(n, force)),
    }
}

const HEADER: &str = "# Made by `sdme pod new`. An ordinary sdme.pod(5) file: edit it\n\
                      # freely, then run `systemctl daemon-reload`.\n";

fn render(enable: bool) -> String {
    let mut s = format!("{HEADER}[Pod]\n");
    if enable {
        s.push_str("\n[Install]\nWantedBy=machines.target\n");
    }
    s
}

/// A pod name `rm` takes: a plain pod, a template (`NAME@`) or an
/// instance with a file of its own (`NAME@INSTANCE`).
fn check_name(name: &str) -> Result<()> {
    match name.strip_suffix('@') {
        Some(t) => check_pod_name(t),
        None => check_pod_name(name),
    }
    .map_err(anyhow::Error::msg)
}

/// A pod name `new` takes: a plain pod or a template; an instance needs
/// no file (its template serves it).
fn check_new_name(name: &str, enable: bool) -> Result<()> {
    check_name(name)?;
    match UnitName::from_stem(name) {
        UnitName::Instance { template, .. } => bail!(
            "'{name}' is an instance of the template {template}@.pod: it needs no file \
             (a container joins it with Pod={name}.pod; make the template with sdme pod new {template}@)"
        ),
        UnitName::Template(t) if enable => bail!(
            "a template is not enabled: its instances start with their members \
             (enable a container with Pod={t}@INSTANCE.pod)"
        ),
        _ => Ok(()),
    }
}

/// Every `NAME.pod` on the search path (masks too), in order.
fn files(dirs: &[PathBuf], name: &str) -> Vec<PathBuf> {
    dirs.iter()
        .map(|d| d.join(format!("{name}.pod")))
        .filter(|p| p.symlink_metadata().is_ok())
        .collect()
}

fn validate(name: &str, path: &Path, text: &str) -> Result<()> {
    let file = UnitFile::parse(path, text.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
    Pod::from_unit(&UnitName::from_stem(name), path, file)
        .map(|_| ())
        .map_err(|d| {
            let l: Vec<String> = d.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("{}", l.join("\n"))
        })
}

fn new(name: &str, enable: bool) -> Result<PathBuf> {
    check_new_name(name, enable)?;
    if let Some(p) = files(&dirs(), name).first() {
        bail!("pod {name} exists already: {}", p.display());
    }
    let text = render(enable);
    let path = Path::new(ETC_DIR).join(format!("{name}.pod"));
    validate(name, &path, &text)?;
    let tmp = crate::write::synced_temp(Path::new(ETC_DIR), ".sdme-pod-", &text)?;
    match tmp.persist_noclobber(&path) {
        Ok(_) => {}
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!("pod {name} exists already: {}", path.display())
        }
        Err(e) => return Err(e.error).with_context(|| format!("writing {}", path.display())),
    }
    sys::daemon_reload()?;
    Ok(path)
}

/// A pod and its members (file stems of the containers naming it).
struct PodRow {
    name: String,
    file: PathBuf,
    error: Option<String>,
    members: Vec<String>,
}

/// Each container with a file, and each running instance of a container
/// template without one: its file stem and the pod it names.
fn container_pods(dirs: &[PathBuf], units: &[String]) -> Vec<(String, String)> {
    let config = config(dirs);
    let containers: Vec<Container> = search(dirs, FileType::Container)
        .found
        .iter()
        .filter_map(|f| Container::load_with(f, &config).ok())
        .collect();
    let stems: Vec<String> = containers.iter().map(|c| c.name.stem()).collect();
    let mut out = Vec::new();
    for c in &containers {
        let Some((pod, _)) = &c.pod else { continue };
        let UnitName::Template(t) = &c.name else {
            out.push((c.name.stem(), pod.clone()));
            continue;
        };
        for i in units
            .iter()
            .filter_map(|u| instance_in(u, &format!("sdme-{t}@")))
        {
            let stem = format!("{t}@{i}");
            if !stems.contains(&stem) {
                out.push((stem, pod.replace("@%i", &format!("@{i}"))));
            }
        }
    }
    out
}

/// `PREFIX` + INSTANCE + `.service` with INSTANCE non-empty.
fn instance_in<'a>(unit: &'a str, prefix: &str) -> Option<&'a str> {
    unit.strip_prefix(prefix)?
        .strip_suffix(".service")
        .filter(|i| !i.is_empty())
}

/// The pod files on the search path with their members; `units` are the
/// loaded `sdme-*.service` units, for the running instances of templates.
fn pod_rows(dirs: &[PathBuf], units: &[String]) -> Vec<PodRow> {
    let containers = container_pods(dirs, units);
    let found = search(dirs, FileType::Pod).found;
    let stems: Vec<String> = found.iter().map(|f| f.name.stem()).collect();
    let mut rows: Vec<PodRow> = found
        .into_iter()
        .map(|f| {
            let name = f.name.stem();
            let members = members(&containers, &name);
            let error = Pod::load(&f).err().map(|d| {
                d.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            });
            PodRow {
                name,
                file: f.path,
                error,
                members,
            }
        })
        .collect();
    // Running instances of templates, which need no file of their own.
    let mut instances = Vec::new();
    for r in rows.iter().filter(|r| r.name.ends_with('@')) {
        let prefix = format!("sdme-pod-{}", r.name);
        for i in units.iter().filter_map(|u| instance_in(u, &prefix)) {
            let name = format!("{}{i}", r.name);
            if !stems.contains(&name) {
                instances.push(PodRow {
                    members: members(&containers, &name),
                    name,
                    file: r.file.clone(),
                    error: r.error.clone(),
                });
            }
        }
    }
    rows.extend(instances);
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

/// The containers naming `pod`; for a template (`NAME@`), those naming
/// any of its instances.
fn members(containers: &[(String, String)], pod: &str) -> Vec<String> {
    containers
        .iter()
        .filter(|(_, p)| match pod.strip_suffix('@') {
            Some(t) => p.split_once('@').is_some_and(|(pt, _)| pt == t),
            None => p == pod,
        })
        .map(|(c, _)| c.clone())
        .collect()
}

/// The loaded `sdme-*.service` units (containers, pods and their
/// instances), by name.
fn loaded_units() -> Result<Vec<String>> {
    Ok(sys::loaded_units(&["sdme-*.service"])?
        .into_iter()
        .map(|u| u.name)
        .collect())
}

fn member_service(stem: &str) -> String {
    sdme_core::render::unit_service_name(&UnitName::from_stem(stem))
}

fn ls(json: bool) -> Result<()> {
    let rows = pod_rows(&dirs(), &loaded_units()?);
    // A template has no state of its own (systemd loads no unit by a
    // template's name): its instances are listed.
    let is_template = |r: &PodRow| r.name.ends_with('@');
    let mut units: Vec<String> = Vec::new();
    for r in &rows {
        if !is_template(r) {
            units.push(pod_service_name(&r.name));
        }
        units.extend(r.members.iter().map(|m| member_service(m)));
    }
    let states = sys::states(&units)?;
    let mut st = states.into_iter().map(|(a, _)| a);
    let mut out = Vec::new();
    for r in &rows {
        let pod_state = if is_template(r) {
            "template".into()
        } else {
            st.next().unwrap_or_default()
        };
        let members: Vec<(String, String)> = r
            .members
            .iter()
            .map(|m| (m.clone(), st.next().unwrap_or_default()))
            .collect();
        out.push((r, pod_state, members));
    }
    let text = if json {
        let v: Vec<serde_json::Value> = out
            .iter()
            .map(|(r, s, m)| {
                serde_json::json!({
                    "name": r.name,
                    "file": r.file,
                    "state": s,
                    "error": r.error,
                    "members": m.iter().map(|(n, s)| serde_json::json!({"name": n, "state": s})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let mut s = serde_json::to_string_pretty(&v).context("encoding JSON")?;
        s.push('\n');
        s
    } else {
        table(&out)
    };
    write_stdout(text.as_bytes())
}

/// A pod, its unit's state, its members with theirs.
type Listed<'a> = (&'a PodRow, String, Vec<(String, String)>);

fn table(rows: &[Listed]) -> String {
    let mut cells = vec![["POD".to_string(), "STATE".into(), "MEMBERS".into()]];
    for (r, s, m) in rows {
        let members = if let Some(e) = &r.error {
            format!("file error: {e}")
        } else if m.is_empty() {
            "-".into()
        } else {
            m.iter()
                .map(|(n, s)| format!("{n} ({s})"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        cells.push([r.name.clone(), s.clone(), members]);
    }
    let w0 = cells.iter().map(|c| c[0].len()).max().unwrap_or(0);
    let w1 = cells.iter().map(|c| c[1].len()).max().unwrap_or(0);
    cells
        .iter()
        .map(|c| format!("{:w0$}  {:w1$}  {}\n", c[0], c[1], c[2]))
        .collect()
}

fn running(state: &str) -> bool {
    !matches!(state, "inactive" | "failed" | "unknown")
}

/// `pod rm`: the file in /etc/sdme and its drop-ins, or a mask for a
/// file elsewhere on the search path (which `rm` must not touch).
fn rm(name: &str, force: bool) -> Result<()> {
    check_name(name)?;
    let dirs = dirs();
    let found = files(&dirs, name);
    let etc = Path::new(ETC_DIR).join(format!("{name}.pod"));
    let Some(first) = found.first() else {
        bail!("no pod {name} (no {name}.pod on the search path)");
    };
    if *first == etc && std::fs::read_link(&etc).is_ok_and(|t| t == Path::new("/dev/null")) {
        bail!("{} masks pod {name} already", etc.display());
    }
    let units = loaded_units()?;
    let row = pod_rows(&dirs, &units).into_iter().find(|r| r.name == name);
    let members = row.map(|r| r.members).unwrap_or_default();
    let member_units: Vec<String> = members.iter().map(|m| member_service(m)).collect();
    let states = sys::states(&member_units)?;
    let busy: Vec<&String> = members
        .iter()
        .zip(&states)
        .filter(|(_, (a, _))| running(a))
        .map(|(m, _)| m)
        .collect();
    if !busy.is_empty() && !force {
        let l: Vec<&str> = busy.iter().map(|s| s.as_str()).collect();
        let what = if name.ends_with('@') {
            format!("pod template {name}.pod has instances with running members")
        } else {
            format!("pod {name} has running members")
        };
        bail!("{what}: {}; stop them first or use pod rm -f", l.join(", "));
    }
    for m in &busy {
        stop_unit(&UnitName::from_stem(m), StopMode::Graceful)?;
    }
    // A template's unit serves its instances: each running one is stopped.
    let pod_units: Vec<String> = match name.strip_suffix('@') {
        Some(_) => {
            let prefix = format!("sdme-pod-{name}");
            units
                .iter()
                .filter(|u| instance_in(u, &prefix).is_some())
                .cloned()
                .collect()
        }
        None => vec![pod_service_name(name)],
    };
    for u in &pod_units {
        if running(&sys::active_state(u)?) {
            sys::stop(u, POD_STOP_WAIT)?;
        }
    }
    // A file below /etc/sdme would come back once /etc's is gone.
    let vendor = found.iter().find(|p| **p != etc);
    if let Some(v) = vendor {
        mask(&etc)?;
        eprintln!(
            "pod {name} is defined by {}, which sdme does not remove: masked it with {} -> /dev/null",
            v.display(),
            etc.display()
        );
    } else {
        std::fs::remove_file(&etc).with_context(|| format!("removing {}", etc.display()))?;
    }
    let dropins = Path::new(ETC_DIR).join(format!("{name}.pod.d"));
    match dropins.symlink_metadata() {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&dropins),
        Ok(_) => std::fs::remove_file(&dropins),
        Err(_) => Ok(()),
    }
    .with_context(|| format!("removing {}", dropins.display()))?;
    sys::daemon_reload()?;
    for u in &pod_units {
        if matches!(sys::active_state(u)?.as_str(), "failed") {
            sys::reset_failed(u)?;
        }
    }
    if !members.is_empty() {
        let pod = match name.strip_suffix('@') {
            Some(t) => format!("an instance of {t}@.pod"),
            None => format!("Pod={name}.pod"),
        };
        eprintln!(
            "note: {} still name {pod} and will not start until it exists again",
            members.join(", ")
        );
    }
    Ok(())
}

/// `path` becomes a symlink to /dev/null, atomically (a link under a
/// temporary name renamed over it).
fn mask(path: &Path) -> Result<()> {
    let dir = path.parent().context("no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".sdme-mask-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink("/dev/null", &tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("creating {}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_files_validate() {
        for enable in [false, true] {
            let text = render(enable);
            validate("grp", Path::new("/etc/sdme/grp.pod"), &text).unwrap();
            assert_eq!(text.contains("WantedBy=machines.target"), enable);
        }
        assert!(check_name("grp@").is_ok());
        assert!(check_name("../x").is_err());
        assert!(check_name("../x@").is_err());
        assert!(check_name("ok-1").is_ok());
        let text = render(false);
        validate("grp@", Path::new("/etc/sdme/grp@.pod"), &text).unwrap();
        assert!(check_new_name("grp@", false).is_ok());
        let e = check_new_name("grp@a", false).unwrap_err().to_string();
        assert!(e.contains("needs no file"), "{e}");
        let e = check_new_name("grp@", true).unwrap_err().to_string();
        assert!(e.starts_with("a template is not enabled"), "{e}");
    }

    #[test]
    fn members_are_containers_naming_the_pod() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::write(d.join("grp.pod"), render(false)).unwrap();
        std::fs::write(d.join("other.pod"), "[Pod]\nBogus=1\n").unwrap();
        std::fs::write(d.join("a.container"), "[Container]\nPod=grp.pod\n").unwrap();
        std::fs::write(d.join("b.container"), "[Container]\n").unwrap();
        let rows = pod_rows(&[d.to_path_buf()], &[]);
        let grp = rows.iter().find(|r| r.name == "grp").unwrap();
        assert_eq!(grp.members, ["a"]);
        assert!(grp.error.is_none());
        let other = rows.iter().find(|r| r.name == "other").unwrap();
        assert!(
            other.error.as_deref().unwrap().contains("Bogus"),
            "{:?}",
            other.error
        );
        let t = table(&[(grp, "active".into(), vec![("a".into(), "active".into())])]);
        assert_eq!(t, "POD  STATE   MEMBERS\ngrp  active  a (active)\n");
    }

    #[test]
    fn template_rows_and_their_instances_members() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::write(d.join("grp@.pod"), render(false)).unwrap();
        std::fs::write(d.join("a.container"), "[Container]\nPod=grp@x.pod\n").unwrap();
        std::fs::write(d.join("s@.container"), "[Container]\nPod=grp@%i.pod\n").unwrap();
        let units: Vec<String> = [
            "sdme-pod-grp@x.service",
            "sdme-pod-grp@y.service",
            "sdme-s@y.service",
        ]
        .map(String::from)
        .into();
        let rows = pod_rows(&[d.to_path_buf()], &units);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["grp@", "grp@x", "grp@y"]);
        assert_eq!(rows[0].members, ["a", "s@y"]);
        assert_eq!(rows[1].members, ["a"]);
        assert_eq!(rows[2].members, ["s@y"]);
        assert_eq!(
            instance_in("sdme-pod-grp@x.service", "sdme-pod-grp@"),
            Some("x")
        );
        assert_eq!(instance_in("sdme-pod-grp@.service", "sdme-pod-grp@"), None);
    }

    #[test]
    fn mask_replaces_a_file_with_a_link() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x.pod");
        std::fs::write(&p, "[Pod]\n").unwrap();
        mask(&p).unwrap();
        assert_eq!(std::fs::read_link(&p).unwrap(), Path::new("/dev/null"));
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1);
    }
}
