//! # `widealign`: the command line
//!
//! The tool researchers run: `train` one network with one learning rule, `sweep` a grid of runs
//! into a resumable, shardable JSON-lines file, `reproduce` the reference experiments into a
//! report with plots, compute infinite-width kernels (`ntk`), compare the layerwise weight
//! dynamics with finite networks (`dynamics`), measure alignment (`align`), inspect datasets
//! (`data`) and measure speed (`bench`). The flags named in docs/theory.md §7 are
//! contracts.
//!
//! The experiments themselves (plans, sweeps, alignment and dynamics runs, run records) are the
//! `widealign-experiments` library; this crate is argument grammar, progress display, plots and
//! report rendering.
//!
//! Exit status: 0 success (a diverged run is a result), 2 bad usage or bad input (one stderr
//! line naming the flag, file or line), 1 other failures, 75 stopped by a signal after saving a
//! checkpoint (continue with `--resume`), 130 interrupted without a checkpoint.

mod bench;
mod cli;
mod commands;
mod config;
mod data_cmd;
mod error;
mod experiment_cmd;
mod fsutil;
mod plots;
mod predict_cmd;
mod progress;
mod report;
mod reproduce;
mod theory_cmd;

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};

use crate::cli::{BenchCommand, Cli, Command};
use crate::error::CliError;
use crate::progress::Progress;

/// Set by the first Ctrl-C: long commands finish or drop their current unit of work and stop.
pub static STOP: AtomicBool = AtomicBool::new(false);
static CTRL_C_PRESSES: AtomicUsize = AtomicUsize::new(0);

fn main() -> ExitCode {
    install_panic_hook();
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (cli, m)));
    let (cli, matches) = match parsed {
        Ok(v) => v,
        Err(e) => return clap_exit(e),
    };
    let progress = Progress::from_flags(cli.quiet);
    let given: Vec<String> = matches
        .subcommand()
        .map(|(_, sub)| {
            sub.ids()
                .filter(|id| sub.value_source(id.as_str()) == Some(ValueSource::CommandLine))
                .map(|id| id.to_string())
                .collect()
        })
        .unwrap_or_default();
    match dispatch(cli.command, &progress, &given) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("widealign: {}", e.one_line());
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// Runs `command`; `given` names the flags typed on the command line (not defaulted).
fn dispatch(command: Command, progress: &Progress, given: &[String]) -> Result<(), CliError> {
    match command {
        Command::Train(a) => {
            install_ctrl_c(progress);
            commands::train(&a, progress, given)
        }
        Command::Sweep(a) => {
            install_ctrl_c(progress);
            commands::sweep(&a, progress)
        }
        Command::Ntk(a) => theory_cmd::ntk(&a, progress),
        Command::Predict(a) => predict_cmd::predict(&a, progress),
        Command::Dynamics(a) => experiment_cmd::dynamics_cmd(&a),
        Command::Align(a) => {
            install_ctrl_c(progress);
            experiment_cmd::align_cmd(&a, progress, given)
        }
        Command::Reproduce(a) => {
            install_ctrl_c(progress);
            reproduce::run(&a, progress)
        }
        Command::Data(c) => data_cmd::run(&c, progress),
        Command::Bench(BenchCommand::Gemm(a)) => bench::gemm(&a),
        Command::Bench(BenchCommand::Ntk(a)) => theory_cmd::bench_ntk(&a),
        Command::Bench(BenchCommand::Step(a)) => bench::step(&a),
        Command::Bench(BenchCommand::Checkpoint(a)) => bench::checkpoint(&a),
    }
}

/// Prints `s` and a newline on stdout. A closed pipe (`| head`) ends the program quietly.
pub fn emit(s: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{s}").and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(CliError::Failure(format!("writing to stdout: {e}"))),
    }
}

/// The first SIGINT (Ctrl-C), SIGTERM (what Slurm sends before preemption or at the time
/// limit) or SIGHUP sets [`STOP`], so the current unit of work finishes or is dropped cleanly
/// — a run with a checkpoint saves it at the next step boundary and the command exits 75.
/// A second signal exits at once with status 130 — but never in the middle of a results line.
fn install_ctrl_c(progress: &Progress) {
    let quiet = progress.mode() == progress::Mode::Quiet;
    let _ = ctrlc::set_handler(move || {
        let n = CTRL_C_PRESSES.fetch_add(1, Ordering::SeqCst);
        STOP.store(true, Ordering::SeqCst);
        if n == 0 {
            if !quiet {
                eprintln!(
                    "widealign: stopping after the current step (a run with a checkpoint saves it; results so far are kept; signal again to quit now)"
                );
            }
        } else {
            let _guard = widealign_experiments::results::WRITE_LOCK.lock();
            eprintln!("widealign: interrupted");
            std::process::exit(130);
        }
    });
}

/// The last line of defence: a bug must not print a backtrace at a user. One line, exit 1.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let loc = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "widealign: internal error: {}{loc} (a bug; please report it with the command line)",
            msg.replace('\n', "; ")
        );
        std::process::exit(1);
    }));
}

/// Help and version go to stdout with status 0; every usage error becomes one stderr line
/// naming the flag, with status 2.
fn clap_exit(e: clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(2)
        }
        _ => {
            eprintln!("widealign: {}", clap_one_line(&e));
            ExitCode::from(2)
        }
    }
}

fn clap_one_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let first = rendered
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid usage")
        .trim()
        .trim_start_matches("error: ")
        .to_string();
    let mut msg = first.trim_end_matches(':').to_string();
    let strings = |kind: ContextKind| -> Vec<String> {
        match e.get(kind) {
            Some(ContextValue::String(s)) => vec![s.clone()],
            Some(ContextValue::Strings(v)) => v.clone(),
            _ => Vec::new(),
        }
    };
    if e.kind() == ErrorKind::MissingRequiredArgument {
        msg.push_str(": ");
        msg.push_str(&strings(ContextKind::InvalidArg).join(", "));
    }
    let valid = strings(ContextKind::ValidValue);
    if !valid.is_empty() && !msg.contains("possible values") {
        msg.push_str(&format!(" (possible values: {})", valid.join(", ")));
    }
    let suggested = strings(ContextKind::SuggestedArg);
    if !suggested.is_empty() {
        msg.push_str(&format!(" (did you mean {}?)", suggested.join(" or ")));
    }
    let sub = strings(ContextKind::SuggestedSubcommand);
    if !sub.is_empty() {
        msg.push_str(&format!(" (did you mean `{}`?)", sub.join("` or `")));
    }
    format!("{msg}; see --help")
}
