//! Messages about another unit, in the journal of that unit.
//!
//! `journalctl -u sdme-web.service` shows, besides the unit's own output,
//! entries that root sends with `OBJECT_SYSTEMD_UNIT=sdme-web.service`
//! (systemd's `add_matches_for_unit()`). The prepare step runs in its own
//! unit; this is how its failure reaches the container's journal, where an
//! administrator looks first. The native protocol is one datagram of
//! `KEY=VALUE` lines (systemd's "Native Journal Protocol"), so no library
//! is needed for it.

use std::os::unix::net::UnixDatagram;

const SOCKET: &str = "/run/systemd/journal/socket";

/// Send `message` (one line) at `priority` (syslog level) about `unit`.
/// Best effort: without a journal there is nobody to tell.
pub fn send_about_unit(unit: &str, identifier: &str, priority: u8, message: &str) {
    let line = |s: &str| s.replace('\n', " ");
    let datagram = format!(
        "PRIORITY={priority}\nSYSLOG_IDENTIFIER={}\nOBJECT_SYSTEMD_UNIT={}\nMESSAGE={}\n",
        line(identifier),
        line(unit),
        line(message)
    );
    if let Ok(sock) = UnixDatagram::unbound() {
        let _ = sock.send_to(datagram.as_bytes(), SOCKET);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_journal_it_is_silent() {
        // Must not panic or block when the socket does not exist.
        send_about_unit("x.service", "test", 3, "line\nbreak");
    }
}
