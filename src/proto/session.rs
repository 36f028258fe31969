//! The per-peer session: a reliable, ordered, acknowledged stream of messages in each direction
//! that outlives any one connection ("link").
//!
//! Driving it (what the tokio driver (`src/node`) does, and what the simulated tests do):
//! 1. A new connection completes a [`Handshake`](super::Handshake), which names the peer.
//! 2. [`Session::begin_link`] attaches the connection; the session offers what it knows (SESSION).
//! 3. Loop: [`Session::handle_input`] with bytes read (then [`Session::input_drained`] if the
//!    connection has no more for now), [`Session::poll_transmit`] for bytes to write,
//!    [`Session::handle_timeout`] when [`Session::poll_timeout`] is reached, and
//!    [`Session::poll_event`] for what the application should hear about.
//! 4. When the connection fails, [`Session::detach`]; the session waits for the next link.
//!
//! Time is always an argument; the session never reads a clock.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

use super::budget::{InboxBudget, Reservation};
use super::frame::{self, Frame, SessionOffer};
use super::handshake::{PeerHello, frame_name};
use super::inbound::{Accepted, Inbound};
use super::origin::{Origins, SessionRef};
use super::outbound::{Outbound, PushError};
use super::stats::{RttEstimator, SessionCounters};
use super::{CloseCode, Config, LinkError, ProtocolViolation, instant_after};

/// Identifies one link (connection) of a session, so a driver can tell whether it was replaced.
pub type LinkId = u64;

/// Something the application (or the driver) should hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// The link completed its handshake. `resumed`: the session continued where it was;
    /// otherwise a new session started (any earlier one was reported as [`SessionEvent::Lost`]).
    Established {
        /// Whether the previous session continued.
        resumed: bool,
    },
    /// New messages were appended to the inbox.
    Received,
    /// The peer acknowledged every message up to `up_to` (this session's numbering).
    Delivered {
        /// Highest acknowledged sequence number.
        up_to: u64,
    },
    /// The session ended without these messages being acknowledged (the peer restarted, lost the
    /// session, shut down, or the session expired). They are handed back in order; they will not
    /// be sent again. Numbering restarts at 1.
    Lost {
        /// The session generation that ended.
        generation: u64,
        /// Unacknowledged payloads, oldest first.
        unacked: Vec<Bytes>,
        /// Why.
        reason: LostReason,
        /// The last sequence number the peer acknowledged in that generation: messages up to
        /// it were delivered.
        acked: u64,
        /// [`Session::messages_before`] while that generation was current.
        messages_before: u64,
        /// The value [`Session::messages_read`] reaches once the application has read every
        /// message this generation received: messages of later generations come after it in
        /// the inbox.
        read_through: u64,
    },
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LostReason {
    /// The peer came back as a new process (another incarnation).
    PeerRestarted,
    /// The peer no longer holds the session (it expired there).
    PeerForgot,
    /// The peer announced its shutdown.
    PeerShutdown,
    /// No connection for longer than the session expiry.
    Expired,
    /// Another key claimed the peer's name while no connection served the session, and the
    /// trust policy does not pin names to keys (the open policy): most likely the peer restarted
    /// with a new key. The session was ended before that key could see anything of it.
    KeyChanged,
}

#[derive(Debug)]
enum Phase {
    /// Our SESSION offer is out; waiting for the peer's.
    AwaitingOffer {
        has_session: bool,
        deadline: Instant,
    },
    Established,
}

#[derive(Debug)]
struct Link {
    id: LinkId,
    peer_incarnation: u64,
    phase: Phase,
    /// Our SESSION offer is still to be written: the one [`Link::offer`] builds.
    offer_due: bool,
    /// The offer's session id and next expected sequence number, as of the link's start (the
    /// rest of the offer is `nonce` and `offered_window`). Kept apart rather than as a whole
    /// `SessionOffer`, which would duplicate those in every link for its whole life.
    offered_session: u64,
    offered_next_expected: u64,
    /// The flow-control window our SESSION offer granted.
    offered_window: (u64, u64),
    /// Our SESSION nonce on this link.
    nonce: u64,
    last_recv: Instant,
    last_send: Instant,
    ping_due: bool,
    /// Send an ACK right after establishing, even if none is owed: it tells the peer that we
    /// established the session (see `Session::confirmed`).
    confirm_due: bool,
    /// Bytes left unconsumed in the input buffer by the last `handle_input`: more than that at
    /// the next call means bytes arrived, which proves the peer alive even mid-frame.
    leftover: usize,
    /// How often to send something: ours, or faster if the peer's idle timeout demands it.
    heartbeat: Duration,
    /// Acknowledge received data with the next transmission, without waiting for more.
    ack_now: bool,
    /// When an acknowledgement held back to be coalesced becomes due.
    ack_deadline: Option<Instant>,
    /// Since when the peer owes us an answer: the first DATA or PING written since we last
    /// heard from it (or, with DATA still in flight, when we last heard). See
    /// [`Session::is_suspect`].
    owed_since: Option<Instant>,
    /// DATA arrived since the last probe: if the peer then falls silent, a PING asks whether
    /// the link still works (the side receiving a flow otherwise owes and is owed nothing).
    flowing: bool,
    /// A probing PING is due (written even alongside other frames).
    probe_due: bool,
    /// The peer's answer is overdue (see [`Session::is_suspect`]).
    suspect: bool,
    /// The peer sent a PING: answer it with an ACK.
    pong_due: bool,
}

impl Link {
    /// Our SESSION offer on this link.
    fn offer(&self) -> SessionOffer {
        SessionOffer {
            session_id: self.offered_session,
            nonce: self.nonce,
            next_expected: self.offered_next_expected,
            window_messages: self.offered_window.0,
            window_bytes: self.offered_window.1,
        }
    }
}

/// An input that brings fewer new messages than this is acknowledged at once: the peer is not
/// streaming, and whoever waits for `Delivered` should not wait for the ACK delay.
const ACK_EAGER: usize = 16;

/// Fastest heartbeat a peer's HELLO can make us send.
const MIN_HEARTBEAT: Duration = Duration::from_millis(100);

/// What a session reads of its [`Config`] once created. The window and inbox limits are not
/// here: `Outbound` and `Inbound` hold them, and every session would carry them twice.
#[derive(Debug, Clone, Copy)]
struct Timing {
    max_frame_len: usize,
    handshake_frame_len: usize,
    heartbeat_interval: Duration,
    ack_delay: Duration,
    idle_timeout: Duration,
    suspect_floor: Duration,
    suspect_rtt_factor: u32,
    handshake_timeout: Duration,
    session_expiry: Duration,
}

impl Timing {
    fn of(config: &Config) -> Self {
        Timing {
            max_frame_len: config.max_frame_len,
            handshake_frame_len: config.handshake_frame_len,
            heartbeat_interval: config.heartbeat_interval,
            ack_delay: config.ack_delay,
            idle_timeout: config.idle_timeout,
            suspect_floor: config.suspect_floor,
            suspect_rtt_factor: config.suspect_rtt_factor,
            handshake_timeout: config.handshake_timeout,
            session_expiry: config.session_expiry,
        }
    }
}

/// One peer's session. See the module docs for how to drive it.
#[derive(Debug)]
pub struct Session {
    config: Timing,
    local_incarnation: u64,
    /// The peer incarnation this session is with; 0 while no session has been established.
    peer_incarnation: u64,
    /// Bumped whenever a session ends; receipts of an older generation can no longer succeed.
    generation: u64,
    /// Messages queued in all earlier generations (see [`Session::messages_before`]).
    messages_before: u64,
    /// The id both sides agreed on when the current session started; 0 while none is
    /// established. Resumption needs both sides to offer the same id.
    session_id: u64,
    outbound: Outbound,
    inbound: Inbound,
    link: Option<Link>,
    next_link_id: LinkId,
    /// When the last established link went away (for expiry).
    detached_at: Instant,
    /// Whether the peer is known to hold the current session: it sent DATA or ACK after
    /// establishing it. Until then no DATA is transmitted in a new session, so if the peer turns
    /// out never to have established it (the connection broke mid-handshake), the session can
    /// start again quietly instead of being reported lost.
    confirmed: bool,
    /// Largest message the peer accepts (from its HELLO).
    peer_max_message: usize,
    events: VecDeque<SessionEvent>,
    rtt: RttEstimator,
    /// Messages and payload bytes handed back by ended generations.
    handed_back: (u64, u64),
    /// Which ended sessions the unread messages came from.
    origins: Origins,
}

impl Session {
    /// A session with no peer yet, created at `now`.
    pub fn new(now: Instant, local_incarnation: u64, config: Config) -> Self {
        Session {
            config: Timing::of(&config),
            local_incarnation,
            peer_incarnation: 0,
            generation: 0,
            messages_before: 0,
            session_id: 0,
            outbound: Outbound::new(config.window),
            inbound: Inbound::new(config.inbox),
            link: None,
            next_link_id: 1,
            detached_at: now,
            confirmed: false,
            peer_max_message: config.window.max_message,
            events: VecDeque::new(),
            rtt: RttEstimator::default(),
            handed_back: (0, 0),
            origins: Origins::default(),
        }
    }

    /// The same session, its grants also within a part of `budget`, shared with the node's other
    /// sessions (see [`InboxBudget`]).
    pub fn with_inbox_budget(mut self, budget: &Arc<InboxBudget>) -> Self {
        self.inbound.set_reservation(
            Reservation::new(budget.clone()),
            self.outbound.max_message(),
        );
        self
    }

    /// Whether a grant is held back because the node-wide inbox budget is spent: the driver
    /// should call [`Session::poll_transmit`] again when the budget frees (its `on_free`
    /// callback), so the grant goes out.
    pub fn budget_waiting(&self) -> bool {
        self.inbound.budget_waiting()
    }

    // ---- application side -------------------------------------------------------------------

    /// Queues a message. Returns its sequence number in the current generation.
    pub fn send(&mut self, payload: Bytes) -> Result<u64, PushError> {
        self.send_noting(payload).map(|(seq, _)| seq)
    }

    /// [`Session::send`] for a driver that sleeps while it has nothing to do: also says whether
    /// to wake it. That is when the message gave an established link data to transmit where it
    /// had none it could send, and whenever there is no link (a queued message arms the
    /// expiry timer, see [`Session::poll_timeout`]). Cheaper than asking
    /// [`Session::wants_transmit`] before and after on every message.
    // Inlined into the caller (with `Outbound::push_noting`), so the payload is moved into the
    // queue once: handed down by reference through calls, it was copied whole from a place
    // just written field by field, which stalls (4 ns a message).
    #[inline]
    pub fn send_noting(&mut self, payload: Bytes) -> Result<(u64, bool), PushError> {
        if payload.len() > self.peer_max_message {
            return Err(PushError::TooLarge {
                len: payload.len(),
                max: self.peer_max_message,
            });
        }
        let (seq, transmittable) = self.outbound.push_noting(payload)?;
        let wake = match &self.link {
            None => true,
            Some(link) => {
                transmittable && self.confirmed && matches!(link.phase, Phase::Established)
            }
        };
        Ok((seq, wake))
    }

    /// Largest message [`Session::send`] accepts: ours, or the peer's if smaller.
    pub fn max_message(&self) -> usize {
        self.peer_max_message
    }

    /// Whether a message of `len` bytes is within [`Session::max_message`] (room aside).
    pub fn fits(&self, len: usize) -> bool {
        len <= self.peer_max_message
    }

    /// Whether a message of `len` bytes would be accepted by [`Session::send`] now.
    pub fn has_room(&self, len: usize) -> bool {
        self.outbound.has_room(len)
    }

    /// Removes and returns up to `n` received messages, oldest first.
    pub fn read(&mut self, n: usize) -> Vec<Bytes> {
        let taken = self.inbound.take(n);
        self.after_read();
        taken
    }

    /// Without a connection no grant goes out to give the read bytes to: they go back to the
    /// node-wide budget now. (With one, [`Session::poll_transmit`] settles it.)
    fn after_read(&mut self) {
        self.origins.forget_read(self.inbound.taken());
        if self.link.is_none() {
            self.inbound.refresh_budget(false);
        }
    }

    /// Removes and returns the oldest received message.
    pub fn read_one(&mut self) -> Option<Bytes> {
        let message = self.inbound.take_one();
        self.after_read();
        message
    }

    /// How many received messages have been read ([`Session::read`], [`Session::read_one`]) so
    /// far, across generations. Compare with [`SessionEvent::Lost`]'s `read_through`.
    pub fn messages_read(&self) -> u64 {
        self.inbound.taken()
    }

    /// The first `n` received messages, left in place.
    pub fn peek(&self, n: usize) -> impl Iterator<Item = &Bytes> {
        self.inbound.peek(n)
    }

    /// Received messages waiting to be read.
    pub fn inbox_len(&self) -> usize {
        self.inbound.len()
    }

    /// Payload bytes waiting to be read.
    pub fn inbox_bytes(&self) -> usize {
        self.inbound.bytes()
    }

    /// Messages queued or in flight (not yet acknowledged).
    pub fn unacked_len(&self) -> usize {
        self.outbound.len()
    }

    /// Payload bytes queued or in flight.
    pub fn unacked_bytes(&self) -> usize {
        self.outbound.bytes()
    }

    /// Whether half the outbound window is taken.
    pub fn window_half_full(&self) -> bool {
        self.outbound.half_full()
    }

    /// Highest sequence number the peer has acknowledged in the current generation.
    pub fn acked(&self) -> u64 {
        self.outbound.acked()
    }

    /// The current generation (see [`SessionEvent::Lost`]).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// How many messages were queued in all earlier generations. Sequence numbers restart at 1
    /// with each generation; `messages_before() + seq` numbers a message once for the life of
    /// the session object, across generations (each [`SessionEvent::Lost`] reports the value
    /// its generation started from).
    pub fn messages_before(&self) -> u64 {
        self.messages_before
    }

    /// Our own incarnation, as given to [`Session::new`].
    pub fn local_incarnation(&self) -> u64 {
        self.local_incarnation
    }

    /// The peer's incarnation, or 0 if no session is established.
    pub fn peer_incarnation(&self) -> u64 {
        self.peer_incarnation
    }

    /// The current link, if any.
    pub fn link_id(&self) -> Option<LinkId> {
        self.link.as_ref().map(|l| l.id)
    }

    /// Whether the current link finished its handshake.
    pub fn is_established(&self) -> bool {
        matches!(
            self.link,
            Some(Link {
                phase: Phase::Established,
                ..
            })
        )
    }

    /// The id of the current session (both sides agree on it), or 0 while none is established.
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// The current session, or `None` while none is established (none yet, or the last one
    /// ended).
    pub fn session(&self) -> Option<SessionRef> {
        (self.session_id != 0).then(|| self.current_ref())
    }

    /// Whether `session` is the current session: what a reply within it checks, under the same
    /// lock as it queues the reply. A session that ended never becomes current again.
    pub fn is_current(&self, session: SessionRef) -> bool {
        self.session_id != 0 && session == self.current_ref()
    }

    /// The session the oldest unread message came from, and how many unread messages in a row
    /// came from it (a [`Session::read`] of that many takes only that session's messages);
    /// `None` if the inbox is empty.
    pub fn next_origin(&self) -> Option<(SessionRef, usize)> {
        self.origins
            .of_next(self.inbound.taken(), self.inbound.len(), self.current_ref())
    }

    /// The current generation and session id (an id of 0 is never current).
    fn current_ref(&self) -> SessionRef {
        SessionRef::new(self.generation, self.session_id)
    }

    /// Totals over the session object's life, across connections and generations. Cheap: a
    /// few fields copied.
    pub fn counters(&self) -> SessionCounters {
        let send = self.outbound.counters();
        let receive = self.inbound.counters();
        let (messages_handed_back, bytes_handed_back) = self.handed_back;
        SessionCounters {
            // Every message queued so far was acknowledged, handed back, or is still queued.
            messages_sent: self
                .messages_before
                .wrapping_add(self.outbound.next_seq())
                .wrapping_sub(1),
            bytes_sent: send
                .acked_bytes
                .wrapping_add(bytes_handed_back)
                .wrapping_add(self.outbound.bytes() as u64),
            messages_transmitted: send.transmitted,
            bytes_transmitted: send.transmitted_bytes,
            retransmitted: send.retransmitted,
            messages_acked: send.acked,
            bytes_acked: send.acked_bytes,
            messages_received: receive.received,
            bytes_received: receive.received_bytes,
            duplicates_dropped: receive.duplicates,
            messages_handed_back,
            bytes_handed_back,
            sessions_lost: self.generation,
        }
    }

    /// Smoothed time from transmitting a message to its acknowledgement, once one has been
    /// timed. It includes the peer's acknowledgement delay and any queueing in front of the
    /// message, so under load it is the latency a message sees rather than the bare network
    /// round trip.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt.estimate()
    }

    /// Messages transmitted on the current connection and not yet acknowledged.
    pub fn in_flight(&self) -> u64 {
        if self.link.is_some() {
            self.outbound.in_flight()
        } else {
            0
        }
    }

    /// The next thing the application should hear about.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    // ---- driver side ------------------------------------------------------------------------

    /// Attaches a new connection whose HELLO named this session's peer. Any previous link is
    /// replaced (its driver sees [`Session::link_id`] change and closes it with
    /// [`CloseCode::Replaced`]). `deadline` is the handshake's absolute deadline. `nonce` must be
    /// random and non-zero: it seeds the id of a session started on this link.
    pub fn begin_link(
        &mut self,
        now: Instant,
        hello: &PeerHello,
        deadline: Instant,
        nonce: u64,
    ) -> LinkId {
        let peer_incarnation = hello.incarnation;
        if self.peer_incarnation != 0 && self.peer_incarnation != peer_incarnation {
            // Another incarnation: the process we had a session with is gone.
            self.lose(now, LostReason::PeerRestarted);
        }
        let has_session = self.session_id != 0;
        // Credit of an earlier link is void; the offer is recorded now, so that the budget
        // counts it from the moment it exists.
        self.inbound.refresh_budget(true);
        self.inbound.void_credit();
        let window = self.inbound.window();
        self.inbound.advertise(window);
        let offered_next_expected = if has_session {
            self.inbound.next_expected()
        } else {
            1
        };
        self.outbound.rewind();
        self.rtt.forget_probe();
        self.peer_max_message = hello.max_message.min(self.outbound.max_message());
        let id = self.next_link_id;
        self.next_link_id = self.next_link_id.wrapping_add(1);
        if self
            .link
            .as_ref()
            .is_some_and(|l| matches!(l.phase, Phase::Established))
        {
            self.detached_at = now;
        }
        self.link = Some(Link {
            id,
            peer_incarnation,
            phase: Phase::AwaitingOffer {
                has_session,
                deadline,
            },
            offer_due: true,
            offered_session: self.session_id,
            offered_next_expected,
            offered_window: window,
            nonce,
            last_recv: now,
            last_send: now,
            ping_due: false,
            confirm_due: false,
            leftover: 0,
            ack_now: false,
            ack_deadline: None,
            owed_since: None,
            flowing: false,
            probe_due: false,
            suspect: false,
            pong_due: false,
            heartbeat: self.config.heartbeat_interval.min(
                hello
                    .idle_timeout
                    .checked_div(3)
                    .unwrap_or_default()
                    .max(MIN_HEARTBEAT),
            ),
        });
        id
    }

    /// Ends the current session generation at the driver's request (see
    /// [`LostReason::KeyChanged`]): everything unacknowledged is handed back in a
    /// [`SessionEvent::Lost`] and numbering restarts, so no later link can resume it. A link
    /// still attached is detached (its driver sees [`Session::link_id`] change). The inbox
    /// (messages already received) is kept for the application.
    pub fn end(&mut self, now: Instant, reason: LostReason) {
        self.detach(now);
        self.lose(now, reason);
    }

    /// The connection of the current link is gone (I/O error, EOF, replaced). The session waits
    /// for another link; nothing is lost.
    pub fn detach(&mut self, now: Instant) {
        // Only an established link restarts the expiry clock: a peer that keeps connecting
        // and never finishes a handshake does not keep a session alive.
        if let Some(Link {
            phase: Phase::Established,
            ..
        }) = self.link.take()
        {
            self.detached_at = now;
        }
        self.outbound.rewind();
        self.rtt.forget_probe();
        // The peer's credit died with the connection: it goes back to the node-wide budget.
        self.inbound.void_credit();
        self.inbound.refresh_budget(false);
    }

    /// Processes every whole frame at the front of `buf`; a partial frame stays in `buf` for
    /// later. (The inbox cannot overflow: the peer may only send what our window granted.) On error the link is detached and the driver should send a CLOSE with
    /// [`LinkError::close_code`] and drop the connection.
    pub fn handle_input(&mut self, now: Instant, buf: &mut BytesMut) -> Result<(), LinkError> {
        let result = self.process_input(now, buf);
        if result.is_err() {
            self.detach(now);
        }
        result
    }

    fn process_input(&mut self, now: Instant, buf: &mut BytesMut) -> Result<(), LinkError> {
        let Some(link) = self.link.as_mut() else {
            return Ok(());
        };
        let arrived = buf.len() > link.leftover;
        if arrived {
            link.last_recv = now;
            // Anything at all from the peer answers what it owed: the link carries bytes.
            link.owed_since = None;
            link.suspect = false;
        }
        let mut received = 0usize;
        // DATA frames taken on the hot path but not yet advanced past: `buf` is advanced once
        // for a run of them, not once per frame.
        let mut taken = 0usize;
        let result = loop {
            let Some(link) = self.link.as_mut() else {
                break Ok(());
            };
            // The frame limit grows once the handshake is done.
            let max_len = match link.phase {
                Phase::Established => self.config.max_frame_len,
                Phase::AwaitingOffer { .. } => self.config.handshake_frame_len,
            };
            if matches!(link.phase, Phase::Established) {
                let rest = buf.get(taken..).unwrap_or_default();
                if let Some((seq, payload, used)) = frame::peek_data(rest, max_len) {
                    // The hot path: a DATA frame straight into the inbox. The payload is copied
                    // out (not split off the read buffer) so that a message kept in the inbox
                    // holds only its own bytes.
                    let payload = Bytes::copy_from_slice(rest.get(payload).unwrap_or_default());
                    taken = taken.saturating_add(used);
                    link.last_recv = now;
                    match self.on_data(seq, payload) {
                        Ok(new) => received = received.saturating_add(usize::from(new)),
                        Err(e) => break Err(e),
                    }
                    continue;
                }
            }
            buf.advance(std::mem::take(&mut taken));
            let frame = match frame::decode(buf, max_len) {
                Ok(Some(frame)) => frame,
                Ok(None) => break Ok(()),
                Err(e) => break Err(ProtocolViolation::from(e).into()),
            };
            link.last_recv = now;
            match self.handle_frame(now, frame) {
                Ok(new) => received = received.saturating_add(usize::from(new)),
                Err(e) => break Err(e),
            }
        };
        buf.advance(taken);
        let in_flight = self.outbound.in_flight() > 0;
        if let Some(link) = self.link.as_mut() {
            link.leftover = buf.len();
            if arrived
                && !buf.is_empty()
                && matches!(link.phase, Phase::Established)
                && now >= instant_after(link.last_send, half(self.config.suspect_floor))
            {
                // More of an incomplete frame arrived, and we have been silent for half the
                // suspicion floor: a frame that takes longer than the peer's suspicion bound to
                // cross would otherwise leave the peer hearing nothing while it waits for our
                // acknowledgement, and its dialer would replace a healthy link and restart the
                // frame. A repeated ACK (the PING answer) costs nothing and proves progress.
                link.pong_due = true;
            }
            if link.owed_since.is_none() && in_flight && link.last_recv == now {
                // Still waiting for acknowledgements: counted from this sign of life.
                link.owed_since = Some(now);
            }
            if received > 0 {
                link.flowing = true;
                if received < ACK_EAGER {
                    link.ack_now = true;
                } else if link.ack_deadline.is_none() {
                    link.ack_deadline = Some(instant_after(now, self.config.ack_delay));
                }
            }
        }
        if received > 0 {
            // Messages accepted before an error stay delivered: the application hears of them.
            self.events.push_back(SessionEvent::Received);
        }
        result
    }

    /// Tells the session that the connection has no more input for now: the driver handed
    /// [`Session::handle_input`] everything it had, and reading more would block. An
    /// acknowledgement held back to be coalesced with more input (see [`Config::ack_delay`])
    /// then goes out with the next transmission, without waiting for the delay: the burst is
    /// over, and nothing is coming to coalesce with. While more input is waiting, data is
    /// streaming: do not call it then. A driver that cannot tell never calls it, and held
    /// acknowledgements wait for the delay.
    pub fn input_drained(&mut self) {
        if let Some(link) = self.link.as_mut() {
            if link.ack_deadline.take().is_some() {
                link.ack_now = true;
            }
        }
    }

    /// Whether an acknowledgement is held back waiting for more input to coalesce with: the
    /// moment for a driver to find out whether more input is waiting, and to call
    /// [`Session::input_drained`] if not.
    pub fn ack_held(&self) -> bool {
        self.link.as_ref().is_some_and(|l| l.ack_deadline.is_some())
    }

    /// Handles one decoded frame on the current link. Returns whether a new message was
    /// appended to the inbox. Public so tests can inject duplicated or reordered frames.
    pub fn handle_frame(&mut self, now: Instant, frame: Frame) -> Result<bool, LinkError> {
        let Some(link) = self.link.as_mut() else {
            return Ok(false);
        };
        let name = frame_name(&frame);
        let unexpected = |state| ProtocolViolation::UnexpectedFrame { frame: name, state };
        match (&link.phase, frame) {
            (_, Frame::Close { code, reason }) => {
                if code == CloseCode::Shutdown && self.peer_incarnation != 0 {
                    // The peer process is going away: its session ends now.
                    self.lose(now, LostReason::PeerShutdown);
                }
                Err(LinkError::ClosedByPeer { code, reason })
            }
            (Phase::Established, Frame::Ping) => {
                // Answered, so that the peer can tell a silent link from a quiet one (see
                // `Session::is_suspect`): an ACK, which costs nothing to repeat.
                link.pong_due = true;
                Ok(false)
            }
            (_, Frame::Ping) => Ok(false),
            (Phase::AwaitingOffer { has_session, .. }, Frame::Session(offer)) => {
                let has_session = *has_session;
                self.establish(now, has_session, offer)?;
                Ok(false)
            }
            (Phase::AwaitingOffer { .. }, _) => Err(unexpected("before SESSION").into()),
            (Phase::Established, Frame::Data { seq, payload }) => self.on_data(seq, payload),
            (
                Phase::Established,
                Frame::Ack {
                    up_to,
                    window_messages,
                    window_bytes,
                },
            ) => {
                self.confirmed = true;
                let released = self.outbound.on_ack(up_to)?;
                self.rtt.on_ack(up_to, now);
                self.outbound.grant(up_to, window_messages, window_bytes);
                if released > 0 {
                    self.events.push_back(SessionEvent::Delivered { up_to });
                }
                Ok(false)
            }
            (Phase::Established, Frame::Hello(_) | Frame::Session(_)) => {
                Err(unexpected("after the handshake").into())
            }
        }
    }

    /// A DATA frame on an established link; whether it was new.
    #[inline]
    fn on_data(&mut self, seq: u64, payload: Bytes) -> Result<bool, LinkError> {
        // Only a peer that established the session sends DATA or ACK.
        self.confirmed = true;
        let accepted = self.inbound.on_data(seq, payload)?;
        Ok(accepted == Accepted::New)
    }

    fn establish(
        &mut self,
        now: Instant,
        has_session: bool,
        offer: SessionOffer,
    ) -> Result<(), LinkError> {
        // Both sides hold the same session: the id proves it is the same one (an incarnation
        // alone would not: one side may have started a newer session the other never saw).
        let resumed = has_session && offer.session_id == self.session_id;
        if resumed {
            if self.outbound.resume_from(offer.next_expected)? > 0 {
                self.events.push_back(SessionEvent::Delivered {
                    up_to: self.outbound.acked(),
                });
            }
            // resume_from accepted it, so next_expected >= 1: this never saturates (and a
            // next_expected of 0 never gets here).
            self.outbound.grant(
                offer.next_expected.saturating_sub(1),
                offer.window_messages,
                offer.window_bytes,
            );
            self.confirmed = true;
        } else {
            if has_session && self.confirmed {
                // We held the session, the peer does not: it cannot be continued.
                self.lose(now, LostReason::PeerForgot);
            }
            // has_session but never confirmed: the peer never established it, and we sent no
            // DATA in it, so it simply starts again (nothing to hand back, nothing to dedupe).
            self.confirmed = false;
            // A new session. Messages queued since the last loss (numbered from 1) go out now.
            self.inbound.reset();
            self.outbound.rewind();
            self.outbound
                .grant(0, offer.window_messages, offer.window_bytes);
        }
        self.inbound.on_new_link();
        let Some(link) = self.link.as_mut() else {
            return Ok(());
        };
        self.inbound.advertise(link.offered_window);
        self.peer_incarnation = link.peer_incarnation;
        if !resumed {
            self.session_id = (link.nonce ^ offer.nonce).max(1);
        }
        link.phase = Phase::Established;
        link.confirm_due = true;
        self.events.push_back(SessionEvent::Established { resumed });
        Ok(())
    }

    /// Ends the current session generation, handing back everything unacknowledged.
    fn lose(&mut self, now: Instant, reason: LostReason) {
        // Messages queued from now on belong to the next session: their expiry counts from here.
        self.detached_at = now;
        let acked = self.outbound.acked();
        let unacked = self.outbound.reset();
        self.rtt.forget_probe();
        let bytes: u64 = unacked
            .iter()
            .map(|p| p.len() as u64)
            .fold(0, u64::wrapping_add);
        self.handed_back = (
            self.handed_back.0.wrapping_add(unacked.len() as u64),
            self.handed_back.1.wrapping_add(bytes),
        );
        // Every message of the generation was either acknowledged (1..=acked) or handed back.
        let messages_before = self.messages_before;
        self.messages_before = messages_before
            .saturating_add(acked)
            .saturating_add(unacked.len() as u64);
        self.inbound.reset();
        let taken = self.inbound.taken();
        let read_through = taken.wrapping_add(self.inbound.len() as u64);
        self.origins.ended(self.current_ref(), taken, read_through);
        self.peer_incarnation = 0;
        self.session_id = 0;
        self.confirmed = false;
        self.events.push_back(SessionEvent::Lost {
            generation: self.generation,
            unacked,
            reason,
            acked,
            messages_before,
            read_through,
        });
        self.generation = self.generation.saturating_add(1);
    }

    /// Appends the acknowledgement owed to the peer, if any, and nothing else. For a node shutting
    /// down: the peer must learn what we received, but must not be sent more.
    pub fn flush_ack(&mut self, out: &mut BytesMut) -> bool {
        if !self.is_established() {
            return false;
        }
        if self.inbound.ack_due().is_none() {
            return false;
        }
        self.inbound.write_ack(out);
        true
    }

    /// Appends frames to send to `out` until it holds at least `limit` bytes or nothing is left.
    /// Returns whether anything was written.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut BytesMut, limit: usize) -> bool {
        let start = out.len();
        let Some(link) = self.link.as_mut() else {
            return false;
        };
        if link.offer_due {
            link.offer_due = false;
            frame::encode(&Frame::Session(link.offer()), out);
        }
        if matches!(link.phase, Phase::Established) {
            // Takes what the node-wide budget can give now, or gives back what is beyond the
            // session's share, before the grant is computed.
            self.inbound.refresh_budget(true);
            // An acknowledgement held back rides along with DATA going out anyway: it costs
            // the peer nothing to receive it now.
            let piggyback =
                self.inbound.ack_due().is_some() && self.confirmed && self.outbound.can_transmit();
            if piggyback || ack_wanted(link, &self.inbound, self.outbound.max_message()) {
                self.inbound.write_ack(out);
                link.confirm_due = false;
                link.pong_due = false;
                link.ack_now = false;
                link.ack_deadline = None;
            }
            let mut last = None;
            while self.confirmed && out.len() < limit {
                let Some((seq, payload)) = self.outbound.next_to_transmit() else {
                    break;
                };
                frame::encode_data(seq, payload, out);
                last = Some(seq);
            }
            if let Some(seq) = last {
                self.rtt.on_transmit(seq, now);
                link.owed_since.get_or_insert(now);
            }
        }
        if (link.ping_due && out.len() == start) || link.probe_due {
            frame::encode(&Frame::Ping, out);
            link.probe_due = false;
            if matches!(link.phase, Phase::Established) {
                // Answered by an ACK.
                link.owed_since.get_or_insert(now);
            }
        }
        let wrote = out.len() > start;
        if wrote {
            link.ping_due = false;
            link.last_send = now;
        }
        wrote
    }

    /// Whether [`Session::poll_transmit`] has something to write.
    pub fn wants_transmit(&self) -> bool {
        match &self.link {
            None => false,
            Some(link) => {
                link.offer_due
                    || link.ping_due
                    || link.probe_due
                    || (matches!(link.phase, Phase::Established)
                        && ((self.confirmed && self.outbound.can_transmit())
                            || ack_wanted(link, &self.inbound, self.outbound.max_message())))
            }
        }
    }

    /// When [`Session::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.link {
            Some(link) => {
                let mut at = instant_after(link.last_recv, self.config.idle_timeout);
                // Once a PING is due, the heartbeat timer has fired: it is armed again when
                // something is sent. (Left armed, it would fire continuously while the socket
                // takes nothing.)
                if !link.ping_due {
                    at = at.min(instant_after(link.last_send, link.heartbeat));
                }
                if let Phase::AwaitingOffer { deadline, .. } = link.phase {
                    at = at.min(deadline);
                }
                if let Some(ack) = link.ack_deadline {
                    at = at.min(ack);
                }
                if let Some(suspect_at) = self.suspicion_timer(link) {
                    at = at.min(suspect_at);
                }
                Some(at)
            }
            None if self.peer_incarnation != 0 || !self.outbound.is_empty() => {
                Some(instant_after(self.detached_at, self.config.session_expiry))
            }
            None => None,
        }
    }

    /// Fires the timers due at `now`. An error means the link is dead (and detached).
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), LinkError> {
        let config = self.config;
        let Some(link) = self.link.as_mut() else {
            if (self.peer_incarnation != 0 || !self.outbound.is_empty())
                && now >= instant_after(self.detached_at, config.session_expiry)
            {
                self.lose(now, LostReason::Expired);
            }
            return Ok(());
        };
        let error = match link.phase {
            Phase::AwaitingOffer { deadline, .. } if now >= deadline => {
                Some(LinkError::HandshakeTimeout(config.handshake_timeout))
            }
            _ if now >= instant_after(link.last_recv, config.idle_timeout) => {
                Some(LinkError::IdleTimeout(config.idle_timeout))
            }
            _ => None,
        };
        if let Some(error) = error {
            self.detach(now);
            return Err(error);
        }
        if now >= instant_after(link.last_send, link.heartbeat) {
            link.ping_due = true;
        }
        if link.ack_deadline.is_some_and(|at| now >= at) {
            link.ack_deadline = None;
            link.ack_now = true;
        }
        if matches!(link.phase, Phase::Established) {
            let bound = suspicion_bound(&config, self.rtt.estimate());
            match link.owed_since {
                Some(since) if !link.suspect && now >= instant_after(since, bound) => {
                    link.suspect = true;
                }
                None if link.flowing && now >= instant_after(link.last_recv, bound) => {
                    // The peer was sending and fell silent: finished, or cut off? Ask.
                    link.flowing = false;
                    link.probe_due = true;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether the current link is suspected dead: the peer owes an answer (an acknowledgement
    /// of DATA in flight, or the ACK that answers a PING) and nothing at all has arrived for
    /// longer than the suspicion bound, `max(Config::suspect_rtt_factor` × smoothed RTT,
    /// `Config::suspect_floor)`. A link that received a flow of DATA and then fell silent for
    /// the bound is probed with a PING first, so the receiving side of a flow suspects a dead
    /// link too. Anything arriving clears it. An idle peer whose heartbeats are answered is never
    /// suspect, and costs no timer beyond the heartbeat's. Nor is a link slowly carrying one large
    /// frame: its receiver acknowledges progress on the partial frame (a repeated ACK) after half
    /// of `Config::suspect_floor` without sending.
    ///
    /// The session keeps the link (only the idle timeout ends it): the driver may dial a fresh
    /// connection alongside, and attaching that one resumes the session.
    pub fn is_suspect(&self) -> bool {
        self.link.as_ref().is_some_and(|l| l.suspect)
    }

    /// When the suspicion rule (see [`Session::is_suspect`]) next needs the clock, if it does.
    fn suspicion_timer(&self, link: &Link) -> Option<Instant> {
        if !matches!(link.phase, Phase::Established) || link.suspect {
            return None;
        }
        let bound = suspicion_bound(&self.config, self.rtt.estimate());
        match link.owed_since {
            Some(since) => Some(instant_after(since, bound)),
            None if link.flowing => Some(instant_after(link.last_recv, bound)),
            None => None,
        }
    }
}

/// How long an owed answer may take before the link is suspect: a multiple of the smoothed RTT,
/// never less than the floor.
fn suspicion_bound(config: &Timing, rtt: Option<Duration>) -> Duration {
    rtt.unwrap_or_default()
        .saturating_mul(config.suspect_rtt_factor)
        .max(config.suspect_floor)
}

/// Whether an ACK should go out with the next transmission on an established link: to confirm
/// the session, for received data that should not wait any longer (see `ACK_EAGER` and
/// [`Config::ack_delay`]) or is a quarter of the inbox, or to grant a grown window.
/// `max_message`: ours, the largest message the peer may send us.
fn ack_wanted(link: &Link, inbound: &Inbound, max_message: usize) -> bool {
    link.confirm_due
        || link.pong_due
        || (inbound.ack_due().is_some() && (link.ack_now || inbound.ack_pressure()))
        || inbound.window_update_due(max_message)
}

/// Half of `d`: how long a receiver of a partial frame stays silent before it acknowledges
/// progress, so the peer hears from it well within its suspicion floor.
fn half(d: Duration) -> Duration {
    d.checked_div(2).unwrap_or_default()
}
