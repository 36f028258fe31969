//! The simulated network: connections between node processes, each a pair of byte pipes with
//! its own latency, and the faults: a reset at a random byte (both ends notice it at different
//! times), silence (bytes stop and the connection stays: they arrive after the hole, as TCP's
//! retransmissions would bring them), partitions (silence plus refused dials).

use std::collections::VecDeque;

use bytes::Bytes;
use rand::Rng;
use rand::rngs::StdRng;

/// Virtual milliseconds since the start of the run.
pub(super) type Ms = u64;

/// A node process: node index and incarnation counter (a crashed process's connections never
/// reach its successor).
pub(super) type Proc = (usize, u64);

#[derive(Debug)]
pub(super) struct Conn {
    /// `ends[0]` dialed, `ends[1]` accepted.
    pub(super) ends: [Proc; 2],
    latency: Ms,
    /// `pipes[i]`: bytes written by `ends[i]`, with the time they arrive.
    pipes: [VecDeque<(Ms, Bytes)>; 2],
    /// Until when bytes written now are held back.
    silent_until: Ms,
    /// When each end learns that the connection is gone (reset or closed by the other end).
    pub(super) ends_at: [Option<Ms>; 2],
    /// Each end stopped using it.
    pub(super) gone: [bool; 2],
}

#[derive(Debug, Default)]
pub(super) struct Net {
    pub(super) conns: Vec<Conn>,
    /// Pairs of nodes that cannot reach each other, until the time given.
    partitions: Vec<(usize, usize, Ms)>,
    pub(super) stats: NetStats,
}

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct NetStats {
    pub(super) connections: u64,
    pub(super) refused_dials: u64,
    pub(super) cuts: u64,
    pub(super) silences: u64,
    pub(super) partitions: u64,
    pub(super) bytes: u64,
}

impl Net {
    pub(super) fn partitioned(&self, a: usize, b: usize, now: Ms) -> bool {
        self.partitions
            .iter()
            .any(|&(x, y, until)| until > now && ((x, y) == (a, b) || (x, y) == (b, a)))
    }

    /// A dial from `from` to `to` (whose current process is `to`, if up). Refused by a
    /// partition or a process that is down: the dialer learns it after a round trip.
    pub(super) fn dial(
        &mut self,
        from: Proc,
        to: Option<Proc>,
        now: Ms,
        rng: &mut StdRng,
    ) -> Result<usize, Ms> {
        let latency = rng.random_range(1..=20);
        let Some(to) = to.filter(|to| !self.partitioned(from.0, to.0, now)) else {
            self.stats.refused_dials += 1;
            return Err(now + 2 * latency);
        };
        self.stats.connections += 1;
        self.conns.push(Conn {
            ends: [from, to],
            latency,
            pipes: [VecDeque::new(), VecDeque::new()],
            silent_until: 0,
            ends_at: [None, None],
            gone: [false, false],
        });
        Ok(self.conns.len() - 1)
    }

    pub(super) fn write(&mut self, conn: usize, end: usize, bytes: Bytes, now: Ms) {
        let c = &mut self.conns[conn];
        if bytes.is_empty() || c.ends_at[end].is_some() {
            return;
        }
        self.stats.bytes += bytes.len() as u64;
        let last = c.pipes[end].back().map_or(0, |&(at, _)| at);
        let at = (now + c.latency).max(c.silent_until).max(last);
        c.pipes[end].push_back((at, bytes));
    }

    /// Bytes that reached `end` by `now`.
    pub(super) fn read(&mut self, conn: usize, end: usize, now: Ms, out: &mut Vec<u8>) {
        let pipe = &mut self.conns[conn].pipes[1 - end];
        while pipe.front().is_some_and(|&(at, _)| at <= now) {
            if let Some((_, bytes)) = pipe.pop_front() {
                out.extend_from_slice(&bytes);
            }
        }
    }

    /// Whether `end` has learned that the connection is gone, and has read everything that got
    /// through before.
    pub(super) fn ended(&self, conn: usize, end: usize, now: Ms) -> bool {
        let c = &self.conns[conn];
        c.ends_at[end].is_some_and(|at| at <= now)
            && c.pipes[1 - end].front().is_none_or(|&(at, _)| at > now)
    }

    /// Resets `conn` now: of the bytes in flight each way a random prefix still arrives (cut
    /// at any byte, mid-frame included); each end learns of it after its own delay.
    pub(super) fn cut(&mut self, conn: usize, now: Ms, rng: &mut StdRng) {
        let c = &mut self.conns[conn];
        if c.ends_at.iter().all(Option::is_some) {
            return;
        }
        self.stats.cuts += 1;
        for pipe in &mut c.pipes {
            let total: usize = pipe.iter().map(|(_, b)| b.len()).sum();
            let mut keep = rng.random_range(0..=total);
            pipe.retain_mut(|(_, bytes)| {
                let kept = keep.min(bytes.len());
                keep -= kept;
                bytes.truncate(kept);
                kept > 0
            });
        }
        for end in 0..2 {
            let at = now + rng.random_range(0..=3 * c.latency);
            c.ends_at[end] = Some(c.ends_at[end].map_or(at, |t| t.min(at)));
        }
    }

    /// `end` closes `conn` (or its process died): the other end learns of it after the
    /// latency, once the bytes already written got there.
    pub(super) fn close(&mut self, conn: usize, end: usize, now: Ms) {
        let c = &mut self.conns[conn];
        c.gone[end] = true;
        c.ends_at[end].get_or_insert(now);
        let arrives = c.pipes[end].back().map_or(0, |&(at, _)| at);
        let at = (now + c.latency).max(arrives);
        let other = &mut c.ends_at[1 - end];
        *other = Some(other.map_or(at, |t| t.min(at)));
    }

    /// Bytes written on `conn` from now until `until` arrive only then; the connection stays.
    pub(super) fn silence(&mut self, conn: usize, until: Ms) {
        self.stats.silences += 1;
        let c = &mut self.conns[conn];
        c.silent_until = c.silent_until.max(until);
        for pipe in &mut c.pipes {
            for (at, _) in pipe.iter_mut() {
                *at = (*at).max(until);
            }
        }
    }

    /// `a` and `b` cannot reach each other until `until`: their connections go silent, dials
    /// between them are refused.
    pub(super) fn partition(&mut self, a: usize, b: usize, now: Ms, until: Ms) {
        self.stats.partitions += 1;
        self.partitions.push((a, b, until));
        self.partitions.retain(|p| p.2 > now);
        for i in 0..self.conns.len() {
            let c = &self.conns[i];
            let (x, y) = (c.ends[0].0, c.ends[1].0);
            if ((x, y) == (a, b) || (x, y) == (b, a)) && c.ends_at.iter().any(Option::is_none) {
                self.silence(i, until);
            }
        }
    }

    /// Connections that are still open at some end.
    pub(super) fn open(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.conns.len()).filter(|&i| self.conns[i].gone.iter().any(|g| !g))
    }
}
