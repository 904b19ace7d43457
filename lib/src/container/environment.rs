//! `Environment=` and `ServiceEnvironment=`: `NAME=VALUE` words for the
//! container's init and for every service of the guest.

use crate::escape::{is_env_name, split_words};
use crate::sections::Shared;
use crate::service_env::check_service_env;
use crate::syntax::Entry;

#[derive(Default)]
pub(super) struct Environment {
    pub(super) environment: Vec<String>,
    /// `ServiceEnvironment=`: the guest manager's `DefaultEnvironment=`.
    pub(super) service_environment: Vec<String>,
}

impl Environment {
    /// This concern's `[Container]` keys; false for any other key.
    pub(super) fn key(&mut self, f: &mut Shared, e: &Entry) -> bool {
        match e.key.as_str() {
            "Environment" => assignments(f, e, &mut self.environment, check_env_word),
            "ServiceEnvironment" => {
                assignments(f, e, &mut self.service_environment, check_service_env)
            }
            _ => return false,
        }
        true
    }
}

/// Add the words of `e` to `list`, each checked by `check`; an empty
/// value resets the list (also `Environment=` of `.build` files).
pub(crate) fn assignments(
    f: &mut Shared,
    e: &Entry,
    list: &mut Vec<String>,
    check: fn(&str) -> Result<(), String>,
) {
    if e.value.is_empty() {
        list.clear();
        return;
    }
    let Some(words) = f.check(e, split_words(&e.value)) else {
        return;
    };
    for w in words {
        match check(&w) {
            Ok(()) => list.push(w),
            Err(m) => f.err(e, format!("{}=: {m}", e.key)),
        }
    }
}

/// One `Environment=` word: `NAME=VALUE` with a valid variable name.
pub(crate) fn check_env_word(w: &str) -> Result<(), String> {
    match w.split_once('=') {
        Some((k, _)) if is_env_name(k) => Ok(()),
        _ => Err(format!(
            "'{}' is not a NAME=VALUE assignment with a valid variable name",
            w.escape_default()
        )),
    }
}
