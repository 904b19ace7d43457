//! Finding files on the search path, as systemd finds unit files.
//!
//! - Directories are searched highest priority first; a file name found
//!   higher shadows the same name lower down.
//! - A winning file that is empty or a symlink to `/dev/null` is masked:
//!   no units, no error.
//! - Drop-ins `NAME.d/*.conf` are collected from every directory; for an
//!   instance `web@a.container` also from `web@.container.d/`, and for every
//!   file of a type from `container.d/`. A `.conf` name found in a higher
//!   directory (or, in one directory, in a more specific folder) shadows the
//!   same name elsewhere; the survivors apply in file-name order.
//! - An instance file `web@a.container` that is a symlink to a file named
//!   `web@.container` takes the template as found on the search path, so a
//!   template overridden in `/etc/sdme` applies to its instances too.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::parallel::{par_map, threads_for};

/// The file types sdme reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileType {
    Container,
    Pod,
    Image,
    Build,
}

impl FileType {
    pub fn suffix(self) -> &'static str {
        match self {
            FileType::Container => "container",
            FileType::Pod => "pod",
            FileType::Image => "image",
            FileType::Build => "build",
        }
    }
}

/// Largest file we read; anything bigger is not a unit file.
pub const MAX_FILE_SIZE: u64 = 4 << 20;

/// How a file name splits: `web.container`, `web@.container`, `web@a.container`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum UnitName {
    Plain(String),
    Template(String),
    Instance { template: String, instance: String },
}

impl UnitName {
    /// Split a stem (the file name without `.container`).
    pub fn from_stem(stem: &str) -> UnitName {
        match stem.split_once('@') {
            None => UnitName::Plain(stem.to_string()),
            Some((p, "")) => UnitName::Template(p.to_string()),
            Some((p, i)) => UnitName::Instance {
                template: p.to_string(),
                instance: i.to_string(),
            },
        }
    }

    /// The stem as it appears in the file name.
    pub fn stem(&self) -> String {
        match self {
            UnitName::Plain(s) => s.clone(),
            UnitName::Template(t) => format!("{t}@"),
            UnitName::Instance { template, instance } => format!("{template}@{instance}"),
        }
    }
}

/// A file found on the search path, with the drop-ins that apply to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub kind: FileType,
    pub name: UnitName,
    /// The file that won on the search path (what `SourcePath=` names).
    pub path: PathBuf,
    /// Where the content comes from: `path`, or the template for an
    /// instance that is a symlink to it.
    pub content: PathBuf,
    /// The bytes of `content`, read during the search.
    pub data: Vec<u8>,
    pub dropins: Vec<PathBuf>,
}

/// The outcome of a search: files to generate, and files that could not
/// even be looked at (reported, never fatal for the others).
#[derive(Debug, Default)]
pub struct Search {
    pub found: Vec<Found>,
    pub masked: Vec<PathBuf>,
    pub errors: Vec<String>,
    /// The files among `errors` that could not be read: name, path, error.
    pub unreadable: Vec<(UnitName, PathBuf, String)>,
}

/// The directories of a search path, each listed once (a generator run
/// looks for three file types and the configuration in them; listing a
/// directory of a thousand files costs more than searching the listing).
pub struct Listings<'a> {
    dirs: &'a [PathBuf],
    lists: Vec<Vec<Listed>>,
    /// Per directory: whether it has a name ending in `.d` (a drop-in
    /// folder) at all.
    has_d: Vec<bool>,
    /// Directories that could not be read, and names that are not UTF-8.
    pub errors: Vec<String>,
}

impl<'a> Listings<'a> {
    /// List `dirs` (highest priority first).
    pub fn new(dirs: &'a [PathBuf]) -> Listings<'a> {
        let mut errors = Vec::new();
        let lists: Vec<Vec<Listed>> = dirs.iter().map(|d| list_dir(d, &mut errors)).collect();
        let has_d = lists
            .iter()
            .map(|l| l.iter().any(|e| e.name.ends_with(".d")))
            .collect();
        Listings {
            dirs,
            lists,
            has_d,
            errors,
        }
    }

    /// The files of `kind`; `errors` of the result are those of reading
    /// files (not of listing, which [`Listings::errors`] holds).
    pub fn search(&self, kind: FileType) -> Search {
        let (candidates, masked) = self.candidates(kind);
        // The files are read in parallel; the outcomes keep the order.
        let read = par_map(&candidates, threads_for(candidates.len()), |c| {
            self.read(kind, c.clone())
        });
        let mut out = Search {
            masked,
            ..Default::default()
        };
        out.found.reserve(candidates.len());
        for r in read {
            match r {
                Ok((f, errors)) => {
                    out.errors.extend(errors);
                    out.found.push(f);
                }
                Err(Unread::Masked(path)) => out.masked.push(path),
                Err(Unread::Failed(e)) => out.errors.push(e),
                Err(Unread::Unreadable { error, name, path }) => {
                    out.errors.push(error.clone());
                    out.unreadable.push((name, path, error));
                }
            }
        }
        out
    }

    /// The files of `kind` that won on the search path, in file-name
    /// order, not read yet; and the ones masked by a symlink to
    /// `/dev/null`.
    pub fn candidates(&self, kind: FileType) -> (Vec<Candidate>, Vec<PathBuf>) {
        let suffix = format!(".{}", kind.suffix());
        let mut masked = Vec::new();
        // The first (highest-priority) entry of each file name, with its
        // directory, by name. Each listing is sorted: the stable sort keeps
        // the higher directory first among equal names, and finds a single
        // directory's entries (the common case) sorted in one pass.
        let mut winners: Vec<(&Path, &Listed)> = Vec::new();
        for (dir, list) in self.dirs.iter().zip(&self.lists) {
            winners.extend(
                (list.iter())
                    .filter(|l| l.name.ends_with(&suffix) && l.name.len() > suffix.len())
                    .map(|l| (dir.as_path(), l)),
            );
        }
        winners.sort_by(|a, b| a.1.name.cmp(&b.1.name));
        // Of two equal names, the later (lower) one goes.
        winners.dedup_by(|later, earlier| later.1.name == earlier.1.name);
        let mut candidates = Vec::with_capacity(winners.len());
        for &(dir, l) in &winners {
            let file_name = l.name.as_str();
            let path = dir.join(file_name);
            if l.is_symlink && fs::read_link(&path).is_ok_and(|t| t == Path::new("/dev/null")) {
                masked.push(path);
                continue;
            }
            let stem = &file_name[..file_name.len() - suffix.len()];
            let name = UnitName::from_stem(stem);
            let mut content = path.clone();
            if let (UnitName::Instance { template, .. }, true) = (&name, l.is_symlink) {
                let tmpl_file = format!("{template}@{suffix}");
                if let Ok(target) = fs::read_link(&path) {
                    if target.file_name().and_then(|n| n.to_str()) == Some(tmpl_file.as_str()) {
                        let found = winners.binary_search_by(|w| w.1.name.cmp(&tmpl_file));
                        if let Ok(i) = found {
                            content = winners[i].0.join(&tmpl_file);
                        }
                    }
                }
            }
            candidates.push(Candidate {
                name,
                path,
                content,
            });
        }
        (candidates, masked)
    }

    /// Read a candidate of `kind` and find its drop-ins (safe to run for
    /// many candidates at once); the errors that come with the file are
    /// those of finding its drop-ins.
    pub fn read(&self, kind: FileType, c: Candidate) -> Result<(Found, Vec<String>), Unread> {
        let data = match read_unit(&c.content) {
            Ok(d) => d,
            Err(error) => {
                return Err(Unread::Unreadable {
                    error,
                    name: c.name,
                    path: c.path,
                })
            }
        };
        if data.is_empty() {
            if c.content == c.path {
                return Err(Unread::Masked(c.path));
            }
            return Err(Unread::Failed(format!(
                "{}: instance of the template {}, which is masked",
                c.path.display(),
                c.content.display()
            )));
        }
        let mut errors = Vec::new();
        let dropins = dropins(
            self.dirs,
            &self.lists,
            &self.has_d,
            kind,
            &c.name,
            &mut errors,
        );
        let found = Found {
            kind,
            name: c.name,
            path: c.path,
            content: c.content,
            data,
            dropins,
        };
        Ok((found, errors))
    }
}

/// A file that won on the search path, before it is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub name: UnitName,
    /// What [`Found::path`] will be.
    pub path: PathBuf,
    /// What [`Found::content`] will be.
    pub content: PathBuf,
}

/// A [`Candidate`] that gives no file.
#[derive(Debug)]
pub enum Unread {
    /// Empty: masks the same name lower on the search path.
    Masked(PathBuf),
    /// Not readable, or an instance of a masked template.
    Failed(String),
    /// The file itself cannot be read (a dangling symlink, a directory,
    /// too big, no permission): the error, and the file's name and path.
    Unreadable {
        error: String,
        name: UnitName,
        path: PathBuf,
    },
}

/// Search `dirs` (highest priority first) for files of `kind`.
pub fn search(dirs: &[PathBuf], kind: FileType) -> Search {
    let l = Listings::new(dirs);
    let mut s = l.search(kind);
    s.errors.splice(0..0, l.errors);
    s
}

/// Drop-in folders of `name`, most specific first.
fn dropin_dirs(kind: FileType, name: &UnitName) -> Vec<String> {
    let sfx = kind.suffix();
    let mut v = vec![format!("{}.{sfx}.d", name.stem())];
    if let UnitName::Instance { template, .. } = name {
        v.push(format!("{template}@.{sfx}.d"));
    }
    v.push(format!("{sfx}.d"));
    v
}

/// The drop-ins that apply to `name`, in reading order.
fn dropins(
    dirs: &[PathBuf],
    listings: &[Vec<Listed>],
    has_d: &[bool],
    kind: FileType,
    name: &UnitName,
    errors: &mut Vec<String>,
) -> Vec<PathBuf> {
    // Most search paths have no drop-in folder at all: no names to make.
    if !has_d.iter().any(|&d| d) {
        return Vec::new();
    }
    let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
    let subs = dropin_dirs(kind, name);
    for ((dir, listing), _) in dirs.iter().zip(listings).zip(has_d).filter(|(_, &d)| d) {
        for sub in &subs {
            if listing
                .binary_search_by(|l| l.name.as_str().cmp(sub))
                .is_err()
            {
                continue;
            }
            let sub_dir = dir.join(sub);
            for l in list_dir(&sub_dir, errors) {
                if l.name.ends_with(".conf") {
                    let p = sub_dir.join(&l.name);
                    by_name.entry(l.name).or_insert(p);
                }
            }
        }
    }
    by_name
        .into_values()
        .filter(|p| match is_masked(p) {
            Ok(masked) => !masked,
            Err(e) => {
                errors.push(e);
                false
            }
        })
        .collect()
}

/// A directory entry: its name, path and whether it is a symlink (from
/// the directory listing itself, without a stat).
struct Listed {
    name: String,
    is_symlink: bool,
}

/// Entries of a directory, sorted by name. A missing directory is empty;
/// one that cannot be read is an error. Names that are not UTF-8 cannot be
/// unit names and are reported.
fn list_dir(dir: &Path, errors: &mut Vec<String>) -> Vec<Listed> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) if e.raw_os_error() == Some(libc_enotdir()) => return Vec::new(),
        Err(e) => {
            errors.push(format!("{}: cannot read directory: {e}", dir.display()));
            return Vec::new();
        }
    };
    let mut v = Vec::new();
    for ent in rd {
        match ent {
            Ok(ent) => {
                let is_symlink = ent.file_type().is_ok_and(|t| t.is_symlink());
                match ent.file_name().into_string() {
                    Ok(name) => v.push(Listed { name, is_symlink }),
                    Err(os) => {
                        let p = dir.join(&os);
                        if p.extension().is_some() {
                            errors.push(format!("{}: file name is not valid UTF-8", p.display()));
                        }
                    }
                }
            }
            Err(e) => errors.push(format!("{}: cannot read directory: {e}", dir.display())),
        }
    }
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

fn libc_enotdir() -> i32 {
    20 // ENOTDIR on Linux
}

/// Empty, or a symlink to /dev/null.
fn is_masked(path: &Path) -> Result<bool, String> {
    if let Ok(target) = fs::read_link(path) {
        if target == Path::new("/dev/null") {
            return Ok(true);
        }
    }
    match fs::metadata(path) {
        Ok(md) => Ok(md.is_file() && md.len() == 0),
        Err(e) => Err(format!("{}: {}", path.display(), describe_io(&e))),
    }
}

/// Read a unit file: it must be a regular file (after symlinks) of
/// bounded size.
fn read_unit(path: &Path) -> Result<Vec<u8>, String> {
    let data = read_bounded(path)?;
    if data.is_empty() {
        // Empty could also be a directory read as nothing; tell them apart.
        if let Ok(md) = fs::metadata(path) {
            if !md.is_file() {
                return Err(format!("{}: not a regular file", path.display()));
            }
        }
    }
    Ok(data)
}

/// Read a file, bounded in size.
pub fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    thread_local! {
        // One buffer per thread, reused for every file of a run; each
        // file is then copied out at its size.
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with(|b| match b.try_borrow_mut() {
        Ok(mut buf) => {
            let r = read_bounded_into(path, &mut buf).map(|n| buf[..n].to_vec());
            if buf.len() > 64 << 10 {
                // Not kept for the rest of the run after a rare big file.
                *buf = Vec::new();
            }
            r
        }
        Err(_) => {
            let mut buf = Vec::new();
            read_bounded_into(path, &mut buf).map(|n| buf[..n].to_vec())
        }
    })
}

/// Read `path` into `buf` (grown as needed); returns the length read.
fn read_bounded_into(path: &Path, buf: &mut Vec<u8>) -> Result<usize, String> {
    let err = |e: std::io::Error| format!("{}: {}", path.display(), describe_io(&e));
    let mut f = fs::File::open(path).map_err(err)?;
    // Unit files are small: one read into a buffer that fits them usually
    // sees the whole file. A short read from a regular file is its end, so
    // the extra read that would return 0 is saved (a generator reads
    // every file at every boot and reload).
    if buf.len() < 16 << 10 {
        buf.resize(16 << 10, 0);
    }
    let mut len = 0;
    loop {
        let n = match f.read(&mut buf[len..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(err(e)),
        };
        let asked = buf.len() - len;
        len += n;
        if len as u64 > MAX_FILE_SIZE {
            return Err(format!(
                "{}: larger than {} MiB; not a unit file",
                path.display(),
                MAX_FILE_SIZE >> 20
            ));
        }
        if n == 0 || n < asked {
            break;
        }
        let grow = buf.len().min(MAX_FILE_SIZE as usize + 1 - buf.len()).max(1);
        buf.resize(buf.len() + grow, 0);
    }
    Ok(len)
}

fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "dangling symlink or vanished file".into(),
        _ => e.to_string(),
    }
}

/// A configuration file `name` (such as `sdme.conf`) and its drop-ins, as
/// systemd finds `system.conf`: the file from the highest directory that
/// has it (none if that one is masked), then `name.d/*.conf` from every
/// directory, a name higher up shadowing the same name lower down, masked
/// ones left out, in file-name order. Returns the files in reading order
/// and what could not be read.
pub fn config_files(dirs: &[PathBuf], name: &str) -> (Vec<PathBuf>, Vec<String>) {
    Listings::new(dirs).config_files(name)
}

impl Listings<'_> {
    /// [`config_files`] from these listings; the listing errors come
    /// with the result (a directory that could not be read may have held
    /// the file).
    pub fn config_files(&self, name: &str) -> (Vec<PathBuf>, Vec<String>) {
        let mut errors = self.errors.clone();
        let files = config_files_in(self.dirs, &self.lists, name, &mut errors);
        (files, errors)
    }
}

fn config_files_in(
    dirs: &[PathBuf],
    lists: &[Vec<Listed>],
    name: &str,
    errors: &mut Vec<String>,
) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let dropin_dir = format!("{name}.d");
    let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut main_seen = false;
    for (dir, listing) in dirs.iter().zip(lists) {
        let has = |n: &str| listing.binary_search_by(|l| l.name.as_str().cmp(n)).is_ok();
        if !main_seen && has(name) {
            main_seen = true;
            let p = dir.join(name);
            match is_masked(&p) {
                Ok(false) => files.push(p),
                Ok(true) => {}
                Err(e) => errors.push(e),
            }
        }
        if has(&dropin_dir) {
            let sub_dir = dir.join(&dropin_dir);
            for l in list_dir(&sub_dir, errors) {
                if l.name.ends_with(".conf") {
                    let p = sub_dir.join(&l.name);
                    by_name.entry(l.name).or_insert(p);
                }
            }
        }
    }
    for p in by_name.into_values() {
        match is_masked(&p) {
            Ok(false) => files.push(p),
            Ok(true) => {}
            Err(e) => errors.push(e),
        }
    }
    files
}

/// Names of all files of `kind` on the path (for duplicate checks).
pub fn names(found: &[Found]) -> BTreeSet<String> {
    found.iter().map(|f| f.name.stem()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write(p: &Path, s: &str) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, s).unwrap();
    }

    #[test]
    fn shadowing_masking_and_dropins() {
        let t = tempfile::tempdir().unwrap();
        let etc = t.path().join("etc");
        let usr = t.path().join("usr");
        write(&usr.join("web.container"), "[Container]\n");
        write(&etc.join("web.container"), "[Container]\nHostname=x\n");
        write(&usr.join("db.container"), "[Container]\n");
        write(&usr.join("gone.container"), "[Container]\n");
        fs::create_dir_all(&etc).unwrap();
        symlink("/dev/null", etc.join("gone.container")).unwrap();
        write(&usr.join("web.container.d/10-a.conf"), "[Container]\n");
        write(&etc.join("web.container.d/10-a.conf"), "[Container]\n");
        write(&usr.join("web.container.d/20-b.conf"), "[Container]\n");
        write(&usr.join("container.d/05-all.conf"), "[Container]\n");
        write(&etc.join("web.container.d/30-masked.conf"), "");
        let s = search(
            &[etc.clone(), usr.clone(), t.path().join("missing")],
            FileType::Container,
        );
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        let names: Vec<_> = s.found.iter().map(|f| f.name.stem()).collect();
        assert_eq!(names, ["db", "web"]);
        assert_eq!(s.masked, [etc.join("gone.container")]);
        let web = &s.found[1];
        assert_eq!(web.path, etc.join("web.container"));
        assert_eq!(
            web.dropins,
            [
                usr.join("container.d/05-all.conf"),
                etc.join("web.container.d/10-a.conf"),
                usr.join("web.container.d/20-b.conf"),
            ]
        );
    }

    #[test]
    fn reads_are_bounded_and_complete() {
        let t = tempfile::tempdir().unwrap();
        let big = t.path().join("big.container");
        fs::write(&big, vec![b'#'; MAX_FILE_SIZE as usize + 1]).unwrap();
        let e = read_bounded(&big).unwrap_err();
        assert!(e.ends_with("larger than 4 MiB; not a unit file"), "{e}");
        let exact = t.path().join("exact.container");
        let data: Vec<u8> = (0..MAX_FILE_SIZE).map(|i| b'a' + (i % 26) as u8).collect();
        fs::write(&exact, &data).unwrap();
        assert_eq!(read_bounded(&exact).unwrap(), data);
        let small = t.path().join("small.container");
        fs::write(&small, "[Container]\n").unwrap();
        assert_eq!(read_bounded(&small).unwrap(), b"[Container]\n");
    }

    #[test]
    fn instance_symlink_takes_the_winning_template() {
        let t = tempfile::tempdir().unwrap();
        let etc = t.path().join("etc");
        let usr = t.path().join("usr");
        write(&usr.join("web@.container"), "[Container]\n");
        write(&etc.join("web@.container"), "[Container]\nHostname=etc\n");
        symlink(usr.join("web@.container"), usr.join("web@a.container")).unwrap();
        write(&usr.join("web@.container.d/10.conf"), "[Container]\n");
        write(&usr.join("web@a.container.d/10.conf"), "[Container]\n");
        let s = search(&[etc.clone(), usr.clone()], FileType::Container);
        let inst = s.found.iter().find(|f| f.name.stem() == "web@a").unwrap();
        assert_eq!(inst.path, usr.join("web@a.container"));
        assert_eq!(inst.content, etc.join("web@.container"));
        assert_eq!(inst.dropins, [usr.join("web@a.container.d/10.conf")]);
    }
}
