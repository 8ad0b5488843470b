//! The `pgnotify` command: LISTEN and NOTIFY from the shell through one
//! pgnotify listener, and a guided demo.
//!
//! ```text
//! pgnotify demo                      # the tour, on a throwaway local server
//! pgnotify listen jobs events        # one JSON line per event
//! pgnotify notify jobs 42            # or one NOTIFY per line of stdin
//! pgnotify install                   # durable channels: then notify/listen --durable
//! pgnotify completions zsh           # a completion script; `pgnotify man`: the manual page
//! ```
//!
//! Failures print one line on stderr, `pgnotify: <what went wrong>`, and exit
//! with 2 for bad arguments or 1 for anything else; only a demo whose
//! throwaway server fails to start adds the whole cause (initdb's output, the
//! server's log) on indented lines below.

mod args;
mod connection;
mod demo;
mod durable;
mod error;
mod listen;
mod notify;
mod output;
mod schema;
mod shutdown;
mod status;
mod verbose;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

use crate::args::{Cli, Command};
use crate::error::{CliError, EXIT_FAILURE};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_error(&e),
    };
    match cli.command {
        Command::Completions { shell } => return print_completions(shell),
        Command::Man => return print_man(),
        _ => {}
    }
    verbose::install(cli.connection.verbose);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("pgnotify: could not start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgnotify: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let target = connection::resolve(cli.connection.url.as_deref())?;
    let timeout = cli.connection.connect_timeout;
    match cli.command {
        Command::Listen(args) => listen::run(args, target, timeout).await,
        Command::Notify(args) => notify::run(args, target, timeout).await,
        Command::Install(args) => durable::install(args, target, timeout).await,
        Command::Prune(args) => durable::prune(args, target, timeout).await,
        Command::Demo => demo::run(target, timeout).await,
        // Handled in main, before any runtime or connection.
        Command::Completions { .. } | Command::Man => Ok(()),
    }
}

/// `pgnotify completions SHELL`: the script on stdout.
fn print_completions(shell: clap_complete::Shell) -> ExitCode {
    let mut command = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "pgnotify", &mut out);
    write_stdout(&out, "write the completion script")
}

/// `pgnotify man`: the manual page, roff, on stdout.
fn print_man() -> ExitCode {
    let mut out = Vec::new();
    if let Err(e) = clap_mangen::Man::new(Cli::command()).render(&mut out) {
        eprintln!("pgnotify: could not render the manual page: {e}");
        return ExitCode::from(EXIT_FAILURE);
    }
    write_stdout(&out, "write the manual page")
}

/// Writes `bytes` to stdout; one line on stderr if that fails.
fn write_stdout(bytes: &[u8], action: &str) -> ExitCode {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgnotify: could not {action}: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Prints help and version as clap does; turns every other argument error
/// into one line with the usage that applies.
fn clap_error(e: &clap::Error) -> ExitCode {
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(EXIT_FAILURE));
    }
    eprintln!("pgnotify: {}", one_line(&e.render().to_string()));
    ExitCode::from(error::EXIT_USAGE)
}

/// Folds clap's multi-line error report into one line: the message, its
/// tips, and the usage.
fn one_line(report: &str) -> String {
    let mut message = Vec::new();
    let mut tips = Vec::new();
    let mut usage = None;
    let mut in_message = true;
    for line in report.lines() {
        let trimmed = line.trim();
        if let Some(tip) = trimmed.strip_prefix("tip:") {
            tips.push(tip.trim().to_owned());
        } else if let Some(text) = trimmed.strip_prefix("Usage:") {
            usage = Some(text.trim().to_owned());
        } else if trimmed.is_empty() {
            in_message = false;
        } else if in_message {
            message.push(trimmed.strip_prefix("error:").unwrap_or(trimmed).trim());
        }
    }
    let mut line = message.join(" ");
    for tip in tips {
        line.push_str(&format!(" ({tip})"));
    }
    if let Some(usage) = usage {
        line.push_str(&format!("; usage: {usage}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_reports_fold_into_one_line_with_tip_and_usage() {
        let report = "error: unexpected argument '--fromat' found\n\n  \
                      tip: a similar argument exists: '--format'\n\n\
                      Usage: pgnotify listen --format <FORMAT> <CHANNEL>...\n\n\
                      For more information, try '--help'.\n";
        assert_eq!(
            one_line(report),
            "unexpected argument '--fromat' found (a similar argument exists: '--format'); \
             usage: pgnotify listen --format <FORMAT> <CHANNEL>..."
        );
    }

    #[test]
    fn clap_lists_of_missing_arguments_join_the_message() {
        let report = "error: the following required arguments were not provided:\n  \
                      <CHANNEL>...\n\nUsage: pgnotify listen <CHANNEL>...\n";
        assert_eq!(
            one_line(report),
            "the following required arguments were not provided: <CHANNEL>...; \
             usage: pgnotify listen <CHANNEL>..."
        );
    }
}
