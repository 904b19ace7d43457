//! Is a file a disk image, and which format? Apart from the import so
//! that source detection can ask without depending on it.

use std::fs::File;
use std::os::unix::fs::FileExt;

use anyhow::{Context, Result};

use super::fs;
use super::table::{self, Table};

/// The two disk image formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Qcow2,
    Raw,
}

const QCOW2_MAGIC: &[u8; 4] = b"QFI\xfb";

/// Is `file` a disk image? QCOW2 by its magic; raw by a GPT or MBR
/// partition table or a Linux file system superblock at the start.
/// Compressed and tar formats must be ruled out first by the caller.
pub fn detect(file: &File) -> Result<Option<Format>> {
    let len = file.metadata().context("stat")?.len();
    let mut head = [0u8; 4];
    if len >= 4 && file.read_exact_at(&mut head, 0).is_ok() && &head == QCOW2_MAGIC {
        return Ok(Some(Format::Qcow2));
    }
    // A table that fails its checks is still a disk image: the import then
    // reports it as corrupt instead of "unknown source".
    match table::read(file, len) {
        Ok(Table::None) => {}
        Ok(_) | Err(_) => return Ok(Some(Format::Raw)),
    }
    Ok(fs::probe(file, 0, len).map(|_| Format::Raw))
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::io::Write;
    use table::types;

    pub fn file_of(img: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(img).unwrap();
        f
    }

    #[test]
    fn detect_formats() {
        assert_eq!(
            detect(&file_of(b"QFI\xfb\0\0\0\x03rest")).unwrap(),
            Some(Format::Qcow2)
        );
        let gpt = table::tests::gpt_image(4096, &[(types::ESP, 34, 2047, "esp")]);
        assert_eq!(detect(&file_of(&gpt)).unwrap(), Some(Format::Raw));
        // A tar header: nothing at 510 or 512, no superblock.
        let mut tar = vec![0u8; 4096];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(detect(&file_of(&tar)).unwrap(), None);
        assert_eq!(detect(&file_of(b"")).unwrap(), None);
    }
}
