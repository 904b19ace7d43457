//! Reading on one thread, writing on another: a producer thread reads
//! (and decompresses) the source into large buffers passed through a
//! bounded queue, so decompression and file creation overlap on two CPUs.
//! Buffers go back to the producer to be reused.

use std::io::{self, Read};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};

use anyhow::{anyhow, Result};

use crate::cancel;

const CHUNK: usize = 1 << 20;
const DEPTH: usize = 8;

/// The consumer's end: a `Read` over the producer's buffers.
pub struct ChannelReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    free: Sender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            if self.eof {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(buf)) => {
                    let old = std::mem::replace(&mut self.cur, buf);
                    self.pos = 0;
                    let _ = self.free.send(old);
                }
                Ok(Err(e)) => {
                    self.eof = true;
                    return Err(e);
                }
                Err(_) => {
                    self.eof = true;
                    return Ok(0);
                }
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn produce<R: Read>(
    mut r: R,
    tx: SyncSender<io::Result<Vec<u8>>>,
    free: Receiver<Vec<u8>>,
) -> Result<()> {
    loop {
        if cancel::requested() {
            return Ok(()); // the consumer reports the interruption
        }
        let mut buf = free.try_recv().unwrap_or_default();
        buf.resize(CHUNK, 0);
        let mut n = 0;
        while n < CHUNK {
            match r.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    if cancel::requested() {
                        return Ok(());
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    let _ = tx.send(Err(e));
                    return Err(anyhow!(msg));
                }
            }
        }
        if n == 0 {
            return Ok(());
        }
        buf.truncate(n);
        if tx.send(Ok(buf)).is_err() {
            return Ok(()); // the consumer stopped (it has the reason)
        }
    }
}

/// Run `consume` on a reader of `source`, which is read on its own
/// thread. After `consume` succeeds, the rest of the source is read and
/// dropped, so that errors at its end (a bad gzip checksum, a truncated
/// stream) are not missed.
pub fn threaded<R, T, F>(source: R, consume: F) -> Result<T>
where
    R: Read + Send,
    F: FnOnce(&mut ChannelReader) -> Result<T>,
{
    std::thread::scope(|s| {
        let (tx, rx) = sync_channel(DEPTH);
        let (free_tx, free_rx) = channel();
        let producer = s.spawn(move || produce(source, tx, free_rx));
        let mut cr = ChannelReader {
            rx,
            free: free_tx,
            cur: Vec::new(),
            pos: 0,
            eof: false,
        };
        let out = consume(&mut cr).and_then(|v| {
            io::copy(&mut cr, &mut io::sink()).map_err(|e| anyhow!("{e}"))?;
            cancel::check()?;
            Ok(v)
        });
        drop(cr);
        let prod = producer
            .join()
            .unwrap_or_else(|_| Err(anyhow!("the reading thread panicked")));
        match (out, prod) {
            (Ok(v), Ok(())) => Ok(v),
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(e),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_everything_in_order() {
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
        let got = threaded(&data[..], |r| {
            let mut v = Vec::new();
            let mut small = [0u8; 700];
            loop {
                let n = r.read(&mut small)?;
                if n == 0 {
                    break;
                }
                v.extend_from_slice(&small[..n]);
            }
            Ok(v)
        })
        .unwrap();
        assert_eq!(got, data);
    }

    struct Failing(usize);
    impl Read for Failing {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "corrupt deflate stream",
                ));
            }
            let n = b.len().min(self.0);
            self.0 -= n;
            b[..n].fill(1);
            Ok(n)
        }
    }

    #[test]
    fn errors_reach_the_consumer_and_the_end_is_checked() {
        let e = threaded(Failing(3 << 20), |r| {
            let mut v = Vec::new();
            r.read_to_end(&mut v)?;
            Ok(())
        })
        .unwrap_err();
        assert!(e.to_string().contains("corrupt deflate"), "{e}");
        // The consumer stops early; the producer's late error still counts.
        let e = threaded(Failing(3 << 20), |r| {
            let mut b = [0u8; 10];
            r.read_exact(&mut b)?;
            Ok(())
        })
        .unwrap_err();
        assert!(e.to_string().contains("corrupt deflate"), "{e}");
    }
}
