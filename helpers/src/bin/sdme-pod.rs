//! sdme-pod(8): see `sdme_helpers::pod`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if sdme_helpers::version_asked("sdme-pod", &args) {
        return ExitCode::SUCCESS;
    }
    if args.len() == 1 && args[0] == "app-spawn" {
        // AppPod='s spawner (sdme_helpers::apppod), for sdme-app-pod@.service.
        let records = std::path::Path::new(sdme_core::paths::APP_POD_RECORDS);
        sdme_helpers::apppod::spawn::serve(records, &sdme_helpers::pod::pods_dir());
        return ExitCode::SUCCESS;
    }
    match sdme_helpers::pod::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("sdme-pod: {msg}");
            ExitCode::FAILURE
        }
    }
}
