//! [`NodeBuilder`]: how a [`Node`] is configured and started.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::events::EventQueue;
use super::stats::NodeCounters;
use super::transport::HandshakeSlots;
use super::{Node, NodeConfig, NodeShared, listen, table};
use crate::error::Result;
use crate::proto::validate_name;
use crate::security::{Identity, Security, TlsConfigs, TrustPolicy};

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
    pub(super) fn new(name: String) -> Self {
        NodeBuilder {
            name,
            listen: Vec::new(),
            config: NodeConfig::default(),
            identity: None,
            trust: TrustPolicy::Open,
            plaintext: false,
        }
    }

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

    /// Most refused handshakes waiting in the event queue as [`Event::Refused`](super::Event::Refused) (default 64;
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
    /// stay zero and nothing is recorded; [`Peer::stats`](super::Peer::stats) is complete either way (the
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
        // Whether the trust policy ties each name to one key (the key-binding rule). Without
        // TLS a name cannot be told from another key's, so it is held as if pinned.
        let names_pinned = match &security {
            Security::Tls(configs) => configs.trust.pins_names(),
            Security::InsecurePlaintext => true,
        };
        let table = table::new_table(&self.name, self.config.max_sessions, names_pinned);
        let shared = Arc::new(NodeShared {
            name: self.name,
            incarnation: new_incarnation(),
            connections: Arc::new(Semaphore::new(self.config.max_connections)),
            handshakes: HandshakeSlots::new(self.config.max_pending_handshakes),
            security,
            public_key,
            config: self.config,
            peers: Mutex::new(table),
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
