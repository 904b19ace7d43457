//! sdme-prepare(8): see `sdme_helpers::prepare`.

use std::process::ExitCode;

use sdme_helpers::prepare;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let guess = prepare::machine_guess(&args);
    let result = prepare::parse_args(args).and_then(|opts| {
        let r = prepare::run(&opts)?;
        Ok((opts, r))
    });
    match result {
        Ok((opts, report)) => {
            for w in &report.warnings {
                eprintln!("sdme-prepare: {}: warning: {w}", opts.machine);
            }
            if report.already_mounted {
                println!(
                    "sdme-prepare: {}: overlay already mounted on {}; upper/ left as it is",
                    opts.machine,
                    prepare::merged_dir(&opts.state).display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            // One line: the journal shows it next to the failed unit.
            let msg = format!("{e:#}").replace('\n', " ");
            match guess {
                Some(m) => eprintln!("sdme-prepare: {}: {msg}", m.escape_default()),
                None => eprintln!("sdme-prepare: {msg}"),
            }
            ExitCode::FAILURE
        }
    }
}
