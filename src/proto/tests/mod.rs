//! Simulated session pairs: two sessions, in-memory wires, a virtual clock.
//!
//! [`Pair`] plays both drivers and both applications. Every byte a session writes is decoded on
//! the way (the trace) and every message is followed by the [`Checker`] from `send` to `read` or
//! hand-back, so every scenario ends with the same delivery assertions.
//!
//! Time is a single base `Instant` plus an offset the test moves explicitly: no sleeps, and the
//! real clock is read exactly once per pair.

#![allow(clippy::unwrap_used)]

mod acks;
mod budget;
mod checker;
mod counters;
mod endpoint;
mod faults;
mod fuzz_regressions;
mod origins;
mod props;
mod regressions;
mod scenarios;
mod sim;
mod suspicion;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::frame::{self, Frame};
use super::{
    Config, Handshake, InboxLimits, LinkError, PushError, Session, SessionEvent, WindowLimits,
};
pub(crate) use checker::{Checker, Mode};

/// One of the two nodes of a [`Pair`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    A,
    B,
}

impl Side {
    pub(crate) fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    pub(crate) fn idx(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Side::A => "a",
            Side::B => "b",
        }
    }
}

const BOTH: [Side; 2] = [Side::A, Side::B];

/// Small windows and inbox so that back-pressure, partial reads and replays happen within a few
/// messages; timers are the defaults' shape, with an expiry short enough to reach by advancing.
pub(crate) fn test_config() -> Config {
    let mut config = Config::default();
    config.set_max_message(1024);
    config.window = WindowLimits {
        messages: 8,
        bytes: 1 << 16,
        max_message: 1024,
    };
    config.inbox = InboxLimits {
        messages: 4,
        bytes: 1 << 16,
    };
    config.heartbeat_interval = Duration::from_secs(5);
    config.idle_timeout = Duration::from_secs(20);
    config.handshake_timeout = Duration::from_secs(10);
    config.session_expiry = Duration::from_secs(60);
    config
}

/// Two nodes, each holding a session for the other, joined by at most one simulated connection.
#[derive(Debug)]
pub(crate) struct Pair {
    base: Instant,
    elapsed: Duration,
    pub(crate) config: Config,
    incarnations: [u64; 2],
    sessions: [Session; 2],
    /// `wires[i]` holds bytes written by side `i` that the other side has not consumed yet.
    wires: [BytesMut; 2],
    /// `poll_transmit` stops once the wire holds this many bytes: an unread wire pushes back on
    /// its writer the way a full TCP send buffer does.
    pub(crate) wire_limit: usize,
    /// Most bytes a side reads from its wire per [`Pair::deliver`]. A read that leaves bytes on
    /// the wire is a full read (data is streaming); one that takes everything drains the input,
    /// and the side is told so ([`Session::input_drained`]), as the driver tells it.
    pub(crate) read_limit: usize,
    pub(crate) checker: Checker,
    /// Whether a protocol violation is a checker failure (false in tests that provoke them).
    pub(crate) violations_are_bugs: bool,
    events: [Vec<SessionEvent>; 2],
    errors: [Vec<LinkError>; 2],
    /// Every frame each side wrote, in order.
    frames: [Vec<Frame>; 2],
    /// DATA frames each side consumed on the current connection (to replay as duplicates).
    consumed: [Vec<(u64, Bytes)>; 2],
    /// Source of SESSION nonces: deterministic, distinct per side and connection.
    nonces: u64,
}

impl Pair {
    pub(crate) fn new(config: Config) -> Pair {
        let now = Instant::now();
        let incarnations = [0xa000_0001, 0xb000_0001];
        Pair {
            base: now,
            elapsed: Duration::ZERO,
            config,
            incarnations,
            sessions: [
                Session::new(now, incarnations[0], config),
                Session::new(now, incarnations[1], config),
            ],
            wires: [BytesMut::new(), BytesMut::new()],
            wire_limit: 512,
            read_limit: usize::MAX,
            checker: Checker::default(),
            violations_are_bugs: true,
            events: [Vec::new(), Vec::new()],
            errors: [Vec::new(), Vec::new()],
            frames: [Vec::new(), Vec::new()],
            consumed: [Vec::new(), Vec::new()],
            nonces: 0,
        }
    }

    /// Makes `side`'s grants respect a part of `budget`; before the first connection only.
    pub(crate) fn share_budget(&mut self, side: Side, budget: &std::sync::Arc<super::InboxBudget>) {
        let i = side.idx();
        self.sessions[i] =
            Session::new(self.now(), self.incarnations[i], self.config).with_inbox_budget(budget);
    }

    /// Whether a driver would run this pair now: a side has something to write, or bytes wait
    /// on a wire. (What a driver sleeps on, apart from timers and the budget's wake-up.)
    pub(crate) fn has_work(&self) -> bool {
        BOTH.iter()
            .any(|&s| self.session(s).wants_transmit() || !self.wires[s.idx()].is_empty())
    }

    /// A pair with [`test_config`], connected, both sessions established and confirmed (each
    /// side has heard from the other since, so DATA flows).
    pub(crate) fn established() -> Pair {
        let mut pair = Pair::new(test_config());
        pair.connect();
        pair.steps(2);
        assert!(pair.both_established(), "handshake did not complete");
        pair
    }

    // ---- clock ------------------------------------------------------------------------------

    pub(crate) fn now(&self) -> Instant {
        self.base + self.elapsed
    }

    /// Moves the clock without firing any timer.
    pub(crate) fn advance(&mut self, by: Duration) {
        self.elapsed += by;
    }

    /// Fires `side`'s timers, as its driver does when `poll_timeout` is reached. A link error
    /// closes the connection.
    pub(crate) fn fire_timers(&mut self, side: Side) -> Result<(), LinkError> {
        let now = self.now();
        let result = self.sessions[side.idx()].handle_timeout(now);
        self.drain_events();
        if let Err(e) = &result {
            self.link_failed(side, e.clone());
        }
        result
    }

    /// Fires every timer that is due, as both drivers do: a link that dies of a timeout detaches
    /// its session, whose expiry may then be due at once, so this repeats.
    pub(crate) fn settle_timers(&mut self) {
        for _ in 0..3 {
            for side in BOTH {
                let now = self.now();
                if self
                    .session(side)
                    .poll_timeout()
                    .is_some_and(|at| at <= now)
                {
                    let _ = self.fire_timers(side);
                }
            }
        }
    }

    /// Moves the clock and fires the timers that are due.
    pub(crate) fn tick(&mut self, by: Duration) {
        self.advance(by);
        self.settle_timers();
    }

    // ---- accessors --------------------------------------------------------------------------

    pub(crate) fn session(&self, side: Side) -> &Session {
        &self.sessions[side.idx()]
    }

    pub(crate) fn session_mut(&mut self, side: Side) -> &mut Session {
        &mut self.sessions[side.idx()]
    }

    pub(crate) fn incarnation(&self, side: Side) -> u64 {
        self.incarnations[side.idx()]
    }

    pub(crate) fn wire_len(&self, from: Side) -> usize {
        self.wires[from.idx()].len()
    }

    pub(crate) fn wire_mut(&mut self, from: Side) -> &mut BytesMut {
        &mut self.wires[from.idx()]
    }

    /// Events `side`'s application has seen since the last call.
    pub(crate) fn take_events(&mut self, side: Side) -> Vec<SessionEvent> {
        self.drain_events();
        std::mem::take(&mut self.events[side.idx()])
    }

    /// Link errors `side` has hit since the last call.
    pub(crate) fn take_errors(&mut self, side: Side) -> Vec<LinkError> {
        std::mem::take(&mut self.errors[side.idx()])
    }

    /// Frames `side` has written since the last call.
    pub(crate) fn take_frames(&mut self, side: Side) -> Vec<Frame> {
        std::mem::take(&mut self.frames[side.idx()])
    }

    pub(crate) fn both_established(&self) -> bool {
        BOTH.iter().all(|s| self.session(*s).is_established())
    }

    // ---- connections ------------------------------------------------------------------------

    /// A new connection: HELLOs both ways, then each session attaches it. A previous connection,
    /// if any, is dropped first (with whatever was still on its wires).
    pub(crate) fn connect(&mut self) {
        self.cut();
        let now = self.now();
        let mut handshakes =
            BOTH.map(|side| Handshake::new(now, side.name(), self.incarnation(side), &self.config));
        for side in BOTH {
            handshakes[side.idx()].write_hello(&mut self.wires[side.idx()]);
        }
        for side in BOTH {
            let peer = handshakes[side.idx()]
                .handle_input(now, &mut self.wires[side.other().idx()])
                .expect("valid HELLO")
                .expect("whole HELLO");
            assert_eq!(peer.name, side.other().name());
            assert_eq!(peer.incarnation, self.incarnation(side.other()));
            let deadline = handshakes[side.idx()].deadline();
            self.nonces += 1;
            let nonce = self.nonces.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            self.sessions[side.idx()].begin_link(now, &peer, deadline, nonce);
        }
        self.drain_events();
    }

    /// The connection breaks: bytes in flight are lost and both sessions detach.
    pub(crate) fn cut(&mut self) {
        let now = self.now();
        for side in BOTH {
            self.wires[side.idx()].clear();
            self.consumed[side.idx()].clear();
            self.sessions[side.idx()].detach(now);
        }
        self.drain_events();
    }

    /// The connection breaks after only the first `keep[i]` bytes of `wires[i]` got through:
    /// the receiver processes the whole frames among them, a partial frame at the end is lost.
    pub(crate) fn cut_at(&mut self, keep: [usize; 2]) {
        for side in BOTH {
            let wire = &mut self.wires[side.idx()];
            wire.truncate(keep[side.idx()].min(wire.len()));
        }
        for side in BOTH {
            let _ = self.deliver(side.other());
        }
        self.cut();
    }

    fn link_failed(&mut self, side: Side, error: LinkError) {
        if self.violations_are_bugs && matches!(error, LinkError::Violation(_)) {
            self.checker.fail(format!(
                "{} hit a protocol violation between correct peers: {error}",
                side.name()
            ));
        }
        self.errors[side.idx()].push(error);
        // The driver closes the socket; the peer sees the connection end.
        self.cut();
    }

    // ---- moving bytes -----------------------------------------------------------------------

    /// `side` writes what it has; returns the frames written.
    pub(crate) fn transmit(&mut self, side: Side) -> Vec<Frame> {
        let now = self.now();
        let i = side.idx();
        let before = self.wires[i].len();
        self.sessions[i].poll_transmit(now, &mut self.wires[i], self.wire_limit);
        let mut written = BytesMut::from(&self.wires[i][before..]);
        let mut frames = Vec::new();
        while let Some(frame) =
            frame::decode(&mut written, usize::MAX).expect("we encode valid frames")
        {
            if let Frame::Data { seq, payload } = &frame {
                let generation = self.sessions[i].generation();
                let incarnation = self.incarnations[i];
                self.checker
                    .on_wire(side, incarnation, generation, *seq, payload);
            }
            frames.push(frame);
        }
        assert!(written.is_empty(), "poll_transmit wrote a partial frame");
        self.frames[i].extend(frames.iter().cloned());
        frames
    }

    /// `side` reads up to [`Pair::read_limit`] bytes from the wire the other side writes and
    /// processes the whole frames among them.
    pub(crate) fn deliver(&mut self, side: Side) -> Result<(), LinkError> {
        let now = self.now();
        let (i, from) = (side.idx(), side.other().idx());
        let snapshot = self.wires[from].clone();
        // Bytes beyond this read stay on the wire, behind what the read left unprocessed.
        let unread = (self.wires[from].len() > self.read_limit)
            .then(|| self.wires[from].split_off(self.read_limit));
        let drained = unread.is_none();
        let result = self.sessions[i].handle_input(now, &mut self.wires[from]);
        if let Some(unread) = unread {
            self.wires[from].unsplit(unread);
        }
        if result.is_ok() && drained {
            self.sessions[i].input_drained();
        }
        let consumed = snapshot.len() - self.wires[from].len();
        let mut head = BytesMut::from(&snapshot[..consumed]);
        while let Ok(Some(frame)) = frame::decode(&mut head, usize::MAX) {
            if let Frame::Data { seq, payload } = frame {
                self.consumed[i].push((seq, payload));
            }
        }
        self.drain_events();
        if let Err(e) = &result {
            self.link_failed(side, e.clone());
        }
        result
    }

    /// `from` writes, the other side reads.
    pub(crate) fn half_step(&mut self, from: Side) {
        self.transmit(from);
        let _ = self.deliver(from.other());
    }

    /// One round trip of the wires: a to b, then b to a.
    pub(crate) fn step(&mut self) {
        self.half_step(Side::A);
        self.half_step(Side::B);
    }

    pub(crate) fn steps(&mut self, n: usize) {
        for _ in 0..n {
            self.step();
        }
    }

    /// Re-injects the last DATA frame `side` consumed on this connection, below its
    /// `next_expected`: it must be dropped silently.
    pub(crate) fn inject_duplicate(&mut self, side: Side) -> Option<Result<bool, LinkError>> {
        let (seq, payload) = self.consumed[side.idx()].last().cloned()?;
        let now = self.now();
        let result = self.sessions[side.idx()].handle_frame(now, Frame::Data { seq, payload });
        if !matches!(result, Ok(false)) {
            self.checker.fail(format!(
                "duplicate seq {seq} injected into {}: {result:?}",
                side.name()
            ));
        }
        self.drain_events();
        Some(result)
    }

    // ---- processes --------------------------------------------------------------------------

    /// `side`'s process dies and comes back as a new incarnation: its connection, inbox and
    /// unacknowledged messages are gone.
    pub(crate) fn restart(&mut self, side: Side) {
        self.drain_events();
        let i = side.idx();
        let inbox: Vec<Bytes> = self.sessions[i].peek(usize::MAX).cloned().collect();
        self.cut();
        self.checker.on_restart(side, self.incarnations[i], &inbox);
        self.events[i].clear();
        self.incarnations[i] += 1;
        self.sessions[i] = Session::new(self.now(), self.incarnations[i], self.config);
    }

    /// `side` shuts down cleanly: it flushes, sends CLOSE(Shutdown), the peer reads it, and the
    /// connection ends. The process stays down until [`Pair::restart`].
    pub(crate) fn shutdown(&mut self, side: Side) {
        self.transmit(side);
        let close = Frame::Close {
            code: super::CloseCode::Shutdown,
            reason: "bye".into(),
        };
        frame::encode(&close, &mut self.wires[side.idx()]);
        let _ = self.deliver(side.other());
        self.cut();
    }

    // ---- the application --------------------------------------------------------------------

    /// Queues one message from `side`; the checker learns about it only if it was accepted.
    pub(crate) fn send_one(&mut self, side: Side) -> Result<u64, PushError> {
        self.send_one_noting(side).map(|(seq, _)| seq)
    }

    /// [`Pair::send_one`] through [`Session::send_noting`]: also whether to wake the driver.
    pub(crate) fn send_one_noting(&mut self, side: Side) -> Result<(u64, bool), PushError> {
        let i = side.idx();
        let counter = self.checker.next_counter(side);
        let generation = self.sessions[i].generation();
        let (seq, wake) = self.sessions[i].send_noting(checker::payload(side, counter))?;
        self.checker
            .on_sent(side, counter, self.incarnations[i], generation, seq);
        Ok((seq, wake))
    }

    /// Queues up to `n` messages from `side`, stopping when the window is full.
    pub(crate) fn send(&mut self, side: Side, n: usize) -> usize {
        (0..n).take_while(|_| self.send_one(side).is_ok()).count()
    }

    /// The application of `side` reads up to `n` messages; returns their counters.
    pub(crate) fn read(&mut self, side: Side, n: usize) -> Vec<u64> {
        let messages = self.sessions[side.idx()].read(n);
        self.checker.on_read(side, &messages)
    }

    pub(crate) fn read_all(&mut self, side: Side) -> Vec<u64> {
        self.read(side, usize::MAX)
    }

    fn drain_events(&mut self) {
        for side in BOTH {
            let i = side.idx();
            while let Some(event) = self.sessions[i].poll_event() {
                self.checker.on_event(side, self.incarnations[i], &event);
                self.events[i].push(event);
            }
            self.checker
                .check_generation(side, self.sessions[i].generation());
        }
    }

    // ---- the end of every test --------------------------------------------------------------

    /// Reconnects as needed and runs until every queued message is acknowledged and read.
    pub(crate) fn heal(&mut self) {
        for _ in 0..200 {
            if !self.both_established() {
                self.connect();
            }
            self.step();
            self.read_all(Side::A);
            self.read_all(Side::B);
            if self.is_quiet() {
                return;
            }
        }
        let state = BOTH.map(|s| {
            let session = self.session(s);
            (
                session.is_established(),
                session.unacked_len(),
                session.inbox_len(),
            )
        });
        self.checker.fail(format!(
            "heal did not converge: (established, unacked, inbox) = {state:?}, errors = {:?}",
            self.errors
        ));
    }

    fn is_quiet(&self) -> bool {
        BOTH.iter().all(|&s| {
            let session = self.session(s);
            session.is_established()
                && session.unacked_len() == 0
                && session.inbox_len() == 0
                && self.wires[s.idx()].is_empty()
        })
    }

    /// Heals, then asserts the delivery invariant of `mode`.
    pub(crate) fn assert_delivery(&mut self, mode: Mode) -> checker::Summary {
        self.heal();
        self.checker.assert_ok(mode)
    }
}

/// For each `Established` event, whether the session was resumed.
pub(crate) fn established(events: &[SessionEvent]) -> Vec<bool> {
    events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Established { resumed } => Some(*resumed),
            _ => None,
        })
        .collect()
}

/// A connected pair whose windows take a thousand messages and whose wires take a megabyte per
/// step, with the events of connecting taken.
pub(crate) fn wide_pair() -> (Pair, Config) {
    let mut config = test_config();
    config.window.messages = 1000;
    config.inbox.messages = 1000;
    let mut pair = Pair::new(config);
    pair.wire_limit = 1 << 20;
    pair.connect();
    pair.steps(2);
    assert_eq!(established(&pair.take_events(Side::A)), [false]);
    assert_eq!(established(&pair.take_events(Side::B)), [false]);
    (pair, config)
}
