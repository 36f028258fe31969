//! Receipts: proof that a message was queued, and the way to learn when it is delivered.
//!
//! A receipt holds the message's number across session generations; it watches the peer's
//! delivery state (the acknowledgement frontier of the current generation) and, for a message of
//! an ended generation, looks up how that generation ended.

use crate::error::{Error, Result};
use crate::proto::session::LostReason;

use std::collections::VecDeque;

use bytes::Bytes;

use super::peer::{Losses, Peer, PeerCore};

/// What receipts watch: the acknowledgement frontier of the current session generation.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DeliveryState {
    /// The generation's `Session::messages_before`: a receipt's number minus this is its
    /// sequence number, if the receipt belongs to this generation.
    pub messages_before: u64,
    pub acked: u64,
    pub closed: bool,
}

impl DeliveryState {
    /// Whether message `number` belongs to this generation and is acknowledged. (A number of a
    /// later generation than this state, which may lag the session, reads as not yet.)
    fn acknowledges(&self, number: u64) -> bool {
        number
            .checked_sub(self.messages_before)
            .is_some_and(|seq| seq >= 1 && seq <= self.acked)
    }

    /// Whether message `number` belongs to a generation that ended before this one.
    fn ended_before(&self, number: u64) -> bool {
        number <= self.messages_before
    }
}

/// How an ended session generation left its messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ended {
    /// The generation's `Session::messages_before`.
    pub messages_before: u64,
    /// The last sequence number the peer acknowledged in it.
    pub acked: u64,
    pub reason: LostReason,
}

impl PeerCore {
    /// Remembers how a generation ended (and the messages it handed back), forgetting the
    /// oldest generation beyond `max`.
    pub(crate) fn record_ended(&mut self, ended: Ended, unacked: Vec<Bytes>, max: usize) {
        let losses = self.losses.get_or_insert_with(|| {
            Box::new(Losses {
                handed_back: Vec::new(),
                reason: ended.reason,
                ended: VecDeque::new(),
                forgotten: None,
            })
        });
        losses.handed_back.extend(unacked);
        losses.reason = ended.reason;
        losses.ended.push_back(ended);
        while losses.ended.len() > max {
            losses.forgotten = losses.ended.pop_front().map(|e| e.reason);
        }
    }

    /// Why the newest generation no longer remembered ended, if one is forgotten.
    pub(super) fn forgotten(&self) -> Option<LostReason> {
        self.losses.as_ref().and_then(|losses| losses.forgotten)
    }

    /// The ended generation message `number` belongs to, if it belongs to one.
    pub(super) fn ended_generation(&self, number: u64) -> Option<Ended> {
        // Generations number their messages in order, so the right one is the last that began
        // before `number` (an empty generation shares its start with the next).
        let ended = &self.losses.as_ref()?.ended;
        let after = ended.partition_point(|e| e.messages_before < number);
        after.checked_sub(1).and_then(|i| ended.get(i)).copied()
    }
}

/// Proof that a message was queued, and a way to learn when it is delivered.
///
/// Dropping a receipt changes nothing: the message is sent all the same.
///
/// A receipt borrows the [`Peer`] handle it was sent through, as a guard borrows its lock:
/// taking a reference count of the peer for every message would cost the sending path a
/// quarter of its time. To keep a receipt beyond that borrow, or to move it into another task,
/// turn it into an [`OwnedReceipt`], which holds a handle of its own:
///
/// ```no_run
/// # async fn example(peer: networkio::Peer) -> networkio::Result<()> {
/// let receipt = peer.send(&"hello").await?.into_owned();
/// tokio::spawn(async move { receipt.delivered().await });
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Receipt<'a> {
    peer: &'a Peer,
    /// The message's number for this peer across session generations:
    /// `Session::messages_before` of its generation plus its sequence number. One word, so
    /// that a receipt is two: returned by every send, its size is paid on every call.
    number: u64,
}

impl<'a> Receipt<'a> {
    pub(super) fn new(peer: &'a Peer, number: u64) -> Self {
        Receipt { peer, number }
    }

    /// The same receipt, holding its own handle of the peer (a reference count).
    pub fn into_owned(self) -> OwnedReceipt {
        OwnedReceipt {
            peer: self.peer.clone(),
            number: self.number,
        }
    }

    /// The message's sequence number in its session (1, 2, 3, ... per peer and direction).
    /// (Takes the peer's lock briefly: the receipt holds the message's number across sessions.)
    pub fn seq(&self) -> u64 {
        let core = self.peer.inner.lock();
        let current = core.session.messages_before();
        let before = if self.number > current {
            current
        } else {
            core.ended_generation(self.number)
                .map_or(0, |ended| ended.messages_before)
        };
        self.number.saturating_sub(before)
    }

    /// The peer it was sent to.
    pub fn peer(&self) -> &'a Peer {
        self.peer
    }

    /// Whether the peer has acknowledged the message.
    pub fn is_delivered(&self) -> bool {
        let state = *self.peer.inner.delivery.borrow();
        if state.ended_before(self.number) {
            self.ended().is_none()
        } else {
            state.acknowledges(self.number)
        }
    }

    /// For a receipt of an ended generation: how that generation ended for this message
    /// (`None`: acknowledged before the end; `Some(reason)`: handed back).
    fn ended(&self) -> Option<LostReason> {
        let core = self.peer.inner.lock();
        match core.ended_generation(self.number) {
            Some(ended) if self.number.saturating_sub(ended.messages_before) <= ended.acked => None,
            Some(ended) => Some(ended.reason),
            None => Some(core.forgotten().unwrap_or(LostReason::Expired)),
        }
    }

    /// Waits until the peer acknowledges the message (it is in the peer node's inbox).
    ///
    /// Fails with [`Error::SessionLost`] if the session ended first (the message was handed back
    /// in [`Event::SessionLost`](crate::Event::SessionLost)) and with [`Error::NodeClosed`] if the node shut down first.
    pub async fn delivered(&self) -> Result<()> {
        let mut rx = self.peer.inner.delivery.subscribe();
        // Generations only grow; the watch may lag the session, never lead it.
        let state = *rx
            .wait_for(|s| s.acknowledges(self.number) || s.ended_before(self.number) || s.closed)
            .await
            .map_err(|_| Error::NodeClosed)?;
        if state.acknowledges(self.number) {
            Ok(())
        } else if state.ended_before(self.number) {
            match self.ended() {
                None => Ok(()),
                Some(reason) => Err(Error::SessionLost { reason }),
            }
        } else {
            Err(Error::NodeClosed)
        }
    }
}

/// A [`Receipt`] holding its own handle of the peer: it can be kept as long as needed and moved
/// into another task. Made by [`Receipt::into_owned`].
#[derive(Debug, Clone)]
pub struct OwnedReceipt {
    peer: Peer,
    number: u64,
}

impl OwnedReceipt {
    /// This receipt, borrowing its handle.
    pub fn receipt(&self) -> Receipt<'_> {
        Receipt {
            peer: &self.peer,
            number: self.number,
        }
    }

    /// See [`Receipt::seq`].
    pub fn seq(&self) -> u64 {
        self.receipt().seq()
    }

    /// The peer it was sent to.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// See [`Receipt::is_delivered`].
    pub fn is_delivered(&self) -> bool {
        self.receipt().is_delivered()
    }

    /// See [`Receipt::delivered`].
    pub async fn delivered(&self) -> Result<()> {
        self.receipt().delivered().await
    }
}
