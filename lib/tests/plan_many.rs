//! A run over enough files to be spread over threads (the golden cases
//! are too small for that): the checks still see the files in file-name
//! order, so which file wins a clash, the order of the messages and the
//! accepted containers are those of a sequential run, every time.

use std::fs;
use std::path::PathBuf;

use sdme_core::generate::{plan, plan_with};

const FILES: usize = 300;

/// `c000` to `c299`; by `i % 5`: a duplicate machine name, an unknown
/// key, a good file, an empty (masking) file, a good file. `c150` is a
/// dangling symlink.
fn fill(dir: &std::path::Path) {
    for i in 0..FILES {
        let path = dir.join(format!("c{i:03}.container"));
        if i == 150 {
            std::os::unix::fs::symlink("/nonexistent", &path).unwrap();
            continue;
        }
        let body = match i % 5 {
            0 => format!("[Container]\nRootfs=debian\nMachineName=dup{}\n", i % 3),
            1 => "[Container]\nBogus=1\n".to_string(),
            3 => String::new(),
            _ => "[Container]\nRootfs=debian\n".to_string(),
        };
        fs::write(&path, body).unwrap();
    }
}

#[test]
fn checks_keep_file_order_over_many_files() {
    let t = tempfile::tempdir().unwrap();
    fill(t.path());
    let dirs = vec![t.path().to_path_buf()];
    let file = |i: usize| t.path().join(format!("c{i:03}.container"));

    // What a sequential run gives: the read error first, then each file's
    // own error in file-name order; the first file with a machine name
    // keeps it.
    let mut errors = vec![format!(
        "{}: dangling symlink or vanished file",
        file(150).display()
    )];
    let mut machines = Vec::new();
    let mut claimed = std::collections::BTreeMap::new();
    for i in (0..FILES).filter(|&i| i != 150) {
        match i % 5 {
            0 => {
                let m = format!("dup{}", i % 3);
                match claimed.get(&m) {
                    Some(first) => errors.push(format!(
                        "{}: machine name '{m}' is already used by {}",
                        file(i).display(),
                        file(*first).display()
                    )),
                    None => {
                        claimed.insert(m.clone(), i);
                        machines.push(m);
                    }
                }
            }
            1 => errors.push(format!(
                "{}:2: unknown key 'Bogus' in section [Container]",
                file(i).display()
            )),
            3 => {}
            _ => machines.push(format!("c{i:03}")),
        }
    }
    let masked: Vec<PathBuf> = (0..FILES).filter(|i| i % 5 == 3).map(file).collect();

    for _ in 0..5 {
        let (p, work) = plan_with(&dirs, &[], |c| c.machine.clone());
        assert_eq!(p.errors, errors);
        assert_eq!(p.masked, masked);
        let got: Vec<String> = p.containers.iter().map(|c| c.machine.clone()).collect();
        assert_eq!(got, machines);
        // The work results line up with the containers.
        assert_eq!(work, machines);
        assert_eq!(plan(&dirs).errors, errors);
    }
}
