//! Progress reporting on stderr: indicatif bars on a terminal, plain log lines otherwise,
//! nothing with `--quiet`. Stdout is never touched, so `--json` output stays machine-readable.
//!
//! `WIDEALIGN_PROGRESS=bars|log|quiet` overrides the terminal detection (`--quiet` wins).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Animated bars (stderr is a terminal).
    Bars,
    /// One plain line per coarse event (epochs, runs), for logs and batch schedulers.
    Log,
    /// Nothing.
    Quiet,
}

/// The progress sink of one command.
pub struct Progress {
    mode: Mode,
    multi: MultiProgress,
}

impl Progress {
    /// Chooses the mode from `--quiet`, `WIDEALIGN_PROGRESS` and whether stderr is a terminal.
    pub fn from_flags(quiet: bool) -> Self {
        let mode = if quiet {
            Mode::Quiet
        } else {
            match std::env::var("WIDEALIGN_PROGRESS").as_deref() {
                Ok("bars") => Mode::Bars,
                Ok("log") => Mode::Log,
                Ok("quiet") => Mode::Quiet,
                _ if std::io::stderr().is_terminal() => Mode::Bars,
                _ => Mode::Log,
            }
        };
        Progress::with_mode(mode)
    }

    /// A sink with a fixed mode.
    pub fn with_mode(mode: Mode) -> Self {
        let multi = MultiProgress::with_draw_target(if mode == Mode::Bars {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        Progress { mode, multi }
    }

    /// The mode in force.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// A log line on stderr (printed above the bars on a terminal).
    pub fn log(&self, msg: &str) {
        match self.mode {
            Mode::Bars => {
                if self.multi.println(msg).is_err() {
                    eprintln!("{msg}");
                }
            }
            Mode::Log => eprintln!("{msg}"),
            Mode::Quiet => {}
        }
    }

    /// A bar counting `total` units. In log mode, `log_updates` decides whether each update
    /// prints a line (true for coarse units like epochs and runs, false for steps).
    pub fn bar(&self, label: &str, total: u64, log_updates: bool) -> Bar {
        let inner = (self.mode == Mode::Bars).then(|| {
            let pb = self.multi.add(ProgressBar::new(total));
            let style = ProgressStyle::with_template(
                "{prefix:>12.bold} [{bar:28}] {pos}/{len} {msg}  {elapsed} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            pb.set_style(style);
            pb.set_prefix(label.to_string());
            pb.enable_steady_tick(Duration::from_millis(250));
            pb
        });
        Bar {
            inner,
            log: self.mode == Mode::Log && log_updates,
            label: label.to_string(),
            total,
            start: Instant::now(),
        }
    }
}

/// One progress bar (or its log-line equivalent).
pub struct Bar {
    inner: Option<ProgressBar>,
    log: bool,
    label: String,
    total: u64,
    start: Instant,
}

impl Bar {
    /// Whether this is a live terminal bar (as opposed to log lines or nothing).
    pub fn is_bar(&self) -> bool {
        self.inner.is_some()
    }

    /// Moves to `pos` of `total` with a short status message such as `loss 0.031`.
    pub fn update(&self, pos: u64, msg: &str) {
        if let Some(pb) = &self.inner {
            pb.set_position(pos);
            pb.set_message(msg.to_string());
        } else if self.log {
            let elapsed = self.start.elapsed().as_secs_f64();
            let eta = if pos > 0 && pos <= self.total {
                format!(
                    " eta {}",
                    fmt_secs(elapsed * (self.total - pos) as f64 / pos as f64)
                )
            } else {
                String::new()
            };
            eprintln!(
                "{} {pos}/{} {msg} ({}{eta})",
                self.label,
                self.total,
                fmt_secs(elapsed)
            );
        }
    }

    /// Changes the total (e.g. steps per epoch once known).
    pub fn set_total(&mut self, total: u64) {
        self.total = total;
        if let Some(pb) = &self.inner {
            pb.set_length(total);
        }
    }

    /// Restarts the clock and the position (a new epoch on the same bar).
    pub fn reset(&mut self) {
        self.start = Instant::now();
        if let Some(pb) = &self.inner {
            pb.reset();
        }
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        if let Some(pb) = &self.inner {
            pb.finish_and_clear();
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.finish();
    }
}

/// `12.3s`, `4m05s` or `1h02m`.
pub fn fmt_secs(s: f64) -> String {
    if !s.is_finite() {
        return "?".into();
    }
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s as u64) % 60)
    } else {
        format!("{}h{:02}m", (s / 3600.0) as u64, ((s as u64) / 60) % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_format() {
        assert_eq!(fmt_secs(3.04), "3.0s");
        assert_eq!(fmt_secs(125.0), "2m05s");
        assert_eq!(fmt_secs(3720.0), "1h02m");
        assert_eq!(fmt_secs(f64::NAN), "?");
    }

    #[test]
    fn quiet_bars_do_nothing() {
        let p = Progress::with_mode(Mode::Quiet);
        let b = p.bar("x", 3, true);
        b.update(1, "loss 1");
        assert!(b.inner.is_none());
        assert!(!b.log);
    }
}
