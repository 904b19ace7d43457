//! Reading a found file with its drop-ins: the merged [`UnitFile`] every
//! file kind is validated from, and its errors named by file and line.

use std::path::Path;

use crate::diag::Diag;
use crate::search::{read_bounded, Found};
use crate::syntax::UnitFile;

/// Parse a found file and merge its drop-ins.
pub(crate) fn parse_with_dropins(found: &Found) -> Result<UnitFile, Vec<Diag>> {
    let via = (found.content != found.path).then_some(found.path.as_path());
    let mut file = UnitFile::parse(&found.content, &found.data)
        .map_err(|e| vec![Diag::at(&e.at, e.message).via(via)])?;
    for d in &found.dropins {
        file.merge(read_and_parse(d).map_err(|d| vec![d])?);
    }
    Ok(file)
}

/// Read (bounded) and parse one file: a drop-in, or a configuration file.
pub(crate) fn read_and_parse(path: &Path) -> Result<UnitFile, Diag> {
    let data = read_bounded(path).map_err(|e| Diag::file(path, e))?;
    UnitFile::parse(path, &data).map_err(|e| Diag::at(&e.at, e.message))
}

/// Name the instance in the errors of lines read from its template (an
/// instance that is a symlink to the template file).
pub(crate) fn for_instance<T>(found: &Found, r: Result<T, Vec<Diag>>) -> Result<T, Vec<Diag>> {
    let via = (found.content != found.path).then_some(found.path.as_path());
    r.map_err(|diags| {
        diags
            .into_iter()
            .map(|d| {
                if d.path == found.content {
                    d.via(via)
                } else {
                    d
                }
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::{FileType, UnitName};

    #[test]
    fn dropins_are_merged_and_their_errors_name_them() {
        let t = tempfile::tempdir().unwrap();
        let main = t.path().join("t.container");
        let drop = t.path().join("t.container.d/10.conf");
        std::fs::create_dir_all(drop.parent().unwrap()).unwrap();
        std::fs::write(&drop, "[Unit]\nAfter=b.service\n").unwrap();
        let found = Found {
            kind: FileType::Container,
            name: UnitName::from_stem("t"),
            path: main.clone(),
            content: main.clone(),
            data: b"[Unit]\nAfter=a.service\n".to_vec(),
            dropins: vec![drop.clone()],
        };
        let file = parse_with_dropins(&found).unwrap();
        let after: Vec<&str> = file.sections[0]
            .entries
            .iter()
            .map(|e| e.value.as_str())
            .collect();
        assert_eq!(after, ["a.service", "b.service"]);
        std::fs::write(&drop, "Key=before any section\n").unwrap();
        let e = parse_with_dropins(&found).unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].path.as_path(), e[0].line), (drop.as_path(), Some(1)));
        std::fs::remove_file(&drop).unwrap();
        let e = parse_with_dropins(&found).unwrap_err();
        assert_eq!((e[0].path.as_path(), e[0].line), (drop.as_path(), None));
    }
}
