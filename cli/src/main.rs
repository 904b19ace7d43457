//! sdme: the interactive command line. A thin front end: a container is
//! its `/etc/sdme/NAME.container` file plus systemd's state; nothing is
//! kept anywhere else.

mod cp;
mod create;
mod diff;
mod edit;
mod files;
mod layers;
mod lifecycle;
mod lookup;
mod new;
mod ps;
mod remove;
mod run;
mod sys;
mod write;

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;

use create::CreateOpts;

#[derive(Parser)]
#[command(
    name = "sdme",
    version,
    about = "Create and run sdme containers (systemd-nspawn on overlayfs)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write /etc/sdme/NAME.container from the options and reload systemd.
    Create {
        name: String,
        #[command(flatten)]
        opts: CreateOpts,
    },
    /// Create and start a container; run COMMAND in it when one is given.
    New {
        name: String,
        #[command(flatten)]
        opts: CreateOpts,
        /// Remove the container when COMMAND exits (needs COMMAND).
        #[arg(long, requires = "command")]
        rm: bool,
        /// Run this in the container once it is up (as `sdme exec`).
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Start containers and wait for their boot.
    Start {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Stop containers; returns once their overlay is unmounted.
    Stop {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        names: Vec<String>,
        /// Every running container.
        #[arg(short, long)]
        all: bool,
        /// SIGKILL every process at once, without the guest's shutdown.
        #[arg(long)]
        kill: bool,
    },
    /// Restart containers (stop, then start and wait for the boot).
    Restart {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove containers: their file in /etc/sdme, drop-ins and state.
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
        /// Stop a running container first instead of refusing.
        #[arg(short, long)]
        force: bool,
    },
    /// List the containers on the search path and their state.
    Ps,
    /// Run a command in a running container; its exit status is sdme's.
    Exec {
        name: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Show the container's unit log (journalctl -u sdme-NAME).
    Logs {
        name: String,
        /// Follow the log.
        #[arg(short, long)]
        follow: bool,
        /// Show the last N lines.
        #[arg(short = 'n', long, value_name = "N")]
        lines: Option<u32>,
    },
    /// Start containers at boot: a drop-in with [Install] WantedBy=machines.target.
    Enable {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Do not start containers at boot (removes or resets what enable set).
    Disable {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Print a container's file and every drop-in that applies, in order.
    Cat { name: String },
    /// Check the files on the search path (or FILEs) as the generator does.
    Verify { files: Vec<std::path::PathBuf> },
    /// Replace a container's resource limits (none given: clear them); a
    /// running container gets them at once.
    Set {
        name: String,
        #[command(flatten)]
        limits: files::Limits,
    },
    /// List what a container changed against its lower layer (A added,
    /// C changed, D deleted), read from its upper layer.
    Diff {
        name: String,
        /// A JSON array of {"change", "path"} objects.
        #[arg(long)]
        json: bool,
    },
    /// Copy files between the host and a container (NAME:/path), keeping
    /// owners, modes, xattrs and times; directories recursively.
    Cp { src: String, dst: String },
    /// Edit a drop-in of a container (or with --full its file) in
    /// $EDITOR; the result is checked before it is written.
    Edit {
        name: String,
        /// Edit the container's file itself (a vendor file is copied to
        /// /etc/sdme first).
        #[arg(long, conflicts_with = "drop_in")]
        full: bool,
        /// The drop-in to edit in /etc/sdme/NAME.container.d/.
        #[arg(long, value_name = "FILE.conf", default_value = edit::DEFAULT_DROPIN)]
        drop_in: String,
    },
    /// sdme's own settings.
    #[command(subcommand)]
    Config(ConfigCmd),
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print the completion script for SHELL (needs no root).
    Completions {
        #[arg(value_parser = ["bash", "zsh", "fish"])]
        shell: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Completions touch nothing: packagers generate them unprivileged.
    if let Cmd::Config(ConfigCmd::Completions { shell }) = &cli.cmd {
        return completions(shell);
    }
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("sdme: must be run as root");
        return ExitCode::FAILURE;
    }
    match run(cli.cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sdme: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Cmd) -> Result<ExitCode> {
    match cmd {
        Cmd::Create { name, opts } => {
            lifecycle::create(&name, &opts)?;
        }
        Cmd::New {
            name,
            opts,
            rm,
            command,
        } => return new::run(&name, &opts, rm, &command),
        Cmd::Start { names } => each(&names, lifecycle::start)?,
        Cmd::Stop { names, all, kill } => {
            let mode = if kill {
                lifecycle::StopMode::Kill
            } else {
                lifecycle::StopMode::Graceful
            };
            if all {
                lifecycle::stop_all(mode)?;
            } else {
                each(&names, |n| lifecycle::stop(n, mode))?;
            }
        }
        Cmd::Restart { names } => each(&names, lifecycle::restart)?,
        Cmd::Rm { names, force } => each(&names, |n| remove::rm(n, force))?,
        Cmd::Ps => ps::ps()?,
        Cmd::Exec { name, command } => return run::exec(&name, &command),
        Cmd::Logs {
            name,
            follow,
            lines,
        } => return run::logs(&name, follow, lines),
        Cmd::Enable { names } => each(&names, files::enable)?,
        Cmd::Disable { names } => each(&names, files::disable)?,
        Cmd::Cat { name } => files::cat(&name)?,
        Cmd::Verify { files } => return files::verify(&files),
        Cmd::Set { name, limits } => files::set(&name, &limits)?,
        Cmd::Diff { name, json } => diff::diff(&name, json)?,
        Cmd::Cp { src, dst } => cp::cp(&src, &dst)?,
        Cmd::Edit {
            name,
            full,
            drop_in,
        } => edit::edit(&name, full, Some(&drop_in))?,
        Cmd::Config(ConfigCmd::Completions { shell }) => return Ok(completions(&shell)),
    }
    Ok(ExitCode::SUCCESS)
}

fn completions(shell: &str) -> ExitCode {
    let Ok(sh) = Shell::from_str(shell, false) else {
        eprintln!("sdme: unknown shell '{shell}'");
        return ExitCode::FAILURE;
    };
    clap_complete::generate(sh, &mut Cli::command(), "sdme", &mut std::io::stdout());
    ExitCode::SUCCESS
}

/// Run `f` for each name; every failure is printed, the first decides.
fn each(names: &[String], f: impl Fn(&str) -> Result<()>) -> Result<()> {
    if let [one] = names {
        return f(one);
    }
    let mut failed = 0;
    for n in names {
        if let Err(e) = f(n) {
            eprintln!("sdme: {e:#}");
            failed += 1;
        }
    }
    if failed > 0 {
        bail!("{failed} of {} failed", names.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bash_completion_knows_commands_and_table_options() {
        let mut out = Vec::new();
        clap_complete::generate(Shell::Bash, &mut Cli::command(), "sdme", &mut out);
        let s = String::from_utf8(out).unwrap();
        for w in ["create", "exec", "--rootfs", "--nspawn-arg", "--memory"] {
            assert!(s.contains(w), "{w} missing");
        }
    }

    #[test]
    fn exec_takes_the_command_after_dashes() {
        let c = Cli::try_parse_from(["sdme", "exec", "a", "--", "sh", "-c", "exit 7"]).unwrap();
        match c.cmd {
            Cmd::Exec { name, command } => {
                assert_eq!(name, "a");
                assert_eq!(command, ["sh", "-c", "exit 7"]);
            }
            _ => panic!("not exec"),
        }
        assert!(Cli::try_parse_from(["sdme", "exec", "a"]).is_err());
        // --rm needs a command to wait for.
        assert!(Cli::try_parse_from(["sdme", "new", "a", "--rm"]).is_err());
        assert!(Cli::try_parse_from(["sdme", "new", "a", "--rm", "--", "true"]).is_ok());
    }

    #[test]
    fn stop_takes_names_or_all() {
        assert!(Cli::try_parse_from(["sdme", "stop"]).is_err());
        assert!(Cli::try_parse_from(["sdme", "stop", "-a", "x"]).is_err());
        assert!(Cli::try_parse_from(["sdme", "stop", "-a", "--kill"]).is_ok());
        assert!(Cli::try_parse_from(["sdme", "stop", "--kill", "x", "y"]).is_ok());
    }
}
