//! Which session each received message came from, so that a reply can be sent within that
//! session and no other.
//!
//! The inbox outlives sessions: when a session ends, the messages it delivered stay readable,
//! and the next session's messages queue behind them. A [`Session`](super::Session) therefore
//! remembers, for each ended session whose messages are still unread, where in the inbox its
//! messages end. Messages behind the last of those came from the current session.

use std::collections::VecDeque;

/// Names one session with a peer: what a reply must be sent within.
///
/// Obtained with a received message (for instance
/// [`Peer::read_with_session`](crate::Peer::read_with_session)) or as the current session
/// ([`Peer::session`](crate::Peer::session)), and passed to
/// [`Peer::send_in`](crate::Peer::send_in), which queues a message only while this session is
/// the peer's current one. A session ends when the peer restarts (a new process under the same
/// name), shuts down or forgets it, or when it expires; it survives disconnections that it
/// resumes from. Two `SessionRef`s are equal if they name the same session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionRef {
    generation: u64,
    id: u64,
}

impl SessionRef {
    pub(crate) fn new(generation: u64, id: u64) -> Self {
        SessionRef { generation, id }
    }

    /// The id both sides agreed on when the session started (as in
    /// [`PeerStats::session_id`](crate::PeerStats::session_id) while it is current).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// How many sessions with the peer had ended before this one began (as in
    /// [`PeerStats::generation`](crate::PeerStats::generation) while it is current).
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// The ended sessions whose messages are still in the inbox, oldest first, each with the
/// `Inbound::taken` count at which its last message will have been read. At most one entry per
/// unread message, so bounded by the inbox limits. Empty for almost every session, so the list
/// is allocated only while it holds something: every idle session would otherwise carry it.
#[derive(Debug, Default)]
pub(crate) struct Origins {
    // Boxed on purpose: a pointer in every session instead of an empty deque's 32 bytes.
    #[allow(clippy::box_collection)]
    ended: Option<Box<VecDeque<(u64, SessionRef)>>>,
}

impl Origins {
    /// `session` ended; the application has taken `taken` messages so far and will have read
    /// all of `session`'s once it has taken `read_through`.
    pub(crate) fn ended(&mut self, session: SessionRef, taken: u64, read_through: u64) {
        self.forget_read(taken);
        let from = self
            .ended
            .as_ref()
            .and_then(|ended| ended.back())
            .map_or(taken, |&(end, _)| end.max(taken));
        if read_through > from {
            self.ended
                .get_or_insert_with(Default::default)
                .push_back((read_through, session));
        }
    }

    /// The session the oldest unread message came from and how many unread messages in a row
    /// came from it, given the `taken` count, the inbox length and the current session; `None`
    /// if the inbox is empty.
    pub(crate) fn of_next(
        &self,
        taken: u64,
        inbox_len: usize,
        current: SessionRef,
    ) -> Option<(SessionRef, usize)> {
        if inbox_len == 0 {
            return None;
        }
        let found = self
            .ended
            .iter()
            .flat_map(|ended| ended.iter())
            .find(|&&(end, _)| end > taken)
            .map(|&(end, session)| {
                let run = usize::try_from(end.saturating_sub(taken)).unwrap_or(usize::MAX);
                (session, run.min(inbox_len))
            });
        Some(found.unwrap_or((current, inbox_len)))
    }

    /// Drops the sessions whose messages have all been read (and the list once empty). A
    /// pointer test unless an ended session's messages were unread.
    #[inline]
    pub(crate) fn forget_read(&mut self, taken: u64) {
        if let Some(ended) = self.ended.as_mut() {
            Self::forget_from(ended, taken);
            if ended.is_empty() {
                self.ended = None;
            }
        }
    }

    #[cold]
    fn forget_from(ended: &mut VecDeque<(u64, SessionRef)>, taken: u64) {
        while ended.front().is_some_and(|&(end, _)| end <= taken) {
            ended.pop_front();
        }
    }
}
