//! The delivery checker shared by every simulated test.
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

#[derive(Debug, Clone)]
struct Msg {
    incarnation: u64,
    generation: u64,
    seq: u64,
    reads: u32,
    handed_back: u32,
    acked: bool,
    /// Its sender crashed before it was acknowledged.
    orphaned: bool,
    /// It sat unread in the receiver's inbox when the receiver crashed.
    destroyed: bool,
}

/// Final counts, printed on failure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) sent: usize,
    pub(crate) read: usize,
    pub(crate) handed_back: usize,
    pub(crate) in_doubt: usize,
    pub(crate) excused: usize,
    pub(crate) lost: usize,
    pub(crate) duplicated: usize,
    pub(crate) out_of_order: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Checker {
    /// Printed on failure, for tests driven by a seeded RNG.
    pub(crate) seed: Option<u64>,
    /// `msgs[side][counter - 1]`.
    msgs: [Vec<Msg>; 2],
    /// Highest counter of the peer's messages each side has read.
    last_read: [u64; 2],
    /// Each side's generation as told by its events (bumped by every `Lost`).
    event_generation: [u64; 2],
    /// Highest `Delivered` per (side, incarnation, generation).
    delivered: HashMap<(usize, u64, u64), u64>,
    /// Every `Lost` seen: who, why, how many messages.
    pub(crate) losses: Vec<(Side, LostReason, usize)>,
    duplicated: usize,
    out_of_order: usize,
    failures: Vec<String>,
}

impl Checker {
    pub(crate) fn fail(&mut self, what: String) {
        self.failures.push(what);
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
        self.msgs[side.idx()].push(Msg {
            incarnation: inc,
            generation,
            seq,
            reads: 0,
            handed_back: 0,
            acked: false,
            orphaned: false,
            destroyed: false,
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
            Some(m) if m.handed_back > 0 => Some("a message already handed back".to_owned()),
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
                self.fail(format!("{} read an undecodable payload", reader.name()));
                continue;
            };
            counters.push(counter);
            if sender != reader.other() {
                self.fail(format!("{} read its own message {counter}", reader.name()));
                continue;
            }
            let last = self.last_read[reader.idx()];
            let Some(m) = self.msg(sender, counter) else {
                self.fail(format!(
                    "{} read message {counter}, never sent",
                    reader.name()
                ));
                continue;
            };
            m.reads += 1;
            if m.reads > 1 {
                self.duplicated += 1;
                self.fail(format!("{} read message {counter} twice", reader.name()));
            } else if counter < last {
                self.out_of_order += 1;
                self.fail(format!(
                    "{} read message {counter} after {last}",
                    reader.name()
                ));
            }
            self.last_read[reader.idx()] = last.max(counter);
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
                for m in &mut self.msgs[i] {
                    if m.incarnation == inc && m.generation == generation && m.seq <= *up_to {
                        m.acked = true;
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
                        m.handed_back += 1;
                        if m.handed_back > 1 {
                            self.duplicated += 1;
                        }
                    }
                }
                self.losses.push((side, *reason, unacked.len()));
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
    pub(crate) fn on_restart(&mut self, side: Side, inc: u64, inbox: &[Bytes]) {
        for data in inbox {
            if let Some((sender, counter)) = decode(data) {
                if let Some(m) = self.msg(sender, counter) {
                    m.destroyed = true;
                }
            }
        }
        for m in &mut self.msgs[side.idx()] {
            if m.incarnation == inc && !m.acked && m.handed_back == 0 {
                m.orphaned = true;
            }
        }
        self.event_generation[side.idx()] = 0;
    }

    pub(crate) fn summary(&self) -> Summary {
        let mut s = Summary {
            duplicated: self.duplicated,
            out_of_order: self.out_of_order,
            ..Summary::default()
        };
        for m in self.msgs.iter().flatten() {
            s.sent += 1;
            s.read += usize::from(m.reads > 0);
            s.handed_back += usize::from(m.handed_back > 0);
            match (m.reads > 0, m.handed_back > 0) {
                (true, true) => s.in_doubt += 1,
                (false, false) if m.orphaned || m.destroyed => s.excused += 1,
                (false, false) => s.lost += 1,
                _ => {}
            }
        }
        s
    }

    /// Panics, with the counts, the seed and the first failures, unless the invariant of `mode`
    /// holds. Meant to be called once nothing is in flight any more.
    pub(crate) fn assert_ok(&self, mode: Mode) -> Summary {
        let s = self.summary();
        let mut failures = self.failures.clone();
        if s.lost > 0 || s.duplicated > 0 || s.out_of_order > 0 {
            failures.push("lost, duplicated or out-of-order messages".into());
        }
        if mode == Mode::Strict && !self.losses.is_empty() {
            failures.push(format!("sessions ended: {:?}", self.losses));
        }
        assert!(
            failures.is_empty(),
            "delivery check failed (seed {:?}): {s:?}\nsessions ended: {:?}\n{}",
            self.seed,
            self.losses,
            failures
                .iter()
                .take(12)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
        s
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
    #[should_panic(expected = "duplicated: 1")]
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
    #[should_panic(expected = "lost: 1")]
    fn flags_a_loss() {
        let mut c = sent(2);
        c.on_read(Side::B, &[payload(Side::A, 2)]);
        c.assert_ok(Mode::G2);
    }

    #[test]
    #[should_panic(expected = "out_of_order: 1")]
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
