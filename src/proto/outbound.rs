//! The sending half of a session: sequence numbers, the unacknowledged window, replay.
//!
//! Messages are numbered from 1 per session. A message stays here, counted against the window,
//! from [`Outbound::push`] until the peer acknowledges it; on a new connection transmission
//! restarts from whatever the peer says it expects next.

use std::collections::VecDeque;

use bytes::Bytes;

use super::ProtocolViolation;
use super::stats::SendCounters;

/// Why a message could not be queued. Both are the caller's to handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The window is full (messages or bytes); retry after an acknowledgement.
    Full,
    /// The message alone exceeds the maximum message size.
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Limits of the outbound window.
#[derive(Debug, Clone, Copy)]
pub struct WindowLimits {
    /// Most messages queued or in flight.
    pub messages: usize,
    /// Most payload bytes queued or in flight.
    pub bytes: usize,
    /// Largest single message.
    pub max_message: usize,
}

/// The sending half of a session.
#[derive(Debug)]
pub struct Outbound {
    limits: WindowLimits,
    /// Payloads of every message not yet acknowledged, oldest first; `queue[0]` has `first_seq`.
    queue: VecDeque<Bytes>,
    queued_bytes: usize,
    /// Sequence number of `queue[0]`: everything below is acknowledged.
    first_seq: u64,
    /// The next sequence number to transmit on the current connection.
    cursor: u64,
    /// Highest sequence number ever transmitted in this session (0 = none).
    max_transmitted: u64,
    /// Payload bytes of every acknowledged message in this session (through `first_seq - 1`).
    acked_bytes: u64,
    /// Payload bytes of every message before `cursor` in this session.
    cursor_bytes: u64,
    /// Flow control granted by the peer: transmit up to this sequence number...
    credit_seq: u64,
    /// ...while the session's cumulative payload bytes stay within this.
    credit_bytes: u64,
    /// Totals over the session's life (kept across [`Outbound::reset`]).
    counters: SendCounters,
}

impl Outbound {
    /// An empty window; the first message gets sequence number 1.
    pub fn new(limits: WindowLimits) -> Self {
        Outbound {
            limits,
            queue: VecDeque::new(),
            queued_bytes: 0,
            first_seq: 1,
            cursor: 1,
            max_transmitted: 0,
            acked_bytes: 0,
            cursor_bytes: 0,
            credit_seq: 0,
            credit_bytes: 0,
            counters: SendCounters::default(),
        }
    }

    /// Largest single message (of the limits it was made with).
    #[inline]
    pub(crate) fn max_message(&self) -> usize {
        self.limits.max_message
    }

    /// Totals over the session's life.
    pub(crate) fn counters(&self) -> SendCounters {
        self.counters
    }

    /// Messages transmitted on this connection and not yet acknowledged.
    pub fn in_flight(&self) -> u64 {
        self.cursor.saturating_sub(self.first_seq)
    }

    /// Sequence number the next pushed message gets.
    pub fn next_seq(&self) -> u64 {
        self.first_seq.saturating_add(self.queue.len() as u64)
    }

    /// Everything `<= acked()` has been acknowledged by the peer.
    pub fn acked(&self) -> u64 {
        // first_seq starts at 1 and only grows.
        self.first_seq.saturating_sub(1)
    }

    /// Whether nothing is queued or in flight.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Messages queued or in flight.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Payload bytes queued or in flight.
    pub fn bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Whether half the window is taken (messages or bytes).
    pub fn half_full(&self) -> bool {
        self.queue.len() >= self.limits.messages / 2 || self.queued_bytes >= self.limits.bytes / 2
    }

    /// Whether a message of `len` bytes fits the window now.
    pub fn has_room(&self, len: usize) -> bool {
        // An empty window always takes one message (up to max_message), so a message larger
        // than the byte window cannot wedge a peer forever.
        self.queue.is_empty()
            || (self.queue.len() < self.limits.messages
                && self.queued_bytes.saturating_add(len) <= self.limits.bytes)
    }

    /// Queues a message and returns its sequence number.
    pub fn push(&mut self, payload: Bytes) -> Result<u64, PushError> {
        self.push_noting(payload).map(|(seq, _)| seq)
    }

    /// [`Outbound::push`], also saying whether the message can be transmitted at once: it is
    /// next in line (everything before it went out on this connection) and within the peer's
    /// window.
    // Inlined: see `Session::send_noting`.
    #[inline]
    pub fn push_noting(&mut self, payload: Bytes) -> Result<(u64, bool), PushError> {
        if payload.len() > self.limits.max_message {
            return Err(PushError::TooLarge {
                len: payload.len(),
                max: self.limits.max_message,
            });
        }
        if !self.has_room(payload.len()) {
            return Err(PushError::Full);
        }
        let seq = self.next_seq();
        let transmittable = seq == self.cursor && self.credit_admits_next(payload.len());
        self.queued_bytes = self.queued_bytes.saturating_add(payload.len());
        self.queue.push_back(payload);
        Ok((seq, transmittable))
    }

    /// The next message to transmit on this connection, if any and if the peer's window allows
    /// it; advances the cursor.
    pub fn next_to_transmit(&mut self) -> Option<(u64, &Bytes)> {
        if !self.can_transmit() {
            return None;
        }
        let index = usize::try_from(self.cursor.checked_sub(self.first_seq)?).ok()?;
        let payload = self.queue.get(index)?;
        let seq = self.cursor;
        self.cursor = self.cursor.saturating_add(1);
        self.cursor_bytes = self.cursor_bytes.saturating_add(payload.len() as u64);
        let counters = &mut self.counters;
        counters.transmitted = counters.transmitted.wrapping_add(1);
        counters.transmitted_bytes = counters
            .transmitted_bytes
            .wrapping_add(payload.len() as u64);
        if seq <= self.max_transmitted {
            counters.retransmitted = counters.retransmitted.wrapping_add(1);
        }
        self.max_transmitted = self.max_transmitted.max(seq);
        Some((seq, payload))
    }

    /// Whether a message waits to be transmitted and the peer's window admits it.
    pub fn can_transmit(&self) -> bool {
        let index = self
            .cursor
            .checked_sub(self.first_seq)
            .and_then(|i| usize::try_from(i).ok())
            .unwrap_or(usize::MAX);
        self.queue
            .get(index)
            .is_some_and(|payload| self.credit_admits_next(payload.len()))
    }

    /// Whether the peer's window admits the message at the cursor, of `len` bytes.
    fn credit_admits_next(&self, len: usize) -> bool {
        self.cursor <= self.credit_seq
            && self.cursor_bytes.saturating_add(len as u64) <= self.credit_bytes
    }

    /// The peer's window, counted from `up_to` (which must have been acknowledged already:
    /// call after [`Outbound::on_ack`] or [`Outbound::resume_from`]).
    pub fn grant(&mut self, up_to: u64, messages: u64, bytes: u64) {
        if up_to != self.acked() {
            return; // a window relative to an older acknowledgement; a newer one follows
        }
        self.credit_seq = self.credit_seq.max(up_to.saturating_add(messages));
        self.credit_bytes = self
            .credit_bytes
            .max(self.acked_bytes.saturating_add(bytes));
    }

    /// Cumulative acknowledgement. Returns how many messages it released.
    pub fn on_ack(&mut self, up_to: u64) -> Result<usize, ProtocolViolation> {
        if up_to > self.max_transmitted {
            // seq > max_transmitted was never sent: the peer acknowledges what it cannot have.
            return Err(ProtocolViolation::AckOfUnsent {
                up_to,
                sent: self.max_transmitted,
            });
        }
        let mut released = 0;
        // up_to < first_seq: a stale or repeated ack; nothing left to release.
        while self.first_seq <= up_to {
            let Some(payload) = self.queue.pop_front() else {
                break;
            };
            // first_seq <= up_to <= max_transmitted, and queued_bytes counts this payload: none
            // of these can overflow; saturating keeps that so without a panic path.
            self.queued_bytes = self.queued_bytes.saturating_sub(payload.len());
            self.acked_bytes = self.acked_bytes.saturating_add(payload.len() as u64);
            self.first_seq = self.first_seq.saturating_add(1);
            released = usize::saturating_add(released, 1);
            self.counters.acked_bytes =
                self.counters.acked_bytes.wrapping_add(payload.len() as u64);
        }
        self.counters.acked = self.counters.acked.wrapping_add(released as u64);
        if self.cursor < self.first_seq {
            self.cursor = self.first_seq;
            self.cursor_bytes = self.acked_bytes;
        }
        Ok(released)
    }

    /// Resumption on a new connection: the peer expects `next_expected` next. Everything below
    /// it reached the peer (an implicit acknowledgement); transmission restarts there.
    pub fn resume_from(&mut self, next_expected: u64) -> Result<usize, ProtocolViolation> {
        if next_expected < self.first_seq || next_expected > self.max_transmitted.saturating_add(1)
        {
            return Err(ProtocolViolation::BadResumePoint {
                next_expected,
                acked: self.acked(),
                sent: self.max_transmitted,
            });
        }
        // next_expected >= first_seq >= 1 here, so this never saturates.
        let released = self.on_ack(next_expected.saturating_sub(1))?;
        self.rewind();
        Ok(released)
    }

    /// Before a new connection's handshake: nothing is transmitted until the peer says where
    /// and grants a window.
    pub fn rewind(&mut self) {
        self.cursor = self.first_seq;
        self.cursor_bytes = self.acked_bytes;
        self.credit_seq = 0;
        self.credit_bytes = 0;
    }

    /// Ends the session: every unacknowledged message is handed back, numbering restarts at 1.
    pub fn reset(&mut self) -> Vec<Bytes> {
        let unacked = std::mem::take(&mut self.queue).into();
        let counters = self.counters;
        *self = Outbound::new(self.limits);
        self.counters = counters;
        unacked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbound(messages: usize, bytes: usize) -> Outbound {
        Outbound::new(WindowLimits {
            messages,
            bytes,
            max_message: 100,
        })
    }

    fn msg(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn window_bounds_messages_and_bytes() {
        let mut out = outbound(2, 1000);
        assert_eq!(out.push(msg("a")), Ok(1));
        assert_eq!(out.push(msg("b")), Ok(2));
        assert_eq!(out.push(msg("c")), Err(PushError::Full));
        let mut out = outbound(10, 5);
        assert_eq!(out.push(msg("abc")), Ok(1));
        assert_eq!(out.push(msg("def")), Err(PushError::Full));
        assert_eq!(
            out.push(Bytes::from(vec![0; 101])),
            Err(PushError::TooLarge { len: 101, max: 100 })
        );
    }

    #[test]
    fn ack_releases_and_resume_replays() {
        let mut out = outbound(10, 1000);
        for m in ["a", "b", "c", "d"] {
            out.push(msg(m)).unwrap();
        }
        assert!(
            out.next_to_transmit().is_none(),
            "nothing before the peer grants a window"
        );
        out.grant(0, 3, 1000);
        let sent: Vec<u64> =
            std::iter::from_fn(|| out.next_to_transmit().map(|(s, _)| s)).collect();
        assert_eq!(sent, [1, 2, 3], "the window is 3 messages");
        out.grant(0, 10, 1000);
        assert_eq!(out.next_to_transmit().map(|(s, _)| s), Some(4));
        assert_eq!(out.on_ack(2), Ok(2));
        assert_eq!(out.on_ack(1), Ok(0), "stale ack is harmless");
        assert!(out.on_ack(5).is_err(), "ack of a message never sent");
        out.rewind();
        // The peer got 3 but its ack was lost with the connection.
        assert_eq!(out.resume_from(4), Ok(1));
        out.grant(3, 10, 1000);
        assert_eq!(
            out.next_to_transmit().map(|(s, p)| (s, p.clone())),
            Some((4, msg("d")))
        );
        assert!(
            out.resume_from(2).is_err(),
            "cannot go back below what was acknowledged"
        );
        assert!(
            out.resume_from(6).is_err(),
            "cannot expect what was never sent"
        );
    }

    #[test]
    fn half_full_by_messages_or_bytes() {
        let mut out = outbound(4, 100);
        out.push(msg("a")).unwrap();
        assert!(!out.half_full());
        out.push(msg("b")).unwrap();
        assert!(out.half_full(), "2 of 4 messages");
        out.grant(0, 10, 1000);
        out.next_to_transmit();
        out.on_ack(1).unwrap();
        assert!(!out.half_full(), "acknowledged ones no longer count");
        let mut out = outbound(100, 100);
        out.push(Bytes::from(vec![0; 50])).unwrap();
        assert!(out.half_full(), "50 of 100 bytes");
    }

    #[test]
    fn reset_hands_back_unacked_in_order() {
        let mut out = outbound(10, 1000);
        for m in ["a", "b", "c"] {
            out.push(msg(m)).unwrap();
        }
        out.grant(0, 10, 1000);
        out.next_to_transmit();
        out.on_ack(1).unwrap();
        assert_eq!(out.reset(), vec![msg("b"), msg("c")]);
        assert_eq!(out.next_seq(), 1);
    }
}
