//! How a peer's notifications coalesce: the rule behind the node's event queue, without the
//! queue. The node keeps one pending bit per kind and per peer, and the queue holds at most one
//! marker per bit; what a marker reports when it is taken is decided here, so the tokio driver
//! and the whole-node simulation run the same rule.

/// Event kinds, one bit each in a peer's pending mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Message = 1,
    Delivered = 2,
    Connected = 4,
    Disconnected = 8,
    SessionLost = 16,
}

impl Kind {
    pub(crate) const fn bit(self) -> u8 {
        self as u8
    }

    /// Whether this kind says whether the peer is connected: the last one of these an
    /// application sees must be the true state.
    pub(crate) fn is_link(self) -> bool {
        matches!(self, Kind::Connected | Kind::Disconnected)
    }
}

/// The kind a marker of `kind` reports when it is taken from the queue, given the peer's
/// pending bits after this marker's bit was cleared and the latest connection event pushed for
/// the peer (`last_link`, a [`Kind::bit`], 0 if none).
///
/// Connection markers coalesce like the others, so `Connected, Disconnected, Connected` leaves
/// `[Connected, Disconnected]` queued: the last connection marker taken (no other one pending)
/// reports the latest connection event instead of its own, so that an application following
/// the events ends on the true state.
pub(crate) fn to_report(kind: Kind, pending: u8, last_link: u8) -> Kind {
    let other = match kind {
        Kind::Connected => Kind::Disconnected,
        Kind::Disconnected => Kind::Connected,
        _ => return kind,
    };
    if pending & other.bit() != 0 {
        return kind; // a later connection marker will report the end state
    }
    match last_link {
        bit if bit == Kind::Connected.bit() => Kind::Connected,
        bit if bit == Kind::Disconnected.bit() => Kind::Disconnected,
        _ => kind,
    }
}

/// One peer's coalescing state, for a single-threaded owner (the node keeps the same two bytes
/// in atomics, and calls [`to_report`] the same way).
#[cfg(test)]
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Pending {
    pending: u8,
    last_link: u8,
}

#[cfg(test)]
impl Pending {
    /// Notes `kind`; returns whether a marker must be queued (none of this kind is waiting).
    pub(crate) fn push(&mut self, kind: Kind) -> bool {
        if kind.is_link() {
            self.last_link = kind.bit();
        }
        let queued = self.pending & kind.bit() != 0;
        self.pending |= kind.bit();
        !queued
    }

    /// A marker of `kind` was taken from the queue: what it reports.
    pub(crate) fn take(&mut self, kind: Kind) -> Kind {
        self.pending &= !kind.bit();
        to_report(kind, self.pending, self.last_link)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// Pushes `kinds` through one queue and returns what the application sees.
    fn seen(state: &mut Pending, kinds: &[Kind]) -> Vec<Kind> {
        let mut queue = VecDeque::new();
        for &kind in kinds {
            if state.push(kind) {
                queue.push_back(kind);
            }
        }
        queue.into_iter().map(|kind| state.take(kind)).collect()
    }

    #[test]
    fn coalesced_connection_events_end_on_the_latest_state() {
        use Kind::{Connected as C, Disconnected as D};
        let mut state = Pending::default();
        assert_eq!(seen(&mut state, &[C, D, C]).last(), Some(&C));
        assert_eq!(seen(&mut state, &[D, C, D]).last(), Some(&D));
        assert_eq!(seen(&mut state, &[D]), [D]);
        assert_eq!(seen(&mut state, &[C, D]), [C, D]);
    }
}
