//! `networkio send`: deliver messages to a listening node and wait until all are acknowledged.

use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use networkio::proto::{CloseCode, LinkError, ProtocolViolation};
use networkio::{Event, Events, Fault, Node, OwnedReceipt, Peer, RefusalReason};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::args::count as plural;
use crate::limits::LimitArgs;
use crate::output::{self, Printer};
use crate::security::SecurityArgs;

/// Most lines handed over from the stdin thread at once.
const STDIN_BATCH: usize = 1024;
/// Batches read ahead of sending.
const STDIN_QUEUE: usize = 8;
/// First and largest delay between connection attempts.
const RETRY_INITIAL: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// Send messages to a listening node and wait until every one is acknowledged.
#[derive(Debug, clap::Args)]
#[command(long_about = "\
Send messages to the node listening on ADDR and wait until every one is acknowledged.

Sends each MESSAGE argument or, with none, each line of stdin (without its line ending; \
stdin is streamed, so it may be arbitrarily long), as one string message, in order. \
Messages are delivered exactly once and in order.

On success prints `delivered N messages to PEER-ID` on stderr and exits with status 0: \
the peer has acknowledged all N messages. With --print-replies it then waits (up to the \
timeout) for one reply per message sent, printing each on stdout, before exiting.

A message is at most --max-message bytes (1 MiB by default) of UTF-8 text, counted without \
the line ending; a larger one stops the command with an error naming its line (or argument) \
number. The listening node must allow messages that large too (its own --max-message).

If the peer restarts (a new process, whose session with us is lost), the messages it had \
not acknowledged are handed back and sent again, in order, to the new process; the command \
then waits for those. Messages sent while the restart was being detected may reach the new \
process before the resent ones.

Exits with status 1 and one line `error: ...` on stderr if it cannot connect within the \
timeout, if the peer makes no room for a message within the timeout, if the messages are \
not all acknowledged (or, with --print-replies, not all replied to) within the timeout after \
the input ends, or if a message is larger than --max-message. Connection attempts are \
retried until the timeout, except after a refusal: the peer's trust policy does not accept \
our name and key, ours (--trust, --known-peers) does not accept the peer's, or the two sides \
disagree on TLS (--insecure-plaintext on one side only). A refusal fails at once, with the \
peer's reason and what to do about it. Another process holding our name there is retried \
until the timeout (the listener frees the name when that connection ends, within its idle \
timeout for a process that died), then reported with the reason. Exits with \
status 2 on a usage error (e.g. an invalid ID, an ADDR without its port), at once.")]
pub(crate) struct Args {
    /// This node's name: 1 to 128 ASCII letters, digits and `- _ . : @`.
    #[arg(long, value_name = "ID", value_parser = crate::args::node_name)]
    id: String,

    /// Address of the listening node, HOST:PORT, e.g. `127.0.0.1:7000`.
    #[arg(long, value_name = "ADDR", value_parser = crate::args::address)]
    to: String,

    /// Time allowed for connecting (attempts are retried until then), for each wait for room
    /// in the send window, and for the final acknowledgements (and, with --print-replies, the
    /// replies) after the input ends: seconds (fractions allowed) or a number with a unit
    /// (`500ms`, `2m`).
    #[arg(long, value_name = "DURATION", default_value = "60", value_parser = crate::args::duration)]
    timeout: Duration,

    /// Print the messages the peer sends back (e.g. `listen --echo`) on stdout, as
    /// `PEER-ID<TAB>MESSAGE` lines escaped like `listen` does, and wait for one reply per
    /// message sent (or --timeout) before exiting; without it replies are discarded.
    #[arg(long)]
    print_replies: bool,

    /// Messages to send; without any, each line of stdin is one message.
    #[arg(value_name = "MESSAGE")]
    messages: Vec<String>,

    #[command(flatten)]
    limits: LimitArgs,

    #[command(flatten)]
    security: SecurityArgs,
}

type Batch = anyhow::Result<Vec<String>>;

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let start = Instant::now();
    let max_message = args.limits.max_message();
    for (number, message) in args.messages.iter().enumerate() {
        if message.len() > max_message {
            bail!(
                "message {} is {} bytes, more than the --max-message limit of {max_message}",
                number + 1,
                message.len()
            );
        }
    }
    let builder = args.security.apply(Node::builder(args.id.as_str()))?;
    let node = args
        .limits
        .apply(builder)?
        .reconnect_backoff(Duration::from_millis(50), RETRY_MAX)
        .start()
        .await
        .context("could not start the node")?;

    // Input is read while connecting, at most a few batches ahead.
    let (input_tx, mut input) = mpsc::channel::<Batch>(STDIN_QUEUE);
    if args.messages.is_empty() {
        spawn_stdin_reader(input_tx, max_message)?;
    } else {
        input_tx
            .send(Ok(args.messages))
            .await
            .map_err(|_| anyhow!("input channel closed"))?;
        drop(input_tx);
    }

    let peer = connect(&node, &args.to, start + args.timeout).await?;
    let peer_name = peer.name().to_owned();
    tracing::info!(peer = %peer_name, "connected");

    let printer = if args.print_replies {
        Some(Printer::start()?)
    } else {
        None
    };
    let (lost_tx, mut lost) = mpsc::unbounded_channel();
    let (replies_tx, mut replies) = watch::channel(0u64);
    let events = tokio::spawn(handle_events(
        node.events(),
        peer_name.clone(),
        lost_tx,
        printer.as_ref().map(|(p, _)| p.clone()),
        replies_tx,
    ));

    let mut sender = Sender {
        peer,
        timeout: args.timeout,
        last: None,
    };
    let mut count: u64 = 0;
    loop {
        tokio::select! {
            biased;
            Some(unacked) = lost.recv() => sender.resend(unacked, None).await?,
            batch = input.recv() => match batch {
                None => break,
                Some(batch) => {
                    for message in batch? {
                        sender.send(message).await?;
                        count += 1;
                    }
                }
            },
        }
    }

    // Delivery is cumulative and FIFO: the last message's acknowledgement covers all of them.
    let deadline = Instant::now() + args.timeout;
    while let Some(receipt) = sender.last.clone() {
        let delivered = async {
            match receipt.delivered().await {
                // The session ended: the messages come back in an Event::SessionLost.
                Err(networkio::Error::SessionLost { .. }) => std::future::pending().await,
                other => other,
            }
        };
        tokio::select! {
            biased;
            Some(unacked) = lost.recv() => sender.resend(unacked, Some(deadline)).await?,
            result = delivered => {
                result.context("messages were not delivered")?;
                break;
            }
            () = tokio::time::sleep_until(deadline) => bail!(
                "timed out after {:?}: {} of {count} messages not acknowledged by {peer_name}",
                args.timeout,
                sender.peer.stats().unacked_len,
            ),
        }
    }
    eprintln!("delivered {} to {peer_name}", plural(count, "message"));

    if args.print_replies {
        // A reply may still be on its way once our messages are acknowledged.
        let waited = tokio::time::timeout_at(deadline, replies.wait_for(|&n| n >= count));
        if waited.await.is_err() {
            bail!(
                "timed out after {:?}: {} of {count} replies received from {peer_name} \
                 (does it reply? e.g. `listen --echo`)",
                args.timeout,
                *replies.borrow(),
            );
        }
    }

    node.shutdown().await;
    let _ = events.await;
    if let Some((printer, writer)) = printer {
        drop(printer);
        output::finish(writer).await?;
    }
    Ok(())
}

/// Dials `to` until it answers or `deadline` passes, waiting 100 ms doubling to 1 s between
/// attempts (the listener may not be up yet). A refusal (see [`refusal`]) is not transient:
/// it fails at once, except our name being in use (see [`name_in_use`]), retried until the
/// deadline and then reported with its reason.
async fn connect(node: &Node, to: &str, deadline: Instant) -> anyhow::Result<Peer> {
    let mut delay = RETRY_INITIAL;
    let mut last_error = String::from("timed out");
    loop {
        match tokio::time::timeout_at(deadline, node.connect(to)).await {
            Ok(Ok(peer)) => return Ok(peer),
            Ok(Err(e)) if e.fault() == Fault::Caller => {
                return Err(e).with_context(|| format!("could not connect to {to}"));
            }
            Ok(Err(e)) => {
                if let Some(refused) = refusal(&e, to) {
                    if !name_in_use(&e) {
                        bail!("{refused}");
                    }
                    // The name is held by another connection, which may be a process that
                    // died and that the listener has not yet noticed: it frees the name when
                    // that connection ends, so try again until the deadline.
                    tracing::debug!(%to, error = %e, "our name is in use; retrying");
                    last_error = refused;
                } else {
                    tracing::debug!(%to, error = %e, "connection attempt failed");
                    last_error = e.to_string();
                }
            }
            Err(_) => {}
        }
        if Instant::now() + delay >= deadline {
            tokio::time::sleep_until(deadline).await;
            bail!("could not connect to {to} in time: {last_error}");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RETRY_MAX);
    }
}

/// Whether the peer refused us because another connection holds our name: the one refusal that
/// ends by itself (when that connection does).
fn name_in_use(error: &networkio::Error) -> bool {
    matches!(
        error,
        networkio::Error::Link(LinkError::ClosedByPeer { code, .. })
            if RefusalReason::from_close_code(*code) == Some(RefusalReason::NameInUse)
    )
}

/// If a failed connection attempt was refused for good rather than broken by the network, the
/// error to report: a trust policy (the peer's or ours) refused the key, the TLS handshake
/// itself failed, or the peer does not speak our protocol (typically one side in
/// `--insecure-plaintext` mode). Retrying would only fail again.
fn refusal(error: &networkio::Error, to: &str) -> Option<String> {
    const MISMATCH: &str = "does one side use --insecure-plaintext and the other not?";
    match error {
        networkio::Error::Unauthorized(_) => Some(format!(
            "refused the node at {to}: {error} (see --trust and --known-peers)"
        )),
        networkio::Error::Link(LinkError::ClosedByPeer { code, .. })
            if crate::refusals::hint(*code).is_some() =>
        {
            let hint = crate::refusals::hint(*code).unwrap_or_default();
            Some(format!("{to} refused us: {error} ({hint})"))
        }
        networkio::Error::Link(LinkError::ClosedByPeer {
            code: CloseCode::BadHello | CloseCode::UnsupportedVersion,
            ..
        }) => Some(format!("{to} refused us: {error}")),
        // Undecodable frames: most likely TLS on the other side.
        networkio::Error::Link(
            LinkError::Violation(ProtocolViolation::Frame(_))
            | LinkError::ClosedByPeer {
                code: CloseCode::ProtocolError | CloseCode::FrameTooLarge,
                ..
            },
        ) => Some(format!("could not connect to {to}: {error} ({MISMATCH})")),
        networkio::Error::Link(LinkError::Violation(_)) => {
            Some(format!("could not connect to {to}: {error}"))
        }
        networkio::Error::Tls(reason) if tls_failure(reason) => {
            Some(format!("could not connect to {to}: {error} ({MISMATCH})"))
        }
        _ => None,
    }
}

/// Whether a TLS error is a real TLS failure rather than the connection breaking during the
/// handshake. The library reports both as [`networkio::Error::Tls`] with the rustls or I/O
/// error as text, so this looks at the text: only rustls's own failures count (an unknown text
/// is treated as transient, which at worst means retrying until the timeout).
fn tls_failure(reason: &str) -> bool {
    const RUSTLS_FAILURES: [&str; 9] = [
        "received corrupt message",
        "received unexpected",
        "received fatal alert",
        "peer is incompatible",
        "peer misbehaved",
        "invalid peer certificate",
        "peer sent no certificates",
        "peer sent excess record size",
        "the peer presented no usable key",
    ];
    let reason = reason.to_ascii_lowercase();
    RUSTLS_FAILURES
        .iter()
        .any(|failure| reason.contains(failure))
}

/// Sends messages in order, remembering the receipt of the last one (owning its handle of the
/// peer: it lives beside `peer`, not borrowing it).
struct Sender {
    peer: Peer,
    timeout: Duration,
    last: Option<OwnedReceipt>,
}

impl Sender {
    async fn send(&mut self, message: String) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.timeout;
        let receipt = tokio::time::timeout_at(deadline, self.peer.send(&message))
            .await
            .map_err(|_| self.stalled())?
            .context("could not send a message")?
            .into_owned();
        self.last = Some(receipt);
        Ok(())
    }

    /// Sends again, in order, the messages a lost session handed back.
    async fn resend(
        &mut self,
        unacked: Vec<Bytes>,
        deadline: Option<Instant>,
    ) -> anyhow::Result<()> {
        if unacked.is_empty() {
            return Ok(());
        }
        tracing::info!(
            peer = self.peer.name(),
            messages = unacked.len(),
            "resending messages handed back by the lost session"
        );
        for payload in unacked {
            let deadline = deadline.unwrap_or_else(|| Instant::now() + self.timeout);
            let receipt = tokio::time::timeout_at(deadline, self.peer.send_bytes(payload))
                .await
                .map_err(|_| self.stalled())?
                .context("could not resend a message")?
                .into_owned();
            self.last = Some(receipt);
        }
        Ok(())
    }

    fn stalled(&self) -> anyhow::Error {
        anyhow!(
            "timed out after {:?}: {} acknowledged no message ({} waiting)",
            self.timeout,
            self.peer.name(),
            self.peer.stats().unacked_len,
        )
    }
}

/// Reads stdin on its own thread, in batches of the lines already buffered (so a slow
/// producer's lines are sent at once, a fast producer's in batches).
fn spawn_stdin_reader(tx: mpsc::Sender<Batch>, max_message: usize) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut input = BufReader::with_capacity(64 * 1024, std::io::stdin().lock());
            let mut line_number: u64 = 0;
            loop {
                let (batch, eof) = match read_batch(&mut input, &mut line_number, max_message) {
                    Ok(read) => read,
                    Err(e) => (Err(e), true),
                };
                if let Ok(lines) = &batch {
                    if lines.is_empty() {
                        return;
                    }
                }
                if tx.blocking_send(batch).is_err() || eof {
                    return;
                }
            }
        })
        .context("could not start the stdin reader thread")?;
    Ok(())
}

/// Reads at least one line (unless at the end), then whatever complete lines are buffered, up
/// to `STDIN_BATCH`. Returns the lines and whether stdin ended. A line longer than
/// `max_message` bytes (without its line ending) is an error; at most that much plus the line
/// ending is read of it.
fn read_batch(
    input: &mut BufReader<std::io::StdinLock<'static>>,
    line_number: &mut u64,
    max_message: usize,
) -> anyhow::Result<(Batch, bool)> {
    let mut lines = Vec::new();
    let mut buf = Vec::new();
    // Room for the longest line and a `\r\n` ending.
    let most = u64::try_from(max_message)
        .unwrap_or(u64::MAX)
        .saturating_add(2);
    loop {
        buf.clear();
        let n = input
            .by_ref()
            .take(most)
            .read_until(b'\n', &mut buf)
            .context("could not read stdin")?;
        if n == 0 {
            return Ok((Ok(lines), true));
        }
        *line_number += 1;
        let ended = buf.last() == Some(&b'\n');
        if ended {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        // Cut short by `take`: the line goes on.
        let cut = !ended && n as u64 == most;
        if cut || buf.len() > max_message {
            return Ok((
                Err(anyhow!(
                    "line {line_number} of stdin is more than {max_message} bytes (the \
                     --max-message limit)"
                )),
                true,
            ));
        }
        let line = String::from_utf8(std::mem::take(&mut buf))
            .map_err(|_| anyhow!("line {line_number} of stdin is not valid UTF-8"))?;
        lines.push(line);
        if lines.len() >= STDIN_BATCH || !input.buffer().contains(&b'\n') {
            return Ok((Ok(lines), false));
        }
    }
}

/// Drains (or prints) what the peer sends back, logs connection changes, and forwards the
/// messages a lost session hands back.
async fn handle_events(
    mut events: Events,
    peer_name: String,
    lost: mpsc::UnboundedSender<Vec<Bytes>>,
    printer: Option<Printer>,
    replies: watch::Sender<u64>,
) {
    while let Some(event) = events.recv().await {
        match event {
            Event::Message { peer } => {
                let received = match &printer {
                    Some(printer) => {
                        let (lines, received) = reply_lines(&peer);
                        if !printer.print_now(lines).await {
                            tracing::warn!("could not write replies to stdout");
                        }
                        received
                    }
                    None => peer.read_all_bytes().len(),
                };
                if peer.name() == peer_name {
                    replies.send_modify(|count| *count += received as u64);
                }
            }
            Event::Connected { peer, resumed } => {
                tracing::info!(peer = peer.name(), resumed, "connected");
            }
            Event::Disconnected { peer, reason } => {
                tracing::info!(peer = peer.name(), %reason, "disconnected");
            }
            Event::SessionLost {
                peer,
                unacked,
                reason,
            } => {
                tracing::info!(
                    peer = peer.name(),
                    ?reason,
                    unacknowledged = unacked.len(),
                    "session lost"
                );
                if peer.name() == peer_name {
                    let _ = lost.send(unacked);
                }
            }
            _ => {}
        }
    }
}

/// Every reply queued from `peer`, as output lines (non-string replies are skipped), and how
/// many replies were taken.
fn reply_lines(peer: &Peer) -> (String, usize) {
    let raw = peer.read_all_bytes();
    let replies: Vec<String> = raw
        .iter()
        .filter_map(|payload| networkio::codec::decode::<String>(payload).ok())
        .collect();
    if replies.len() < raw.len() {
        tracing::warn!(
            peer = peer.name(),
            skipped = raw.len() - replies.len(),
            "skipped replies that are not strings"
        );
    }
    (
        output::format_lines(peer.name(), replies.iter().map(String::as_str)),
        raw.len(),
    )
}
