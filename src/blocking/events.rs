//! The blocking notification queue and its events.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use super::Peer;
use super::wait::{block_on, block_on_until, deadline_in};
use crate::error::{Error, Result};
use crate::proto::admission::RefusalReason;
use crate::proto::session::LostReason;
use crate::security::PublicKey;

/// Something the application should react to: the blocking twin of [`crate::Event`], with the
/// same meaning for each variant, carrying blocking [`Peer`] handles.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// The peer has new messages in its inbox; see [`crate::Event::Message`].
    Message {
        /// The peer with new data.
        peer: Peer,
    },
    /// Every message sent to `peer` up to `up_to` is acknowledged; see
    /// [`crate::Event::Delivered`].
    Delivered {
        /// The peer.
        peer: Peer,
        /// Highest acknowledged sequence number (cumulative).
        up_to: u64,
    },
    /// A connection to the peer completed its handshake; see [`crate::Event::Connected`].
    Connected {
        /// The peer.
        peer: Peer,
        /// `true`: the existing session continued. `false`: a new session started.
        resumed: bool,
    },
    /// The connection to the peer ended (the session survives it); see
    /// [`crate::Event::Disconnected`].
    Disconnected {
        /// The peer.
        peer: Peer,
        /// Why, as text.
        reason: String,
    },
    /// The session with the peer ended without these messages being acknowledged; see
    /// [`crate::Event::SessionLost`].
    SessionLost {
        /// The peer.
        peer: Peer,
        /// The unacknowledged messages' payloads, oldest first.
        unacked: Vec<Bytes>,
        /// Why the session ended.
        reason: LostReason,
    },
    /// The node refused a connection during its handshake; see [`crate::Event::Refused`].
    Refused {
        /// The remote address of the refused connection.
        addr: SocketAddr,
        /// The name its HELLO claimed; `None` if it was refused before its HELLO.
        name: Option<String>,
        /// The key it proved in TLS; `None` before TLS completed, or in plaintext mode.
        key: Option<PublicKey>,
        /// Why it was refused.
        reason: RefusalReason,
        /// Refusals after this one that were not queued; see [`crate::Event::Refused`].
        suppressed: u64,
    },
}

impl From<crate::Event> for Event {
    fn from(event: crate::Event) -> Self {
        // Exhaustive on purpose: a new async event must get its blocking twin.
        match event {
            crate::Event::Message { peer } => Event::Message { peer: peer.into() },
            crate::Event::Delivered { peer, up_to } => Event::Delivered {
                peer: peer.into(),
                up_to,
            },
            crate::Event::Connected { peer, resumed } => Event::Connected {
                peer: peer.into(),
                resumed,
            },
            crate::Event::Disconnected { peer, reason } => Event::Disconnected {
                peer: peer.into(),
                reason,
            },
            crate::Event::SessionLost {
                peer,
                unacked,
                reason,
            } => Event::SessionLost {
                peer: peer.into(),
                unacked,
                reason,
            },
            crate::Event::Refused {
                addr,
                name,
                key,
                reason,
                suppressed,
            } => Event::Refused {
                addr,
                name,
                key,
                reason,
                suppressed,
            },
        }
    }
}

/// A blocking handle to the node's notification queue (see [`Node::events`](super::Node::events)).
///
/// Every handle of a node (blocking or async) reads the same queue: each event goes to one of
/// them. As an [`Iterator`] it yields events until the node has shut down and the last queued
/// event has been received:
///
/// ```no_run
/// # fn example(node: networkio::blocking::Node) -> networkio::Result<()> {
/// use networkio::blocking::Event;
///
/// for event in node.events() {
///     if let Event::Message { peer } = event {
///         for text in peer.read_all::<String>()? {
///             peer.send(&format!("got {text}"))?;
///         }
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Events {
    inner: crate::Events,
}

impl From<crate::Events> for Events {
    fn from(inner: crate::Events) -> Self {
        Events { inner }
    }
}

impl Events {
    /// Waits for the next event. Returns `None` once the node has shut down and every queued
    /// event has been received.
    pub fn recv(&mut self) -> Option<Event> {
        block_on(self.inner.recv()).map(Event::from)
    }

    /// Waits at most `timeout` for the next event. Fails with [`Error::Timeout`] if none came
    /// in time, and with [`Error::NodeClosed`] once the node has shut down and every queued
    /// event has been received.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Event> {
        // Dropping the unfinished wait loses nothing: an event leaves the queue only in the
        // poll that returns it.
        match block_on_until(self.inner.recv(), deadline_in(timeout)) {
            Some(Some(event)) => Ok(event.into()),
            Some(None) => Err(Error::NodeClosed),
            None => Err(Error::Timeout("waiting for an event")),
        }
    }

    /// The next event if one is waiting (`None` whether or not the node is still running).
    pub fn try_recv(&mut self) -> Option<Event> {
        self.inner.try_recv().map(Event::from)
    }

    /// The async handle to the same queue.
    pub fn into_async(self) -> crate::Events {
        self.inner
    }
}

impl Iterator for Events {
    type Item = Event;

    /// [`Events::recv`]: ends when the node has shut down.
    fn next(&mut self) -> Option<Event> {
        self.recv()
    }
}
