//! Receiving from one peer without the node's event queue: [`Peer::recv`], [`Peer::recv_bytes`]
//! and the streams [`Messages`] and [`ByteMessages`].
//!
//! A receiver that finds the inbox empty leaves its waker with the peer and returns `Pending`;
//! the connection task wakes every waiting receiver when messages arrive, when the session ends,
//! and when the node shuts down. Each woken receiver takes what it finds under the peer's lock,
//! so each message goes to exactly one of them, and a receiver takes a message only in the
//! poll that returns it: dropping a receiver never loses one.

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures_core::{FusedStream, Stream};
use serde::de::DeserializeOwned;

use super::peer::{ConnectionState, Peer, PeerCore, PeerInner, taking};
use crate::codec;
use crate::error::{Error, Result};
use crate::proto::session::LostReason;
use crate::proto::{Session, SessionRef};

/// The receiving side's state of a peer, behind the peer's lock.
#[derive(Debug, Default)]
pub(crate) struct RecvState {
    /// A session loss not yet reported to a receiver, and the `Session::messages_read` count at
    /// which it is due: once the application has read every message of the ended generation.
    loss: Option<(u64, LostReason)>,
    /// The receivers waiting for something to take, by id.
    waiting: Vec<(u64, Waker)>,
    next_id: u64,
}

impl RecvState {
    /// A session generation ended; `read_through` is its `SessionEvent::Lost` field. Losses not
    /// yet reported are coalesced: one error, due where the first was, with the latest reason
    /// (as the node's `SessionLost` event carries the latest).
    pub(crate) fn lost(&mut self, read_through: u64, reason: LostReason) {
        let due = self.loss.map_or(read_through, |(due, _)| due);
        self.loss = Some((due, reason));
        self.wake_all();
    }

    /// Wakes every waiting receiver (they look again under the lock). Cheap when none waits,
    /// which is the case of every application that reads through the event queue.
    pub(crate) fn wake_all(&mut self) {
        if !self.waiting.is_empty() {
            for (_, waker) in self.waiting.drain(..) {
                waker.wake();
            }
        }
    }
}

/// A receiver's registration among a peer's waiting receivers.
#[derive(Debug, Default)]
struct Waiter {
    /// Its id in `RecvState::waiting`, if it may still be there.
    id: Option<u64>,
}

/// What a receiver found.
enum Found<T> {
    Item(Result<T>),
    /// The node has shut down and the inbox is empty.
    Closed,
}

impl Waiter {
    /// Takes the next item with `take` (`None`: the inbox is empty), or registers to be woken.
    ///
    /// Order: a session loss whose messages have all been read comes first, then the inbox, and
    /// only with nothing left does a shut-down node end the receiver.
    fn poll<T>(
        &mut self,
        inner: &PeerInner,
        cx: &mut Context<'_>,
        take: impl FnOnce(&mut PeerCore) -> Option<Result<T>>,
    ) -> Poll<Found<T>> {
        let mut core = inner.lock();
        let read = core.session.messages_read();
        let found = match core.recv.loss {
            Some((due, reason)) if read >= due => {
                core.recv.loss = None;
                Found::Item(Err(Error::SessionLost { reason }))
            }
            _ => match take(&mut core) {
                Some(item) => Found::Item(item),
                None if core.state == ConnectionState::Closed => Found::Closed,
                None => {
                    self.register(&mut core, cx.waker());
                    return Poll::Pending;
                }
            },
        };
        self.unregister(&mut core);
        Poll::Ready(found)
    }

    fn register(&mut self, core: &mut PeerCore, waker: &Waker) {
        let recv = &mut core.recv;
        if let Some(id) = self.id {
            if let Some((_, registered)) = recv.waiting.iter_mut().find(|(i, _)| *i == id) {
                registered.clone_from(waker);
                return;
            }
        }
        let id = recv.next_id;
        recv.next_id = recv.next_id.wrapping_add(1);
        recv.waiting.push((id, waker.clone()));
        self.id = Some(id);
    }

    fn unregister(&mut self, core: &mut PeerCore) {
        if let Some(id) = self.id.take() {
            core.recv.waiting.retain(|(i, _)| *i != id);
        }
    }

    /// For `Drop`: forgets a registration that may still be there.
    fn leave(&mut self, inner: &PeerInner) {
        if self.id.is_some() {
            self.unregister(&mut inner.lock());
        }
    }
}

/// Takes the oldest message, raw.
fn take_bytes(core: &mut PeerCore) -> Option<Result<Bytes>> {
    taking(core, Session::read_one).map(Ok)
}

/// Decodes the oldest message as `T` and takes it; one that does not decode stays queued.
fn take_decoded<T: DeserializeOwned>(core: &mut PeerCore) -> Option<Result<T>> {
    let decoded = codec::decode(core.session.peek(1).next()?);
    if decoded.is_ok() {
        taking(core, Session::read_one);
    }
    Some(decoded)
}

/// Takes the oldest message, raw, with the session it came from.
fn take_bytes_with_session(core: &mut PeerCore) -> Option<Result<(SessionRef, Bytes)>> {
    let (session, _) = core.session.next_origin()?;
    take_bytes(core).map(|taken| taken.map(|message| (session, message)))
}

/// Decodes the oldest message as `T` and takes it, with the session it came from.
fn take_decoded_with_session<T: DeserializeOwned>(
    core: &mut PeerCore,
) -> Option<Result<(SessionRef, T)>> {
    let (session, _) = core.session.next_origin()?;
    take_decoded(core).map(|taken| taken.map(|message| (session, message)))
}

/// A receiver in progress; deregisters when dropped.
struct Recv<'a> {
    inner: &'a PeerInner,
    waiter: Waiter,
}

impl Recv<'_> {
    async fn next<T>(&mut self, take: impl Fn(&mut PeerCore) -> Option<Result<T>>) -> Result<T> {
        let found = std::future::poll_fn(|cx| self.waiter.poll(self.inner, cx, &take)).await;
        match found {
            Found::Item(item) => item,
            Found::Closed => Err(Error::NodeClosed),
        }
    }
}

impl Drop for Recv<'_> {
    fn drop(&mut self) {
        self.waiter.leave(self.inner);
    }
}

impl Peer {
    /// Waits for the next message from this peer, takes it and decodes it (MessagePack).
    ///
    /// For an application that talks to one peer, such as a client of one server: no need for
    /// the node's [`Events`](crate::Events). Taking a message frees inbox room and grants the
    /// peer credit exactly as [`Peer::read`] does.
    ///
    /// - **Ends.** Fails with [`Error::SessionLost`] once for each time the session with the
    ///   peer ends (the peer restarted, shut down, or the session expired), in its place after
    ///   the messages received in that session, also if it ended before the call: what was asked
    ///   of the peer will not be answered. Later calls wait for the next session's messages.
    ///   Losses not reported in between are reported as one. Fails with [`Error::NodeClosed`]
    ///   once the node has shut down and the inbox is empty (what was received before stays
    ///   readable). While the peer is merely disconnected it waits: the session survives (until
    ///   it expires), and so do the messages. (A peer is never removed from the node while a
    ///   handle to it exists, so a receiver never waits on a forgotten peer.)
    /// - **Decoding.** A message that does not decode as `T` fails with [`Error::Decode`] and
    ///   stays queued; take it with [`Peer::recv_bytes`] to skip it.
    /// - **Several receivers.** Calls on clones of the handle may wait at once: each message
    ///   (and each loss) goes to exactly one of them, in order.
    /// - **Cancel safety.** A message is taken only when the future completes: dropping it
    ///   (in `select!`, or a timeout) never loses one.
    /// - **With the event queue.** Both may be used: recv takes messages that
    ///   [`Peer::read`] would have, and the reverse. An [`Event::Message`](crate::Event::Message)
    ///   only says that data may be there; it may come for messages recv has already taken.
    ///   [`Event::SessionLost`](crate::Event::SessionLost) still reports each loss (with the
    ///   messages handed back), whether or not recv reported it.
    ///
    /// ```no_run
    /// # async fn example(node: networkio::Node) -> networkio::Result<()> {
    /// let server = node.connect("127.0.0.1:8080").await?;
    /// server.send(&"ping").await?;
    /// let answer: String = server.recv().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv<T: DeserializeOwned>(&self) -> Result<T> {
        self.receiver().next(take_decoded).await
    }

    /// Waits for the next message from this peer and takes it, raw: [`Peer::recv`] without
    /// decoding.
    pub async fn recv_bytes(&self) -> Result<Bytes> {
        self.receiver().next(take_bytes).await
    }

    /// [`Peer::recv`], also returning the session the message came from: to answer it with
    /// [`Peer::send_in`], which never reaches a later session of the peer (a new process under
    /// the same name). Same rules as `recv`.
    ///
    /// ```no_run
    /// # async fn example(peer: networkio::Peer) -> networkio::Result<()> {
    /// loop {
    ///     let (session, request) = match peer.recv_with_session::<String>().await {
    ///         Ok(received) => received,
    ///         // A session ended after its messages: go on with the next one's.
    ///         Err(networkio::Error::SessionLost { .. }) => continue,
    ///         Err(e) => return Err(e),
    ///     };
    ///     match peer.send_in(&session, &format!("got {request}")).await {
    ///         // The process that asked is gone: its successor must not get the answer.
    ///         Ok(_) | Err(networkio::Error::SessionEnded) => {}
    ///         Err(e) => return Err(e),
    ///     }
    /// }
    /// # }
    /// ```
    pub async fn recv_with_session<T: DeserializeOwned>(&self) -> Result<(SessionRef, T)> {
        self.receiver().next(take_decoded_with_session).await
    }

    /// [`Peer::recv_bytes`], also returning the session the message came from (see
    /// [`Peer::recv_with_session`]).
    pub async fn recv_bytes_with_session(&self) -> Result<(SessionRef, Bytes)> {
        self.receiver().next(take_bytes_with_session).await
    }

    /// The messages from this peer, decoded, as a [`Stream`](futures_core::Stream) of what
    /// [`Peer::recv`] returns: the session's losses are `Err` items in order, and the stream
    /// ends once the node has shut down and the inbox is empty. A message that does not decode
    /// is an `Err(`[`Error::Decode`]`)` item and stays queued, and the stream ends after it
    /// (take that message with [`Peer::recv_bytes`] and make a new stream to go on). Dropping
    /// the stream never loses a message.
    pub fn messages<T: DeserializeOwned>(&self) -> Messages<T> {
        Messages {
            raw: self.messages_bytes(),
            _type: PhantomData,
        }
    }

    /// The raw messages from this peer, as a [`Stream`](futures_core::Stream) of what
    /// [`Peer::recv_bytes`] returns (see [`Peer::messages`]).
    pub fn messages_bytes(&self) -> ByteMessages {
        ByteMessages {
            peer: self.clone(),
            waiter: Waiter::default(),
            done: false,
        }
    }

    fn receiver(&self) -> Recv<'_> {
        Recv {
            inner: &self.inner,
            waiter: Waiter::default(),
        }
    }
}

/// The raw messages from one peer, oldest first: see [`Peer::messages_bytes`].
///
/// Holds its own handle of the peer, so it can be kept or moved into another task.
#[derive(Debug)]
#[must_use = "streams do nothing unless polled"]
pub struct ByteMessages {
    peer: Peer,
    waiter: Waiter,
    done: bool,
}

impl ByteMessages {
    /// The peer the messages come from.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    fn poll_take<T>(
        &mut self,
        cx: &mut Context<'_>,
        take: impl FnOnce(&mut PeerCore) -> Option<Result<T>>,
    ) -> Poll<Option<Result<T>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.waiter.poll(&self.peer.inner, cx, take) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Found::Item(item)) => {
                self.done = matches!(item, Err(Error::Decode { .. }));
                Poll::Ready(Some(item))
            }
            Poll::Ready(Found::Closed) => {
                self.done = true;
                Poll::Ready(None)
            }
        }
    }
}

impl Stream for ByteMessages {
    type Item = Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_take(cx, take_bytes)
    }
}

impl FusedStream for ByteMessages {
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl Drop for ByteMessages {
    fn drop(&mut self) {
        self.waiter.leave(&self.peer.inner);
    }
}

/// The messages from one peer, decoded as `T`, oldest first: see [`Peer::messages`].
///
/// Holds its own handle of the peer, so it can be kept or moved into another task.
#[must_use = "streams do nothing unless polled"]
pub struct Messages<T> {
    raw: ByteMessages,
    // `fn() -> T`: the stream makes `T`s, it holds none (so it is `Send` and `Unpin` whatever
    // `T` is).
    _type: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Messages<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messages")
            .field("peer", &self.raw.peer)
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

impl<T> Messages<T> {
    /// The peer the messages come from.
    pub fn peer(&self) -> &Peer {
        &self.raw.peer
    }
}

impl<T: DeserializeOwned> Stream for Messages<T> {
    type Item = Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().raw.poll_take(cx, take_decoded)
    }
}

impl<T: DeserializeOwned> FusedStream for Messages<T> {
    fn is_terminated(&self) -> bool {
        self.raw.done
    }
}
