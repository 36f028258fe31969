//! The dialing side's decisions, without I/O: whom a dialer serves, what to do with the node
//! that answers a redial, how long to wait before the next attempt, and when to dial fresh
//! connections alongside a link that went silent.
//!
//! A dialer is created by the application's `connect`, which learns the peer's name from the
//! first handshake. From then on it serves that peer's session only: an address can come to
//! belong to another node (a restarted container, a reassigned IP, a proxy pointed elsewhere),
//! and that node must never be attached as the peer, nor stop the dialer from reaching the peer
//! once the address leads back to it.

use std::time::Duration;

/// What a dialer does with the node that answered its connection (its HELLO named it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The peer this dialer serves (or the first answer, which names it): attach.
    Attach,
    /// Another node: refuse the connection (the session is not touched) and keep redialing the
    /// address with backoff, for the peer this dialer serves.
    Refuse,
}

/// One dialer's state: the peer it serves and its backoff.
#[derive(Debug, Clone)]
pub struct Redial {
    serves: Option<String>,
    backoff: Backoff,
}

impl Redial {
    /// A dialer that does not know its peer yet; `initial` and `max` bound the backoff.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Redial {
            serves: None,
            backoff: Backoff::new(initial, max),
        }
    }

    /// A dialer for the peer called `name` (a further connection of an existing dialer).
    pub fn serving(name: &str, initial: Duration, max: Duration) -> Self {
        Redial {
            serves: Some(name.to_owned()),
            backoff: Backoff::new(initial, max),
        }
    }

    /// The peer this dialer serves, once known.
    pub fn serves(&self) -> Option<&str> {
        self.serves.as_deref()
    }

    /// The node called `name` answered: attach it or refuse it. The first answer names the
    /// peer this dialer serves from then on.
    pub fn on_answer(&mut self, name: &str) -> Answer {
        match &self.serves {
            None => {
                self.serves = Some(name.to_owned());
                Answer::Attach
            }
            Some(serves) if serves == name => Answer::Attach,
            Some(_) => Answer::Refuse,
        }
    }

    /// A connection established the session: the next failure is retried quickly again.
    pub fn on_established(&mut self) {
        self.backoff.reset();
    }

    /// How long to wait before the next attempt. `random` is any uniformly drawn value (the
    /// jitter); the core draws none itself.
    pub fn next_delay(&mut self, random: u64) -> Duration {
        self.backoff.next_delay(random)
    }
}

/// Capped exponential backoff with jitter: the first retry is quick, later ones spread out, so
/// many dialers that lost the same peer do not all retry in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// Starts at `initial`, doubles up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            current: initial.min(max),
        }
    }

    /// Back to the initial delay.
    pub fn reset(&mut self) {
        self.current = self.initial.min(self.max);
    }

    /// A delay in [current/2, current], placed by `random` (uniform over `u64`), then doubles
    /// `current` up to the cap.
    pub fn next_delay(&mut self, random: u64) -> Duration {
        let high = self.current;
        self.current = self.current.saturating_mul(2).min(self.max);
        let low = high.checked_div(2).unwrap_or_default();
        let span = high.saturating_sub(low).as_nanos();
        if span == 0 {
            return high;
        }
        // random / 2^64 of the span, in u128 so nothing overflows.
        let offset = (span.saturating_mul(u128::from(random))) >> 64;
        low.saturating_add(Duration::from_nanos(
            u64::try_from(offset).unwrap_or(u64::MAX),
        ))
    }
}

/// How a dialer races fresh connections against a link its session suspects (see
/// [`Session::is_suspect`](super::Session::is_suspect)): one more attempt every `interval`
/// while the link stays suspect, each given up after `connect_timeout` (a SYN dropped while the
/// link was silent would otherwise wait out TCP's own SYN backoff once it returns), at most
/// `max_in_flight` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Race {
    /// Time between attempts.
    pub interval: Duration,
    /// Time one attempt may take to connect.
    pub connect_timeout: Duration,
    /// Most attempts connecting at once.
    pub max_in_flight: usize,
}

impl Default for Race {
    fn default() -> Self {
        Race {
            interval: Duration::from_millis(250),
            connect_timeout: Duration::from_millis(750),
            max_in_flight: 3,
        }
    }
}

impl Race {
    /// Whether to start another attempt now, with `in_flight` connecting.
    pub fn may_start(&self, in_flight: usize) -> bool {
        in_flight < self.max_in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn the_first_answer_names_the_peer_and_others_are_refused() {
        let mut r = Redial::new(MS(50), MS(5000));
        assert_eq!(r.serves(), None);
        assert_eq!(r.on_answer("b"), Answer::Attach);
        assert_eq!(r.serves(), Some("b"));
        assert_eq!(
            r.on_answer("c"),
            Answer::Refuse,
            "another node is never attached"
        );
        assert_eq!(r.serves(), Some("b"), "and does not take over the dialer");
        assert_eq!(
            r.on_answer("b"),
            Answer::Attach,
            "the peer is attached again"
        );
        let mut further = Redial::serving("b", MS(50), MS(5000));
        assert_eq!(further.on_answer("c"), Answer::Refuse);
        assert_eq!(further.on_answer("b"), Answer::Attach);
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_from_the_random_value() {
        let mut b = Backoff::new(MS(100), MS(1000));
        assert_eq!(b.next_delay(0), MS(50), "lowest: half the current delay");
        assert_eq!(b.next_delay(u64::MAX), MS(200) - Duration::from_nanos(1));
        assert_eq!(b.next_delay(1 << 63), MS(300), "the middle of [200, 400]");
        assert_eq!(b.next_delay(0), MS(400));
        for _ in 0..10 {
            assert_eq!(b.next_delay(0), MS(500), "capped");
        }
        b.reset();
        assert_eq!(b.next_delay(0), MS(50));
    }

    #[test]
    fn refusing_keeps_the_backoff_growing_and_establishing_resets_it() {
        let mut r = Redial::serving("b", MS(100), MS(1000));
        assert_eq!(r.next_delay(0), MS(50));
        assert_eq!(r.on_answer("c"), Answer::Refuse);
        assert_eq!(r.next_delay(0), MS(100), "a refused answer is no success");
        assert_eq!(r.on_answer("b"), Answer::Attach);
        r.on_established();
        assert_eq!(r.next_delay(0), MS(50));
    }

    #[test]
    fn a_race_is_capped() {
        let race = Race::default();
        assert!(race.may_start(0));
        assert!(!race.may_start(race.max_in_flight));
    }
}
