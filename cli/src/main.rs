//! sdme: the interactive command line. A thin front end: a container is
//! its `/etc/sdme/NAME.container` file plus systemd's state; nothing is
//! kept anywhere else.

mod create;
mod files;
mod lifecycle;
mod lookup;
mod names;
mod new;
mod ps;
mod remove;
mod run;
mod signals;
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
    /// Without NAME, a free adjective-noun name is made up and printed.
    Create {
        name: Option<String>,
        #[command(flatten)]
        opts: CreateOpts,
    },
    /// Create and start a container, then join it (or run COMMAND in it);
    /// a failed start or a Ctrl+C removes it again.
    New {
        name: Option<String>,
        #[command(flatten)]
        opts: CreateOpts,
        /// Remove the container when the shell or COMMAND exits.
        #[arg(long)]
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
    /// A login shell (or COMMAND) on a terminal in a running container;
    /// its exit status is sdme's.
    Join {
        name: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Run a command in a running container; its exit status is sdme's.
    Exec {
        name: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Show the container's unit log (journalctl -u sdme-NAME), or with
    /// --guest its own journal.
    Logs {
        name: String,
        #[command(flatten)]
        opts: run::LogOpts,
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
            let (made, _) = lifecycle::create_named(name.as_deref(), &opts)?;
            if name.is_none() {
                println!("{made}");
            }
        }
        Cmd::New {
            name,
            opts,
            rm,
            command,
        } => return new::run(name.as_deref(), &opts, rm, &command),
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
        Cmd::Join { name, command } => return run::join(&name, &command),
        Cmd::Exec { name, command } => return run::exec(&name, &command),
        Cmd::Logs { name, opts } => return run::logs(&name, &opts),
        Cmd::Enable { names } => each(&names, files::enable)?,
        Cmd::Disable { names } => each(&names, files::disable)?,
        Cmd::Cat { name } => files::cat(&name)?,
        Cmd::Verify { files } => return files::verify(&files),
        Cmd::Set { name, limits } => files::set(&name, &limits)?,
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
        assert!(Cli::try_parse_from(["sdme", "new", "a", "--rm"]).is_ok());
        assert!(Cli::try_parse_from(["sdme", "new", "a", "--rm", "--", "true"]).is_ok());
    }

    #[test]
    fn names_are_optional_for_create_and_new() {
        match Cli::try_parse_from(["sdme", "new", "--", "hostname"])
            .unwrap()
            .cmd
        {
            Cmd::New { name, command, .. } => {
                assert_eq!(name, None);
                assert_eq!(command, ["hostname"]);
            }
            _ => panic!("not new"),
        }
        match Cli::try_parse_from(["sdme", "new", "-r", "deb", "--rm"])
            .unwrap()
            .cmd
        {
            Cmd::New {
                name, rm, command, ..
            } => {
                assert_eq!(name, None);
                assert!(rm && command.is_empty());
            }
            _ => panic!("not new"),
        }
        match Cli::try_parse_from(["sdme", "create"]).unwrap().cmd {
            Cmd::Create { name, .. } => assert_eq!(name, None),
            _ => panic!("not create"),
        }
    }

    #[test]
    fn join_takes_a_command_with_or_without_dashes() {
        for argv in [
            &["sdme", "join", "a", "--", "sh", "-c", "exit 5"][..],
            &["sdme", "join", "a", "sh", "-c", "exit 5"][..],
        ] {
            match Cli::try_parse_from(argv).unwrap().cmd {
                Cmd::Join { name, command } => {
                    assert_eq!(name, "a");
                    assert_eq!(command, ["sh", "-c", "exit 5"]);
                }
                _ => panic!("not join"),
            }
        }
        match Cli::try_parse_from(["sdme", "join", "a"]).unwrap().cmd {
            Cmd::Join { command, .. } => assert!(command.is_empty()),
            _ => panic!("not join"),
        }
    }

    #[test]
    fn logs_options_and_pass_through() {
        let c = Cli::try_parse_from([
            "sdme", "logs", "a", "-f", "-n", "5", "--since", "1h ago", "--guest", "--", "-o",
            "json",
        ])
        .unwrap();
        match c.cmd {
            Cmd::Logs { name, opts } => {
                assert_eq!(name, "a");
                assert!(opts.follow && opts.guest);
                assert_eq!(opts.lines, Some(5));
                assert_eq!(opts.since.as_deref(), Some("1h ago"));
                assert_eq!(opts.rest, ["-o", "json"]);
            }
            _ => panic!("not logs"),
        }
    }

    #[test]
    fn stop_takes_names_or_all() {
        assert!(Cli::try_parse_from(["sdme", "stop"]).is_err());
        assert!(Cli::try_parse_from(["sdme", "stop", "-a", "x"]).is_err());
        assert!(Cli::try_parse_from(["sdme", "stop", "-a", "--kill"]).is_ok());
        assert!(Cli::try_parse_from(["sdme", "stop", "--kill", "x", "y"]).is_ok());
    }
}
