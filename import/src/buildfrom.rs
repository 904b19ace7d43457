//! `COPY CONTAINER:/path DST` of the original format (sdme.build(5)):
//! copy from the tree of the container `CONTAINER` (the `.container` file
//! of that name on the search path), as sdme 0.22 did:
//!
//! - running (its overlay is mounted at `containers/MACHINE/merged`):
//!   from that overlay, the files as the container sees them now;
//! - stopped: from a read-only overlay of its `upper/` over its lower
//!   layer, mounted for the copy (whiteouts and opaque directories mean
//!   what they mean to the container); never started (no `upper/`): from
//!   the lower layer.
//!
//! Refused: a running container with `PrivateUsers=` (its overlay shows
//! the host's shifted IDs, not the owners the files have inside), and a
//! stopped clone of the host's `/` (its upper lies under `/`, and
//! overlayfs refuses a lower inside another). The path inside is
//! confined like every source: a component that is a symlink is refused.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use sdme_core::config::Config;
use sdme_core::container::{Container, Rootfs};
use sdme_core::mountinfo::MountEntry;
use sdme_core::paths::{container_dir, unit_dirs};
use sdme_core::search::{search, FileType, UnitName};

use crate::buildlayer::RUN_DIR;

/// Where a container's tree is read from.
#[derive(Debug, PartialEq, Eq)]
pub enum Tree {
    /// The mounted overlay of a running container.
    Running(PathBuf),
    /// The lower layer of a container that never ran.
    Lower(PathBuf),
    /// A stopped container: its upper over its lower.
    Layers { upper: PathBuf, lower: PathBuf },
}

/// Where `c`'s tree is, given its state directory `dir`
/// (`/var/lib/sdme/containers/MACHINE`) and the mounts of the host.
pub fn tree(c: &Container, dir: &Path, mounts: &[MountEntry]) -> Result<Tree> {
    let name = &c.machine;
    let merged = dir.join("merged");
    let lower = PathBuf::from(c.rootfs.lower_dir());
    if mounts
        .iter()
        .any(|m| Path::new(&m.mount_point) == merged.as_path())
    {
        if c.private_users_enabled() {
            bail!(
                "the container {name} runs with PrivateUsers=, and its overlay shows shifted owners; stop it to copy from its layers"
            );
        }
        return Ok(Tree::Running(merged));
    }
    let upper = dir.join("upper");
    if !upper.is_dir() {
        return Ok(Tree::Lower(lower));
    }
    if c.rootfs == Rootfs::Host {
        bail!(
            "the container {name} is a stopped clone of the host's /, whose layers cannot be stacked here (its upper is inside its lower); start it, or copy the host's path"
        );
    }
    Ok(Tree::Layers { upper, lower })
}

/// The container `name`'s model, from its file on the search path (with
/// the configuration's defaults, as the generator reads it).
fn load(name: &str) -> Result<Container> {
    let (dirs, _) = unit_dirs();
    let found = search(&dirs, FileType::Container).found;
    let want = UnitName::Plain(name.to_string());
    let Some(f) = found.iter().find(|f| f.name == want) else {
        bail!("no container {name} (no {name}.container on the search path)");
    };
    Container::load_with(f, &Config::load(&dirs).0).map_err(|d| {
        let lines: Vec<String> = d.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("{}", lines.join("; "))
    })
}

/// The root of container `name`'s tree, open for reading until dropped.
pub struct Opened {
    pub root: PathBuf,
    /// The read-only overlay of a stopped container, unmounted on drop.
    mounted: Option<PathBuf>,
}

impl Opened {
    pub fn open(name: &str) -> Result<Opened> {
        let c = load(name)?;
        let text = fs::read_to_string("/proc/self/mountinfo")
            .context("cannot read /proc/self/mountinfo")?;
        let dir = container_dir(&c.machine);
        match tree(&c, &dir, &sdme_core::mountinfo::parse(&text))? {
            Tree::Running(root) | Tree::Lower(root) => Ok(Opened {
                root,
                mounted: None,
            }),
            Tree::Layers { upper, lower } => mount_layers(name, &upper, &lower),
        }
    }
}

/// The overlay mount data of a stopped container's layers, read-only.
pub fn layers_data(upper: &Path, lower: &Path) -> Result<String> {
    for p in [upper, lower] {
        let s = p.to_string_lossy();
        if s.contains([':', ',']) {
            bail!("{s}: a layer path with ':' or ',' cannot be an overlay lower");
        }
    }
    Ok(format!(
        "lowerdir={}:{}",
        upper.to_string_lossy(),
        lower.to_string_lossy()
    ))
}

fn mount_layers(name: &str, upper: &Path, lower: &Path) -> Result<Opened> {
    let data = layers_data(upper, lower)?;
    let run = Path::new(RUN_DIR);
    fs::create_dir_all(run).with_context(|| format!("cannot create {}", run.display()))?;
    let dir = tempfile::Builder::new()
        .prefix(&format!(".from-{name}-"))
        .tempdir_in(run)
        .with_context(|| format!("cannot create a directory in {}", run.display()))?
        // Removed by hand after the unmount: never recursively.
        .keep();
    mount(
        Some("overlay"),
        &dir,
        Some("overlay"),
        MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_NOSUID,
        Some(data.as_str()),
    )
    .map_err(|e| {
        let _ = fs::remove_dir(&dir);
        anyhow::anyhow!(
            "cannot mount the layers of the container {name} ({}) read-only: {e}",
            upper.display()
        )
    })?;
    Ok(Opened {
        root: dir.clone(),
        mounted: Some(dir),
    })
}

impl Drop for Opened {
    fn drop(&mut self) {
        if let Some(d) = self.mounted.take() {
            if let Err(e) = umount2(&d, MntFlags::MNT_DETACH) {
                eprintln!("sdme-build: cannot unmount {}: {e}", d.display());
                return;
            }
            let _ = fs::remove_dir(&d);
            // Only if no build uses it (a refused source comes before
            // the build makes its own directory there).
            let _ = fs::remove_dir(RUN_DIR);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdme_core::syntax::UnitFile;

    fn container(name: &str, text: &str) -> Container {
        let path = PathBuf::from(format!("/etc/sdme/{name}.container"));
        let f = UnitFile::parse(&path, text.as_bytes()).unwrap();
        Container::from_unit(UnitName::Plain(name.into()), &path, f).unwrap()
    }

    fn mounted(at: &Path) -> Vec<MountEntry> {
        let line = format!(
            "40 22 0:50 / {} rw - overlay overlay rw,lowerdir=/x\n",
            at.display()
        );
        sdme_core::mountinfo::parse(&line)
    }

    #[test]
    fn where_a_container_tree_is_read() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path();
        let c = container("c1", "[Container]\nRootfs=deb\n");
        let deb = PathBuf::from("/var/lib/sdme/rootfs/deb");
        // Never started: its lower layer.
        assert_eq!(tree(&c, dir, &[]).unwrap(), Tree::Lower(deb.clone()));
        let merged = dir.join("merged");
        assert_eq!(
            tree(&c, dir, &mounted(&merged)).unwrap(),
            Tree::Running(merged.clone())
        );
        fs::create_dir(dir.join("upper")).unwrap();
        assert_eq!(
            tree(&c, dir, &[]).unwrap(),
            Tree::Layers {
                upper: dir.join("upper"),
                lower: deb
            }
        );
        let u = container("c2", "[Container]\nRootfs=deb\nPrivateUsers=yes\n");
        let e = tree(&u, dir, &mounted(&merged)).unwrap_err().to_string();
        assert!(e.contains("runs with PrivateUsers="), "{e}");
        // Stopped, it is read through its layers, whatever its users.
        assert!(matches!(tree(&u, dir, &[]), Ok(Tree::Layers { .. })));
        let h = container("c3", "[Container]\n");
        let e = tree(&h, dir, &[]).unwrap_err().to_string();
        assert!(e.contains("a stopped clone of the host's /"), "{e}");
        assert!(matches!(
            tree(&h, dir, &mounted(&merged)),
            Ok(Tree::Running(_))
        ));
    }

    #[test]
    fn the_layers_are_two_lowers() {
        let d = layers_data(Path::new("/c/upper"), Path::new("/r/deb")).unwrap();
        assert_eq!(d, "lowerdir=/c/upper:/r/deb");
        assert!(layers_data(Path::new("/c/up:per"), Path::new("/r")).is_err());
        assert!(layers_data(Path::new("/c/upper"), Path::new("/r,x")).is_err());
    }
}
