//! Reliable, exactly-once, per-peer FIFO messaging between named peers over TCP.
//!
//! An application hands networkio a message for a peer, by name, and forgets about the network.
//! It does two things: **send** (and optionally learn when the message arrived) and **react to
//! notifications** that a peer has data, reading 1, 2 or all of its messages when it likes. An
//! application that talks to one peer can instead wait for that peer's next message with
//! [`Peer::recv`] (see [Receiving from one peer](#receiving-from-one-peer)).
//!
//! # Example
//!
//! ```
//! use networkio::{Event, Node};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), networkio::Error> {
//! // A server: listens, reacts to notifications.
//! let server = Node::builder("server-001").listen("127.0.0.1:0").start().await?;
//! let addr = server.local_addrs()[0];
//!
//! // A client: dials the server and learns its name from the handshake.
//! let client = Node::builder("client-123").start().await?;
//! let peer = client.connect(addr).await?;
//! assert_eq!(peer.name(), "server-001");
//!
//! for text in ["one", "two", "three"] {
//!     peer.send(&text).await?; // queued; waits only while the window is full
//! }
//! let receipt = peer.send(&"four").await?;
//! receipt.delivered().await?; // acknowledged: it (and everything before it) is in the server's inbox
//!
//! let mut events = server.events();
//! while let Some(event) = events.recv().await {
//!     if let Event::Message { peer } = event {
//!         let first_two: Vec<String> = peer.read(2)?; // the rest stay queued
//!         assert_eq!(first_two, ["one", "two"]);
//!         let rest: Vec<String> = peer.read_all()?;
//!         assert_eq!(rest, ["three", "four"]);
//!         break;
//!     }
//! }
//! client.shutdown().await;
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Guarantees
//!
//! - **Exactly once, in order.** While both processes live, every message sent to a peer reaches
//!   that peer's application exactly once, in the order sent (per peer and direction), however
//!   often the connection breaks, until the session expires ([`NodeBuilder::session_expiry`],
//!   default 1 hour without a connection).
//! - **Acknowledged.** A message is *delivered* once it is in the receiving node's inbox, whether or
//!   not that application has read it yet. Acknowledgements are cumulative: [`Receipt::delivered`]
//!   (or [`OwnedReceipt::delivered`], for a receipt kept beyond its `Peer` handle's borrow)
//!   resolves, and [`Event::Delivered`] reports the highest delivered sequence number. A message
//!   sent on its own, and the last of a burst, are acknowledged at once: a receiver with nothing
//!   more to read acknowledges what it has. While messages stream in, one acknowledgement covers
//!   many (per quarter of the inbox, or at most [`NodeBuilder::ack_delay`] later, default 1 ms).
//! - **Nothing silent.** If the other side lost the session (it restarted, shut down, or the
//!   session expired) the application gets [`Event::SessionLost`] with every unacknowledged
//!   message handed back; their receipts fail with [`Error::SessionLost`]. Such messages are never
//!   delivered to a different process, and never dropped without telling.
//! - **Bounded memory.** Each peer has an outbound window ([`NodeBuilder::window`]): [`Peer::send`]
//!   waits while it is full, [`Peer::try_send`] returns [`Error::Full`]. Each peer has an inbox
//!   ([`NodeBuilder::inbox`]) and grants the sender only what fits in it (credit-based flow
//!   control), so an application that does not read slows its peers' `send` down instead of
//!   growing memory. All inboxes together stay within the node's inbox budget
//!   ([`NodeBuilder::inbox_budget`]), and messages handed back by lost sessions within
//!   [`NodeBuilder::max_handed_back_bytes`] (beyond it `send` waits until the application takes
//!   its [`Event::SessionLost`] events). The notification queue holds at most one pending event
//!   of each kind per peer.
//!
//! Acknowledgements never wait behind unread messages (the node always reads its sockets), so an
//! application may `send().await` from its event loop, replying to each message before reading
//! the next, without deadlock.
//!
//! # Notifications
//!
//! [`Node::events`] is the node's queue. [`Event::Message`] fires when new messages arrive for a
//! peer and no `Message` notification for it is already waiting; it does not fire again for
//! messages left unread, only when more arrive after the application received the previous one.
//! Read what you want with [`Peer::read`], [`Peer::read_all`] or [`Peer::read_bytes`]; the rest
//! stay queued, and [`Peer::pending`] says how many. The other events ([`Event::Delivered`],
//! [`Event::Connected`], [`Event::Disconnected`], [`Event::SessionLost`]) are coalesced the same
//! way, and built from the peer's state when received: check [`Peer::state`] for the current one.
//!
//! # Receiving from one peer
//!
//! [`Peer::recv`] waits until the peer's inbox holds a message and takes it; [`Peer::messages`] is
//! a [`Stream`](futures_core::Stream) of them ([`Peer::recv_bytes`] and [`Peer::messages_bytes`]
//! for raw bytes). A client of one server, or one side of a request/response exchange, needs no
//! event loop:
//!
//! ```
//! # use networkio::{Event, Node};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), networkio::Error> {
//! # let server = Node::builder("server-001").listen("127.0.0.1:0").start().await?;
//! # let addr = server.local_addrs()[0];
//! # tokio::spawn(async move {
//! #     let mut events = server.events();
//! #     while let Some(event) = events.recv().await {
//! #         if let Event::Connected { peer, .. } = event {
//! #             while let Ok(n) = peer.recv::<u64>().await {
//! #                 peer.send(&(n * 2)).await?;
//! #             }
//! #         }
//! #     }
//! #     Ok::<(), networkio::Error>(())
//! # });
//! let client = Node::builder("client-123").start().await?;
//! let server = client.connect(addr).await?;
//! for n in 1..=3u64 {
//!     server.send(&n).await?;
//!     let doubled: u64 = server.recv().await?; // this peer's next message
//!     assert_eq!(doubled, n * 2);
//! }
//! client.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! Receiving takes a message as [`Peer::read`] does, with the same bounds and flow control.
//! Each message goes to exactly one receiver, whether calls on clones of the handle wait at once
//! or `recv` and `read` are mixed; an [`Event::Message`] then only says that data may be there.
//! Dropping a `recv` future or a stream never loses a message. `recv` fails with
//! [`Error::SessionLost`] once when the session with the peer ends, after the messages received
//! in it (the request will not be answered), and with [`Error::NodeClosed`] once the node has
//! shut down and the inbox is empty; streams yield the first as an item and end at the second.
//! (A peer is never removed from the node while a handle to it exists.)
//!
//! # Replies
//!
//! A [`Peer`] handle follows the peer's name across sessions: a message sent while the peer
//! restarts goes to its next process. A reply must not: the answer to a request of one process
//! means nothing to the next one under the same name. [`Peer::read_with_session`] and
//! [`Peer::recv_with_session`] return each message with the [`SessionRef`] it came from, and
//! [`Peer::send_in`] (and [`Peer::send_bytes_in`], [`Peer::try_send_in`],
//! [`Peer::try_send_bytes_in`]) queue a message only while that session is the current one,
//! failing with [`Error::SessionEnded`] otherwise; once queued, it is delivered within that
//! session or handed back with it. The [`blocking`] API has the same calls.
//!
//! ```no_run
//! # async fn example(peer: networkio::Peer) -> networkio::Result<()> {
//! loop {
//!     let (session, request) = match peer.recv_with_session::<String>().await {
//!         Ok(received) => received,
//!         // A session ended after its messages: go on with the next one's.
//!         Err(networkio::Error::SessionLost { .. }) => continue,
//!         Err(e) => return Err(e),
//!     };
//!     match peer.send_in(&session, &format!("got {request}")).await {
//!         // The process that asked is gone: its successor must not get the answer.
//!         Ok(_) | Err(networkio::Error::SessionEnded) => {}
//!         Err(e) => return Err(e),
//!     }
//! }
//! # }
//! ```
//!
//! # Messages
//!
//! Any `serde` type, encoded as MessagePack with field names ([`codec`]): self-describing and
//! tolerant of fields added by newer senders. [`Peer::send_bytes`] / [`Peer::read_bytes`] carry raw
//! [`Bytes`] (re-exported from the `bytes` crate as `networkio::Bytes`, so callers can name it
//! without depending on `bytes` themselves). A message that does not decode as the requested type is an
//! [`Error::Decode`] and stays queued.
//!
//! # Connections
//!
//! Any node can listen ([`NodeBuilder::listen`]), dial ([`Node::connect`]) or both; either side
//! of a session can send. Peers are found by name ([`Node::peer`]). The dialing side reconnects
//! with capped exponential backoff and jitter; the accepting side keeps the session until it
//! expires. Heartbeats detect dead connections, half-open ones included. When two nodes dial each
//! other at once, both keep the connection dialed by the node with the smaller name.
//!
//! # Errors
//!
//! [`Error::fault`] says whose fault an error is: the caller's, the peer's, the network's, or
//! nobody's (the node or session ended). Bad input from a peer never panics: the connection is
//! closed with a reason code and every other session carries on.
//!
//! # Security
//!
//! Connections run TLS 1.3 by default; each node proves possession of its Ed25519 key
//! ([`Identity`], by default a new random one: give long-lived nodes a key file so peers
//! recognise them after a restart). There is no certificate authority: the [`TrustPolicy`]
//! decides which key may use which name ([`TrustPolicy::Open`] by default: any key, which suits
//! development; use an allowlist or known-peers file in production). Whatever the policy, a
//! session belongs to the key that created it: another key never receives or continues it, and
//! is refused while a connection serves it. Under the allowlist and known peers another key stays
//! refused until the session ends; under the open policy it ends a session that has no
//! connection and starts a fresh one, so a restarted client with a new random key is not locked
//! out ([`LostReason::KeyChanged`]). Refused handshakes are reported as [`Event::Refused`], and
//! the refused side is told the [`RefusalReason`]. [`NodeBuilder::insecure_plaintext`] turns all
//! of this off, for trusted networks and benchmarks.
//!
//! # Without async
//!
//! [`blocking`] has the same API for programs without an async runtime: `blocking::Node`,
//! `Peer` and `Events`, whose calls block the calling thread while the node runs on a thread of
//! its own.
//! # Observability
//!
//! [`Peer::stats`] and [`Node::stats`] are typed snapshots: state, queues, the RTT estimate,
//! and [`SessionCounters`] (sent, transmitted, retransmitted, acknowledged, received, duplicates
//! dropped, handed back, sessions lost) counted by the protocol core; the node adds connections,
//! reconnects and [`HandshakeRefusals`] by reason. The node records them with the
//! [`metrics`](https://docs.rs/metrics) facade every [`NodeConfig::metrics_interval`], at
//! shutdown and on [`Node::publish_metrics`], under the label `node` only (no per-peer labels:
//! their number would grow with the peers). Nothing is recorded per message.
//!
//! Counters: `networkio_messages_sent_total`, `networkio_sent_bytes_total`,
//! `networkio_messages_transmitted_total`, `networkio_transmitted_bytes_total`,
//! `networkio_messages_retransmitted_total`, `networkio_messages_acked_total`,
//! `networkio_acked_bytes_total`, `networkio_messages_received_total`,
//! `networkio_received_bytes_total`, `networkio_duplicates_dropped_total`,
//! `networkio_messages_handed_back_total`, `networkio_sessions_lost_total`,
//! `networkio_connections_established_total`, `networkio_reconnects_total`,
//! `networkio_read_bytes_total`, `networkio_written_bytes_total`,
//! `networkio_handshakes_refused_total` (label `reason`, see [`HandshakeRefusals::iter`]).
//! Gauges: `networkio_peers`, `networkio_peers_connected`, `networkio_connections`,
//! `networkio_pending_handshakes`, `networkio_inbox_messages`, `networkio_inbox_bytes`,
//! `networkio_unacked_messages`, `networkio_unacked_bytes`, `networkio_in_flight_messages`.
//!
//! Logs go through [`tracing`](https://docs.rs/tracing): each connection runs in a `connection`
//! span with `node`, `origin`, `remote`, `peer` and `session` (the session id, once established).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), networkio::Error> {
//! let node = networkio::Node::builder("server-001").listen("127.0.0.1:0").start().await?;
//! let stats = node.stats();
//! assert_eq!(stats.counters.messages_received, 0);
//! assert_eq!(stats.refused.total(), 0);
//! node.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! [`proto`] is the sans-IO protocol core (no tokio, no sockets, no clock): frames, handshake and
//! the session state machine, specified in `docs/PROTOCOL.md`. The tokio driver around it
//! provides [`Node`] and [`Peer`].
#![warn(missing_docs)]

pub mod blocking;
pub mod codec;
mod error;
mod node;
pub mod proto;
mod security;

/// The buffer type of raw messages ([`Peer::send_bytes`], [`Peer::read_bytes`],
/// [`Peer::read_all_bytes`]), re-exported from the `bytes` crate.
pub use bytes::Bytes;
pub use error::{CodecError, Error, Fault, Result};
pub use node::{
    ByteMessages, ConnectionState, DialAddr, Event, Events, HandshakeRefusals, Messages, Node,
    NodeBuilder, NodeConfig, NodeStats, OwnedReceipt, Peer, PeerStats, Receipt,
};
pub use proto::admission::RefusalReason;
pub use proto::session::LostReason;
pub use proto::{SessionCounters, SessionRef};
pub use security::{Identity, KnownPeers, KnownPeersLimits, PublicKey, TrustPolicy};
