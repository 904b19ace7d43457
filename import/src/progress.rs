//! Progress: a bar (bytes, rate, layer n/m) when stderr is a terminal,
//! plain lines when it is not (journal, pipes), nothing with `--quiet`.
//!
//! Several threads may count bytes at once; drawing is rate-limited so it
//! never shows up in a profile.

use std::io::{IsTerminal, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::budget::human;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bar,
    Lines,
    Quiet,
}

#[derive(Debug)]
struct Stage {
    label: String,
    layer: Option<(usize, usize)>,
    total: Option<u64>,
    started: Instant,
    last_draw: Instant,
    active: bool,
}

#[derive(Debug)]
pub struct Progress {
    mode: Mode,
    bytes: AtomicU64,
    stage: Mutex<Stage>,
}

const REDRAW: Duration = Duration::from_millis(100);

impl Progress {
    /// A bar on a terminal, lines otherwise, nothing when `quiet`.
    pub fn new(quiet: bool) -> Progress {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines
        };
        Progress::with_mode(mode)
    }

    /// Shows nothing (tests, nested uses).
    pub fn hidden() -> Progress {
        Progress::with_mode(Mode::Quiet)
    }

    fn with_mode(mode: Mode) -> Progress {
        let now = Instant::now();
        Progress {
            mode,
            bytes: AtomicU64::new(0),
            stage: Mutex::new(Stage {
                label: String::new(),
                layer: None,
                total: None,
                started: now,
                last_draw: now,
                active: false,
            }),
        }
    }

    pub fn is_quiet(&self) -> bool {
        self.mode == Mode::Quiet
    }

    /// Start counting a new stage: `label` (e.g. "unpacking x.tar.gz"), and
    /// the bytes expected if known.
    pub fn begin(&self, label: impl Into<String>, total: Option<u64>) {
        self.begin_layer(label, None, total);
    }

    /// As [`begin`](Self::begin), for layer `n` of `m` of an image.
    pub fn begin_layer(
        &self,
        label: impl Into<String>,
        layer: Option<(usize, usize)>,
        total: Option<u64>,
    ) {
        let Ok(mut s) = self.stage.lock() else { return };
        self.bytes.store(0, Ordering::Relaxed);
        s.label = label.into();
        s.layer = layer;
        s.total = total;
        s.started = Instant::now();
        s.last_draw = s.started;
        s.active = true;
        if self.mode == Mode::Bar {
            self.draw(&s);
        }
    }

    /// Count `n` bytes of the current stage.
    pub fn add(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        if self.mode != Mode::Bar {
            return;
        }
        if let Ok(mut s) = self.stage.try_lock() {
            let now = Instant::now();
            if now.duration_since(s.last_draw) >= REDRAW {
                s.last_draw = now;
                self.draw(&s);
            }
        }
    }

    /// End the current stage with a summary (a final bar or one line).
    pub fn done(&self) {
        let Ok(mut s) = self.stage.lock() else { return };
        if !s.active {
            return;
        }
        s.active = false;
        match self.mode {
            Mode::Quiet => {}
            Mode::Bar => {
                self.draw(&s);
                eprintln!();
            }
            Mode::Lines => eprintln!("{}", self.line(&s)),
        }
    }

    /// A message of its own line (not shown with --quiet).
    pub fn note(&self, msg: &str) {
        if self.mode == Mode::Quiet {
            return;
        }
        let active = self.stage.lock().map(|s| s.active).unwrap_or(false);
        if self.mode == Mode::Bar && active {
            eprint!("\r\x1b[K");
        }
        eprintln!("{msg}");
    }

    fn line(&self, s: &Stage) -> String {
        let bytes = self.bytes.load(Ordering::Relaxed);
        let secs = s.started.elapsed().as_secs_f64().max(0.001);
        let rate = human((bytes as f64 / secs) as u64);
        let layer = s
            .layer
            .map(|(n, m)| format!("layer {n}/{m} "))
            .unwrap_or_default();
        let amount = match s.total {
            Some(t) if t > 0 => {
                let pct = (bytes.min(t) as f64 * 100.0 / t as f64) as u32;
                format!("{}/{} {pct:3}%", human(bytes), human(t))
            }
            _ => human(bytes),
        };
        format!("{layer}{}: {amount} {rate}B/s {secs:.1}s", s.label)
    }

    fn draw(&self, s: &Stage) {
        let mut text = self.line(s);
        if let Some(t) = s.total.filter(|&t| t > 0) {
            let bytes = self.bytes.load(Ordering::Relaxed).min(t);
            const W: usize = 24;
            let fill = (bytes as f64 / t as f64 * W as f64) as usize;
            text = format!("[{}{}] {text}", "#".repeat(fill), " ".repeat(W - fill));
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{text}");
        let _ = err.flush();
    }
}

/// A reader that counts what passes through it.
pub struct Counted<'a, R> {
    inner: R,
    progress: &'a Progress,
}

impl<'a, R> Counted<'a, R> {
    pub fn new(inner: R, progress: &'a Progress) -> Self {
        Counted { inner, progress }
    }
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add(n as u64);
        Ok(n)
    }
}
