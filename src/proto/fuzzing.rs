//! Entry points that drive the protocol core with arbitrary bytes and check its invariants.
//!
//! Used by the cargo-fuzz targets in `fuzz/` (see `docs/FUZZING.md`) and by a unit test that runs
//! them over pseudo-random inputs. Compiled only for tests and with the `fuzzing` feature (which
//! `fuzz/` enables), never into an ordinary build. It reads no clock: time is an argument. Each function panics only when an invariant is broken: that
//! panic is what a fuzzer reports. Peer input itself must never make the core panic.
//!
//! - [`frame_decode`]: decoding never panics, never allocates beyond the input and the limit, and
//!   every decoded frame survives `decode(encode(frame)) == frame`.
//! - [`handshake`]: a HELLO fed in arbitrary chunks gives the same result as fed whole.
//! - [`session_ops`]: two [`Session`]s joined in memory through a sequence of operations (send,
//!   deliver, cut, reconnect, restart, clock, raw frame injection): no panic; without injected
//!   frames, no protocol violation between the two correct peers and every message read was
//!   sent, at most once, in order; without restarts, shutdowns or expiry as well, every message
//!   is read exactly once, in order, once the connection is healed.

// A test harness: it asserts on purpose and does plain arithmetic on its own small counters.
#![allow(
    clippy::panic,
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::frame::{self, Frame, Hello, SessionOffer};
use super::{
    CloseCode, Config, Handshake, InboxLimits, LinkError, Session, SessionEvent, WindowLimits,
};

/// Reads values off the front of the fuzzer's input; an exhausted input reads as zeros.
struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    fn u64(&mut self) -> u64 {
        (u64::from(self.u32()) << 32) | u64::from(self.u32())
    }

    /// Up to `n` bytes.
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// A u64 biased towards the values that matter: 0, near `hint`, and near `u64::MAX`.
    fn u64_near(&mut self, hint: u64) -> u64 {
        match self.u8() % 8 {
            0 => 0,
            1 => 1,
            2 | 3 => hint.wrapping_add(u64::from(self.u8() % 8)),
            4 => hint.wrapping_sub(u64::from(self.u8() % 4)),
            5 => u64::MAX.wrapping_sub(u64::from(self.u8() % 4)),
            6 => u64::from(self.u8()),
            _ => self.u64(),
        }
    }
}

// ---- frames ---------------------------------------------------------------------------------

/// Decodes frames from `data` with a small and a large limit until an error or a partial frame,
/// checking each decoded frame round-trips and that memory stays bounded by input and limit.
pub fn frame_decode(data: &[u8]) {
    for limit in [64, 1 << 16] {
        let mut buf = BytesMut::from(data);
        // A frame's announced length may make `decode` reserve up to `limit + 4` bytes; growth of
        // the buffer may double what it already holds. Anything beyond means an allocation
        // driven by the announced length itself, which the limit must prevent.
        let bound = 2 * data.len() + limit + frame::HEADER_LEN + 8;
        loop {
            let before = buf.len();
            let result = frame::decode(&mut buf, limit);
            assert!(
                buf.capacity() <= bound,
                "decode with limit {limit} holds {} bytes for {} bytes of input",
                buf.capacity(),
                data.len()
            );
            match result {
                Ok(Some(frame)) => {
                    let consumed = before - buf.len();
                    assert!(
                        (frame::HEADER_LEN..=limit + 4).contains(&consumed),
                        "consumed {consumed} bytes with limit {limit}"
                    );
                    check_round_trip(&frame);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "a partial frame must not be consumed");
                    break;
                }
                Err(e) => {
                    let _ = e.close_code();
                    let _ = e.to_string();
                    break;
                }
            }
        }
    }
}

fn check_round_trip(frame: &Frame) {
    let mut encoded = BytesMut::new();
    frame::encode(frame, &mut encoded);
    let decoded = frame::decode(&mut encoded, usize::MAX);
    assert_eq!(
        decoded.as_ref().ok().and_then(Option::as_ref),
        Some(frame),
        "decode(encode(frame)) != frame: got {decoded:?}"
    );
    assert!(
        encoded.is_empty(),
        "re-decoding left {} bytes",
        encoded.len()
    );
}

// ---- handshake ------------------------------------------------------------------------------

/// Feeds `data` to a [`Handshake`] whole, then in chunks whose sizes derive from the data: both
/// must give the same result and leave the same bytes behind. `now` is the handshake's start (any
/// instant: only durations from it matter).
pub fn handshake(data: &[u8], now: Instant) {
    let config = Config::default();
    let new = || Handshake::new(now, "fuzz-local", 0x5eed, &config);

    let mut whole_buf = BytesMut::from(data);
    let whole = new().handle_input(now, &mut whole_buf);
    if let Ok(Some(peer)) = &whole {
        assert!(
            super::validate_name(&peer.name).is_ok(),
            "accepted {peer:?}"
        );
        assert_ne!(peer.name, "fuzz-local", "accepted our own name");
        assert_ne!(peer.incarnation, 0, "accepted a zero incarnation");
        assert_eq!(peer.version, frame::VERSION);
        assert!(peer.max_message > 0 && peer.idle_timeout >= Duration::from_millis(100));
    }

    // Chunk sizes from a small PRNG seeded by the data, so every input has its own split.
    let mut state = data.iter().fold(0x9E37_79B9_7F4A_7C15_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) | 1;
    let mut chunk_len = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        match state % 4 {
            0 => 1,
            1 => 1 + (state >> 8) as usize % 4,
            2 => 1 + (state >> 8) as usize % 32,
            _ => 1 + (state >> 8) as usize % 512,
        }
    };
    let mut hs = new();
    let mut buf = BytesMut::new();
    let mut rest = data;
    let chunked = loop {
        let (chunk, tail) = rest.split_at(chunk_len().min(rest.len()));
        rest = tail;
        buf.extend_from_slice(chunk);
        match hs.handle_input(now, &mut buf) {
            Ok(None) if !rest.is_empty() => continue,
            result => break result,
        }
    };
    buf.extend_from_slice(rest);
    assert_eq!(whole, chunked, "whole and chunked input disagree");
    assert_eq!(
        whole_buf, buf,
        "whole and chunked input left different bytes"
    );

    // Past the deadline nothing is decoded any more.
    let late = hs.deadline();
    assert!(matches!(
        new().handle_input(late, &mut BytesMut::from(data)),
        Err(LinkError::HandshakeTimeout(_))
    ));
}

// ---- two sessions ---------------------------------------------------------------------------

const NAMES: [&str; 2] = ["fuzz-a", "fuzz-b"];
/// Bytes of a payload that carry its counter.
const COUNTER_LEN: usize = 8;

/// Two nodes holding a session for each other, one simulated connection, a virtual clock, and
/// the bookkeeping for the delivery invariants.
struct Sim {
    base: Instant,
    elapsed: Duration,
    config: Config,
    incarnations: [u64; 2],
    sessions: [Session; 2],
    /// `wires[i]`: written by side `i`, not yet received by the other side.
    wires: [BytesMut; 2],
    /// `rx[i]`: received by side `i`, not yet consumed by its session (a partial frame).
    rx: [BytesMut; 2],
    nonces: u64,
    /// Next payload counter of each side (never reused, across restarts too).
    next_counter: [u64; 2],
    /// Counters side `i` sent (accepted by `send`) that the other side has not read yet.
    unread: [BTreeSet<u64>; 2],
    /// The last counter read from side `i`'s messages.
    last_read: [Option<u64>; 2],
    /// Raw frames were injected: only "no panic" is checked.
    injected: bool,
    /// A restart, shutdown or lost session happened: delivery is at most once, not exactly once.
    disrupted: bool,
}

impl Sim {
    fn new(config: Config, now: Instant) -> Sim {
        let incarnations = [0xa000_0001, 0xb000_0001];
        Sim {
            base: now,
            elapsed: Duration::ZERO,
            config,
            incarnations,
            sessions: incarnations.map(|inc| Session::new(now, inc, config)),
            wires: [BytesMut::new(), BytesMut::new()],
            rx: [BytesMut::new(), BytesMut::new()],
            nonces: 0,
            next_counter: [0, 0],
            unread: [BTreeSet::new(), BTreeSet::new()],
            last_read: [None, None],
            injected: false,
            disrupted: false,
        }
    }

    fn now(&self) -> Instant {
        self.base + self.elapsed
    }

    fn drain_events(&mut self) {
        for i in 0..2 {
            while let Some(event) = self.sessions[i].poll_event() {
                if let SessionEvent::Lost { .. } = event {
                    self.disrupted = true;
                }
            }
        }
    }

    /// A link of `side` failed: its driver drops the connection, the peer sees it end.
    fn link_failed(&mut self, side: usize, error: &LinkError) {
        if !self.injected && matches!(error, LinkError::Violation(_)) {
            panic!(
                "{} hit a protocol violation between correct peers: {error}",
                NAMES[side]
            );
        }
        let _ = (error.to_string(), error.close_code());
        self.cut();
    }

    fn cut(&mut self) {
        let now = self.now();
        for i in 0..2 {
            self.wires[i].clear();
            self.rx[i].clear();
            self.sessions[i].detach(now);
        }
        self.drain_events();
    }

    /// A new connection: HELLOs both ways through real handshakes, then both sessions attach it.
    fn connect(&mut self) {
        self.cut();
        let now = self.now();
        let handshakes =
            [0, 1].map(|i| Handshake::new(now, NAMES[i], self.incarnations[i], &self.config));
        let mut hellos = [BytesMut::new(), BytesMut::new()];
        for i in 0..2 {
            handshakes[i].write_hello(&mut hellos[i]);
        }
        for (i, mut hs) in handshakes.into_iter().enumerate() {
            let peer = match hs.handle_input(now, &mut hellos[1 - i]) {
                Ok(Some(peer)) => peer,
                other => panic!("a correct HELLO was refused: {other:?}"),
            };
            assert_eq!(peer.name, NAMES[1 - i]);
            self.nonces += 1;
            let nonce = self.nonces.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            self.sessions[i].begin_link(now, &peer, hs.deadline(), nonce);
        }
        self.drain_events();
    }

    fn send(&mut self, side: usize, filler: usize) {
        let counter = self.next_counter[side];
        let mut payload = Vec::with_capacity(COUNTER_LEN + filler);
        payload.extend_from_slice(&counter.to_be_bytes());
        payload.resize(COUNTER_LEN + filler, counter as u8);
        let fits = self.sessions[side].has_room(payload.len());
        match self.sessions[side].send(Bytes::from(payload)) {
            Ok(_) => {
                self.next_counter[side] += 1;
                self.unread[side].insert(counter);
            }
            Err(super::PushError::Full) => assert!(!fits, "has_room said yes, send said full"),
            Err(super::PushError::TooLarge { .. }) => {}
        }
    }

    fn transmit(&mut self, side: usize, limit: usize) {
        let now = self.now();
        let before = self.wires[side].len();
        let wants = self.sessions[side].wants_transmit();
        let wrote = self.sessions[side].poll_transmit(now, &mut self.wires[side], limit);
        assert_eq!(wrote, self.wires[side].len() > before);
        assert!(
            !wrote || wants,
            "poll_transmit wrote what wants_transmit did not announce"
        );
    }

    /// The peer of `from` receives up to `n` bytes of `from`'s wire and processes them.
    fn deliver(&mut self, to: usize, n: usize) {
        let from = 1 - to;
        let n = n.min(self.wires[from].len());
        let chunk = self.wires[from].split_to(n);
        self.rx[to].extend_from_slice(&chunk);
        let now = self.now();
        let result = self.sessions[to].handle_input(now, &mut self.rx[to]);
        self.drain_events();
        if let Err(e) = result {
            self.link_failed(to, &e);
        }
    }

    fn step(&mut self) {
        for side in [0, 1] {
            self.transmit(side, usize::MAX);
            self.deliver(1 - side, usize::MAX);
        }
    }

    fn read(&mut self, side: usize, n: usize) {
        let from = 1 - side;
        for message in self.sessions[side].read(n) {
            if self.injected {
                continue;
            }
            let counter = message
                .first_chunk::<COUNTER_LEN>()
                .map(|c| u64::from_be_bytes(*c))
                .unwrap_or_else(|| panic!("{} read a message nobody sent", NAMES[side]));
            if !self.disrupted {
                assert_eq!(
                    self.unread[from].first(),
                    Some(&counter),
                    "{} read out of order or with a gap",
                    NAMES[side]
                );
            }
            assert!(
                self.unread[from].remove(&counter),
                "{} read message {counter} that was not sent or was read before",
                NAMES[side]
            );
            assert!(
                self.last_read[from] < Some(counter),
                "{} read {counter} after {:?}",
                NAMES[side],
                self.last_read[from]
            );
            self.last_read[from] = Some(counter);
        }
    }

    /// Fires due timers the way drivers do; a link that dies detaches, and expiry may follow.
    fn settle_timers(&mut self) {
        for _ in 0..3 {
            for side in [0, 1] {
                let now = self.now();
                if self.sessions[side]
                    .poll_timeout()
                    .is_some_and(|at| at <= now)
                {
                    let result = self.sessions[side].handle_timeout(now);
                    self.drain_events();
                    if let Err(e) = result {
                        self.link_failed(side, &e);
                    }
                }
            }
        }
    }

    /// `side`'s process dies and comes back as a new incarnation.
    fn restart(&mut self, side: usize) {
        self.cut();
        self.disrupted = true;
        self.incarnations[side] += 1;
        self.sessions[side] = Session::new(self.now(), self.incarnations[side], self.config);
    }

    /// `side` shuts down cleanly (flush, CLOSE(Shutdown), the peer reads it) and restarts.
    fn shutdown(&mut self, side: usize) {
        self.transmit(side, usize::MAX);
        frame::encode(
            &Frame::Close {
                code: CloseCode::Shutdown,
                reason: "bye".into(),
            },
            &mut self.wires[side],
        );
        self.deliver(1 - side, usize::MAX);
        self.restart(side);
    }

    /// A frame built from the input, given to `side` as if its peer had sent it.
    fn inject_frame(&mut self, side: usize, input: &mut Input<'_>) {
        self.injected = true;
        let hint = self.sessions[1 - side].acked().wrapping_add(1);
        let frame = match input.u8() % 6 {
            0 => Frame::Data {
                seq: input.u64_near(hint),
                payload: {
                    let n = usize::from(input.u8() % 64);
                    Bytes::copy_from_slice(input.bytes(n))
                },
            },
            1 => Frame::Ack {
                up_to: input.u64_near(self.sessions[side].acked()),
                window_messages: input.u64_near(8),
                window_bytes: input.u64_near(1 << 10),
            },
            2 => Frame::Session(SessionOffer {
                session_id: input.u64_near(1),
                nonce: input.u64(),
                next_expected: input.u64_near(hint),
                window_messages: input.u64_near(8),
                window_bytes: input.u64_near(1 << 10),
            }),
            3 => Frame::Hello(Hello {
                min_version: input.u16(),
                max_version: input.u16(),
                incarnation: input.u64_near(self.incarnations[1 - side]),
                max_message: input.u32(),
                idle_timeout_ms: input.u32(),
                name: NAMES[1 - side].into(),
            }),
            4 => Frame::Ping,
            _ => Frame::Close {
                code: CloseCode::from_u16(input.u16() % 12),
                reason: {
                    let n = usize::from(input.u8() % 16);
                    String::from_utf8_lossy(input.bytes(n)).into_owned()
                },
            },
        };
        let now = self.now();
        let result = if input.u8() % 2 == 0 {
            self.sessions[side].handle_frame(now, frame).map(|_| ())
        } else {
            // Through the byte stream, possibly behind a partial frame already there.
            frame::encode(&frame, &mut self.rx[side]);
            self.sessions[side].handle_input(now, &mut self.rx[side])
        };
        self.drain_events();
        if let Err(e) = result {
            self.link_failed(side, &e);
        }
    }

    /// Raw bytes from the input appended to what `side` receives.
    fn inject_bytes(&mut self, side: usize, input: &mut Input<'_>) {
        self.injected = true;
        let n = usize::from(input.u8() % 32);
        self.rx[side].extend_from_slice(input.bytes(n));
        let now = self.now();
        let result = self.sessions[side].handle_input(now, &mut self.rx[side]);
        self.drain_events();
        if let Err(e) = result {
            self.link_failed(side, &e);
        }
    }

    fn is_quiet(&self) -> bool {
        (0..2).all(|i| {
            let s = &self.sessions[i];
            s.is_established()
                && s.unacked_len() == 0
                && s.inbox_len() == 0
                && self.wires[i].is_empty()
                && self.rx[i].is_empty()
        })
    }

    /// Reconnects as needed and runs until everything queued is acknowledged and read.
    fn heal(&mut self) {
        for _ in 0..100 {
            if !(self.sessions[0].is_established() && self.sessions[1].is_established()) {
                self.connect();
            }
            self.step();
            self.read(0, usize::MAX);
            self.read(1, usize::MAX);
            if self.is_quiet() {
                return;
            }
        }
        let state = [0, 1].map(|i| {
            let s = &self.sessions[i];
            (s.is_established(), s.unacked_len(), s.inbox_len())
        });
        panic!("heal did not converge: (established, unacked, inbox) = {state:?}");
    }
}

/// A small configuration shaped by the first input byte, so windows fill within a few messages.
fn sim_config(input: &mut Input<'_>) -> Config {
    let shape = input.u8();
    let mut config = Config::default();
    let max_message = 256;
    config.set_max_message(max_message);
    config.window = WindowLimits {
        messages: 1 + usize::from(shape % 8),
        bytes: [max_message, 1 << 16][usize::from(shape >> 3 & 1)],
        max_message,
    };
    config.inbox = InboxLimits {
        messages: 1 + usize::from(shape >> 4 & 7),
        bytes: [max_message, 1 << 16][usize::from(shape >> 7)],
    };
    config.heartbeat_interval = Duration::from_secs(5);
    config.idle_timeout = Duration::from_secs(20);
    config.handshake_timeout = Duration::from_secs(10);
    config.session_expiry = Duration::from_secs(60);
    config
}

/// Clock steps an operation may take: around every timer of [`sim_config`].
const CLOCK_STEPS: [Duration; 8] = [
    Duration::from_millis(1),
    Duration::from_millis(100),
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(20),
    Duration::from_secs(61),
    Duration::from_secs(3600),
];

/// Interprets `data` as operations on two connected sessions and checks the delivery invariants
/// (see the module docs). `base` is where the virtual clock starts (any instant: only durations
/// from it matter).
pub fn session_ops(data: &[u8], base: Instant) {
    run_session_ops(data, base);
}

fn run_session_ops(data: &[u8], base: Instant) -> Sim {
    let mut input = Input { data };
    let mut sim = Sim::new(sim_config(&mut input), base);
    sim.connect();
    let mut ops = 0;
    while !input.is_empty() && ops < 512 {
        ops += 1;
        let op = input.u8();
        let side = usize::from(op >> 7);
        match op & 0x7f {
            0..=29 => sim.send(side, usize::from(input.u8())),
            30..=44 => {
                let limit = usize::from(input.u8()) * 16 + 1;
                sim.transmit(side, limit);
            }
            45..=64 => {
                let n = match input.u8() {
                    0xff => usize::MAX,
                    b => usize::from(b) * 4,
                };
                sim.deliver(side, n);
            }
            65..=79 => sim.read(side, usize::from(input.u8() % 4)),
            80..=89 => sim.step(),
            90..=93 => sim.cut(),
            94..=99 => sim.connect(),
            100..=107 => {
                sim.elapsed += CLOCK_STEPS[usize::from(input.u8() % 8)];
                sim.settle_timers();
            }
            108..=109 => sim.settle_timers(),
            110..=112 => sim.restart(side),
            113..=114 => sim.shutdown(side),
            115..=120 => sim.inject_frame(side, &mut input),
            _ => sim.inject_bytes(side, &mut input),
        }
    }
    if sim.injected {
        return sim;
    }
    sim.heal();
    if !sim.disrupted {
        for (unread, name) in sim.unread.iter().zip(NAMES) {
            assert!(
                unread.is_empty(),
                "messages {unread:?} from {name} were never read"
            );
        }
    }
    sim
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn random_bytes(rng: &mut StdRng, max_len: usize) -> Vec<u8> {
        let mut data = vec![0u8; rng.random_range(0..=max_len)];
        rng.fill(&mut data[..]);
        data
    }

    /// A valid encoded frame, sometimes with one byte changed or the tail cut.
    fn frame_like(rng: &mut StdRng) -> Vec<u8> {
        let mut buf = BytesMut::new();
        let frame = match rng.random_range(0..6) {
            0 => Frame::Hello(Hello {
                min_version: rng.random_range(0..3),
                max_version: rng.random_range(0..3),
                incarnation: rng.random_range(0..3),
                max_message: rng.random_range(0..3),
                idle_timeout_ms: rng.random_range(0..200),
                name: ["peer", "fuzz-local", "bad name", ""][rng.random_range(0..4)].into(),
            }),
            1 => Frame::Session(SessionOffer {
                session_id: rng.random(),
                nonce: rng.random(),
                next_expected: rng.random(),
                window_messages: rng.random(),
                window_bytes: rng.random(),
            }),
            2 => Frame::Data {
                seq: rng.random(),
                payload: Bytes::from(random_bytes(rng, 40)),
            },
            3 => Frame::Ack {
                up_to: rng.random(),
                window_messages: rng.random(),
                window_bytes: rng.random(),
            },
            4 => Frame::Ping,
            _ => Frame::Close {
                code: CloseCode::from_u16(rng.random_range(0..12)),
                reason: String::from_utf8_lossy(&random_bytes(rng, 300)).into_owned(),
            },
        };
        frame::encode(&frame, &mut buf);
        let mut data = buf.to_vec();
        match rng.random_range(0..4) {
            0 => {
                let i = rng.random_range(0..data.len());
                data[i] = rng.random();
            }
            1 => data.truncate(rng.random_range(0..data.len())),
            2 => data.extend(random_bytes(rng, 16)),
            _ => {}
        }
        data
    }

    #[test]
    fn frame_decode_on_random_inputs() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..5000 {
            let mut data = frame_like(&mut rng);
            data.extend(frame_like(&mut rng));
            frame_decode(&data);
            frame_decode(&random_bytes(&mut rng, 64));
        }
    }

    #[test]
    fn handshake_on_random_inputs() {
        let mut rng = StdRng::seed_from_u64(2);
        let now = Instant::now();
        for _ in 0..5000 {
            handshake(&frame_like(&mut rng), now);
            handshake(&random_bytes(&mut rng, 64), now);
        }
    }

    #[test]
    fn session_ops_on_random_inputs() {
        let mut rng = StdRng::seed_from_u64(3);
        let (mut clean, mut delivered, mut disrupted) = (0, 0, 0);
        for _ in 0..5000 {
            let mut data = random_bytes(&mut rng, 200);
            if rng.random_range(0..2) == 0 {
                // Without injection (op codes 115..=127), so the delivery checks apply.
                for b in &mut data {
                    if *b & 0x7f >= 115 {
                        *b &= !0x70;
                    }
                }
            }
            let sim = run_session_ops(&data, Instant::now());
            if !sim.injected {
                clean += 1;
                disrupted += usize::from(sim.disrupted);
                delivered += usize::from(sim.last_read.iter().any(Option::is_some));
            }
        }
        // The inputs reach the interesting parts: messages flow, and sessions get disrupted.
        assert!(
            clean > 500 && delivered > clean / 2 && disrupted > 50,
            "{clean} clean runs, {delivered} delivered, {disrupted} disrupted"
        );
    }
}
