//! sdme-drop-privs(8): see `sdme_helpers::droppriv`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if sdme_helpers::version_asked("sdme-drop-privs", &args) {
        return ExitCode::SUCCESS;
    }
    // With AppPod= the host makes the app's process (sdme_helpers::apppod).
    let f = match args.split_first() {
        Some((flag, rest)) if flag == sdme_core::app_unit::VIA_POD => {
            sdme_helpers::apppod::client::run(rest, &sdme_helpers::apppod::client::socket_path())
        }
        _ => sdme_helpers::droppriv::run(&args),
    };
    eprintln!("sdme-drop-privs: {}", f.message.replace('\n', " "));
    ExitCode::from(f.status)
}
