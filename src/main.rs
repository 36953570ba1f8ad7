//! The `nftpol` command: parses arguments and runs one subcommand. Everything it does is
//! in the library; this file only wires input, output and exit status.

mod change_cli;
mod cli_args;
mod cli_commands;
mod cli_output;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;

use cli_args::{Command, LogFormat};
use cli_commands::{BadInput, Exit};

#[derive(Parser)]
#[command(
    name = "nftpol",
    version,
    about = "Kubernetes NetworkPolicy compiled to nftables"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Compile(a) => cli_commands::compile(a),
        Command::Explain(a) => cli_commands::explain(a),
        Command::Diff(a) => change_cli::diff(a),
        Command::Replay(a) => change_cli::replay(a),
        #[cfg(feature = "controller")]
        Command::Run(a) => cli_commands::run_controller(a),
        Command::Synth(a) => cli_commands::synth(a),
        Command::Graph(a) => cli_commands::graph(a),
    }
}

/// Colour codes only on a terminal, and never when `NO_COLOR` is set to anything but the
/// empty string (<https://no-color.org>): logs piped to a file or CI stay plain text.
fn use_colour(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// The text log's fields, with the control characters of object strings escaped (see
/// `nftpol::text`): a record stays one line whatever a name holds. (The JSON log is one
/// line already: JSON escapes them.)
fn escaped_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let text = format!("{value:?}");
        let text = nftpol::text::Escaped(&text);
        match field.name() {
            "message" => write!(w, "{text}"),
            name => write!(w, "{name}={text}"),
        }
    })
    .delimited(" ")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(use_colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ))
        .with_env_filter(filter);
    match cli.log_format {
        LogFormat::Text => builder
            .without_time()
            .with_target(false)
            .fmt_fields(escaped_fields())
            .init(),
        LogFormat::Json => builder.json().init(),
    }
    let log_format = cli.log_format;
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // Nobody reads on: end quietly, as a process SIGPIPE ended (see cli_output).
        Err(e) if e.is::<Exit>() => ExitCode::from(e.downcast_ref::<Exit>().map_or(1, |x| x.0)),
        Err(e) if e.is::<cli_output::StdoutClosed>() => {
            ExitCode::from(cli_output::STDOUT_CLOSED_STATUS)
        }
        Err(e) => {
            let status = if e.is::<BadInput>() { 2 } else { 1 };
            match log_format {
                // A closed stderr cannot be told either; never panic for it.
                LogFormat::Text => {
                    let text = format!("{e:#}");
                    let text = nftpol::text::Escaped(&text);
                    let _ = writeln!(std::io::stderr(), "nftpol: error: {text}");
                }
                LogFormat::Json => tracing::error!(exit_status = status, "{e:#}"),
            }
            ExitCode::from(status)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::use_colour;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(
            use_colour(true, Some("".into())),
            "NO_COLOR empty counts as unset"
        );
        assert!(!use_colour(true, Some("1".into())));
        assert!(!use_colour(false, None));
        assert!(!use_colour(false, Some("1".into())));
    }
}
