//! One generator run: search path in, units out, diagnostics beside.
//!
//! Three steps, so that the work spreads over the CPUs while the result
//! stays a deterministic function of the files:
//! 1. [`plan`]: search, then read and validate every file (in parallel);
//! 2. in file-name order, refuse a file whose machine name or output paths
//!    an earlier file already has (the first one wins, as on the search
//!    path);
//! 3. [`generate`] or the binary's writer renders the accepted containers
//!    and hands each unit on at once, so a run over many files never holds
//!    all units in memory.
//!
//! When writing, [`plan_with`] runs the steps as a pipeline over the
//! container files (see [`crate::parallel::pipeline`]): a file is read and
//! validated on any thread, checked in file-name order, and its units are
//! written while later files are still read, with no barrier between the
//! steps. The checks see the files in the same order either way, so the
//! output and the messages are the same.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::path::PathBuf;

use crate::broken::{render_broken, Broken};
use crate::build::Build;
use crate::build_plan::plan_builds;
use crate::config::Config;
use crate::container::Container;
use crate::diag::Diag;
use crate::image::{image_service_name, Image};
use crate::inuse::Record;
use crate::orphan::{render_orphan, Orphan};
use crate::parallel::{pipeline, threads_for};
use crate::pod::Pod;
use crate::render::{
    build_output_paths, image_output_paths, output_paths, pod_output_paths, render, render_build,
    render_image, render_pod, service_name, Output,
};
use crate::search::{Candidate, FileType, Listings, UnitName, Unread};
use crate::userns;

/// The containers to generate and what went wrong with the others.
#[derive(Debug, Default)]
pub struct Plan {
    /// Accepted pods, in file-name order.
    pub pods: Vec<Pod>,
    /// Image units: `.image` files in file-name order, then the inline
    /// `Image=` references of accepted containers, each once.
    pub images: Vec<Image>,
    /// Build units: the accepted `.build` files, in file-name order.
    pub builds: Vec<Build>,
    /// Accepted containers, in file-name order (boxed: the checks and
    /// the writing threads pass a thousand of them along).
    pub containers: Vec<Box<Container>>,
    /// Every problem, one line each.
    pub errors: Vec<String>,
    /// Files skipped on purpose (masked).
    pub masked: Vec<PathBuf>,
    /// Files skipped because of their errors.
    pub skipped: Vec<PathBuf>,
    /// Error units: the skipped files whose names are valid unit names,
    /// in the order images, builds, pods, containers (each in file-name
    /// order);
    /// none with the name of a unit generated from a good file, nor of
    /// an orphan.
    pub broken: Vec<Broken>,
    /// Units of running containers that no file generates any more (the
    /// file was removed, or has errors), in unit order; see
    /// [`crate::orphan`].
    pub orphans: Vec<Orphan>,
}

/// The errors of a file, as logged.
fn messages(diags: &[Diag]) -> Vec<String> {
    diags.iter().map(Diag::to_string).collect()
}

/// Steps 1 and 2: every file on `dirs`, validated and checked against the
/// others (no running containers).
pub fn plan(dirs: &[PathBuf]) -> Plan {
    plan_with(dirs, &[], |_| ()).0
}

/// [`plan`], with step 3 overlapped: `work` gets each accepted container
/// (on one of the worker threads) as soon as it and every file before it
/// are checked, while later files are still read and checked. Returns
/// `work`'s results in file-name order, as [`Plan::containers`].
/// `records`: the use records of the containers that run
/// ([`crate::inuse::read_all`]), for [`Plan::orphans`].
pub fn plan_with<R: Send>(
    dirs: &[PathBuf],
    records: &[Record],
    work: impl Fn(&Container) -> R + Sync,
) -> (Plan, Vec<R>) {
    let listings = Listings::new(dirs);
    let ps = listings.search(FileType::Pod);
    let is = listings.search(FileType::Image);
    // The container files are read in the pipeline below, each by the
    // thread that validates it.
    let (candidates, masked) = listings.candidates(FileType::Container);
    let mut p = Plan {
        errors: listings.errors.clone(),
        ..Default::default()
    };
    p.errors.extend(ps.errors);
    p.masked.extend(ps.masked);
    p.errors.extend(is.errors);
    p.masked.extend(is.masked);
    // As Listings::search orders them: the masked by a symlink first,
    // then the empty files (pushed by the checks below).
    p.masked.extend(masked);
    // Errors of reading container files come before all others but
    // those of the search; the checks collect them in file order.
    let read_errors_at = p.errors.len();
    let mut read_errors = Vec::new();
    // Output paths of the files accepted so far (only looked up, never
    // iterated: the order of the set does not reach the output).
    let mut taken: HashSet<String, BuildHasherDefault<Fnv>> = HashSet::default();
    // Three units and a link or so per container.
    taken.reserve(4 * candidates.len());
    // Broken files by name, with their errors: a container that names
    // one fails with them.
    let mut broken_images: BTreeMap<String, (PathBuf, Vec<String>)> = BTreeMap::new();
    let mut broken_pods: BTreeMap<String, (PathBuf, Vec<String>)> = BTreeMap::new();
    // Image files next: containers name them with Rootfs=NAME.image.
    for found in &is.found {
        match Image::load(found) {
            Ok(img) => {
                taken.extend(image_output_paths(&img));
                p.images.push(img);
            }
            Err(diags) => {
                let msgs = messages(&diags);
                p.errors.extend(msgs.iter().cloned());
                p.skipped.push(found.path.clone());
                broken_images.insert(found.name.stem(), (found.path.clone(), msgs.clone()));
                p.broken
                    .extend(Broken::new(FileType::Image, &found.name, &found.path, msgs));
            }
        }
    }
    for (name, path, e) in is.unreadable {
        broken_images.insert(name.stem(), (path.clone(), vec![e.clone()]));
        p.broken
            .extend(Broken::new(FileType::Image, &name, &path, vec![e]));
    }
    let image_files: BTreeSet<String> = p.images.iter().map(|x| x.name.clone()).collect();
    // Build files next: they may start from image files, and containers
    // name them with Rootfs=NAME.build.
    let bs = plan_builds(listings.search(FileType::Build), &image_files);
    p.errors.extend(bs.errors);
    p.masked.extend(bs.masked);
    p.skipped.extend(bs.skipped);
    p.broken.extend(bs.broken);
    let broken_builds = bs.broken_files;
    for b in &bs.builds {
        taken.extend(build_output_paths(b));
    }
    p.builds = bs.builds;
    let build_files: BTreeSet<String> = p.builds.iter().map(|x| x.name.clone()).collect();
    // Inline Image= rootfs names that have their image unit.
    let mut inline: BTreeSet<String> = BTreeSet::new();
    // Pods first: their units are what members depend on.
    for found in &ps.found {
        match Pod::load(found) {
            Ok(pod) => {
                taken.extend(pod_output_paths(&pod));
                p.pods.push(pod);
            }
            Err(diags) => {
                let msgs = messages(&diags);
                p.errors.extend(msgs.iter().cloned());
                p.skipped.push(found.path.clone());
                broken_pods.insert(found.name.stem(), (found.path.clone(), msgs.clone()));
                p.broken
                    .extend(Broken::new(FileType::Pod, &found.name, &found.path, msgs));
            }
        }
    }
    for (name, path, e) in ps.unreadable {
        broken_pods.insert(name.stem(), (path.clone(), vec![e.clone()]));
        p.broken
            .extend(Broken::new(FileType::Pod, &name, &path, vec![e]));
    }
    // The global configuration: with errors in it, a preset could end up
    // weaker than the admin wrote, so containers that use one are skipped.
    let (config, config_diags) = Config::load_from(&listings);
    let config_ok = config_diags.is_empty();
    let config_msgs = messages(&config_diags);
    p.errors.extend(config_msgs.iter().cloned());
    // A pod instance needs its template (its unit may come from it).
    let templates: BTreeSet<String> = p
        .pods
        .iter()
        .filter(|x| x.is_template())
        .map(|x| x.name.clone())
        .collect();
    let mut orphans = Vec::new();
    p.pods.retain(|x| match &x.unit_name {
        UnitName::Instance { template, .. } if !templates.contains(&format!("{template}@")) => {
            let msg = format!(
                "{}: instance of the pod template {template}@.pod, which is not on the search path (or has errors, or is masked)",
                x.source.display()
            );
            orphans.push(msg.clone());
            p.skipped.push(x.source.clone());
            broken_pods.insert(x.name.clone(), (x.source.clone(), vec![msg.clone()]));
            p.broken
                .extend(Broken::new(FileType::Pod, &x.unit_name, &x.source, vec![msg]));
            false
        }
        _ => true,
    });
    p.errors.extend(orphans);
    let pods: BTreeSet<String> = p.pods.iter().map(|x| x.name.clone()).collect();
    // machine name -> file that claimed it first
    let mut machines: BTreeMap<String, PathBuf> = BTreeMap::new();
    // PrivateUsers= base -> (file, machine) that claimed it first
    let mut bases: BTreeMap<u32, (PathBuf, String)> = BTreeMap::new();
    // Each container file is read and validated with its output paths in
    // parallel; the checks against the files before it run in file-name
    // order.
    let load = |cand: Candidate| {
        listings
            .read(FileType::Container, cand)
            .map(|(found, errors)| {
                let loaded = match Container::load_with(&found, &config) {
                    Ok(c) => {
                        let paths = output_paths(&c);
                        Ok((Box::new(c), paths))
                    }
                    Err(diags) => Err((found.path, found.name, diags)),
                };
                (loaded, errors)
            })
    };
    // The checks own their tables, so that the pipeline frees them as
    // soon as the last file is checked (while units are still written).
    // The machine each recorded unit runs (a renamed container's stop
    // unmounts the overlay of the name it runs under too).
    let running = crate::orphan::running(records);
    let running_machine: HashMap<&str, &str> = (running.iter())
        .map(|r| (r.unit.as_str(), r.machine.as_str()))
        .collect();
    let (p_mut, read_errors_mut, taken_mut) = (&mut p, &mut read_errors, &mut taken);
    let check = move |read: Result<(Loaded, Vec<String>), Unread>| {
        let (p, read_errors, taken) = (&mut *p_mut, &mut *read_errors_mut, &mut *taken_mut);
        let (mut c, paths) = match read {
            Ok((Ok(x), errors)) => {
                read_errors.extend(errors);
                x
            }
            Ok((Err((path, name, diags)), errors)) => {
                read_errors.extend(errors);
                let msgs = messages(&diags);
                p.errors.extend(msgs.iter().cloned());
                p.broken
                    .extend(Broken::new(FileType::Container, &name, &path, msgs));
                p.skipped.push(path);
                return None;
            }
            Err(Unread::Masked(path)) => {
                p.masked.push(path);
                return None;
            }
            Err(Unread::Failed(e)) => {
                read_errors.push(e);
                return None;
            }
            Err(Unread::Unreadable { error, name, path }) => {
                read_errors.push(error.clone());
                p.broken
                    .extend(Broken::new(FileType::Container, &name, &path, vec![error]));
                return None;
            }
        };
        if let Some((pod, at)) = &c.pod {
            // `web@a` is served by its own file or by the template `web@`.
            let template = pod.split_once('@').map(|(t, _)| format!("{t}@"));
            let found = pods.contains(pod) && !pod.ends_with("@%i")
                || template.as_ref().is_some_and(|t| pods.contains(t));
            if !found {
                let want = match &template {
                    Some(t) if pod.ends_with("@%i") => format!("no pod template {t}.pod"),
                    Some(t) => format!("no pod file {pod}.pod or pod template {t}.pod"),
                    None => format!("no pod file {pod}.pod"),
                };
                p.errors.push(format!(
                    "{at}: Pod={pod}.pod: {want} on the search path (or it has errors, or is masked)"
                ));
                // The unit names the pod file with the errors, if any.
                let own = (!pod.ends_with("@%i")).then(|| broken_pods.get(pod));
                let dep = own
                    .flatten()
                    .or_else(|| template.and_then(|t| broken_pods.get(&t)));
                let b = match dep {
                    Some((file, msgs)) => {
                        let head = format!("{at}: Pod={pod}.pod: {} has errors:", file.display());
                        container_broken(&c, [head].into_iter().chain(msgs.iter().cloned()))
                            .map(|b| b.caused_by(file))
                    }
                    None => container_broken(&c, p.errors.last().cloned()),
                };
                p.broken.extend(b);
                p.skipped.push(c.source.clone());
                return None;
            }
        }
        if let Some(msg) = app_error(&c, &pods) {
            p.errors.push(msg);
            p.broken
                .extend(container_broken(&c, p.errors.last().cloned()));
            p.skipped.push(c.source.clone());
            return None;
        }
        if let (Some(preset), false) = (c.preset, config_ok) {
            let msg = format!(
                "{}: {preset:?}=yes needs the global configuration, which has errors (above)",
                c.source.display()
            );
            p.errors.push(msg.clone());
            // The configuration's errors first: the message says "above".
            let msgs = config_msgs.iter().cloned().chain([msg]);
            p.broken.extend(container_broken(&c, msgs));
            p.skipped.push(c.source.clone());
            return None;
        }
        for (img, key) in c.image_uses() {
            let at = &img.at;
            let (files, broken, ext) = if img.build {
                (&build_files, &broken_builds, "build")
            } else {
                (&image_files, &broken_images, "image")
            };
            match &img.inline {
                None if !files.contains(&img.name) => {
                    p.errors.push(format!(
                        "{at}: {key}={n}.{ext}: no {ext} file {n}.{ext} on the search path (or it has errors, or is masked)",
                        n = img.name
                    ));
                    let b = match broken.get(&img.name) {
                        Some((file, msgs)) => {
                            let head = format!(
                                "{at}: {key}={}.{ext}: {} has errors:",
                                img.name,
                                file.display()
                            );
                            container_broken(&c, [head].into_iter().chain(msgs.iter().cloned()))
                                .map(|b| b.caused_by(file))
                        }
                        None => container_broken(&c, p.errors.last().cloned()),
                    };
                    p.broken.extend(b);
                    p.skipped.push(c.source.clone());
                    return None;
                }
                Some(r) if image_files.contains(&img.name) || build_files.contains(&img.name) => {
                    // Only a file named like an inline rootfs can clash.
                    let kind = if build_files.contains(&img.name) {
                        "a build"
                    } else {
                        "an image"
                    };
                    let key = if key == "App" { "App" } else { "Image" };
                    p.errors.push(format!(
                        "{at}: {key}={r}: its rootfs name '{}' is also the name of {kind} file; rename that file",
                        img.name
                    ));
                    p.broken
                        .extend(container_broken(&c, p.errors.last().cloned()));
                    p.skipped.push(c.source.clone());
                    return None;
                }
                _ => {}
            }
        }
        if !c.is_template() {
            if let Some(other) = machines.get(&c.machine) {
                p.errors.push(format!(
                    "{}: machine name '{}' is already used by {}",
                    c.source.display(),
                    c.machine,
                    other.display()
                ));
                p.broken
                    .extend(container_broken(&c, p.errors.last().cloned()));
                p.skipped.push(c.source.clone());
                return None;
            }
        }
        let base = c.userns_base();
        if let Some((other, m)) = base.and_then(|b| bases.get(&b)) {
            let b = base.unwrap_or_default();
            p.errors.push(format!(
                "{}: PrivateUsers=: the UID range {b}-{} of machine '{}' is already the range of machine '{m}' ({}); set PrivateUsers= to a free base (a multiple of 65536 from {} to {}) in one of the two files",
                c.source.display(),
                b + (userns::RANGE - 1),
                c.machine,
                other.display(),
                userns::BASE_MIN,
                userns::BASE_MAX,
            ));
            p.broken
                .extend(container_broken(&c, p.errors.last().cloned()));
            p.skipped.push(c.source.clone());
            return None;
        }
        if let Some(clash) = paths.iter().find(|o| taken.contains(*o)) {
            p.errors.push(format!(
                "{}: {clash} is already generated from another file",
                c.source.display()
            ));
            p.broken
                .extend(container_broken(&c, p.errors.last().cloned()));
            p.skipped.push(c.source.clone());
            return None;
        }
        if !c.is_template() {
            machines.insert(c.machine.clone(), c.source.clone());
            let now = running_machine.get(service_name(&c).as_str());
            c.running_as = now.filter(|m| **m != c.machine).map(|m| m.to_string());
        }
        if let Some(b) = base {
            bases.insert(b, (c.source.clone(), c.machine.clone()));
        }
        taken.extend(paths);
        // A reference both as Image= and as App= is imported once, by
        // the first use (Image= first in a file, then file-name order).
        for (img, key) in c.image_uses() {
            if let Some(r) = &img.inline {
                if inline.insert(img.name.clone()) {
                    p.images.push(match key {
                        "App" => Image::inline_app(r, &c.source),
                        _ => Image::inline(r, &c.source),
                    });
                }
            }
        }
        Some(c)
    };
    // One thread more than CPUs when there are several: the generator's
    // work blocks on the output directory's lock (every link into it
    // takes it), and the extra thread reads and validates meanwhile
    // (measured on 2 CPUs, 1000 files: 32.7 ms median against 34.8).
    let threads = match threads_for(candidates.len()) {
        1 => 1,
        n => n + 1,
    };
    let done = pipeline(candidates, threads, load, check, |c| work(c));
    let mut results = Vec::with_capacity(done.len());
    // In place: a thousand containers are most of a run's memory.
    p.containers = (done.into_iter())
        .map(|(c, r)| {
            results.push(r);
            c
        })
        .collect();
    p.errors.splice(read_errors_at..read_errors_at, read_errors);
    // An error unit never takes the name of a good file's unit (the good
    // files were checked without them), nor of another error unit.
    let inline_units: HashSet<String> = (p.images.iter().filter(|x| x.inline))
        .map(|x| image_service_name(&x.name))
        .collect();
    let mut units: HashSet<String> = HashSet::new();
    p.broken.retain(|b| {
        !taken.contains(&b.unit) && !inline_units.contains(&b.unit) && units.insert(b.unit.clone())
    });
    // Running containers whose unit no good file generates keep one that
    // stops them (it replaces an error unit of the same name).
    let served = |u: &str| taken.contains(u) || inline_units.contains(u);
    p.orphans = crate::orphan::find(&running, served, &mut p.broken, &p.masked);
    drop(taken);
    // Each image unit orders the prepare steps of its users after it
    // (image units are rendered after the plan, containers' units do not
    // depend on this).
    let image_at: BTreeMap<String, usize> = (p.images.iter().enumerate())
        .map(|(i, img)| (img.name.clone(), i))
        .collect();
    let build_at: BTreeMap<String, usize> = (p.builds.iter().enumerate())
        .map(|(i, b)| (b.name.clone(), i))
        .collect();
    for c in p.containers.iter().filter(|c| !c.helper_mounts()) {
        for (img, _) in c.image_uses() {
            let by = if img.build {
                build_at
                    .get(&img.name)
                    .map(|i| &mut p.builds[*i].prepared_by)
            } else {
                image_at
                    .get(&img.name)
                    .map(|i| &mut p.images[*i].prepared_by)
            };
            // One container may name one image twice (Image= and App=).
            if let Some(by) = by.filter(|by| !by.contains(&c.machine)) {
                by.push(c.machine.clone());
            }
        }
    }
    (p, results)
}

/// A container file validated, with its output paths; or its path, name
/// and errors.
type Loaded = Result<(Box<Container>, Vec<String>), (PathBuf, UnitName, Vec<Diag>)>;

/// The error unit of a valid container file that cannot be generated.
/// Whether a pod unit serves `pod` (`web@a` is served by its own file or
/// by the template `web@`).
fn pod_known(pods: &BTreeSet<String>, pod: &str) -> bool {
    let template = pod.split_once('@').map(|(t, _)| format!("{t}@"));
    pods.contains(pod) && !pod.ends_with("@%i") || template.is_some_and(|t| pods.contains(&t))
}

/// A container with `App=`: `AppPod=` must name a pod.
fn app_error(c: &Container, pods: &BTreeSet<String>) -> Option<String> {
    let (pod, at) = c.app.as_ref()?.pod.as_ref()?;
    (!pod_known(pods, pod)).then(|| format!(
        "{at}: AppPod={pod}.pod: no such pod file (or pod template) on the search path (or it has errors, or is masked)"
    ))
}

fn container_broken(c: &Container, msgs: impl IntoIterator<Item = String>) -> Option<Broken> {
    Broken::new(
        FileType::Container,
        &c.name,
        &c.source,
        msgs.into_iter().collect(),
    )
}

/// The whole run, sequentially: each container's units go to `emit` in
/// file-name order (what `--dry-run` prints).
pub fn generate(dirs: &[PathBuf], records: &[Record], emit: &mut dyn FnMut(Output)) -> Plan {
    let p = plan_with(dirs, records, |_| ()).0;
    for pod in &p.pods {
        for o in render_pod(pod) {
            emit(o);
        }
    }
    for img in &p.images {
        for o in render_image(img) {
            emit(o);
        }
    }
    for b in &p.builds {
        for o in render_build(b) {
            emit(o);
        }
    }
    for c in &p.containers {
        for o in render(c) {
            emit(o);
        }
    }
    for b in &p.broken {
        emit(render_broken(b));
    }
    for o in &p.orphans {
        emit(render_orphan(o));
    }
    p
}

/// FNV-1a: the output-path set of a run holds thousands of short names
/// made from the admin's own file names, so a simple fast hash beats both
/// SipHash and an ordered set.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
