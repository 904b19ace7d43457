//! sdme-generator: turns sdme's `.container` files into units.
//!
//! Run by systemd at boot and at every daemon-reload as
//! `sdme-generator NORMAL EARLY LATE`; it writes only into NORMAL. Run by
//! hand with `--dry-run` it prints what it would write and validates every
//! file. See sdme-generator(8).

mod log;
mod write;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use log::{Level, Logger};
use sdme_core::broken::render_broken;
use sdme_core::generate::{generate, plan_with};
use sdme_core::orphan::render_orphan;
use sdme_core::paths;
use sdme_core::render::Output;
use sdme_core::render::{render, render_build, render_image, render_pod};

const USAGE: &str = "\
Usage: sdme-generator NORMAL-DIR [EARLY-DIR LATE-DIR]
       sdme-generator --dry-run

Generate systemd units from sdme .container, .pod and .image files found on
the search path (/etc/sdme, /run/sdme, /usr/local/lib/sdme, /usr/lib/sdme, or
$SDME_UNIT_DIRS).

  --dry-run    print every unit and symlink instead of writing them; exit
               non-zero if any file has an error
  -h, --help   show this help
  --version    show the version
";

enum Mode {
    Write(PathBuf),
    DryRun,
}

fn parse_args() -> Result<Mode, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag] if flag == "--dry-run" => Ok(Mode::DryRun),
        [flag] if flag == "-h" || flag == "--help" => {
            print!("{USAGE}");
            std::process::exit(0);
        }
        [flag] if flag == "--version" => {
            println!("sdme-generator {}", env!("CARGO_PKG_VERSION"));
            std::process::exit(0);
        }
        [normal] | [normal, _, _] if !normal.starts_with('-') => {
            Ok(Mode::Write(PathBuf::from(normal)))
        }
        _ => Err(format!("invalid arguments\n{USAGE}")),
    }
}

fn main() -> ExitCode {
    let log = Logger::from_env();
    let mode = match parse_args() {
        Ok(m) => m,
        Err(e) => {
            log.error_everywhere(&e);
            return ExitCode::from(2);
        }
    };
    let (dirs, dir_errors) = paths::unit_dirs();
    log.log(
        Level::Debug,
        &format!(
            "search path: {}",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(":")
        ),
    );
    // The containers that run: a unit stops each whose file is gone.
    let records = match paths::inuse_dir() {
        None => Vec::new(),
        Some(d) => sdme_core::inuse::read_all(&d).unwrap_or_else(|e| {
            log.error_everywhere(&format!(
                "cannot read {}: {e}; containers whose file was removed or broke while they ran keep no unit that stops them",
                d.display()
            ));
            Vec::new()
        }),
    };
    let mut write_failed = false;
    let (g, results) = match &mode {
        Mode::DryRun => {
            let mut stdout = std::io::stdout().lock();
            let g = generate(&dirs, &records, &mut |o| {
                let _ = match &o {
                    Output::File { path, content } => write!(stdout, "# {path}\n{content}\n"),
                    Output::Symlink { path, target } => write!(stdout, "# {path} -> {target}\n\n"),
                };
            });
            (g, Vec::new())
        }
        Mode::Write(dir) => match write::Writer::new(dir) {
            Err(e) => (plan_with(&dirs, &records, |_| ()).0, vec![Err(e)]),
            Ok(w) => {
                let debug = log.enabled(Level::Debug);
                let write = |o: Output| {
                    match &o {
                        Output::File { path, content } => w.file(path, content.as_bytes()),
                        Output::Symlink { path, target } => w.symlink(path, target),
                    }
                    // The path only for the debug log, most runs have none.
                    .map(|()| debug.then(|| o.into_path()))
                };
                // Each accepted container's units are rendered and written
                // on a worker thread as soon as it is checked, while later
                // files are still read and checked; the results come back
                // in file order. Only those with something to log are
                // kept: a run without errors or debug log then makes (and
                // frees, after the others are done) no list per container.
                let (g, written) = plan_with(&dirs, &records, |c| {
                    (render(c).into_iter().map(write))
                        .filter(|r| !matches!(r, Ok(None)))
                        .collect::<Vec<_>>()
                });
                let results = g
                    .pods
                    .iter()
                    .flat_map(render_pod)
                    .chain(g.images.iter().flat_map(render_image))
                    .chain(g.builds.iter().flat_map(render_build))
                    .chain(g.broken.iter().map(render_broken))
                    .chain(g.orphans.iter().map(render_orphan))
                    .map(write)
                    .chain(written.into_iter().flatten())
                    .collect();
                (g, results)
            }
        },
    };
    for r in results {
        match r {
            Ok(Some(path)) => log.log(Level::Debug, &format!("wrote {path}")),
            Ok(None) => {}
            Err(e) => {
                log.error_everywhere(&e);
                write_failed = true;
            }
        }
    }
    for m in &g.masked {
        log.log(Level::Debug, &format!("{}: masked", m.display()));
    }
    // Errors go to stderr as well as kmsg: a manual run, `systemd-analyze
    // verify` and the journal all show why a unit is missing.
    for e in dir_errors.iter().chain(&g.errors) {
        log.error_everywhere(e);
    }
    for f in &g.skipped {
        log.error_everywhere(&format!("{}: skipped, no units generated", f.display()));
    }
    for o in &g.orphans {
        log.log(Level::Info, &sdme_core::orphan::notice(o));
    }
    let failed = write_failed || !g.errors.is_empty() || !dir_errors.is_empty();
    log.log(
        Level::Debug,
        &format!(
            "{} container(s) generated, {} error(s)",
            g.containers.len(),
            g.errors.len()
        ),
    );
    // The plan of a big run is thousands of small allocations; the exit
    // frees them at once.
    std::mem::forget(g);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
