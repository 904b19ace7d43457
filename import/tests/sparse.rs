//! Sparse files archived by GNU tar in every format it writes them in
//! (`--format=gnu -S`, `--format=posix -S` with each `--sparse-version`),
//! applied and compared with GNU tar's own extraction.

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use sdme_import::layer::{apply, ApplyOpts};

fn gnu_tar(args: &[&str], dir: &Path) {
    let st = Command::new("tar")
        .args(args)
        .current_dir(dir)
        .status()
        .expect("GNU tar is needed for this test");
    assert!(st.success(), "tar {args:?}");
}

/// Sparse files: data at 30 places 1 MiB apart (more segments than the
/// GNU header and its first extension block hold), ending in a hole; and
/// one starting with data and ending with it.
fn make_sparse(dir: &Path) {
    fs::create_dir_all(dir.join("d")).unwrap();
    let f = fs::File::create(dir.join("d/holes")).unwrap();
    f.set_len(40 << 20).unwrap();
    for i in 0..30u64 {
        f.write_all_at(format!("segment {i}").as_bytes(), (i << 20) + 4096)
            .unwrap();
    }
    let g = fs::File::create(dir.join("d/ends")).unwrap();
    g.write_all_at(b"start", 0).unwrap();
    g.write_all_at(b"end", (8 << 20) - 3).unwrap();
    fs::write(dir.join("d/plain"), b"not sparse").unwrap();
}

fn opts() -> ApplyOpts<'static> {
    ApplyOpts {
        whiteouts: false,
        same_owner: false,
        budget: None,
    }
}

#[test]
fn gnu_tar_sparse_formats_extract_as_gnu_tar_does() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_sparse(&src);
    let formats: &[(&str, &[&str])] = &[
        ("gnu", &["--format=gnu", "-S"]),
        ("posix", &["--format=posix", "-S"]),
        ("pax-0.0", &["--format=posix", "-S", "--sparse-version=0.0"]),
        ("pax-0.1", &["--format=posix", "-S", "--sparse-version=0.1"]),
        ("pax-1.0", &["--format=posix", "-S", "--sparse-version=1.0"]),
    ];
    for (label, flags) in formats {
        let ar = tmp.path().join(format!("{label}.tar"));
        let mut args = flags.to_vec();
        args.extend(["-cf", ar.to_str().unwrap(), "d"]);
        gnu_tar(&args, &src);
        let want = tmp.path().join(format!("{label}-gnu"));
        fs::create_dir(&want).unwrap();
        gnu_tar(
            &["-xf", ar.to_str().unwrap(), "-C", want.to_str().unwrap()],
            tmp.path(),
        );
        let got = tmp.path().join(format!("{label}-sdme"));
        fs::create_dir(&got).unwrap();
        apply(fs::File::open(&ar).unwrap(), &got, &opts())
            .unwrap_or_else(|e| panic!("{label}: {e:#}"));
        let names: Vec<_> = fs::read_dir(got.join("d"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "{label}: {names:?}");
        for f in ["holes", "ends", "plain"] {
            let (g, w) = (got.join("d").join(f), want.join("d").join(f));
            let (gm, wm) = (fs::metadata(&g).unwrap(), fs::metadata(&w).unwrap());
            assert_eq!(gm.len(), wm.len(), "{label} {f}: size");
            let cmp = Command::new("cmp").arg(&g).arg(&w).status().unwrap();
            assert!(cmp.success(), "{label} {f}: content differs");
            assert_eq!(
                fs::read(&g).unwrap(),
                fs::read(src.join("d").join(f)).unwrap(),
                "{label} {f}"
            );
        }
        // Holes kept: 30 segments of 4 KiB, not 40 MiB.
        let blocks = fs::metadata(got.join("d/holes")).unwrap().blocks() * 512;
        assert!(blocks < 1 << 20, "{label}: {blocks} bytes allocated");
    }
}

#[test]
fn a_sparse_map_past_the_real_size_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_sparse(&src);
    let ar = tmp.path().join("p.tar");
    gnu_tar(
        &[
            "--format=posix",
            "-S",
            "--sparse-version=1.0",
            "-cf",
            ar.to_str().unwrap(),
            "d/ends",
        ],
        &src,
    );
    // Shrink the declared real size below the map's last segment.
    let mut data = fs::read(&ar).unwrap();
    let key = b"GNU.sparse.realsize=8388608\n";
    let at = data.windows(key.len()).position(|w| w == key).unwrap();
    data[at + 20..at + 27].copy_from_slice(b"0000001");
    fs::write(&ar, &data).unwrap();
    let got = tmp.path().join("got");
    fs::create_dir(&got).unwrap();
    let e = format!("{:#}", apply(&data[..], &got, &opts()).unwrap_err());
    assert!(
        e.contains("beyond the real size") && e.contains("d/"),
        "{e}"
    );
}
