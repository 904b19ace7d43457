//! Root file systems built from steps: `NAME.build` files (found on the
//! search path like `.image` files, with drop-ins) and the original sdme's
//! build files (`FROM`/`RUN`/`COPY`, read unchanged by `sdme fs build`).
//! Both give the same [`Build`]; sdme.build(5) documents them.
//!
//! - `mod.rs`: the model and the `.build` schema;
//! - `steps`: `Run=`/`Copy=` values and the checks on their paths;
//! - `original`: the original tool's format.
//!
//! Everything that can be refused without looking at the disk is refused
//! here, with file and line: a `Copy=` destination that a booted container
//! hides (tmpfs, opaque directories), a source that leaves the build
//! directory, a build that starts from itself, unknown keys. What needs
//! the disk (a source that does not exist, a symlink out of the tree) is
//! the builder's business.

mod original;
mod steps;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::container::{assignments, check_env_word, DEFAULT_BOOT_TIMEOUT};
use crate::diag::Diag;
use crate::dropins::parse_with_dropins;
use crate::name::check_rootfs_name;
use crate::search::{Found, UnitName};
use crate::sections::{Install, Kind, Shared};
use crate::syntax::{Entry, Location, Section, UnitFile};
use crate::timespan::parse_timespan;

pub use original::parse_original;
pub use steps::{check_dest, CopySource, Step};

/// What a build starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Base {
    /// `From=` omitted or empty: a clone of the host's `/`.
    Host,
    /// `From=NAME`: an imported rootfs.
    Rootfs(String),
    /// `From=NAME.image`: the rootfs the image unit imports.
    Image(String),
    /// `From=NAME.build`: the rootfs another build makes (a chain).
    Build(String),
}

impl Base {
    /// The rootfs the build container's lower layer is, if not the host.
    pub fn rootfs(&self) -> Option<&str> {
        match self {
            Base::Host => None,
            Base::Rootfs(n) | Base::Image(n) | Base::Build(n) => Some(n),
        }
    }
}

/// Which format the file was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A `NAME.build` file (unit-file syntax).
    Unit,
    /// The original tool's `FROM`/`RUN`/`COPY` file.
    Original,
}

/// A validated build file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Build {
    /// The rootfs it makes: `/var/lib/sdme/rootfs/NAME`.
    pub name: String,
    /// The file (`SourcePath=`).
    pub source: PathBuf,
    pub format: Format,
    pub from: Base,
    /// The line that set `From=` (`FROM`), if one did.
    pub from_at: Option<Location>,
    /// `Environment=`: `NAME=VALUE` words for every `Run=`.
    pub environment: Vec<String>,
    /// `Run=` and `Copy=`, in the order written (drop-ins after the file).
    pub steps: Vec<Step>,
    /// `BootTimeout=` of the build container; `None` waits without limit.
    pub boot_timeout: Option<Duration>,
    /// `[Unit]`, `[Service]` and `X-` sections of a `.build` file.
    pub passthrough: Vec<Section>,
    pub install: Install,
    /// Machines whose `sdme-prepare@MACHINE.service` waits for the build
    /// (set by the generator, as for image units).
    pub prepared_by: Vec<String>,
}

/// `sdme-build-NAME.service`.
pub fn build_service_name(name: &str) -> String {
    format!("sdme-build-{name}.service")
}

/// `[Service]` keys the build unit sets itself.
const RESERVED_SERVICE_KEYS: [(&str, &str); 3] = [
    (
        "ExecStart",
        "sdme runs the builder; the steps are Run= and Copy= in [Build]",
    ),
    ("Type", "the build unit is a Type=oneshot"),
    (
        "RemainAfterExit",
        "the build unit runs again at every start of a container on it (a no-op when up to date)",
    ),
];

/// The shared sections of a `.build` file.
const BUILD_KIND: Kind = Kind {
    ext: "build",
    own: "Build",
    reserved_service: &RESERVED_SERVICE_KEYS,
    no_reset: &[],
};

/// The `[Build]` values while the file and its drop-ins are read.
struct Keys {
    from: Base,
    from_at: Option<Location>,
    environment: Vec<String>,
    steps: Vec<Step>,
    boot_timeout: Option<Duration>,
}

impl Keys {
    fn key(&mut self, b: &mut Shared, e: &Entry) {
        let v = e.value.as_str();
        match e.key.as_str() {
            "From" => {
                self.from_at = (!v.is_empty()).then(|| e.at.clone());
                if let Some(f) = b.check(e, parse_from(v)) {
                    self.from = f;
                }
            }
            "Environment" => assignments(b, e, &mut self.environment, check_env_word),
            "Run" if v.trim().is_empty() => b.err(
                e,
                "an empty Run= is an error, not a reset: steps only add up (mask the file to drop it)",
            ),
            "Run" => self.steps.push(Step::Run {
                command: v.to_string(),
                at: e.at.clone(),
            }),
            "Copy" if v.is_empty() => b.err(
                e,
                "an empty Copy= is an error, not a reset: steps only add up (mask the file to drop it)",
            ),
            "Copy" => {
                if let Some(s) = b.check(e, steps::parse_copy(v, &e.at)) {
                    self.steps.push(s);
                }
            }
            "BootTimeout" => {
                if v.is_empty() {
                    self.boot_timeout = Some(DEFAULT_BOOT_TIMEOUT);
                } else if let Some(t) = b.check(e, parse_timespan(v)) {
                    if t == Some(Duration::ZERO) {
                        b.err(e, "BootTimeout=0: use 'infinity' to wait without limit");
                    } else {
                        self.boot_timeout = t;
                    }
                }
            }
            k => b.err(e, format!("unknown key '{k}' in section [Build]")),
        }
    }
}

/// A `From=` value.
fn parse_from(v: &str) -> Result<Base, String> {
    if v.is_empty() || v == "/" {
        return Ok(Base::Host);
    }
    let (name, from, what): (&str, fn(String) -> Base, &str) =
        if let Some(n) = v.strip_suffix(".image") {
            (n, Base::Image, "image name")
        } else if let Some(n) = v.strip_suffix(".build") {
            (n, Base::Build, "build name")
        } else {
            (v, Base::Rootfs, "rootfs name")
        };
    check_rootfs_name(name).map_err(|m| m.replacen("rootfs name", what, 1))?;
    Ok(from(name.to_string()))
}

impl Build {
    /// Validate `found` (a `.build` file) with its drop-ins.
    pub fn load(found: &Found) -> Result<Build, Vec<Diag>> {
        let file = parse_with_dropins(found)?;
        Build::from_unit(&found.name, &found.path, file)
    }

    /// Validate a parsed `.build` file named `name`.
    pub fn from_unit(name: &UnitName, source: &Path, file: UnitFile) -> Result<Build, Vec<Diag>> {
        let mut b = Shared::new(name.clone(), source);
        let stem = b.rootfs_stem("a build");
        let mut k = Keys {
            from: Base::Host,
            from_at: None,
            environment: Vec::new(),
            steps: Vec::new(),
            boot_timeout: Some(DEFAULT_BOOT_TIMEOUT),
        };
        let has_build = file.section("Build").is_some();
        b.sections(file, &BUILD_KIND, |b, e| k.key(b, e));
        if !has_build {
            b.diags.push(Diag::file(source, "no [Build] section"));
        }
        if let (Base::Build(n), Some(at)) = (&k.from, &k.from_at) {
            if *n == stem {
                b.diags.push(Diag::at(
                    at,
                    format!("From={n}.build: a build cannot start from its own result"),
                ));
            }
        }
        b.diags
            .extend(steps::check_dests(&k.steps, &k.from, "Copy="));
        if let Some(at) = b.install_line("DefaultInstance") {
            b.diags.push(Diag::at(
                &at,
                "DefaultInstance= only applies to container templates",
            ));
        }
        b.check_aliases(false);
        if let Some(diags) = b.failed() {
            return Err(diags);
        }
        Ok(Build {
            name: stem,
            source: source.to_path_buf(),
            format: Format::Unit,
            from: k.from,
            from_at: k.from_at,
            environment: k.environment,
            steps: k.steps,
            boot_timeout: k.boot_timeout,
            passthrough: b.passthrough,
            install: b.install,
            prepared_by: Vec::new(),
        })
    }

    /// The builds this one starts from, nearest first, as far as `lookup`
    /// (build name to its `From=`) knows them; an error naming the chain
    /// when it comes back to a build already on it.
    pub fn chain<'a>(
        &'a self,
        lookup: impl Fn(&str) -> Option<&'a Base>,
    ) -> Result<Vec<&'a str>, String> {
        let mut seen: Vec<&str> = vec![&self.name];
        let mut from = &self.from;
        while let Base::Build(n) = from {
            if seen.contains(&n.as_str()) {
                let path: Vec<String> = (seen.iter().chain([&n.as_str()]))
                    .map(|s| format!("{s}.build"))
                    .collect();
                return Err(format!(
                    "the build chains into itself: {}",
                    path.join(" -> ")
                ));
            }
            seen.push(n);
            match lookup(n) {
                Some(f) => from = f,
                None => break,
            }
        }
        Ok(seen.split_off(1))
    }
}
