//! `sdme new`: create, start, then run a command; what a failed start
//! created is removed again.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::create::CreateOpts;
use crate::lifecycle::{create, start};
use crate::lookup::load;
use crate::remove::rm;
use crate::run::{exec, exec_command};

/// create + start (+ exec). `join` is not there yet: without a command,
/// `new` leaves the container running and says how to get in. A failed
/// start removes what `new` created.
pub fn run(name: &str, opts: &CreateOpts, remove: bool, command: &[String]) -> Result<ExitCode> {
    create(name, opts)?;
    if let Err(e) = start(name) {
        if let Err(e2) = rm(name, true) {
            eprintln!("sdme: removing {name} again: {e2:#}");
        }
        return Err(e.context(format!("{name} did not start and was removed")));
    }
    if command.is_empty() {
        println!("{name} is running; enter it with: machinectl shell {name}");
        return Ok(ExitCode::SUCCESS);
    }
    if !remove {
        return exec(name, command);
    }
    // --rm: run COMMAND as a child, then remove; COMMAND's status is ours.
    let mut child = exec_command(&load(name)?.machine, command)
        .spawn()
        .context("running systemd-run")?;
    // Ctrl+C is for COMMAND (the child, spawned with the default
    // disposition): sdme stays to remove the container.
    // SAFETY: setting a signal disposition to SIG_IGN installs no handler.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    let st = child.wait().context("waiting for systemd-run")?;
    rm(name, true)?;
    let code = st
        .code()
        .or_else(|| st.signal().map(|s| 128 + s))
        .unwrap_or(1);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
