//! `networkio`: the command-line front end of the networkio library.
//!
//! `main` parses the command line, sets up logging and dispatches to one module per
//! subcommand. Errors are printed as one `error: ...` line and exit with status 1, or 2 for a
//! usage error.

mod args;
mod bench;
mod demo;
mod keygen;
mod limits;
mod listen;
mod metrics;
mod output;
mod refusals;
mod security;
mod send;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// mimalloc: the receive path allocates one buffer per message on the connection's thread and
/// the application frees it on another; glibc's allocator turns that into page faults.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tracing_subscriber::EnvFilter;

/// Reliable, exactly-once, FIFO messaging between named peers over TCP.
///
/// Messages are strings. `listen` runs a node that prints what it receives; `send` delivers
/// messages to a listening node and exits once every one is acknowledged.
///
/// Connections run TLS 1.3; each node proves it holds its Ed25519 key. `keygen` makes a key
/// file for `--key`; `--trust` and `--known-peers` choose which keys may connect.
///
/// Diagnostics go to stderr; stdout carries only messages. Logging is controlled by RUST_LOG
/// (default `warn`; e.g. RUST_LOG=info shows connections, disconnections and lost sessions).
///
/// Exit status: 0 on success, 1 on error (printed as one line `error: ...` on stderr), 2 on a
/// usage error: an unknown or malformed option or value (an invalid --id, an address without
/// its port, a malformed duration), or options that contradict each other.
#[derive(Debug, Parser)]
#[command(name = "networkio", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Listen(listen::Args),
    Send(send::Args),
    Demo(demo::Args),
    Bench(bench::Args),
    Keygen(keygen::Args),
    /// Internal: the peers' process of `bench connections`.
    #[command(name = "bench-peers", hide = true)]
    BenchPeers(bench::peers::Args),
    /// Internal: the accepting side of one `bench connections` contender.
    #[command(name = "bench-serve", hide = true)]
    BenchServe(bench::conns::ServeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    raise_open_files_limit();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return report(anyhow::Error::new(e).context("could not start the runtime")),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Listen(args) => listen::run(args).await,
            Command::Send(args) => send::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Keygen(args) => keygen::run(args),
            Command::BenchPeers(args) => bench::peers::run(args).await,
            Command::BenchServe(args) => bench::conns::serve(args).await,
        }
    });
    // Do not wait for stray blocking tasks (e.g. tokio's stdin reader).
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(e),
    }
}

/// Prints `error: <message>` as a single line and returns exit status 1, or 2 for a
/// [`args::UsageError`].
fn report(error: anyhow::Error) -> ExitCode {
    let usage = error.downcast_ref::<args::UsageError>().is_some();
    // The chain of causes joined by `: `, skipping a cause its parent's message already quotes
    // (some library errors include their source in their own message).
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if message.ends_with(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    let message = message.replace(['\n', '\r'], " ");
    eprintln!("error: {message}");
    if usage {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

/// Raises the open-files soft limit to the hard limit, as Go's runtime does: a node holds one
/// file per connection, and the usual soft limit (1,024) is far below what it can serve.
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open-files soft limit"),
        Err(e) => tracing::debug!(error = %e, "could not raise the open-files limit"),
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `warn`).
fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
