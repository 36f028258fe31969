//! One task per connection: moves bytes between the socket and the peer's session.
//!
//! The loop: lock the peer, feed the session what was read, fire due timers, collect what to
//! write and the session's events; unlock; write what the socket takes without blocking; then
//! wait for the first of: socket readable (always: flow control keeps the peer within the
//! inbox, so reading never needs to pause and acknowledgements are never stuck), socket writable
//! (only with bytes pending), a wake-up from a `Peer` handle, the session's next timer, or
//! shutdown.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, oneshot};

use super::NodeShared;
use super::events::Kind;
use super::peer::{ConnectionState, Peer, PeerCore, PeerInner};
use crate::error::{Error, Result};
use crate::proto::session::LinkId;
use crate::proto::{CloseCode, Frame, Handshake, LinkError, PeerHello, SessionEvent, frame};

/// Bytes of frames collected per write.
const WRITE_BATCH: usize = 64 * 1024;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 64 * 1024;
/// Buffers larger than this are released when empty, so idle connections stay small.
const KEEP_CAPACITY: usize = 16 * 1024;
/// How long a closing connection may spend flushing its last frames.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Who opened the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Dialed,
    Accepted,
}

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
}

impl End {
    fn close_code(&self) -> Option<CloseCode> {
        match self {
            End::Io(_) | End::Eof | End::Aborted => None,
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
/// all: the caller answers it with the outcome).
pub(crate) async fn run(
    shared: &Arc<NodeShared>,
    mut stream: TcpStream,
    origin: Origin,
    ready: &mut Option<oneshot::Sender<Result<Peer>>>,
) -> Outcome {
    // Frames are batched per write by the loop, so Nagle would only add latency.
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        rbuf: BytesMut::new(),
        wbuf: BytesMut::new(),
    };
    let mut hs = Handshake::new(
        Instant::now(),
        &shared.name,
        shared.incarnation,
        &shared.config.protocol,
    );
    hs.write_hello(&mut conn.wbuf);
    let deadline = tokio::time::Instant::from_std(hs.deadline());
    let hello =
        match tokio::time::timeout_at(deadline, conn.exchange_hello(&mut stream, &mut hs)).await {
            Ok(Ok(hello)) => hello,
            Ok(Err(end)) => return conn.finish(stream, None, false, end).await,
            Err(_) => {
                let end = End::Link(LinkError::HandshakeTimeout(
                    shared.config.protocol.handshake_timeout,
                ));
                return conn.finish(stream, None, false, end).await;
            }
        };
    if shared.closing.is_cancelled() {
        return conn.finish(stream, None, false, shared.closing_end()).await;
    }
    let peer = shared.peer_entry(&hello.name);
    let attached = {
        let mut core = peer.lock();
        attach(shared, &peer, &mut core, &hello, origin, hs.deadline())
    };
    let Some((link, wake)) = attached else {
        shared.forget_if_unused(&peer);
        return conn.finish(stream, Some(peer), false, End::Crossed).await;
    };
    tracing::debug!(node = %shared.name, peer = %hello.name, ?origin, "handshake: HELLO exchanged");
    let (established, end) = conn
        .drive(shared, &peer, &mut stream, link, &wake, ready)
        .await;
    {
        let mut core = peer.lock();
        let current = core.session.link_id() == Some(link);
        if current {
            core.session.detach(Instant::now());
        }
        // A link error detaches inside the session; it was still ours.
        if current || matches!(end, End::Link(_)) {
            core.state = if core.closed {
                ConnectionState::Closed
            } else {
                ConnectionState::Disconnected
            };
            core.last_disconnect = end.to_string();
            if established {
                shared.events.push(&peer, Kind::Disconnected);
            }
        }
        apply_events(shared, &peer, &mut core);
    }
    tracing::debug!(node = %shared.name, peer = %hello.name, %end, "connection ended");
    shared.forget_if_unused(&peer);
    conn.finish(stream, Some(peer), established, end).await
}

/// Attaches the connection to the peer's session, unless the crossed-connection rule keeps the
/// existing one. Returns the link and the notifier that wakes this connection's driver.
fn attach(
    shared: &NodeShared,
    peer: &Arc<PeerInner>,
    core: &mut PeerCore,
    hello: &PeerHello,
    origin: Origin,
    deadline: Instant,
) -> Option<(LinkId, Arc<Notify>)> {
    let dialed_by_us = origin == Origin::Dialed;
    if core.session.link_id().is_some() && core.link_dialed_by_us != dialed_by_us {
        // Crossed connections (each side dialed the other): both sides keep the connection
        // dialed by the node with the smaller name, so they agree without talking.
        let keep_ours = shared.name < hello.name;
        if core.link_dialed_by_us == keep_ours {
            return None;
        }
    }
    let wake = Arc::new(Notify::new());
    let previous = std::mem::replace(&mut core.wake, wake.clone());
    let link = core.session.begin_link(
        Instant::now(),
        hello,
        deadline,
        rand::random::<u64>().max(1),
    );
    core.link_dialed_by_us = dialed_by_us;
    core.state = ConnectionState::Connecting;
    // The replaced connection's driver (or an idle watcher) wakes, sees it lost the link, ends.
    previous.notify_one();
    apply_events(shared, peer, core);
    Some((link, wake))
}

/// Turns session events into node events, receipt updates and wake-ups. Called with the peer
/// locked, after every session call. Returns whether the link was established.
pub(crate) fn apply_events(
    shared: &NodeShared,
    peer: &Arc<PeerInner>,
    core: &mut PeerCore,
) -> bool {
    let mut established = false;
    while let Some(event) = core.session.poll_event() {
        match event {
            SessionEvent::Established { resumed } => {
                established = true;
                core.state = ConnectionState::Connected;
                core.resumed = resumed;
                core.established_count += 1;
                shared.events.push(peer, Kind::Connected);
            }
            SessionEvent::Received => shared.events.push(peer, Kind::Message),
            SessionEvent::Delivered { .. } => {
                publish_delivery(peer, core);
                shared.events.push(peer, Kind::Delivered);
                peer.space.notify_waiters();
            }
            SessionEvent::Lost {
                generation,
                unacked,
                reason,
                acked,
            } => {
                if let Ok(g) = usize::try_from(generation) {
                    core.ended_acked.resize(g + 1, 0);
                    core.ended_acked[g] = acked;
                }
                core.handed_back.extend(unacked);
                core.lost_reason = Some(reason);
                publish_delivery(peer, core);
                shared.events.push(peer, Kind::SessionLost);
                peer.space.notify_waiters();
            }
        }
    }
    established
}

fn publish_delivery(peer: &PeerInner, core: &PeerCore) {
    let (generation, acked, unacked) = (
        core.session.generation(),
        core.session.acked(),
        core.session.unacked_len(),
    );
    let lost_reason = core.lost_reason;
    peer.delivery.send_modify(|s| {
        s.generation = generation;
        s.acked = acked;
        s.unacked = unacked;
        s.lost_reason = lost_reason;
    });
}

struct Conn {
    rbuf: BytesMut,
    wbuf: BytesMut,
}

impl Conn {
    /// Sends our HELLO and reads the peer's.
    async fn exchange_hello(
        &mut self,
        stream: &mut TcpStream,
        hs: &mut Handshake,
    ) -> Result<PeerHello, End> {
        stream
            .write_all_buf(&mut self.wbuf)
            .await
            .map_err(End::Io)?;
        loop {
            if let Some(hello) = hs
                .handle_input(Instant::now(), &mut self.rbuf)
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
    async fn drive(
        &mut self,
        shared: &Arc<NodeShared>,
        peer: &Arc<PeerInner>,
        stream: &mut TcpStream,
        link: LinkId,
        wake: &Notify,
        ready: &mut Option<oneshot::Sender<Result<Peer>>>,
    ) -> (bool, End) {
        let mut established = false;
        loop {
            let woken = wake.notified();
            let now = Instant::now();
            let timeout = {
                let mut core = peer.lock();
                if core.session.link_id() != Some(link) {
                    return (established, End::Replaced);
                }
                let mut result = core.session.handle_input(now, &mut self.rbuf);
                if result.is_ok() && core.session.poll_timeout().is_some_and(|t| t <= now) {
                    result = core.session.handle_timeout(now);
                }
                if let Err(e) = result {
                    return (established, End::Link(e));
                }
                while self.wbuf.len() < WRITE_BATCH
                    && core.session.poll_transmit(now, &mut self.wbuf, WRITE_BATCH)
                {
                }
                if apply_events(shared, peer, &mut core) {
                    established = true;
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(Ok(Peer::from_inner(peer.clone())));
                    }
                }
                core.session.poll_timeout()
            };
            if let Err(e) = self.write_some(stream) {
                return (established, End::Io(e));
            }
            self.shrink_if_idle();
            let sleep = timeout.map(tokio::time::Instant::from_std);
            tokio::select! {
                biased;
                _ = shared.closed.cancelled() => {
                    let end = shared.closing_end();
                    if matches!(end, End::Shutdown) {
                        // The peer must learn what we received before our session ends, or it
                        // would hand back messages we hold. Nothing else is sent.
                        let mut core = peer.lock();
                        if core.session.link_id() == Some(link) {
                            core.session.flush_ack(&mut self.wbuf);
                        }
                    }
                    return (established, end);
                }
                r = stream.readable() => {
                    if let Err(e) = r {
                        return (established, End::Io(e));
                    }
                    match self.read_some(stream) {
                        Ok(Some(0)) => return (established, End::Eof),
                        Ok(_) => {}
                        Err(e) => return (established, End::Io(e)),
                    }
                }
                r = stream.writable(), if !self.wbuf.is_empty() => {
                    if let Err(e) = r {
                        return (established, End::Io(e));
                    }
                }
                _ = woken => {}
                _ = sleep_until(sleep) => {}
            }
        }
    }

    /// Writes what the socket takes now.
    fn write_some(&mut self, stream: &TcpStream) -> io::Result<()> {
        while !self.wbuf.is_empty() {
            match stream.try_write(&self.wbuf) {
                Ok(n) => self.wbuf.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads what the socket has now: `Some(0)` at EOF, `None` if nothing was ready.
    fn read_some(&mut self, stream: &TcpStream) -> io::Result<Option<usize>> {
        self.rbuf.reserve(READ_CHUNK);
        match stream.try_read_buf(&mut self.rbuf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn shrink_if_idle(&mut self) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > KEEP_CAPACITY {
            self.rbuf = BytesMut::new();
        }
        if self.wbuf.is_empty() && self.wbuf.capacity() > KEEP_CAPACITY {
            self.wbuf = BytesMut::new();
        }
    }

    /// Says goodbye where the protocol wants a reason, then closes the socket.
    async fn finish(
        mut self,
        mut stream: TcpStream,
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
                stream.shutdown().await?;
                // Wait for the peer's EOF: closing with unread input would reset the connection
                // and could destroy the CLOSE frame before the peer reads it.
                let mut sink = BytesMut::with_capacity(4096);
                while stream.read_buf(&mut sink).await? > 0 {
                    sink.clear();
                }
                io::Result::Ok(())
            };
            let _ = tokio::time::timeout(CLOSE_GRACE, goodbye).await;
        }
        if matches!(end, End::Aborted) {
            // As a crash would: reset, not a graceful FIN. (A zero linger never blocks on close.)
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
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

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Waits while the peer has no connection, firing the session's timers (expiry) on time.
/// Returns when a connection attaches, when `until` passes, or at shutdown.
pub(crate) async fn idle(shared: &NodeShared, peer: &Arc<PeerInner>, until: Option<Instant>) {
    loop {
        let (wake, timeout) = {
            let mut core = peer.lock();
            if core.session.link_id().is_some() {
                return;
            }
            let now = Instant::now();
            if core.session.poll_timeout().is_some_and(|t| t <= now) {
                let _ = core.session.handle_timeout(now);
                apply_events(shared, peer, &mut core);
            }
            (core.wake.clone(), core.session.poll_timeout())
        };
        let next = match (timeout, until) {
            (Some(t), Some(u)) => Some(t.min(u)),
            (None, None) => return, // nothing to expire, nothing to wait for
            (t, u) => t.or(u),
        };
        if until.is_some_and(|u| u <= Instant::now()) {
            return;
        }
        tokio::select! {
            _ = shared.closing.cancelled() => return,
            _ = wake.notified() => {}
            _ = sleep_until(next.map(tokio::time::Instant::from_std)) => {}
        }
    }
}
