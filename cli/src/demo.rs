//! `networkio demo`: the main job, shown end to end with nothing to set up.
//!
//! Two nodes in this process exchange messages in both directions through an in-process proxy
//! that cuts their connection at random every few hundred milliseconds. Each side checks what
//! it receives; the report at the end says how much was lost, duplicated or reordered (nothing),
//! how often the link broke and how fast it went anyway.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use networkio::{Event, LostReason, Node, Peer};
use networkio_chaos::{ChaosConfig, ChaosProxy};
use serde::{Deserialize, Serialize};

/// Run two nodes over a flaky link and check that every message arrives exactly once, in order.
///
/// Two nodes, "alice" and "bob", run in this process. Bob dials alice through an in-process TCP
/// proxy that resets the connection at random moments (mid-frame included) and refuses some
/// reconnection attempts. Both send MESSAGES messages to each other at once. The report at the
/// end counts sent, delivered, lost, duplicated and out-of-order messages per direction, the
/// reconnections, and the throughput. Exits 1 if anything was lost, duplicated or reordered.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Messages to send in each direction.
    #[arg(long, short = 'n', default_value_t = 100_000)]
    messages: u64,
    /// Payload bytes per message (the text carried besides its sequence number).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Mean time between cuts, in milliseconds (each connection lives 0.5x to 1.5x this long).
    /// 0 disables the cuts.
    #[arg(long, default_value_t = 300)]
    cut_every_ms: u64,
    /// Messages per second in each direction (0: as fast as possible). Paced so the run lasts
    /// long enough to watch the link break and heal; for full speed use `--rate 0`.
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Fraction of (re)connection attempts the proxy refuses outright.
    #[arg(long, default_value_t = 0.05)]
    refuse: f64,
    /// Seed of the proxy's randomness (default: random; printed in the report).
    #[arg(long)]
    seed: Option<u64>,
    /// Give up (and report what is missing) after this many seconds.
    #[arg(long, default_value = "600", value_parser = crate::args::duration)]
    timeout: Duration,
    /// INSECURE: run both nodes without TLS (no encryption, no authentication), e.g. to
    /// compare throughput. By default they use TLS 1.3 with fresh keys and an open trust policy.
    #[arg(long)]
    insecure_plaintext: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct DemoMessage {
    index: u64,
    text: String,
}

/// What one receiving side saw.
#[derive(Debug, Default)]
struct Tally {
    received: AtomicU64,
    next: AtomicU64,
    duplicated: AtomicU64,
    out_of_order: AtomicU64,
}

impl Tally {
    fn record(&self, index: u64) {
        self.received.fetch_add(1, Ordering::Relaxed);
        let next = self.next.load(Ordering::Relaxed);
        if index == next {
            self.next.store(next + 1, Ordering::Relaxed);
        } else if index < next {
            self.duplicated.fetch_add(1, Ordering::Relaxed);
        } else {
            self.out_of_order.fetch_add(1, Ordering::Relaxed);
            self.next.store(index + 1, Ordering::Relaxed);
        }
    }

    fn in_order(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.refuse) {
        bail!("--refuse must be between 0 and 1");
    }
    let seed = args.seed.unwrap_or_else(rand_seed);
    let fast_reconnect = |name: &str| {
        let builder = Node::builder(name)
            .reconnect_backoff(Duration::from_millis(2), Duration::from_millis(100))
            .heartbeat(Duration::from_millis(500), Duration::from_secs(3));
        if args.insecure_plaintext {
            builder.insecure_plaintext()
        } else {
            builder
        }
    };
    let alice = fast_reconnect("alice")
        .listen("127.0.0.1:0")
        .start()
        .await
        .context("starting alice")?;
    let cut = args.cut_every_ms;
    let proxy = ChaosProxy::start(
        alice.local_addrs()[0],
        ChaosConfig {
            seed,
            cut_after: (cut > 0)
                .then(|| Duration::from_millis(cut / 2)..Duration::from_millis(cut * 3 / 2 + 1)),
            reset: true,
            refuse_probability: args.refuse,
            ..ChaosConfig::default()
        },
    )
    .await
    .context("starting the flaky link")?;
    let bob = fast_reconnect("bob")
        .start()
        .await
        .context("starting bob")?;
    eprintln!(
        "alice listens on {}; bob dials her through a flaky link on {} (cut every ~{cut} ms, {:.0}% of attempts refused, seed {seed}; {})",
        alice.local_addrs()[0],
        proxy.local_addr(),
        args.refuse * 100.0,
        if args.insecure_plaintext {
            "insecure plaintext"
        } else {
            "TLS 1.3"
        }
    );

    let at_alice = Arc::new(Tally::default());
    let at_bob = Arc::new(Tally::default());
    spawn_reader(&alice, at_alice.clone());
    spawn_reader(&bob, at_bob.clone());

    let started = Instant::now();
    let to_alice = connect_with_retry(&bob, &proxy, args.timeout).await?;
    let to_bob = loop {
        if let Some(peer) = alice.peer("bob") {
            break peer;
        }
        tokio::task::yield_now().await;
    };
    let text = "x".repeat(args.size);
    let bob_sends = tokio::spawn(send_all(
        to_alice.clone(),
        args.messages,
        text.clone(),
        args.rate,
    ));
    let alice_sends = tokio::spawn(send_all(to_bob.clone(), args.messages, text, args.rate));

    let bars = Bars::new(args.messages);
    let finished = tokio::time::timeout(args.timeout, async {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            bars.update(&at_alice, &at_bob, &to_alice, &proxy);
            if at_alice.in_order() >= args.messages && at_bob.in_order() >= args.messages {
                break;
            }
        }
    })
    .await
    .is_ok();
    let elapsed = started.elapsed();
    bars.finish(&at_alice, &at_bob, &to_alice, &proxy);
    let sends_ok = finished
        && bob_sends.await.is_ok_and(|r| r.is_ok())
        && alice_sends.await.is_ok_and(|r| r.is_ok());

    let reconnects = to_alice.stats().reconnects;
    let stats = proxy.stats();
    let rows = [("bob -> alice", &at_alice), ("alice -> bob", &at_bob)];
    println!();
    println!(
        "{:<14} {:>10} {:>10} {:>6} {:>11} {:>13}",
        "direction", "sent", "delivered", "lost", "duplicated", "out of order"
    );
    let mut clean = sends_ok;
    for (name, tally) in rows {
        let delivered = tally.in_order();
        let lost = args.messages.saturating_sub(delivered);
        let duplicated = tally.duplicated.load(Ordering::Relaxed);
        let out_of_order = tally.out_of_order.load(Ordering::Relaxed);
        clean &= lost == 0 && duplicated == 0 && out_of_order == 0;
        println!(
            "{name:<14} {:>10} {delivered:>10} {lost:>6} {duplicated:>11} {out_of_order:>13}",
            args.messages
        );
    }
    let total = 2 * args.messages;
    println!();
    println!("connection cuts        {}", stats.cuts);
    println!("refused attempts       {}", stats.refused);
    println!("reconnections          {reconnects}");
    println!("elapsed                {:.2} s", elapsed.as_secs_f64());
    println!(
        "throughput             {:.0} messages/s ({} B payloads, both directions together, every one acknowledged{})",
        total as f64 / elapsed.as_secs_f64(),
        args.size,
        if args.rate > 0 {
            format!(
                "; paced at {}/s each way, --rate 0 for full speed",
                args.rate
            )
        } else {
            String::new()
        }
    );
    println!("seed                   {seed}");
    bob.shutdown().await;
    alice.shutdown().await;
    if !clean {
        bail!("delivery check failed (seed {seed})");
    }
    println!(
        "\nevery message arrived exactly once, in order, through {} broken connections",
        stats.cuts
    );
    Ok(())
}

fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

async fn connect_with_retry(
    node: &Node,
    proxy: &ChaosProxy,
    timeout: Duration,
) -> anyhow::Result<Peer> {
    let deadline = Instant::now() + timeout;
    loop {
        match node.connect(proxy.local_addr()).await {
            Ok(peer) => return Ok(peer),
            // The flaky link may refuse or cut the very first attempt too.
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "first connection failed; retrying")
            }
            Err(e) => return Err(e).context("connecting through the flaky link"),
        }
    }
}

async fn send_all(peer: Peer, n: u64, text: String, rate: u64) -> networkio::Result<()> {
    let mut last = None;
    let start = tokio::time::Instant::now();
    for index in 0..n {
        if rate > 0 && index % 100 == 0 {
            let due = Duration::from_secs_f64(index as f64 / rate as f64);
            tokio::time::sleep_until(start + due).await;
        }
        let message = DemoMessage {
            index,
            text: text.clone(),
        };
        last = Some(peer.send(&message).await?);
    }
    if let Some(receipt) = last {
        receipt.delivered().await?;
    }
    Ok(())
}

fn spawn_reader(node: &Node, tally: Arc<Tally>) {
    let mut events = node.events();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                Event::Message { peer } => match peer.read_all::<DemoMessage>() {
                    Ok(messages) => messages.iter().for_each(|m| tally.record(m.index)),
                    Err(e) => tracing::error!(error = %e, "undecodable message"),
                },
                // At the very end each node's shutdown ends the other's session: expected.
                Event::SessionLost {
                    reason: LostReason::PeerShutdown,
                    ..
                } => {}
                Event::SessionLost {
                    peer,
                    unacked,
                    reason,
                } => {
                    tracing::error!(
                        peer = peer.name(),
                        ?reason,
                        unacked = unacked.len(),
                        "session lost"
                    );
                }
                _ => {}
            }
        }
    });
}

/// A rate of messages per second as shown by the progress bars: whole messages, `19774/s`.
fn rate_text(per_sec: f64) -> String {
    if per_sec.is_finite() && per_sec >= 0.0 {
        format!("{per_sec:.0}/s")
    } else {
        "-/s".to_owned()
    }
}

/// Two progress bars, one per direction, plus a line of link statistics.
struct Bars {
    _multi: MultiProgress,
    up: ProgressBar,
    down: ProgressBar,
}

impl Bars {
    fn new(total: u64) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let style = ProgressStyle::with_template(
            "{prefix:>13} [{bar:40.cyan/blue}] {pos:>8}/{len} {rate:>9} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        // indicatif's own {per_sec} shows four decimals (`19,774.3063/s`).
        .with_key(
            "rate",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(&rate_text(state.per_sec()));
            },
        )
        .progress_chars("=> ");
        let bar = |prefix: &'static str| {
            let bar = multi.add(ProgressBar::new(total));
            bar.set_style(style.clone());
            bar.set_prefix(prefix);
            bar
        };
        let up = bar("bob -> alice");
        let down = bar("alice -> bob");
        Bars {
            _multi: multi,
            up,
            down,
        }
    }

    fn update(&self, at_alice: &Tally, at_bob: &Tally, link: &Peer, proxy: &ChaosProxy) {
        self.up.set_position(at_alice.in_order());
        self.down.set_position(at_bob.in_order());
        self.down.set_message(format!(
            "cuts {} reconnects {}",
            proxy.stats().cuts,
            link.stats().reconnects
        ));
    }

    fn finish(&self, at_alice: &Tally, at_bob: &Tally, link: &Peer, proxy: &ChaosProxy) {
        self.update(at_alice, at_bob, link, proxy);
        self.up.abandon();
        self.down.abandon();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_whole_messages_per_second() {
        assert_eq!(rate_text(19_774.306_3), "19774/s");
        assert_eq!(rate_text(0.4), "0/s");
        assert_eq!(rate_text(f64::INFINITY), "-/s");
        assert_eq!(rate_text(f64::NAN), "-/s");
    }
}
