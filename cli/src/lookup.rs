//! Finding a container: the search path, sdme.conf and the validated
//! model of a file, shared by every command.

use std::path::PathBuf;

use anyhow::{Context, Result};
use sdme_core::config::Config;
use sdme_core::container::Container;
use sdme_core::paths::unit_dirs;
use sdme_core::render::unit_service_name;
use sdme_core::search::{search, FileType, UnitName};

use crate::create;

pub fn dirs() -> Vec<PathBuf> {
    let (dirs, errors) = unit_dirs();
    for e in errors {
        eprintln!("sdme: {e}");
    }
    dirs
}

pub fn config(dirs: &[PathBuf]) -> Config {
    // The generator reports the configuration's own errors; here only
    // the values matter.
    Config::load(dirs).0
}

pub fn service(name: &str) -> String {
    unit_service_name(&UnitName::Plain(name.into()))
}

/// The container named `name`, validated as the generator does.
pub fn load(name: &str) -> Result<Container> {
    create::check_name(name)?;
    load_unit(&UnitName::Plain(name.into()))
}

/// The container of the file `name` (an instance too), validated.
pub fn load_unit(name: &UnitName) -> Result<Container> {
    let dirs = dirs();
    let found = search(&dirs, FileType::Container)
        .found
        .into_iter()
        .find(|f| f.name == *name)
        .with_context(|| {
            let n = name.stem();
            format!("no container {n} (no {n}.container on the search path)")
        })?;
    Container::load_with(&found, &config(&dirs)).map_err(|d| {
        let lines: Vec<String> = d.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("{}", lines.join("\n"))
    })
}

/// Write all of `out`; a closed pipe (`sdme ps | head -1`) is not an error.
pub fn write_stdout(out: &[u8]) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().write_all(out) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to stdout"),
    }
}
