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

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
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

/// The kind of name the last word of the command line `words` (the
/// program first, the word being completed last) takes, if it takes one.
/// The shells' scripts ask `sdme __names -- WORDS...` and fall back to
/// clap's completion when it answers with exit status 1 (no name here).
pub fn kind_at(words: &[String]) -> Option<Kind> {
    let (cur, before) = words.split_last()?;
    let before = before.get(1..).unwrap_or_default();
    let prev = before.last().map(String::as_str).unwrap_or_default();
    // Command, subcommand and how many positional words follow the command.
    let (mut cmd, mut sub, mut npos) = (None, None, 0);
    for w in before.iter().filter(|w| !w.starts_with('-')) {
        match (cmd, sub) {
            (None, _) => cmd = Some(w.as_str()),
            (Some(_), None) => {
                sub = Some(w.as_str());
                npos += 1;
            }
            _ => npos += 1,
        }
    }
    let cmd = cmd?;
    if matches!(cmd, "create" | "new") {
        return match prev {
            "-r" | "--rootfs" => Some(Kind::Rootfs),
            "--pod" => Some(Kind::Pod),
            _ => None,
        };
    }
    if cur.starts_with('-') {
        return None;
    }
    match (cmd, sub) {
        ("start" | "stop" | "restart" | "rm" | "enable" | "disable", _) => Some(Kind::Container),
        ("exec" | "logs" | "cat" | "set" | "join" | "edit" | "diff", _) if npos == 0 => {
            Some(Kind::Container)
        }
        ("fs", Some("rm")) => Some(Kind::Rootfs),
        ("fs", Some("export")) if npos == 1 => Some(Kind::Rootfs),
        ("pod", Some("rm")) => Some(Kind::Pod),
        _ => None,
    }
}

/// `sdme __names -- WORDS...`: the names the last word may take, or
/// exit status 1 when it takes none.
pub fn names_at(words: &[String]) -> Result<bool> {
    match kind_at(words) {
        Some(kind) => names(kind).map(|()| true),
        None => Ok(false),
    }
}

/// What the bash script adds to clap_complete's: a function that answers
/// with names where a command takes one and leaves the rest to `_sdme`.
const BASH_NAMES: &str = r#"
# Names (sdme __names -- WORDS...) where a command takes one.
_sdme_names() {
    local names
    if names=$("${COMP_WORDS[0]}" __names -- "${COMP_WORDS[@]:0:COMP_CWORD+1}" 2>/dev/null); then
        # Not for clap's function below, which splits on blanks.
        local IFS=$'\n'
        COMPREPLY=($(compgen -W "$names" -- "${COMP_WORDS[COMP_CWORD]}"))
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

/// What the zsh script adds: `_sdme` (the function zsh calls) answers with
/// names where a command takes one and leaves the rest to clap's function,
/// renamed `_sdme_clap`.
const ZSH_NAMES: &str = r#"
# Names (sdme __names -- WORDS...) where a command takes one.
_sdme() {
    local out
    local -a names
    if out=$(${words[1]} __names -- "${(@)words[1,CURRENT]}" 2>/dev/null); then
        names=(${(f)out})
        compadd -a names
        return
    fi
    _sdme_clap "$@"
}
"#;

/// clap_complete's zsh script with [`ZSH_NAMES`] in front of its `_sdme`.
pub fn zsh(clap_script: &str) -> String {
    let mut s = clap_script.replacen("\n_sdme() {", "\n_sdme_clap() {", 1);
    // Defined before the lines at the end that call or register `_sdme`.
    let at = s
        .find("\nif [ \"$funcstack[1]\" = \"_sdme\" ]")
        .unwrap_or(s.len());
    s.insert_str(at, ZSH_NAMES);
    s
}

/// What the fish script adds: names where a command takes one (an option's
/// value included), and no file names there.
const FISH_NAMES: &str = r#"
# Names (sdme __names -- WORDS...) where a command takes one.
function __sdme_names
    set -l words (commandline -opc) (commandline -ct)
    $words[1] __names -- $words 2>/dev/null
end
complete -c sdme -f -n '__sdme_names >/dev/null' -a '(__sdme_names)'
# An option's value is completed from that option's entries only.
complete -c sdme -n '__fish_sdme_using_subcommand create new' -s r -l rootfs -r -a '(__sdme_names)'
complete -c sdme -n '__fish_sdme_using_subcommand create new' -l pod -r -f -a '(__sdme_names)'
"#;

/// clap_complete's fish script with [`FISH_NAMES`] at its end (which uses
/// its `__fish_sdme_using_subcommand`).
pub fn fish(clap_script: &str) -> String {
    format!("{clap_script}{FISH_NAMES}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(line: &str) -> Option<&'static str> {
        let mut words: Vec<String> = line.split(' ').map(String::from).collect();
        if line.ends_with(' ') {
            words.pop();
            words.push(String::new());
        }
        kind_at(&words).map(|k| match k {
            Kind::Container => "container",
            Kind::Rootfs => "rootfs",
            Kind::Pod => "pod",
        })
    }

    #[test]
    fn names_where_a_command_takes_one() {
        assert_eq!(kind("sdme sto"), None);
        assert_eq!(kind("sdme stop "), Some("container"));
        assert_eq!(kind("sdme stop a b"), Some("container"));
        assert_eq!(kind("sdme stop --"), None);
        assert_eq!(kind("sdme stop --kill "), Some("container"));
        assert_eq!(kind("sdme exec c"), Some("container"));
        assert_eq!(kind("sdme exec a "), None);
        assert_eq!(kind("sdme create x --rootfs "), Some("rootfs"));
        assert_eq!(kind("sdme new -r d"), Some("rootfs"));
        assert_eq!(kind("sdme create x --pod "), Some("pod"));
        assert_eq!(kind("sdme create "), None);
        assert_eq!(kind("sdme fs rm "), Some("rootfs"));
        assert_eq!(kind("sdme fs rm a "), Some("rootfs"));
        assert_eq!(kind("sdme fs export "), Some("rootfs"));
        assert_eq!(kind("sdme fs export a "), None);
        assert_eq!(kind("sdme fs import "), None);
        assert_eq!(kind("sdme pod rm p "), Some("pod"));
        assert_eq!(kind("sdme pod new "), None);
        assert_eq!(kind("sdme"), None);
        assert_eq!(kind_at(&[]), None);
    }

    #[test]
    fn scripts_hand_names_to_the_shell() {
        let b = bash("_sdme() {\n}\n\nif [[ \"${BASH_VERSINFO[0]}\" -eq 4 ]]; then\n    complete -F _sdme -o x sdme\nfi\n");
        let def = b.find("_sdme_names() {").expect("no _sdme_names");
        let reg = b.find("complete -F _sdme_names").expect("not registered");
        assert!(def < reg && !b.contains("complete -F _sdme "));
        let z = zsh("#compdef sdme\n\n_sdme() {\n}\n\nif [ \"$funcstack[1]\" = \"_sdme\" ]; then\n    _sdme \"$@\"\nfi\n");
        let clap = z.find("_sdme_clap() {").expect("clap's not renamed");
        let ours = z.find("\n_sdme() {").expect("no _sdme");
        assert!(clap < ours && ours < z.find("if [ \"$funcstack").unwrap());
        assert!(fish("complete -c sdme\n")
            .contains("-n '__sdme_names >/dev/null' -a '(__sdme_names)'\n"));
    }
}
