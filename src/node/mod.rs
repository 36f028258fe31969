//! The tokio driver: [`Node`], its builder, and the tasks that run connections.
//!
//! This is the only part of the crate that uses tokio. Each connection is one task that moves
//! bytes between its socket and the peer's sans-IO [`Session`](crate::proto::Session); the
//! application's [`Peer`] handles share that session behind a mutex, as quinn's handles share
//! its connection state. Which connection owns which session (admission, key binding, crossed
//! connections, replacement, link ends, expiry) is decided by the sans-IO
//! [endpoint](crate::proto::endpoint); the table holds it (see `table`). Time is tokio's clock
//! (see `clock`), so tests can pause it.

mod attach;
mod builder;
mod clock;
mod config;
mod dial;
mod driver;
mod events;
mod export;
mod listen;
mod peer;
mod recv;
mod stats;
mod table;
#[cfg(test)]
mod tests;
mod transport;
mod watch;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::ToSocketAddrs;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use builder::NodeBuilder;
pub use config::NodeConfig;
pub use events::{Event, Events};
pub use peer::{ConnectionState, OwnedReceipt, Peer, PeerStats, Receipt};
pub use recv::{ByteMessages, Messages};
pub use stats::{HandshakeRefusals, NodeStats};

use crate::error::Result;
use crate::security::{PublicKey, Security};
use events::EventQueue;
use stats::NodeCounters;
use transport::HandshakeSlots;

/// State shared by the node's handles and tasks.
pub(crate) struct NodeShared {
    pub(crate) name: String,
    pub(crate) incarnation: u64,
    pub(crate) config: NodeConfig,
    /// The peer table (the sans-IO endpoint); see `table` for the lock order.
    pub(crate) peers: Mutex<table::PeerTable>,
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
        NodeBuilder::new(name.into())
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
    /// the session resumes.
    pub async fn connect(&self, addr: impl ToSocketAddrs) -> Result<Peer> {
        dial::connect(self.shared.clone(), addr).await
    }

    /// Live TCP connections (handshaking or established), accepted and dialed.
    pub fn connection_count(&self) -> usize {
        self.shared.config.max_connections - self.shared.connections.available_permits()
    }

    /// The known peer called `name`.
    pub fn peer(&self, name: &str) -> Option<Peer> {
        let table = self.shared.table();
        table.get(name).cloned().map(Peer::from_inner)
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
        let table = self.shared.table();
        table.entries().cloned().map(Peer::from_inner).collect()
    }

    /// Shuts the node down gracefully:
    /// 1. stops accepting connections and new messages (`send` fails with
    ///    [`Error::NodeClosed`](crate::Error::NodeClosed));
    /// 2. waits up to [`NodeConfig::shutdown_linger`] for connected peers to acknowledge what
    ///    was already sent;
    /// 3. closes every connection with a SHUTDOWN reason, which ends the sessions on the peers
    ///    (they get [`Event::SessionLost`] for what they had not delivered to us);
    /// 4. fails the receipts of messages still unacknowledged with [`Error::NodeClosed`](crate::Error::NodeClosed); those
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
