//! sdme-boot-wait(8): see `sdme_helpers::bootwait` and, for
//! `--explain=UNIT`, `sdme_helpers::explain`.

use std::process::ExitCode;

use sdme_helpers::{bootwait, explain};

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if sdme_helpers::version_asked("sdme-boot-wait", &args) {
        return ExitCode::SUCCESS;
    }
    if let [only] = args.as_slice() {
        if let Some(unit) = only.to_str().and_then(|a| a.strip_prefix("--explain=")) {
            // Best effort, and never a failure of its own: it runs because
            // something else failed.
            if let Err(e) = explain::run(unit) {
                eprintln!("sdme-boot-wait: {e:#}");
            }
            return ExitCode::SUCCESS;
        }
    }
    let guess = args.iter().find_map(|a| {
        a.to_str()
            .and_then(|s| s.strip_prefix("--machine="))
            .map(str::to_string)
    });
    let result = bootwait::parse_args(args).and_then(|opts| bootwait::wait(&opts));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            match guess {
                Some(m) => eprintln!("sdme-boot-wait: {}: {msg}", m.escape_default()),
                None => eprintln!("sdme-boot-wait: {msg}"),
            }
            ExitCode::FAILURE
        }
    }
}
