//! `sdme-boot-wait --explain=UNIT`: run by `sdme-explain@UNIT.service`,
//! which a container service starts through `OnFailure=`. It names the
//! cause of failures that systemd's own messages leave vague, in the
//! failed unit's journal (see `journal`), and costs nothing when nothing
//! fails (an `ExecStopPost=` would run at every stop).
//!
//! Today that is the start timeout: systemd says only "start operation
//! timed out", while the cause is a guest that did not finish booting
//! within `BootTimeout=`.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// The properties of the failed unit that say what happened.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Failure {
    pub result: String,
    pub timeout: String,
}

/// Parse `systemctl show -p Result -p TimeoutStartUSec` output.
pub fn parse_show(text: &str) -> Failure {
    let mut f = Failure::default();
    for line in text.lines() {
        match line.split_once('=') {
            Some(("Result", v)) => f.result = v.to_string(),
            Some(("TimeoutStartUSec", v)) => f.timeout = v.to_string(),
            _ => {}
        }
    }
    f
}

/// The explanation for a failure, when there is one to give.
pub fn explanation(f: &Failure) -> Option<String> {
    (f.result == "timeout").then(|| {
        format!(
            "the container did not finish booting within BootTimeout={}: systemd-nspawn did not \
report the guest ready in time; the guest's boot messages are above, or raise BootTimeout= \
in the .container file",
            f.timeout
        )
    })
}

/// Look at `unit` and log the explanation, if any, in its journal.
pub fn run(unit: &str) -> Result<()> {
    sdme_core::value::check_unit_name(unit, "--explain").map_err(anyhow::Error::msg)?;
    let out = Command::new("systemctl")
        .args(["show", "-p", "Result", "-p", "TimeoutStartUSec", "--", unit])
        .output()
        .context("cannot run systemctl show")?;
    if !out.status.success() {
        bail!(
            "systemctl show {unit}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let f = parse_show(&String::from_utf8_lossy(&out.stdout));
    if let Some(why) = explanation(&f) {
        eprintln!("sdme-boot-wait: {unit}: {why}");
        crate::journal::send_about_unit(unit, "sdme-boot-wait", 3, &why);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_only_timeouts() {
        let f = parse_show("Result=timeout\nTimeoutStartUSec=1s\n");
        assert_eq!(
            f,
            Failure {
                result: "timeout".into(),
                timeout: "1s".into()
            }
        );
        let why = explanation(&f).unwrap();
        assert!(
            why.starts_with("the container did not finish booting within BootTimeout=1s"),
            "{why}"
        );
        assert_eq!(
            explanation(&parse_show("Result=exit-code\nTimeoutStartUSec=1min 30s\n")),
            None
        );
        assert_eq!(explanation(&parse_show("")), None);
    }
}
