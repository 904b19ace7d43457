//! How names from archives and trees appear in messages.

/// An entry's name for messages: its first 200 bytes, escaped (a long
/// name is cut before it is copied).
pub fn show(b: &[u8]) -> String {
    const MAX: usize = 200;
    let cut = &b[..b.len().min(MAX)];
    let mut out: String = String::from_utf8_lossy(cut).escape_debug().collect();
    if b.len() > MAX {
        out.push_str("...");
    }
    out
}
