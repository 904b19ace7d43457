//! sdme-build: see `sdme_import::buildmain`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.len() == 1 && args[0] == "--version" {
        println!("sdme-build {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    match sdme_import::buildmain::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line per cause; a failed step's last lines stay lines.
            eprintln!("sdme-build: {e:#}");
            ExitCode::FAILURE
        }
    }
}
