//! `networkio listen`: run a node, print every message it receives, optionally echo them.

use std::collections::HashMap;

use anyhow::Context;
use networkio::{Event, Node, Peer};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::limits::LimitArgs;
use crate::output::{self, Printer};
use crate::security::{OPEN_WARNING, PLAINTEXT_WARNING, SecurityArgs};

/// Run a node that accepts peers and prints every message it receives.
#[derive(Debug, clap::Args)]
#[command(long_about = "\
Run a node named ID that listens on ADDR and prints every message it receives.

Once bound, prints `listening on ADDR as ID` on stderr, where ADDR is the actual address \
(with the port the OS picked for port 0), with --metrics then `metrics on http://ADDR/metrics`, \
then `public key: ed25519:...` (the key peers put \
in their --trust file; not with --insecure-plaintext). Without --trust or --known-peers it \
also prints a warning: any key may connect.

Each received message is printed on stdout as one line:

    PEER-ID<TAB>MESSAGE

in the order each peer sent them, every line flushed as soon as it is written. Inside MESSAGE \
a backslash is written as `\\\\`, a newline as `\\n` and a tab as `\\t`, so every message is \
exactly one line. Nothing else is ever written to stdout. Each refused connection is reported \
on stderr as `refused NAME from ADDR: REASON` (at most 10 lines a second; the rest are \
counted in a `N more refusals suppressed` line). Connections, disconnections and lost \
sessions are logged on stderr at info level (RUST_LOG=info).

Runs until SIGINT or SIGTERM, then shuts the node down gracefully (waiting up to 5 s for \
echoes to be acknowledged), prints the messages still unread and exits with status 0. \
Exits with status 1 (and one `error: ...` line on stderr) if it cannot listen, read its \
--key or --trust file, read and write its --known-peers file (created if missing), or write \
to stdout; with status 2 on a usage error (e.g. an invalid ID, an ADDR without its port).

Messages larger than --max-message (1 MiB by default) are refused: give the senders the same \
limit. --heartbeat and --idle-timeout set how a dead connection is detected (by default a \
heartbeat after 5 s of silence, and a connection dropped after 20 s without hearing from \
the peer).")]
pub(crate) struct Args {
    /// This node's name: 1 to 128 ASCII letters, digits and `- _ . : @`.
    #[arg(long, value_name = "ID", value_parser = crate::args::node_name)]
    id: String,

    /// Address to listen on, e.g. `127.0.0.1:7000` (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", value_parser = crate::args::address)]
    bind: String,

    /// Also send every message back to its sender, in order.
    #[arg(long)]
    echo: bool,

    /// Serve the node's statistics as Prometheus text on http://ADDR/metrics (e.g.
    /// `127.0.0.1:9100`; port 0 picks a free port). Prints `metrics on http://ADDR/metrics` on
    /// stderr once bound. The metric names are listed in the README ("Observability").
    #[arg(long, value_name = "ADDR", value_parser = crate::args::address)]
    metrics: Option<String>,

    #[command(flatten)]
    limits: LimitArgs,

    #[command(flatten)]
    security: SecurityArgs,
}

/// One task per peer reads its inbox, prints, and with `--echo` sends each batch back before
/// reading the next. Waiting on `send` while not reading is safe: acknowledgements still arrive
/// (the node always reads its sockets; flow control keeps the peer within our inbox), and
/// while we wait, our inbox fills and the peer's window closes, so nothing grows unbounded.
#[derive(Debug)]
struct Reader {
    /// Wakes the reader (capacity 1: a pending wake-up covers any number of messages).
    wake: mpsc::Sender<()>,
    task: JoinHandle<()>,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    // Installed before binding: from here on a signal means a graceful shutdown.
    let mut terminate = signal(SignalKind::terminate()).context("could not handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("could not handle SIGINT")?;

    let builder = args.security.apply(Node::builder(args.id.as_str()))?;
    let node = args
        .limits
        .apply(builder)?
        .listen(args.bind.as_str())
        .start()
        .await
        .with_context(|| format!("could not listen on {}", args.bind))?;
    let addr = node
        .local_addrs()
        .first()
        .context("the node has no listening address")?;
    eprintln!("listening on {addr} as {}", node.name());
    if let Some(metrics_addr) = &args.metrics {
        let bound = crate::metrics::serve(metrics_addr, node.clone()).await?;
        eprintln!("metrics on http://{bound}/metrics");
    }
    if let Some(key) = node.public_key() {
        eprintln!("public key: {key}");
    }
    if args.security.plaintext() {
        eprintln!("{PLAINTEXT_WARNING}");
    } else if args.security.open() {
        eprintln!("{OPEN_WARNING}");
    }

    let (printer, writer) = Printer::start()?;
    let stdout_failed = CancellationToken::new();
    let mut readers: HashMap<String, Reader> = HashMap::new();
    let refusals = crate::refusals::Reporter::start();
    let mut events = node.events();
    loop {
        let event = tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = stdout_failed.cancelled() => break,
            event = events.recv() => event,
        };
        match event {
            None => break,
            Some(Event::Message { peer }) => {
                let reader = readers.entry(peer.name().to_owned()).or_insert_with(|| {
                    spawn_reader(peer, printer.clone(), args.echo, stdout_failed.clone())
                });
                // Full: a wake-up is already pending, which will read these messages too.
                let _ = reader.wake.try_send(());
            }
            Some(Event::Connected { peer, resumed }) => {
                tracing::info!(peer = peer.name(), resumed, "connected");
            }
            Some(Event::Disconnected { peer, reason }) => {
                tracing::info!(peer = peer.name(), %reason, "disconnected");
            }
            Some(Event::SessionLost {
                peer,
                unacked,
                reason,
            }) => {
                tracing::info!(
                    peer = peer.name(),
                    ?reason,
                    unacknowledged_echoes = unacked.len(),
                    "session lost"
                );
            }
            Some(Event::Refused {
                addr,
                name,
                key,
                reason,
                suppressed,
            }) => refusals.refused(addr, name.as_deref(), key, reason, suppressed),
            Some(_) => {}
        }
    }

    tracing::debug!("shutting down");
    node.shutdown().await;
    // No more messages can arrive: let every reader print what is left, then stop.
    for (_, reader) in readers {
        drop(reader.wake);
        let _ = reader.task.await;
    }
    drop(printer);
    output::finish(writer).await
}

fn spawn_reader(peer: Peer, printer: Printer, echo: bool, failed: CancellationToken) -> Reader {
    let (wake, mut woken) = mpsc::channel(1);
    let task = tokio::spawn(async move {
        loop {
            if !drain(&peer, &printer, echo).await {
                failed.cancel();
                return;
            }
            if woken.recv().await.is_none() {
                // Shutting down: print whatever is still in the inbox.
                let _ = drain(&peer, &printer, false).await;
                return;
            }
        }
    });
    Reader { wake, task }
}

/// Reads and prints (and echoes) until the peer's inbox is empty. Returns `false` if stdout
/// failed.
async fn drain(peer: &Peer, printer: &Printer, echo: bool) -> bool {
    loop {
        let messages = read_strings(peer);
        if messages.is_empty() {
            return true;
        }
        let lines = output::format_lines(peer.name(), messages.iter().map(String::as_str));
        if !printer.print(lines).await {
            return false;
        }
        if echo {
            for message in &messages {
                match peer.send(message).await {
                    Ok(_) => {}
                    Err(networkio::Error::NodeClosed) => return true,
                    Err(e) => {
                        tracing::warn!(peer = peer.name(), error = %e, "could not echo a message");
                    }
                }
            }
        }
    }
}

/// Takes every queued message from `peer` as a string. Messages that are not strings (from a
/// program using the library directly) are dropped with a warning.
fn read_strings(peer: &Peer) -> Vec<String> {
    match peer.read_all::<String>() {
        Ok(messages) => messages,
        Err(_) => {
            let raw = peer.read_all_bytes();
            let mut skipped = 0usize;
            let messages = raw
                .iter()
                .filter_map(|payload| {
                    let decoded = networkio::codec::decode::<String>(payload).ok();
                    skipped += usize::from(decoded.is_none());
                    decoded
                })
                .collect();
            tracing::warn!(
                peer = peer.name(),
                skipped,
                "dropped messages that are not strings"
            );
            messages
        }
    }
}
