//! From `[Container]` lines to a [`Container`]: each line goes to the
//! concern that owns its key, then the checks across keys run and the
//! model is put together, with the preset applied last.

use std::collections::BTreeSet;

use crate::config::Config;
use crate::diag::Diag;
use crate::search::UnitName;
use crate::sections::Shared;
use crate::syntax::Entry;

use super::app::{App, AppKeys};
use super::boot::Boot;
use super::environment::Environment;
use super::image_use::ImageUse;
use super::model::{Container, Rootfs};
use super::mounts::Mounts;
use super::naming::Naming;
use super::network::Network;
use super::preset::{apply_preset, PresetOverrides, Presets};
use super::rootfs::RootfsKeys;
use super::security::Security;

/// The `[Container]` values read so far, by concern.
pub(super) struct Keys {
    /// `[Container]` keys assigned anywhere (even empty): an explicit key
    /// overrides its part of a preset.
    seen: BTreeSet<String>,
    /// `Hardened=`'s drop list, from sdme.conf.
    hardened_drop: Vec<u8>,
    /// `[App] DefaultRootfs=`, from sdme.conf.
    app_default_rootfs: Option<String>,
    presets: Presets,
    rootfs: RootfsKeys,
    naming: Naming,
    mounts: Mounts,
    env: Environment,
    net: Network,
    security: Security,
    boot: Boot,
    app: AppKeys,
}

impl Keys {
    pub(super) fn new(config: &Config) -> Keys {
        Keys {
            seen: BTreeSet::new(),
            hardened_drop: config.hardened_drop.clone(),
            app_default_rootfs: config.app_default_rootfs.clone(),
            presets: Presets::default(),
            rootfs: RootfsKeys::new(),
            naming: Naming::default(),
            mounts: Mounts::default(),
            env: Environment::default(),
            net: Network::default(),
            security: Security::default(),
            boot: Boot::new(),
            app: AppKeys::default(),
        }
    }

    /// One `[Container]` line, to the concern whose key it is.
    pub(super) fn apply(&mut self, f: &mut Shared, e: &Entry) {
        if !self.seen.contains(&e.key) {
            self.seen.insert(e.key.clone());
        }
        let known = self.presets.key(f, e)
            || self.rootfs.key(f, e)
            || self.naming.key(f, e)
            || self.mounts.key(f, e)
            || self.env.key(f, e)
            || self.net.key(f, e)
            || self.security.key(f, e)
            || self.boot.key(f, e)
            || self.app.key(f, e);
        if !known {
            f.err(e, format!("unknown key '{}' in section [Container]", e.key));
        }
    }

    /// The checks across keys, then the model.
    pub(super) fn finish(mut self, mut f: Shared) -> Result<Container, Vec<Diag>> {
        let machine = self.naming.machine(&mut f);
        if let (true, Some(d)) = (self.app.has_app(), &self.app_default_rootfs) {
            self.rootfs.default_for_app(d);
        }
        let rootfs = self.rootfs.resolve(&mut f);
        self.net.check(&mut f);
        Naming::check_default_instance(&mut f);
        f.check_aliases(!matches!(f.name, UnitName::Plain(_)));
        self.security.check(&mut f);
        let app = std::mem::take(&mut self.app).finish(&mut f);
        if let Some(diags) = f.failed() {
            return Err(diags);
        }
        let seen = std::mem::take(&mut self.seen);
        let hardened_drop = std::mem::take(&mut self.hardened_drop);
        let explicit = PresetOverrides {
            seen: &seen,
            drop_reset: self.security.drop_reset,
            syscall_reset: self.security.syscall_reset,
        };
        let mut c = self.container(f, machine, rootfs, app);
        if let Some(p) = c.preset {
            apply_preset(&mut c, p, &hardened_drop, &explicit);
        }
        // After the preset, which may give the container its network.
        let expose = c.app_expose();
        if let Some(a) = &mut c.app {
            a.settings.expose = expose;
        }
        Ok(c)
    }

    /// The model from the values read and resolved.
    fn container(
        self,
        f: Shared,
        machine: String,
        rootfs: (Rootfs, Option<ImageUse>),
        app: Option<App>,
    ) -> Container {
        let Keys {
            presets,
            naming,
            mut mounts,
            env,
            mut net,
            security: s,
            boot,
            ..
        } = self;
        let (rootfs, image) = rootfs;
        Container {
            opaque_dirs: mounts.opaque_dirs(rootfs == Rootfs::Host),
            pod: net.pod(&f.name),
            zone: net.zone(),
            capability_all: s.capability_all(),
            capabilities: s.capabilities_added(),
            drop_capabilities: s.capabilities_dropped(),
            private_users: s.private_users(),
            preset: presets.preset(),
            name: f.name,
            source: f.source,
            machine,
            rootfs,
            image,
            app,
            hostname: naming.hostname,
            binds: mounts.binds,
            nested_sdme: mounts.nested_sdme,
            environment: env.environment,
            service_environment: env.service_environment,
            running_as: None,
            private_network: net.private_network,
            virtual_ethernet: net.virtual_ethernet,
            bridge: net.bridge,
            ports: net.ports,
            boot_timeout: boot.boot_timeout,
            wait_for: boot.wait_for,
            nspawn_args: boot.nspawn_args,
            log_console: boot.log_console,
            no_new_privileges: s.no_new_privileges,
            read_only: s.read_only,
            system_call_filter: s.syscall_filter,
            apparmor_profile: s.apparmor_profile,
            passthrough: f.passthrough,
            install: f.install,
        }
    }
}
