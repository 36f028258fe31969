//! One peer's part of the endpoint: the key its session is bound to and its current link, and
//! what establishment, a link's end and time without a link mean for them.

use std::time::Instant;

use super::{Origin, Usage};
use crate::proto::session::{LinkId, Session};

/// The link currently serving a peer's session, as its [`PeerRecord`] knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrentLink<K> {
    /// The session's id of the link.
    pub id: LinkId,
    /// Who dialed it.
    pub origin: Origin,
    /// The key it proved; the session is bound to it once established.
    pub key: Option<K>,
    /// Whether it established the session.
    pub established: bool,
}

/// Where a peer's connection stands, by its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// A link is attached and completing its handshake.
    Connecting,
    /// The current link established the session.
    Connected,
    /// No link.
    Disconnected,
}

/// What the end of a link means (see [`PeerRecord::link_ended`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEnd {
    /// The link was current: the peer is now disconnected. `established`: it had established
    /// the session, so the application heard of it and must hear of its end.
    Ended {
        /// Whether the link had established the session.
        established: bool,
    },
    /// A newer link had replaced it (or it never attached): nothing changes.
    Stale,
}

/// What the driver watching a peer without a link should do (see [`PeerRecord::watch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// A link serves the peer: its driver fires the timers; stop watching.
    Linked,
    /// Call again at this time (the session's expiry), or when woken (a message queued).
    Until(Instant),
    /// Nothing to expire. Once the session's events are applied, stop watching if the entry
    /// is [unused](Usage::unused) (nobody can queue a message any more; the table drops it when
    /// it needs the room); otherwise call again when woken, or now and then (a handle may be
    /// dropped meanwhile).
    NothingDue,
}

/// One peer's part of the endpoint: the key its session is bound to and its current link.
/// Kept by the driver beside the peer's [`Session`]. See the [endpoint](super) docs.
#[derive(Debug, Clone)]
pub struct PeerRecord<K> {
    /// The key the session belongs to: the key of the link that established it, until the
    /// session ends.
    pub(super) bound: Option<K>,
    pub(super) link: Option<CurrentLink<K>>,
}

impl<K> Default for PeerRecord<K> {
    fn default() -> Self {
        PeerRecord {
            bound: None,
            link: None,
        }
    }
}

impl<K: Copy + PartialEq> PeerRecord<K> {
    /// A record with no session and no link.
    pub fn new() -> Self {
        Self::default()
    }

    /// The key the session is bound to.
    pub fn bound_key(&self) -> Option<&K> {
        self.bound.as_ref()
    }

    /// The current link.
    pub fn link(&self) -> Option<&CurrentLink<K>> {
        self.link.as_ref()
    }

    /// Whether `link` is the current link (its driver carries on) or was replaced (its driver
    /// closes the connection).
    pub fn is_current(&self, link: LinkId) -> bool {
        self.link.is_some_and(|l| l.id == link)
    }

    /// Where the peer's connection stands.
    pub fn state(&self) -> LinkState {
        match self.link {
            None => LinkState::Disconnected,
            Some(CurrentLink {
                established: false, ..
            }) => LinkState::Connecting,
            Some(_) => LinkState::Connected,
        }
    }

    /// The current link, if its connection is alive: the session still has it attached (a link
    /// error detaches it from the session before its driver reports the end).
    pub(super) fn live(&self, session: &Session) -> Option<CurrentLink<K>> {
        self.link.filter(|l| session.link_id() == Some(l.id))
    }

    /// The session reported `Established`: on its current link, which is the current link here
    /// too (both change together in [`Endpoint::attach`](super::Endpoint::attach)). The session now belongs to that
    /// link's key. Returns the key it is bound to.
    pub fn established(&mut self) -> Option<K> {
        if let Some(link) = self.link.as_mut() {
            link.established = true;
            self.bound = link.key;
        }
        self.bound
    }

    /// The session reported `Lost`: it is over, and its key no longer holds the name.
    pub fn session_lost(&mut self) {
        self.bound = None;
    }

    /// The connection of `link` ended (error, EOF, replaced, shutdown). Only the current link's
    /// end changes anything: it is detached from the session, and the peer is disconnected. The
    /// end of a link that a newer one replaced, reported however late, is [`LinkEnd::Stale`]:
    /// the newer link's state stands.
    pub fn link_ended(&mut self, session: &mut Session, link: LinkId, now: Instant) -> LinkEnd {
        let Some(current) = self.link.filter(|l| l.id == link) else {
            return LinkEnd::Stale;
        };
        if session.link_id() == Some(link) {
            session.detach(now);
        }
        self.link = None;
        LinkEnd::Ended {
            established: current.established,
        }
    }

    /// What the entry holds: the session's queues and `handed_back` (messages handed back the
    /// application has not taken), with `handles` application handles.
    pub fn usage(&self, session: &Session, handles: usize, handed_back: usize) -> Usage {
        Usage {
            handles,
            linked: self.link.is_some() || session.link_id().is_some(),
            session: session.peer_incarnation() != 0,
            unacked: session.unacked_len(),
            inbox: session.inbox_len(),
            handed_back,
        }
    }

    /// For a peer without a link: fires the session's expiry if due at `now` (everything
    /// unacknowledged is handed back in a `Lost` event, for the driver to apply), and says when
    /// to look again.
    pub fn watch(&mut self, session: &mut Session, now: Instant) -> Watch {
        if self.link.is_some() {
            return Watch::Linked;
        }
        if session.poll_timeout().is_some_and(|t| t <= now) {
            // Without a link the only timer is the expiry, which cannot fail.
            let _ = session.handle_timeout(now);
        }
        match session.poll_timeout() {
            Some(at) => Watch::Until(at),
            None => Watch::NothingDue,
        }
    }
}
