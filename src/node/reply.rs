//! Replies within the session a message came from: [`Peer::read_with_session`],
//! [`Peer::send_in`] and their variants.
//!
//! A [`Peer`] handle follows the peer's name across sessions, which is what most sends want:
//! messages queued while the peer restarts go to its next process. A reply must not: an answer
//! to a request of one process means nothing to the next one under the same name. So a reply
//! names the session of the message it answers, and is queued only while that session is the
//! current one, checked under the same hold of the peer's lock that queues it. Once queued it
//! is delivered within that session or handed back with it ([`Event::SessionLost`]): a session
//! that ends never resumes, so it cannot reach another.
//!
//! [`Event::SessionLost`]: crate::Event::SessionLost

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::peer::{Peer, Queued, Refused, wait_for_room};
use super::receipt::Receipt;
use crate::codec;
use crate::error::Result;
use crate::proto::SessionRef;

impl Peer {
    /// The peer's current session, or `None` while there is none (before the first connection
    /// establishes one, or after a session ended and before the next begins).
    ///
    /// To answer a message, use the session it came with ([`Peer::read_with_session`],
    /// [`Peer::recv_with_session`]), not this one: by the time a message is read, its session
    /// may have ended and another begun.
    pub fn session(&self) -> Option<SessionRef> {
        self.inner.lock().session.session()
    }

    /// Removes and decodes up to `n` messages that came from one session, oldest first, and
    /// returns them with that session; `None` if the inbox is empty. When the oldest messages
    /// came from a session that has since ended, only those are returned: a later call returns
    /// the next session's. As with [`Peer::read`], all or nothing: if any of them fails to
    /// decode as `T`, nothing is removed. (With `n` = 0 nothing is taken, and the session of
    /// the oldest message is returned with no messages.)
    ///
    /// Answer them with [`Peer::send_in`], which fails with
    /// [`Error::SessionEnded`](crate::Error::SessionEnded) instead of sending into a later
    /// session:
    ///
    /// ```no_run
    /// # async fn example(peer: networkio::Peer) -> networkio::Result<()> {
    /// use networkio::Error;
    ///
    /// while let Some((session, requests)) = peer.read_with_session::<String>(usize::MAX)? {
    ///     for request in requests {
    ///         match peer.send_in(&session, &format!("got {request}")).await {
    ///             Ok(_) => {}
    ///             // The process that asked is gone: its successor must not get the answer.
    ///             Err(Error::SessionEnded) => break,
    ///             Err(e) => return Err(e),
    ///         }
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn read_with_session<T: DeserializeOwned>(
        &self,
        n: usize,
    ) -> Result<Option<(SessionRef, Vec<T>)>> {
        let mut core = self.inner.lock();
        let Some((session, run)) = core.session.next_origin() else {
            return Ok(None);
        };
        let decoded = core
            .session
            .peek(n.min(run))
            .map(|payload| codec::decode(payload))
            .collect::<Result<Vec<T>>>()?;
        self.take(&mut core, decoded.len());
        Ok(Some((session, decoded)))
    }

    /// Removes up to `n` raw messages that came from one session, oldest first, with that
    /// session: [`Peer::read_with_session`] without decoding.
    pub fn read_bytes_with_session(&self, n: usize) -> Option<(SessionRef, Vec<Bytes>)> {
        let mut core = self.inner.lock();
        let (session, run) = core.session.next_origin()?;
        Some((session, self.take(&mut core, n.min(run))))
    }

    /// Serialises `message` and queues it within `session`, waiting while the outbound window
    /// is full: [`Peer::send`] for a reply.
    ///
    /// Fails with [`Error::SessionEnded`](crate::Error::SessionEnded) (an
    /// [`Ended`](crate::Fault::Ended) fault) if `session` is not the peer's current session,
    /// before or while waiting: it ended, or it is a session of another peer. Nothing is
    /// queued then. Once queued, the message is delivered within `session` or, if that ends
    /// first, handed back in [`Event::SessionLost`](crate::Event::SessionLost) like any other.
    pub async fn send_in<T: Serialize + ?Sized>(
        &self,
        session: &SessionRef,
        message: &T,
    ) -> Result<Receipt<'_>> {
        self.send_bytes_in(session, codec::encode(message)?).await
    }

    /// Like [`Peer::send_in`], but fails with [`Error::Full`](crate::Error::Full) instead of
    /// waiting.
    pub fn try_send_in<T: Serialize + ?Sized>(
        &self,
        session: &SessionRef,
        message: &T,
    ) -> Result<Receipt<'_>> {
        self.try_send_bytes_in(session, codec::encode(message)?)
    }

    /// Queues raw bytes within `session`, waiting while the outbound window is full; see
    /// [`Peer::send_in`].
    pub async fn send_bytes_in(
        &self,
        session: &SessionRef,
        payload: impl Into<Bytes>,
    ) -> Result<Receipt<'_>> {
        let mut payload = payload.into();
        let memory = self.inner.lock().memory.clone();
        loop {
            // Registered before the attempt, so an acknowledgement (or the end of the session,
            // which also wakes it) in between is not missed; so is the application taking
            // handed-back bytes, when those held the reply back (nothing of this peer's may be
            // in flight to wake it then).
            let space = self.inner.space.notified();
            let taken = memory.as_ref().map(|m| m.handed_back_taken.notified());
            match self.push_in(Some(*session), &mut payload) {
                Ok(Queued { number, pause }) => {
                    if pause {
                        tokio::task::yield_now().await;
                    }
                    return Ok(self.receipt(number));
                }
                Err(Refused::Full) => wait_for_room(space, taken).await,
                Err(refused) => return Err(self.refusal(refused, &payload)),
            }
        }
    }

    /// Like [`Peer::send_bytes_in`], but fails with [`Error::Full`](crate::Error::Full)
    /// instead of waiting.
    pub fn try_send_bytes_in(
        &self,
        session: &SessionRef,
        payload: impl Into<Bytes>,
    ) -> Result<Receipt<'_>> {
        let mut payload = payload.into();
        match self.push_in(Some(*session), &mut payload) {
            Ok(Queued { number, .. }) => Ok(self.receipt(number)),
            Err(refused) => Err(self.refusal(refused, &payload)),
        }
    }
}
