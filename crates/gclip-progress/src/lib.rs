//! The progress bars of gclip: one helper, so that the trainer, evaluation, the experiment
//! runner and the CLI all look alike and are all silenced the same way.
//!
//! Bars draw on stderr and indicatif hides them when stderr is not a terminal, so piping or
//! capturing output never fills logs with bar redraws.

pub use indicatif::ProgressBar;
use indicatif::ProgressStyle;

/// The default layout: message, bar, counts, elapsed / remaining time and rate.
pub const DEFAULT_TEMPLATE: &str =
    "{msg} {bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}, {per_sec}]";

/// Whether long work shows a bar.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Progress {
    /// A bar on stderr (drawn only when stderr is a terminal).
    #[default]
    Bar,
    /// Nothing drawn.
    Silent,
}

impl Progress {
    /// `Silent` when `quiet`, else `Bar`.
    pub fn from_quiet(quiet: bool) -> Self {
        if quiet {
            Progress::Silent
        } else {
            Progress::Bar
        }
    }

    /// A bar for `len` items labelled `msg` in the default layout (hidden when silent).
    pub fn bar(self, len: u64, msg: impl Into<String>) -> ProgressBar {
        self.bar_with(len, DEFAULT_TEMPLATE, msg)
    }

    /// A bar in a caller's indicatif `template`; an invalid template falls back to the
    /// default layout rather than failing the work it reports on.
    pub fn bar_with(self, len: u64, template: &str, msg: impl Into<String>) -> ProgressBar {
        if self == Progress::Silent {
            return ProgressBar::hidden();
        }
        let style = ProgressStyle::with_template(template)
            .or_else(|_| ProgressStyle::with_template(DEFAULT_TEMPLATE))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let pb = ProgressBar::new(len).with_style(style);
        pb.set_message(msg.into());
        pb
    }
}

/// A bar for `len` items labelled `msg` in the default layout.
pub fn bar(len: u64, msg: impl Into<String>) -> ProgressBar {
    Progress::Bar.bar(len, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_bars_are_hidden_and_bad_templates_fall_back() {
        assert!(Progress::Silent.bar(10, "x").is_hidden());
        let pb = Progress::Bar.bar_with(7, "{not a key", "work");
        assert_eq!(pb.length(), Some(7));
        assert_eq!(pb.message(), "work");
        assert_eq!(Progress::from_quiet(true), Progress::Silent);
    }
}
