//! [`Diag`]: one problem in one file, the form every check of sdme's files
//! reports in (`PATH:LINE: message`).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::syntax::Location;

/// One problem in one file, with the line when there is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diag {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl Diag {
    pub(crate) fn at(loc: &Location, message: impl Into<String>) -> Diag {
        Diag {
            path: loc.path.to_path_buf(),
            line: Some(loc.line),
            message: message.into(),
        }
    }
    /// Name the instance a template line was read for.
    pub(crate) fn via(mut self, instance: Option<&Path>) -> Diag {
        if let Some(i) = instance {
            self.message = format!("{} (for instance {})", self.message, i.display());
        }
        self
    }
    pub(crate) fn file(path: &Path, message: impl Into<String>) -> Diag {
        Diag {
            path: path.to_path_buf(),
            line: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.path.display(), l, self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}
