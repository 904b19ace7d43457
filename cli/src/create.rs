//! `sdme create`: options from sdme-core's key table, rendered to a
//! `.container` file, validated by the generator's own model, and linked
//! into `/etc/sdme` without replacing anything.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};
use sdme_core::config::Config;
use sdme_core::container::Container;
use sdme_core::keys::{Arity, Key, CONTAINER_KEYS};
use sdme_core::name::check_machine_name;
use sdme_core::search::UnitName;
use sdme_core::syntax::UnitFile;

/// Where `create` writes: the administrator's directory of the search path.
pub const ETC_DIR: &str = "/etc/sdme";

/// The `[Container]` options, one per row of the key table that has an
/// option; values in the order given.
#[derive(Clone, Debug, Default)]
pub struct KeyOpts {
    pub values: Vec<(&'static Key, Vec<String>)>,
}

impl FromArgMatches for KeyOpts {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut values = Vec::new();
        for k in &CONTAINER_KEYS {
            let Some(opt) = k.option else { continue };
            let v: Vec<String> = if k.arity == Arity::Flag {
                if m.get_flag(opt) {
                    vec!["yes".into()]
                } else {
                    Vec::new()
                }
            } else {
                m.get_many::<String>(opt)
                    .map(|v| v.cloned().collect())
                    .unwrap_or_default()
            };
            if !v.is_empty() {
                values.push((k, v));
            }
        }
        Ok(KeyOpts { values })
    }
    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = KeyOpts::from_arg_matches(m)?;
        Ok(())
    }
}

impl Args for KeyOpts {
    fn augment_args(mut cmd: Command) -> Command {
        for k in &CONTAINER_KEYS {
            let Some(opt) = k.option else { continue };
            let mut a = Arg::new(opt).long(opt).help(k.help);
            if let Some(s) = k.short {
                a = a.short(s);
            }
            a = match k.arity {
                Arity::Flag => a.action(ArgAction::SetTrue),
                Arity::One => a.action(ArgAction::Set).value_name(k.value_name),
                Arity::Many => a.action(ArgAction::Append).value_name(k.value_name),
                // `--nspawn-arg --setenv=X=1`: the value is an option.
                Arity::Words => a
                    .action(ArgAction::Append)
                    .value_name(k.value_name)
                    .allow_hyphen_values(true),
            };
            cmd = cmd.arg(a);
        }
        cmd
    }
    fn augment_args_for_update(cmd: Command) -> Command {
        KeyOpts::augment_args(cmd)
    }
}

/// `sdme create`'s options (also `sdme new`'s).
#[derive(Args, Clone, Debug, Default)]
pub struct CreateOpts {
    #[command(flatten)]
    pub keys: KeyOpts,
    /// [Service] MemoryMax=: bytes, with an optional K, M, G or T suffix, or "infinity".
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// [Service] CPUQuota=: N CPUs' worth of time (such as 1.5).
    #[arg(long, value_name = "N")]
    pub cpus: Option<String>,
    /// [Install] WantedBy=machines.target: start at boot.
    #[arg(long)]
    pub enable: bool,
}

/// A value that can be written on one line and read back unchanged.
fn check_line(key: &str, v: &str) -> Result<()> {
    if v.chars().any(char::is_control) {
        bail!(
            "--{key}: '{}' contains a control character",
            v.escape_default()
        );
    }
    if v.ends_with('\\') {
        bail!("--{key}: '{v}' ends in a backslash, which would continue the line");
    }
    Ok(())
}

/// One word as systemd's word splitting reads it back.
fn quote_word(w: &str) -> String {
    if !w.is_empty()
        && !w
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\'))
    {
        return w.to_string();
    }
    let mut out = String::from("\"");
    for c in w.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A size option (`--memory`): digits with an optional K/M/G/T suffix,
/// or `infinity`.
pub fn check_size(opt: &str, v: &str) -> Result<()> {
    let digits = v.strip_suffix(['K', 'M', 'G', 'T']).unwrap_or(v);
    if v == "infinity" || (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())) {
        return Ok(());
    }
    bail!(
        "--{opt}: '{}' is not a size (such as 512M, 2G or infinity)",
        v.escape_default()
    )
}

/// `--cpus N` as CPUQuota= percent.
pub fn cpu_quota(v: &str) -> Result<String> {
    let n: f64 = v
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n > 0.0 && *n <= 10_000.0)
        .with_context(|| {
            format!(
                "--cpus: '{}' is not a number of CPUs above 0 (such as 2 or 0.5)",
                v.escape_default()
            )
        })?;
    let pct = (n * 100.0).round().max(1.0);
    Ok(format!("{pct}%"))
}

/// The file `sdme create` writes for these options: a header, then each
/// key in the table's order.
pub fn render(opts: &CreateOpts) -> Result<String> {
    let mut out = String::from(
        "# Made by `sdme create`. An ordinary sdme.container(5) file: edit it\n\
         # freely, then run `systemctl daemon-reload`.\n[Container]\n",
    );
    for (k, vals) in &opts.keys.values {
        let opt = k.option.unwrap_or(k.key);
        for v in vals {
            check_line(opt, v)?;
        }
        match k.arity {
            Arity::Words => {
                let words: Vec<String> = vals.iter().map(|v| quote_word(v)).collect();
                out.push_str(&format!("{}={}\n", k.key, words.join(" ")));
            }
            _ => {
                for v in vals {
                    out.push_str(&format!("{}={}{}\n", k.key, v, k.suffix));
                }
            }
        }
    }
    let mut service = String::new();
    if let Some(m) = &opts.memory {
        check_size("memory", m)?;
        service.push_str(&format!("MemoryMax={m}\n"));
    }
    if let Some(c) = &opts.cpus {
        service.push_str(&format!("CPUQuota={}\n", cpu_quota(c)?));
    }
    if !service.is_empty() {
        out.push_str("\n[Service]\n");
        out.push_str(&service);
    }
    if opts.enable {
        out.push_str("\n[Install]\nWantedBy=machines.target\n");
    }
    Ok(out)
}

/// Refuse a umask that takes read or execute from others (as the
/// original tool did): files sdme makes for the container (its file,
/// drop-ins, copies and imports) would be unreadable to the guest's
/// non-root services, which then fail in ways far from the cause.
pub fn check_umask(mask: u32) -> Result<()> {
    if mask & 0o005 != 0 {
        bail!(
            "umask {mask:04o} removes read or execute permission for others: files sdme \
             creates would be unreadable to non-root services in the container \
             (D-Bus would not start); run `umask 022` first"
        );
    }
    Ok(())
}

/// The process umask, read from /proc (Linux ≥ 4.7) without changing it.
pub fn current_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// A name `create` accepts: a machine name, not a template.
pub fn check_name(name: &str) -> Result<()> {
    if name.contains('@') {
        bail!("'{name}': templates (NAME@.container) cannot be created with sdme yet");
    }
    check_machine_name(name).map_err(anyhow::Error::msg)
}

/// Validate `text` as the file `path` with the generator's model: the
/// errors are the lines the generator would print.
pub fn validate(name: &str, path: &Path, text: &str, config: &Config) -> Result<(), Vec<String>> {
    let file = UnitFile::parse(path, text.as_bytes()).map_err(|e| vec![e.to_string()])?;
    Container::from_unit_with(UnitName::Plain(name.into()), path, file, config)
        .map(|_| ())
        .map_err(|d| d.iter().map(ToString::to_string).collect())
}

/// The first file on the search path named `NAME.container` (or a mask).
pub fn existing(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    let file = format!("{name}.container");
    dirs.iter()
        .map(|d| d.join(&file))
        .find(|p| p.symlink_metadata().is_ok())
}

/// Write `text` as `dir/NAME.container`: a temporary file in `dir`, synced,
/// then linked to its name, which fails if the name exists (so of two
/// concurrent creates exactly one wins).
pub fn write_new(dir: &Path, name: &str, text: &str) -> Result<PathBuf> {
    let path = dir.join(format!("{name}.container"));
    let tmp = crate::write::synced_temp(dir, ".sdme-create-", text)?;
    match tmp.persist_noclobber(&path) {
        Ok(_) => Ok(path),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!("container {name} exists already: {}", path.display())
        }
        Err(e) => Err(e.error).with_context(|| format!("writing {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::os::unix::fs::PermissionsExt;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        o: CreateOpts,
    }

    fn opts(args: &[&str]) -> CreateOpts {
        T::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .unwrap()
            .o
    }

    const HEADER: &str = "# Made by `sdme create`. An ordinary sdme.container(5) file: edit it\n\
         # freely, then run `systemctl daemon-reload`.\n";

    #[test]
    fn empty_is_a_host_clone() {
        assert_eq!(
            render(&opts(&[])).unwrap(),
            format!("{HEADER}[Container]\n")
        );
    }

    #[test]
    fn keys_come_in_table_order_with_quoting() {
        let o = opts(&[
            "-e",
            "A=1",
            "--bind",
            "/srv:/srv",
            "-r",
            "deb",
            "--pod",
            "p",
            "-u",
            "-e",
            "B=two words",
            "--nspawn-arg",
            "--setenv=X=\"q\"",
            "--read-only",
            "-b",
            "/a",
            "--memory",
            "300M",
            "--cpus",
            "1.5",
            "--enable",
        ]);
        let text = render(&o).unwrap();
        assert_eq!(
            text,
            format!(
                "{HEADER}[Container]\nRootfs=deb\nPod=p.pod\nPrivateUsers=yes\n\
                 Bind=/srv:/srv\nBind=/a\nEnvironment=A=1 \"B=two words\"\n\
                 ReadOnly=yes\nNspawnArgs=\"--setenv=X=\\\"q\\\"\"\n\n[Service]\nMemoryMax=300M\nCPUQuota=150%\n\n\
                 [Install]\nWantedBy=machines.target\n"
            )
        );
        // The model reads the words back as they were given.
        let path = Path::new("/etc/sdme/x.container");
        let file = UnitFile::parse(path, text.as_bytes()).unwrap();
        let c = Container::from_unit(UnitName::Plain("x".into()), path, file).unwrap();
        assert_eq!(c.environment, ["A=1", "B=two words"]);
        assert_eq!(c.nspawn_args, ["--setenv=X=\"q\""]);
    }

    #[test]
    fn bad_values_give_the_models_message() {
        let path = Path::new("/etc/sdme/x.container");
        let text = render(&opts(&[
            "--capability",
            "cap_foo",
            "--boot-timeout",
            "soon",
        ]))
        .unwrap();
        let errs = validate("x", path, &text, &Config::default()).unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with("/etc/sdme/x.container:4: Capability=cap_foo: unknown capability"),
            "{errs:?}"
        );
        assert!(errs[1].starts_with("/etc/sdme/x.container:5: "), "{errs:?}");
        assert!(validate(
            "x",
            path,
            &render(&opts(&["-r", "deb"])).unwrap(),
            &Config::default()
        )
        .is_ok());
    }

    #[test]
    fn values_that_would_break_the_file_are_refused() {
        let e = render(&opts(&["--hostname", "a\nRootfs=/etc"])).unwrap_err();
        assert!(e.to_string().contains("control character"), "{e}");
        let e = render(&opts(&["--hostname", "a\\"])).unwrap_err();
        assert!(e.to_string().contains("backslash"), "{e}");
        assert!(render(&opts(&["--memory", "lots"])).is_err());
        assert!(render(&opts(&["--cpus", "0"])).is_err());
        assert!(render(&opts(&["--cpus", "NaN"])).is_err());
    }

    #[test]
    fn umask() {
        assert!(check_umask(0o022).is_ok());
        assert!(check_umask(0o002).is_ok());
        let e = check_umask(0o027).unwrap_err().to_string();
        assert!(e.starts_with("umask 0027 removes read or execute"), "{e}");
        assert!(check_umask(0o001).is_err());
        assert!(check_umask(0o004).is_err());
    }

    #[test]
    fn names() {
        assert!(check_name("web").is_ok());
        assert!(check_name("web@").is_err());
        assert!(check_name("../x").is_err());
    }

    #[test]
    fn write_new_never_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = write_new(d.path(), "a", "[Container]\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "[Container]\n");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let e = write_new(d.path(), "a", "[Container]\nRootfs=x\n").unwrap_err();
        assert!(e.to_string().contains("exists already"), "{e}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "[Container]\n");
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        assert_eq!(existing(&[d.path().to_path_buf()], "a"), Some(p));
        assert_eq!(existing(&[d.path().to_path_buf()], "b"), None);
    }
}
