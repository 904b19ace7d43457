//! Shell completions: clap_complete's scripts, and for bash the names of
//! containers, root file systems and pods, which the script asks the
//! hidden `sdme __names KIND` for (no root needed: the search path and
//! `/var/lib/sdme/rootfs` are world-readable, and only names are listed,
//! no file is read).

use std::io::Write;

use anyhow::Result;
use clap::ValueEnum;
use sdme_core::paths::ROOTFS_DIR;
use sdme_core::search::{FileType, Listings, UnitName};

use crate::lookup::{dirs, write_stdout};

#[derive(Clone, Copy, ValueEnum)]
pub enum Kind {
    Container,
    Rootfs,
    Pod,
}

/// The names of `kind`, one a line, sorted.
pub fn names(kind: Kind) -> Result<()> {
    let list = match kind {
        Kind::Container => units(FileType::Container),
        Kind::Pod => units(FileType::Pod),
        Kind::Rootfs => rootfs_names(),
    };
    let mut out = Vec::new();
    for n in list {
        writeln!(out, "{n}")?;
    }
    write_stdout(&out)
}

/// Plain names on the search path (not templates; masked ones left out).
fn units(kind: FileType) -> Vec<String> {
    let dirs = dirs();
    let (found, _masked) = Listings::new(&dirs).candidates(kind);
    found
        .into_iter()
        .filter_map(|c| match c.name {
            UnitName::Plain(n) => Some(n),
            _ => None,
        })
        .collect()
}

/// The imported root file systems: directories of `ROOTFS_DIR`; the
/// importer's own entries start with a dot.
fn rootfs_names() -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(ROOTFS_DIR) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    v.sort();
    v
}

/// What the bash script adds to clap_complete's: a function that answers
/// with names where a command takes one and leaves the rest to `_sdme`.
const BASH_NAMES: &str = r#"
# Names (sdme __names container|rootfs|pod) where a command takes one.
_sdme_names() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local i w cmd= sub= npos=0 kind=
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        case $w in
            -*) ;;
            *) if [[ -z $cmd ]]; then cmd=$w; elif [[ -z $sub ]]; then sub=$w; npos=$((npos + 1)); else npos=$((npos + 1)); fi ;;
        esac
    done
    case $prev in
        -r | --rootfs) kind=rootfs ;;
        --pod) kind=pod ;;
    esac
    if [[ -z $kind && $cur != -* && -n $cmd ]]; then
        case $cmd in
            start | stop | restart | rm | enable | disable) kind=container ;;
            exec | logs | cat | set | join | edit | diff) [[ $npos -eq 0 ]] && kind=container ;;
            fs) [[ $sub == rm || $sub == export ]] && kind=rootfs ;;
            pod) [[ $sub == rm ]] && kind=pod ;;
        esac
    fi
    if [[ -n $kind ]]; then
        local IFS=$'\n'
        COMPREPLY=($(compgen -W "$("${COMP_WORDS[0]}" __names "$kind" 2>/dev/null)" -- "$cur"))
        return 0
    fi
    _sdme "$@"
}
"#;

/// clap_complete's bash script with [`BASH_NAMES`], registered instead of
/// `_sdme`.
pub fn bash(clap_script: &str) -> String {
    let mut s = clap_script.replace("complete -F _sdme ", "complete -F _sdme_names ");
    // Defined before the `complete` lines that name it.
    let at = s.find("\nif [[ \"${BASH_VERSINFO").unwrap_or(s.len());
    s.insert_str(at, BASH_NAMES);
    s
}
