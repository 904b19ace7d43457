//! systemd through its command-line tools. A first step: the plan (see
//! DESIGN.md, "The sdme CLI") is D-Bus calls to org.freedesktop.systemd1
//! and machine1 (StartUnit/StopUnit and waiting for the job), which also
//! gives better error reasons than exit statuses.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use sdme_core::mountinfo;

/// Run `prog args...`; non-zero is an error naming the command.
pub fn run(prog: &str, args: &[&str]) -> Result<()> {
    let st = Command::new(prog)
        .args(args)
        .status()
        .with_context(|| format!("running {prog}"))?;
    if !st.success() {
        bail!("{prog} {} failed ({st})", args.join(" "));
    }
    Ok(())
}

pub fn daemon_reload() -> Result<()> {
    run("systemctl", &["daemon-reload"])
}

/// ActiveState and SubState of each unit, in order, in one call.
pub fn states(units: &[String]) -> Result<Vec<(String, String)>> {
    if units.is_empty() {
        return Ok(Vec::new());
    }
    let out = Command::new("systemctl")
        .args(["show", "-p", "Id,ActiveState,SubState", "--"])
        .args(units)
        .stderr(Stdio::inherit())
        .output()
        .context("running systemctl show")?;
    if !out.status.success() {
        bail!("systemctl show failed ({})", out.status);
    }
    Ok(parse_states(&String::from_utf8_lossy(&out.stdout), units))
}

/// `systemctl show` output: one block per unit, blank-line separated, in
/// the order asked; looked up by Id so the order is not relied on.
fn parse_states(text: &str, units: &[String]) -> Vec<(String, String)> {
    let blocks: Vec<(String, String, String)> = text
        .split("\n\n")
        .map(|b| {
            let get = |k: &str| {
                b.lines()
                    .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                    .unwrap_or("")
                    .to_string()
            };
            (get("Id"), get("ActiveState"), get("SubState"))
        })
        .collect();
    units
        .iter()
        .map(|u| {
            blocks
                .iter()
                .find(|b| &b.0 == u)
                .map(|b| (b.1.clone(), b.2.clone()))
                .unwrap_or_else(|| ("unknown".into(), "unknown".into()))
        })
        .collect()
}

pub fn active_state(unit: &str) -> Result<String> {
    Ok(states(&[unit.to_string()])?.remove(0).0)
}

/// Mount points at or below `dir`.
pub fn mounts_below(dir: &Path) -> Result<Vec<String>> {
    let d = dir.to_str().context("state directory is not UTF-8")?;
    let prefix = format!("{}/", d.trim_end_matches('/'));
    Ok(mountinfo::read()
        .context("reading /proc/self/mountinfo")?
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p == d || p.starts_with(&prefix))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_by_id() {
        let text = "Id=sdme-b.service\nActiveState=inactive\nSubState=dead\n\n\
                    ActiveState=active\nSubState=running\nId=sdme-a.service\n";
        let units = [
            "sdme-a.service".to_string(),
            "sdme-b.service".into(),
            "x".into(),
        ];
        assert_eq!(
            parse_states(text, &units),
            [
                ("active".into(), "running".into()),
                ("inactive".into(), "dead".into()),
                ("unknown".to_string(), "unknown".to_string())
            ]
        );
    }
}
