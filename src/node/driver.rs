//! One task per connection: moves bytes between the socket and the peer's session.
//!
//! The loop: lock the peer, feed the session what was read, fire due timers, collect what to
//! write and the session's events; unlock; write what the socket takes without blocking; then
//! wait for the first of: socket readable (always: flow control keeps the peer within the
//! inbox, so reading never needs to pause and acknowledgements are never stuck), socket writable
//! (only with bytes pending), a wake-up from a `Peer` handle, the session's next timer, or
//! shutdown. Before it waits, while the session holds an acknowledgement back for more input to
//! coalesce with, it checks without waiting whether more input is there: if not, the input is
//! drained, and the session is told so, which sends the acknowledgement at once.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, oneshot};
use tokio::task::coop::unconstrained;
use tracing::Instrument;

use super::attach::{apply_events, attach, sync_state};
use super::dial::Dialing;
use super::events::Kind;
use super::peer::{Peer, PeerCore, PeerInner};
use super::stats::{NodeCounters, Refused};
use super::transport::{self, Slot, TlsFailure, Transport};
use super::{NodeShared, clock};
use crate::error::{Error, Result};
use crate::proto::admission::RefusalReason;
use crate::proto::endpoint::{AttachRefusal, LinkEnd};
use crate::proto::redial::Answer;
use crate::proto::session::LinkId;
use crate::proto::{CloseCode, Frame, Handshake, LinkError, PeerHello, frame};
use crate::security::{PublicKey, Security};

/// Bytes of frames collected per write.
const WRITE_BATCH: usize = 64 * 1024;
/// Bytes of frames encoded per hold of the peer's lock.
const LOCKED_ENCODE: usize = 8 * 1024;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes reserved for a read while the connection is quiet.
const IDLE_READ: usize = 2 * 1024;
/// Buffers larger than this are released when empty, so idle connections stay small.
const KEEP_CAPACITY: usize = 16 * 1024;
/// Most bytes read and discarded from a peer while waiting for its EOF after our CLOSE.
const CLOSE_DRAIN: usize = 256 * 1024;
/// How long a closing connection may spend flushing its last frames.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

pub(crate) use crate::proto::endpoint::Origin;

/// How a connection ended.
#[derive(Debug)]
pub(crate) enum End {
    Io(io::Error),
    Eof,
    Link(LinkError),
    /// A newer connection took over the session.
    Replaced,
    /// Crossed connections: the peer's other connection is kept, this one refused.
    Crossed,
    Shutdown,
    /// [`Node::abort`](crate::Node::abort): no goodbye.
    Aborted,
    /// The TLS handshake failed.
    Tls(String),
    /// The trust policy (or the key binding of a session) refused the peer: why, what the peer
    /// is told, and the details for our side.
    Unauthorized {
        reason: RefusalReason,
        told: String,
        detail: String,
    },
    /// The node holds as many sessions as it may.
    Busy,
    /// A newer connection needed this one's handshake slot.
    Evicted,
}

impl End {
    fn close_code(&self) -> Option<CloseCode> {
        match self {
            End::Io(_) | End::Eof | End::Aborted | End::Tls(_) => None,
            End::Unauthorized { reason, .. } => Some(reason.close_code()),
            End::Busy | End::Evicted => Some(CloseCode::Busy),
            End::Link(e) => e.close_code(),
            End::Replaced | End::Crossed => Some(CloseCode::Replaced),
            End::Shutdown => Some(CloseCode::Shutdown),
        }
    }

    /// Whether another connection now serves (or will serve) the session.
    pub(crate) fn superseded(&self) -> bool {
        matches!(
            self,
            End::Replaced
                | End::Crossed
                | End::Link(LinkError::ClosedByPeer {
                    code: CloseCode::Replaced,
                    ..
                })
        )
    }

    pub(crate) fn into_error(self) -> Error {
        match self {
            End::Io(e) => Error::Io(e),
            End::Eof => Error::Io(io::ErrorKind::UnexpectedEof.into()),
            End::Link(e) => Error::Link(e),
            End::Replaced | End::Crossed => Error::Link(LinkError::ClosedByPeer {
                code: CloseCode::Replaced,
                reason: String::new(),
            }),
            End::Shutdown | End::Aborted => Error::NodeClosed,
            End::Tls(reason) => Error::Tls(reason),
            End::Unauthorized { detail, .. } => Error::Unauthorized(detail),
            End::Busy | End::Evicted => Error::Link(LinkError::ClosedByPeer {
                code: CloseCode::Busy,
                reason: self.to_string(),
            }),
        }
    }
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Io(e) => write!(f, "I/O error: {e}"),
            End::Eof => f.write_str("connection closed by peer"),
            End::Link(e) => write!(f, "{e}"),
            End::Replaced => f.write_str("replaced by a newer connection"),
            End::Crossed => f.write_str("crossed connection refused"),
            End::Shutdown => f.write_str("node shut down"),
            End::Aborted => f.write_str("node aborted"),
            End::Tls(reason) => f.write_str(reason),
            End::Unauthorized { told, .. } => f.write_str(told),
            End::Busy => f.write_str("too many sessions"),
            End::Evicted => f.write_str("handshake evicted by newer connections"),
        }
    }
}

impl Outcome {
    fn failed(end: End) -> Outcome {
        Outcome {
            peer: None,
            established: false,
            end,
        }
    }
}

/// What the caller of [`run`] learns.
pub(crate) struct Outcome {
    /// The peer the HELLO named, if the handshake got that far.
    pub(crate) peer: Option<Arc<PeerInner>>,
    /// Whether the session was established on this connection.
    pub(crate) established: bool,
    pub(crate) end: End,
}

/// Runs one connection to its end. `ready` is answered once the handshake completes (or not at
/// all: the caller answers it with the outcome). `slot` is the accepted connection's place among
/// the pending handshakes, given up once established (or taken by eviction).
///
/// Everything the connection logs is inside a `connection` span: node, origin, remote address,
/// then the peer once its HELLO names it and the session id once established.
pub(crate) async fn run(
    shared: &Arc<NodeShared>,
    tcp: TcpStream,
    origin: Origin,
    ready: &mut Option<oneshot::Sender<Result<Peer>>>,
    slot: Option<Slot>,
    dialing: Option<&Dialing>,
) -> Outcome {
    let remote = tcp.peer_addr().ok();
    let span = tracing::info_span!(
        "connection",
        node = %shared.name,
        ?origin,
        remote = tracing::field::Empty,
        peer = tracing::field::Empty,
        session = tracing::field::Empty,
    );
    if let Some(remote) = remote {
        span.record("remote", tracing::field::display(remote));
    }
    let outcome = run_connection(shared, tcp, origin, ready, slot, dialing)
        .instrument(span)
        .await;
    if !outcome.established && shared.config.metrics {
        if let Some(reason) = Refused::of(&outcome.end) {
            shared.counters.refused(reason);
        }
    }
    outcome
}

async fn run_connection(
    shared: &Arc<NodeShared>,
    tcp: TcpStream,
    origin: Origin,
    ready: &mut Option<oneshot::Sender<Result<Peer>>>,
    slot: Option<Slot>,
    dialing: Option<&Dialing>,
) -> Outcome {
    // Frames are batched per write by the loop, so Nagle would only add latency.
    let _ = tcp.set_nodelay(true);
    // For reporting refusals. (A socket already reset has no address; it fails before any.)
    let addr = tcp
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    // One absolute deadline covers TLS, HELLO and SESSION: trickling bytes does not extend it.
    let hs = Handshake::new(
        clock::now(),
        &shared.name,
        shared.incarnation,
        &shared.config.protocol,
    );
    match &shared.security {
        // Each mode's connection, and the TLS handshake, are boxed on their own, so that a task
        // holds only what its mode needs: inline, every task would be as large as the largest
        // of them (the TLS connection), plaintext too. 10,000 idle peers, bench connections:
        // plaintext 9.5 KB each boxed, 16.6 KB inline; TLS 22.3 KB boxed, 23.8 KB inline, 23.9
        // KB with only the plaintext side and the handshake boxed.
        Security::InsecurePlaintext => {
            let remote = (addr, None);
            Box::pin(run_over(
                shared, tcp, remote, hs, origin, ready, slot, dialing,
            ))
            .await
        }
        Security::Tls(configs) => {
            let deadline = tokio::time::Instant::from_std(hs.deadline());
            let evicted = evicted(&slot);
            let handshake = Box::pin(tokio::time::timeout_at(
                deadline,
                transport::tls_handshake(configs, tcp, origin),
            ));
            let result = tokio::select! {
                result = handshake => result,
                () = evicted => return Outcome::failed(End::Evicted),
                () = shared.closed.cancelled() => return Outcome::failed(shared.closing_end()),
            };
            match result {
                Err(_) => Outcome::failed(End::Link(LinkError::HandshakeTimeout(
                    shared.config.protocol.handshake_timeout,
                ))),
                Ok(Err(TlsFailure::Tls(reason))) => Outcome::failed(End::Tls(reason)),
                Ok(Err(TlsFailure::Io(e))) => Outcome::failed(End::Io(e)),
                Ok(Ok((stream, key))) => {
                    Box::pin(run_over(
                        shared,
                        stream,
                        (addr, Some(key)),
                        hs,
                        origin,
                        ready,
                        slot,
                        dialing,
                    ))
                    .await
                }
            }
        }
    }
}

/// Reads what is waiting without waiting for more: `None` if nothing is. Unconstrained: with
/// the task's cooperative budget spent, tokio would answer "pending" although input waits.
async fn read_now<R: AsyncRead + Unpin>(
    reader: &mut R,
    rbuf: &mut BytesMut,
) -> Option<io::Result<usize>> {
    tokio::select! {
        biased;
        read = unconstrained(reader.read_buf(rbuf)) => Some(read),
        () = std::future::ready(()) => None,
    }
}

/// Resolves when the slot's connection is evicted; never without a slot.
async fn evicted(slot: &Option<Slot>) {
    match slot {
        Some(slot) => slot.evicted.cancelled().await,
        None => std::future::pending().await,
    }
}

/// The connection after TLS (if any): HELLO, trust, attachment, then the session loop. `remote`
/// is the peer's address and the key it proved in TLS; `dialing`, for a connection this node
/// dialed, checks that the node that answered is the peer its dialer serves.
#[allow(clippy::too_many_arguments)]
async fn run_over<S: Transport>(
    shared: &Arc<NodeShared>,
    mut stream: S,
    remote: (SocketAddr, Option<PublicKey>),
    mut hs: Handshake,
    origin: Origin,
    ready: &mut Option<oneshot::Sender<Result<Peer>>>,
    mut slot: Option<Slot>,
    dialing: Option<&Dialing>,
) -> Outcome {
    let mut conn = Conn {
        rbuf: BytesMut::new(),
        wbuf: BytesMut::new(),
        read_size: IDLE_READ,
        unpublished_read: 0,
        unpublished_written: 0,
    };
    hs.write_hello(&mut conn.wbuf);
    let deadline = tokio::time::Instant::from_std(hs.deadline());
    let exchange = tokio::time::timeout_at(deadline, conn.exchange_hello(&mut stream, &mut hs));
    let hello = tokio::select! {
        result = exchange => match result {
            Ok(Ok(hello)) => hello,
            Ok(Err(end)) => return conn.finish(stream, None, false, end).await,
            Err(_) => {
                let end = End::Link(LinkError::HandshakeTimeout(
                    shared.config.protocol.handshake_timeout,
                ));
                return conn.finish(stream, None, false, end).await;
            }
        },
        () = evicted(&slot) => return conn.finish(stream, None, false, End::Evicted).await,
        () = shared.closed.cancelled() => {
            return conn.finish(stream, None, false, shared.closing_end()).await;
        }
    };
    if shared.closing.is_cancelled() {
        return conn.finish(stream, None, false, shared.closing_end()).await;
    }
    tracing::Span::current().record("peer", hello.name.as_str());
    let (addr, key) = remote;
    let refused = |reason| shared.refuse(addr, Some(&hello.name), key, reason);
    if dialing.is_some_and(|d| d.answer(&hello.name) == Answer::Refuse) {
        // The address now leads to another node: it must not be attached as the peer this
        // connection was dialed for (nor learn anything of its session).
        tracing::warn!(node = %shared.name, answered = %hello.name, %addr, "redial reached another node: refused");
        refused(RefusalReason::UnexpectedPeer);
        let told = format!("{}: dialed for another peer", hello.name);
        let end = End::Unauthorized {
            reason: RefusalReason::UnexpectedPeer,
            told: told.clone(),
            detail: told,
        };
        return conn.finish(stream, None, false, end).await;
    }
    let Some(peer) = shared.peer_entry(&hello.name) else {
        refused(RefusalReason::SessionLimit);
        return conn.finish(stream, None, false, End::Busy).await;
    };
    // A check only: a known-peers file records the key once the session is established
    // (`apply_events`), so a refused or failed handshake pins nothing.
    if let (Some(key), Security::Tls(configs)) = (&key, &shared.security) {
        if let Err((reason, detail)) = configs.trust.authorize(&hello.name, key) {
            // The details (file paths, pinned keys) stay in our log; the peer learns which rule
            // refused it.
            if reason == RefusalReason::KnownPeersUnwritable {
                // Our own failure, which only the operator can fix.
                tracing::warn!(node = %shared.name, peer = %hello.name, %key, %detail, "refused");
            } else {
                tracing::debug!(node = %shared.name, peer = %hello.name, %key, %detail, "refused");
            }
            refused(reason);
            shared.forget_if_unused(&peer);
            let end = End::Unauthorized {
                reason,
                told: format!("{}: {reason}", hello.name),
                detail,
            };
            return conn.finish(stream, None, false, end).await;
        }
    }
    let (link, wake) = match attach(shared, &peer, &hello, key, origin, hs.deadline()) {
        Ok(attached) => attached,
        Err(refusal) => {
            shared.forget_if_unused(&peer);
            let end = match refusal {
                AttachRefusal::Crossed => End::Crossed,
                AttachRefusal::NameInUse { live } => {
                    refused(RefusalReason::NameInUse);
                    let told = if live {
                        format!(
                            "{} is in use by another key on a live connection",
                            hello.name
                        )
                    } else {
                        format!("{} is bound to another key by a live session", hello.name)
                    };
                    End::Unauthorized {
                        reason: RefusalReason::NameInUse,
                        told: told.clone(),
                        detail: told,
                    }
                }
            };
            return conn.finish(stream, Some(peer), false, end).await;
        }
    };
    tracing::debug!(node = %shared.name, peer = %hello.name, ?origin, "handshake: HELLO exchanged");
    let (established, end) = conn
        .drive(
            shared,
            &peer,
            &mut stream,
            link,
            &wake,
            ready,
            &mut slot,
            dialing,
        )
        .await;
    {
        let mut core = peer.lock();
        conn.publish_wire(shared, &mut core);
        end_link(shared, &peer, &mut core, link, &end);
    }
    tracing::debug!(node = %shared.name, peer = %hello.name, %end, "connection ended");
    shared.forget_if_unused(&peer);
    conn.finish(stream, Some(peer), established, end).await
}

/// The connection of `link` ended: the endpoint's record says whether that changes anything
/// (only the current link's end does: a replaced link's end, however late, leaves the newer
/// link's state and sends no event), and the node applies it.
pub(crate) fn end_link(
    shared: &NodeShared,
    peer: &Arc<PeerInner>,
    core: &mut PeerCore,
    link: LinkId,
    end: &End,
) {
    let ended = core
        .record
        .link_ended(&mut core.session, link, clock::now());
    if let LinkEnd::Ended { established } = ended {
        sync_state(core);
        core.last_disconnect = Some(end.to_string().into_boxed_str());
        if established {
            shared.events.push(peer, Kind::Disconnected);
        }
    }
    apply_events(shared, peer, core);
}

struct Conn {
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Bytes to offer the next read (see `reserve_read`).
    read_size: usize,
    /// Bytes read and written since the peer's totals were last brought up to date (they are,
    /// whenever the loop holds the peer's lock anyway).
    unpublished_read: u64,
    unpublished_written: u64,
}

impl Conn {
    /// Adds the bytes read and written since the last call to the peer's and the node's totals.
    fn publish_wire(&mut self, shared: &NodeShared, core: &mut PeerCore) {
        let read = std::mem::take(&mut self.unpublished_read);
        let written = std::mem::take(&mut self.unpublished_written);
        if read == 0 && written == 0 {
            return;
        }
        core.bytes_read += read;
        core.bytes_written += written;
        if shared.config.metrics {
            NodeCounters::add(&shared.counters.bytes_read, read);
            NodeCounters::add(&shared.counters.bytes_written, written);
        }
    }

    /// Sends our HELLO and reads the peer's.
    async fn exchange_hello<S: Transport>(
        &mut self,
        stream: &mut S,
        hs: &mut Handshake,
    ) -> Result<PeerHello, End> {
        stream
            .write_all_buf(&mut self.wbuf)
            .await
            .map_err(End::Io)?;
        stream.flush().await.map_err(End::Io)?;
        loop {
            if let Some(hello) = hs
                .handle_input(clock::now(), &mut self.rbuf)
                .map_err(End::Link)?
            {
                return Ok(hello);
            }
            self.rbuf.reserve(1024);
            match stream.read_buf(&mut self.rbuf).await {
                Ok(0) => return Err(End::Eof),
                Ok(_) => {}
                Err(e) => return Err(End::Io(e)),
            }
        }
    }

    /// The main loop; returns whether the link was established, and how it ended.
    #[allow(clippy::too_many_arguments)]
    async fn drive<S: Transport>(
        &mut self,
        shared: &Arc<NodeShared>,
        peer: &Arc<PeerInner>,
        stream: &mut S,
        link: LinkId,
        wake: &Notify,
        ready: &mut Option<oneshot::Sender<Result<Peer>>>,
        slot: &mut Option<Slot>,
        dialing: Option<&Dialing>,
    ) -> (bool, End) {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let mut established = false;
        let mut unflushed = false;
        // Input was read since the last check for more (see the module docs).
        let mut fresh = false;
        // The socket had no more input: the session is told at the top of the loop.
        let mut drained = false;
        // The session's next timer: one `Sleep`, moved when the session's deadline moves.
        let timer = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        loop {
            // Whether the session may have more to encode than the first slice took.
            let mut more;
            let woken = wake.notified();
            // Only polled while the session waits for budget; a wake-up meant for another
            // waiting connection is kept (a permit) until one polls it.
            let budget_freed = shared.memory.inbox_freed.notified();
            let now = clock::now();
            let (timeout, held, starved) = {
                let mut core = peer.lock();
                if !core.record.is_current(link) {
                    return (established, End::Replaced);
                }
                self.publish_wire(shared, &mut core);
                let mut result = core.session.handle_input(now, &mut self.rbuf);
                if std::mem::take(&mut drained) {
                    core.session.input_drained();
                }
                if result.is_ok() && core.session.poll_timeout().is_some_and(|t| t <= now) {
                    result = core.session.handle_timeout(now);
                }
                if let Err(e) = result {
                    // What the session reported before failing (a lost session, say) is applied
                    // under this same lock, as after every session call.
                    apply_events(shared, peer, &mut core);
                    return (established, End::Link(e));
                }
                let limit = self.wbuf.len() + LOCKED_ENCODE;
                core.session.poll_transmit(now, &mut self.wbuf, limit);
                // Short of the slice: the session had no more to send.
                more = self.wbuf.len() >= limit;
                if apply_events(shared, peer, &mut core) {
                    established = true;
                    tracing::Span::current().record(
                        "session",
                        tracing::field::display(format_args!("{:016x}", core.session.session_id())),
                    );
                    // Established: no longer a pending handshake that may be evicted.
                    slot.take();
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(Ok(Peer::from_inner(peer.clone())));
                    }
                }
                if let Some(dialing) = dialing {
                    if core.session.is_suspect() {
                        // The dialer races fresh connections against this one (see dial.rs).
                        dialing.suspect.notify_one();
                    }
                }
                (
                    core.session.poll_timeout(),
                    core.session.ack_held(),
                    core.session.budget_waiting(),
                )
            };
            // The rest of a batch is encoded a slice at a time, so that an application queueing
            // messages waits for the lock no longer than one slice takes.
            while more && self.wbuf.len() < WRITE_BATCH {
                let mut core = peer.lock();
                let limit = (self.wbuf.len() + LOCKED_ENCODE).min(WRITE_BATCH);
                more = core.record.is_current(link)
                    && core.session.poll_transmit(now, &mut self.wbuf, limit)
                    && self.wbuf.len() >= limit;
            }
            self.shrink_if_idle();
            let room = self.reserve_read();
            // Only with nothing to write: a stream of input must not hold back our output.
            if held && fresh && self.wbuf.is_empty() && !unflushed {
                fresh = false;
                let mut read = read_now(&mut reader, &mut self.rbuf).await;
                if read.is_none() {
                    // One scheduling round before calling it drained: a sender on the same
                    // runtime that is streaming gets to write its next batch, so the pause
                    // between two of its writes is not taken for the end of a burst.
                    tokio::task::yield_now().await;
                    read = read_now(&mut reader, &mut self.rbuf).await;
                }
                match read {
                    None => drained = true,
                    Some(Ok(0)) => return (established, End::Eof),
                    Some(Ok(n)) => {
                        self.after_read(n, room);
                        fresh = true;
                    }
                    Some(Err(e)) => return (established, End::Io(e)),
                }
                continue;
            }
            if let Some(at) = timeout.filter(|&at| armed != Some(at)) {
                timer.as_mut().reset(tokio::time::Instant::from_std(at));
            }
            armed = timeout;
            tokio::select! {
                _ = shared.closed.cancelled() => {
                    let end = shared.closing_end();
                    if matches!(end, End::Shutdown) {
                        // The peer must learn what we received before our session ends, or it
                        // would hand back messages we hold. Nothing else is sent.
                        let mut core = peer.lock();
                        if core.record.is_current(link) {
                            core.session.flush_ack(&mut self.wbuf);
                        }
                    }
                    return (established, end);
                }
                () = evicted(slot) => return (established, End::Evicted),
                read = reader.read_buf(&mut self.rbuf) => match read {
                    Ok(0) => return (established, End::Eof),
                    Ok(n) => {
                        self.after_read(n, room);
                        fresh = true;
                    }
                    Err(e) => return (established, End::Io(e)),
                },
                written = write_or_flush(&mut writer, &mut self.wbuf), if !self.wbuf.is_empty() || unflushed => {
                    match written {
                        Ok(Wrote::Bytes(n)) => {
                            unflushed = S::BUFFERS_WRITES;
                            self.unpublished_written += n as u64;
                        }
                        Ok(Wrote::Flushed) => unflushed = false,
                        Err(e) => return (established, End::Io(e)),
                    }
                }
                _ = woken => {}
                () = &mut timer, if armed.is_some() => {}
                // Only while the session waits for budget: the node-wide notifier is not
                // registered with on the way of every connection.
                _ = budget_freed, if starved => {}
            }
        }
    }

    /// Room for the next read: small while the connection is quiet, doubling (up to a full
    /// chunk) while reads come in full, so idle connections hold little memory and busy ones
    /// make few syscalls. Returns the room offered.
    fn reserve_read(&mut self) -> usize {
        if self.rbuf.capacity() - self.rbuf.len() < self.read_size {
            self.rbuf.reserve(self.read_size);
        }
        self.rbuf.capacity() - self.rbuf.len()
    }

    /// Counts what the last read brought and adapts the read size to it.
    fn after_read(&mut self, read: usize, room: usize) {
        self.unpublished_read += read as u64;
        if read >= room {
            self.read_size = (self.read_size * 2).min(READ_CHUNK);
        } else if read < self.read_size / 4 {
            self.read_size = (self.read_size / 2).max(IDLE_READ);
        }
    }

    fn shrink_if_idle(&mut self) {
        // Only once reads have become small again: a busy connection keeps its buffer.
        if self.rbuf.is_empty()
            && self.rbuf.capacity() > KEEP_CAPACITY
            && self.read_size == IDLE_READ
        {
            self.rbuf = BytesMut::new();
        }
        if self.wbuf.is_empty() && self.wbuf.capacity() > KEEP_CAPACITY {
            self.wbuf = BytesMut::new();
        }
    }

    /// Says goodbye where the protocol wants a reason, then closes the socket.
    async fn finish<S: Transport>(
        mut self,
        mut stream: S,
        peer: Option<Arc<PeerInner>>,
        established: bool,
        end: End,
    ) -> Outcome {
        if let Some(code) = end.close_code() {
            frame::encode(
                &Frame::Close {
                    code,
                    reason: end.to_string(),
                },
                &mut self.wbuf,
            );
            let goodbye = async {
                stream.write_all_buf(&mut self.wbuf).await?;
                stream.flush().await?;
                stream.shutdown().await?;
                // Wait for the peer's EOF: closing with unread input would reset the connection
                // and could destroy the CLOSE frame before the peer reads it. A peer that keeps
                // sending instead (a flood) gets a little patience, not the whole grace period.
                let mut sink = BytesMut::with_capacity(4096);
                let mut drained = 0;
                while drained < CLOSE_DRAIN {
                    let n = stream.read_buf(&mut sink).await?;
                    if n == 0 {
                        break;
                    }
                    drained += n;
                    sink.clear();
                }
                io::Result::Ok(())
            };
            // A link that timed out is most likely unreachable: waiting for the goodbye to get
            // through would only hold up its dialer's redial. The CLOSE is still queued.
            let grace = match end {
                End::Link(LinkError::IdleTimeout(_)) => Duration::ZERO,
                _ => CLOSE_GRACE,
            };
            let _ = tokio::time::timeout(grace, goodbye).await;
        }
        if matches!(end, End::Aborted) {
            // As a crash would: reset, not a graceful FIN. (A zero linger never blocks on close.)
            let _ = socket2::SockRef::from(stream.tcp()).set_linger(Some(Duration::ZERO));
        }
        Outcome {
            peer,
            established,
            end,
        }
    }
}

impl NodeShared {
    fn closing_end(&self) -> End {
        if self.aborted.load(std::sync::atomic::Ordering::SeqCst) {
            End::Aborted
        } else {
            End::Shutdown
        }
    }
}

enum Wrote {
    Bytes(usize),
    Flushed,
}

/// Writes what the socket takes, or, with nothing left to write, flushes.
async fn write_or_flush(
    writer: &mut (impl AsyncWriteExt + Unpin),
    wbuf: &mut BytesMut,
) -> io::Result<Wrote> {
    if wbuf.is_empty() {
        writer.flush().await.map(|()| Wrote::Flushed)
    } else {
        writer.write_buf(wbuf).await.map(Wrote::Bytes)
    }
}
