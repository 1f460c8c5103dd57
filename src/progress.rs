//! Progress on a terminal: a bar on stderr while reading (bytes of input, with the running
//! row count) and while backfilling (dates published). Only when asked for (`--no-progress`
//! turns it off) and stderr is a terminal, so logs never carry it.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar, or nothing when progress is not shown. Clones show the same bar.
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress(Option<ProgressBar>);

impl Progress {
    fn new(enabled: bool, len: u64, template: &str) -> Self {
        if !enabled || !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Progress(Some(bar))
    }

    /// Reading `total_bytes` of input.
    pub(crate) fn reading(enabled: bool, total_bytes: u64) -> Self {
        Self::new(
            enabled,
            total_bytes,
            "{spinner} reading [{bar:30}] {bytes}/{total_bytes} {msg} ({elapsed})",
        )
    }

    /// Publishing `dates` as_of dates.
    pub(crate) fn dates(enabled: bool, dates: u64) -> Self {
        Self::new(
            enabled,
            dates,
            "backfill [{bar:30}] {pos}/{len} dates, last {msg} ({elapsed})",
        )
    }

    /// Moves the bar on by `n` (bytes or dates).
    pub(crate) fn advance(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }

    /// Sets the text after the bar (built only when the bar is shown).
    pub(crate) fn message(&self, text: impl FnOnce() -> String) {
        if let Some(b) = &self.0 {
            b.set_message(text());
        }
    }

    /// Removes the bar from the terminal.
    pub(crate) fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}
