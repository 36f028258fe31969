//! The node's notification queue: coalesced per peer, so its memory is bounded by the number of
//! peers times the number of event kinds, never by traffic.
//!
//! The queue holds markers `(peer, kind)`, at most one per pair. The event itself is built when
//! the application receives it, from the peer's state at that moment: a `Delivered` reports the
//! latest acknowledgement, a `SessionLost` hands over everything handed back so far.
//!
//! Refused handshakes come from strangers as much as from peers, so they cannot be coalesced per
//! peer: at most `max_queued_refusals` wait in the queue, and the ones beyond are only counted.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;

use super::peer::{Peer, PeerInner};
use crate::proto::admission::RefusalReason;
use crate::proto::coalesce;
pub(crate) use crate::proto::coalesce::Kind;
use crate::proto::session::LostReason;
use crate::security::PublicKey;

/// Something the application should react to. Events are notifications: they say *that*
/// something happened; the data stays with the [`Peer`] until the application reads it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// The peer has new messages in its inbox. Fires when messages arrive and no `Message`
    /// notification for this peer is already waiting in the queue; it does not fire again for
    /// messages the application chose to leave unread, only when more arrive after the
    /// application received this one. A notification may find the inbox empty if the messages
    /// were already read (by [`Peer::read`] or taken by [`Peer::recv`]).
    Message {
        /// The peer with new data.
        peer: Peer,
    },
    /// Every message sent to `peer` with a sequence number up to `up_to` (in the current
    /// session) has been acknowledged: it is in the peer node's inbox.
    Delivered {
        /// The peer.
        peer: Peer,
        /// Highest acknowledged sequence number (cumulative).
        up_to: u64,
    },
    /// A connection to the peer completed its handshake.
    Connected {
        /// The peer.
        peer: Peer,
        /// `true`: the existing session continued, with every unacknowledged message
        /// retransmitted. `false`: a new session started.
        resumed: bool,
    },
    /// The connection to the peer ended. The session survives it (until it expires): messages
    /// keep queueing and flow again when a connection is re-established.
    Disconnected {
        /// The peer.
        peer: Peer,
        /// Why, as text.
        reason: String,
    },
    /// The session with the peer ended without these messages being acknowledged: the peer
    /// restarted, forgot the session, shut down, the session expired, or (open policy) another
    /// key claimed the peer's name while it was disconnected. networkio will not send them
    /// again; resend them (a new session) if they still matter. Unacknowledged is not
    /// undelivered: the last of them may have reached the peer's inbox with their
    /// acknowledgement lost on a broken connection, so a resend may deliver them twice.
    /// Their receipts fail with [`Error::SessionLost`](crate::Error::SessionLost).
    SessionLost {
        /// The peer.
        peer: Peer,
        /// The unacknowledged messages' payloads, oldest first.
        unacked: Vec<Bytes>,
        /// Why the session ended.
        reason: LostReason,
    },
    /// The node refused a connection during its handshake: its trust policy, the key binding
    /// of a session, or one of its limits. The refused side was told `reason`; no session was
    /// touched. At most [`NodeConfig::max_queued_refusals`](crate::NodeConfig) refusals wait in
    /// the queue: beyond that, refusals are counted in the last queued one's `suppressed`, so a
    /// flood of refused connections cannot grow the queue.
    Refused {
        /// The remote address of the refused connection.
        addr: SocketAddr,
        /// The name its HELLO claimed; `None` if it was refused before its HELLO.
        name: Option<String>,
        /// The key it proved in TLS; `None` before TLS completed, or in plaintext mode.
        key: Option<PublicKey>,
        /// Why it was refused.
        reason: RefusalReason,
        /// Refusals after this one that were not queued because the queue held as many as it
        /// may; they are not reported otherwise.
        suppressed: u64,
    },
}

/// A refused handshake waiting in the queue.
#[derive(Debug)]
struct Refusal {
    addr: SocketAddr,
    name: Option<String>,
    key: Option<PublicKey>,
    reason: RefusalReason,
    suppressed: u64,
}

#[derive(Debug)]
pub(crate) struct EventQueue {
    queue: Mutex<Queue>,
    notify: Notify,
    max_refusals: usize,
}

#[derive(Debug, Default)]
struct Queue {
    markers: VecDeque<Marker>,
    /// The refusals that `Marker::Refused` entries stand for, in the same order.
    refusals: VecDeque<Refusal>,
    closed: bool,
}

#[derive(Debug)]
enum Marker {
    Peer(Arc<PeerInner>, Kind),
    Refused,
}

impl EventQueue {
    /// A queue that holds at most `max_refusals` refusals.
    pub(crate) fn new(max_refusals: usize) -> EventQueue {
        EventQueue {
            queue: Mutex::new(Queue::default()),
            notify: Notify::new(),
            max_refusals,
        }
    }

    /// Reports a refused handshake: logged, and queued as an [`Event::Refused`] if the queue
    /// has room for it, else counted in the last one queued.
    pub(crate) fn refused(
        &self,
        addr: SocketAddr,
        name: Option<&str>,
        key: Option<PublicKey>,
        reason: RefusalReason,
    ) {
        // Debug only: the event is the report; a flood of refusals must not flood the log.
        tracing::debug!(%addr, name, reason = reason.label(), "handshake refused");
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.closed {
            return;
        }
        if queue.refusals.len() < self.max_refusals {
            queue.refusals.push_back(Refusal {
                addr,
                name: name.map(str::to_owned),
                key,
                reason,
                suppressed: 0,
            });
            queue.markers.push_back(Marker::Refused);
            drop(queue);
            self.notify.notify_one();
        } else if let Some(last) = queue.refusals.back_mut() {
            last.suppressed = last.suppressed.saturating_add(1);
        }
    }

    /// Queues `kind` for `peer` unless one is already waiting.
    pub(crate) fn push(&self, peer: &Arc<PeerInner>, kind: Kind) {
        let bit = kind.bit();
        if kind.is_link() {
            peer.last_link_event.store(bit, Ordering::Release);
        }
        if peer.pending_events.fetch_or(bit, Ordering::AcqRel) & bit != 0 {
            return; // coalesced with the marker already queued
        }
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.closed {
            return;
        }
        queue.markers.push_back(Marker::Peer(peer.clone(), kind));
        drop(queue);
        self.notify.notify_one();
    }

    /// No more events after the queued ones.
    pub(crate) fn close(&self) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    fn pop(&self) -> Result<Option<Event>, Closed> {
        loop {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            let (peer, kind) = match queue.markers.pop_front() {
                Some(Marker::Peer(peer, kind)) => (peer, kind),
                Some(Marker::Refused) => match queue.refusals.pop_front() {
                    Some(r) => {
                        return Ok(Some(Event::Refused {
                            addr: r.addr,
                            name: r.name,
                            key: r.key,
                            reason: r.reason,
                            suppressed: r.suppressed,
                        }));
                    }
                    None => continue,
                },
                None => return if queue.closed { Err(Closed) } else { Ok(None) },
            };
            drop(queue);
            // The handle first: a pending marker counts as a handle of the peer, so clearing it
            // before the handle exists would let a reclaim scan drop the entry in between.
            let peer = Peer::from_inner(peer);
            let pending = peer
                .inner
                .pending_events
                .fetch_and(!kind.bit(), Ordering::AcqRel)
                & !kind.bit();
            let kind = link_event_to_report(&peer.inner, kind, pending);
            if let Some(event) = peer.materialize(kind) {
                return Ok(Some(event));
            }
        }
    }
}

struct Closed;

/// The kind a marker taken from the queue reports (see [`coalesce::to_report`]).
fn link_event_to_report(peer: &PeerInner, kind: Kind, pending: u8) -> Kind {
    coalesce::to_report(kind, pending, peer.last_link_event.load(Ordering::Acquire))
}

/// A handle to the node's notification queue (see [`Node::events`](crate::Node::events)).
///
/// Every `Events` handle of a node reads the same queue: each event goes to one of them.
#[derive(Debug, Clone)]
pub struct Events {
    pub(crate) queue: Arc<EventQueue>,
}

impl Events {
    /// Waits for the next event. Returns `None` once the node has shut down and every queued
    /// event has been received.
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            let notified = self.queue.notify.notified();
            match self.queue.pop() {
                Ok(Some(event)) => return Some(event),
                Ok(None) => notified.await,
                Err(Closed) => return None,
            }
        }
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.queue.pop().ok().flatten()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::proto::{Config, Session};

    fn kinds(queue: &EventQueue) -> Vec<&'static str> {
        std::iter::from_fn(|| queue.pop().ok().flatten())
            .map(|event| match event {
                Event::Connected { .. } => "connected",
                Event::Disconnected { .. } => "disconnected",
                _ => "other",
            })
            .collect()
    }

    #[test]
    fn coalesced_connection_events_end_on_the_latest_state() {
        let queue = EventQueue::new(0);
        let session = Session::new(Instant::now(), 1, Config::default());
        let peer = PeerInner::new("p".into(), session);
        // Connected, Disconnected, Connected: the third coalesces with the first marker.
        queue.push(&peer, Kind::Connected);
        queue.push(&peer, Kind::Disconnected);
        queue.push(&peer, Kind::Connected);
        assert_eq!(kinds(&queue).last(), Some(&"connected"));
        // The other way round ends disconnected.
        queue.push(&peer, Kind::Disconnected);
        queue.push(&peer, Kind::Connected);
        queue.push(&peer, Kind::Disconnected);
        assert_eq!(kinds(&queue).last(), Some(&"disconnected"));
        // Without coalescing, each is reported in order.
        queue.push(&peer, Kind::Disconnected);
        assert_eq!(kinds(&queue), ["disconnected"]);
        queue.push(&peer, Kind::Connected);
        queue.push(&peer, Kind::Disconnected);
        assert_eq!(kinds(&queue), ["connected", "disconnected"]);
    }
}
