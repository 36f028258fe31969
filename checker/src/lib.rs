//! The one delivery checker of networkio's tests: the protocol core's tests, the node tests,
//! the chaos tests, the CLI tests and the whole-node simulation all record into it.
//!
//! A test names each message by its *stream* (sender name, receiver name) and its index in that
//! stream (0, 1, 2, ... in the order the sender's application queued them; [`Checker::send`]
//! hands them out). It then records what became of each one: read by the receiving application
//! ([`Checker::read`]), acknowledged to the sender ([`Checker::acked`]), handed back to the sender
//! when its session ended ([`Checker::handed_back`]), or destroyed by a process crash
//! ([`Checker::excuse`]).
//!
//! What it reports, with the stream and index of every case:
//! - **lost**: sent, never read, never handed back, not excused by a crash;
//! - **duplicated**: read twice, or handed back twice;
//! - **out of order**: read after a later message of the same stream;
//! - **foreign**: read but never sent, attributed to the wrong sender, or undecodable;
//! - **both**: acknowledged to its sender and also handed back (the sender cannot tell what
//!   happened to it);
//! - **unsettled** (on request, [`Checker::check_settled`]): neither acknowledged nor handed
//!   back once every session has settled.
//!
//! One outcome no protocol can avoid is counted, not failed, in [`Checker::assert_accounted`]:
//! *in doubt*, read by the receiver and handed back to the sender because the session ended
//! before the acknowledgement arrived. [`Checker::assert_exactly_once_in_order`] allows no
//! hand-back and no ended session at all.
//!
//! Every failure message carries the seed ([`Checker::with_seed`]) so a random run can be
//! repeated.

use std::collections::BTreeMap;
use std::fmt;

/// What became of one message.
#[derive(Debug, Clone, Copy, Default)]
struct Fate {
    reads: u32,
    acked: bool,
    handed_back: u32,
    excused: bool,
}

#[derive(Debug, Default)]
struct Stream {
    msgs: Vec<Fate>,
    /// The highest index read so far.
    highest_read: Option<u64>,
}

/// Counts over every stream; what failure messages print.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Messages sent.
    pub sent: u64,
    /// Messages read at least once.
    pub read: u64,
    /// Messages acknowledged to their sender.
    pub acked: u64,
    /// Messages handed back at least once.
    pub handed_back: u64,
    /// Read and handed back (allowed by [`Checker::assert_accounted`] only).
    pub in_doubt: u64,
    /// Neither read nor handed back, destroyed by a crash.
    pub excused: u64,
    /// Neither read, handed back nor excused.
    pub lost: u64,
    /// Extra reads plus extra hand-backs.
    pub duplicated: u64,
    /// Reads of a message after a later one of its stream.
    pub out_of_order: u64,
    /// Reads of messages never sent, from the wrong sender, or undecodable.
    pub foreign: u64,
    /// Messages both acknowledged and handed back.
    pub both: u64,
    /// Sessions the test reported as ended ([`Checker::session_lost`]).
    pub sessions_lost: u64,
}

/// The ledger of every stream's messages; see the crate documentation.
#[derive(Debug, Default)]
pub struct Checker {
    seed: Option<u64>,
    streams: BTreeMap<(String, String), Stream>,
    reads: u64,
    duplicated: u64,
    out_of_order: u64,
    foreign: u64,
    both: u64,
    sessions_lost: Vec<String>,
    failures: Vec<String>,
}

/// At most this many failures are printed.
const SHOWN: usize = 16;

impl Checker {
    /// A checker whose failure messages name `seed`.
    pub fn with_seed(seed: u64) -> Self {
        Checker {
            seed: Some(seed),
            ..Checker::default()
        }
    }

    /// Sets the seed printed on failure.
    pub fn set_seed(&mut self, seed: u64) {
        self.seed = Some(seed);
    }

    /// The seed printed on failure.
    pub fn seed(&self) -> Option<u64> {
        self.seed
    }

    /// Records the next message of the `from -> to` stream as sent; returns its index.
    pub fn send(&mut self, from: &str, to: &str) -> u64 {
        let stream = self.stream(from, to);
        stream.msgs.push(Fate::default());
        stream.msgs.len() as u64 - 1
    }

    /// How many messages of `from -> to` were sent (the next index).
    pub fn sent(&self, from: &str, to: &str) -> u64 {
        self.streams
            .get(&(from.to_owned(), to.to_owned()))
            .map_or(0, |s| s.msgs.len() as u64)
    }

    fn stream(&mut self, from: &str, to: &str) -> &mut Stream {
        self.streams
            .entry((from.to_owned(), to.to_owned()))
            .or_default()
    }

    fn fate(&mut self, from: &str, to: &str, index: u64) -> Option<&mut Fate> {
        let i = usize::try_from(index).ok()?;
        self.streams
            .get_mut(&(from.to_owned(), to.to_owned()))?
            .msgs
            .get_mut(i)
    }

    /// Records a failure the caller detected itself (a protocol invariant, say).
    pub fn fail(&mut self, what: impl fmt::Display) {
        self.failures.push(what.to_string());
    }

    /// Records a read of something that is no test message of this checker (undecodable).
    pub fn foreign(&mut self, what: impl fmt::Display) {
        self.foreign += 1;
        self.fail(format_args!("foreign: {what}"));
    }

    /// Records a session that ended; a failure for [`Checker::assert_exactly_once_in_order`].
    pub fn session_lost(&mut self, what: impl fmt::Display) {
        self.sessions_lost.push(what.to_string());
    }

    /// The application of `to` read message `index` of the `from -> to` stream.
    pub fn read(&mut self, from: &str, to: &str, index: u64) {
        self.reads += 1;
        let Some(fate) = self.fate(from, to, index) else {
            return self.foreign(format_args!("{to} read {from}->{to} #{index}, never sent"));
        };
        fate.reads += 1;
        let reads = fate.reads;
        let stream = self.stream(from, to);
        let highest = stream.highest_read;
        stream.highest_read = Some(highest.map_or(index, |h| h.max(index)));
        if reads > 1 {
            self.duplicated += 1;
            self.fail(format_args!(
                "duplicated: {to} read {from}->{to} #{index} again"
            ));
        } else if let Some(h) = highest.filter(|&h| h > index) {
            self.out_of_order += 1;
            self.fail(format_args!(
                "out of order: {to} read {from}->{to} #{index} after #{h}"
            ));
        }
    }

    /// Like [`Checker::read`], for an application that was told the message came from `peer`:
    /// a message of another sender is foreign.
    pub fn read_from(&mut self, peer: &str, from: &str, to: &str, index: u64) {
        if peer != from {
            self.reads += 1;
            return self.foreign(format_args!(
                "{to} read {from}->{to} #{index} as coming from {peer}"
            ));
        }
        self.read(from, to, index);
    }

    /// The sender of `from -> to` learned that message `index` was delivered.
    pub fn acked(&mut self, from: &str, to: &str, index: u64) {
        let Some(fate) = self.fate(from, to, index) else {
            return self.fail(format_args!(
                "{from} told {from}->{to} #{index} delivered, never sent"
            ));
        };
        fate.acked = true;
        if fate.handed_back > 0 {
            self.both += 1;
            self.fail(format_args!(
                "both: {from}->{to} #{index} handed back, then acknowledged"
            ));
        }
    }

    /// Message `index` of `from -> to` was handed back to its sender's application.
    pub fn handed_back(&mut self, from: &str, to: &str, index: u64) {
        let Some(fate) = self.fate(from, to, index) else {
            return self.fail(format_args!(
                "{from} got {from}->{to} #{index} back, never sent"
            ));
        };
        fate.handed_back += 1;
        let (count, acked) = (fate.handed_back, fate.acked);
        if count > 1 {
            self.duplicated += 1;
            self.fail(format_args!(
                "duplicated: {from}->{to} #{index} handed back again"
            ));
        }
        if acked {
            self.both += 1;
            self.fail(format_args!(
                "both: {from}->{to} #{index} acknowledged, then handed back"
            ));
        }
    }

    /// Message `index` of `from -> to` was destroyed by a crash (unread in the receiver's inbox,
    /// or unacknowledged in the crashed sender): not lost if never read.
    pub fn excuse(&mut self, from: &str, to: &str, index: u64) {
        if let Some(fate) = self.fate(from, to, index) {
            fate.excused = true;
        }
    }

    /// The sender `from` crashed: every message it sent that is neither acknowledged nor handed
    /// back is excused (if never read).
    pub fn sender_crashed(&mut self, from: &str) {
        for ((f, _), stream) in &mut self.streams {
            if f == from {
                for fate in &mut stream.msgs {
                    if !fate.acked && fate.handed_back == 0 {
                        fate.excused = true;
                    }
                }
            }
        }
    }

    /// Records a failure for every message whose sender never learned its fate: neither
    /// acknowledged nor handed back, and not excused by a crash. For the end of a run in which
    /// every surviving session has settled (nothing unacknowledged).
    pub fn check_settled(&mut self) {
        let mut unsettled = Vec::new();
        for ((from, to), stream) in &self.streams {
            for (index, f) in stream.msgs.iter().enumerate() {
                if !f.acked && f.handed_back == 0 && !f.excused {
                    unsettled.push(format!(
                        "unsettled: {from}->{to} #{index} neither acknowledged nor handed back"
                    ));
                }
            }
        }
        self.failures.extend(unsettled);
    }

    /// How many reads were recorded (including duplicates and foreign ones).
    pub fn reads(&self) -> u64 {
        self.reads
    }

    /// Whether every message sent has been read.
    pub fn complete(&self) -> bool {
        self.streams
            .values()
            .all(|s| s.msgs.iter().all(|f| f.reads > 0))
    }

    /// Every message's fate, counted.
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            duplicated: self.duplicated,
            out_of_order: self.out_of_order,
            foreign: self.foreign,
            both: self.both,
            sessions_lost: self.sessions_lost.len() as u64,
            ..Summary::default()
        };
        for f in self.streams.values().flat_map(|s| &s.msgs) {
            s.sent += 1;
            s.read += u64::from(f.reads > 0);
            s.acked += u64::from(f.acked);
            s.handed_back += u64::from(f.handed_back > 0);
            match (f.reads > 0, f.handed_back > 0) {
                (true, true) => s.in_doubt += 1,
                (false, false) if f.excused => s.excused += 1,
                (false, false) => s.lost += 1,
                _ => {}
            }
        }
        s
    }

    /// The lost messages, as `from->to #index` ranges, for failure messages.
    fn lost_detail(&self) -> Vec<String> {
        let mut out = Vec::new();
        for ((from, to), stream) in &self.streams {
            let mut run: Option<(usize, usize)> = None;
            let flush = |run: (usize, usize), out: &mut Vec<String>| {
                out.push(match run {
                    (a, b) if a == b => format!("lost: {from}->{to} #{a}"),
                    (a, b) => format!("lost: {from}->{to} #{a}..=#{b}"),
                });
            };
            for (i, f) in stream.msgs.iter().enumerate() {
                let lost = f.reads == 0 && f.handed_back == 0 && !f.excused;
                run = match (run, lost) {
                    (Some((a, b)), true) if b + 1 == i => Some((a, i)),
                    (Some(r), true) => {
                        flush(r, &mut out);
                        Some((i, i))
                    }
                    (None, true) => Some((i, i)),
                    (r, false) => {
                        if let Some(r) = r {
                            flush(r, &mut out);
                        }
                        None
                    }
                };
            }
            if let Some(r) = run {
                flush(r, &mut out);
            }
        }
        out
    }

    fn check(&self, strict: bool) -> Result<Summary, String> {
        let s = self.summary();
        let mut failures = self.failures.clone();
        failures.extend(self.lost_detail());
        if strict {
            if s.handed_back > 0 {
                failures.push(format!("{} messages handed back", s.handed_back));
            }
            failures.extend(
                self.sessions_lost
                    .iter()
                    .map(|what| format!("session lost: {what}")),
            );
        }
        if failures.is_empty() {
            return Ok(s);
        }
        let shown = failures.len().min(SHOWN);
        Err(format!(
            "delivery check failed (seed {}): {s:?}\n{}{}",
            self.seed.map_or("none".to_owned(), |s| s.to_string()),
            failures[..shown].join("\n"),
            if failures.len() > shown {
                format!("\n... and {} more", failures.len() - shown)
            } else {
                String::new()
            }
        ))
    }

    /// The failures so far as one message, or the summary if there are none, under the rules
    /// of [`Checker::assert_accounted`].
    pub fn verdict(&self) -> Result<Summary, String> {
        self.check(false)
    }

    /// Panics, printing the seed and every kind of failure, unless every message was read once,
    /// in order, by the right receiver, and no message was handed back and no session ended.
    /// Call once nothing is in flight any more.
    #[track_caller]
    pub fn assert_exactly_once_in_order(&self) -> Summary {
        self.check(true).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Panics unless every message is accounted for: read once and in order, or handed back
    /// once, or destroyed by a crash; none acknowledged and handed back; nothing foreign. Reads
    /// of messages also handed back are counted as in doubt.
    #[track_caller]
    pub fn assert_accounted(&self) -> Summary {
        self.check(false).unwrap_or_else(|e| panic!("{e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(n: u64) -> Checker {
        let mut c = Checker::with_seed(42);
        for _ in 0..n {
            c.send("a", "b");
        }
        c
    }

    #[test]
    fn accepts_a_clean_run() {
        let mut c = sent(3);
        for i in 0..3 {
            c.read("a", "b", i);
        }
        assert!(c.complete());
        assert_eq!(c.assert_exactly_once_in_order().read, 3);
    }

    #[test]
    #[should_panic(expected = "duplicated: b read a->b #0 again")]
    fn flags_a_duplicate() {
        let mut c = sent(2);
        for i in [0, 0, 1] {
            c.read("a", "b", i);
        }
        c.assert_accounted();
    }

    #[test]
    #[should_panic(expected = "lost: a->b #1..=#2")]
    fn flags_a_loss_with_its_range() {
        let mut c = sent(4);
        c.read("a", "b", 0);
        c.read("a", "b", 3);
        c.assert_accounted();
    }

    #[test]
    #[should_panic(expected = "out of order: b read a->b #0 after #1")]
    fn flags_reordering() {
        let mut c = sent(2);
        c.read("a", "b", 1);
        c.read("a", "b", 0);
        c.assert_accounted();
    }

    #[test]
    #[should_panic(expected = "foreign: b read c->b #0 as coming from a")]
    fn flags_a_misattributed_message() {
        let mut c = sent(1);
        c.send("c", "b");
        c.read("a", "b", 0);
        c.read_from("a", "c", "b", 0);
        c.assert_accounted();
    }

    #[test]
    #[should_panic(expected = "never sent")]
    fn flags_a_message_never_sent() {
        let mut c = sent(1);
        c.read("a", "b", 7);
        c.assert_accounted();
    }

    #[test]
    #[should_panic(expected = "both: a->b #0 acknowledged, then handed back")]
    fn flags_handing_back_an_acknowledged_message() {
        let mut c = sent(1);
        c.read("a", "b", 0);
        c.acked("a", "b", 0);
        c.handed_back("a", "b", 0);
        c.assert_accounted();
    }

    #[test]
    #[should_panic(expected = "unsettled: a->b #1 neither acknowledged nor handed back")]
    fn flags_a_message_whose_fate_its_sender_never_learned() {
        let mut c = sent(3);
        c.read("a", "b", 0);
        c.read("a", "b", 1);
        c.acked("a", "b", 0);
        c.handed_back("a", "b", 2);
        c.check_settled();
        c.assert_accounted();
    }

    #[test]
    #[should_panic(expected = "(seed 42)")]
    fn prints_the_seed() {
        sent(1).assert_accounted();
    }

    #[test]
    fn a_hand_back_or_a_crash_accounts_for_a_message_but_not_strictly() {
        let mut c = sent(3);
        c.read("a", "b", 0);
        c.handed_back("a", "b", 1);
        c.excuse("a", "b", 2);
        let s = c.assert_accounted();
        assert_eq!((s.handed_back, s.excused, s.lost), (1, 1, 0));
        assert!(c.check(true).is_err());
    }

    #[test]
    fn in_doubt_is_counted_not_failed() {
        let mut c = sent(1);
        c.read("a", "b", 0);
        c.handed_back("a", "b", 0);
        assert_eq!(c.assert_accounted().in_doubt, 1);
    }

    #[test]
    #[should_panic(expected = "session lost: a restarted")]
    fn strict_mode_fails_on_an_ended_session() {
        let mut c = sent(1);
        c.read("a", "b", 0);
        c.session_lost("a restarted");
        c.assert_exactly_once_in_order();
    }
}
