//! `sdme ps`: the containers on the search path and their state, from
//! one ListUnitsByPatterns call to systemd, one ListMachines call to
//! machined, and for each running machine GetMachineAddresses and its
//! guest manager's SystemState (on the guest's bus, sdme_helpers::guest).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use sdme_core::app_unit::APP_UNIT;
use sdme_core::container::{instance_machine, Container, Rootfs};
use sdme_core::render::unit_service_name;
use sdme_core::search::{search, FileType, Found, UnitName};
use sdme_helpers::fsutil::Lower;
use sdme_helpers::guest;

use crate::lookup::{config, dirs, write_stdout};
use crate::sys::{Bus, UnitRow};

/// One row of `sdme ps`; the JSON object has these fields (sdme(1)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Row {
    pub name: String,
    pub status: String,
    pub health: String,
    pub os: String,
    pub rootfs: String,
    pub pod: Option<String>,
    /// `App=`: the application's rootfs name.
    pub app: Option<String>,
    pub userns: bool,
    pub enabled: bool,
    pub addresses: Vec<String>,
    pub unit: String,
    pub file: String,
}

fn rootfs_label(r: &Rootfs) -> String {
    match r {
        Rootfs::Host => "(host)".into(),
        Rootfs::Named(n) => n.clone(),
        Rootfs::Dir(d) => d.clone(),
    }
}

/// STATUS from systemd's ActiveState (a unit not loaded is stopped).
fn status_word(active: Option<&str>) -> String {
    match active {
        Some("active" | "reloading") => "running".into(),
        Some("activating") => "starting".into(),
        Some("deactivating") => "stopping".into(),
        Some("failed") => "failed".into(),
        _ => "stopped".into(),
    }
}

/// HEALTH of a container whose file is valid.
fn health(status: &str, rootfs_problem: Option<&str>) -> String {
    match status {
        "failed" => "failed".into(),
        "starting" => "starting".into(),
        "running" | "stopping" => "ok".into(),
        _ => rootfs_problem.unwrap_or("ok").into(),
    }
}

/// How long `ps` waits for one guest's answer (a wedged guest shows
/// "unknown" instead of holding up the list).
const GUEST_WAIT: Duration = Duration::from_millis(300);

/// HEALTH of a running container from its guest manager's SystemState
/// (`systemctl is-system-running`): "running" is ok, "degraded" (a
/// failed unit inside) and "starting" say so; the guest's bus not
/// answering is "unknown".
fn guest_health(state: Result<String, String>) -> String {
    match state.as_deref() {
        Ok("running") => "ok".into(),
        Ok("initializing" | "starting") => "starting".into(),
        Ok(s) if !s.is_empty() => s.into(),
        _ => "unknown".into(),
    }
}

/// HEALTH of a running container: the guest's, and with an application
/// its unit's state too ("ok, app running", "degraded, app failed").
fn running_health(machine: &str, app: bool) -> String {
    let deadline = Instant::now() + GUEST_WAIT;
    if !app {
        return guest_health(guest::system_state(machine, deadline));
    }
    match guest::system_and_unit_state(machine, APP_UNIT, deadline) {
        Ok((system, unit)) => format!(
            "{}, app {}",
            guest_health(Ok(system)),
            status_word(Some(&unit))
        ),
        Err(e) => guest_health(Err(e)),
    }
}

/// What keeps a stopped container from starting because of its lower
/// layer, if anything.
fn rootfs_problem(c: &Container) -> Option<&'static str> {
    if Path::new(&c.rootfs.lower_dir()).is_dir() {
        return None;
    }
    Some(if c.image.is_some() {
        "image not imported yet"
    } else {
        "rootfs missing"
    })
}

/// PRETTY_NAME of the lower layer's os-release, read inside it (links
/// resolved in the layer, never out of it); "" when there is none.
fn os_name(c: &Container) -> String {
    let Ok(lower) = Lower::open(Path::new(&c.rootfs.lower_dir())) else {
        return String::new();
    };
    ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|p| lower.read_small(Path::new(p), 64 * 1024))
        .map(|b| pretty_name(&String::from_utf8_lossy(&b)))
        .unwrap_or_default()
}

/// os-release's PRETTY_NAME, unquoted (os-release(5)).
fn pretty_name(text: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("PRETTY_NAME="))
        .map(|v| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
                .unwrap_or(v);
            v.replace("\\\"", "\"")
                .chars()
                .filter(|c| !c.is_control())
                .collect()
        })
        .unwrap_or_default()
}

/// What the file and systemd say, before machined is asked.
fn row_of(
    name: &UnitName,
    f: &Found,
    c: Result<Container, String>,
    units: &BTreeMap<String, UnitRow>,
) -> (Row, Option<String>) {
    let unit = unit_service_name(name);
    let status = status_word(units.get(&unit).map(|u| u.active.as_str()));
    let mut row = Row {
        name: name.stem(),
        unit,
        file: f.path.display().to_string(),
        ..Row::default()
    };
    let machine = match c {
        Err(e) => {
            row.health = format!("file error: {e}");
            row.status = status;
            return (row, None);
        }
        Ok(c) => {
            row.health = health(&status, rootfs_problem(&c));
            row.status = status;
            row.os = os_name(&c);
            row.rootfs = rootfs_label(&c.rootfs);
            row.pod = c.pod.as_ref().map(|(p, _)| p.clone());
            row.app = c.app.as_ref().map(|a| a.rootfs().to_string());
            row.userns = c.private_users_enabled();
            row.enabled = !c.install.wanted_by.is_empty() || !c.install.required_by.is_empty();
            match name {
                UnitName::Instance { template, instance } if c.is_template() => {
                    instance_machine(template, instance)
                }
                _ => c.running_as.clone().unwrap_or(c.machine),
            }
        }
    };
    (row, Some(machine))
}

fn load(f: &Found, config: &sdme_core::config::Config) -> Result<Container, String> {
    Container::load_with(f, config)
        .map_err(|d| d.first().map(ToString::to_string).unwrap_or_default())
}

/// The rows of `sdme ps` (`all`: bare templates too).
pub fn rows(all: bool) -> Result<Vec<Row>> {
    let dirs = dirs();
    let config = config(&dirs);
    let found = search(&dirs, FileType::Container).found;
    let mut bus = Bus::system()?;
    let units: BTreeMap<String, UnitRow> = bus
        .list_units(&["sdme-*.service"])?
        .into_iter()
        .map(|u| (u.name.clone(), u))
        .collect();
    let machines: BTreeMap<String, String> = bus
        .machines()?
        .into_iter()
        .map(|(n, class, _)| (n, class))
        .collect();
    let mut out = Vec::new();
    let mut listed: Vec<String> = found.iter().map(|f| unit_service_name(&f.name)).collect();
    for f in &found {
        let loaded = load(f, &config);
        if let UnitName::Template(t) = &f.name {
            // Running instances without a file of their own get a row.
            for u in units.values().filter(|u| is_instance_of(&u.name, t)) {
                if listed.contains(&u.name) || status_word(Some(&u.active)) == "stopped" {
                    continue;
                }
                let instance = instance_of(&u.name, t).unwrap_or_default();
                let name = UnitName::Instance {
                    template: t.clone(),
                    instance: instance.to_string(),
                };
                listed.push(u.name.clone());
                out.push(row_of(&name, f, loaded.clone(), &units));
            }
            if !all {
                continue;
            }
        }
        let (mut row, machine) = row_of(&f.name, f, loaded, &units);
        if matches!(f.name, UnitName::Template(_)) {
            row.status = "template".into();
            out.push((row, None));
        } else {
            out.push((row, machine));
        }
    }
    out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    Ok(out
        .into_iter()
        .map(|(mut row, machine)| {
            if let Some(m) = machine.filter(|m| machines.contains_key(m)) {
                row.addresses = bus.machine_addresses(&m).unwrap_or_default();
                if row.status == "running" {
                    row.health = running_health(&m, row.app.is_some());
                }
            }
            row
        })
        .collect())
}

/// `sdme-T@I.service` with I non-empty.
fn instance_of<'a>(unit: &'a str, template: &str) -> Option<&'a str> {
    unit.strip_prefix("sdme-")?
        .strip_prefix(template)?
        .strip_prefix('@')?
        .strip_suffix(".service")
        .filter(|i| !i.is_empty())
}

fn is_instance_of(unit: &str, template: &str) -> bool {
    instance_of(unit, template).is_some()
}

pub fn ps(all: bool, json: bool) -> Result<()> {
    let rows = rows(all)?;
    let text = if json { to_json(&rows) } else { table(&rows) };
    write_stdout(text.as_bytes())
}

fn dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn table(rows: &[Row]) -> String {
    let head = [
        "NAME",
        "STATUS",
        "HEALTH",
        "OS",
        "ROOTFS",
        "POD",
        "USERNS",
        "ENABLED",
        "ADDRESSES",
    ];
    let mut cells: Vec<Vec<String>> = vec![head.iter().map(|s| s.to_string()).collect()];
    for r in rows {
        cells.push(vec![
            r.name.clone(),
            r.status.clone(),
            r.health.clone(),
            dash(&r.os).into(),
            dash(&r.rootfs).into(),
            dash(r.pod.as_deref().unwrap_or("")).into(),
            yes_no(r.userns).into(),
            yes_no(r.enabled).into(),
            dash(&r.addresses.join(",")).into(),
        ]);
    }
    let mut widths = vec![0; head.len()];
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in &cells {
        let last = row.len() - 1;
        for (i, (c, w)) in row.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:w$}  "));
            }
        }
        out.push('\n');
    }
    out
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// One JSON array, one object per row, fields in a fixed order.
fn to_json(rows: &[Row]) -> String {
    let objs: Vec<String> = rows
        .iter()
        .map(|r| {
            let addrs: Vec<String> = r.addresses.iter().map(|a| json_str(a)).collect();
            format!(
                "{{\"name\":{},\"status\":{},\"health\":{},\"os\":{},\"rootfs\":{},\"pod\":{},\"userns\":{},\"enabled\":{},\"addresses\":[{}],\"unit\":{},\"file\":{},\"app\":{}}}",
                json_str(&r.name),
                json_str(&r.status),
                json_str(&r.health),
                json_str(&r.os),
                json_str(&r.rootfs),
                r.pod.as_deref().map_or_else(|| "null".to_string(), json_str),
                r.userns,
                r.enabled,
                addrs.join(","),
                json_str(&r.unit),
                json_str(&r.file),
                r.app.as_deref().map_or_else(|| "null".to_string(), json_str),
            )
        })
        .collect();
    format!("[{}]\n", objs.join(",\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_words() {
        assert_eq!(status_word(Some("active")), "running");
        assert_eq!(status_word(Some("failed")), "failed");
        assert_eq!(status_word(Some("activating")), "starting");
        assert_eq!(status_word(Some("deactivating")), "stopping");
        assert_eq!(status_word(None), "stopped");
        assert_eq!(status_word(Some("inactive")), "stopped");
    }

    #[test]
    fn health_words() {
        assert_eq!(health("running", None), "ok");
        assert_eq!(health("failed", None), "failed");
        assert_eq!(health("starting", None), "starting");
        assert_eq!(health("stopped", Some("rootfs missing")), "rootfs missing");
        // A running container's lower layer was there when it started.
        assert_eq!(health("running", Some("rootfs missing")), "ok");
    }

    #[test]
    fn guest_states() {
        assert_eq!(guest_health(Ok("running".into())), "ok");
        assert_eq!(guest_health(Ok("degraded".into())), "degraded");
        assert_eq!(guest_health(Ok("initializing".into())), "starting");
        assert_eq!(guest_health(Ok("maintenance".into())), "maintenance");
        assert_eq!(guest_health(Err("no bus".into())), "unknown");
        assert_eq!(guest_health(Ok(String::new())), "unknown");
    }

    #[test]
    fn pretty_names() {
        assert_eq!(
            pretty_name("ID=debian\nPRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\n"),
            "Debian GNU/Linux 13 (trixie)"
        );
        assert_eq!(pretty_name("PRETTY_NAME='Alpine'\n"), "Alpine");
        assert_eq!(pretty_name("PRETTY_NAME=plain\n"), "plain");
        assert_eq!(pretty_name("PRETTY_NAME=\"a\u{1b}[2Jb\"\n"), "a[2Jb");
        assert_eq!(pretty_name("NAME=x\n"), "");
    }

    #[test]
    fn instances_of_a_template() {
        assert_eq!(instance_of("sdme-web@1.service", "web"), Some("1"));
        assert_eq!(instance_of("sdme-web@.service", "web"), None);
        assert_eq!(instance_of("sdme-webx@1.service", "web"), None);
        assert_eq!(instance_of("sdme-web.service", "web"), None);
    }

    #[test]
    fn json_is_escaped_and_stable() {
        let r = Row {
            name: "a".into(),
            status: "stopped".into(),
            health: "file error: /etc/sdme/a.container:3: bad \"x\"\n".into(),
            addresses: vec!["10.0.0.2".into()],
            userns: true,
            ..Row::default()
        };
        assert_eq!(
            to_json(&[r]),
            "[{\"name\":\"a\",\"status\":\"stopped\",\"health\":\"file error: /etc/sdme/a.container:3: bad \\\"x\\\"\\n\",\
             \"os\":\"\",\"rootfs\":\"\",\"pod\":null,\"userns\":true,\"enabled\":false,\"addresses\":[\"10.0.0.2\"],\
             \"unit\":\"\",\"file\":\"\",\"app\":null}]\n"
        );
        assert_eq!(to_json(&[]), "[]\n");
    }

    #[test]
    fn table_has_every_column() {
        let t = table(&[Row {
            name: "a".into(),
            status: "running".into(),
            health: "ok".into(),
            ..Row::default()
        }]);
        let mut lines = t.lines();
        assert_eq!(
            lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
            [
                "NAME",
                "STATUS",
                "HEALTH",
                "OS",
                "ROOTFS",
                "POD",
                "USERNS",
                "ENABLED",
                "ADDRESSES"
            ]
        );
        assert_eq!(
            lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
            ["a", "running", "ok", "-", "-", "-", "no", "no", "-"]
        );
    }
}
