//! sdme-prepare(8): see `sdme_helpers::prepare`.

use std::path::Path;
use std::process::ExitCode;

use sdme_core::paths;

use sdme_helpers::{journal, overlay, prepare};

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if sdme_helpers::version_asked("sdme-prepare", &args) {
        return ExitCode::SUCCESS;
    }
    // The static sdme-prepare@.service: the arguments are in the mount unit.
    let args = match prepare::expand_generated(args, Path::new(paths::GENERATOR_DIR)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sdme-prepare: {}", format!("{e:#}").replace('\n', " "));
            return ExitCode::FAILURE;
        }
    };
    let guess = prepare::machine_guess(&args);
    // The container's service, to log a failure in its journal too; not
    // with --mount, which runs in that service (ExecStartPre=), whose
    // journal has the lines already.
    let in_service = args.iter().any(|a| a == "--mount");
    let unit = args.iter().filter(|_| !in_service).find_map(|a| {
        a.to_str()
            .and_then(|s| s.strip_prefix("--unit="))
            .filter(|u| sdme_core::value::check_unit_name(u, "unit").is_ok())
            .map(str::to_string)
    });
    let result = prepare::parse_args(args).and_then(|opts| {
        let r = prepare::run(&opts)?;
        Ok((opts, r))
    });
    match result {
        Ok((opts, report)) => {
            for w in &report.warnings {
                eprintln!("sdme-prepare: {}: warning: {w}", opts.machine);
            }
            for w in &report.unit_warnings {
                let line = format!("{}: warning: {w}", opts.machine);
                eprintln!("sdme-prepare: {line}");
                // The container's journal (systemd says nothing there).
                if let Some(u) = opts.unit.as_ref().filter(|_| !in_service) {
                    journal::send_about_unit(u, "sdme-prepare", 4, &line);
                }
            }
            if report.already_mounted {
                println!(
                    "sdme-prepare: {}: overlay already mounted on {}; upper/ left as it is",
                    opts.machine,
                    overlay::merged_dir(&opts.state).display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            // One line: the journal shows it next to the failed unit.
            let msg = format!("{e:#}").replace('\n', " ");
            let line = match guess {
                Some(m) => format!("{}: {msg}", m.escape_default()),
                None => msg,
            };
            eprintln!("sdme-prepare: {line}");
            if let Some(u) = unit {
                journal::send_about_unit(&u, "sdme-prepare", 3, &line);
            }
            ExitCode::FAILURE
        }
    }
}
