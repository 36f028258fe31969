//! `Peer`: the application's handle to one remote node, by name.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use parking_lot::{Mutex, MutexGuard};

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::futures::Notified;
use tokio::sync::{Notify, watch};

use super::events::{Event, Kind};
use super::receipt::{DeliveryState, Ended, Receipt};
use crate::codec;
use crate::error::{Error, Result};
use crate::proto::endpoint::PeerRecord;
use crate::proto::session::LostReason;
use crate::proto::{PushError, Session, SessionCounters, SessionRef};

/// A handle to a remote peer, named by its node name.
///
/// Cloning gives another handle to the same peer; handles are cheap and usable from any task.
/// The peer's session (its queues, its sequence numbers) lives as long as the node keeps it,
/// across any number of connections.
pub struct Peer {
    pub(crate) inner: Arc<PeerInner>,
}

/// Handles are counted (see `PeerInner::handles`): a peer the application can reach is never
/// dropped from the node's table.
impl Clone for Peer {
    fn clone(&self) -> Self {
        Peer::from_inner(self.inner.clone())
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.inner.handles.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("name", &self.inner.name)
            .finish()
    }
}

/// Where a peer's connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// A connection exists and is completing its handshake.
    Connecting,
    /// A connection is established; messages flow.
    Connected,
    /// No connection; messages queue until one is (re-)established or the session expires.
    Disconnected,
    /// The node has shut down.
    Closed,
}

/// A snapshot of a peer's queues, state and totals, taken by [`Peer::stats`] under the peer's
/// lock (a few fields copied).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerStats {
    /// Connection state.
    pub state: ConnectionState,
    /// Received messages waiting to be read.
    pub inbox_len: usize,
    /// Their payload bytes.
    pub inbox_bytes: usize,
    /// Sent messages not yet acknowledged (queued or in flight).
    pub unacked_len: usize,
    /// Their payload bytes.
    pub unacked_bytes: usize,
    /// Highest acknowledged sequence number in the current session.
    pub acked: u64,
    /// Session generation: how many sessions with this peer have ended.
    pub generation: u64,
    /// Connections established after the first.
    pub reconnects: u64,
    /// Of the unacknowledged messages, those transmitted on the current connection.
    pub in_flight: u64,
    /// Totals over the peer's life, across connections and sessions: messages and bytes sent,
    /// transmitted, retransmitted, acknowledged, received, duplicates dropped, handed back,
    /// sessions lost. Counted by the protocol core.
    pub counters: SessionCounters,
    /// Smoothed time from transmitting a message to its acknowledgement (includes the peer's
    /// acknowledgement delay); `None` until a message has been timed.
    pub rtt: Option<std::time::Duration>,
    /// Bytes of frames read from and written to this peer's established connections (after
    /// TLS).
    pub bytes_read: u64,
    /// See `bytes_read`.
    pub bytes_written: u64,
    /// The id of the current session (both sides report the same), 0 while none is
    /// established.
    pub session_id: u64,
    /// Why the last connection ended, if one did.
    pub last_disconnect: Option<String>,
}

impl std::fmt::Debug for PeerInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerInner")
            .field("name", &self.name)
            .finish()
    }
}

pub(crate) struct PeerInner {
    pub(crate) name: String,
    pub(crate) core: Mutex<PeerCore>,
    /// Wakes senders waiting for window space (many may wait: `notify_waiters`).
    pub(crate) space: Notify,
    pub(crate) delivery: watch::Sender<DeliveryState>,
    /// Bit mask of event kinds queued for this peer (see `events::Kind`).
    pub(crate) pending_events: AtomicU8,
    /// The kind (`Connected` or `Disconnected`) of the connection event queued last: what the
    /// last connection marker taken from the queue reports (see `EventQueue::pop`).
    pub(crate) last_link_event: AtomicU8,
    /// The application's [`Peer`] handles to this peer (the node's own references are not
    /// counted). An atomic beside the lock: handles are cloned and dropped without it.
    handles: AtomicUsize,
}

/// Everything behind the peer's lock: the sans-IO session and what the driver reports.
pub(crate) struct PeerCore {
    pub(crate) session: Session,
    pub(crate) state: ConnectionState,
    /// Wakes the driver of the current connection (one waiter: `notify_one` keeps a permit).
    pub(crate) wake: Arc<Notify>,
    pub(crate) resumed: bool,
    /// Why the last connection ended, if one did. Boxed: most peers never see one end, and
    /// the peer's lock guards a few hundred bytes per idle peer.
    pub(crate) last_disconnect: Option<Box<str>>,
    /// What lost sessions left behind; allocated at the first loss (see [`Losses`]).
    pub(crate) losses: Option<Box<Losses>>,
    pub(crate) established_count: u64,
    pub(crate) closed: bool,
    /// The node's memory bounds (unset only in unit tests of the event queue).
    pub(crate) memory: Option<Arc<super::memory::Memory>>,
    /// The endpoint's record of the peer: the key the session is bound to (TLS only) and the
    /// current link. Every connection-level decision goes through it (see `proto::endpoint`).
    pub(crate) record: PeerRecord<crate::security::PublicKey>,
    /// Whether a task watches this peer's timers while it has no connection.
    pub(crate) watched: bool,
    /// Receivers waiting in [`Peer::recv`] and the session losses they are owed.
    pub(crate) recv: super::recv::RecvState,
    /// The session's counters as last added into the node's totals (see `stats`).
    pub(crate) published: SessionCounters,
    /// Bytes read from and written to established connections.
    pub(crate) bytes_read: u64,
    pub(crate) bytes_written: u64,
}

/// What the peer's lost sessions left behind. Out of line: most peers never lose a session, and
/// every idle peer would otherwise carry it.
#[derive(Debug)]
pub(crate) struct Losses {
    /// Messages handed back by lost sessions, waiting for the `SessionLost` event.
    pub(crate) handed_back: Vec<Bytes>,
    /// Why the latest session was lost.
    pub(crate) reason: LostReason,
    /// Each ended generation, oldest first: a receipt of an ended generation succeeded if its
    /// message was acknowledged before the end. The latest `max_ended_sessions` only.
    pub(crate) ended: VecDeque<Ended>,
    /// Why the newest generation no longer in `ended` ended (receipts older than `ended` report
    /// it).
    pub(crate) forgotten: Option<LostReason>,
}

impl PeerInner {
    pub(crate) fn new(name: String, session: Session) -> Arc<Self> {
        Arc::new(PeerInner {
            name,
            core: Mutex::new(PeerCore {
                session,
                state: ConnectionState::Disconnected,
                wake: Arc::new(Notify::new()),
                resumed: false,
                last_disconnect: None,
                losses: None,
                established_count: 0,
                closed: false,
                memory: None,
                record: PeerRecord::new(),
                watched: false,
                recv: Default::default(),
                published: SessionCounters::default(),
                bytes_read: 0,
                bytes_written: 0,
            }),
            space: Notify::new(),
            delivery: watch::Sender::new(DeliveryState::default()),
            pending_events: AtomicU8::new(0),
            last_link_event: AtomicU8::new(0),
            handles: AtomicUsize::new(0),
        })
    }

    /// The application's handles to this peer.
    pub(crate) fn handles(&self) -> usize {
        self.handles.load(Ordering::Relaxed)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, PeerCore> {
        self.core.lock()
    }
}

impl Peer {
    pub(crate) fn from_inner(inner: Arc<PeerInner>) -> Self {
        inner.handles.fetch_add(1, Ordering::Relaxed);
        Peer { inner }
    }

    /// The peer's node name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Current connection state.
    pub fn state(&self) -> ConnectionState {
        self.inner.lock().state
    }

    /// Queue depths, state and totals; cheap (the peer's lock, a few fields copied).
    pub fn stats(&self) -> PeerStats {
        let core = self.inner.lock();
        PeerStats {
            in_flight: core.session.in_flight(),
            counters: core.session.counters(),
            rtt: core.session.rtt(),
            bytes_read: core.bytes_read,
            bytes_written: core.bytes_written,
            session_id: core.session.session_id(),
            last_disconnect: core
                .last_disconnect
                .as_deref()
                .filter(|reason| !reason.is_empty())
                .map(String::from),
            state: core.state,
            inbox_len: core.session.inbox_len(),
            inbox_bytes: core.session.inbox_bytes(),
            unacked_len: core.session.unacked_len(),
            unacked_bytes: core.session.unacked_bytes(),
            acked: core.session.acked(),
            generation: core.session.generation(),
            reconnects: core.established_count.saturating_sub(1),
        }
    }

    // ---- sending ------------------------------------------------------------------------------

    /// Serialises `message` (MessagePack) and queues it, waiting while the outbound window is
    /// full. Returns once the message is queued; the [`Receipt`] tells when it is acknowledged.
    pub async fn send<T: Serialize + ?Sized>(&self, message: &T) -> Result<Receipt<'_>> {
        self.send_bytes(codec::encode(message)?).await
    }

    /// Like [`Peer::send`], but fails with [`Error::Full`] instead of waiting.
    pub fn try_send<T: Serialize + ?Sized>(&self, message: &T) -> Result<Receipt<'_>> {
        self.try_send_bytes(codec::encode(message)?)
    }

    /// Queues raw bytes (no serialisation), waiting while the outbound window is full.
    ///
    /// While more than half of the window waits for acknowledgements, every 512th call also
    /// yields to the runtime once, so that a task sending in a tight loop lets the connection
    /// task take in acknowledgements and transmit instead of filling the whole window before
    /// either can run (on tokio they often share a worker thread, and a task woken by the sender
    /// waits for the sender to yield).
    ///
    /// As with an `async fn`, nothing is queued until the returned future is first polled.
    pub fn send_bytes(
        &self,
        payload: impl Into<Bytes>,
    ) -> impl Future<Output = Result<Receipt<'_>>> + Send + '_ {
        // Converted here, so that the future works on the payload where it was put instead of
        // moving it into a local of its own first (a copy on the path of every message).
        let mut payload = payload.into();
        async move {
            match self.push(&mut payload) {
                Ok(Queued { number, pause }) => {
                    if pause {
                        tokio::task::yield_now().await;
                    }
                    Ok(self.receipt(number))
                }
                // Boxed, so that the future of the fast path stays small.
                Err(Refused::Full) => Box::pin(self.send_when_room(payload)).await,
                Err(refused) => Err(self.refusal(refused, &payload)),
            }
        }
    }

    /// The slow path of [`Peer::send_bytes`]: waits for window space, then queues.
    async fn send_when_room(&self, mut payload: Bytes) -> Result<Receipt<'_>> {
        let memory = self.inner.lock().memory.clone();
        loop {
            // Registered before the check, so an acknowledgement in between is not missed.
            let space = self.inner.space.notified();
            let taken = memory.as_ref().map(|m| m.handed_back_taken.notified());
            match self.push(&mut payload) {
                Ok(Queued { number, .. }) => return Ok(self.receipt(number)),
                Err(Refused::Full) => {}
                Err(refused) => return Err(self.refusal(refused, &payload)),
            }
            wait_for_room(space, taken).await;
        }
    }

    /// Serialises and queues several messages in order, waiting while the window is full; see
    /// [`Peer::send_bytes_many`]. Each message is encoded as its turn comes: one that fails to
    /// encode fails the call with [`Error::Encode`], and the messages before it were queued.
    pub async fn send_many<'a, T, I>(&self, messages: I) -> Result<Receipt<'_>>
    where
        T: Serialize + ?Sized + 'a,
        I: IntoIterator<Item = &'a T>,
    {
        let mut failed = None;
        let payloads = messages
            .into_iter()
            .map_while(|message| match codec::encode(message) {
                Ok(payload) => Some(payload),
                Err(e) => {
                    failed = Some(e);
                    None
                }
            });
        let sent = self.send_bytes_many(payloads).await;
        match failed {
            Some(error) => Err(error),
            None => sent,
        }
    }

    /// Queues several raw messages in order, waiting while the window is full, and returns the
    /// receipt of the last one: delivery is cumulative, so it covers all of them. The peer's
    /// lock is taken once per 64 messages rather than once per message, which is what a
    /// high-rate sender wants; the iterator runs between those, never under the lock.
    /// Like [`Peer::send_bytes`], it yields once before returning while more than half of the
    /// window waits for acknowledgements.
    ///
    /// An empty batch fails with [`Error::EmptyBatch`] and queues nothing. Sizes are checked as
    /// the messages are queued: one over the limit fails the call with
    /// [`Error::MessageTooLarge`], and the messages before it were queued (they are sent; an
    /// application that cannot tell its sizes in advance sends one at a time). A node shutting
    /// down partway fails with [`Error::NodeClosed`]; the messages before that point were
    /// queued.
    pub async fn send_bytes_many<I>(&self, payloads: I) -> Result<Receipt<'_>>
    where
        I: IntoIterator,
        I::Item: Into<Bytes>,
    {
        let mut payloads = payloads.into_iter();
        // Taken from the iterator a chunk at a time, outside the lock: the iterator is the
        // caller's code (encoding, say), which must neither hold up the connection nor find the
        // peer locked. The buffer is the one allocation of a call.
        let mut chunk = VecDeque::with_capacity(payloads.size_hint().0.clamp(1, BATCH_CHUNK));
        chunk.extend(payloads.by_ref().take(BATCH_CHUNK).map(Into::into));
        if chunk.is_empty() {
            return Err(Error::EmptyBatch);
        }
        let mut last = 0;
        let memory = self.inner.lock().memory.clone();
        let pause = loop {
            // Registered before the check, so an acknowledgement in between is not missed.
            let space = self.inner.space.notified();
            let taken = memory.as_ref().map(|m| m.handed_back_taken.notified());
            let mut half_full = false;
            {
                let mut core = self.inner.lock();
                if core.closed {
                    return Err(Error::NodeClosed);
                }
                let mut wake = false;
                let mut refused = None;
                let paused = memory.as_ref().is_some_and(|m| m.sending_paused());
                // Moved into the session once it has room for each, never cloned.
                while let Some(payload) = if paused { None } else { chunk.pop_front() } {
                    let len = payload.len();
                    if !core.session.fits(len) {
                        let max = core.session.max_message();
                        refused = Some(Error::MessageTooLarge { len, max });
                        break;
                    }
                    if !core.session.has_room(len) {
                        chunk.push_front(payload);
                        break;
                    }
                    match core.session.send_noting(payload) {
                        Ok((seq, woken)) => {
                            last = core.session.messages_before().saturating_add(seq);
                            wake |= woken;
                        }
                        Err(e) => {
                            refused = Some(push_error(e));
                            break;
                        }
                    }
                }
                // Also before failing: the messages queued so far are sent all the same.
                if wake {
                    core.wake.notify_one();
                }
                if let Some(error) = refused {
                    return Err(error);
                }
                if chunk.is_empty() {
                    half_full = core.session.window_half_full();
                }
            }
            if chunk.is_empty() {
                chunk.extend(payloads.by_ref().take(BATCH_CHUNK).map(Into::into));
                if chunk.is_empty() {
                    break half_full;
                }
            } else {
                wait_for_room(space, taken).await;
            }
        };
        // As `send_bytes` does, once per call: a call carries many messages.
        if pause {
            tokio::task::yield_now().await;
        }
        Ok(self.receipt(last))
    }

    /// Queues raw bytes, or fails with [`Error::Full`] if the window is full.
    pub fn try_send_bytes(&self, payload: impl Into<Bytes>) -> Result<Receipt<'_>> {
        let mut payload = payload.into();
        match self.push(&mut payload) {
            Ok(Queued { number, .. }) => Ok(self.receipt(number)),
            Err(refused) => Err(self.refusal(refused, &payload)),
        }
    }

    /// Queues `payload` if the window has room, taking it (an empty `Bytes` is left behind); on
    /// refusal it stays with the caller. The payload is moved into the session, never cloned:
    /// cloning a `Bytes` made from a `Vec` would allocate. What it returns fits in two
    /// registers: this is the path of every message, and larger results were copied through
    /// memory.
    fn push(&self, payload: &mut Bytes) -> Result<Queued, Refused> {
        self.push_in(None, payload)
    }

    /// [`Peer::push`], and with `within` only while that session is the current one: checked
    /// under the same hold of the lock as the message is queued, so a reply never lands in a
    /// session that started in between (see `reply`).
    #[inline(always)]
    pub(super) fn push_in(
        &self,
        within: Option<SessionRef>,
        payload: &mut Bytes,
    ) -> Result<Queued, Refused> {
        let mut core = self.inner.lock();
        if core.closed {
            return Err(Refused::Closed);
        }
        if within.is_some_and(|session| !core.session.is_current(session)) {
            return Err(Refused::Ended);
        }
        // A relaxed load of a node-wide counter written only when sessions are lost and when
        // the application takes what they handed back.
        if core.memory.as_ref().is_some_and(|m| m.sending_paused()) {
            return Err(Refused::Full);
        }
        let len = payload.len();
        if !core.session.fits(len) {
            return Err(Refused::TooLarge);
        }
        if !core.session.has_room(len) {
            return Err(Refused::Full);
        }
        let (seq, wake) = match core.session.send_noting(std::mem::take(payload)) {
            Ok(sent) => sent,
            // Not after the checks above; the payload is gone, the caller reports the refusal.
            Err(PushError::Full) => return Err(Refused::Full),
            Err(PushError::TooLarge { .. }) => return Err(Refused::TooLarge),
        };
        if wake {
            core.wake.notify_one();
        }
        Ok(Queued {
            pause: seq % PAUSE_EVERY == 0 && core.session.window_half_full(),
            number: core.session.messages_before().saturating_add(seq),
        })
    }

    pub(super) fn receipt(&self, number: u64) -> Receipt<'_> {
        Receipt::new(self, number)
    }

    /// The error for a refusal of [`Peer::push`] of `payload`.
    #[cold]
    pub(super) fn refusal(&self, refused: Refused, payload: &Bytes) -> Error {
        match refused {
            Refused::Closed => Error::NodeClosed,
            Refused::Ended => Error::SessionEnded,
            Refused::Full => Error::Full,
            Refused::TooLarge => Error::MessageTooLarge {
                len: payload.len(),
                max: self.inner.lock().session.max_message(),
            },
        }
    }

    // ---- reading ------------------------------------------------------------------------------

    /// Removes and decodes up to `n` messages, oldest first; the rest stay queued.
    ///
    /// All or nothing: if any of them fails to decode as `T`, nothing is removed and the error
    /// is returned (take the raw bytes with [`Peer::read_bytes`] to skip it).
    pub fn read<T: DeserializeOwned>(&self, n: usize) -> Result<Vec<T>> {
        let mut core = self.inner.lock();
        let decoded = core
            .session
            .peek(n)
            .map(|payload| codec::decode(payload))
            .collect::<Result<Vec<T>>>()?;
        self.take(&mut core, decoded.len());
        Ok(decoded)
    }

    /// Removes and decodes every queued message.
    pub fn read_all<T: DeserializeOwned>(&self) -> Result<Vec<T>> {
        self.read(usize::MAX)
    }

    /// Removes up to `n` raw messages, oldest first.
    pub fn read_bytes(&self, n: usize) -> Vec<Bytes> {
        let mut core = self.inner.lock();
        self.take(&mut core, n)
    }

    /// Removes every queued raw message.
    pub fn read_all_bytes(&self) -> Vec<Bytes> {
        self.read_bytes(usize::MAX)
    }

    /// Messages waiting to be read.
    pub fn pending(&self) -> usize {
        self.inner.lock().session.inbox_len()
    }

    pub(super) fn take(&self, core: &mut PeerCore, n: usize) -> Vec<Bytes> {
        taking(core, |session| session.read(n))
    }

    /// Builds the event for a queued marker from the current state (see `events`).
    pub(crate) fn materialize(self, kind: Kind) -> Option<Event> {
        let mut core = self.inner.lock();
        let event = match kind {
            Kind::Message => return Some(Event::Message { peer: self.clone() }),
            Kind::Delivered => Event::Delivered {
                up_to: core.session.acked(),
                peer: self.clone(),
            },
            Kind::Connected => Event::Connected {
                resumed: core.resumed,
                peer: self.clone(),
            },
            Kind::Disconnected => Event::Disconnected {
                reason: core
                    .last_disconnect
                    .as_deref()
                    .map(String::from)
                    .unwrap_or_default(),
                peer: self.clone(),
            },
            Kind::SessionLost => {
                let (unacked, reason) = {
                    let losses = core.losses.as_mut()?;
                    (std::mem::take(&mut losses.handed_back), losses.reason)
                };
                if let Some(memory) = &core.memory {
                    memory.taken_back(unacked.iter().map(Bytes::len).sum());
                }
                Event::SessionLost {
                    unacked,
                    reason,
                    peer: self.clone(),
                }
            }
        };
        Some(event)
    }
}

/// Takes received messages from the session with `read`, waking the connection if that freed
/// enough of the inbox to tell the peer (see `Inbound`).
pub(crate) fn taking<R>(core: &mut PeerCore, read: impl FnOnce(&mut Session) -> R) -> R {
    let had_work = core.session.wants_transmit();
    let taken = read(&mut core.session);
    if !had_work && core.session.wants_transmit() {
        core.wake.notify_one();
    }
    taken
}

/// Waits for window space, or for the application to take handed-back messages (the other
/// reason a send waits, see `NodeConfig::max_handed_back_bytes`).
pub(super) async fn wait_for_room(space: Notified<'_>, taken: Option<Notified<'_>>) {
    match taken {
        Some(taken) => {
            tokio::select! {
                () = space => {}
                () = taken => {}
            }
        }
        None => space.await,
    }
}

/// Messages [`Peer::send_bytes_many`] takes from its iterator between holds of the peer's lock
/// (a chunk's buffer is 2 KiB).
const BATCH_CHUNK: usize = 64;

/// While half the window waits for acknowledgements, [`Peer::send_bytes`] yields once per this
/// many messages.
const PAUSE_EVERY: u64 = 512;

/// A message queued by [`Peer::push`].
pub(super) struct Queued {
    /// Its number across generations (see [`Receipt`]).
    pub(super) number: u64,
    /// The sender should yield once (see [`Peer::send_bytes`]).
    pub(super) pause: bool,
}

/// Why [`Peer::push`] did not queue a message.
#[derive(Debug, Clone, Copy)]
pub(super) enum Refused {
    /// The window is full.
    Full,
    /// The session a reply was to be sent within has ended.
    Ended,
    /// The node is shutting down.
    Closed,
    /// Over the largest message the peer accepts.
    TooLarge,
}

/// A refusal by the session after the checks that should have prevented it.
fn push_error(e: PushError) -> Error {
    match e {
        PushError::Full => Error::Full,
        PushError::TooLarge { len, max } => Error::MessageTooLarge { len, max },
    }
}
