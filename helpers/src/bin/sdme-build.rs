//! sdme-build: see `sdme_helpers::build`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if sdme_helpers::version_asked("sdme-build", &args) {
        return ExitCode::SUCCESS;
    }
    match sdme_helpers::build::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("sdme-build: {msg}");
            ExitCode::FAILURE
        }
    }
}
