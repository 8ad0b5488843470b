//! The live status line on stderr: connected or not, generation, rate.
//!
//! Shown only when both stdout and stderr are terminals, so it never mixes
//! into piped output or a redirected log.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use pgnotify_tokio::Stats;

/// Erase the current terminal line and return to its start.
const CLEAR_LINE: &str = "\r\x1b[2K";

/// A status line redrawn in place; does nothing when disabled.
#[derive(Debug)]
pub(crate) struct StatusLine {
    enabled: bool,
    shown: bool,
    last_count: u64,
    last_at: Instant,
    rate: f64,
}

impl StatusLine {
    /// Enabled when stdout and stderr are both terminals.
    pub(crate) fn for_terminal() -> Self {
        let enabled = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        Self {
            enabled,
            shown: false,
            last_count: 0,
            last_at: Instant::now(),
            rate: 0.0,
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Removes the line, before other output is written to the terminal.
    pub(crate) fn clear(&mut self) {
        if self.shown {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(CLEAR_LINE.as_bytes());
            let _ = err.flush();
            self.shown = false;
        }
    }

    /// Updates the rate from the counters and redraws the line.
    pub(crate) fn update(&mut self, stats: &Stats) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let elapsed = now.duration_since(self.last_at).as_secs_f64();
        if elapsed >= 0.5 {
            let count = stats.notifications_received;
            self.rate = count.saturating_sub(self.last_count) as f64 / elapsed;
            self.last_count = count;
            self.last_at = now;
        }
        self.draw(stats);
    }

    /// Redraws the line with the latest rate.
    pub(crate) fn draw(&mut self, stats: &Stats) {
        if !self.enabled {
            return;
        }
        let line = render(stats, self.rate);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{CLEAR_LINE}{line}");
        let _ = err.flush();
        self.shown = true;
    }
}

impl Drop for StatusLine {
    fn drop(&mut self) {
        self.clear();
    }
}

fn render(stats: &Stats, rate: f64) -> String {
    let state = if stats.connected {
        "connected"
    } else {
        "reconnecting"
    };
    let mut line = format!(
        "{state} · generation {} · {rate:.0}/s · {} received",
        stats.generation, stats.notifications_received
    );
    let dropped = stats.dropped_oldest + stats.dropped_newest + stats.replaced_latest;
    if dropped > 0 {
        line.push_str(&format!(" · {dropped} dropped"));
    }
    if stats.reading_paused {
        line.push_str(" · paused (backpressure)");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_state_generation_rate_and_drops() {
        let mut stats = Stats::default();
        stats.connected = true;
        stats.generation = 2;
        stats.notifications_received = 10;
        stats.dropped_oldest = 3;
        assert_eq!(
            render(&stats, 4.0),
            "connected · generation 2 · 4/s · 10 received · 3 dropped"
        );
    }
}
