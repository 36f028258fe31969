//! `networkio listen`: run a node, print every message it receives, optionally echo them.

use std::collections::HashMap;

use anyhow::Context;
use networkio::{Event, Node, Peer, SessionRef};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::limits::LimitArgs;
use crate::output::{self, BATCH_BYTES, Printer};
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

in the order each peer sent them, every line flushed as soon as it is written. Messages are \
taken from the node only as stdout accepts them (at most 1 MiB of lines waiting): while stdout \
is not read they wait in the node's inbox, and flow control slows the senders. Inside MESSAGE \
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

    /// Also send every message back to its sender, in order, within the session it came
    /// from: the echoes of a sender process that has gone are dropped, never sent to the next
    /// process using its ID.
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

/// One task per peer reads its inbox as stdout has room (see [`drain`]), prints, and with
/// `--echo` sends each batch back, within the session of each message, before reading the
/// next. Waiting on `send` while not reading is safe: acknowledgements still arrive
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
///
/// Messages are taken only as stdout accepts them: room for a batch is claimed from the printer
/// before anything is taken, and a batch holds about [`BATCH_BYTES`] of lines. While stdout is
/// slow the messages wait in the node's inbox, whose limit (and flow control) bounds them.
pub(crate) async fn drain(peer: &Peer, printer: &Printer, echo: bool) -> bool {
    while peer.pending() > 0 {
        let Some(slot) = printer.reserve().await else {
            return false;
        };
        let batch = read_batch(peer, BATCH_BYTES);
        if batch.taken == 0 {
            return true;
        }
        if !printer.print(slot, batch.lines) {
            return false;
        }
        if echo && !echo_batch(peer, batch.runs).await {
            return true;
        }
    }
    true
}

/// Messages taken from a peer for one batch.
#[derive(Debug, Default)]
struct Batch {
    /// Their output lines.
    lines: String,
    /// The messages (strings only), in runs of the session they came from.
    runs: Vec<(SessionRef, Vec<String>)>,
    /// Messages taken, strings or not.
    taken: usize,
}

/// Takes messages from `peer`, one at a time, until their lines reach `bytes` or the inbox is
/// empty: a batch exceeds `bytes` by less than one line. Messages that are not strings (from a
/// program using the library directly) are dropped with a warning.
fn read_batch(peer: &Peer, bytes: usize) -> Batch {
    let mut batch = Batch::default();
    let mut skipped = 0usize;
    while batch.lines.len() < bytes {
        let Some((session, mut taken)) = peer.read_bytes_with_session(1) else {
            break;
        };
        let Some(payload) = taken.pop() else {
            break;
        };
        batch.taken += 1;
        let Ok(message) = networkio::codec::decode::<String>(&payload) else {
            skipped += 1;
            continue;
        };
        output::push_line(&mut batch.lines, peer.name(), &message);
        match batch.runs.last_mut() {
            Some((current, messages)) if *current == session => messages.push(message),
            _ => batch.runs.push((session, vec![message])),
        }
    }
    if skipped > 0 {
        tracing::warn!(
            peer = peer.name(),
            skipped,
            "dropped messages that are not strings"
        );
    }
    batch
}

/// Sends each message back within the session it came from, in order. A session that has ended
/// (its process is gone; another may have taken the name) gets no more echoes: they would reach
/// a process that never sent them. Returns `false` once the node is shut down.
async fn echo_batch(peer: &Peer, runs: Vec<(SessionRef, Vec<String>)>) -> bool {
    for (session, messages) in runs {
        let count = messages.len();
        for (i, message) in messages.iter().enumerate() {
            match peer.send_in(&session, message).await {
                Ok(_) => {}
                Err(networkio::Error::NodeClosed) => return false,
                Err(networkio::Error::SessionEnded) => {
                    tracing::info!(
                        peer = peer.name(),
                        not_echoed = count - i,
                        "the session of these messages ended; not echoing them"
                    );
                    break;
                }
                Err(e) => {
                    tracing::warn!(peer = peer.name(), error = %e, "could not echo a message");
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::Duration;

    use networkio::{Event, Node};

    use super::*;
    use crate::output::{BATCH_BYTES, Printer};

    /// A stdout whose reader has paused: writes block until `open`.
    #[derive(Clone, Default)]
    struct PausedStdout {
        open: Arc<(Mutex<bool>, Condvar)>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl PausedStdout {
        fn resume(&self) {
            *self.open.0.lock().unwrap() = true;
            self.open.1.notify_all();
        }

        fn lines(&self) -> usize {
            self.written
                .lock()
                .unwrap()
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
        }
    }

    impl Write for PausedStdout {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (open, resumed) = &*self.open;
            let _open = resumed
                .wait_while(open.lock().unwrap(), |open| !*open)
                .unwrap();
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Polls `cond` until it holds; fails the test after 20 s.
    async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
        let waited = tokio::time::timeout(Duration::from_secs(20), async {
            while !cond() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        waited
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
    }

    /// Issue #12, defect 7: with stdout paused, `listen` takes from the node only what stdout
    /// has room for (a bound in bytes), however full the inbox is; the rest waits in the inbox
    /// and flow control holds the sender back. Then everything is printed, in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_paused_stdout_leaves_the_messages_in_the_inbox_and_slows_the_sender() {
        const INBOX: usize = 1 << 20;
        const LIMIT: usize = 256 << 10;
        const MESSAGES: usize = 4096;
        const BODY: usize = 1000;
        let server = Node::builder("srv")
            .listen("127.0.0.1:0")
            .insecure_plaintext()
            .max_message_size(64 << 10)
            .inbox(1 << 16, INBOX)
            .start()
            .await
            .unwrap();
        let client = Node::builder("p")
            .insecure_plaintext()
            .max_message_size(64 << 10)
            .start()
            .await
            .unwrap();
        let to_server = client.connect(server.local_addrs()[0]).await.unwrap();
        let sending = {
            let to_server = to_server.clone();
            tokio::spawn(async move {
                let mut last = None;
                for i in 0..MESSAGES {
                    let message = format!("{i:06}-{}", "x".repeat(BODY));
                    last = Some(to_server.send(&message).await.unwrap().into_owned());
                }
                last.unwrap().delivered().await.unwrap();
            })
        };
        let peer = server.peer("p").unwrap();
        // The inbox fills before anything reads it: a reader that took the whole inbox at
        // once would hold four times the bound in one batch.
        eventually("the inbox to fill", || {
            peer.stats().inbox_bytes + 2 * BODY > INBOX
        })
        .await;

        let stdout = PausedStdout::default();
        let (printer, writer) = {
            let stdout = stdout.clone();
            Printer::start_with(move || stdout, LIMIT).unwrap()
        };
        let failed = CancellationToken::new();
        let reader = spawn_reader(peer.clone(), printer.clone(), false, failed.clone());
        let mut events = server.events();
        let waking = {
            let wake = reader.wake.clone();
            tokio::spawn(async move {
                while let Some(event) = events.recv().await {
                    if matches!(event, Event::Message { .. }) {
                        let _ = wake.try_send(());
                    }
                }
            })
        };
        // The reader fills the printer's room and waits; the inbox fills up again behind it.
        eventually("the reader to wait for stdout", || {
            printer.queued().0 + BATCH_BYTES > LIMIT && peer.stats().inbox_bytes + 2 * BODY > INBOX
        })
        .await;
        let (queued, peak) = printer.queued();
        let line = BODY + 16;
        assert!(
            peak <= LIMIT + line,
            "{peak} bytes taken from the node and not written (now {queued}); bound {LIMIT}"
        );
        assert!(!sending.is_finished(), "flow control holds the sender back");
        assert!(to_server.stats().unacked_len > 0);
        let taken = peer.stats().counters.messages_received as usize - peer.pending();
        assert!(taken * line <= LIMIT + line, "{taken} messages taken");

        // stdout resumes: everything arrives, once, in order.
        stdout.resume();
        tokio::time::timeout(Duration::from_secs(20), sending)
            .await
            .expect("the sender to finish")
            .unwrap();
        eventually("every line to be written", || stdout.lines() == MESSAGES).await;
        let written = String::from_utf8(stdout.written.lock().unwrap().clone()).unwrap();
        for (i, line) in written.lines().enumerate() {
            assert!(
                line.starts_with(&format!("p\t{i:06}-")),
                "line {i}: {line:.20}"
            );
        }
        assert!(!failed.is_cancelled());
        assert!(printer.queued().1 <= LIMIT + BODY + 16);
        waking.abort();
        drop(reader);
        drop(printer);
        server.shutdown().await;
        client.shutdown().await;
        output::finish(writer).await.unwrap();
    }
}
