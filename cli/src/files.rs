//! The commands on a container's files: `enable`/`disable` and `set`
//! write one drop-in each in `/etc/sdme/NAME.container.d/` (never the
//! container's own file); `cat` and `verify` read the search path as the
//! generator does.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use sdme_core::build::Build;
use sdme_core::config::Config;
use sdme_core::container::Container;
use sdme_core::generate::plan;
use sdme_core::image::Image;
use sdme_core::pod::Pod;
use sdme_core::search::{read_bounded, search, FileType, Found, UnitName};
use sdme_core::syntax::{Entry, UnitFile};
use sdme_helpers::dbus::Value;

use crate::create::{self, ETC_DIR};
use crate::lookup::{self, dirs};
use crate::sys;
use crate::write;

/// The drop-in `sdme enable` and `sdme disable` write.
pub const ENABLE_CONF: &str = "50-enable.conf";
/// The drop-in `sdme set` writes.
pub const LIMITS_CONF: &str = "50-limits.conf";

/// `/etc/sdme/NAME.container.d/FILE`.
pub(crate) fn dropin_path(name: &str, file: &str) -> PathBuf {
    Path::new(ETC_DIR)
        .join(format!("{name}.container.d"))
        .join(file)
}

/// The container's file as found on the search path, with its drop-ins.
pub(crate) fn found(dirs: &[PathBuf], name: &str) -> Result<Found> {
    create::check_name(name)?;
    let s = search(dirs, FileType::Container);
    let file = format!("{name}.container");
    if let Some(m) = s
        .masked
        .iter()
        .find(|m| m.file_name() == Some(file.as_ref()))
    {
        bail!("{name} is masked by {}", m.display());
    }
    s.found
        .into_iter()
        .find(|f| f.name == UnitName::Plain(name.into()))
        .with_context(|| format!("no container {name} (no {file} on the search path)"))
}

/// The file with its drop-ins merged in reading order, where the drop-in
/// `path` has the content `text` (`None`: as if it did not exist). A
/// drop-in of the same file name elsewhere is shadowed by `path`, which is
/// in the most specific folder of the highest directory.
pub(crate) fn merged(
    found: &Found,
    path: &Path,
    text: Option<&str>,
) -> Result<UnitFile, Vec<String>> {
    let mut dropins: Vec<PathBuf> = (found.dropins.iter())
        .filter(|d| d.file_name() != path.file_name())
        .cloned()
        .collect();
    if text.is_some() {
        dropins.push(path.to_path_buf());
        dropins.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    }
    let mut file = UnitFile::parse(&found.content, &found.data).map_err(|e| vec![e.to_string()])?;
    for d in dropins {
        let data = match (d == path, text) {
            (true, Some(t)) => t.as_bytes().to_vec(),
            _ => read_bounded(&d).map_err(|e| vec![e])?,
        };
        file.merge(UnitFile::parse(&d, &data).map_err(|e| vec![e.to_string()])?);
    }
    Ok(file)
}

/// The container model with the drop-in `path` as `text` (or without it).
pub(crate) fn model(
    found: &Found,
    config: &Config,
    path: &Path,
    text: Option<&str>,
) -> Result<(Container, UnitFile)> {
    let file = merged(found, path, text).map_err(|e| anyhow::anyhow!("{}", e.join("\n")))?;
    let c = Container::from_unit_with(found.name.clone(), &found.path, file.clone(), config)
        .map_err(|d| {
            let lines: Vec<String> = d.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("{}", lines.join("\n"))
        })?;
    Ok((c, file))
}

/// The drop-ins sdme writes apply (and shadow one of the same name
/// elsewhere, as [`merged`] assumes) when `/etc/sdme` is the first
/// directory of the search path, as it is unless `$SDME_UNIT_DIRS` says
/// otherwise.
pub(crate) fn etc_on_path(dirs: &[PathBuf]) -> Result<()> {
    if dirs.first().map(PathBuf::as_path) != Some(Path::new(ETC_DIR)) {
        bail!("{ETC_DIR} is not the first directory of the search path (SDME_UNIT_DIRS), so its drop-ins might not apply; nothing written");
    }
    Ok(())
}

/// Write `text` to `path` atomically: a temporary file next to it, synced,
/// renamed over it.
pub(crate) fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let dir = path.parent().context("drop-in path has no directory")?;
    let tmp = write::synced_temp(dir, ".sdme-", text)?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Remove a drop-in; its folder too when that is left empty. Returns
/// whether there was one.
fn remove_dropin(path: &Path) -> Result<bool> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        r => r.with_context(|| format!("removing {}", path.display()))?,
    }
    if let Some(dir) = path.parent() {
        // Fails (and is kept) when other drop-ins are there.
        let _ = std::fs::remove_dir(dir);
    }
    Ok(true)
}

fn starts_at_boot(c: &Container) -> bool {
    !c.install.wanted_by.is_empty() || !c.install.required_by.is_empty()
}

/// The `[Install]` lines that make the container start at boot, as
/// `FILE:LINE: KEY=VALUE`, last ones (those still in force) included.
fn install_lines(file: &UnitFile) -> Vec<String> {
    let Some(sec) = file.section("Install") else {
        return Vec::new();
    };
    let mut out: Vec<&Entry> = Vec::new();
    for e in &sec.entries {
        if !matches!(e.key.as_str(), "WantedBy" | "RequiredBy") {
            continue;
        }
        if e.value.is_empty() {
            out.retain(|x| x.key != e.key);
        } else {
            out.push(e);
        }
    }
    out.iter()
        .map(|e| format!("{}: {}={}", e.at, e.key, e.value))
        .collect()
}

const ENABLE_TEXT: &str = "# Written by `sdme enable`: start the container at boot.\n\
                           # `sdme disable` removes this file.\n\
                           [Install]\nWantedBy=machines.target\n";
const DISABLE_TEXT: &str = "# Written by `sdme disable`: the container's own [Install] is reset,\n\
                            # so it does not start at boot. `sdme enable` removes this file.\n\
                            [Install]\nWantedBy=\nRequiredBy=\n";

/// `sdme enable`: start at boot through `machines.target`. A file whose
/// own `[Install]` starts it already needs no drop-in (one left by
/// `disable` is removed).
pub fn enable(name: &str) -> Result<()> {
    let dirs = dirs();
    etc_on_path(&dirs)?;
    let found = found(&dirs, name)?;
    let config = lookup::config(&dirs);
    let path = dropin_path(name, ENABLE_CONF);
    let (without, _) = model(&found, &config, &path, None)?;
    if starts_at_boot(&without) {
        remove_dropin(&path)?;
    } else {
        let (with, file) = model(&found, &config, &path, Some(ENABLE_TEXT))?;
        if !starts_at_boot(&with) {
            bail!(
                "a drop-in read after {} resets WantedBy=; nothing written ({})",
                path.display(),
                file.section("Install")
                    .and_then(|s| s.entries.iter().rev().find(|e| e.value.is_empty()))
                    .map_or_else(|| "?".to_string(), |e| e.at.to_string())
            );
        }
        write_atomic(&path, ENABLE_TEXT)?;
    }
    sys::daemon_reload()
}

/// `sdme disable`: remove `enable`'s drop-in; when the container's file
/// (or another drop-in) has `[Install]` lines of its own, the drop-in
/// resets them instead, as systemd's parser allows (an empty
/// `WantedBy=`).
pub fn disable(name: &str) -> Result<()> {
    let dirs = dirs();
    etc_on_path(&dirs)?;
    let found = found(&dirs, name)?;
    let config = lookup::config(&dirs);
    let path = dropin_path(name, ENABLE_CONF);
    let (without, file) = model(&found, &config, &path, None)?;
    if !starts_at_boot(&without) {
        remove_dropin(&path)?;
        return sys::daemon_reload();
    }
    let (with, after) = model(&found, &config, &path, Some(DISABLE_TEXT))?;
    if starts_at_boot(&with) {
        bail!(
            "{}: read after {}, which cannot reset it; remove that line by hand (nothing written)",
            install_lines(&after).join(", "),
            path.display()
        );
    }
    for l in install_lines(&file) {
        eprintln!("sdme: {l}: reset by {}", path.display());
    }
    write_atomic(&path, DISABLE_TEXT)?;
    sys::daemon_reload()
}

/// `sdme cat`: the file and each drop-in that applies, in reading order,
/// each after a `# PATH` line (as `systemctl cat`).
pub fn cat(name: &str) -> Result<()> {
    if name.contains('/') || name.is_empty() {
        bail!("'{name}' is not a container name");
    }
    let dirs = dirs();
    let s = search(&dirs, FileType::Container);
    let stem = name.strip_suffix(".container").unwrap_or(name);
    let Some(f) = s.found.iter().find(|f| f.name.stem() == stem) else {
        let file = format!("{stem}.container");
        if let Some(m) = s
            .masked
            .iter()
            .find(|m| m.file_name() == Some(file.as_ref()))
        {
            bail!("{stem} is masked by {}", m.display());
        }
        bail!("no container {stem} (no {file} on the search path)");
    };
    let mut out = Vec::new();
    out.extend_from_slice(format!("# {}\n", f.path.display()).as_bytes());
    if f.content != f.path {
        out.extend_from_slice(format!("# (a link to {})\n", f.content.display()).as_bytes());
    }
    push_text(&mut out, &f.data);
    for d in &f.dropins {
        let data = read_bounded(d).map_err(anyhow::Error::msg)?;
        out.extend_from_slice(format!("\n# {}\n", d.display()).as_bytes());
        push_text(&mut out, &data);
    }
    lookup::write_stdout(&out)
}

fn push_text(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(data);
    if !data.ends_with(b"\n") {
        out.push(b'\n');
    }
}

/// `sdme verify`: the generator's checks of every file on the search path
/// (the same plan its `--dry-run` makes), or of the files named. Prints
/// each error; exit status 1 if there is one.
pub fn verify(files: &[PathBuf]) -> Result<ExitCode> {
    let (dirs, dir_errors) = sdme_core::paths::unit_dirs();
    let mut errors = dir_errors;
    if files.is_empty() {
        let p = plan(&dirs);
        errors.extend(p.errors);
    } else {
        errors.clear();
        let mut whole = None;
        for f in files {
            match verify_one(f, &dirs, &mut whole) {
                Ok(e) => errors.extend(e),
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
    }
    let mut out = Vec::new();
    for e in &errors {
        out.extend_from_slice(e.as_bytes());
        out.push(b'\n');
    }
    lookup::write_stdout(&out)?;
    if errors.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("sdme: {} error(s)", errors.len());
    Ok(ExitCode::FAILURE)
}

/// The errors of one named file: those the generator reports for it when
/// it is on the search path (with its drop-ins and the checks against the
/// other files), else those of the file alone.
fn verify_one(f: &Path, dirs: &[PathBuf], whole: &mut Option<Vec<String>>) -> Result<Vec<String>> {
    let Some(kind) = [
        FileType::Container,
        FileType::Pod,
        FileType::Image,
        FileType::Build,
    ]
    .into_iter()
    .find(|k| f.extension() == Some(k.suffix().as_ref())) else {
        bail!(
            "{}: not a .container, .pod, .image or .build file",
            f.display()
        );
    };
    let name = f.file_name().context("no file name")?;
    // The directory of the search path the file is in, by identity (so
    // `./web.container` in /etc/sdme is /etc/sdme/web.container).
    let parent = match f.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let real = parent
        .canonicalize()
        .with_context(|| format!("{}: {}", f.display(), parent.display()))?;
    let on_path = dirs
        .iter()
        .find(|d| d.canonicalize().is_ok_and(|d| d == real));
    let abs = on_path.map_or_else(|| real.join(name), |d| d.join(name));
    // The file that wins on the search path: its errors and those of its
    // drop-ins, as the whole run reports them.
    let winner = on_path.and_then(|_| search(dirs, kind).found.into_iter().find(|w| w.path == abs));
    if let Some(w) = winner {
        let errors = whole.get_or_insert_with(|| plan(dirs).errors);
        let prefixes: Vec<String> = std::iter::once(&w.path)
            .chain(&w.dropins)
            .map(|p| format!("{}:", p.display()))
            .collect();
        return Ok(errors
            .iter()
            .filter(|e| prefixes.iter().any(|p| e.starts_with(p)))
            .cloned()
            .collect());
    }
    let data = match read_bounded(&abs) {
        Ok(d) => d,
        Err(e) => return Ok(vec![e]),
    };
    let stem = abs
        .file_stem()
        .and_then(|s| s.to_str())
        .with_context(|| format!("{}: the file name is not UTF-8", f.display()))?;
    let found = Found {
        kind,
        name: UnitName::from_stem(stem),
        path: abs.clone(),
        content: abs.clone(),
        data,
        dropins: Vec::new(),
    };
    let diags = match kind {
        FileType::Container => Container::load(&found).err(),
        FileType::Pod => Pod::load(&found).err(),
        FileType::Image => Image::load(&found).err(),
        FileType::Build => Build::load(&found).err(),
    };
    Ok(diags
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect())
}

/// `sdme set`'s options: every limit at once (one not given is cleared).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Limits {
    /// MemoryMax=: bytes, with an optional K, M, G or T suffix, or "infinity".
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// MemorySwapMax=: as --memory.
    #[arg(long, value_name = "SIZE")]
    pub memory_swap: Option<String>,
    /// CPUQuota=: N CPUs' worth of time (such as 1.5).
    #[arg(long, value_name = "N")]
    pub cpus: Option<String>,
    /// CPUWeight=: 1 to 10000 (systemd's default is 100).
    #[arg(long, value_name = "N")]
    pub cpu_weight: Option<String>,
    /// TasksMax=: the most processes and threads, or "infinity".
    #[arg(long, value_name = "N")]
    pub tasks: Option<String>,
    /// IOWeight=: 1 to 10000 (systemd's default is 100).
    #[arg(long, value_name = "N")]
    pub io_weight: Option<String>,
}

/// The `[Service]` keys `sdme set` manages, each with the value that
/// stands for "no limit of sdme's" when the container's file sets none
/// (TasksMax= as the generator writes it, render.rs's SERVICE_SETTINGS).
const LIMIT_KEYS: [(&str, &str); 6] = [
    ("MemoryMax", "infinity"),
    ("MemorySwapMax", "infinity"),
    ("CPUQuota", ""),
    ("CPUWeight", ""),
    ("TasksMax", "16384"),
    ("IOWeight", ""),
];

fn check_weight(opt: &str, v: &str) -> Result<String> {
    match v.parse::<u32>() {
        Ok(n) if (1..=10_000).contains(&n) => Ok(n.to_string()),
        _ => bail!(
            "--{opt}: '{}' is not a weight from 1 to 10000",
            v.escape_default()
        ),
    }
}

/// The `[Service]` lines of the limits, in [`LIMIT_KEYS`] order; each
/// value checked before anything is written.
fn limit_values(l: &Limits) -> Result<Vec<(&'static str, String)>> {
    let mut out = Vec::new();
    if let Some(v) = &l.memory {
        create::check_size("memory", v)?;
        out.push(("MemoryMax", v.clone()));
    }
    if let Some(v) = &l.memory_swap {
        create::check_size("memory-swap", v)?;
        out.push(("MemorySwapMax", v.clone()));
    }
    if let Some(v) = &l.cpus {
        out.push(("CPUQuota", create::cpu_quota(v)?));
    }
    if let Some(v) = &l.cpu_weight {
        out.push(("CPUWeight", check_weight("cpu-weight", v)?));
    }
    if let Some(v) = &l.tasks {
        let ok = v == "infinity" || v.parse::<u64>().is_ok_and(|n| n > 0);
        if !ok {
            bail!(
                "--tasks: '{}' is not a number above 0 or infinity",
                v.escape_default()
            );
        }
        out.push(("TasksMax", v.clone()));
    }
    if let Some(v) = &l.io_weight {
        out.push(("IOWeight", check_weight("io-weight", v)?));
    }
    Ok(out)
}

fn limits_text(values: &[(&str, String)]) -> String {
    let mut s = String::from(
        "# Written by `sdme set`, which replaces this file; `sdme set NAME`\n\
         # alone removes it.\n[Service]\n",
    );
    for (k, v) in values {
        s.push_str(&format!("{k}={v}\n"));
    }
    s
}

/// D-Bus's "no limit" for the 64-bit limit properties.
const UNSET: u64 = u64::MAX;

/// A size as systemd reads it (K, M, G, T, P, E: powers of 1024, a
/// fraction allowed); `infinity` is [`UNSET`].
fn size_bytes(v: &str) -> Option<u64> {
    if v == "infinity" {
        return Some(UNSET);
    }
    let units = ["K", "M", "G", "T", "P", "E"];
    let (num, mult) = match units.iter().position(|u| v.ends_with(u)) {
        Some(i) => (&v[..v.len() - 1], 1u64 << (10 * (i + 1))),
        None => (v, 1),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let n = num.parse::<f64>().ok()? * mult as f64;
    (n.is_finite() && n < UNSET as f64).then_some(n as u64)
}

/// The runtime property that applies `key=value` of the merged file at
/// once, as systemd's D-Bus API names and types it; `None` for a key
/// with nothing to send. A value it cannot carry (a percentage of
/// memory, say) is an error naming it: the drop-in still applies at the
/// next start.
fn live_property(key: &str, value: &str) -> Result<Option<(String, Value)>> {
    let bad = || anyhow::anyhow!("{key}={value} cannot be applied to a running container");
    let t = |v: u64| Ok(Some((key.to_string(), Value::U64(v))));
    match key {
        "MemoryMax" | "MemorySwapMax" if value.is_empty() => t(UNSET),
        "MemoryMax" | "MemorySwapMax" => t(size_bytes(value).ok_or_else(bad)?),
        "CPUQuota" => {
            let usec = if value.is_empty() {
                UNSET
            } else {
                let pct: f64 = value
                    .strip_suffix('%')
                    .and_then(|p| p.parse().ok())
                    .filter(|p: &f64| p.is_finite() && *p > 0.0)
                    .ok_or_else(bad)?;
                // CPUQuota=100% is one second of CPU per second.
                (pct * 10_000.0) as u64
            };
            Ok(Some(("CPUQuotaPerSecUSec".into(), Value::U64(usec))))
        }
        "TasksMax" if value == "infinity" || value.is_empty() => t(UNSET),
        "CPUWeight" | "IOWeight" | "TasksMax" if value.is_empty() => t(UNSET),
        "CPUWeight" | "IOWeight" | "TasksMax" => t(value.parse().map_err(|_| bad())?),
        _ => Ok(None),
    }
}

/// The value of `[Service]` `key` in force in the merged `file`: its
/// last assignment (empty: reset to systemd's default), else `default`.
fn service_value(file: &UnitFile, key: &str, default: &str) -> String {
    file.section("Service")
        .and_then(|s| s.entries.iter().rev().find(|e| e.key == key))
        .map_or_else(|| default.to_string(), |e| e.value.clone())
}

/// `sdme set`: write the limits drop-in (or remove it when no limit is
/// given); a running container gets the values at once, those cleared
/// back to what its file says.
pub fn set(name: &str, limits: &Limits) -> Result<()> {
    let values = limit_values(limits)?;
    let dirs = dirs();
    etc_on_path(&dirs)?;
    let found = found(&dirs, name)?;
    let config = lookup::config(&dirs);
    let path = dropin_path(name, LIMITS_CONF);
    let text = (!values.is_empty()).then(|| limits_text(&values));
    let (_, file) = model(&found, &config, &path, text.as_deref())?;
    match &text {
        Some(t) => write_atomic(&path, t)?,
        None => {
            remove_dropin(&path)?;
        }
    }
    let unit = lookup::service(name);
    let live = if sys::active_state(&unit)? == "active" {
        LIMIT_KEYS
            .iter()
            .map(|(k, d)| live_property(k, &service_value(&file, k, d)))
            .collect::<Result<Vec<_>>>()
            .and_then(|props| {
                sys::Bus::system()?.set_properties(
                    &unit,
                    true,
                    props.into_iter().flatten().collect(),
                )
            })
    } else {
        Ok(())
    };
    // SetUnitProperties(runtime) also writes these (and so did an older
    // sdme's set-property --runtime); in the control folder, read before
    // every other drop-in, they would shadow a later change of the
    // drop-in above until the next boot.
    let control = Path::new("/run/systemd/system.control").join(format!("{unit}.d"));
    for (k, _) in LIMIT_KEYS {
        remove_dropin(&control.join(format!("50-{k}.conf")))?;
    }
    sys::daemon_reload()?;
    live.with_context(|| {
        format!(
            "{} is written and applies at the next start, but the running {name} kept its limits",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_properties_as_systemd_types_them() {
        let p = |k: &str, v: &str| live_property(k, v).unwrap();
        let t = |k: &str, n: u64| Some((k.to_string(), Value::U64(n)));
        assert_eq!(p("MemoryMax", "300M"), t("MemoryMax", 314_572_800));
        assert_eq!(p("MemoryMax", "1.5K"), t("MemoryMax", 1536));
        assert_eq!(p("MemoryMax", "4096"), t("MemoryMax", 4096));
        assert_eq!(p("MemorySwapMax", "infinity"), t("MemorySwapMax", u64::MAX));
        assert_eq!(p("CPUQuota", "150%"), t("CPUQuotaPerSecUSec", 1_500_000));
        assert_eq!(p("CPUQuota", ""), t("CPUQuotaPerSecUSec", u64::MAX));
        assert_eq!(p("CPUWeight", ""), t("CPUWeight", u64::MAX));
        assert_eq!(p("TasksMax", "16384"), t("TasksMax", 16384));
        assert_eq!(p("TasksMax", "infinity"), t("TasksMax", u64::MAX));
        assert_eq!(p("Other", "1"), None);
        for (k, v) in [
            ("MemoryMax", "50%"),
            ("MemoryMax", "x"),
            ("CPUQuota", "2"),
            ("TasksMax", "10%"),
        ] {
            let e = live_property(k, v).unwrap_err().to_string();
            assert!(e.contains(&format!("{k}={v}")), "{e}");
        }
    }

    fn found_in(dir: &Path, text: &str, dropins: &[(&str, &str)]) -> Found {
        let main = dir.join("a.container");
        std::fs::write(&main, text).unwrap();
        let d = dir.join("a.container.d");
        std::fs::create_dir_all(&d).unwrap();
        for (n, t) in dropins {
            std::fs::write(d.join(n), t).unwrap();
        }
        search(&[dir.to_path_buf()], FileType::Container)
            .found
            .remove(0)
    }

    #[test]
    fn enable_and_disable_drop_ins_as_the_model_reads_them() {
        let d = tempfile::tempdir().unwrap();
        let f = found_in(d.path(), "[Container]\n", &[]);
        let p = d.path().join("a.container.d").join(ENABLE_CONF);
        let c = Config::default();
        assert!(!starts_at_boot(&model(&f, &c, &p, None).unwrap().0));
        let (m, _) = model(&f, &c, &p, Some(ENABLE_TEXT)).unwrap();
        assert_eq!(m.install.wanted_by, ["machines.target"]);
        // The file's own [Install], reset by disable's drop-in.
        let f = found_in(
            d.path(),
            "[Container]\n[Install]\nWantedBy=multi-user.target\n",
            &[],
        );
        let (m, file) = model(&f, &c, &p, None).unwrap();
        assert!(starts_at_boot(&m));
        let lines = install_lines(&file);
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].ends_with("a.container:3: WantedBy=multi-user.target"),
            "{lines:?}"
        );
        assert!(!starts_at_boot(
            &model(&f, &c, &p, Some(DISABLE_TEXT)).unwrap().0
        ));
        // A drop-in read after it cannot be reset by it.
        let f = found_in(
            d.path(),
            "[Container]\n",
            &[("90-x.conf", "[Install]\nWantedBy=b.target\n")],
        );
        let (m, file) = model(&f, &c, &p, Some(DISABLE_TEXT)).unwrap();
        assert!(starts_at_boot(&m));
        assert!(install_lines(&file)[0].contains("90-x.conf:2: WantedBy=b.target"));
    }

    #[test]
    fn the_drop_in_replaces_one_of_its_name_and_sorts_in() {
        let d = tempfile::tempdir().unwrap();
        let f = found_in(
            d.path(),
            "[Container]\n",
            &[
                (LIMITS_CONF, "[Service]\nMemoryMax=1G\n"),
                ("10-a.conf", "[Service]\nMemoryMax=2G\n"),
                ("90-z.conf", "[Service]\nCPUWeight=5\n"),
            ],
        );
        let p = d.path().join("a.container.d").join(LIMITS_CONF);
        let text = "[Service]\nMemoryMax=3G\n";
        let file = merged(&f, &p, Some(text)).unwrap();
        assert_eq!(service_value(&file, "MemoryMax", "infinity"), "3G");
        assert_eq!(service_value(&file, "CPUWeight", ""), "5");
        let file = merged(&f, &p, None).unwrap();
        assert_eq!(service_value(&file, "MemoryMax", "infinity"), "2G");
        assert_eq!(service_value(&file, "TasksMax", "16384"), "16384");
    }

    #[test]
    fn limits_are_checked_before_anything_is_written() {
        let l = Limits {
            memory: Some("300M".into()),
            cpus: Some("1.5".into()),
            tasks: Some("100".into()),
            io_weight: Some("50".into()),
            ..Default::default()
        };
        assert_eq!(
            limits_text(&limit_values(&l).unwrap()),
            "# Written by `sdme set`, which replaces this file; `sdme set NAME`\n\
             # alone removes it.\n[Service]\nMemoryMax=300M\nCPUQuota=150%\nTasksMax=100\nIOWeight=50\n"
        );
        for bad in [
            Limits {
                memory: Some("300Q".into()),
                ..Default::default()
            },
            Limits {
                memory_swap: Some("".into()),
                ..Default::default()
            },
            Limits {
                cpu_weight: Some("0".into()),
                ..Default::default()
            },
            Limits {
                tasks: Some("-1".into()),
                ..Default::default()
            },
        ] {
            assert!(limit_values(&bad).is_err(), "{bad:?}");
        }
        let e = limit_values(&Limits {
            memory: Some("lots".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--memory: 'lots' is not a size (such as 512M, 2G or infinity)"
        );
    }

    #[test]
    fn tasks_max_default_is_the_generators() {
        let c = Container::from_unit(
            UnitName::Plain("a".into()),
            Path::new("/etc/sdme/a.container"),
            UnitFile::parse(Path::new("/etc/sdme/a.container"), b"[Container]\n").unwrap(),
        )
        .unwrap();
        let units = sdme_core::render::render(&c);
        let want = format!("\nTasksMax={}\n", LIMIT_KEYS[4].1);
        assert!(units.iter().any(|o| match o {
            sdme_core::render::Output::File { content, .. } => content.contains(&want),
            _ => false,
        }));
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.d").join("50-limits.conf");
        write_atomic(&p, "a\n").unwrap();
        write_atomic(&p, "b\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "b\n");
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
        assert!(remove_dropin(&p).unwrap());
        assert!(!p.parent().unwrap().exists());
        assert!(!remove_dropin(&p).unwrap());
    }
}
