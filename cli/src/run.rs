//! Running commands in a container (`exec`) and reading its log.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

use crate::lookup::{load, service};
use crate::sys;

/// Run `command` in the running container: systemd-run forwards the
/// exit status (machinectl shell does not, DESIGN.md), and sdme becomes
/// it, so signals and the status pass through unchanged.
pub fn exec(name: &str, command: &[String]) -> Result<ExitCode> {
    let c = load(name)?;
    let state = sys::active_state(&service(name))?;
    if state != "active" {
        bail!("{name} is not running ({state})");
    }
    let e = exec_command(&c.machine, command).exec();
    Err(e).context("running systemd-run")
}

pub fn exec_command(machine: &str, command: &[String]) -> Command {
    let mut cmd = Command::new("systemd-run");
    cmd.args(["-M", machine, "--wait", "--pipe", "-q", "--collect", "--"])
        .args(command);
    cmd
}

pub fn logs(name: &str, follow: bool, lines: Option<u32>) -> Result<ExitCode> {
    load(name)?;
    let mut cmd = Command::new("journalctl");
    cmd.args(["-u", &service(name)]);
    if follow {
        cmd.arg("-f");
    }
    if let Some(n) = lines {
        cmd.arg(format!("--lines={n}"));
    }
    Err(cmd.exec()).context("running journalctl")
}
