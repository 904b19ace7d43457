//! sdme-import [OPTIONS] SOURCE NAME: see sdme-import(1).

use clap::Parser;

use sdme_import::cli::{main_with, Args};

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(main_with(&Args::parse(), "sdme-import"))
}
