//! Progress on a terminal (indicatif bars), periodic log lines otherwise.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a non-terminal run logs its progress.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// A bar of `len` rows on a terminal; hidden otherwise.
pub fn progress_bar(len: u64, message: &'static str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len).with_message(message);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>12} [{bar:40}] {human_pos}/{human_len} rows ({per_sec}, {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

/// Shows a row counter that a worker increments: a bar with rows/s (a spinner when `total` is
/// unknown) on a terminal, an `info` log line every few seconds otherwise.
pub struct RowProgress {
    counter: Arc<AtomicU64>,
    ticker: tokio::task::JoinHandle<()>,
    bar: ProgressBar,
}

impl RowProgress {
    pub fn start(label: String, total: Option<u64>) -> Self {
        let counter = Arc::new(AtomicU64::new(0));
        let terminal = std::io::stderr().is_terminal();
        let bar = match (terminal, total) {
            (false, _) => ProgressBar::hidden(),
            (true, Some(total)) => progress_bar(total, ""),
            (true, None) => {
                let bar = ProgressBar::new_spinner();
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} {msg:>12} {human_pos} rows ({per_sec}, {elapsed})",
                    )
                    .expect("valid template"),
                );
                bar
            }
        };
        bar.set_message(label.clone());
        let ticker = {
            let counter = Arc::clone(&counter);
            let bar = bar.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let mut last_log = Instant::now();
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let rows = counter.load(Ordering::Relaxed);
                    bar.set_position(rows);
                    if !terminal && last_log.elapsed() >= LOG_EVERY {
                        last_log = Instant::now();
                        let secs = started.elapsed().as_secs_f64().max(1e-3);
                        tracing::info!(
                            target: "progress",
                            what = %label,
                            rows,
                            rows_per_sec = (rows as f64 / secs) as u64,
                            "progress"
                        );
                    }
                }
            })
        };
        Self {
            counter,
            ticker,
            bar,
        }
    }

    /// The counter the worker increments.
    pub fn counter(&self) -> &Arc<AtomicU64> {
        &self.counter
    }

    pub fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}
