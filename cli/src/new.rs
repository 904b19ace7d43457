//! `sdme new`: create, start, then join (or run a command). What this
//! `new` created is removed again when the start fails, the session cannot
//! open, or a signal (Ctrl+C) comes at any point.

use std::process::{Command, ExitCode, Stdio};

use anyhow::{anyhow, Result};

use crate::create::CreateOpts;
use crate::lifecycle::{create_named, start, stop, StopMode};
use crate::lookup::service;
use crate::remove::rm;
use crate::run::{run_in, running_machine, Mode};
use crate::signals::{self, Signals};

pub fn run(
    name: Option<&str>,
    opts: &CreateOpts,
    remove: bool,
    command: &[String],
) -> Result<ExitCode> {
    // Before anything exists, so that no step misses a signal.
    let sig = Signals::catch()?;
    let generated = name.is_none();
    let (name, _) = create_named(name, opts)?;
    if generated {
        eprintln!("sdme: created {name}");
    }
    let removed = |why: anyhow::Error| -> Result<ExitCode> {
        // Killed, not shut down: the container is thrown away, and a
        // guest interrupted in its boot may not halt before the timeout.
        let stopped = stop(&name, StopMode::Kill);
        if let Err(e) = stopped.and_then(|_| rm(&name, true, false)) {
            eprintln!("sdme: removing {name} again: {e:#}");
        }
        Err(why.context(format!("{name} was removed again")))
    };
    let interrupted = |s: i32| anyhow!("interrupted by {}", signals::name(s));
    if let Some(s) = sig.received() {
        return removed(interrupted(s));
    }
    // A signal during the boot cancels the start job (systemctl start
    // then returns); the removal follows below.
    let unit = service(&name);
    sig.on_signal(move |_| {
        let _ = Command::new("systemctl")
            .args(["stop", "--no-block", &unit])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    });
    let started = start(&name);
    if let Some(s) = sig.received() {
        return removed(interrupted(s));
    }
    if let Err(e) = started {
        return removed(e.context(format!("{name} did not start")));
    }
    let machine = match running_machine(&name) {
        Ok(m) => m,
        Err(e) => return removed(e),
    };
    let mode = if command.is_empty() {
        Mode::Join
    } else {
        Mode::Pipe
    };
    let code = match run_in(&machine, command, mode, &sig) {
        Ok(c) => c,
        Err(e) => return removed(e.context("the session did not open")),
    };
    if let Some(s) = sig.received() {
        return removed(interrupted(s));
    }
    if remove {
        rm(&name, true, false)?;
    }
    Ok(code)
}
