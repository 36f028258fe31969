//! What a session counts: plain integers bumped where the protocol makes its decisions
//! (a retransmission, a duplicate, an acknowledgement), and a smoothed round-trip estimate.
//!
//! Counting here, rather than in the driver, keeps one source of truth for every way of running
//! the core (the tokio driver, the simulated tests) and costs an add per message on paths that
//! already touch the same cache lines. Nothing here allocates, locks or reads a clock.

use std::time::{Duration, Instant};

/// Totals of a session over its whole life, across connections and session generations.
/// Every field only grows. Taken with [`Session::counters`](super::Session::counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionCounters {
    /// Messages the application queued.
    pub messages_sent: u64,
    /// Their payload bytes.
    pub bytes_sent: u64,
    /// DATA frames written, retransmissions included.
    pub messages_transmitted: u64,
    /// Their payload bytes.
    pub bytes_transmitted: u64,
    /// DATA frames written again on a new connection because the peer had not received them.
    pub retransmitted: u64,
    /// Messages the peer acknowledged.
    pub messages_acked: u64,
    /// Their payload bytes.
    pub bytes_acked: u64,
    /// New messages accepted into the inbox.
    pub messages_received: u64,
    /// Their payload bytes.
    pub bytes_received: u64,
    /// DATA frames dropped because they had already been received (replays after a resume).
    pub duplicates_dropped: u64,
    /// Messages handed back unacknowledged when a session generation ended.
    pub messages_handed_back: u64,
    /// Their payload bytes.
    pub bytes_handed_back: u64,
    /// Session generations that ended (see [`SessionEvent::Lost`](super::SessionEvent::Lost)).
    pub sessions_lost: u64,
}

/// The sending half's share of [`SessionCounters`]; survives the end of a session generation.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SendCounters {
    pub transmitted: u64,
    pub transmitted_bytes: u64,
    pub retransmitted: u64,
    pub acked: u64,
    pub acked_bytes: u64,
}

/// The receiving half's share of [`SessionCounters`]; survives a session reset.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ReceiveCounters {
    pub received: u64,
    pub received_bytes: u64,
    pub duplicates: u64,
}

/// Round-trip estimate from DATA to the ACK that covers it: one message is timed at a time
/// (the first transmitted while none is being timed), and samples are smoothed as TCP does
/// (7/8 of the old estimate, 1/8 of the new sample).
///
/// A sample includes the peer's acknowledgement delay (up to `Config::ack_delay` while data
/// streams in) and any queueing in front of the message, so under load it is the latency a
/// message sees, not the bare network round trip. No sample spans two connections: the timed
/// message is forgotten whenever the link changes (a message retransmitted on the new link may
/// be timed afresh there).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RttEstimator {
    /// The message being timed and when it was written.
    probe: Option<(u64, Instant)>,
    smoothed: Option<Duration>,
}

impl RttEstimator {
    /// After a transmission whose last DATA frame carried `seq`, at `now`.
    pub fn on_transmit(&mut self, seq: u64, now: Instant) {
        if self.probe.is_none() {
            self.probe = Some((seq, now));
        }
    }

    /// After an acknowledgement of everything up to `up_to`, at `now`.
    pub fn on_ack(&mut self, up_to: u64, now: Instant) {
        let Some((seq, at)) = self.probe else {
            return;
        };
        if up_to < seq {
            return;
        }
        self.probe = None;
        let sample = now.saturating_duration_since(at);
        self.smoothed = Some(match self.smoothed {
            None => sample,
            Some(old) => old
                .checked_mul(7)
                .and_then(|d| d.checked_add(sample))
                .and_then(|d| d.checked_div(8))
                .unwrap_or(sample),
        });
    }

    /// The link changed: an acknowledgement on the new one says nothing about when the timed
    /// message was written.
    pub fn forget_probe(&mut self) {
        self.probe = None;
    }

    /// The smoothed estimate, once a message has been timed.
    pub fn estimate(&self) -> Option<Duration> {
        self.smoothed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_times_one_message_at_a_time_and_smooths() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut rtt = RttEstimator::default();
        assert_eq!(rtt.estimate(), None);
        rtt.on_transmit(1, t0);
        rtt.on_transmit(2, t0 + ms(5)); // 1 is being timed
        rtt.on_ack(0, t0 + ms(6));
        assert_eq!(
            rtt.estimate(),
            None,
            "an ack below the timed message is no sample"
        );
        rtt.on_ack(2, t0 + ms(8));
        assert_eq!(rtt.estimate(), Some(ms(8)), "first sample taken as is");
        rtt.on_transmit(3, t0 + ms(10));
        rtt.on_ack(3, t0 + ms(26));
        assert_eq!(rtt.estimate(), Some(ms(9)), "(7 * 8 + 16) / 8");
        rtt.on_transmit(4, t0 + ms(30));
        rtt.forget_probe();
        rtt.on_ack(4, t0 + ms(500));
        assert_eq!(
            rtt.estimate(),
            Some(ms(9)),
            "a forgotten probe gives no sample"
        );
    }
}
