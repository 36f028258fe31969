//! Node-wide statistics: totals kept in atomics that each connection's loop brings up to date
//! once per batch (never per message), and the typed snapshot [`NodeStats`].
//!
//! Per-peer figures live in the peer's session (counted by the sans-IO core) and its
//! `PeerCore`; the node adds each peer's growth since it last looked (`PeerCore::published`)
//! into [`NodeCounters`] whenever it holds that peer's lock anyway, so node totals need no walk
//! of the peer table and survive peers being forgotten.

use std::sync::atomic::{AtomicU64, Ordering};

use super::driver::End;
use crate::proto::admission::RefusalReason;
use crate::proto::{CloseCode, LinkError, SessionCounters};

/// Why a connection ended before its session was established, as counted in
/// [`HandshakeRefusals`]: this node's refusals (a [`RefusalReason`]), then the other ways a
/// handshake fails. The label is the `reason` of the `networkio_handshakes_refused_total` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// This node refused the peer (trust policy, key binding, caps).
    Us(RefusalReason),
    /// Both sides dialed each other; the other connection was kept (by our decision or, by the
    /// same rule, the peer's).
    Crossed,
    /// A newer connection needed this one's handshake slot.
    Evicted,
    /// The handshake missed its deadline.
    Timeout,
    /// The peer broke the protocol during the handshake (bad HELLO, version, name).
    Protocol,
    /// The TLS handshake failed.
    Tls,
    /// The peer closed the connection with a reason during the handshake: it refused us.
    ByPeer,
}

/// Counters kept besides one per [`RefusalReason`].
const OTHERS: [Refused; 6] = [
    Refused::Crossed,
    Refused::Evicted,
    Refused::Timeout,
    Refused::Protocol,
    Refused::Tls,
    Refused::ByPeer,
];

/// Number of refusal counters: one per [`RefusalReason`], then [`OTHERS`].
const REFUSED_COUNTERS: usize = RefusalReason::ALL.len() + OTHERS.len();

impl Refused {
    /// The reason a connection that never established its session ended with, if it was a
    /// handshake failure other than this node's own refusals (those are counted where they are
    /// decided, by `NodeShared::refuse`); an I/O error, an EOF or a shutdown is none.
    pub(crate) fn of(end: &End) -> Option<Refused> {
        Some(match end {
            End::Unauthorized { .. } | End::Busy => return None,
            End::Crossed => Refused::Crossed,
            End::Evicted => Refused::Evicted,
            End::Tls(_) => Refused::Tls,
            End::Link(LinkError::HandshakeTimeout(_)) => Refused::Timeout,
            End::Link(LinkError::Violation(_)) => Refused::Protocol,
            // The peer kept its own connection of a crossed pair: the same rule, seen from here.
            End::Link(LinkError::ClosedByPeer {
                code: CloseCode::Replaced,
                ..
            }) => Refused::Crossed,
            // Going away is no refusal.
            End::Link(LinkError::ClosedByPeer {
                code: CloseCode::Shutdown,
                ..
            }) => return None,
            End::Link(LinkError::ClosedByPeer { .. }) => Refused::ByPeer,
            End::Link(_) | End::Io(_) | End::Eof | End::Replaced | End::Shutdown | End::Aborted => {
                return None;
            }
        })
    }

    fn index(self) -> usize {
        match self {
            Refused::Us(reason) => RefusalReason::ALL
                .iter()
                .position(|r| *r == reason)
                .unwrap_or(0),
            other => {
                RefusalReason::ALL.len() + OTHERS.iter().position(|r| *r == other).unwrap_or(0)
            }
        }
    }
}

/// Connections that ended before their session was established, by reason. Counted on both
/// sides: a listener counts the peers it refused (one field per [`RefusalReason`]), a dialer
/// counts `by_peer` when the listener refused it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandshakeRefusals {
    /// The allowlist has no entry for the name with that key (`not_allowlisted`).
    pub not_allowlisted: u64,
    /// The known-peers file records another key for the name (`known_peer_mismatch`).
    pub known_peer_mismatch: u64,
    /// A new key could not be recorded in the known-peers file (`known_peers_unwritable`).
    pub known_peers_unwritable: u64,
    /// A new key was not recorded: the known-peers file, or the key's share of it, is full
    /// (`known_peers_full`).
    pub known_peers_full: u64,
    /// Another key holds the name (`name_in_use`).
    pub name_in_use: u64,
    /// The session cap was reached (`session_limit`).
    pub session_limit: u64,
    /// The connection cap was reached (`connection_limit`).
    pub connection_limit: u64,
    /// A redial reached another node than the peer it serves (`unexpected_peer`).
    pub unexpected_peer: u64,
    /// Crossed connections: the other one was kept, by either side (`crossed`).
    pub crossed: u64,
    /// Evicted from a full handshake queue by newer connections (`evicted`).
    pub evicted: u64,
    /// The handshake missed its deadline (`timeout`).
    pub timeout: u64,
    /// The peer broke the protocol during the handshake (`protocol`).
    pub protocol: u64,
    /// The TLS handshake failed (`tls`).
    pub tls: u64,
    /// The peer closed the connection with a reason during the handshake (`by_peer`): it
    /// refused us (not authorized, name in use, busy, a protocol error). Crossed connections
    /// and a peer shutting down are not counted here.
    pub by_peer: u64,
}

impl HandshakeRefusals {
    /// Every count with its label (the `reason` label of the metric; for this node's own
    /// refusals, [`RefusalReason::label`]), in a fixed order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            (RefusalReason::NotAllowlisted.label(), self.not_allowlisted),
            (
                RefusalReason::KnownPeerMismatch.label(),
                self.known_peer_mismatch,
            ),
            (
                RefusalReason::KnownPeersUnwritable.label(),
                self.known_peers_unwritable,
            ),
            (RefusalReason::KnownPeersFull.label(), self.known_peers_full),
            (RefusalReason::NameInUse.label(), self.name_in_use),
            (RefusalReason::SessionLimit.label(), self.session_limit),
            (
                RefusalReason::ConnectionLimit.label(),
                self.connection_limit,
            ),
            (RefusalReason::UnexpectedPeer.label(), self.unexpected_peer),
            ("crossed", self.crossed),
            ("evicted", self.evicted),
            ("timeout", self.timeout),
            ("protocol", self.protocol),
            ("tls", self.tls),
            ("by_peer", self.by_peer),
        ]
        .into_iter()
    }

    /// The total over every reason.
    pub fn total(&self) -> u64 {
        self.iter().map(|(_, n)| n).sum()
    }
}

/// A snapshot of a node: its totals over its life and its current queues.
///
/// Taken by [`Node::stats`](crate::Node::stats), which visits every peer (O(peers): each
/// peer's lock is taken briefly, one at a time, never the whole table at once).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStats {
    /// Totals over every peer the node has had, including those it no longer holds.
    /// Zero when the node was built with [`NodeBuilder::metrics`](crate::NodeBuilder::metrics)
    /// `(false)`.
    pub counters: SessionCounters,
    /// Sessions established on a connection (first connections and reconnections).
    pub connections_established: u64,
    /// Connections established for a peer after its first.
    pub reconnects: u64,
    /// Bytes read from and written to established connections (frames, after TLS).
    pub bytes_read: u64,
    /// See `bytes_read`.
    pub bytes_written: u64,
    /// Connections that ended before their session was established, by reason.
    pub refused: HandshakeRefusals,
    /// Peers the node holds now.
    pub peers: usize,
    /// Of those, peers with an established connection.
    pub peers_connected: usize,
    /// Live TCP connections (handshaking or established), and redial or failover attempts still
    /// connecting.
    pub connections: usize,
    /// Accepted connections still in their handshake.
    pub pending_handshakes: usize,
    /// Received messages waiting to be read, over every peer.
    pub inbox_len: usize,
    /// Their payload bytes: never more than [`NodeConfig::inbox_budget`](crate::NodeConfig).
    pub inbox_bytes: usize,
    /// Sent messages not yet acknowledged (queued or in flight), over every peer.
    pub unacked_len: usize,
    /// Their payload bytes.
    pub unacked_bytes: usize,
    /// Of the unacknowledged messages, those transmitted on the current connections.
    pub in_flight: u64,
    /// Payload bytes handed back by lost sessions and not yet taken by the application (see
    /// [`NodeConfig::max_handed_back_bytes`](crate::NodeConfig)).
    pub handed_back_bytes: usize,
}

/// Number of fields of [`SessionCounters`] kept as atomics.
const SESSION_FIELDS: usize = 13;

/// The node's totals, updated with relaxed atomic adds by whoever holds a peer's lock.
#[derive(Debug, Default)]
pub(crate) struct NodeCounters {
    session: [AtomicU64; SESSION_FIELDS],
    pub(crate) connections_established: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) bytes_read: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    refused: [AtomicU64; REFUSED_COUNTERS],
}

fn to_array(c: &SessionCounters) -> [u64; SESSION_FIELDS] {
    [
        c.messages_sent,
        c.bytes_sent,
        c.messages_transmitted,
        c.bytes_transmitted,
        c.retransmitted,
        c.messages_acked,
        c.bytes_acked,
        c.messages_received,
        c.bytes_received,
        c.duplicates_dropped,
        c.messages_handed_back,
        c.bytes_handed_back,
        c.sessions_lost,
    ]
}

fn from_array(a: [u64; SESSION_FIELDS]) -> SessionCounters {
    let [
        messages_sent,
        bytes_sent,
        messages_transmitted,
        bytes_transmitted,
        retransmitted,
        messages_acked,
        bytes_acked,
        messages_received,
        bytes_received,
        duplicates_dropped,
        messages_handed_back,
        bytes_handed_back,
        sessions_lost,
    ] = a;
    SessionCounters {
        messages_sent,
        bytes_sent,
        messages_transmitted,
        bytes_transmitted,
        retransmitted,
        messages_acked,
        bytes_acked,
        messages_received,
        bytes_received,
        duplicates_dropped,
        messages_handed_back,
        bytes_handed_back,
        sessions_lost,
    }
}

impl NodeCounters {
    /// Adds a peer's growth since `published` and moves `published` up to `now`.
    pub(crate) fn publish(&self, published: &mut SessionCounters, now: SessionCounters) {
        if *published == now {
            return;
        }
        let (old, new) = (to_array(published), to_array(&now));
        for ((total, old), new) in self.session.iter().zip(old).zip(new) {
            if new != old {
                total.fetch_add(new.wrapping_sub(old), Ordering::Relaxed);
            }
        }
        *published = now;
    }

    pub(crate) fn refused(&self, reason: Refused) {
        if let Some(count) = self.refused.get(reason.index()) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        if n != 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(crate) fn session_totals(&self) -> SessionCounters {
        from_array(std::array::from_fn(|i| {
            self.session.get(i).map_or(0, |c| c.load(Ordering::Relaxed))
        }))
    }

    pub(crate) fn refusals(&self) -> HandshakeRefusals {
        let load = |r: Refused| {
            self.refused
                .get(r.index())
                .map_or(0, |c| c.load(Ordering::Relaxed))
        };
        let us = |r: RefusalReason| load(Refused::Us(r));
        HandshakeRefusals {
            not_allowlisted: us(RefusalReason::NotAllowlisted),
            known_peer_mismatch: us(RefusalReason::KnownPeerMismatch),
            known_peers_unwritable: us(RefusalReason::KnownPeersUnwritable),
            known_peers_full: us(RefusalReason::KnownPeersFull),
            name_in_use: us(RefusalReason::NameInUse),
            session_limit: us(RefusalReason::SessionLimit),
            connection_limit: us(RefusalReason::ConnectionLimit),
            unexpected_peer: us(RefusalReason::UnexpectedPeer),
            crossed: load(Refused::Crossed),
            evicted: load(Refused::Evicted),
            timeout: load(Refused::Timeout),
            protocol: load(Refused::Protocol),
            tls: load(Refused::Tls),
            by_peer: load(Refused::ByPeer),
        }
    }
}
