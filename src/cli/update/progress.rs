//! What `bmsfw update` shows while it runs: a progress bar through the six states on a
//! terminal, plain lines (each state, every tenth of a percent-counted state) when
//! standard output is a pipe or a file.

use bmsfw_core::job::{JobRecord, JobState};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// The states an update goes through, in order.
const STEPS: [JobState; 6] = [
    JobState::Uploading,
    JobState::Transferring,
    JobState::Installing,
    JobState::Restarting,
    JobState::Verifying,
    JobState::Completed,
];

fn step(state: JobState) -> Option<usize> {
    STEPS.iter().position(|s| *s == state).map(|i| i + 1)
}

/// Whether the state counts in percent.
fn counted(state: JobState) -> bool {
    matches!(state, JobState::Uploading | JobState::Transferring)
}

/// The display of one update.
pub struct Progress {
    bar: Option<ProgressBar>,
    state: Option<JobState>,
    /// Tenths of the current state already printed (plain lines).
    tenths: u8,
}

impl Progress {
    /// A bar when standard output is a terminal, else plain lines.
    pub fn new() -> Progress {
        let bar = std::io::stdout().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(100), ProgressDrawTarget::stdout());
            bar.set_style(counted_style());
            bar
        });
        Progress {
            bar,
            state: None,
            tenths: 0,
        }
    }

    /// Prints a line above the bar (or as is, without one).
    pub fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) if self.state.is_some() && !bar.is_finished() => {
                bar.suspend(|| outln!("{text}"));
            }
            _ => outln!("{text}"),
        }
    }

    /// Shows `record`: a new state, new progress.
    pub fn show(&mut self, record: &JobRecord) {
        let state = record.state();
        let percent = record.percent().get();
        if self.state != Some(state) {
            self.state = Some(state);
            self.tenths = 0;
            if state == JobState::Failed {
                self.finish();
                return;
            }
            let n = step(state).unwrap_or(STEPS.len());
            let heading = format!("[{n}/{}] {}", STEPS.len(), state.label());
            match &self.bar {
                Some(bar) => {
                    bar.println(&heading);
                    if state.is_terminal() {
                        bar.finish_and_clear();
                        return;
                    }
                    bar.set_prefix(format!("[{n}/{}]", STEPS.len()));
                    bar.set_message(state.label());
                    if counted(state) {
                        bar.disable_steady_tick();
                        bar.set_style(counted_style());
                    } else {
                        bar.set_style(waiting_style());
                        bar.enable_steady_tick(Duration::from_millis(120));
                    }
                    bar.reset_elapsed();
                }
                None => outln!("{heading}"),
            }
        }
        if counted(state) {
            match &self.bar {
                Some(bar) => bar.set_position(u64::from(percent)),
                None => {
                    let tenths = percent / 10;
                    if tenths > self.tenths && percent < 100 {
                        self.tenths = tenths;
                        outln!("      {} {percent}%", state.label());
                    }
                }
            }
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn counted_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} [{bar:30.cyan/blue}] {pos:>3}% {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn waiting_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} {spinner} {msg} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}
