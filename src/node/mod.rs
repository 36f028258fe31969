//! The tokio driver: [`Node`], its builder, and the tasks that run connections.
//!
//! This is the only part of the crate that uses tokio. Each connection is one task that moves
//! bytes between its socket and the peer's sans-IO [`Session`](crate::proto::Session); the
//! application's [`Peer`] handles share that session behind a mutex, as quinn's handles share
//! its connection state.

mod attach;
mod dial;
mod driver;
mod events;
mod export;
mod listen;
mod peer;
mod recv;
mod stats;
mod transport;
mod watch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use dial::DialAddr;
pub use events::{Event, Events};
pub use peer::{ConnectionState, OwnedReceipt, Peer, PeerStats, Receipt};
pub use recv::{ByteMessages, Messages};
pub use stats::{HandshakeRefusals, NodeStats};

use crate::error::{Error, Result};
use crate::proto::{self, Session, validate_name};
use crate::security::{Identity, PublicKey, Security, TlsConfigs, TrustPolicy};
use events::EventQueue;
use peer::PeerInner;
use stats::NodeCounters;
use transport::HandshakeSlots;

/// Every limit and timer of a node. All explicit; see [`NodeConfig::default`] for the values.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NodeConfig {
    /// Protocol limits and timers: message size, windows, inbox, heartbeat, idle timeout,
    /// handshake deadline, session expiry.
    pub protocol: proto::Config,
    /// Most simultaneous connections (accepted and dialed); more are refused. Default 16,384.
    pub max_connections: usize,
    /// Most accepted connections still in their handshake; when full, the oldest is dropped
    /// for the newest. Default 256.
    pub max_pending_handshakes: usize,
    /// Most sessions (peers) the node keeps; connections naming new peers beyond it are refused.
    /// Memory per session is bounded by its window and inbox limits. Default 16,384.
    pub max_sessions: usize,
    /// First reconnect delay. Default 50 ms.
    pub reconnect_initial: Duration,
    /// Largest reconnect delay (the backoff doubles up to it, with jitter). Default 5 s.
    pub reconnect_max: Duration,
    /// Timeout of one TCP connect attempt. Default 10 s.
    pub connect_timeout: Duration,
    /// How a dialer races fresh connections against a link its session suspects dead (see
    /// [`Session::is_suspect`](crate::proto::Session::is_suspect)): default one attempt every
    /// 250 ms, each given 750 ms to connect, at most 3 at once.
    pub failover: proto::redial::Race,
    /// How long [`Node::shutdown`] waits for unacknowledged messages to be acknowledged by
    /// connected peers before closing. Default 5 s.
    pub shutdown_linger: Duration,
    /// Whether the node keeps node-wide totals and records them with the `metrics` facade
    /// (see [`NodeBuilder::metrics`]). Default on.
    pub metrics: bool,
    /// How often the node records its statistics with the `metrics` facade. Default 1 s.
    pub metrics_interval: Duration,
    /// Most [`Event::Refused`] waiting in the event queue; further refusals are only counted
    /// (in the last one's `suppressed`) until the application takes some. 0 reports none.
    /// Default 64.
    pub max_queued_refusals: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            protocol: proto::Config::default(),
            max_connections: 16 * 1024,
            max_pending_handshakes: 256,
            max_sessions: 16 * 1024,
            reconnect_initial: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            failover: proto::redial::Race::default(),
            shutdown_linger: Duration::from_secs(5),
            metrics: true,
            metrics_interval: export::DEFAULT_INTERVAL,
            max_queued_refusals: 64,
        }
    }
}

impl NodeConfig {
    fn validate(&self) -> Result<()> {
        let p = &self.protocol;
        let check = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(Error::InvalidConfig(what.to_owned()))
            }
        };
        check(p.window.messages > 0, "window messages must be > 0")?;
        check(p.inbox.messages > 0, "inbox messages must be > 0")?;
        check(p.inbox.bytes > 0, "inbox bytes must be > 0")?;
        check(
            p.window.max_message <= u32::MAX as usize - 64,
            "max message size must fit a 32-bit frame length",
        )?;
        check(
            p.max_frame_len >= p.window.max_message + proto::frame::DATA_OVERHEAD - 4,
            "max frame length must hold the largest message",
        )?;
        check(
            p.handshake_frame_len >= 300,
            "handshake frame limit must be >= 300 bytes",
        )?;
        check(
            p.idle_timeout > p.heartbeat_interval,
            "idle timeout must exceed the heartbeat interval",
        )?;
        check(
            p.idle_timeout >= Duration::from_millis(100),
            "idle timeout must be at least 100 ms",
        )?;
        check(p.window.max_message > 0, "max message size must be > 0")?;
        check(
            p.inbox.bytes >= p.window.max_message,
            "inbox bytes must hold at least one message of the maximum size",
        )?;
        check(
            !p.handshake_timeout.is_zero(),
            "handshake timeout must be > 0",
        )?;
        check(self.max_connections > 0, "max connections must be > 0")?;
        check(
            self.max_connections <= Semaphore::MAX_PERMITS,
            "max connections is too large",
        )?;
        check(
            self.max_pending_handshakes > 0,
            "max pending handshakes must be > 0",
        )?;
        check(self.max_sessions > 0, "max sessions must be > 0")?;
        check(
            !self.metrics_interval.is_zero(),
            "metrics interval must be > 0",
        )?;
        check(
            !self.failover.interval.is_zero() && !self.failover.connect_timeout.is_zero(),
            "failover interval and connect timeout must be > 0",
        )?;
        check(
            self.failover.max_in_flight > 0,
            "failover attempts in flight must be > 0",
        )?;
        check(
            self.reconnect_initial <= self.reconnect_max,
            "reconnect initial delay must not exceed the maximum",
        )
    }
}

/// Builds a [`Node`]. Start from [`Node::builder`].
#[derive(Debug)]
pub struct NodeBuilder {
    pub(crate) name: String,
    listen: Vec<String>,
    config: NodeConfig,
    identity: Option<Identity>,
    trust: TrustPolicy,
    plaintext: bool,
}

impl NodeBuilder {
    /// Also accept connections on `addr` (`"127.0.0.1:8080"`, `"[::1]:0"`; port 0 picks one,
    /// see [`Node::local_addrs`]). May be called several times.
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen.push(addr.into());
        self
    }

    /// This node's key pair (default: a new random one, which peers cannot recognise after a
    /// restart: give long-lived nodes a key from a file, see [`Identity::from_file`]).
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Who may connect as which name (default [`TrustPolicy::Open`]).
    pub fn trust(mut self, trust: TrustPolicy) -> Self {
        self.trust = trust;
        self
    }

    /// **Insecure.** No TLS: no encryption, no authentication; anyone who can reach the node can
    /// claim any name and read what is sent. For trusted networks and benchmarks only; both
    /// sides must use it.
    pub fn insecure_plaintext(mut self) -> Self {
        self.plaintext = true;
        self
    }

    /// Most accepted connections still in their handshake (default 256; the oldest is dropped
    /// when full).
    pub fn max_pending_handshakes(mut self, max: usize) -> Self {
        self.config.max_pending_handshakes = max;
        self
    }

    /// Most sessions (peers) kept (default 16,384).
    pub fn max_sessions(mut self, max: usize) -> Self {
        self.config.max_sessions = max;
        self
    }

    /// Most refused handshakes waiting in the event queue as [`Event::Refused`] (default 64;
    /// beyond it they are counted, not queued; 0 reports none).
    pub fn max_queued_refusals(mut self, max: usize) -> Self {
        self.config.max_queued_refusals = max;
        self
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: NodeConfig) -> Self {
        self.config = config;
        self
    }

    /// Largest message payload, in bytes (default 1 MiB). Frames are limited accordingly.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.protocol.set_max_message(bytes);
        self
    }

    /// Outbound window per peer: messages and payload bytes not yet acknowledged
    /// (default 16,384 and 8 MiB). `send` waits while it is full.
    pub fn window(mut self, messages: usize, bytes: usize) -> Self {
        self.config.protocol.window.messages = messages;
        self.config.protocol.window.bytes = bytes;
        self
    }

    /// Inbox per peer: messages and payload bytes received but not yet read (default 16,384
    /// and 8 MiB). The peer may only send what fits (flow control); the byte limit must be at
    /// least the maximum message size.
    pub fn inbox(mut self, messages: usize, bytes: usize) -> Self {
        self.config.protocol.inbox.messages = messages;
        self.config.protocol.inbox.bytes = bytes;
        self
    }

    /// Heartbeat interval and idle timeout (default 5 s and 20 s).
    pub fn heartbeat(mut self, interval: Duration, idle_timeout: Duration) -> Self {
        self.config.protocol.heartbeat_interval = interval;
        self.config.protocol.idle_timeout = idle_timeout;
        self
    }

    /// Longest an acknowledgement waits to be coalesced while data streams in (default 1 ms).
    /// Messages arriving a few at a time, and the end of a burst (once the connection has no
    /// more to read), are acknowledged at once whatever this is; a longer delay means fewer ACKs
    /// during bulk transfer that the receiver reads more slowly than it arrives.
    pub fn ack_delay(mut self, delay: Duration) -> Self {
        self.config.protocol.ack_delay = delay;
        self
    }

    /// Absolute deadline for a connection's handshake (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.protocol.handshake_timeout = timeout;
        self
    }

    /// How long a session outlives its last connection (default 1 hour).
    pub fn session_expiry(mut self, expiry: Duration) -> Self {
        self.config.protocol.session_expiry = expiry;
        self
    }

    /// Most simultaneous connections (default 16,384).
    pub fn max_connections(mut self, max: usize) -> Self {
        self.config.max_connections = max;
        self
    }

    /// Reconnect backoff: first delay and cap (default 50 ms and 5 s).
    pub fn reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.config.reconnect_initial = initial;
        self.config.reconnect_max = max;
        self
    }

    /// How long shutdown waits for acknowledgements (default 5 s).
    pub fn shutdown_linger(mut self, linger: Duration) -> Self {
        self.config.shutdown_linger = linger;
        self
    }

    /// Whether to keep node-wide totals ([`Node::stats`]) and record them with the `metrics`
    /// facade every [`NodeConfig::metrics_interval`] (default on). Off, the node's counters
    /// stay zero and nothing is recorded; [`Peer::stats`] is complete either way (the
    /// per-session counting is a few additions per message, always on). Off exists to measure
    /// what the node-wide accounting costs.
    pub fn metrics(mut self, enabled: bool) -> Self {
        self.config.metrics = enabled;
        self
    }

    /// How often the node records its statistics with the `metrics` facade (default 1 s).
    pub fn metrics_interval(mut self, interval: Duration) -> Self {
        self.config.metrics_interval = interval;
        self
    }

    /// Validates the configuration, binds the listeners and starts the node.
    pub async fn start(self) -> Result<Node> {
        validate_name(&self.name)?;
        self.config.validate()?;
        let (security, public_key) = if self.plaintext {
            (Security::InsecurePlaintext, None)
        } else {
            let identity = match self.identity {
                Some(identity) => identity,
                None => Identity::generate()?,
            };
            let configs = TlsConfigs::new(&identity, self.trust)?;
            (
                Security::Tls(Arc::new(configs)),
                Some(identity.public_key()),
            )
        };
        let mut listeners = Vec::new();
        for addr in &self.listen {
            listeners.push(bind(addr.as_str()).await?);
        }
        let local_addrs = listeners
            .iter()
            .map(TcpListener::local_addr)
            .collect::<std::io::Result<Vec<_>>>()?;
        let max_queued_refusals = self.config.max_queued_refusals;
        let shared = Arc::new(NodeShared {
            name: self.name,
            incarnation: new_incarnation(),
            connections: Arc::new(Semaphore::new(self.config.max_connections)),
            handshakes: HandshakeSlots::new(self.config.max_pending_handshakes),
            security,
            public_key,
            config: self.config,
            peers: Mutex::new(HashMap::new()),
            last_reclaim: Mutex::new(None),
            events: Arc::new(EventQueue::new(max_queued_refusals)),
            closing: CancellationToken::new(),
            closed: CancellationToken::new(),
            aborted: std::sync::atomic::AtomicBool::new(false),
            tasks: TaskTracker::new(),
            local_addrs,
            counters: NodeCounters::default(),
        });
        for listener in listeners {
            shared
                .tasks
                .spawn(listen::accept_loop(shared.clone(), listener));
        }
        let node = Node { shared };
        if node.shared.config.metrics {
            node.shared.tasks.spawn(publish_periodically(node.clone()));
        }
        tracing::debug!(name = %node.shared.name, addrs = ?node.shared.local_addrs, "node started");
        Ok(node)
    }
}

/// Records the node's statistics with the `metrics` facade every interval until shutdown (which
/// records them a last time itself).
async fn publish_periodically(node: Node) {
    let mut tick = tokio::time::interval(node.shared.config.metrics_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = node.shared.closed.cancelled() => return,
            _ = tick.tick() => node.publish_metrics(),
        }
    }
}

async fn bind(addr: impl ToSocketAddrs) -> Result<TcpListener> {
    Ok(TcpListener::bind(addr).await?)
}

fn new_incarnation() -> u64 {
    // Non-zero: zero means "no session" on the wire.
    loop {
        let v: u64 = rand::random();
        if v != 0 {
            return v;
        }
    }
}

/// State shared by the node's handles and tasks.
pub(crate) struct NodeShared {
    pub(crate) name: String,
    pub(crate) incarnation: u64,
    pub(crate) config: NodeConfig,
    pub(crate) peers: Mutex<HashMap<String, Arc<PeerInner>>>,
    /// When the session cap last made a reclaiming scan of `peers`.
    pub(crate) last_reclaim: Mutex<Option<Instant>>,
    pub(crate) events: Arc<EventQueue>,
    /// Connection cap: one permit per live connection.
    pub(crate) connections: Arc<Semaphore>,
    /// Accepted connections still in their handshake.
    pub(crate) handshakes: Arc<HandshakeSlots>,
    pub(crate) security: Security,
    pub(crate) public_key: Option<PublicKey>,
    /// Shutdown has begun: no new connections or messages.
    pub(crate) closing: CancellationToken,
    /// Connections must close now.
    pub(crate) closed: CancellationToken,
    /// Set before `closed` by [`Node::abort`]: close without goodbyes, as a crash would.
    pub(crate) aborted: std::sync::atomic::AtomicBool,
    pub(crate) tasks: TaskTracker,
    pub(crate) local_addrs: Vec<SocketAddr>,
    /// Node-wide totals (see `stats`); kept only with `config.metrics`.
    pub(crate) counters: NodeCounters,
}

/// Whether a peer entry carries nothing worth keeping: no session, no connection, nothing queued
/// either way, nothing handed back waiting for the application.
pub(crate) fn holds_nothing(peer: &PeerInner) -> bool {
    let core = peer.lock();
    core.session.peer_incarnation() == 0
        && core.session.link_id().is_none()
        && core.session.unacked_len() == 0
        && core.session.inbox_len() == 0
        && core.handed_back.is_empty()
}

impl NodeShared {
    /// Every refusal by this node goes through here: counted (with metrics on) and reported to
    /// the application as an [`Event::Refused`], so the two cannot drift apart.
    pub(crate) fn refuse(
        &self,
        addr: SocketAddr,
        name: Option<&str>,
        key: Option<PublicKey>,
        reason: crate::proto::admission::RefusalReason,
    ) {
        if self.config.metrics {
            self.counters.refused(stats::Refused::Us(reason));
        }
        self.events.refused(addr, name, key, reason);
    }

    /// Drops a peer entry that a connection created but never used: no session, nothing queued,
    /// no connection, and no handle held outside the node. Failed handshakes leave nothing behind.
    pub(crate) fn forget_if_unused(&self, peer: &Arc<PeerInner>) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        // Two references: the map's and the caller's.
        if Arc::strong_count(peer) <= 2 && holds_nothing(peer) {
            peers.remove(&peer.name);
        }
    }

    /// The peer named `name`, created (with an empty session) if unknown and the session cap
    /// allows.
    pub(crate) fn peer_entry(&self, name: &str) -> Option<Arc<PeerInner>> {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if !peers.contains_key(name) && peers.len() >= self.config.max_sessions {
            // Full: make room from entries whose sessions ended (expired, lost) and that nobody
            // holds a handle to. The scan visits every entry, so strangers knocking at the cap
            // get it at most once a second; the rest are refused.
            let now = Instant::now();
            let mut last = self.last_reclaim.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|at| now.saturating_duration_since(at) < Duration::from_secs(1)) {
                return None;
            }
            *last = Some(now);
            drop(last);
            peers.retain(|_, peer| Arc::strong_count(peer) > 1 || !holds_nothing(peer));
            if peers.len() >= self.config.max_sessions {
                return None;
            }
        }
        let peer = peers
            .entry(name.to_owned())
            .or_insert_with(|| {
                let peer = PeerInner::new(
                    name.to_owned(),
                    Session::new(Instant::now(), self.incarnation, self.config.protocol),
                );
                peer.lock().closed = self.closing.is_cancelled();
                peer
            })
            .clone();
        Some(peer)
    }
}

/// A networkio node: a name, optional listeners, and sessions with named peers.
///
/// Cloning gives another handle to the same node. The node runs until [`Node::shutdown`];
/// dropping handles does not stop it.
#[derive(Clone)]
pub struct Node {
    shared: Arc<NodeShared>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.shared.name)
            .field("local_addrs", &self.shared.local_addrs)
            .finish()
    }
}

impl Node {
    /// A builder for a node called `name` (1 to 128 ASCII letters, digits and `- _ . : @`).
    pub fn builder(name: impl Into<String>) -> NodeBuilder {
        NodeBuilder {
            name: name.into(),
            listen: Vec::new(),
            config: NodeConfig::default(),
            identity: None,
            trust: TrustPolicy::Open,
            plaintext: false,
        }
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// This process's incarnation: random, fixed for the node's life. Peers use it to tell a
    /// restarted node from a reconnecting one.
    pub fn incarnation(&self) -> u64 {
        self.shared.incarnation
    }

    /// This node's public key, which peers pin; `None` in insecure plaintext mode.
    pub fn public_key(&self) -> Option<PublicKey> {
        self.shared.public_key
    }

    /// Accepted connections still in their handshake.
    pub fn pending_handshakes(&self) -> usize {
        self.shared.handshakes.len()
    }

    /// The addresses the node listens on (with the ports the OS picked).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.shared.local_addrs
    }

    /// The node's notification queue. Every handle reads the same queue.
    pub fn events(&self) -> Events {
        Events {
            queue: self.shared.events.clone(),
        }
    }

    /// Dials `addr`, completes the handshake and returns the peer that answered (its name comes
    /// from the handshake). If the connection later breaks, this node redials with backoff and
    /// the session resumes: a host name is resolved again for every attempt, and only the peer
    /// that first answered is attached (another node answering at the address is refused, see
    /// [`RefusalReason::UnexpectedPeer`](crate::proto::admission::RefusalReason::UnexpectedPeer)).
    /// If the link goes silent while the peer owes an answer, fresh connections are dialed
    /// alongside (see [`NodeConfig::failover`]).
    pub async fn connect(&self, addr: impl Into<DialAddr>) -> Result<Peer> {
        dial::connect(self.shared.clone(), addr.into()).await
    }

    /// Live TCP connections (handshaking or established), accepted and dialed.
    pub fn connection_count(&self) -> usize {
        self.shared.config.max_connections - self.shared.connections.available_permits()
    }

    /// The known peer called `name`.
    pub fn peer(&self, name: &str) -> Option<Peer> {
        let peers = self.shared.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.get(name).cloned().map(Peer::from_inner)
    }

    /// A snapshot of the node: totals over its life (kept up to date by the connections, O(1)
    /// to read) and its current queues, which this sums over every peer: O(peers), each peer's
    /// lock taken briefly in turn. The totals are zero with [`NodeBuilder::metrics`]`(false)`.
    pub fn stats(&self) -> NodeStats {
        let shared = &self.shared;
        let mut stats = NodeStats {
            counters: Default::default(),
            connections_established: 0,
            reconnects: 0,
            bytes_read: 0,
            bytes_written: 0,
            refused: Default::default(),
            peers: 0,
            peers_connected: 0,
            connections: self.connection_count(),
            pending_handshakes: self.pending_handshakes(),
            inbox_len: 0,
            inbox_bytes: 0,
            unacked_len: 0,
            unacked_bytes: 0,
            in_flight: 0,
        };
        for peer in self.peers() {
            let mut core = peer.inner.lock();
            stats.peers += 1;
            stats.peers_connected += usize::from(core.state == ConnectionState::Connected);
            stats.inbox_len += core.session.inbox_len();
            stats.inbox_bytes += core.session.inbox_bytes();
            stats.unacked_len += core.session.unacked_len();
            stats.unacked_bytes += core.session.unacked_bytes();
            stats.in_flight += core.session.in_flight();
            if shared.config.metrics {
                // Brings in what was queued since the peer's connection last looked.
                let now = core.session.counters();
                shared.counters.publish(&mut core.published, now);
            }
        }
        let counters = &shared.counters;
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        stats.counters = counters.session_totals();
        stats.connections_established = load(&counters.connections_established);
        stats.reconnects = load(&counters.reconnects);
        stats.bytes_read = load(&counters.bytes_read);
        stats.bytes_written = load(&counters.bytes_written);
        stats.refused = counters.refusals();
        stats
    }

    /// Records [`Node::stats`] with the `metrics` facade now (the node also does every
    /// [`NodeConfig::metrics_interval`] and at shutdown). Every metric is labelled
    /// `node=<name>`; see the crate documentation for the names. O(peers), as [`Node::stats`].
    /// Nothing is recorded with [`NodeBuilder::metrics`]`(false)`.
    pub fn publish_metrics(&self) {
        if self.shared.config.metrics {
            export::record(&self.shared.name, &self.stats());
        }
    }

    /// Every known peer.
    pub fn peers(&self) -> Vec<Peer> {
        let peers = self.shared.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.values().cloned().map(Peer::from_inner).collect()
    }

    /// Shuts the node down gracefully:
    /// 1. stops accepting connections and new messages (`send` fails with
    ///    [`Error::NodeClosed`]);
    /// 2. waits up to [`NodeConfig::shutdown_linger`] for connected peers to acknowledge what
    ///    was already sent;
    /// 3. closes every connection with a SHUTDOWN reason, which ends the sessions on the peers
    ///    (they get [`Event::SessionLost`] for what they had not delivered to us);
    /// 4. fails the receipts of messages still unacknowledged with [`Error::NodeClosed`]; those
    ///    messages are lost with this node. The event queue ends ([`Events::recv`] returns `None`
    ///    after the last event).
    pub async fn shutdown(&self) {
        let shared = &self.shared;
        shared.closing.cancel();
        for peer in self.peers() {
            peer.inner.lock().closed = true;
        }
        let now = tokio::time::Instant::now();
        // A linger too long to represent waits "forever" (a century).
        let linger = now
            .checked_add(shared.config.shutdown_linger)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600));
        for peer in self.peers() {
            let mut delivery = peer.inner.delivery.subscribe();
            let drained = async {
                loop {
                    {
                        let core = peer.inner.lock();
                        if core.state != ConnectionState::Connected
                            || core.session.unacked_len() == 0
                        {
                            return;
                        }
                    }
                    if delivery.changed().await.is_err() {
                        return;
                    }
                }
            };
            let _ = tokio::time::timeout_at(linger, drained).await;
        }
        shared.closed.cancel();
        shared.tasks.close();
        shared.tasks.wait().await;
        self.finish_close();
        self.publish_metrics();
        tracing::debug!(name = %shared.name, "node shut down");
    }

    /// Stops the node at once, as if its process had died: connections are reset without a
    /// CLOSE frame, nothing is flushed, sessions on the peers stay open (they will see a new
    /// incarnation if a node of the same name comes back). For tests of failure handling, and
    /// for a fast exit when the peers' view does not matter.
    pub async fn abort(&self) {
        let shared = &self.shared;
        shared
            .aborted
            .store(true, std::sync::atomic::Ordering::SeqCst);
        shared.closing.cancel();
        shared.closed.cancel();
        shared.tasks.close();
        shared.tasks.wait().await;
        self.finish_close();
    }

    fn finish_close(&self) {
        for peer in self.peers() {
            let mut core = peer.inner.lock();
            core.closed = true;
            core.state = ConnectionState::Closed;
            core.recv.wake_all();
            drop(core);
            peer.inner.delivery.send_modify(|s| s.closed = true);
            peer.inner.space.notify_waiters();
        }
        self.shared.events.close();
    }
}
