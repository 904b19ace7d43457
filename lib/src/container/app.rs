//! `App=`, `AppExec=`, `AppArgs=`, `AppUser=`, `AppEnvironment=`,
//! `AppWorkingDirectory=`, `Volume=`, `AppPod=`, `AppExit=` and
//! `AppStopTimeout=`: an OCI application run as a service of the guest
//! (sdme.container(5), "OCI APPLICATIONS"). The generator hands them to
//! sdme-prepare, which writes the guest's unit (see [`crate::app_unit`]).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::app::{check_app_user, parse_app_exit, parse_app_image, parse_volume};
use crate::app::{AppExit, AppImage, Volume};
use crate::app_unit::AppSettings;
use crate::diag::Diag;
use crate::escape::split_words;
use crate::search::UnitName;
use crate::sections::Shared;
use crate::syntax::{Entry, Location};
use crate::timespan::parse_timespan;
use crate::value::check_abs_path;

use super::environment::{assignments, check_env_word};
use super::image_use::ImageUse;
use super::network::check_pod_ref;

/// The application of a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct App {
    pub image: AppImage,
    /// `App=REF` or `App=NAME.image`: the image unit that imports the
    /// application's rootfs.
    pub image_use: Option<ImageUse>,
    /// The `App=` line.
    pub at: Location,
    /// `AppPod=NAME.pod`: the pod's name and the line.
    pub pod: Option<(String, Location)>,
    /// What sdme-prepare gets (the rootfs name is `settings.name`, also
    /// `APP` in `/oci/apps/APP/root`).
    pub settings: AppSettings,
}

impl App {
    /// The application's rootfs name (`/var/lib/sdme/rootfs/NAME`).
    pub fn rootfs(&self) -> &str {
        &self.settings.name
    }
}

/// The application keys read so far.
#[derive(Default)]
pub(super) struct AppKeys {
    image: Option<(AppImage, Location)>,
    exec: Option<Vec<String>>,
    args: Option<Vec<String>>,
    user: Option<String>,
    environment: Vec<String>,
    working_directory: Option<String>,
    /// By path in the app's root: the volume and its line.
    volumes: BTreeMap<String, (Volume, Location)>,
    pod: Option<(String, Location)>,
    exit: AppExit,
    stop_timeout: Option<Option<Duration>>,
    /// The first line of an application key other than `App=` (refused
    /// without `App=`).
    other_at: Option<(String, Location)>,
    /// `App=` has a value, valid or not (an invalid one has its error).
    app_given: bool,
}

/// `Some(value)` or, for an empty assignment (a reset), `None`.
fn set<T>(f: &mut Shared, e: &Entry, r: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
    if e.value.is_empty() {
        return None;
    }
    f.check(e, r(&e.value))
}

impl AppKeys {
    /// This concern's `[Container]` keys; false for any other key.
    pub(super) fn key(&mut self, f: &mut Shared, e: &Entry) -> bool {
        match e.key.as_str() {
            "App" => {
                self.app_given = !e.value.is_empty();
                self.image = set(f, e, parse_app_image).map(|i| (i, e.at.clone()));
            }
            "AppExec" => self.exec = set(f, e, split_words),
            "AppArgs" => self.args = set(f, e, split_words),
            "AppUser" => self.user = set(f, e, |v| check_app_user(v).map(|_| v.to_string())),
            "AppEnvironment" => assignments(f, e, &mut self.environment, check_env_word),
            "AppWorkingDirectory" => {
                let dir = |v: &str| check_abs_path(v, "working directory").map(|_| v.to_string());
                self.working_directory = set(f, e, dir);
            }
            "Volume" => self.volume(f, e),
            "AppPod" => {
                let name = f.name.clone();
                self.pod = set(f, e, |v| pod_ref(v, &name)).map(|p| (p, e.at.clone()));
            }
            "AppExit" => self.exit = set(f, e, parse_app_exit).unwrap_or_default(),
            "AppStopTimeout" => self.stop_timeout = set(f, e, stop_timeout),
            _ => return false,
        }
        if e.key != "App" && self.other_at.is_none() {
            self.other_at = Some((e.key.clone(), e.at.clone()));
        }
        true
    }

    fn volume(&mut self, f: &mut Shared, e: &Entry) {
        if e.value.is_empty() {
            self.volumes.clear();
            return;
        }
        let Some(v) = f.check(e, parse_volume(&e.value)) else {
            return;
        };
        if let Some((_, at)) = self.volumes.get(&v.path) {
            let msg = format!(
                "Volume={}: {} is already a volume (at {at})",
                e.value, v.path
            );
            return f.err(e, msg);
        }
        self.volumes.insert(v.path.clone(), (v, e.at.clone()));
    }

    /// Whether `App=` names an application (so far).
    pub(super) fn has_app(&self) -> bool {
        self.image.is_some()
    }

    /// The application, or none; its keys without `App=` are an error.
    pub(super) fn finish(self, f: &mut Shared) -> Option<App> {
        let Some((image, at)) = self.image else {
            if let (Some((k, at)), false) = (self.other_at, self.app_given) {
                let msg = format!("{k}= needs App= (the application image)");
                f.diags.push(Diag::at(&at, msg));
            }
            return None;
        };
        let (rootfs, image_use) = match &image {
            AppImage::Rootfs(n) => (n.clone(), None),
            AppImage::ImageFile(n) => (n.clone(), Some((None, n.clone()))),
            AppImage::Reference(r) => {
                let n = crate::image::inline_rootfs_name(r);
                (n.clone(), Some((Some(r.clone()), n)))
            }
        };
        let image_use = image_use.map(|(inline, name)| ImageUse {
            name,
            inline,
            at: at.clone(),
            build: false,
        });
        let pod = self.pod.map(|(p, at)| (instance_pod(p, &f.name), at));
        let settings = AppSettings {
            name: rootfs,
            at: at.to_string(),
            exec: self.exec,
            args: self.args,
            user: self.user,
            environment: self.environment,
            working_directory: self.working_directory,
            volumes: self.volumes.into_values().map(|(v, _)| v).collect(),
            exit: self.exit,
            stop_timeout: self.stop_timeout,
            pod: pod.as_ref().map(|(p, _)| p.clone()),
            // Set once the container's network is known (its finish).
            expose: Default::default(),
        };
        Some(App {
            image,
            image_use,
            at,
            pod,
            settings,
        })
    }
}

fn pod_ref(v: &str, name: &UnitName) -> Result<String, String> {
    match v.strip_suffix(".pod") {
        Some(n) => check_pod_ref(n, name),
        None => Err("expected the name of a pod file, NAME.pod".into()),
    }
}

/// In an instance, `NAME@%i` is the pod instance named like it (as for
/// `Pod=`).
fn instance_pod(p: String, name: &UnitName) -> String {
    match name {
        UnitName::Instance { instance, .. } => p.replace("@%i", &format!("@{instance}")),
        _ => p,
    }
}

fn stop_timeout(v: &str) -> Result<Option<Duration>, String> {
    match parse_timespan(v)? {
        Some(Duration::ZERO) => Err("use 'infinity' to wait without limit".into()),
        t => Ok(t),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::container::Container;
    use crate::syntax::UnitFile;

    fn app(name: &str, text: &str) -> Option<App> {
        let path = Path::new("/etc/sdme/x.container");
        let f = UnitFile::parse(path, text.as_bytes()).unwrap();
        Container::from_unit(UnitName::from_stem(name), path, f)
            .unwrap()
            .app
    }

    #[test]
    fn the_model_of_an_application() {
        let text = "[Container]\nApp=docker.io/library/nginx:1.27\n\
            AppExec=/entry \"a b\"\nAppArgs=x\nAppArgs=\nAppUser=101:101\n\
            AppEnvironment=A=1 \"B=2 3\"\nAppEnvironment=C=4\n\
            AppWorkingDirectory=/srv\nVolume=/z\nVolume=/h:/a:ro\n\
            AppPod=grp@%i.pod\nAppExit=stop\nAppStopTimeout=1min\n";
        let a = app("web@one", text).unwrap();
        assert_eq!(
            a.image,
            AppImage::Reference("docker.io/library/nginx:1.27".into())
        );
        assert_eq!(a.at.line, 2);
        assert_eq!(
            a.settings.exec,
            Some(vec!["/entry".to_string(), "a b".into()])
        );
        assert_eq!(a.settings.args, None);
        assert_eq!(a.settings.user.as_deref(), Some("101:101"));
        assert_eq!(a.settings.environment, ["A=1", "B=2 3", "C=4"]);
        assert_eq!(a.settings.working_directory.as_deref(), Some("/srv"));
        let paths: Vec<&str> = a.settings.volumes.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(paths, ["/a", "/z"]);
        assert!(
            a.settings.volumes[0].read_only
                && a.settings.volumes[0].source.as_deref() == Some("/h")
        );
        assert_eq!(a.settings.pod.as_deref(), Some("grp@one"));
        assert_eq!(a.pod.map(|p| p.0).as_deref(), Some("grp@one"));
        assert_eq!(a.settings.exit, AppExit::Stop);
        assert_eq!(a.settings.stop_timeout, Some(Some(Duration::from_secs(60))));
        let a = app("web", "[Container]\nApp=nginx:1\nAppPod=p.pod\n").unwrap();
        assert_eq!(a.pod.as_ref().map(|p| p.1.line), Some(3));
        assert_eq!(a.rootfs(), crate::image::inline_rootfs_name("nginx:1"));
        assert_eq!(
            a.image_use.map(|u| u.inline),
            Some(Some("nginx:1".to_string()))
        );
    }

    #[test]
    fn without_app_there_is_none() {
        assert_eq!(app("web", "[Container]\n"), None);
        assert_eq!(app("web", "[Container]\nApp=nginx\nApp=\n"), None);
    }
}
