//! sdme-import [OPTIONS] SOURCE NAME: see sdme-import(1).

use clap::Parser;

use sdme_import::cancel;
use sdme_import::cli::Args;

fn main() {
    let args = Args::parse();
    // Modes come from the archive; the umask must not change them.
    // SAFETY: umask has no failure mode.
    unsafe { libc::umask(0o022) };
    if let Err(e) = sdme_import::cli::run(&args) {
        let msg = format!("{e:#}").replace('\n', " ");
        if cancel::is_interrupted(&e) {
            eprintln!("sdme-import: interrupted; nothing was imported");
            std::process::exit(130);
        }
        eprintln!("sdme-import: {msg}");
        std::process::exit(1);
    }
}
