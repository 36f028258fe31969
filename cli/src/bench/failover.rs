//! `bench failover`: how long a flow takes to recover after the link between two nodes goes
//! silent for a while and comes back.
//!
//! A steady flow (one 64 B message every 5 ms, dialer to acceptor) runs; the link then drops
//! everything for the hole's length and returns. Reported per hole: the time from the link's
//! return to the first message delivered after it, and to the backlog (everything sent before
//! the return) being delivered.
//!
//! Two ways to make the link silent:
//! - `netns` (Linux, root): each node in a network namespace of its own, joined by a veth
//!   pair; the hole is a `blackhole` qdisc on both ends, which drops every packet while telling
//!   the sender it was sent. So TCP behaves as on a real path that lost everything: its
//!   retransmission backoff runs, SYNs go unanswered. The namespaces are created and removed by
//!   the bench; no traffic leaves them. (`tc` has no `matchall` classifier on every kernel, the
//!   `blackhole` qdisc is built in.)
//! - `proxy`: both nodes on loopback, with the chaos proxy in between
//!   ([`ChaosProxy::silence`]). Unlike a real path, the connections that were open never recover
//!   (the proxy drops their bytes for good, the worst case of TCP's backoff) and new connections
//!   during the hole are refused (reset) instead of going unanswered.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use networkio::{Event, NodeConfig};
use networkio_chaos::{ChaosConfig, ChaosProxy};
use serde::Serialize;

use super::nio::{self, Mode};

/// Time between two messages of the flow.
const FLOW_INTERVAL: Duration = Duration::from_millis(5);
/// Time the flow runs before each hole.
const SETTLE: Duration = Duration::from_secs(1);
/// Longest wait for recovery after a hole.
const RECOVERY_LIMIT: Duration = Duration::from_secs(60);

/// How the link is made silent (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Link {
    /// `netns` if running as root on Linux, else `proxy`.
    Auto,
    /// Network namespaces, a veth pair and a `blackhole` qdisc (Linux, root).
    Netns,
    /// The chaos proxy on loopback.
    Proxy,
}

/// One hole's figures.
#[derive(Debug, Serialize)]
struct Recovery {
    scenario: &'static str,
    link: Link,
    mode: Mode,
    failover: bool,
    hole_s: f64,
    /// From the link's return to the first message delivered after it.
    first_message_s: Option<f64>,
    /// From the link's return to the delivery of everything sent before it.
    backlog_s: Option<f64>,
    /// Messages sent before the return.
    backlog: u64,
}

/// What the receiving thread records: when each message (by index) was read.
type Receipts = Arc<Mutex<Vec<Instant>>>;

pub async fn run(
    holes: &[Duration],
    link: Link,
    mode: Mode,
    failover: bool,
    json: bool,
) -> anyhow::Result<()> {
    let link = match link {
        Link::Auto if netns::available() => Link::Netns,
        Link::Auto => {
            eprintln!(
                "bench failover: not root on Linux, so the link is the chaos proxy (--link proxy)"
            );
            Link::Proxy
        }
        link => link,
    };
    let mut results = Vec::new();
    match link {
        Link::Netns => {
            let net = netns::Pair::create()?;
            let flow = Flow::start(mode, failover, Some(&net), None).await?;
            for hole in holes {
                results.push(
                    flow.hole(*hole, || net.silence(true), || net.silence(false))
                        .await?,
                );
            }
            flow.stop();
            drop(net);
        }
        Link::Proxy | Link::Auto => {
            let proxy = Arc::new(Mutex::new(None::<ChaosProxy>));
            let flow = Flow::start(mode, failover, None, Some(proxy.clone())).await?;
            let silence = |on: bool| -> anyhow::Result<()> {
                let proxy = proxy.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                let proxy = proxy.as_ref().context("no proxy")?;
                if on {
                    proxy.silence();
                } else {
                    proxy.resume();
                }
                Ok(())
            };
            for hole in holes {
                results.push(
                    flow.hole(*hole, || silence(true), || silence(false))
                        .await?,
                );
            }
            flow.stop();
        }
    }
    let results: Vec<Recovery> = results
        .into_iter()
        .map(|(hole, first, backlog_s, backlog)| Recovery {
            scenario: "failover",
            link,
            mode,
            failover,
            hole_s: hole.as_secs_f64(),
            first_message_s: first.map(|d| d.as_secs_f64()),
            backlog_s: backlog_s.map(|d| d.as_secs_f64()),
            backlog,
        })
        .collect();
    if json {
        for r in &results {
            println!("{}", serde_json::to_string(r)?);
        }
    } else {
        let secs = |d: Option<f64>| d.map_or("not recovered".to_owned(), |d| format!("{d:.3} s"));
        println!(
            "failover: {mode:?}, link {link:?}, failover {}",
            if failover { "on" } else { "off" }
        );
        println!(
            "{:>8}  {:>22}  {:>22}  {:>8}",
            "hole", "first message after", "backlog delivered", "backlog"
        );
        for r in &results {
            println!(
                "{:>6.1} s  {:>22}  {:>22}  {:>8}",
                r.hole_s,
                secs(r.first_message_s),
                secs(r.backlog_s),
                r.backlog
            );
        }
    }
    Ok(())
}

/// The two nodes and the flow between them, each node on a thread (and in a namespace) of its
/// own.
struct Flow {
    sent: Arc<AtomicU64>,
    received: Receipts,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Flow {
    async fn start(
        mode: Mode,
        failover: bool,
        net: Option<&netns::Pair>,
        proxy: Option<Arc<Mutex<Option<ChaosProxy>>>>,
    ) -> anyhow::Result<Flow> {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let received: Receipts = Arc::default();
        let config = config(failover);
        let (listen, rx_ns, tx_ns) = match net {
            Some(net) => (
                format!("{}:0", netns::B_ADDR),
                Some(net.b.clone()),
                Some(net.a.clone()),
            ),
            None => ("127.0.0.1:0".to_owned(), None, None),
        };
        // The receiver.
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let receiver = {
            let (stop, received, config) = (stop.clone(), received.clone(), config.clone());
            node_thread(rx_ns, async move {
                let node = nio::builder("failover-rx", mode)
                    .config(config)
                    .listen(listen)
                    .start()
                    .await?;
                let _ = addr_tx.send(node.local_addrs()[0]);
                let mut events = node.events();
                while !stop.load(Ordering::SeqCst) {
                    let event = tokio::time::timeout(Duration::from_millis(100), events.recv());
                    let Ok(Some(Event::Message { peer })) = event.await else {
                        continue;
                    };
                    let now = Instant::now();
                    let mut received = received.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                    for message in peer.read_all_bytes() {
                        let index = message
                            .get(..8)
                            .and_then(|b| b.try_into().ok())
                            .map(u64::from_be_bytes)
                            .context("short message")?;
                        if index != received.len() as u64 {
                            bail!("message {index} arrived as number {}", received.len());
                        }
                        received.push(now);
                    }
                }
                node.shutdown().await;
                Ok(())
            })?
        };
        let mut target = addr_rx.await.context("the receiver did not start")?;
        if let Some(proxy) = &proxy {
            let started = ChaosProxy::start(target, ChaosConfig::default()).await?;
            target = started.local_addr();
            *proxy.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = Some(started);
        }
        // The sender.
        let sender = {
            let (stop, sent) = (stop.clone(), sent.clone());
            node_thread(tx_ns, async move {
                let node = nio::builder("failover-tx", mode)
                    .config(config)
                    .start()
                    .await?;
                let peer = node.connect(target).await?;
                let mut tick = tokio::time::interval(FLOW_INTERVAL);
                let mut payload = vec![0u8; 64];
                while !stop.load(Ordering::SeqCst) {
                    tick.tick().await;
                    let index = sent.load(Ordering::SeqCst);
                    payload[..8].copy_from_slice(&index.to_be_bytes());
                    // Waits while the window is full (a long hole).
                    peer.send_bytes(Bytes::copy_from_slice(&payload)).await?;
                    sent.fetch_add(1, Ordering::SeqCst);
                }
                node.shutdown().await;
                Ok(())
            })?
        };
        Ok(Flow {
            sent,
            received,
            stop,
            threads: vec![receiver, sender],
        })
    }

    /// Lets the flow settle, makes the link silent for `hole`, and measures the recovery.
    /// Returns the hole, the time to the first message after the return, the time to the
    /// backlog's delivery, and the backlog's size.
    async fn hole(
        &self,
        hole: Duration,
        silence: impl Fn() -> anyhow::Result<()>,
        restore: impl Fn() -> anyhow::Result<()>,
    ) -> anyhow::Result<(Duration, Option<Duration>, Option<Duration>, u64)> {
        tokio::time::sleep(SETTLE).await;
        if self.received()? == 0 {
            bail!("the flow did not start");
        }
        silence()?;
        tokio::time::sleep(hole).await;
        restore()?;
        let back = Instant::now();
        let backlog = self.sent.load(Ordering::SeqCst);
        let deadline = back + RECOVERY_LIMIT;
        let (mut first, mut done) = (None, None);
        while Instant::now() < deadline && done.is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let received = self
                .received
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?;
            first = first.or_else(|| {
                received
                    .iter()
                    .find(|t| **t >= back)
                    .map(|t| t.duration_since(back))
            });
            done = received
                .get(
                    usize::try_from(backlog)
                        .unwrap_or(usize::MAX)
                        .saturating_sub(1),
                )
                .filter(|_| backlog > 0)
                .map(|t| t.saturating_duration_since(back));
        }
        Ok((hole, first, done, backlog))
    }

    fn received(&self) -> anyhow::Result<usize> {
        Ok(self
            .received
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .len())
    }

    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads {
            match thread.join() {
                Ok(Err(e)) => eprintln!("bench failover: {e:#}"),
                Err(_) => eprintln!("bench failover: a node thread panicked"),
                Ok(Ok(())) => {}
            }
        }
    }
}

/// The nodes' configuration: defaults, or with failover off (a link is never suspected) to
/// measure what TCP and the idle timeout alone give.
fn config(failover: bool) -> NodeConfig {
    let mut config = NodeConfig::default();
    if !failover {
        config.protocol.suspect_floor = Duration::from_secs(24 * 3600);
    }
    config
}

/// Runs `f` on a thread of its own with a single-threaded runtime, inside the network
/// namespace `ns` (a name under /var/run/netns) if given: every socket the runtime opens then
/// belongs to that namespace.
fn node_thread<F>(
    ns: Option<String>,
    f: F,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<()>>>
where
    F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    Ok(std::thread::Builder::new()
        .name("failover-node".into())
        .spawn(move || {
            if let Some(ns) = ns {
                netns::enter(&ns)?;
            }
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(f)
        })?)
}

#[cfg(target_os = "linux")]
mod netns {
    //! Two network namespaces joined by a veth pair, made silent with a `blackhole` qdisc.

    use std::os::fd::AsFd;
    use std::process::Command;

    use anyhow::{Context, bail};

    /// The receiving node's address (in namespace `b`); the sender's is `.1`.
    pub const B_ADDR: &str = "10.213.0.2";
    const A_ADDR: &str = "10.213.0.1/24";
    const B_CIDR: &str = "10.213.0.2/24";

    /// Whether namespaces can be made: root, with `ip` and `tc`.
    pub fn available() -> bool {
        rustix::process::geteuid().is_root()
            && Command::new("ip").arg("-V").output().is_ok()
            && Command::new("tc").arg("-V").output().is_ok()
    }

    /// Moves the calling thread into the named namespace.
    pub fn enter(name: &str) -> anyhow::Result<()> {
        let file = std::fs::File::open(format!("/var/run/netns/{name}"))
            .with_context(|| format!("namespace {name}"))?;
        rustix::thread::move_into_link_name_space(
            file.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .with_context(|| format!("entering namespace {name}"))?;
        Ok(())
    }

    fn run(args: &[&str]) -> anyhow::Result<()> {
        let (program, rest) = args.split_first().context("empty command")?;
        let output = Command::new(program)
            .args(rest)
            .output()
            .with_context(|| format!("running {}", args.join(" ")))?;
        if !output.status.success() {
            bail!(
                "{} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    /// Namespaces `a` and `b` and the veth pair between them; removed on drop.
    pub struct Pair {
        pub a: String,
        pub b: String,
        va: String,
        vb: String,
    }

    impl Pair {
        pub fn create() -> anyhow::Result<Pair> {
            let id = std::process::id();
            let pair = Pair {
                a: format!("nio-failover-{id}-a"),
                b: format!("nio-failover-{id}-b"),
                // Interface names have at most 15 bytes.
                va: format!("niofo{}a", id % 1_000_000),
                vb: format!("niofo{}b", id % 1_000_000),
            };
            run(&["ip", "netns", "add", &pair.a])?;
            run(&["ip", "netns", "add", &pair.b])?;
            let (a, b, va, vb) = (&pair.a, &pair.b, &pair.va, &pair.vb);
            run(&["ip", "link", "add", va, "type", "veth", "peer", "name", vb])?;
            run(&["ip", "link", "set", va, "netns", a])?;
            run(&["ip", "link", "set", vb, "netns", b])?;
            run(&["ip", "-n", a, "addr", "add", A_ADDR, "dev", va])?;
            run(&["ip", "-n", b, "addr", "add", B_CIDR, "dev", vb])?;
            for (ns, dev) in [(a, va), (b, vb)] {
                run(&["ip", "-n", ns, "link", "set", dev, "up"])?;
                run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
            }
            Ok(pair)
        }

        /// Drops every packet in both directions (`on`), or no longer.
        pub fn silence(&self, on: bool) -> anyhow::Result<()> {
            for (ns, dev) in [(&self.a, &self.va), (&self.b, &self.vb)] {
                if on {
                    run(&[
                        "ip",
                        "netns",
                        "exec",
                        ns,
                        "tc",
                        "qdisc",
                        "add",
                        "dev",
                        dev,
                        "root",
                        "blackhole",
                    ])?;
                } else {
                    run(&[
                        "ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root",
                    ])?;
                }
            }
            Ok(())
        }
    }

    impl Drop for Pair {
        fn drop(&mut self) {
            // Removing a namespace removes its end of the veth pair, and with it the other.
            let _ = run(&["ip", "netns", "del", &self.a]);
            let _ = run(&["ip", "netns", "del", &self.b]);
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod netns {
    //! Network namespaces exist on Linux only.

    use anyhow::bail;

    pub const B_ADDR: &str = "";

    pub fn available() -> bool {
        false
    }

    pub fn enter(_: &str) -> anyhow::Result<()> {
        bail!("network namespaces need Linux")
    }

    pub struct Pair {
        pub a: String,
        pub b: String,
    }

    impl Pair {
        pub fn create() -> anyhow::Result<Pair> {
            bail!("--link netns needs Linux")
        }

        pub fn silence(&self, _: bool) -> anyhow::Result<()> {
            bail!("--link netns needs Linux")
        }
    }
}
