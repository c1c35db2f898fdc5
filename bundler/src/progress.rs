//! A small progress bar on stderr for the bundle commands: shown on a terminal only, so
//! scripts and CI logs stay quiet, and hand-rolled to keep the dependency tree small.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// A one-line progress bar redrawn in place, at most ten times a second.
pub struct ProgressBar {
    label: String,
    total: u64,
    enabled: bool,
    start: Instant,
    last_draw: Option<Instant>,
}

impl ProgressBar {
    /// A bar for `total` bytes. `force`: `Some(true)` for `--progress`, `Some(false)` for
    /// `--no-progress`, `None` to show it only when stderr is a terminal.
    pub fn new(label: &str, total: u64, force: Option<bool>) -> Self {
        ProgressBar {
            label: label.to_string(),
            total,
            enabled: force.unwrap_or_else(|| std::io::stderr().is_terminal()),
            start: Instant::now(),
            last_draw: None,
        }
    }

    /// Records that `done` bytes of `total` are through.
    pub fn update(&mut self, done: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self
            .last_draw
            .is_some_and(|t| now.duration_since(t) < Duration::from_millis(100))
            && done < self.total
        {
            return;
        }
        self.last_draw = Some(now);
        let frac = if self.total == 0 {
            1.0
        } else {
            (done as f64 / self.total as f64).min(1.0)
        };
        let width = 30;
        let filled = (frac * width as f64) as usize;
        let secs = now.duration_since(self.start).as_secs_f64().max(1e-3);
        let mib = |b: u64| b as f64 / 1048576.0;
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r{} {:3.0}% |{}{}| {:.1}/{:.1} MiB {:.1} MiB/s ",
            self.label,
            frac * 100.0,
            "#".repeat(filled),
            " ".repeat(width - filled),
            mib(done),
            mib(self.total),
            mib(done) / secs
        );
        let _ = err.flush();
    }

    /// Ends the line, so what follows starts on its own.
    pub fn finish(&mut self) {
        if self.enabled && self.last_draw.is_some() {
            let _ = writeln!(std::io::stderr());
        }
        self.enabled = false;
    }
}
