//! A small in-process TCP proxy that breaks connections on purpose.
//!
//! `networkio` promises exactly-once FIFO delivery across broken and resumed
//! connections. To exercise that promise, [`ChaosProxy`] sits between a client
//! and a server and forwards bytes both ways, cutting each connection at a
//! random point: after a random number of bytes (at *any* byte offset,
//! including in the middle of a protocol frame), after a random duration, on
//! demand ([`ChaosProxy::cut_all`]) or during a simulated partition
//! ([`ChaosProxy::pause`]). It can also refuse a fraction of new connections
//! outright, so failed reconnection attempts and cuts during a handshake get
//! exercised too. [`ChaosProxy::silence`] makes the link go silent instead of
//! breaking (a black hole: nothing is closed, nothing gets through), and
//! [`ChaosProxy::retarget`] points new connections at another server (an
//! address that comes to belong to another node).
//!
//! It is meant for tests and demos on the loopback interface only: it listens
//! on `127.0.0.1` and forwards only to the single target address it is given,
//! which callers should always give as a loopback address.
//!
//! All random choices are made by per-connection RNGs derived from
//! [`ChaosConfig::seed`] and the connection's index (0 for the first accepted
//! connection, 1 for the next, ...), so a run's refusals and cut points are
//! reproducible given the same traffic.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use networkio_chaos::{ChaosConfig, ChaosProxy};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! // Some server on loopback that the proxy will forward to.
//! let server = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let config = ChaosConfig {
//!     seed: 42,
//!     cut_after_bytes: Some(100..101),
//!     cut_after: Some(Duration::from_secs(5)..Duration::from_secs(10)),
//!     ..ChaosConfig::default()
//! };
//! let proxy = ChaosProxy::start(server.local_addr()?, config).await?;
//!
//! // Clients connect to the proxy instead of the server.
//! let mut client = tokio::net::TcpStream::connect(proxy.local_addr()).await?;
//! client.write_all(&[7u8; 500]).await?;
//!
//! // The server sees exactly 100 bytes, then the connection is cut (reset).
//! let (mut conn, _) = server.accept().await?;
//! let mut received = Vec::new();
//! let result = conn.read_to_end(&mut received).await;
//! assert_eq!(received.len(), 100);
//! assert!(result.is_err(), "the cut resets the connection");
//! assert_eq!(proxy.stats().cuts, 1);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::pending;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

/// Size of the buffer used for each direction of a proxied connection.
const CHUNK: usize = 16 * 1024;

/// Multiplier used to derive a per-connection RNG seed from the proxy seed.
const SEED_MIX: u64 = 0x9E37_79B9_7F4A_7C15;

/// How a [`ChaosProxy`] misbehaves.
///
/// The default ([`ChaosConfig::default`]) is a well-behaved proxy: seed 0, no
/// cuts, cuts would be resets, no refusals.
#[derive(Debug, Clone, PartialEq)]
pub struct ChaosConfig {
    /// Seed for the per-connection RNGs. Connection number `i` (counting
    /// accepted connections from 0) uses
    /// `StdRng::seed_from_u64(seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15))`,
    /// drawing first whether to refuse it, then its byte budget, then its
    /// time budget.
    pub seed: u64,
    /// Each connection is cut after a random number of bytes (counted in both
    /// directions together) drawn uniformly from this range; `None` = never
    /// cut by bytes.
    ///
    /// The cut happens at exactly that byte offset, even in the middle of a
    /// chunk of data read from one side: the bytes up to the budget are
    /// forwarded and then both sockets are cut. A budget of 0 cuts the
    /// connection as soon as it is established, before any byte passes.
    /// The range must not be empty.
    pub cut_after_bytes: Option<Range<u64>>,
    /// Each connection is also cut after a random duration (measured from
    /// when the proxy accepted it) drawn uniformly from this range; `None` =
    /// never cut by time. The range must not be empty.
    pub cut_after: Option<Range<Duration>>,
    /// How to cut: when true, reset (RST: `SO_LINGER` is set to 0 before the
    /// sockets are dropped, so both peers see `ECONNRESET`) — otherwise a plain
    /// close (FIN, so both peers see end-of-stream).
    pub reset: bool,
    /// Refuse (immediately close) a fraction of new connections, `0.0..=1.0`,
    /// to exercise failed (re)connection attempts and cuts during the
    /// handshake. A refused connection is accepted at the TCP level and then
    /// closed (reset or FIN, per [`ChaosConfig::reset`]) without ever
    /// connecting to the target.
    pub refuse_probability: f64,
}

impl Default for ChaosConfig {
    fn default() -> Self {
        ChaosConfig {
            seed: 0,
            cut_after_bytes: None,
            cut_after: None,
            reset: true,
            refuse_probability: 0.0,
        }
    }
}

impl ChaosConfig {
    /// Checks the parts of the configuration that would otherwise panic when
    /// drawing random values.
    fn validate(&self) -> io::Result<()> {
        let invalid = |msg: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        if !(0.0..=1.0).contains(&self.refuse_probability) {
            return invalid("refuse_probability must be within 0.0..=1.0");
        }
        if self.cut_after_bytes.as_ref().is_some_and(Range::is_empty) {
            return invalid("cut_after_bytes must not be an empty range");
        }
        if self.cut_after.as_ref().is_some_and(Range::is_empty) {
            return invalid("cut_after must not be an empty range");
        }
        Ok(())
    }
}

/// A snapshot of a [`ChaosProxy`]'s counters, from [`ChaosProxy::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChaosStats {
    /// Connections accepted and forwarded to the target (refused ones are not
    /// counted here).
    pub accepted: u64,
    /// Connections refused, either by [`ChaosConfig::refuse_probability`] or
    /// because the proxy was paused.
    pub refused: u64,
    /// Connections cut: by the byte budget, by the time budget, by
    /// [`ChaosProxy::cut_all`] or by [`ChaosProxy::pause`]. Connections torn
    /// down by [`ChaosProxy::shutdown`] are not counted.
    pub cuts: u64,
    /// Bytes forwarded from clients to the target.
    pub bytes_up: u64,
    /// Bytes forwarded from the target to clients.
    pub bytes_down: u64,
}

/// The live counters behind [`ChaosStats`].
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
    cuts: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

/// State shared between the proxy handle, its accept task and its
/// connection tasks.
#[derive(Debug)]
struct Shared {
    /// Where new connections are forwarded (see `ChaosProxy::retarget`).
    target: watch::Sender<SocketAddr>,
    config: ChaosConfig,
    counters: Counters,
    paused: AtomicBool,
    /// Bumped to cut every live connection (by `cut_all` and `pause`).
    cut_generation: watch::Sender<u64>,
    /// Bumped to silence every live connection (by `silence`).
    silence_generation: watch::Sender<u64>,
    /// Set to true once to stop everything.
    shutdown: watch::Sender<bool>,
}

impl Shared {
    fn cut_all(&self) {
        self.cut_generation
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }
}

/// An in-process TCP proxy on `127.0.0.1` that forwards to one target and
/// breaks connections according to its [`ChaosConfig`].
///
/// Needs a Tokio runtime (with the time driver enabled) to run on. Dropping the
/// proxy shuts it down, as [`ChaosProxy::shutdown`] does.
#[derive(Debug)]
pub struct ChaosProxy {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
}

impl ChaosProxy {
    /// Listens on 127.0.0.1:0 and forwards every accepted connection to
    /// `target`.
    ///
    /// `target` should be a loopback address: this proxy is for tests and
    /// demos only. Must be called within a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] if `config` has a refuse probability
    /// outside `0.0..=1.0` or an empty range; otherwise the error from binding
    /// the listener.
    pub async fn start(target: SocketAddr, config: ChaosConfig) -> io::Result<ChaosProxy> {
        config.validate()?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target: watch::Sender::new(target),
            config,
            counters: Counters::default(),
            paused: AtomicBool::new(false),
            cut_generation: watch::Sender::new(0),
            silence_generation: watch::Sender::new(0),
            shutdown: watch::Sender::new(false),
        });
        tracing::debug!(%local_addr, %target, "chaos proxy started");
        tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(ChaosProxy { shared, local_addr })
    }

    /// The address clients should connect to (on 127.0.0.1).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The target address new connections are forwarded to.
    pub fn target(&self) -> SocketAddr {
        *self.shared.target.borrow()
    }

    /// Forwards connections accepted from now on to `target` (a loopback address) instead:
    /// the proxy's address comes to lead to another server. Live connections keep theirs.
    pub fn retarget(&self, target: SocketAddr) {
        tracing::debug!(proxy = %self.local_addr, %target, "retargeting");
        self.shared.target.send_replace(target);
    }

    /// Starts a silent hole: every live connection stays open but nothing gets through any
    /// more, in either direction, ever (bytes are read and dropped, as a network that loses
    /// every packet; unlike a real path, these connections never recover, which is the worst
    /// case of TCP's retransmission backoff: only a fresh connection gets through). While
    /// silent, new connections are refused (accepted and reset: on loopback the kernel
    /// completes TCP handshakes before the proxy sees them, so it cannot drop SYNs).
    /// [`ChaosProxy::resume`] ends the hole for new connections.
    pub fn silence(&self) {
        tracing::debug!(proxy = %self.local_addr, "silencing (black hole)");
        // As in `pause`: a connection accepted concurrently is refused or silenced.
        self.shared.paused.store(true, Ordering::SeqCst);
        self.shared
            .silence_generation
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    /// A snapshot of the proxy's counters.
    pub fn stats(&self) -> ChaosStats {
        let c = &self.shared.counters;
        ChaosStats {
            accepted: c.accepted.load(Ordering::SeqCst),
            refused: c.refused.load(Ordering::SeqCst),
            cuts: c.cuts.load(Ordering::SeqCst),
            bytes_up: c.bytes_up.load(Ordering::SeqCst),
            bytes_down: c.bytes_down.load(Ordering::SeqCst),
        }
    }

    /// Cuts every live connection now (e.g. to simulate a network partition
    /// moment). Connections accepted afterwards are unaffected.
    ///
    /// The cuts are carried out by the connections' tasks as soon as they
    /// run; this call does not wait for them.
    pub fn cut_all(&self) {
        tracing::debug!(proxy = %self.local_addr, "cutting all connections");
        self.shared.cut_all();
    }

    /// Stops accepting and cuts everything (also done on drop).
    ///
    /// The listener is closed and the connections are torn down by the
    /// proxy's tasks as soon as they run; this call does not wait for them.
    /// Idempotent.
    pub fn shutdown(&self) {
        if !self.shared.shutdown.send_replace(true) {
            tracing::debug!(proxy = %self.local_addr, "chaos proxy shutting down");
        }
    }

    /// Starts a partition: while paused, new connections are refused and
    /// existing ones are cut. [`ChaosProxy::resume`] ends it.
    pub fn pause(&self) {
        tracing::debug!(proxy = %self.local_addr, "pausing (partition)");
        // Order matters: a connection accepted concurrently either sees the
        // flag (and is refused) or was subscribed before the cut (and is cut).
        self.shared.paused.store(true, Ordering::SeqCst);
        self.shared.cut_all();
    }

    /// Ends a partition started by [`ChaosProxy::pause`] or a hole started by
    /// [`ChaosProxy::silence`]: new connections are forwarded again.
    pub fn resume(&self) {
        tracing::debug!(proxy = %self.local_addr, "resuming");
        self.shared.paused.store(false, Ordering::SeqCst);
    }

    /// Whether the proxy is currently paused (see [`ChaosProxy::pause`]).
    pub fn is_paused(&self) -> bool {
        self.shared.paused.load(Ordering::SeqCst)
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The random plan for one accepted connection.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Total bytes (both directions) to forward before cutting.
    byte_budget: Option<u64>,
    /// When to cut regardless of traffic.
    deadline: Option<Instant>,
}

/// Why a connection is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CutReason {
    Bytes,
    Time,
    /// `cut_all` or `pause`.
    Manual,
}

/// How the forwarding of a connection ended.
enum Outcome {
    /// Both directions reached end-of-stream.
    Closed,
    /// The proxy cut the connection.
    Cut(CutReason),
    /// The proxy silenced the connection (see `ChaosProxy::silence`).
    Silenced,
    /// The proxy is shutting down.
    Shutdown,
    /// A socket operation failed (e.g. a peer reset its side).
    Failed(io::Error),
}

/// How one direction of a connection ended.
enum PumpEnd {
    /// Read end-of-stream and half-closed the writing side.
    Eof,
    /// Forwarded the last byte of the byte budget.
    BudgetExhausted,
    /// A read, write or shutdown failed.
    Failed(io::Error),
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Closed => f.write_str("closed"),
            Outcome::Cut(reason) => write!(f, "cut ({reason:?})"),
            Outcome::Silenced => f.write_str("silenced"),
            Outcome::Shutdown => f.write_str("shutdown"),
            Outcome::Failed(e) => write!(f, "failed ({e})"),
        }
    }
}

/// Accepts connections until shutdown, refusing or forwarding each.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let config = &shared.config;
    let mut next_index: u64 = 0;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => accepted,
        };
        let (client, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // E.g. out of file descriptors: don't spin.
                tracing::warn!(error = %e, "chaos proxy accept failed");
                tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => break,
                    () = tokio::time::sleep(Duration::from_millis(10)) => continue,
                }
            }
        };
        let index = next_index;
        next_index += 1;
        let mut rng = StdRng::seed_from_u64(config.seed ^ index.wrapping_mul(SEED_MIX));
        // Subscribe before looking at `paused` (see `ChaosProxy::pause`).
        let cuts = shared.cut_generation.subscribe();
        let silenced = shared.silence_generation.subscribe();
        let refuse = rng.random_bool(config.refuse_probability);
        if refuse || shared.paused.load(Ordering::SeqCst) {
            tracing::debug!(index, %peer, paused = !refuse, "refusing connection");
            Counters::bump(&shared.counters.refused);
            close(client, config.reset);
            continue;
        }
        Counters::bump(&shared.counters.accepted);
        let plan = Plan {
            byte_budget: config
                .cut_after_bytes
                .clone()
                .map(|range| rng.random_range(range)),
            deadline: config
                .cut_after
                .clone()
                .map(|range| Instant::now() + rng.random_range(range)),
        };
        tracing::trace!(index, %peer, ?plan, "accepted connection");
        tokio::spawn(proxy_connection(
            Arc::clone(&shared),
            index,
            client,
            plan,
            (cuts, silenced),
        ));
    }
    tracing::debug!(addr = ?listener.local_addr().ok(), "chaos proxy stopped accepting");
}

/// Forwards one connection until it ends, is cut, or the proxy shuts down.
async fn proxy_connection(
    shared: Arc<Shared>,
    index: u64,
    mut client: TcpStream,
    plan: Plan,
    (mut cuts, mut silenced): (watch::Receiver<u64>, watch::Receiver<u64>),
) {
    let mut shutdown = shared.shutdown.subscribe();
    let reset = shared.config.reset;
    let deadline = async {
        match plan.deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => pending().await,
        }
    };
    tokio::pin!(deadline);

    let connected = tokio::select! {
        biased;
        _ = shutdown.wait_for(|stop| *stop) => Err(Outcome::Shutdown),
        _ = cuts.changed() => Err(Outcome::Cut(CutReason::Manual)),
        () = &mut deadline => Err(Outcome::Cut(CutReason::Time)),
        connected = TcpStream::connect(*shared.target.borrow()) => connected.map_err(Outcome::Failed),
    };
    let mut target = match connected {
        Ok(target) => target,
        Err(outcome) => {
            tracing::debug!(
                index,
                ?outcome,
                "connection ended before reaching the target"
            );
            if matches!(outcome, Outcome::Cut(_)) {
                Counters::bump(&shared.counters.cuts);
            }
            close(client, reset || matches!(outcome, Outcome::Failed(_)));
            return;
        }
    };
    // Forward small writes promptly; failures here are harmless.
    let _ = client.set_nodelay(true);
    let _ = target.set_nodelay(true);

    let budget = plan.byte_budget.map(AtomicU64::new);
    let outcome = if plan.byte_budget == Some(0) {
        Outcome::Cut(CutReason::Bytes)
    } else {
        let counters = &shared.counters;
        let (mut client_read, mut client_write) = client.split();
        let (mut target_read, mut target_write) = target.split();
        let up = pump(
            &mut client_read,
            &mut target_write,
            budget.as_ref(),
            &counters.bytes_up,
        );
        let down = pump(
            &mut target_read,
            &mut client_write,
            budget.as_ref(),
            &counters.bytes_down,
        );
        tokio::pin!(up, down);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            let end = tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => break Outcome::Shutdown,
                _ = cuts.changed() => break Outcome::Cut(CutReason::Manual),
                _ = silenced.changed() => break Outcome::Silenced,
                () = &mut deadline => break Outcome::Cut(CutReason::Time),
                end = &mut up, if !up_done => {
                    up_done = true;
                    end
                }
                end = &mut down, if !down_done => {
                    down_done = true;
                    end
                }
            };
            match end {
                PumpEnd::Eof if up_done && down_done => break Outcome::Closed,
                PumpEnd::Eof => {}
                PumpEnd::BudgetExhausted => break Outcome::Cut(CutReason::Bytes),
                PumpEnd::Failed(e) => break Outcome::Failed(e),
            }
        }
    };

    tracing::debug!(index, ?outcome, "connection ended");
    match outcome {
        Outcome::Closed => {}
        Outcome::Silenced => black_hole(client, target, &mut shutdown).await,
        Outcome::Cut(_) => {
            Counters::bump(&shared.counters.cuts);
            close(client, reset);
            close(target, reset);
        }
        Outcome::Shutdown => {
            close(client, reset);
            close(target, reset);
        }
        // Propagate a failure on one side as an abort of the other.
        Outcome::Failed(_) => {
            close(client, true);
            close(target, true);
        }
    }
}

/// Keeps a silenced connection open and drops whatever either side sends, until the proxy shuts
/// down (or both sides have closed).
async fn black_hole(
    mut client: TcpStream,
    mut target: TcpStream,
    shutdown: &mut watch::Receiver<bool>,
) {
    let (mut a, mut b) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let (mut client_open, mut target_open) = (true, true);
    while client_open || target_open {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            read = client.read(&mut a), if client_open => client_open = matches!(read, Ok(n) if n > 0),
            read = target.read(&mut b), if target_open => target_open = matches!(read, Ok(n) if n > 0),
        }
    }
    close(client, true);
    close(target, true);
}

/// Forwards one direction until end-of-stream, failure, or the end of the
/// byte budget (shared by both directions).
async fn pump(
    from: &mut ReadHalf<'_>,
    to: &mut WriteHalf<'_>,
    budget: Option<&AtomicU64>,
    forwarded: &AtomicU64,
) -> PumpEnd {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => {
                // Half-close, like a real TCP path, and let the other
                // direction carry on.
                return match to.shutdown().await {
                    Ok(()) => PumpEnd::Eof,
                    Err(e) => PumpEnd::Failed(e),
                };
            }
            Ok(n) => n,
            Err(e) => return PumpEnd::Failed(e),
        };
        let (allowed, exhausted) = match budget {
            Some(budget) => take_budget(budget, n),
            None => (n, false),
        };
        if allowed == 0 {
            // The other direction took the rest of the budget and is about to
            // cut the connection once its write is done.
            return pending().await;
        }
        if let Err(e) = to.write_all(&buf[..allowed]).await {
            return PumpEnd::Failed(e);
        }
        forwarded.fetch_add(allowed as u64, Ordering::SeqCst);
        if exhausted {
            return PumpEnd::BudgetExhausted;
        }
    }
}

/// Takes up to `n` bytes from `budget`. Returns how many may be forwarded and
/// whether the budget is now used up (the connection must then be cut once
/// they are forwarded).
fn take_budget(budget: &AtomicU64, n: usize) -> (usize, bool) {
    let wanted = n as u64;
    let before = match budget.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
        Some(left.saturating_sub(wanted))
    }) {
        Ok(before) | Err(before) => before,
    };
    let allowed = before.min(wanted);
    // `allowed <= wanted == n`, so this conversion is lossless.
    (allowed as usize, before <= wanted)
}

/// Closes `stream`: with an RST if `reset`, otherwise with a FIN.
fn close(stream: TcpStream, reset: bool) {
    if reset {
        if let Err(e) = stream.set_zero_linger() {
            tracing::debug!(error = %e, "could not set SO_LINGER to 0");
        }
    }
    drop(stream);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_shared_and_exact() {
        let budget = AtomicU64::new(1000);
        assert_eq!(take_budget(&budget, 600), (600, false));
        assert_eq!(take_budget(&budget, 600), (400, true));
        assert_eq!(take_budget(&budget, 10), (0, true));
    }

    #[test]
    fn budget_exhausted_on_exact_fit() {
        let budget = AtomicU64::new(16);
        assert_eq!(take_budget(&budget, 16), (16, true));
    }

    #[test]
    fn config_validation() {
        assert!(ChaosConfig::default().validate().is_ok());
        let bad_probability = ChaosConfig {
            refuse_probability: 1.5,
            ..ChaosConfig::default()
        };
        assert!(bad_probability.validate().is_err());
        let nan = ChaosConfig {
            refuse_probability: f64::NAN,
            ..ChaosConfig::default()
        };
        assert!(nan.validate().is_err());
        let empty_bytes = ChaosConfig {
            cut_after_bytes: Some(5..5),
            ..ChaosConfig::default()
        };
        assert!(empty_bytes.validate().is_err());
        let empty_time = ChaosConfig {
            cut_after: Some(Duration::from_secs(1)..Duration::from_secs(1)),
            ..ChaosConfig::default()
        };
        assert!(empty_time.validate().is_err());
    }

    #[test]
    fn default_config() {
        let config = ChaosConfig::default();
        assert_eq!(config.seed, 0);
        assert!(config.cut_after_bytes.is_none());
        assert!(config.cut_after.is_none());
        assert!(config.reset);
        assert_eq!(config.refuse_probability, 0.0);
    }
}
