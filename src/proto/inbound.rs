//! The receiving half of a session: in-order acceptance, duplicate drop, the bounded inbox,
//! the acknowledgement owed to the peer, and the flow-control window granted to it.
//!
//! The inbox never holds more than its limits: the peer may only send what the window we
//! advertised allows (free inbox slots and bytes, counted from the last acknowledged message),
//! and DATA beyond it is a protocol violation. So the node can always read its socket, and
//! acknowledgements are never stuck behind data the application has not read yet.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::ProtocolViolation;
use super::budget::Reservation;
use super::frame::{self, Frame};
use super::stats::ReceiveCounters;

/// Limits of the inbox.
#[derive(Debug, Clone, Copy)]
pub struct InboxLimits {
    /// Most messages held for the application.
    pub messages: usize,
    /// Most payload bytes held for the application.
    pub bytes: usize,
}

/// A quarter of a limit, at least 1: the step at which acknowledgements and grants are due.
fn quarter(limit: usize) -> u64 {
    (limit as u64).checked_div(4).unwrap_or(0).max(1)
}

/// The receiving half of a session.
#[derive(Debug)]
pub struct Inbound {
    limits: InboxLimits,
    /// Sequence number expected next from the peer in this session.
    next_expected: u64,
    /// Highest sequence number acknowledged to the peer on the current connection.
    acked: u64,
    /// `received_bytes` as of that acknowledgement.
    acked_bytes: u64,
    /// Messages received in order, waiting for the application.
    inbox: VecDeque<Bytes>,
    inbox_bytes: usize,
    /// Payload bytes accepted in this session (through `next_expected - 1`).
    received_bytes: u64,
    /// Messages the application has taken from the inbox, across sessions.
    taken: u64,
    /// The peer may send up to this sequence number (what we last advertised).
    limit_seq: u64,
    /// The peer may send until `received_bytes` reaches this (what we last advertised).
    limit_bytes: u64,
    /// Totals over the session's life (kept across [`Inbound::reset`]).
    counters: ReceiveCounters,
    /// Its part of the node-wide inbox budget: grants never exceed it.
    reservation: Reservation,
    /// The part a connection starts from (see [`Inbound::set_reservation`]).
    initial: usize,
    /// `received_bytes` when the reservation last grew: the peer asks for more once it has
    /// used half of it since.
    grown_at: u64,
}

/// What happened to an incoming DATA frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// New: appended to the inbox.
    New,
    /// Already received (a replay); dropped.
    Duplicate,
}

impl Inbound {
    /// An empty inbox expecting sequence number 1.
    pub fn new(limits: InboxLimits) -> Self {
        Inbound {
            limits,
            next_expected: 1,
            acked: 0,
            acked_bytes: 0,
            inbox: VecDeque::new(),
            inbox_bytes: 0,
            received_bytes: 0,
            taken: 0,
            limit_seq: 0,
            limit_bytes: 0,
            counters: ReceiveCounters::default(),
            reservation: Reservation::default(),
            initial: usize::MAX,
            grown_at: 0,
        }
    }

    /// Grants from now on also respect `reservation`, a part of a node-wide budget. A connection
    /// starts with `initial` bytes of it (the largest message the peer may send: nothing it
    /// sends is then held back for long by a peer that sends nothing), and grows it, doubling, as
    /// far as the peer uses it.
    pub fn set_reservation(&mut self, reservation: Reservation, initial: usize) {
        self.reservation = reservation;
        self.initial = initial;
    }

    /// Payload bytes the peer could make the inbox hold without reading: what it holds plus the
    /// credit granted and not used yet.
    fn committed(&self) -> usize {
        let credit = self.limit_bytes.saturating_sub(self.received_bytes);
        self.inbox_bytes
            .saturating_add(usize::try_from(credit).unwrap_or(usize::MAX))
    }

    /// Brings the reservation up to date (see [`Reservation::refresh`]) before a grant is
    /// computed; `linked`: a connection exists that grants go out on. Once the peer has sent half
    /// of the session's part since it last grew, the session asks for twice its part; otherwise
    /// for the initial part (or what it holds): credit that a peer leaves unused cannot be taken
    /// back, so a peer that sends little does not get much.
    pub fn refresh_budget(&mut self, linked: bool) {
        let committed = self.committed();
        let allowance = self.bytes_limit();
        let used = self.received_bytes.saturating_sub(self.grown_at);
        let want = if used.saturating_mul(2) >= allowance as u64 {
            allowance.saturating_mul(2)
        } else {
            allowance.max(self.initial)
        };
        self.reservation
            .refresh(want.min(self.limits.bytes), committed, linked);
        if self.reservation.allowance() > allowance {
            self.grown_at = self.received_bytes;
        }
    }

    /// Whether a grant was held back because the node-wide budget was spent.
    pub fn budget_waiting(&self) -> bool {
        self.reservation.waiting()
    }

    /// The connection that the current credit was granted on is gone: the peer starts from no
    /// credit on the next one (§7.1), so it no longer ties up the budget. Everything received
    /// stays.
    pub fn void_credit(&mut self) {
        self.limit_seq = self.received_up_to();
        self.limit_bytes = self.received_bytes;
    }

    /// Totals over the session's life.
    pub(crate) fn counters(&self) -> ReceiveCounters {
        self.counters
    }

    /// The sequence number expected next.
    pub fn next_expected(&self) -> u64 {
        self.next_expected
    }

    /// The window to grant: free inbox slots and bytes, the bytes also within the session's part
    /// of the node-wide budget. Counted from the last acknowledged message, since everything up
    /// to it is already in the inbox.
    pub fn window(&self) -> (u64, u64) {
        let messages = self.limits.messages.saturating_sub(self.inbox.len());
        let bytes = self.bytes_limit().saturating_sub(self.inbox_bytes);
        (messages as u64, bytes as u64)
    }

    /// Highest sequence number received in order (`next_expected - 1`; `next_expected >= 1`).
    fn received_up_to(&self) -> u64 {
        self.next_expected.saturating_sub(1)
    }

    /// Records that `window` was advertised to the peer, counted from `next_expected - 1`.
    pub fn advertise(&mut self, (messages, bytes): (u64, u64)) {
        // Never shrinks: the peer may already be sending into what it was granted.
        self.limit_seq = self
            .limit_seq
            .max(self.received_up_to().saturating_add(messages));
        self.limit_bytes = self
            .limit_bytes
            .max(self.received_bytes.saturating_add(bytes));
    }

    /// Whether the window grew enough since it was last advertised to be worth telling the
    /// peer without waiting for data to acknowledge: by a quarter of a limit, or at all while the
    /// peer's remaining credit is low (under a quarter of a limit, or under `max_message` bytes,
    /// the largest message it may send), so that a sender never waits on a grant we could give.
    pub fn window_update_due(&self, max_message: usize) -> bool {
        let (messages, bytes) = self.window();
        let grown_messages = self
            .received_up_to()
            .saturating_add(messages)
            .saturating_sub(self.limit_seq);
        let grown_bytes = self
            .received_bytes
            .saturating_add(bytes)
            .saturating_sub(self.limit_bytes);
        if grown_messages == 0 && grown_bytes == 0 {
            return false;
        }
        let credit_messages = self.limit_seq.saturating_sub(self.received_up_to());
        let credit_bytes = self.limit_bytes.saturating_sub(self.received_bytes);
        let bytes_limit = self.bytes_limit();
        grown_messages >= quarter(self.limits.messages)
            || grown_bytes >= quarter(bytes_limit)
            || credit_messages < quarter(self.limits.messages)
            || credit_bytes < quarter(bytes_limit).max(max_message as u64)
    }

    /// Whether enough arrived since the last acknowledgement to acknowledge it without
    /// waiting: a quarter of either inbox limit.
    pub fn ack_pressure(&self) -> bool {
        let messages = self.received_up_to().saturating_sub(self.acked);
        let bytes = self.received_bytes.saturating_sub(self.acked_bytes);
        messages >= quarter(self.limits.messages) || bytes >= quarter(self.bytes_limit())
    }

    /// The inbox byte limit as it stands: the session's part of the node-wide budget may be
    /// less. Acknowledgements and grants are due per quarter of it.
    fn bytes_limit(&self) -> usize {
        self.limits.bytes.min(self.reservation.allowance())
    }

    /// Accepts a DATA frame: appends it, drops it as a duplicate, or reports a gap.
    #[inline]
    pub fn on_data(&mut self, seq: u64, payload: Bytes) -> Result<Accepted, ProtocolViolation> {
        if seq == 0 {
            // Numbering starts at 1: zero was never sent by a correct peer.
            return Err(ProtocolViolation::SequenceGap {
                expected: self.next_expected,
                got: seq,
            });
        }
        if seq < self.next_expected {
            // seq < next_expected: a replay after resume (or a duplicate); already delivered.
            // No correct peer goes back further than a window's worth: that is a broken or
            // hostile peer, not a replay.
            if self.next_expected.saturating_sub(seq) > self.limits.messages as u64 {
                return Err(ProtocolViolation::SequenceBackwards {
                    expected: self.next_expected,
                    got: seq,
                });
            }
            self.counters.duplicates = self.counters.duplicates.wrapping_add(1);
            return Ok(Accepted::Duplicate);
        }
        if seq > self.next_expected {
            return Err(ProtocolViolation::SequenceGap {
                expected: self.next_expected,
                got: seq,
            });
        }
        let len = payload.len() as u64;
        // Saturates rather than overflows: u64::MAX bytes is beyond any window we grant.
        let bytes = self.received_bytes.saturating_add(len);
        if seq > self.limit_seq || bytes > self.limit_bytes {
            return Err(ProtocolViolation::FlowControl {
                seq,
                limit_seq: self.limit_seq,
                bytes,
                limit_bytes: self.limit_bytes,
            });
        }
        // seq == next_expected <= limit_seq: room for one more below u64::MAX unless the peer
        // sent 2^64 - 1 messages; saturating keeps that case from panicking.
        self.next_expected = self.next_expected.saturating_add(1);
        self.received_bytes = bytes;
        self.inbox_bytes = self.inbox_bytes.saturating_add(payload.len());
        self.counters.received = self.counters.received.wrapping_add(1);
        self.counters.received_bytes = self.counters.received_bytes.wrapping_add(len);
        self.inbox.push_back(payload);
        Ok(Accepted::New)
    }

    /// The cumulative acknowledgement to send, if one is owed.
    pub fn ack_due(&self) -> Option<u64> {
        let up_to = self.received_up_to();
        (up_to > self.acked).then_some(up_to)
    }

    /// Appends an ACK of everything received so far, granting the current window.
    pub fn write_ack(&mut self, out: &mut BytesMut) {
        let up_to = self.received_up_to();
        let window = self.window();
        frame::encode(
            &Frame::Ack {
                up_to,
                window_messages: window.0,
                window_bytes: window.1,
            },
            out,
        );
        self.ack_sent(up_to);
        self.advertise(window);
    }

    /// Records that an ACK up to `up_to` was written.
    pub fn ack_sent(&mut self, up_to: u64) {
        if up_to >= self.received_up_to() {
            self.acked_bytes = self.received_bytes;
        }
        self.acked = self.acked.max(up_to);
    }

    /// A new connection: the peer learns our position from the SESSION frame, so no ack is owed.
    pub fn on_new_link(&mut self) {
        self.acked = self.received_up_to();
        self.acked_bytes = self.received_bytes;
    }

    /// A new session: numbering restarts; messages already in the inbox stay for the application
    /// (and keep occupying it). Nothing is granted until the next advertisement.
    pub fn reset(&mut self) {
        self.next_expected = 1;
        self.acked = 0;
        self.acked_bytes = 0;
        self.received_bytes = 0;
        self.limit_seq = 0;
        self.limit_bytes = 0;
        self.grown_at = 0;
    }

    /// Whether no message waits for the application.
    pub fn is_empty(&self) -> bool {
        self.inbox.is_empty()
    }

    /// Messages waiting for the application.
    pub fn len(&self) -> usize {
        self.inbox.len()
    }

    /// Payload bytes waiting for the application.
    pub fn bytes(&self) -> usize {
        self.inbox_bytes
    }

    /// The first `n` messages, without removing them.
    pub fn peek(&self, n: usize) -> impl Iterator<Item = &Bytes> {
        self.inbox.iter().take(n)
    }

    /// Removes and returns up to `n` messages, oldest first.
    pub fn take(&mut self, n: usize) -> Vec<Bytes> {
        let n = n.min(self.inbox.len());
        let taken: Vec<Bytes> = self.inbox.drain(..n).collect();
        let taken_bytes = taken.iter().map(Bytes::len).fold(0, usize::saturating_add);
        self.inbox_bytes = self.inbox_bytes.saturating_sub(taken_bytes);
        self.taken = self.taken.wrapping_add(n as u64);
        taken
    }

    /// Removes and returns the oldest message.
    pub fn take_one(&mut self) -> Option<Bytes> {
        let message = self.inbox.pop_front()?;
        self.inbox_bytes = self.inbox_bytes.saturating_sub(message.len());
        self.taken = self.taken.wrapping_add(1);
        Some(message)
    }

    /// How many messages have been taken from the inbox so far, across sessions.
    pub fn taken(&self) -> u64 {
        self.taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An inbox of these limits that has granted the peer its whole window.
    fn granted(messages: usize, bytes: usize) -> Inbound {
        let mut inb = Inbound::new(InboxLimits { messages, bytes });
        inb.advertise(inb.window());
        inb
    }

    #[test]
    fn in_order_duplicates_and_gaps() {
        let mut inb = granted(10, 100);
        let p = || Bytes::from_static(b"x");
        assert_eq!(inb.on_data(1, p()), Ok(Accepted::New));
        assert_eq!(inb.on_data(1, p()), Ok(Accepted::Duplicate));
        assert!(inb.on_data(3, p()).is_err());
        assert_eq!(inb.on_data(2, p()), Ok(Accepted::New));
        assert_eq!(inb.ack_due(), Some(2));
        inb.ack_sent(2);
        assert_eq!(inb.ack_due(), None);
        assert_eq!(inb.take(1).len(), 1);
        assert_eq!(inb.len(), 1);
    }

    #[test]
    fn going_back_beyond_the_window_is_a_violation() {
        let mut inb = granted(2, 100);
        for seq in 1..=2 {
            inb.on_data(seq, Bytes::from_static(b"x")).unwrap();
            inb.take(1);
            inb.advertise(inb.window());
        }
        for seq in 3..=5 {
            inb.on_data(seq, Bytes::from_static(b"x")).unwrap();
            inb.take(1);
            inb.advertise(inb.window());
        }
        assert_eq!(inb.on_data(4, Bytes::new()), Ok(Accepted::Duplicate));
        assert!(matches!(
            inb.on_data(1, Bytes::new()),
            Err(ProtocolViolation::SequenceBackwards {
                expected: 6,
                got: 1
            })
        ));
    }

    #[test]
    fn the_window_is_the_free_inbox_and_data_beyond_it_is_refused() {
        let mut inb = Inbound::new(InboxLimits {
            messages: 2,
            bytes: 100,
        });
        assert_eq!(inb.window(), (2, 100));
        inb.advertise(inb.window());
        inb.on_data(1, Bytes::from_static(b"a")).unwrap();
        assert_eq!(inb.window(), (1, 99));
        inb.on_data(2, Bytes::from_static(b"b")).unwrap();
        assert_eq!(inb.window(), (0, 98));
        assert!(matches!(
            inb.on_data(3, Bytes::from_static(b"c")),
            Err(ProtocolViolation::FlowControl { .. })
        ));
        assert!(!inb.window_update_due(100));
        inb.take(5);
        assert!(
            inb.window_update_due(100),
            "a grown window is worth telling a starved peer"
        );
        inb.advertise(inb.window());
        inb.on_data(3, Bytes::from_static(b"c")).unwrap();
        assert_eq!(inb.bytes(), 1);
    }

    #[test]
    fn window_updates_go_out_when_the_peer_runs_low_not_on_every_read() {
        let mut inb = granted(1000, 4096);
        let big = Bytes::from(vec![0u8; 1000]);
        // A small read with plenty of credit left: not worth an ACK of its own.
        inb.on_data(1, Bytes::from_static(b"small")).unwrap();
        inb.take(1);
        assert!(!inb.window_update_due(1024));
        inb.advertise(inb.window()); // with the next ACK
        // The peer's byte credit falls below the largest message it may send...
        for seq in 2..=5 {
            inb.on_data(seq, big.clone()).unwrap();
        }
        assert!(
            !inb.window_update_due(1024),
            "nothing to grant while the inbox is full"
        );
        // ...so any room the application makes is granted at once, or the peer could wait
        // forever for room for its next message.
        inb.take(1);
        assert!(inb.window_update_due(1024));
        inb.advertise(inb.window());
        assert!(!inb.window_update_due(1024));
    }
}
