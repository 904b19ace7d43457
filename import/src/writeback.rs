//! Starting the write-out of finished files while later ones are still
//! being unpacked, so that the single `syncfs` at the end of an import has
//! little left to wait for (the idea of git's `core.fsyncMethod=batch`).
//!
//! Page-cache write-out would otherwise start only at that `syncfs` (the
//! kernel's own flusher waits 30 s, or for gigabytes of dirty pages), and
//! an import would first use the CPUs, then the disk, never both.
//! `sync_file_range(SYNC_FILE_RANGE_WRITE)` queues a file's pages without
//! waiting for them; it can still block while the device queue is full,
//! so it runs on a thread of its own and the unpacking thread never waits:
//! when that thread falls behind, files are simply left to the `syncfs`.
//! Small files are left to it too: one request per small file costs more
//! than it saves. Durability still comes from the `syncfs` alone.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;

use crate::sys;

/// Files smaller than this are left to the final `syncfs`.
pub const MIN_SIZE: u64 = 64 << 10;

/// Files waiting for the write-out thread; more are left to `syncfs`.
const QUEUE: usize = 1024;

/// A write-out thread. Dropping it waits for the thread (not for the disk).
pub struct Writeback {
    tx: Option<SyncSender<OwnedFd>>,
    thread: Option<JoinHandle<()>>,
}

impl Writeback {
    pub fn start() -> Writeback {
        let (tx, rx) = sync_channel::<OwnedFd>(QUEUE);
        let thread = std::thread::Builder::new()
            .name("writeback".into())
            .spawn(move || {
                for fd in rx {
                    // Errors surface at the final syncfs; this is only a head start.
                    let _ = sys::start_writeback(fd.as_raw_fd());
                }
            })
            .ok();
        Writeback {
            // Without a thread (cannot spawn), everything is left to syncfs.
            tx: thread.as_ref().map(|_| tx),
            thread,
        }
    }

    /// Hand over a file whose data is complete; `size` is its length.
    pub fn submit(&self, fd: OwnedFd, size: u64) {
        if size < MIN_SIZE {
            return;
        }
        if let Some(tx) = &self.tx {
            // A full queue drops (closes) the file: syncfs will write it.
            let _ = tx.try_send(fd);
        }
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};

    #[test]
    fn submitted_files_keep_their_content() {
        let dir = tempfile::tempdir().unwrap();
        let wb = Writeback::start();
        let data = vec![7u8; (MIN_SIZE as usize) * 2];
        for i in 0..4 {
            let mut f = std::fs::File::create(dir.path().join(format!("f{i}"))).unwrap();
            f.write_all(&data).unwrap();
            wb.submit(f.into(), data.len() as u64);
        }
        drop(wb); // joins the thread
        for i in 0..4 {
            let mut f = std::fs::File::open(dir.path().join(format!("f{i}"))).unwrap();
            f.rewind().unwrap();
            let mut got = Vec::new();
            f.read_to_end(&mut got).unwrap();
            assert_eq!(got, data);
        }
    }
}
