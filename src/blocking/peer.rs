//! The blocking `Peer` and its `Receipt`.

use std::pin::pin;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::wait::{self, block_on, block_on_until, deadline_in};
use crate::codec;
use crate::error::{Error, Result};
use crate::{ConnectionState, OwnedReceipt, PeerStats, SessionRef};

/// A blocking handle to a remote peer, named by its node name: the twin of [`crate::Peer`],
/// with the same queues, limits and guarantees; the calls that wait block the calling thread
/// instead of returning a future.
///
/// Cloning gives another handle to the same peer, usable from any thread. A `Peer` does not
/// keep its node running: once the node has shut down, sending fails with
/// [`Error::NodeClosed`] (what was queued can still be read).
#[derive(Debug, Clone)]
pub struct Peer {
    inner: crate::Peer,
}

impl From<crate::Peer> for Peer {
    fn from(inner: crate::Peer) -> Self {
        Peer { inner }
    }
}

impl Peer {
    /// The peer's node name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// Current connection state.
    pub fn state(&self) -> ConnectionState {
        self.inner.state()
    }

    /// Queue depths and state.
    pub fn stats(&self) -> PeerStats {
        self.inner.stats()
    }

    /// The async handle to the same peer (its reading calls do not wait, so they suit either
    /// world; `send` there must be awaited).
    pub fn as_async(&self) -> &crate::Peer {
        &self.inner
    }

    // ---- sending ------------------------------------------------------------------------------

    /// Serialises `message` (MessagePack) and queues it, blocking while the outbound window is
    /// full. Returns once the message is queued; the [`Receipt`] tells when it is acknowledged.
    /// See [`crate::Peer::send`].
    pub fn send<T: Serialize + ?Sized>(&self, message: &T) -> Result<Receipt> {
        self.send_bytes(codec::encode(message)?)
    }

    /// Like [`Peer::send`], but fails with [`Error::Full`] instead of blocking.
    pub fn try_send<T: Serialize + ?Sized>(&self, message: &T) -> Result<Receipt> {
        self.inner.try_send(message).map(Receipt::from_async)
    }

    /// Queues raw bytes (no serialisation), blocking while the outbound window is full.
    pub fn send_bytes(&self, payload: impl Into<Bytes>) -> Result<Receipt> {
        let payload = payload.into();
        if wait::outside_runtime() {
            block_on(self.inner.send_bytes(payload)).map(Receipt::from_async)
        } else {
            self.send_one_polling(payload)
        }
    }

    /// Like [`Peer::send_bytes`], but fails with [`Error::Full`] instead of blocking.
    pub fn try_send_bytes(&self, payload: impl Into<Bytes>) -> Result<Receipt> {
        self.inner.try_send_bytes(payload).map(Receipt::from_async)
    }

    /// Serialises and queues several messages in order, blocking while the window is full; see
    /// [`Peer::send_bytes_many`].
    pub fn send_many<'a, T, I>(&self, messages: I) -> Result<Receipt>
    where
        T: Serialize + ?Sized + 'a,
        I: IntoIterator<Item = &'a T>,
    {
        if wait::outside_runtime() {
            return block_on(self.inner.send_many(messages)).map(Receipt::from_async);
        }
        self.send_each_polling(messages.into_iter().map(codec::encode))
    }

    /// Queues several raw messages in order, blocking while the window is full, and returns
    /// the receipt of the last (delivery is cumulative: it covers all of them). As with
    /// [`crate::Peer::send_bytes_many`], an empty batch is [`Error::EmptyBatch`], and a message
    /// over the size limit fails the call with the messages before it queued.
    pub fn send_bytes_many<I>(&self, payloads: I) -> Result<Receipt>
    where
        I: IntoIterator,
        I::Item: Into<Bytes>,
    {
        if wait::outside_runtime() {
            return block_on(self.inner.send_bytes_many(payloads)).map(Receipt::from_async);
        }
        self.send_each_polling(payloads.into_iter().map(|p| Ok(p.into())))
    }

    /// A batch sent on a thread inside a tokio runtime, one message at a time (see
    /// [`Peer::send_one_polling`]), with the batch rules of the async calls.
    fn send_each_polling(&self, payloads: impl Iterator<Item = Result<Bytes>>) -> Result<Receipt> {
        let mut last = None;
        for payload in payloads {
            last = Some(self.send_one_polling(payload?)?);
        }
        last.ok_or(Error::EmptyBatch)
    }

    /// Sending on a thread inside a tokio runtime: the async sending calls may yield to that
    /// runtime's scheduler (see `wait`), which cannot run while this thread blocks, so this
    /// waits for window space itself. Each attempt clones the payload's handle, as `try_send`
    /// takes the payload even when it refuses it (the first clone of a `Bytes` made from a
    /// `Vec` allocates its shared header).
    fn send_one_polling(&self, payload: Bytes) -> Result<Receipt> {
        let memory = self.inner.inner.lock().memory.clone();
        loop {
            // Registered before the attempt, so an acknowledgement (or the application taking
            // handed-back bytes, the other reason a send waits) in between is not missed.
            let mut space = pin!(self.inner.inner.space.notified());
            space.as_mut().enable();
            let taken = memory.as_ref().map(|m| m.handed_back_taken.notified());
            match self.inner.try_send_bytes(payload.clone()) {
                Ok(receipt) => return Ok(Receipt::from_async(receipt)),
                Err(Error::Full) => block_on(room(space, taken)),
                Err(e) => return Err(e),
            }
        }
    }

    // ---- replying within a session -----------------------------------------------------------

    /// The peer's current session, or `None` while there is none; see
    /// [`crate::Peer::session`].
    pub fn session(&self) -> Option<SessionRef> {
        self.inner.session()
    }

    /// Serialises `message` and queues it within `session`, blocking while the outbound window
    /// is full: a reply to a message that came with `session` (from
    /// [`Peer::read_with_session`] or [`Peer::recv_with_session`]). Fails with
    /// [`Error::SessionEnded`] if that session is no longer the peer's current one (the peer
    /// restarted, say): nothing is queued, so the reply never reaches a later process under the
    /// same name. See [`crate::Peer::send_in`].
    pub fn send_in<T: Serialize + ?Sized>(
        &self,
        session: &SessionRef,
        message: &T,
    ) -> Result<Receipt> {
        self.send_bytes_in(session, codec::encode(message)?)
    }

    /// Like [`Peer::send_in`], but fails with [`Error::Full`] instead of blocking.
    pub fn try_send_in<T: Serialize + ?Sized>(
        &self,
        session: &SessionRef,
        message: &T,
    ) -> Result<Receipt> {
        self.inner
            .try_send_in(session, message)
            .map(Receipt::from_async)
    }

    /// Queues raw bytes within `session`, blocking while the outbound window is full; see
    /// [`Peer::send_in`].
    pub fn send_bytes_in(
        &self,
        session: &SessionRef,
        payload: impl Into<Bytes>,
    ) -> Result<Receipt> {
        let payload = payload.into();
        if wait::outside_runtime() {
            return block_on(self.inner.send_bytes_in(session, payload)).map(Receipt::from_async);
        }
        // Inside a runtime: as `send_one_polling`, waiting for window space here.
        let memory = self.inner.inner.lock().memory.clone();
        loop {
            let mut space = pin!(self.inner.inner.space.notified());
            space.as_mut().enable();
            let taken = memory.as_ref().map(|m| m.handed_back_taken.notified());
            match self.inner.try_send_bytes_in(session, payload.clone()) {
                Ok(receipt) => return Ok(Receipt::from_async(receipt)),
                Err(Error::Full) => block_on(room(space, taken)),
                Err(e) => return Err(e),
            }
        }
    }

    /// Like [`Peer::send_bytes_in`], but fails with [`Error::Full`] instead of blocking.
    pub fn try_send_bytes_in(
        &self,
        session: &SessionRef,
        payload: impl Into<Bytes>,
    ) -> Result<Receipt> {
        self.inner
            .try_send_bytes_in(session, payload)
            .map(Receipt::from_async)
    }

    // ---- receiving ----------------------------------------------------------------------------

    /// Waits for the next message from this peer, takes it and decodes it: the blocking
    /// [`crate::Peer::recv`], with the same rules (one message per call, a session's loss
    /// reported after its messages, [`Error::NodeClosed`] once the node is shut down and the
    /// inbox is empty).
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T> {
        block_on(self.inner.recv::<T>())
    }

    /// [`Peer::recv`], giving up with [`Error::Timeout`] after `timeout`; nothing is taken then.
    pub fn recv_timeout<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T> {
        block_on_until(self.inner.recv::<T>(), deadline_in(timeout))
            .unwrap_or(Err(Error::Timeout("no message before the deadline")))
    }

    /// Waits for the next message from this peer and takes it, raw.
    pub fn recv_bytes(&self) -> Result<Bytes> {
        block_on(self.inner.recv_bytes())
    }

    /// [`Peer::recv_bytes`], giving up with [`Error::Timeout`] after `timeout`.
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Bytes> {
        block_on_until(self.inner.recv_bytes(), deadline_in(timeout))
            .unwrap_or(Err(Error::Timeout("no message before the deadline")))
    }

    /// [`Peer::recv`], also returning the session the message came from, to answer it with
    /// [`Peer::send_in`].
    pub fn recv_with_session<T: DeserializeOwned>(&self) -> Result<(SessionRef, T)> {
        block_on(self.inner.recv_with_session::<T>())
    }

    /// [`Peer::recv_with_session`], giving up with [`Error::Timeout`] after `timeout`.
    pub fn recv_with_session_timeout<T: DeserializeOwned>(
        &self,
        timeout: Duration,
    ) -> Result<(SessionRef, T)> {
        block_on_until(self.inner.recv_with_session::<T>(), deadline_in(timeout))
            .unwrap_or(Err(Error::Timeout("no message before the deadline")))
    }

    /// [`Peer::recv_bytes`], also returning the session the message came from.
    pub fn recv_bytes_with_session(&self) -> Result<(SessionRef, Bytes)> {
        block_on(self.inner.recv_bytes_with_session())
    }

    /// [`Peer::recv_bytes_with_session`], giving up with [`Error::Timeout`] after `timeout`.
    pub fn recv_bytes_with_session_timeout(
        &self,
        timeout: Duration,
    ) -> Result<(SessionRef, Bytes)> {
        block_on_until(self.inner.recv_bytes_with_session(), deadline_in(timeout))
            .unwrap_or(Err(Error::Timeout("no message before the deadline")))
    }

    // ---- reading ------------------------------------------------------------------------------

    /// Removes and decodes up to `n` messages, oldest first; the rest stay queued. All or
    /// nothing; see [`crate::Peer::read`].
    pub fn read<T: DeserializeOwned>(&self, n: usize) -> Result<Vec<T>> {
        self.inner.read(n)
    }

    /// Removes and decodes every queued message.
    pub fn read_all<T: DeserializeOwned>(&self) -> Result<Vec<T>> {
        self.inner.read_all()
    }

    /// Removes up to `n` raw messages, oldest first.
    pub fn read_bytes(&self, n: usize) -> Vec<Bytes> {
        self.inner.read_bytes(n)
    }

    /// Removes every queued raw message.
    pub fn read_all_bytes(&self) -> Vec<Bytes> {
        self.inner.read_all_bytes()
    }

    /// Removes and decodes up to `n` messages that came from one session, with that session;
    /// `None` if the inbox is empty. See [`crate::Peer::read_with_session`].
    pub fn read_with_session<T: DeserializeOwned>(
        &self,
        n: usize,
    ) -> Result<Option<(SessionRef, Vec<T>)>> {
        self.inner.read_with_session(n)
    }

    /// Removes up to `n` raw messages that came from one session, with that session.
    pub fn read_bytes_with_session(&self, n: usize) -> Option<(SessionRef, Vec<Bytes>)> {
        self.inner.read_bytes_with_session(n)
    }

    /// Messages waiting to be read.
    pub fn pending(&self) -> usize {
        self.inner.pending()
    }
}

/// Proof that a message was queued, and a way to wait until it is delivered: the blocking twin
/// of [`crate::Receipt`]. It holds its own handle of the peer, so it can be kept and moved to
/// another thread. Dropping it changes nothing: the message is sent all the same.
#[derive(Debug, Clone)]
pub struct Receipt {
    inner: OwnedReceipt,
}

impl Receipt {
    fn from_async(receipt: crate::Receipt<'_>) -> Self {
        Receipt {
            inner: receipt.into_owned(),
        }
    }

    /// The message's sequence number in its session (1, 2, 3, ... per peer and direction).
    pub fn seq(&self) -> u64 {
        self.inner.seq()
    }

    /// The peer it was sent to.
    pub fn peer(&self) -> Peer {
        self.inner.peer().clone().into()
    }

    /// Whether the peer has acknowledged the message.
    pub fn is_delivered(&self) -> bool {
        self.inner.is_delivered()
    }

    /// Blocks until the peer acknowledges the message (it is in the peer node's inbox).
    ///
    /// Fails with [`Error::SessionLost`] if the session ended first (the message was handed back
    /// in [`Event::SessionLost`](super::Event::SessionLost)) and with [`Error::NodeClosed`] if
    /// the node shut down first.
    pub fn delivered(&self) -> Result<()> {
        block_on(self.inner.delivered())
    }

    /// Like [`Receipt::delivered`], but fails with [`Error::Timeout`] if the message is not
    /// acknowledged within `timeout` (it may still be later: the receipt stays valid).
    pub fn delivered_timeout(&self, timeout: Duration) -> Result<()> {
        block_on_until(self.inner.delivered(), deadline_in(timeout)).unwrap_or(Err(Error::Timeout(
            "waiting for the message's acknowledgement",
        )))
    }

    /// The async receipt of the same message.
    pub fn into_async(self) -> OwnedReceipt {
        self.inner
    }
}

/// Window space, or handed-back bytes taken by the application (see
/// `NodeConfig::max_handed_back_bytes`): either may let a refused send through.
async fn room(
    space: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
    taken: Option<tokio::sync::futures::Notified<'_>>,
) {
    match taken {
        Some(taken) => tokio::select! {
            () = space => {}
            () = taken => {}
        },
        None => space.await,
    }
}
