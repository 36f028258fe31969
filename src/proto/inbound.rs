//! The receiving half of a session: in-order acceptance, duplicate drop, the bounded inbox,
//! and the acknowledgement owed to the peer.

use std::collections::VecDeque;

use bytes::Bytes;

use super::ProtocolViolation;

/// Limits of the inbox.
#[derive(Debug, Clone, Copy)]
pub struct InboxLimits {
    /// Most messages held for the application.
    pub messages: usize,
    /// Most payload bytes held for the application (may be exceeded by the one message that
    /// crossed the line).
    pub bytes: usize,
}

/// The receiving half of a session.
#[derive(Debug)]
pub struct Inbound {
    limits: InboxLimits,
    /// Sequence number expected next from the peer in this session.
    next_expected: u64,
    /// Highest sequence number acknowledged to the peer on the current connection.
    acked: u64,
    /// Messages received in order, waiting for the application.
    inbox: VecDeque<Bytes>,
    inbox_bytes: usize,
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
            inbox: VecDeque::new(),
            inbox_bytes: 0,
        }
    }

    /// The sequence number expected next.
    pub fn next_expected(&self) -> u64 {
        self.next_expected
    }

    /// Whether the inbox can take another message; when it cannot, the driver stops reading
    /// the socket so that TCP pushes back on the sender.
    pub fn has_room(&self) -> bool {
        self.inbox.len() < self.limits.messages && self.inbox_bytes < self.limits.bytes
    }

    /// Accepts a DATA frame: appends it, drops it as a duplicate, or reports a gap.
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
            return Ok(Accepted::Duplicate);
        }
        if seq > self.next_expected {
            return Err(ProtocolViolation::SequenceGap {
                expected: self.next_expected,
                got: seq,
            });
        }
        self.next_expected += 1;
        self.inbox_bytes += payload.len();
        self.inbox.push_back(payload);
        Ok(Accepted::New)
    }

    /// The cumulative acknowledgement to send, if one is owed.
    pub fn ack_due(&self) -> Option<u64> {
        let up_to = self.next_expected - 1;
        (up_to > self.acked).then_some(up_to)
    }

    /// Records that an ACK up to `up_to` was written.
    pub fn ack_sent(&mut self, up_to: u64) {
        self.acked = self.acked.max(up_to);
    }

    /// A new connection: the peer learns our position from the SESSION frame, so no ack is owed.
    pub fn on_new_link(&mut self) {
        self.acked = self.next_expected - 1;
    }

    /// A new session: numbering restarts; messages already in the inbox stay for the application.
    pub fn reset(&mut self) {
        self.next_expected = 1;
        self.acked = 0;
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
        self.inbox_bytes -= taken.iter().map(Bytes::len).sum::<usize>();
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_duplicates_and_gaps() {
        let mut inb = Inbound::new(InboxLimits {
            messages: 10,
            bytes: 100,
        });
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
    fn room_is_bounded() {
        let mut inb = Inbound::new(InboxLimits {
            messages: 2,
            bytes: 100,
        });
        inb.on_data(1, Bytes::from_static(b"a")).unwrap();
        assert!(inb.has_room());
        inb.on_data(2, Bytes::from_static(b"b")).unwrap();
        assert!(!inb.has_room());
        inb.take(5);
        assert!(inb.has_room());
        assert_eq!(inb.bytes(), 0);
    }
}
