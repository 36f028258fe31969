//! The protocol tests' adapter to the shared delivery checker (`networkio-checker`).
//!
//! Each message carries `(sender, counter)`, the counter counting every message a side's
//! application ever queued (across restarts), so the checker can tell where each one went:
//! read by the peer's application, handed back to its sender by a `Lost` event, or neither.
//!
//! Guarantee G2: every message is read exactly once, in order, or handed back exactly once, and
//! never transmitted again once handed back. Two outcomes are allowed only because no protocol
//! can avoid them, and are counted rather than failed:
//! - *in doubt*: read by the peer and also handed back. The peer received it, its ACK was lost,
//!   and then the session ended (restart, expiry, shutdown): the sender cannot know.
//! - *excused*: neither read nor handed back, because a process crashed holding it (it sat in
//!   the receiver's inbox, or in the sender's window unacknowledged).
//!
//! Without restarts or expiry ([`Mode::Strict`]) neither is allowed, nor any hand-back at all.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};

use super::Side;
use crate::proto::session::{LostReason, SessionEvent};

/// How strict the final assertion is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// No session may end: every message read exactly once, in order.
    Strict,
    /// Guarantee G2, for runs with restarts, expiry or shutdown.
    G2,
}

/// The encoding of one test message: who sent it, its counter, and some padding so frames have
/// different lengths (cuts then land at every kind of offset).
pub(crate) fn payload(sender: Side, counter: u64) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_u8(sender.name().as_bytes()[0]);
    buf.put_u64(counter);
    buf.put_bytes(0x5a, (counter * 7 % 23) as usize);
    buf.freeze()
}

fn decode(payload: &[u8]) -> Option<(Side, u64)> {
    let sender = match payload.first()? {
        b'a' => Side::A,
        b'b' => Side::B,
        _ => return None,
    };
    let counter = u64::from_be_bytes(payload.get(1..9)?.try_into().ok()?);
    Some((sender, counter))
}

/// How the protocol numbered one message; what became of it is in the shared ledger.
#[derive(Debug, Clone)]
struct Msg {
    incarnation: u64,
    generation: u64,
    seq: u64,
    acked: bool,
    handed_back: bool,
}

pub(crate) use networkio_checker::Summary;

/// The protocol's side of the shared checker: messages are numbered by counter (index + 1) in
/// the streams `a -> b` and `b -> a`; what the sessions say about them (sequence numbers,
/// generations, `Delivered`, `Lost`) is checked here against what the ledger knows.
#[derive(Debug, Default)]
pub(crate) struct Checker {
    pub(crate) ledger: networkio_checker::Checker,
    /// `msgs[side][counter - 1]`.
    msgs: [Vec<Msg>; 2],
    /// Each side's generation as told by its events (bumped by every `Lost`).
    event_generation: [u64; 2],
    /// Highest `Delivered` per (side, incarnation, generation).
    delivered: HashMap<(usize, u64, u64), u64>,
}

impl Checker {
    pub(crate) fn set_seed(&mut self, seed: u64) {
        self.ledger.set_seed(seed);
    }

    pub(crate) fn fail(&mut self, what: String) {
        self.ledger.fail(what);
    }

    pub(crate) fn next_counter(&self, side: Side) -> u64 {
        self.msgs[side.idx()].len() as u64 + 1
    }

    fn msg(&mut self, side: Side, counter: u64) -> Option<&mut Msg> {
        let index = usize::try_from(counter.checked_sub(1)?).ok()?;
        self.msgs[side.idx()].get_mut(index)
    }

    pub(crate) fn on_sent(
        &mut self,
        side: Side,
        counter: u64,
        inc: u64,
        generation: u64,
        seq: u64,
    ) {
        assert_eq!(counter, self.next_counter(side));
        let numbered_before = self.msgs[side.idx()]
            .iter()
            .filter(|m| m.incarnation == inc && m.generation == generation)
            .count() as u64;
        if seq != numbered_before + 1 {
            self.fail(format!(
                "{} message {counter} got seq {seq}, expected {} in generation {generation}",
                side.name(),
                numbered_before + 1
            ));
        }
        let index = self.ledger.send(side.name(), side.other().name());
        debug_assert_eq!(index + 1, counter);
        self.msgs[side.idx()].push(Msg {
            incarnation: inc,
            generation,
            seq,
            acked: false,
            handed_back: false,
        });
    }

    /// A DATA frame written by `side` while its session is at (`inc`, `generation`).
    pub(crate) fn on_wire(&mut self, side: Side, inc: u64, generation: u64, seq: u64, data: &[u8]) {
        let Some((sender, counter)) = decode(data) else {
            return self.fail(format!(
                "{} transmitted an undecodable payload",
                side.name()
            ));
        };
        let problem = match self.msg(sender, counter) {
            _ if sender != side => Some("a message of the other side".to_owned()),
            None => Some("a message never sent".to_owned()),
            Some(m) if m.handed_back => Some("a message already handed back".to_owned()),
            Some(m) if (m.incarnation, m.generation, m.seq) != (inc, generation, seq) => {
                Some(format!(
                    "it as (inc {inc:#x}, gen {generation}, seq {seq}), sent as ({:#x}, {}, {})",
                    m.incarnation, m.generation, m.seq
                ))
            }
            Some(_) => None,
        };
        if let Some(problem) = problem {
            self.fail(format!(
                "{} transmitted message {counter}: {problem}",
                side.name()
            ));
        }
    }

    /// Messages `reader`'s application got from `read`; returns their counters.
    pub(crate) fn on_read(&mut self, reader: Side, messages: &[Bytes]) -> Vec<u64> {
        let mut counters = Vec::with_capacity(messages.len());
        for data in messages {
            let Some((sender, counter)) = decode(data) else {
                self.ledger.foreign(format_args!(
                    "{} read an undecodable payload",
                    reader.name()
                ));
                continue;
            };
            counters.push(counter);
            self.ledger.read_from(
                reader.other().name(),
                sender.name(),
                sender.other().name(),
                counter - 1,
            );
        }
        counters
    }

    pub(crate) fn on_event(&mut self, side: Side, inc: u64, event: &SessionEvent) {
        let i = side.idx();
        let generation = self.event_generation[i];
        match event {
            SessionEvent::Delivered { up_to } => {
                let key = (i, inc, generation);
                let before = self.delivered.get(&key).copied().unwrap_or(0);
                let sent = self.msgs[i]
                    .iter()
                    .filter(|m| m.incarnation == inc && m.generation == generation)
                    .count() as u64;
                if *up_to <= before || *up_to > sent {
                    self.fail(format!(
                        "{} Delivered up_to {up_to} after {before}, {sent} sent in gen {generation}",
                        side.name()
                    ));
                }
                self.delivered.insert(key, before.max(*up_to));
                for (index, m) in self.msgs[i].iter_mut().enumerate() {
                    if m.incarnation == inc
                        && m.generation == generation
                        && m.seq <= *up_to
                        && !m.acked
                    {
                        m.acked = true;
                        self.ledger
                            .acked(side.name(), side.other().name(), index as u64);
                    }
                }
            }
            SessionEvent::Lost {
                generation: lost_generation,
                unacked,
                reason,
                acked: reported_acked,
                ..
            } => {
                if *lost_generation != generation {
                    self.fail(format!(
                        "{} Lost generation {lost_generation}, expected {generation}",
                        side.name()
                    ));
                }
                let acked = self
                    .delivered
                    .get(&(i, inc, generation))
                    .copied()
                    .unwrap_or(0);
                if *reported_acked != acked {
                    self.fail(format!(
                        "{} Lost says acked {reported_acked}, Delivered said {acked}",
                        side.name()
                    ));
                }
                let expected: Vec<u64> = (1..)
                    .zip(&self.msgs[i])
                    .filter(|(_, m)| {
                        m.incarnation == inc && m.generation == generation && m.seq > acked
                    })
                    .map(|(counter, _)| counter)
                    .collect();
                let got: Vec<u64> = unacked
                    .iter()
                    .map(|p| decode(p).filter(|(s, _)| *s == side).map_or(0, |(_, c)| c))
                    .collect();
                if got != expected {
                    self.fail(format!(
                        "{} Lost({reason:?}) handed back {got:?}, unacknowledged were {expected:?}",
                        side.name()
                    ));
                }
                for counter in got {
                    if let Some(m) = self.msg(side, counter) {
                        m.handed_back = true;
                        self.ledger
                            .handed_back(side.name(), side.other().name(), counter - 1);
                    }
                }
                self.ledger.session_lost(format_args!(
                    "{} Lost({reason:?}), {} handed back",
                    side.name(),
                    unacked.len()
                ));
                self.event_generation[i] += 1;
            }
            SessionEvent::Established { .. } | SessionEvent::Received => {}
        }
    }

    /// After the events are drained, the session's generation is the one they imply.
    pub(crate) fn check_generation(&mut self, side: Side, session_generation: u64) {
        let seen = self.event_generation[side.idx()];
        if seen != session_generation {
            self.fail(format!(
                "{} is at generation {session_generation} but its events imply {seen}",
                side.name()
            ));
            self.event_generation[side.idx()] = session_generation;
        }
    }

    /// `side` crashed as incarnation `inc`, with `inbox` unread.
    pub(crate) fn on_restart(&mut self, side: Side, _inc: u64, inbox: &[Bytes]) {
        for data in inbox {
            if let Some((sender, counter)) = decode(data) {
                self.ledger
                    .excuse(sender.name(), sender.other().name(), counter - 1);
            }
        }
        self.ledger.sender_crashed(side.name());
        self.event_generation[side.idx()] = 0;
    }

    /// Panics, with the counts, the seed and the failures, unless the invariant of `mode`
    /// holds. Meant to be called once nothing is in flight any more.
    #[track_caller]
    pub(crate) fn assert_ok(&self, mode: Mode) -> Summary {
        match mode {
            Mode::Strict => self.ledger.assert_exactly_once_in_order(),
            Mode::G2 => self.ledger.assert_accounted(),
        }
    }
}

/// The checker itself must catch what it is for: each of these fakes one defect.
mod self_test {
    use super::*;

    fn sent(n: u64) -> Checker {
        let mut c = Checker::default();
        for counter in 1..=n {
            c.on_sent(Side::A, counter, 7, 0, counter);
        }
        c
    }

    #[test]
    fn accepts_a_clean_run() {
        let mut c = sent(3);
        c.on_read(Side::B, &[payload(Side::A, 1), payload(Side::A, 2)]);
        c.on_read(Side::B, &[payload(Side::A, 3)]);
        assert_eq!(c.assert_ok(Mode::Strict).read, 3);
    }

    #[test]
    #[should_panic(expected = "duplicated: b read a->b #0 again")]
    fn flags_a_duplicate() {
        let mut c = sent(2);
        c.on_read(
            Side::B,
            &[
                payload(Side::A, 1),
                payload(Side::A, 1),
                payload(Side::A, 2),
            ],
        );
        c.assert_ok(Mode::Strict);
    }

    #[test]
    #[should_panic(expected = "lost: a->b #0")]
    fn flags_a_loss() {
        let mut c = sent(2);
        c.on_read(Side::B, &[payload(Side::A, 2)]);
        c.assert_ok(Mode::G2);
    }

    #[test]
    #[should_panic(expected = "out of order: b read a->b #0 after #1")]
    fn flags_reordering() {
        let mut c = sent(2);
        c.on_read(Side::B, &[payload(Side::A, 2), payload(Side::A, 1)]);
        c.assert_ok(Mode::Strict);
    }

    #[test]
    #[should_panic(expected = "unacknowledged were [2]")]
    fn flags_handing_back_a_delivered_message() {
        let mut c = sent(2);
        c.on_event(Side::A, 7, &SessionEvent::Delivered { up_to: 1 });
        let lost = SessionEvent::Lost {
            generation: 0,
            unacked: vec![payload(Side::A, 1), payload(Side::A, 2)],
            reason: LostReason::Expired,
            acked: 1,
            messages_before: 0,
            read_through: 0,
        };
        c.on_event(Side::A, 7, &lost);
        c.assert_ok(Mode::G2);
    }

    #[test]
    #[should_panic(expected = "already handed back")]
    fn flags_a_transmission_after_hand_back() {
        let mut c = sent(1);
        let lost = SessionEvent::Lost {
            generation: 0,
            unacked: vec![payload(Side::A, 1)],
            reason: LostReason::PeerRestarted,
            acked: 0,
            messages_before: 0,
            read_through: 0,
        };
        c.on_event(Side::A, 7, &lost);
        c.on_wire(Side::A, 7, 0, 1, &payload(Side::A, 1));
        c.assert_ok(Mode::G2);
    }
}
