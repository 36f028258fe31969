//! The node-wide inbox budget: how many payload bytes all of a node's inboxes may hold together,
//! received or promised.
//!
//! A session may only grant its peer credit (§7.1 of the protocol) for bytes it holds a part of
//! the budget for: everything it has received and not yet handed to the application, plus every
//! byte of credit it granted and the peer has not used yet, since the peer may use it at any
//! moment and the receiver must then accept the data. So the sum of every inbox never exceeds the
//! budget, whatever the peers do and however slowly the application reads.
//!
//! **How it is shared.** The budget is split in two halves:
//! - a *guaranteed* part: every session may always hold `total / 2 / max_sessions` bytes, however
//!   full the rest is. One peer, or many, flooding a node whose application does not read them
//!   cannot stop another peer from sending: it always has that much credit (small messages get
//!   through, slowly), and as the application reads, more.
//! - a *shared* part, the rest: a session takes from it what it asks for (see
//!   [`Inbound::refresh_budget`](super::inbound::Inbound::refresh_budget): the largest message
//!   at first, doubling while the peer uses it, up to its own inbox limit), no more than its
//!   *fair share*, the shared part divided by the sessions holding or waiting for some of it.
//!   A session above its share (it took more while it was alone) grants nothing more, and gives
//!   back what it holds beyond its share as soon as that is neither in its inbox nor granted
//!   (as the application reads it), so the bytes go to the sessions waiting for them.
//!
//! Credit once granted cannot be taken back (the peer may be sending into it), so a peer that was
//! granted credit and sends nothing keeps its part until it uses it or its connection ends
//! (credit dies with the connection it was granted on).
//!
//! **Waking.** A session that wanted more than the shared part had left is *waiting*: whenever
//! bytes are given back while any session waits, the budget calls its `on_free` callback, so
//! that the driver can wake a waiting connection to grant what it can now take (otherwise a
//! sender held back by a full budget would never hear that it freed). The callback is meant to
//! wake one waiting session, not all: a session that takes bytes and leaves some while others
//! still wait calls it again, passing the turn on. With thousands of sessions waiting, one
//! release then costs one wake-up, not thousands.
//!
//! **Cost.** Nothing is counted per message: a session's inbox bytes are its own. The budget is
//! touched (a few atomic operations, never a lock) when a session computes a grant.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A node-wide budget of inbox bytes, shared by its sessions through [`Reservation`]s.
pub struct InboxBudget {
    total: usize,
    /// Bytes every session may always hold.
    guaranteed: usize,
    /// The part shared on demand: `total - guaranteed * max_sessions`.
    shared: usize,
    /// Shared bytes held by sessions.
    used: AtomicUsize,
    /// Sessions holding shared bytes or waiting for some.
    active: AtomicUsize,
    /// Sessions that wanted more than was left.
    waiting: AtomicUsize,
    on_free: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for InboxBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboxBudget")
            .field("total", &self.total)
            .field("guaranteed", &self.guaranteed)
            .field("shared_in_use", &self.shared_in_use())
            .field("waiting", &self.waiting.load(Ordering::Relaxed))
            .finish()
    }
}

impl InboxBudget {
    /// A budget of `total` bytes for at most `max_sessions` sessions at a time. `on_free` is
    /// called (from whichever session gives bytes back) when bytes freed while a session waits.
    pub fn new(
        total: usize,
        max_sessions: usize,
        on_free: impl Fn() + Send + Sync + 'static,
    ) -> Arc<Self> {
        let guaranteed = Self::guarantee_for(total, max_sessions);
        Arc::new(InboxBudget {
            total,
            guaranteed,
            shared: total.saturating_sub(guaranteed.saturating_mul(max_sessions)),
            used: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            on_free: Box::new(on_free),
        })
    }

    /// The bytes every session may always hold, for a budget of `total` over `max_sessions`:
    /// half the budget, divided evenly.
    pub fn guarantee_for(total: usize, max_sessions: usize) -> usize {
        (total / 2).checked_div(max_sessions).unwrap_or(0)
    }

    /// The whole budget, in bytes.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes every session may always hold.
    pub fn guaranteed(&self) -> usize {
        self.guaranteed
    }

    /// Bytes of the shared part (the budget less the guaranteed bytes of every session).
    pub fn shared(&self) -> usize {
        self.shared
    }

    /// Bytes of the shared part currently held by sessions.
    pub fn shared_in_use(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Sessions currently waiting for shared bytes.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Takes up to `want` shared bytes; returns how many it got.
    fn acquire(&self, want: usize) -> usize {
        let mut got = 0;
        let _ = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                got = want.min(self.shared.saturating_sub(used));
                (got > 0).then(|| used.saturating_add(got))
            });
        got
    }

    fn has_free(&self) -> bool {
        self.used.load(Ordering::SeqCst) < self.shared
    }

    /// Gives `n` shared bytes back, and tells the waiting sessions.
    fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        let _ = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                Some(used.saturating_sub(n))
            });
        // SeqCst on both sides: a session that marks itself waiting and then looks at `used`
        // again, and this release, cannot both miss each other.
        if self.waiting.load(Ordering::SeqCst) > 0 {
            (self.on_free)();
        }
    }
}

/// One session's part of an [`InboxBudget`] (or no limit at all, without a budget).
#[derive(Debug, Default)]
pub struct Reservation {
    budget: Option<Arc<InboxBudget>>,
    /// Shared bytes held, beyond the guaranteed part.
    held: usize,
    /// Counted in the budget's `active`.
    active: bool,
    /// Counted in the budget's `waiting`.
    waiting: bool,
}

impl Reservation {
    /// A part of `budget`, holding only the guaranteed bytes for now.
    pub fn new(budget: Arc<InboxBudget>) -> Self {
        Reservation {
            budget: Some(budget),
            ..Default::default()
        }
    }

    /// Bytes the session may have received-and-unread plus granted-and-unused: `usize::MAX`
    /// without a budget.
    pub fn allowance(&self) -> usize {
        match &self.budget {
            None => usize::MAX,
            Some(b) => b.guaranteed.saturating_add(self.held),
        }
    }

    /// Whether the session wanted more of the budget than was left (its connection should be
    /// woken when the budget frees).
    pub fn waiting(&self) -> bool {
        self.waiting
    }

    /// Moves the reservation towards what the session should hold: `want` bytes (at most its
    /// own inbox limit) within its fair share while it has a connection (`linked`), nothing
    /// beyond the guaranteed part otherwise, and never less than `committed` (bytes in its inbox
    /// plus credit granted and unused).
    pub fn refresh(&mut self, want: usize, committed: usize, linked: bool) {
        // Taken out and put back rather than cloned: no reference count per grant.
        let Some(budget) = self.budget.take() else {
            return;
        };
        self.settle(&budget, want, committed, linked);
        self.budget = Some(budget);
    }

    fn settle(&mut self, budget: &InboxBudget, want: usize, committed: usize, linked: bool) {
        let floor = committed.saturating_sub(budget.guaranteed);
        let wanted = if linked {
            want.saturating_sub(budget.guaranteed)
        } else {
            0
        };
        let others = budget
            .active
            .load(Ordering::Relaxed)
            .saturating_sub(usize::from(self.active));
        let share = budget
            .shared
            .checked_div(others.saturating_add(1))
            .unwrap_or(0);
        let target = wanted.min(share).max(floor);
        if self.held > target {
            let excess = self.held.saturating_sub(target);
            self.held = target;
            self.set_waiting(budget, false);
            self.set_active(budget);
            budget.release(excess);
            return;
        }
        let before = self.held;
        if self.held < target {
            self.held = self
                .held
                .saturating_add(budget.acquire(target.saturating_sub(self.held)));
            if self.held < target {
                // Marked before looking again, so a release in between is not missed.
                self.set_waiting(budget, true);
                self.held = self
                    .held
                    .saturating_add(budget.acquire(target.saturating_sub(self.held)));
            }
        }
        self.set_waiting(budget, self.held < target);
        self.set_active(budget);
        if self.held > before && !self.waiting && budget.has_free() && budget.waiting() > 0 {
            // Woken by a release, this session took what it wanted and left some: the next
            // waiting session's turn (waking them one at a time, not all at once).
            (budget.on_free)();
        }
    }

    fn set_waiting(&mut self, budget: &InboxBudget, waiting: bool) {
        if self.waiting != waiting {
            self.waiting = waiting;
            if waiting {
                budget.waiting.fetch_add(1, Ordering::SeqCst);
            } else {
                budget.waiting.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    fn set_active(&mut self, budget: &InboxBudget) {
        let active = self.held > 0 || self.waiting;
        if self.active != active {
            self.active = active;
            if active {
                budget.active.fetch_add(1, Ordering::Relaxed);
            } else {
                budget.active.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(budget) = self.budget.take() {
            self.set_waiting(&budget, false);
            let held = std::mem::take(&mut self.held);
            self.set_active(&budget);
            budget.release(held);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    fn budget(total: usize, sessions: usize) -> (Arc<InboxBudget>, Arc<AtomicU32>) {
        let freed = Arc::new(AtomicU32::new(0));
        let f = freed.clone();
        let b = InboxBudget::new(total, sessions, move || {
            f.fetch_add(1, Ordering::SeqCst);
        });
        (b, freed)
    }

    #[test]
    fn half_is_guaranteed_and_the_rest_goes_by_fair_share() {
        let (b, _) = budget(1000, 5);
        assert_eq!(b.guaranteed(), 100);
        let mut a = Reservation::new(b.clone());
        assert_eq!(a.allowance(), 100);
        // Alone: the whole shared part, within its own limit.
        a.refresh(10_000, 0, true);
        assert_eq!(a.allowance(), 600);
        // A second session finds nothing left: it waits, with its guaranteed bytes.
        let mut c = Reservation::new(b.clone());
        c.refresh(10_000, 0, true);
        assert_eq!(c.allowance(), 100);
        assert!(c.waiting());
        // The first is now above its share (250): it gives back what it has not committed.
        a.refresh(10_000, 300, true);
        assert_eq!(a.allowance(), 350);
        c.refresh(10_000, 0, true);
        assert_eq!(c.allowance(), 350);
        assert!(!c.waiting());
        assert_eq!(b.shared_in_use(), 500);
    }

    #[test]
    fn committed_bytes_are_never_given_back() {
        let (b, _) = budget(1000, 5);
        let mut a = Reservation::new(b.clone());
        a.refresh(10_000, 0, true);
        let mut c = Reservation::new(b.clone());
        c.refresh(10_000, 0, true);
        // Everything it holds is in its inbox or granted: nothing to give back, share or not.
        a.refresh(10_000, 600, true);
        assert_eq!(a.allowance(), 600);
        // Without a connection it keeps only what is committed.
        a.refresh(10_000, 150, false);
        assert_eq!(a.allowance(), 150);
        a.refresh(10_000, 0, false);
        assert_eq!(a.allowance(), 100);
        assert_eq!(b.shared_in_use(), 0, "c waits, but took nothing since");
    }

    #[test]
    fn freeing_while_a_session_waits_calls_on_free_and_dropping_gives_everything_back() {
        let (b, freed) = budget(1000, 5);
        let mut a = Reservation::new(b.clone());
        a.refresh(10_000, 0, true);
        a.refresh(10_000, 0, false); // no one waits: no call
        assert_eq!(freed.load(Ordering::SeqCst), 0);
        a.refresh(10_000, 0, true);
        let mut c = Reservation::new(b.clone());
        c.refresh(10_000, 0, true);
        assert_eq!(b.waiting(), 1);
        drop(a);
        assert_eq!(freed.load(Ordering::SeqCst), 1);
        assert_eq!(b.shared_in_use(), 0);
        c.refresh(10_000, 0, true);
        assert_eq!(c.allowance(), 600);
        assert_eq!(b.waiting(), 0);
        drop(c);
        assert_eq!(b.shared_in_use(), 0);
        assert_eq!(b.active.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_session_never_takes_beyond_its_own_limit() {
        let (b, _) = budget(1000, 5);
        let mut a = Reservation::new(b.clone());
        a.refresh(250, 0, true);
        assert_eq!(a.allowance(), 250);
        let unlimited = Reservation::default();
        assert_eq!(unlimited.allowance(), usize::MAX);
    }
}
