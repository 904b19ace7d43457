//! Finding a container: the search path, sdme.conf and the validated
//! model of a file, shared by every command.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use sdme_core::config::Config;
use sdme_core::container::{instance_machine, Container};
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

/// The container of the file `name`, validated; an instance without a
/// file of its own is its template's container with the instance's
/// machine name (as systemd runs it from the template's unit).
pub fn load_unit(name: &UnitName) -> Result<Container> {
    let dirs = dirs();
    let found = search(&dirs, FileType::Container).found;
    let (f, instance) = match (found.iter().find(|f| f.name == *name), name) {
        (Some(f), _) => (f, None),
        (None, UnitName::Instance { template, instance }) => {
            let t = UnitName::Template(template.clone());
            let f = found.iter().find(|f| f.name == t).with_context(|| {
                format!(
                    "no container {} and no template {template}@.container on the search path",
                    name.stem()
                )
            })?;
            (f, Some(instance))
        }
        (None, _) => {
            let n = name.stem();
            bail!("no container {n} (no {n}.container on the search path)")
        }
    };
    let mut c = Container::load_with(f, &config(&dirs)).map_err(|d| {
        let lines: Vec<String> = d.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("{}", lines.join("\n"))
    })?;
    if let Some(i) = instance {
        // A template's machine name is the instances' prefix.
        c.machine = instance_machine(&c.machine, i);
    }
    Ok(c)
}

/// Write all of `out`; a closed pipe (`sdme ps | head -1`) is not an error.
pub fn write_stdout(out: &[u8]) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().write_all(out) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to stdout"),
    }
}
