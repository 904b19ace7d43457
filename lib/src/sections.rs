//! The sections every sdme file shares with the service it becomes, for
//! `.container`, `.pod` and `.image` alike: a file and its drop-ins are
//! merged; `[Unit]`, `[Service]` and `X-` sections pass through to the
//! generated service (minus the keys sdme writes itself); `[Install]`
//! becomes symlinks; any other section is reported with its file and line.
//! Only the kind's own section (`[Container]`, `[Pod]`, `[Image]`) and its
//! reserved keys differ, and they are described by a `Kind`.

use std::path::{Path, PathBuf};

use crate::diag::Diag;
use crate::search::UnitName;
use crate::syntax::{Entry, Location, Section, UnitFile};
use crate::value::{check_unit_name, parse_bool};

/// What differs between the file kinds in the shared sections.
pub(crate) struct Kind {
    /// The file-name extension, without the dot: `container`.
    pub ext: &'static str,
    /// The kind's own section: `Container`.
    pub own: &'static str,
    /// `[Service]` keys sdme writes itself, with why they are refused.
    pub reserved_service: &'static [(&'static str, &'static str)],
    /// `(section, key)` pairs whose empty assignment would also reset what
    /// sdme writes there.
    pub no_reset: &'static [(&'static str, &'static str)],
}

/// `[Install]`, applied by the generator as symlinks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Install {
    pub wanted_by: Vec<String>,
    pub required_by: Vec<String>,
    pub alias: Vec<String>,
    pub default_instance: Option<String>,
}

/// What every file kind collects while it is read: the shared sections,
/// `[Install]` and the diagnostics. Each kind keeps its own section's
/// values apart and hands its lines to [`Shared::sections`].
pub(crate) struct Shared {
    pub(crate) name: UnitName,
    pub(crate) source: PathBuf,
    pub(crate) diags: Vec<Diag>,
    pub(crate) passthrough: Vec<Section>,
    pub(crate) install: Install,
    install_at: Vec<(&'static str, Location)>,
}

impl Shared {
    pub(crate) fn new(name: UnitName, source: &Path) -> Shared {
        Shared {
            name,
            source: source.to_path_buf(),
            diags: Vec::new(),
            passthrough: Vec::new(),
            install: Install::default(),
            install_at: Vec::new(),
        }
    }

    /// The file's stem as the name of the rootfs it makes (`what`: "an
    /// image", "a build"); an error on the file when it cannot be one.
    pub(crate) fn rootfs_stem(&mut self, what: &str) -> String {
        let stem = self.name.stem();
        if let Err(m) = crate::name::check_rootfs_name(&stem) {
            self.diags.push(Diag::file(
                &self.source,
                format!(
                    "file name '{}' cannot name {what}: {}",
                    stem.escape_default(),
                    m.replace("rootfs name", "name")
                ),
            ));
        }
        stem
    }

    pub(crate) fn err(&mut self, e: &Entry, msg: impl Into<String>) {
        self.diags.push(Diag::at(&e.at, msg));
    }

    /// Run a check; on failure record `KEY=: message`.
    pub(crate) fn check<T>(&mut self, e: &Entry, r: Result<T, String>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(m) => {
                self.err(e, format!("{}={}: {m}", e.key, e.value));
                None
            }
        }
    }

    /// A boolean value; empty (reset) is false.
    pub(crate) fn bool(&mut self, e: &Entry) -> bool {
        if e.value.is_empty() {
            return false;
        }
        self.check(e, parse_bool(&e.value)).unwrap_or(false)
    }

    /// Go through `file`'s sections: entries of the kind's own section go
    /// to `own`, the rest is handled here the same way for every kind.
    pub(crate) fn sections(
        &mut self,
        file: UnitFile,
        kind: &Kind,
        mut own: impl FnMut(&mut Shared, &Entry),
    ) {
        // By value: the passed-through sections move into the model
        // instead of being copied line by line.
        for sec in file.sections {
            match sec.name.as_str() {
                n if n == kind.own => sec.entries.iter().for_each(|e| own(self, e)),
                "Install" => sec.entries.iter().for_each(|e| self.install_key(e)),
                "Service" | "Unit" => {
                    self.check_passthrough(&sec, kind);
                    self.passthrough.push(sec);
                }
                n if n.starts_with("X-") => self.passthrough.push(sec),
                n => self.diags.push(Diag::at(
                    &sec.at,
                    format!(
                        "unknown section [{n}]; a .{} file has [Unit], [{}], [Service], [Install] and X- sections",
                        kind.ext, kind.own
                    ),
                )),
            }
        }
    }

    /// Refuse what would break the keys sdme writes into the service.
    fn check_passthrough(&mut self, sec: &Section, kind: &Kind) {
        for e in &sec.entries {
            if sec.name == "Service" {
                if let Some((_, why)) = kind.reserved_service.iter().find(|(k, _)| *k == e.key) {
                    self.err(e, format!("{}= cannot be set in [Service]: {why}", e.key));
                }
            }
            if e.value.is_empty() && kind.no_reset.contains(&(sec.name.as_str(), e.key.as_str())) {
                self.err(
                    e,
                    format!(
                        "an empty {}= in [{}] would also remove what sdme sets there; remove the line",
                        e.key, sec.name
                    ),
                );
            }
        }
    }

    /// One `[Install]` assignment: lists accumulate, an empty value resets.
    pub(crate) fn install_key(&mut self, e: &Entry) {
        let v = e.value.as_str();
        let list = match e.key.as_str() {
            "WantedBy" => &mut self.install.wanted_by,
            "RequiredBy" => &mut self.install.required_by,
            "Alias" => &mut self.install.alias,
            "DefaultInstance" => {
                self.install_at.push(("DefaultInstance", e.at.clone()));
                self.install.default_instance = if v.is_empty() {
                    None
                } else {
                    Some(v.to_string())
                };
                return;
            }
            "Also" => return self.err(
                e,
                "Also= is not supported for generated units; list the units' own [Install] instead",
            ),
            k => return self.err(e, format!("unknown key '{k}' in section [Install]")),
        };
        if v.is_empty() {
            list.clear();
            return;
        }
        let words: Vec<String> = v.split_whitespace().map(str::to_string).collect();
        list.extend(words.iter().cloned());
        let key = match e.key.as_str() {
            "WantedBy" => "WantedBy",
            "RequiredBy" => "RequiredBy",
            _ => "Alias",
        };
        for w in words {
            self.install_at.push((key, e.at.clone()));
            if let Err(m) = check_unit_name(&w, "unit") {
                self.err(e, format!("{key}=: {m}"));
            }
        }
    }

    /// The first line that assigned `[Install]` key `key`.
    pub(crate) fn install_line(&self, key: &str) -> Option<Location> {
        self.install_at
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, a)| a.clone())
    }

    /// `DefaultInstance=`: an instance reads its template's `[Install]`,
    /// where it is the template's business; anywhere but in a template it
    /// is an error. Returns a template's default instance and its line.
    pub(crate) fn default_instance(&mut self, ext: &str) -> Option<(String, Location)> {
        let at = self.install_line("DefaultInstance")?;
        let inst = self.install.default_instance.clone()?;
        match &self.name {
            UnitName::Template(_) => Some((inst, at)),
            UnitName::Instance { .. } => {
                self.install.default_instance = None;
                None
            }
            UnitName::Plain(_) => {
                self.diags.push(Diag::at(
                    &at,
                    format!("DefaultInstance= only applies to templates (NAME@.{ext})"),
                ));
                None
            }
        }
    }

    /// `Alias=`: templates and their instances take template service names
    /// (`www@.service`; an instance gets `www@INSTANCE.service`), the others
    /// plain ones.
    pub(crate) fn check_aliases(&mut self, template: bool) {
        for a in self.install.alias.clone() {
            if a.ends_with(".service") && a.contains("@.") == template {
                continue;
            }
            let msg = if template {
                format!(
                    "Alias={a}: a template's alias must be a template service name (NAME@.service)"
                )
            } else {
                format!("Alias={a}: an alias must be a .service name that is not a template")
            };
            let d = match self.install_line("Alias") {
                Some(at) => Diag::at(&at, msg),
                None => Diag::file(&self.source, msg),
            };
            self.diags.push(d);
        }
    }

    /// The diagnostics in file and line order, if there are any.
    pub(crate) fn failed(&mut self) -> Option<Vec<Diag>> {
        if self.diags.is_empty() {
            return None;
        }
        let mut diags = std::mem::take(&mut self.diags);
        diags.sort_by_key(|d| (d.path.clone(), d.line));
        Some(diags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIND: Kind = Kind {
        ext: "thing",
        own: "Thing",
        reserved_service: &[("ExecStart", "sdme writes it")],
        no_reset: &[("Unit", "After")],
    };

    fn run(name: &str, text: &str) -> (Shared, Vec<String>, Vec<String>) {
        let path = Path::new("/etc/sdme/t.thing");
        let file = UnitFile::parse(path, text.as_bytes()).unwrap();
        let mut b = Shared::new(UnitName::from_stem(name), path);
        let mut own = Vec::new();
        b.sections(file, &KIND, |_, e| {
            own.push(format!("{}={}", e.key, e.value))
        });
        let diags = b.diags.iter().map(|d| d.to_string()).collect();
        (b, own, diags)
    }

    #[test]
    fn sections_are_dispatched() {
        let (b, own, diags) = run(
            "t",
            "[Unit]\nDescription=d\n[Thing]\nA=1\n[X-Mine]\nK=v\n[Service]\nNice=1\n[Thing]\nB=2\n",
        );
        assert_eq!(diags, Vec::<String>::new());
        assert_eq!(own, ["A=1", "B=2"]);
        let names: Vec<&str> = b.passthrough.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["Unit", "X-Mine", "Service"]);
    }

    #[test]
    fn unknown_sections_and_reserved_keys_are_reported_at_their_line() {
        let (b, _, diags) = run(
            "t",
            "[Thing]\n[Bogus]\nK=v\n[Service]\nExecStart=/bin/true\n[Unit]\nAfter=\nAfter=a.service\n",
        );
        assert_eq!(
            diags,
            [
                "/etc/sdme/t.thing:2: unknown section [Bogus]; a .thing file has [Unit], [Thing], [Service], [Install] and X- sections",
                "/etc/sdme/t.thing:5: ExecStart= cannot be set in [Service]: sdme writes it",
                "/etc/sdme/t.thing:7: an empty After= in [Unit] would also remove what sdme sets there; remove the line",
            ]
        );
        // Only the refused section is left out; the others still pass.
        assert_eq!(b.passthrough.len(), 2);
    }

    #[test]
    fn install_lists_accumulate_and_reset() {
        let (b, _, diags) = run(
            "t",
            "[Install]\nWantedBy=a.target b.target\nWantedBy=\nWantedBy=c.target\nRequiredBy=r.target\nAlso=x.service\nBogus=1\n",
        );
        assert_eq!(b.install.wanted_by, ["c.target"]);
        assert_eq!(b.install.required_by, ["r.target"]);
        assert_eq!(
            diags,
            [
                "/etc/sdme/t.thing:6: Also= is not supported for generated units; list the units' own [Install] instead",
                "/etc/sdme/t.thing:7: unknown key 'Bogus' in section [Install]",
            ]
        );
    }

    #[test]
    fn default_instance_only_in_templates() {
        let text = "[Install]\nDefaultInstance=a\n";
        let (mut b, _, _) = run("t@", text);
        assert_eq!(
            b.default_instance("thing").map(|(i, at)| (i, at.line)),
            Some(("a".to_string(), 2))
        );
        let (mut b, _, _) = run("t@x", text);
        assert_eq!(b.default_instance("thing"), None);
        assert_eq!(b.install.default_instance, None);
        assert!(b.failed().is_none());
        let (mut b, _, _) = run("t", text);
        assert_eq!(b.default_instance("thing"), None);
        let d: Vec<String> = b.failed().unwrap().iter().map(|d| d.to_string()).collect();
        assert_eq!(
            d,
            ["/etc/sdme/t.thing:2: DefaultInstance= only applies to templates (NAME@.thing)"]
        );
    }

    #[test]
    fn aliases_match_the_name_kind() {
        let (mut b, _, _) = run("t", "[Install]\nWantedBy=a.target\nAlias=b@.service\n");
        b.check_aliases(false);
        let d: Vec<String> = b.failed().unwrap().iter().map(|d| d.to_string()).collect();
        assert_eq!(
            d,
            ["/etc/sdme/t.thing:3: Alias=b@.service: an alias must be a .service name that is not a template"]
        );
        let (mut b, _, _) = run("t@", "[Install]\nAlias=b@.service\n");
        b.check_aliases(true);
        assert!(b.failed().is_none());
        let (mut b, _, _) = run("t@", "[Install]\nAlias=a.service\n");
        b.check_aliases(true);
        assert_eq!(b.failed().map(|d| d.len()), Some(1));
    }

    #[test]
    fn failed_sorts_by_file_and_line() {
        let (mut b, _, _) = run("t", "[Bogus]\n");
        b.diags
            .push(Diag::file(Path::new("/etc/sdme/t.thing"), "whole file"));
        let d: Vec<String> = b.failed().unwrap().iter().map(|d| d.to_string()).collect();
        assert_eq!(d[0], "/etc/sdme/t.thing: whole file");
        assert!(b.failed().is_none());
    }
}
