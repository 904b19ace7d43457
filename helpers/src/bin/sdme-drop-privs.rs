//! sdme-drop-privs(8): see `sdme_helpers::droppriv`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if sdme_helpers::version_asked("sdme-drop-privs", &args) {
        return ExitCode::SUCCESS;
    }
    let f = sdme_helpers::droppriv::run(&args);
    eprintln!("sdme-drop-privs: {}", f.message.replace('\n', " "));
    ExitCode::from(f.status)
}
