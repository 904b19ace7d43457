//! sdme-boot-wait(8): see `sdme_helpers::bootwait`.

use std::process::ExitCode;

use sdme_helpers::bootwait;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let guess = args.iter().find_map(|a| {
        a.to_str()
            .and_then(|s| s.strip_prefix("--machine="))
            .map(str::to_string)
    });
    let result = bootwait::parse_args(args).and_then(|opts| {
        if opts.stopped {
            let result = std::env::var("SERVICE_RESULT").ok();
            if let Some(why) = bootwait::explain_stop(&opts, result.as_deref()) {
                eprintln!("sdme-boot-wait: {}: {why}", opts.machine);
            }
            return Ok(());
        }
        bootwait::wait(&opts)
    });
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
