//! After an import: does the tree boot under nspawn? Detect systemd and
//! D-Bus (also in NixOS layouts), install them with the distribution's
//! package manager in a sandbox when asked (`--install-packages`), and
//! patch the tree for nspawn. What was done is reported on stderr.

pub mod confine;
pub mod detect;
pub mod guards;
pub mod patch;
pub mod sandbox;
pub mod tree;

use std::io::{BufRead, Seek};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

pub use crate::options::InstallPackages;
pub use detect::{Detected, PackageManager};

use crate::meta::{Meta, OciConfig};
use crate::options::ImportOptions;
use crate::progress::Progress;

/// Post-process the tree at `root` (the staging copy, not yet visible as
/// rootfs/NAME): `--install-packages=auto` installs systemd and D-Bus when
/// missing (a failure is a warning), `yes` always runs the package manager
/// (a failure fails the import), `no` only warns when the tree will not
/// boot.
pub fn after_import(
    root: &Path,
    opts: &ImportOptions,
    progress: &Progress,
    meta: &mut Meta,
) -> Result<()> {
    let post_opts = Options {
        install: opts.install_packages,
        app_image: meta.oci.as_ref().is_some_and(runs_a_program),
        quiet: opts.quiet || progress.is_quiet(),
        host_resolv: Path::new("/etc/resolv.conf"),
        cancelled: &crate::cancel::requested,
    };
    check_and_install(root, &opts.name, &post_opts, &|s| progress.note(s)).map(|_| ())
}

pub struct Options<'a> {
    pub install: InstallPackages,
    /// The image's OCI configuration runs a program of its own (see
    /// [`runs_a_program`]): its warnings point to `App=`.
    pub app_image: bool,
    /// No progress lines (warnings still go to stderr).
    pub quiet: bool,
    /// The host's resolv.conf, copied in while the package manager runs.
    pub host_resolv: &'a Path,
    pub cancelled: &'a dyn Fn() -> bool,
}

/// Check, install, patch. `what` names the import in messages (the
/// rootfs name); `note` shows progress lines. Returns what the tree has at
/// the end.
pub fn check_and_install(
    root: &Path,
    what: &str,
    opts: &Options,
    note: &dyn Fn(&str),
) -> Result<Detected> {
    let say = |s: &str| {
        if !opts.quiet {
            note(&format!("{what}: {s}"));
        }
    };
    let warn = |s: &str| eprintln!("sdme-import: warning: {what}: {s}");
    let mut d = detect::detect(root);
    say(&summary(&d));
    let missing = d.systemd.is_none() || d.dbus.is_none();
    let install = match opts.install {
        InstallPackages::Yes => true,
        InstallPackages::Auto => missing,
        InstallPackages::No => false,
    };
    if install {
        match install_packages(root, &d, opts, &say) {
            Ok(()) => {
                d = detect::detect(root);
                say(&format!("after installing: {}", summary(&d)));
            }
            Err(e) if opts.install == InstallPackages::Auto => {
                warn(&format!("could not install systemd and D-Bus: {e:#}"));
            }
            Err(e) => return Err(e.context("cannot install systemd and D-Bus")),
        }
        if opts.install == InstallPackages::Yes && (d.systemd.is_none() || d.dbus.is_none()) {
            bail!("systemd or D-Bus still missing after the package manager ran");
        }
    }
    if d.systemd.is_some() {
        for line in patch::apply(root).context("patching for nspawn")? {
            say(&line);
        }
    }
    if d.systemd.is_none() && opts.app_image {
        warn(&format!(
            "no systemd in the image: it will not boot as Rootfs={what}, but its OCI \
             configuration runs a program: a container runs it with App={what} \
             (sdme.container(5), OCI APPLICATIONS)"
        ));
    } else if d.systemd.is_none() {
        warn(&format!(
            "no systemd in the image: it will not boot as Rootfs={what}{}",
            if opts.install == InstallPackages::No {
                " (import it with --install-packages=yes to add systemd and D-Bus)"
            } else {
                ""
            }
        ));
    } else if d.dbus.is_none() {
        warn(
            "no D-Bus in the image: it boots, but machinectl shell and systemctl -M will not work",
        );
    } else if !d.login {
        warn("no /etc/pam.d/login or login binary: machinectl shell will not work");
    }
    Ok(d)
}

/// An application image, as the original tool classified them: an
/// Entrypoint, exposed ports, or a Cmd that is not a shell. A system
/// image has none of these (`Cmd=["/bin/bash"]` at most).
pub fn runs_a_program(c: &OciConfig) -> bool {
    let shell = |p: &String| {
        let base = p.rsplit('/').next().unwrap_or(p);
        matches!(base, "sh" | "bash" | "ash" | "dash" | "zsh")
    };
    !c.entrypoint.is_empty()
        || !c.exposed_ports.is_empty()
        || (c.cmd.first().is_some_and(|p| !shell(p)))
}

fn summary(d: &Detected) -> String {
    let or_none = |p: &Option<std::path::PathBuf>| {
        p.as_ref()
            .map_or_else(|| "missing".to_string(), |p| p.display().to_string())
    };
    format!(
        "{}systemd {}, D-Bus {}, login {}",
        if d.os.pretty_name.is_empty() {
            String::new()
        } else {
            format!("{}: ", d.os.pretty_name)
        },
        or_none(&d.systemd),
        or_none(&d.dbus),
        if d.login { "present" } else { "missing" }
    )
}

fn install_packages(root: &Path, d: &Detected, opts: &Options, say: &dyn Fn(&str)) -> Result<()> {
    let pm =
        d.package_manager.ok_or_else(|| {
            if d.nixos {
                anyhow!("a NixOS tree gets systemd from its configuration, not a package manager")
            } else {
                anyhow!(
                "no supported package manager (apt-get, dnf, yum, pacman, zypper) in the image{}",
                if d.os.id.is_empty() { String::new() } else { format!(" (ID={})", d.os.id) }
            )
            }
        })?;
    sandbox::check(root)?;
    say(&format!(
        "installing {} with {} in a sandbox (systemd-nspawn, user namespace)",
        pm.packages().join(" "),
        pm.name()
    ));
    let mut env = vec![];
    if pm == PackageManager::Apt {
        env.push(("DEBIAN_FRONTEND", "noninteractive"));
    }
    // With --quiet the package manager's output goes to a file, shown
    // (its tail) only when it fails.
    let mut log = if opts.quiet {
        Some(tempfile::tempfile().context("temporary log file")?)
    } else {
        None
    };
    let _resolv = guards::ResolvSwap::install(root, opts.host_resolv)?;
    let _policy = guards::PolicyRcD::install(root, pm)?;
    let status = sandbox::run(
        root,
        &pm.install_script(),
        &env,
        log.as_ref(),
        opts.cancelled,
    )?;
    if !status.success() {
        if let Some(f) = log.as_mut() {
            let _ = f.rewind();
            let lines: Vec<String> = std::io::BufReader::new(&*f)
                .lines()
                .map_while(Result::ok)
                .collect();
            for l in &lines[lines.len().saturating_sub(20)..] {
                eprintln!("  {l}");
            }
        }
        bail!(
            "{} in the sandbox failed ({})",
            pm.name(),
            sandbox::describe(status)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_images_as_the_original_tool_classified_them() {
        let c = |entrypoint: &[&str], cmd: &[&str], ports: &[&str]| OciConfig {
            entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            exposed_ports: ports.iter().map(|s| s.to_string()).collect(),
            ..OciConfig::default()
        };
        assert!(!runs_a_program(&c(&[], &["/bin/bash"], &[])), "debian");
        assert!(!runs_a_program(&c(&[], &["sh"], &[])), "busybox");
        assert!(!runs_a_program(&c(&[], &[], &[])), "no config");
        assert!(runs_a_program(&c(
            &["/docker-entrypoint.sh"],
            &["nginx"],
            &["80/tcp"]
        )));
        assert!(runs_a_program(&c(&[], &["redis-server"], &[])));
        assert!(runs_a_program(&c(&[], &["/bin/sh"], &["8080/tcp"])));
    }
}
