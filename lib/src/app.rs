//! The values of the OCI application keys (`App=`, `AppUser=`, `Volume=`,
//! `AppExit=`), checked without looking at `/var`: what `[Container]`
//! parsing (container/app.rs) and the CLI share.

use crate::image::check_image_source;
use crate::name::check_rootfs_name;
use crate::value::check_abs_path;

/// Where `App=` takes the application image from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppImage {
    /// An OCI reference (or an image file), imported by an image unit as
    /// `Image=` is.
    Reference(String),
    /// An imported rootfs, by name (its OCI config is in its metadata).
    Rootfs(String),
    /// `NAME.image`: the rootfs an image file imports.
    ImageFile(String),
}

/// `App=`: `NAME.image`; a bare name (no `/`, `:` or `@`) is an imported
/// rootfs; anything else is a reference (`nginx:1.27`,
/// `docker.io/library/nginx`, a file).
pub fn parse_app_image(v: &str) -> Result<AppImage, String> {
    if v.is_empty() {
        return Err("expected an OCI reference, a rootfs name or NAME.image".into());
    }
    if let Some(n) = v.strip_suffix(".image") {
        check_rootfs_name(n).map_err(|m| m.replace("rootfs name", "image name"))?;
        return Ok(AppImage::ImageFile(n.to_string()));
    }
    if !v.contains(['/', ':', '@']) {
        check_rootfs_name(v).map_err(|m| {
            format!("{m} (a bare name is an imported rootfs; write a reference with its registry or tag, such as docker.io/library/{v} or {v}:latest)")
        })?;
        return Ok(AppImage::Rootfs(v.to_string()));
    }
    check_image_source(v)?;
    Ok(AppImage::Reference(v.to_string()))
}

/// The longest user or group name `AppUser=` accepts.
const MAX_NAME: usize = 256;

/// One side of `AppUser=`: a name, or a decimal id below 2^32-1 (which
/// means "unchanged" to the kernel).
fn check_user_part(s: &str, what: &str) -> Result<(), String> {
    if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() {
        return match s.parse::<u32>() {
            Ok(n) if n != u32::MAX => Ok(()),
            _ => Err(format!("{what} id {s} is out of range (0-4294967294)")),
        };
    }
    let bad = |c: char| c.is_whitespace() || c.is_control() || matches!(c, ':' | '/');
    if s.is_empty() || s.len() > MAX_NAME || s.contains(bad) {
        return Err(format!(
            "{what} '{}' is not a name (1-{MAX_NAME} characters, no whitespace, ':' or '/') or a number",
            s.escape_default()
        ));
    }
    Ok(())
}

/// `AppUser=` (and an image's `User`): `NAME`, `UID`, `NAME:GROUP`,
/// `UID:GID` or a mix, split into the user and the optional group. The
/// one parser of this syntax: the generator checks the key with it and
/// sdme-drop-privs(8) splits the value it resolves in the image.
pub fn split_app_user(v: &str) -> Result<(&str, Option<&str>), String> {
    match v.split_once(':') {
        Some((u, g)) => {
            check_user_part(u, "user")?;
            check_user_part(g, "group")?;
            Ok((u, Some(g)))
        }
        None => check_user_part(v, "user").map(|()| (v, None)),
    }
}

/// `AppUser=`: whether [`split_app_user`] takes it.
pub fn check_app_user(v: &str) -> Result<(), String> {
    split_app_user(v).map(|_| ())
}

/// `Volume=`: `/path` (an anonymous volume, kept under
/// `/var/lib/sdme/volumes/`) or `SRC:/path[:ro|:rw]` (a host directory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    pub source: Option<String>,
    /// In the application's root.
    pub path: String,
    pub read_only: bool,
}

impl Volume {
    /// The value [`parse_volume`] reads back.
    pub fn spec(&self) -> String {
        match (&self.source, self.read_only) {
            (None, _) => self.path.clone(),
            (Some(s), false) => format!("{s}:{}", self.path),
            (Some(s), true) => format!("{s}:{}:ro", self.path),
        }
    }
}

pub fn parse_volume(v: &str) -> Result<Volume, String> {
    let parts: Vec<&str> = v.split(':').collect();
    let (source, path, read_only) = match parts[..] {
        [p] => (None, p, false),
        [s, p] => (Some(s), p, false),
        [s, p, "ro"] => (Some(s), p, true),
        [s, p, "rw"] => (Some(s), p, false),
        [_, _, o] => return Err(format!("unknown volume option '{o}' (ro, rw)")),
        _ => return Err("expected /PATH or SOURCE:/PATH[:ro]".into()),
    };
    if let Some(s) = source {
        check_abs_path(s, "volume source")?;
    }
    check_abs_path(path, "volume path")?;
    if path == "/" {
        return Err("a volume cannot be the application's root /".into());
    }
    Ok(Volume {
        source: source.map(String::from),
        path: path.to_string(),
        read_only,
    })
}

/// `AppExit=`: what the end of the application does to the container.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AppExit {
    /// Restarted on failure; the container keeps running.
    #[default]
    Restart,
    /// The container stops; the application's status is the unit's.
    Stop,
}

pub fn parse_app_exit(v: &str) -> Result<AppExit, String> {
    match v {
        "restart" => Ok(AppExit::Restart),
        "stop" => Ok(AppExit::Stop),
        _ => Err("expected 'restart' or 'stop'".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_images() {
        let r = |s: &str| parse_app_image(s);
        assert_eq!(r("nginx"), Ok(AppImage::Rootfs("nginx".into())));
        assert_eq!(r("web.image"), Ok(AppImage::ImageFile("web".into())));
        for refr in [
            "nginx:1.27",
            "docker.io/library/nginx",
            "localhost:5000/a@sha256:00",
            "/srv/a.tar",
        ] {
            assert_eq!(r(refr), Ok(AppImage::Reference(refr.into())), "{refr}");
        }
        for bad in ["", "-x", "./a.tar", "bad name", ".image", "a..b", "x\ny:1"] {
            assert!(r(bad).is_err(), "{bad:?}");
        }
        assert!(r("web-").unwrap_err().contains("docker.io/library/web-"));
    }

    #[test]
    fn app_users() {
        for ok in [
            "app",
            "101",
            "0",
            "app:data",
            "4242:4242",
            "app:0",
            "4294967294",
            "www-data",
            "a.b$",
        ] {
            assert_eq!(check_app_user(ok), Ok(()), "{ok}");
            let (u, g) = split_app_user(ok).unwrap();
            assert_eq!(g.map_or(u.to_string(), |g| format!("{u}:{g}")), ok);
        }
        for bad in [
            "",
            ":",
            "app:",
            ":data",
            "a:b:c",
            "4294967295",
            "1:99999999999",
            "99999999999",
            "1:4294967295",
            "a b",
            "a\nb",
            "a/b",
        ] {
            assert!(check_app_user(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn volumes() {
        let v = |s: Option<&str>, p: &str, ro| Volume {
            source: s.map(String::from),
            path: p.into(),
            read_only: ro,
        };
        assert_eq!(parse_volume("/data"), Ok(v(None, "/data", false)));
        for spec in ["/data", "/s:/d", "/s:/d:ro"] {
            assert_eq!(parse_volume(spec).unwrap().spec(), spec);
        }
        assert_eq!(
            parse_volume("/srv/x:/data"),
            Ok(v(Some("/srv/x"), "/data", false))
        );
        assert_eq!(
            parse_volume("/srv/x:/data:ro"),
            Ok(v(Some("/srv/x"), "/data", true))
        );
        assert_eq!(
            parse_volume("/srv/x:/data:rw"),
            Ok(v(Some("/srv/x"), "/data", false))
        );
        for bad in [
            "data",
            "/a/../b",
            "/",
            "srv:/data",
            "/s:data",
            "/s:/d:rx",
            "/s:/d:ro:x",
            "",
            "/a//b",
        ] {
            assert!(parse_volume(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn app_exit() {
        assert_eq!(parse_app_exit("stop"), Ok(AppExit::Stop));
        assert_eq!(parse_app_exit("restart"), Ok(AppExit::Restart));
        assert!(parse_app_exit("always").is_err());
    }
}
