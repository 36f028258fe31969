//! The endpoint: which connection owns which session, as rules without I/O.
//!
//! In the manner of quinn-proto's `Endpoint` and `Connection`, the decisions are split in two:
//! - [`Endpoint`] is the peer table: one entry per peer name, created under the session cap
//!   ([`Endpoint::admit`], which reclaims unused entries, at most once per
//!   [`EndpointConfig::reclaim_interval`]), and the rules that need the node's identity: key
//!   binding and crossed connections ([`Endpoint::attach`]).
//! - [`PeerRecord`] is one peer's part: the key its session is bound to and its current link
//!   (id, origin, key, whether established). It says what a link's establishment, a link's end
//!   ([`PeerRecord::link_ended`]: only the current link's end changes anything) and the time
//!   without a link (expiry, [`PeerRecord::watch`]) mean.
//!
//! Both take events and `now` and return decisions; the driver performs them (writes, closes,
//! events for the application). Nothing here reads a clock or touches a socket.
//!
//! A driver keeps the peer's [`PeerRecord`] next to its [`Session`], behind the same per-peer
//! lock, so that messages never take a node-wide lock; the [`Endpoint`] sits behind the
//! table's lock. Lock order: table, then peer. Establishment and link ends need only the peer's
//! lock; admission and attachment take both, once per connection.
//!
//! The application's handles are counted by the driver (they are cloned and dropped without
//! any lock) and passed in where a rule needs them ([`Usage::handles`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::admission::{Binding, binding};
use super::handshake::PeerHello;
use super::session::{LinkId, LostReason, Session};

mod record;

pub use record::{CurrentLink, LinkEnd, LinkState, PeerRecord, Watch};

/// Who opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// This node dialed it.
    Dialed,
    /// The peer dialed it; this node accepted it.
    Accepted,
}

/// The endpoint's limits and the node's identity, as its rules need them.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// This node's name: of two crossed connections, both sides keep the one dialed by the
    /// node with the smaller name.
    pub local_name: String,
    /// Most entries (peers) in the table; a new name beyond it is refused.
    pub max_sessions: usize,
    /// Shortest time between two reclaiming scans of a full table. A scan visits every entry,
    /// so strangers knocking at the cap get one at most this often; the rest are refused.
    pub reclaim_interval: Duration,
    /// Whether the trust policy ties each name to one key (allowlist, known peers, plaintext)
    /// rather than letting any key use any name (open); see [`binding`].
    pub names_pinned: bool,
}

/// What an entry holds, as the reclaim rules see it. Read by the driver under the peer's lock
/// (see [`PeerRecord::usage`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Application handles to the peer.
    pub handles: usize,
    /// A connection is attached.
    pub linked: bool,
    /// A session with the peer exists (established once, not yet ended).
    pub session: bool,
    /// Messages queued to the peer and not acknowledged.
    pub unacked: usize,
    /// Messages received and not read.
    pub inbox: usize,
    /// Messages handed back that the application has not taken.
    pub handed_back: usize,
}

impl Usage {
    /// Whether the entry holds nothing worth keeping and nobody can reach it: it may go.
    pub fn unused(&self) -> bool {
        self.handles == 0 && !self.holds_anything()
    }

    /// Whether the entry holds a connection, a session or messages either way.
    pub fn holds_anything(&self) -> bool {
        self.linked || self.session || self.unacked != 0 || self.inbox != 0 || self.handed_back != 0
    }
}

/// An entry of the [`Endpoint`]'s table: whatever the driver keeps per peer (the node keeps the
/// peer's shared state; a simulation its session and record). The table asks it only what it
/// holds, when deciding whether to drop it.
pub trait Entry {
    /// What the entry holds now.
    fn usage(&self) -> Usage;
}

/// Why [`Endpoint::admit`] refused a new name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull;

/// The peer table and the rules that need the node's identity. See the module docs.
#[derive(Debug)]
pub struct Endpoint<T> {
    config: EndpointConfig,
    entries: HashMap<String, T>,
    last_reclaim: Option<Instant>,
}

impl<T: Entry> Endpoint<T> {
    /// An empty table.
    pub fn new(config: EndpointConfig) -> Self {
        Endpoint {
            config,
            entries: HashMap::new(),
            last_reclaim: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// The entry of `name`, created with `create` if the name is new and the table has room.
    /// A full table first drops the entries that are [unused](Usage::unused), unless it did so
    /// less than [`EndpointConfig::reclaim_interval`] before `now`: then a new name is refused.
    pub fn admit(
        &mut self,
        name: &str,
        now: Instant,
        create: impl FnOnce() -> T,
    ) -> Result<&T, TableFull> {
        if !self.entries.contains_key(name) && self.entries.len() >= self.config.max_sessions {
            let recent = self
                .last_reclaim
                .is_some_and(|at| now.saturating_duration_since(at) < self.config.reclaim_interval);
            if recent {
                return Err(TableFull);
            }
            self.last_reclaim = Some(now);
            self.entries.retain(|_, entry| !entry.usage().unused());
            if self.entries.len() >= self.config.max_sessions {
                return Err(TableFull);
            }
        }
        Ok(self.entries.entry(name.to_owned()).or_insert_with(create))
    }

    /// Drops the entry of `name` if it is [unused](Usage::unused) (a connection created it and
    /// never used it: a failed handshake leaves nothing behind). Returns whether it went.
    pub fn forget_if_unused(&mut self, name: &str) -> bool {
        if self.entries.get(name).is_some_and(|e| e.usage().unused()) {
            self.entries.remove(name);
            return true;
        }
        false
    }

    /// The entry of `name`, if any.
    pub fn get(&self, name: &str) -> Option<&T> {
        self.entries.get(name)
    }

    /// The entry of `name`, if any, to change.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut T> {
        self.entries.get_mut(name)
    }

    /// Every entry, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = &T> {
        self.entries.values()
    }

    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Attaches a new connection to its peer's session: see [`EndpointConfig::attach`] (the
    /// rules need the node's identity and policy, not the table; a driver whose entries are not
    /// behind their own locks calls that directly while it borrows an entry mutably).
    pub fn attach<K: Copy + PartialEq>(
        &self,
        record: &mut PeerRecord<K>,
        session: &mut Session,
        new: NewLink<'_, K>,
        now: Instant,
    ) -> Result<Attached, AttachRefusal> {
        self.config.attach(record, session, new, now)
    }
}

impl EndpointConfig {
    /// Attaches a new connection, whose HELLO named `record`'s peer, to the peer's session:
    /// 1. key binding ([`binding`]): another key never continues, receives or replaces a live
    ///    connection's session; under the open policy a session without a connection is ended
    ///    for it ([`LostReason::KeyChanged`]) before the new link exists;
    /// 2. crossed connections (each side dialed the other): both sides keep the one dialed by
    ///    the node with the smaller name;
    /// 3. otherwise the connection becomes the current link (through [`Session::begin_link`]),
    ///    replacing the previous one, whose driver must close it.
    ///
    /// A refused connection leaves the session and the record untouched.
    pub fn attach<K: Copy + PartialEq>(
        &self,
        record: &mut PeerRecord<K>,
        session: &mut Session,
        new: NewLink<'_, K>,
        now: Instant,
    ) -> Result<Attached, AttachRefusal> {
        let live = record.live(session);
        let mut ended_session = false;
        match binding(
            record.bound.as_ref(),
            new.key.as_ref(),
            live.is_some(),
            self.names_pinned,
        ) {
            Binding::Attach => {}
            Binding::Refuse => {
                return Err(AttachRefusal::NameInUse {
                    live: live.is_some(),
                });
            }
            Binding::EndThenAttach => {
                // Everything unacknowledged is handed back now, before the new key's link
                // exists: none of it can be sent to that key.
                session.end(now, LostReason::KeyChanged);
                record.bound = None;
                ended_session = true;
            }
        }
        if let Some(current) = live {
            if current.origin != new.origin {
                let ours_kept = self.local_name.as_str() < new.hello.name.as_str();
                let kept = if ours_kept {
                    Origin::Dialed
                } else {
                    Origin::Accepted
                };
                if current.origin == kept {
                    return Err(AttachRefusal::Crossed);
                }
            }
        }
        let replaced = record.link.map(|l| l.id);
        let id = session.begin_link(now, new.hello, new.deadline, new.nonce);
        record.link = Some(CurrentLink {
            id,
            origin: new.origin,
            key: new.key,
            established: false,
        });
        Ok(Attached {
            link: id,
            replaced,
            ended_session,
        })
    }
}

/// A connection whose handshake named a peer, to attach with [`Endpoint::attach`].
#[derive(Debug, Clone, Copy)]
pub struct NewLink<'a, K> {
    /// The peer's HELLO.
    pub hello: &'a PeerHello,
    /// The key the connection proved (TLS); `None` in plaintext.
    pub key: Option<K>,
    /// Who dialed it.
    pub origin: Origin,
    /// The handshake's absolute deadline.
    pub deadline: Instant,
    /// Random and non-zero (see [`Session::begin_link`]).
    pub nonce: u64,
}

/// A connection [`Endpoint::attach`] made the current link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attached {
    /// The new link.
    pub link: LinkId,
    /// The link it replaced, if any: its driver must close its connection (it sees
    /// [`PeerRecord::is_current`] turn false).
    pub replaced: Option<LinkId>,
    /// Whether a session bound to another key was ended first (open policy): the driver
    /// applies the session's `Lost` event.
    pub ended_session: bool,
}

/// Why [`Endpoint::attach`] refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachRefusal {
    /// Crossed connections: the peer's other connection is kept, this one is closed.
    Crossed,
    /// Another key holds the name ([`RefusalReason::NameInUse`](super::admission::RefusalReason)):
    /// by a live connection (`live`), or by a session that outlives its connections where the
    /// policy pins names.
    NameInUse {
        /// Whether a connection serves the session.
        live: bool,
    },
}
