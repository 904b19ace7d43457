//! A build's `Run=` step (sdme.build(5), issue 15): `/bin/sh -c COMMAND`
//! inside the booted build container through `systemd-run -M MACHINE
//! --wait --pipe` (which forwards the exit status, unlike `machinectl
//! shell` on systemd 252 and 257), with the build's environment. Its
//! output (stdout and stderr, in order, through one pipe) is streamed to
//! the terminal or the unit's journal as it comes, and the last lines are
//! kept for the error message of a failed step.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::process::{Child, Command, ExitStatus, Stdio};

use anyhow::{Context, Result};

/// How many of the last output lines a failed step's message shows.
pub const LAST_LINES: usize = 20;
/// Longest output line kept for the message (the stream gets it whole).
const LINE_MAX: usize = 1000;

/// The command that runs `command` in `machine` with `env` (`NAME=VALUE`).
pub fn step_command(machine: &str, env: &[String], command: &str) -> Command {
    let mut c = Command::new("systemd-run");
    c.args([
        "--quiet",
        "--wait",
        "--pipe",
        "--collect",
        "--service-type=exec",
    ]);
    c.arg(format!("--machine={machine}"));
    for e in env {
        c.arg(format!("--setenv={e}"));
    }
    c.args(["--", "/bin/sh", "-c", command]);
    c
}

/// Run `cmd` with its stdout and stderr through one pipe, copying each
/// line to `out` as it comes; returns its status and its last `keep`
/// lines. `spawned` sees the child before it is waited for.
pub fn run_streaming(
    mut cmd: Command,
    out: &mut dyn Write,
    keep: usize,
    spawned: &dyn Fn(&Child),
) -> Result<(ExitStatus, Vec<String>)> {
    // Close-on-exec: the child gets the write end as its fds 1 and 2
    // only, and never the read end (which would keep EOF away).
    let (r, w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("cannot create a pipe")?;
    let w2: OwnedFd = w.try_clone().context("cannot duplicate the pipe")?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(w))
        .stderr(Stdio::from(w2));
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    spawned(&child);
    // The child holds the write ends now; ours must go for EOF to come.
    drop(cmd);
    let mut last: VecDeque<String> = VecDeque::with_capacity(keep + 1);
    let mut reader = BufReader::new(std::fs::File::from(r));
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .context("cannot read the step's output")?;
        if n == 0 {
            break;
        }
        // A closed terminal or journal must not stop the build.
        let _ = out.write_all(&line);
        let text = String::from_utf8_lossy(&line);
        let mut text = text.trim_end_matches('\n').to_string();
        if text.len() > LINE_MAX {
            let mut end = LINE_MAX;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push_str("...");
        }
        last.push_back(text);
        if last.len() > keep {
            last.pop_front();
        }
    }
    let _ = out.flush();
    let status = child.wait().context("cannot wait for the step")?;
    Ok((status, last.into()))
}

/// The error of a failed `Run=`: where, what, how it ended, its last
/// lines.
pub fn failure(at: &str, text: &str, status: ExitStatus, last: &[String]) -> String {
    let how = match (
        status.code(),
        std::os::unix::process::ExitStatusExt::signal(&status),
    ) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        _ => "failed".to_string(),
    };
    let mut m = format!("{at}: {text}: {how}");
    if !last.is_empty() {
        m.push_str("; its last lines:");
        for l in last {
            m.push_str("\n  ");
            m.push_str(l);
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_command_line() {
        let c = step_command("sdme-build-web", &["A=b c".into()], "apt-get install -y x");
        let args: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(c.get_program(), "systemd-run");
        assert_eq!(
            args,
            [
                "--quiet",
                "--wait",
                "--pipe",
                "--collect",
                "--service-type=exec",
                "--machine=sdme-build-web",
                "--setenv=A=b c",
                "--",
                "/bin/sh",
                "-c",
                "apt-get install -y x"
            ]
        );
    }

    #[test]
    fn output_is_streamed_in_order_and_the_last_lines_kept() {
        let mut c = Command::new("/bin/sh");
        c.args([
            "-c",
            "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done; exit 3",
        ]);
        let mut out = Vec::new();
        let (status, last) = run_streaming(c, &mut out, 3, &|_| {}).unwrap();
        assert_eq!(status.code(), Some(3));
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 10);
        assert!(text.starts_with("out1\nerr1\n"), "{text}");
        assert_eq!(last, ["err4", "out5", "err5"]);
        let m = failure("/etc/sdme/web.build:4", "Run=x", status, &last);
        assert_eq!(
            m,
            "/etc/sdme/web.build:4: Run=x: exited with status 3; its last lines:\n  err4\n  out5\n  err5"
        );
        let mut c = Command::new("/bin/sh");
        c.args(["-c", "kill -9 $$"]);
        let (status, last) = run_streaming(c, &mut Vec::new(), 3, &|_| {}).unwrap();
        assert!(last.is_empty());
        assert_eq!(
            failure("f:1", "Run=y", status, &last),
            "f:1: Run=y: was killed by signal 9"
        );
    }
}
