//! sdme: the interactive command line. A thin front end: a container is
//! its `/etc/sdme/NAME.container` file plus systemd's state; nothing is
//! kept anywhere else.

mod complete;
mod config;
mod cp;
mod cpcheck;
mod cpmeta;
mod cpns;
mod create;
mod diff;
mod edit;
mod exec;
mod files;
mod fs;
mod fsbuild;
mod fsimport;
mod layers;
mod lifecycle;
mod lookup;
mod names;
mod new;
mod pod;
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
        /// Terminate through machined (TerminateMachine), wait 30 s.
        #[arg(long, conflicts_with = "kill")]
        term: bool,
        /// SIGKILL every process at once, without the guest's shutdown,
        /// then stop and reset-failed the unit (15 s).
        #[arg(long)]
        kill: bool,
    },
    /// Restart containers (stop, then start and wait for the boot).
    Restart {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove containers: their file in /etc/sdme or /run/sdme, drop-ins and
    /// state; a vendor file is masked with a link to /dev/null in /etc/sdme.
    /// NAME@ removes a template with its instances' state.
    Rm {
        /// Containers, templates (NAME@) or instances with a file of their
        /// own (NAME@INSTANCE).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        names: Vec<String>,
        /// Stop a running container (a template's running instances) first
        /// instead of refusing (and, with -a, do not ask).
        #[arg(short, long)]
        force: bool,
        /// Every container on the search path, templates too; asks on a
        /// terminal, needs -f otherwise.
        #[arg(short, long)]
        all: bool,
        /// Remove the application's anonymous volumes too
        /// (/var/lib/sdme/volumes/MACHINE), which are kept otherwise.
        #[arg(long)]
        volumes: bool,
    },
    /// List the containers on the search path and their state.
    Ps {
        /// Also list bare templates (NAME@.container), with STATUS template.
        #[arg(short, long)]
        all: bool,
        /// One JSON array (fields: sdme(1)).
        #[arg(long)]
        json: bool,
    },
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
        /// In the application (App=): its root, environment, user and
        /// working directory, as its unit sdme-app.service runs it.
        #[arg(long)]
        app: bool,
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
    /// Root file systems: import, list, remove, export.
    #[command(subcommand)]
    Fs(fs::FsCmd),
    /// Pods: network namespaces that containers share (sdme.pod(5)).
    #[command(subcommand)]
    Pod(pod::PodCmd),
    /// For the completion scripts: names of KIND, one a line, or those the
    /// last of WORDS (a command line) takes, exit status 1 if it takes
    /// none (needs no root).
    #[command(name = "__names", hide = true)]
    Names {
        #[arg(required_unless_present = "words")]
        kind: Option<complete::Kind>,
        #[arg(last = true)]
        words: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print KEY's value in force, or every key with its value and default.
    Get {
        /// Section.Key, e.g. Hardened.DropCapability.
        key: Option<String>,
    },
    /// Set KEY to VALUE in /etc/sdme/sdme.conf, changing only its line.
    Set {
        /// Section.Key, e.g. Hardened.DropCapability.
        key: String,
        /// The value; empty for a list key empties it.
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
    /// Print the shipped AppArmor profile sdme-default.
    ApparmorProfile,
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
    if let Cmd::Names { kind, words } = cli.cmd {
        let r = match kind {
            Some(kind) => complete::names(kind).map(|()| true),
            None => complete::names_at(&words),
        };
        return match r {
            Ok(true) => ExitCode::SUCCESS,
            _ => ExitCode::FAILURE,
        };
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
            if e.downcast_ref::<lifecycle::Interrupted>().is_some() {
                return ExitCode::from(lifecycle::INTERRUPTED_EXIT);
            }
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
        Cmd::Stop {
            names,
            all,
            term,
            kill,
        } => {
            let mode = if kill {
                lifecycle::StopMode::Kill
            } else if term {
                lifecycle::StopMode::Term
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
        Cmd::Rm {
            names,
            force,
            all,
            volumes,
        } => {
            if all {
                remove::rm_all(force, volumes)?;
            } else {
                each(&names, |n| remove::rm(n, force, volumes))?;
            }
        }
        Cmd::Ps { all, json } => ps::ps(all, json)?,
        Cmd::Join { name, command } => return run::join(&name, &command),
        Cmd::Exec { name, app, command } => return run::exec(&name, &command, app),
        Cmd::Logs { name, opts } => return run::logs(&name, &opts),
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
        Cmd::Fs(c) => return fs::run(c),
        Cmd::Pod(c) => pod::run(c)?,
        Cmd::Config(ConfigCmd::Get { key }) => config::get(key.as_deref())?,
        Cmd::Config(ConfigCmd::Set { key, value }) => config::set(&key, &value)?,
        Cmd::Config(ConfigCmd::ApparmorProfile) => config::apparmor_profile()?,
        Cmd::Names { .. } => unreachable!("answered before the root check"),
    }
    Ok(ExitCode::SUCCESS)
}

fn completions(shell: &str) -> ExitCode {
    let Ok(sh) = Shell::from_str(shell, false) else {
        eprintln!("sdme: unknown shell '{shell}'");
        return ExitCode::FAILURE;
    };
    let mut out = Vec::new();
    clap_complete::generate(sh, &mut Cli::command(), "sdme", &mut out);
    let script = String::from_utf8_lossy(&out);
    let out = match sh {
        Shell::Bash => complete::bash(&script),
        Shell::Zsh => complete::zsh(&script),
        Shell::Fish => complete::fish(&script),
        _ => script.into_owned(),
    };
    match lookup::write_stdout(out.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sdme: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Run `f` for each name; every failure is printed, the first decides.
pub(crate) fn each(names: &[String], f: impl Fn(&str) -> Result<()>) -> Result<()> {
    if let [one] = names {
        return f(one);
    }
    let mut failed = 0;
    for n in names {
        if let Err(e) = f(n) {
            // Ctrl+C ends the whole command, not one name of it.
            if e.downcast_ref::<lifecycle::Interrupted>().is_some() {
                return Err(e);
            }
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
        // Names come from `sdme __names`, through a function registered
        // in place of clap's and defined before it is registered.
        let s = complete::bash(&s);
        let def = s.find("_sdme_names() {").expect("no _sdme_names");
        let reg = s.find("complete -F _sdme_names").expect("not registered");
        assert!(def < reg);
        assert!(!s.contains("complete -F _sdme "));
        assert!(Cli::try_parse_from(["sdme", "__names", "rootfs"]).is_ok());
        assert!(Cli::try_parse_from(["sdme", "__names", "--", "sdme", "stop", "--kill"]).is_ok());
        assert!(Cli::try_parse_from(["sdme", "__names"]).is_err());
        // The fish additions call clap's helper function.
        let mut out = Vec::new();
        clap_complete::generate(Shell::Fish, &mut Cli::command(), "sdme", &mut out);
        let f = String::from_utf8(out).unwrap();
        assert!(f.contains("function __fish_sdme_using_subcommand"));
    }

    #[test]
    fn exec_takes_the_command_after_dashes() {
        let c = Cli::try_parse_from(["sdme", "exec", "a", "--", "sh", "-c", "exit 7"]).unwrap();
        match c.cmd {
            Cmd::Exec { name, command, .. } => {
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
    fn rm_takes_names_or_all() {
        assert!(Cli::try_parse_from(["sdme", "rm"]).is_err());
        assert!(Cli::try_parse_from(["sdme", "rm", "-a", "x"]).is_err());
        assert!(Cli::try_parse_from(["sdme", "rm", "-a", "-f"]).is_ok());
        assert!(Cli::try_parse_from(["sdme", "config", "set", "K", "-x"]).is_ok());
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
        assert!(Cli::try_parse_from(["sdme", "stop", "--term", "x"]).is_ok());
        assert!(Cli::try_parse_from(["sdme", "stop", "--term", "--kill", "x"]).is_err());
        assert!(Cli::try_parse_from(["sdme", "ps", "-a", "--json"]).is_ok());
    }
}
