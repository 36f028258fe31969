//! Sessions ending or links dying: peer restarts, expiry, shutdown, heartbeats, idle and
//! handshake timeouts.

use std::time::Duration;

use bytes::Bytes;

use super::{Mode, Pair, Side, established, test_config};
use crate::proto::frame::{self, Frame};
use crate::proto::session::LostReason;
use crate::proto::{CloseCode, LinkError, SessionEvent};

const A: Side = Side::A;
const B: Side = Side::B;
const MS: Duration = Duration::from_millis(1);

/// A `Lost` event's fields.
struct Loss<'a> {
    generation: u64,
    unacked: &'a [Bytes],
    reason: LostReason,
    acked: u64,
    messages_before: u64,
    read_through: u64,
}

/// The `Lost` events among `events`.
fn lost(events: &[SessionEvent]) -> impl Iterator<Item = Loss<'_>> {
    events.iter().filter_map(|e| match e {
        SessionEvent::Lost {
            generation,
            unacked,
            reason,
            acked,
            messages_before,
            read_through,
        } => Some(Loss {
            generation: *generation,
            unacked,
            reason: *reason,
            acked: *acked,
            messages_before: *messages_before,
            read_through: *read_through,
        }),
        _ => None,
    })
}

/// The `Lost` events among `events`, as (generation, counters handed back, reason).
fn losses(events: &[SessionEvent]) -> Vec<(u64, Vec<u64>, LostReason)> {
    lost(events)
        .map(|loss| {
            let counters = loss
                .unacked
                .iter()
                .map(|p| u64::from_be_bytes(p[1..9].try_into().unwrap()))
                .collect();
            (loss.generation, counters, loss.reason)
        })
        .collect()
}

#[test]
fn peer_restart_hands_back_exactly_the_unacked() {
    let mut pair = Pair::established();
    pair.send(A, 4);
    pair.send(B, 2);
    pair.steps(3);
    assert_eq!(pair.read_all(B), [1, 2, 3, 4]);
    assert_eq!(pair.session(A).acked(), 4);
    // b's emptied inbox reopens a's window.
    pair.step();
    // 5..=7 reach b's inbox but its ACK never leaves; 8 and 9 never leave a.
    pair.send(A, 3);
    pair.half_step(A);
    assert_eq!(pair.session(B).inbox_len(), 3);
    pair.send(A, 2);
    pair.restart(B);
    pair.take_events(A);

    pair.connect();
    pair.step();
    let events = pair.take_events(A);
    assert_eq!(
        losses(&events),
        [(0, vec![5, 6, 7, 8, 9], LostReason::PeerRestarted)]
    );
    assert_eq!(established(&events), [false]);
    assert_eq!(established(&pair.take_events(B)), [false]);
    assert_eq!(pair.session(A).generation(), 1);
    assert_eq!(pair.session(A).peer_incarnation(), pair.incarnation(B));
    // What a had received from the old b stays readable.
    assert_eq!(pair.read_all(A), [1, 2]);

    // The new session numbers from 1; an ACK from the old numbering is now a violation.
    assert_eq!(pair.send_one(A), Ok(1));
    assert_eq!(pair.send_one(B), Ok(1));
    pair.take_frames(A);
    pair.steps(2);
    let seqs: Vec<u64> = pair
        .take_frames(A)
        .iter()
        .filter_map(|f| match f {
            Frame::Data { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, [1]);
    assert_eq!(pair.read_all(B), [10]);
    let now = pair.now();
    assert!(matches!(
        pair.session_mut(A).handle_frame(
            now,
            Frame::Ack {
                up_to: 4,
                window_messages: 0,
                window_bytes: 0,
            },
        ),
        Err(LinkError::Violation(_))
    ));
    pair.cut();
    let summary = pair.assert_delivery(Mode::G2);
    assert_eq!(
        (summary.handed_back, summary.in_doubt, summary.excused),
        (5, 0, 0)
    );
}

#[test]
fn a_restart_after_reading_leaves_the_unacked_in_doubt() {
    let mut pair = Pair::established();
    pair.send(A, 3);
    pair.half_step(A);
    // b's application reads them, then b crashes before its ACK is written.
    assert_eq!(pair.read_all(B), [1, 2, 3]);
    pair.restart(B);
    pair.connect();
    pair.step();
    assert_eq!(
        losses(&pair.take_events(A)),
        [(0, vec![1, 2, 3], LostReason::PeerRestarted)]
    );
    let summary = pair.assert_delivery(Mode::G2);
    assert_eq!(
        summary.in_doubt, 3,
        "read by b and handed back to a: a cannot know"
    );
}

#[test]
fn a_sender_restart_orphans_its_unacked_and_keeps_what_arrived() {
    let mut pair = Pair::established();
    pair.send(A, 4);
    pair.half_step(A);
    pair.send(A, 2);
    pair.restart(A);
    pair.connect();
    pair.step();
    assert_eq!(
        losses(&pair.take_events(B)),
        [(0, vec![], LostReason::PeerRestarted)]
    );
    assert_eq!(pair.read_all(B), [1, 2, 3, 4]);
    let summary = pair.assert_delivery(Mode::G2);
    assert_eq!(summary.excused, 2, "5 and 6 died with a's process");
}

#[test]
fn expiry_hands_back_and_the_peer_that_held_on_sees_peer_forgot() {
    let mut pair = Pair::established();
    pair.send(A, 3);
    pair.steps(3);
    pair.read_all(B);
    pair.cut();
    pair.take_events(B);
    let detached_at = pair.now();
    pair.send(A, 2);
    pair.send(B, 1);
    let expiry = pair.config.session_expiry;
    assert_eq!(pair.session(A).poll_timeout(), Some(detached_at + expiry));

    pair.advance(expiry - MS);
    pair.fire_timers(A).unwrap();
    assert_eq!(losses(&pair.take_events(A)), []);
    pair.advance(MS);
    pair.fire_timers(A).unwrap();
    assert_eq!(
        losses(&pair.take_events(A)),
        [(0, vec![4, 5], LostReason::Expired)]
    );
    assert_eq!(pair.session(A).peer_incarnation(), 0);
    assert_eq!(
        pair.session(A).poll_timeout(),
        None,
        "nothing left to expire"
    );

    // b's timer has not fired yet: it still holds the session when a comes back.
    pair.connect();
    pair.step();
    let events = pair.take_events(B);
    assert_eq!(losses(&events), [(0, vec![1], LostReason::PeerForgot)]);
    assert_eq!(established(&events), [false]);
    assert_eq!(established(&pair.take_events(A)), [false]);
    assert_eq!(pair.send_one(A), Ok(1));
    assert_eq!(pair.send_one(B), Ok(1));
    let summary = pair.assert_delivery(Mode::G2);
    assert_eq!((summary.handed_back, summary.in_doubt), (3, 0));
}

#[test]
fn a_loss_says_where_its_generations_unread_messages_end_in_the_inbox() {
    let mut pair = Pair::established();
    pair.send(A, 3);
    pair.steps(3);
    assert_eq!(pair.read(B, 1), [1]);
    pair.cut();
    pair.tick(pair.config.session_expiry);
    let events = pair.take_events(B);
    let loss = lost(&events).next().expect("b's session expired");
    // One read, two of the ended generation still unread.
    assert_eq!(loss.read_through, 3);
    // The next session's messages queue behind them.
    pair.connect();
    pair.step();
    pair.send(A, 2);
    pair.steps(3);
    assert_eq!(pair.session(B).inbox_len(), 4);
    assert_eq!(pair.read(B, 2), [2, 3]);
    assert_eq!(pair.session(B).messages_read(), loss.read_through);
    assert_eq!(
        pair.read_all(B).len(),
        2,
        "the new session's messages follow"
    );
    assert_eq!(pair.session(B).messages_read(), 5);
}

#[test]
fn both_sides_expiring_start_afresh_without_peer_forgot() {
    let mut pair = Pair::established();
    pair.send(A, 2);
    pair.steps(2);
    pair.send(B, 2);
    pair.cut();
    pair.tick(pair.config.session_expiry);
    assert_eq!(
        losses(&pair.take_events(A)),
        [(0, vec![], LostReason::Expired)]
    );
    assert_eq!(
        losses(&pair.take_events(B)),
        [(0, vec![1, 2], LostReason::Expired)]
    );
    pair.connect();
    pair.step();
    assert_eq!(losses(&pair.take_events(A)), []);
    assert_eq!(losses(&pair.take_events(B)), []);
    pair.assert_delivery(Mode::G2);
}

#[test]
fn heartbeat_pings_an_idle_link_and_keeps_it_alive() {
    let mut pair = Pair::established();
    pair.take_frames(A);
    let heartbeat = pair.config.heartbeat_interval;
    pair.advance(heartbeat - MS);
    pair.fire_timers(A).unwrap();
    assert_eq!(pair.transmit(A), []);
    pair.advance(MS);
    pair.fire_timers(A).unwrap();
    assert_eq!(pair.transmit(A), [Frame::Ping]);
    assert_eq!(pair.transmit(A), [], "one PING per interval");
    // Both sides alive and silent for five idle timeouts: pings keep the link up.
    for _ in 0..20 {
        pair.tick(heartbeat);
        pair.step();
    }
    assert!(pair.take_errors(A).is_empty() && pair.take_errors(B).is_empty());
    assert!(pair.both_established());
    pair.assert_delivery(Mode::Strict);
}

#[test]
fn a_due_ping_that_cannot_be_written_does_not_keep_the_timer_firing() {
    // The driver stops collecting frames while its write buffer is full; the heartbeat timer
    // must not stay in the past meanwhile, or the driver would wake up in a loop.
    let mut pair = Pair::established();
    let heartbeat = pair.config.heartbeat_interval;
    pair.advance(heartbeat);
    pair.fire_timers(A).unwrap();
    let next = pair.session(A).poll_timeout().unwrap();
    assert!(next > pair.now(), "the next timer is in the future");
    assert_eq!(
        pair.transmit(A),
        [Frame::Ping],
        "the PING goes out when it can"
    );
}

#[test]
fn a_silent_peer_is_declared_dead_after_the_idle_timeout() {
    let mut pair = Pair::established();
    let idle = pair.config.idle_timeout;
    let last_heard = pair.now();
    // b is frozen (half-open): it neither reads nor writes, nor closes. a keeps pinging.
    while pair.now() + pair.config.heartbeat_interval < last_heard + idle {
        pair.advance(pair.config.heartbeat_interval);
        pair.fire_timers(A).unwrap();
        pair.transmit(A);
    }
    assert!(pair.session(A).poll_timeout().unwrap() <= last_heard + idle);
    pair.advance(last_heard + idle - pair.now() - MS);
    pair.fire_timers(A).unwrap();
    pair.advance(MS);
    assert_eq!(pair.fire_timers(A), Err(LinkError::IdleTimeout(idle)));
    assert_eq!(
        LinkError::IdleTimeout(idle).close_code(),
        Some(CloseCode::IdleTimeout)
    );
    assert!(!pair.session(A).is_established());
    pair.assert_delivery(Mode::Strict);
}

#[test]
fn a_reader_with_a_full_inbox_keeps_the_link_alive() {
    let mut pair = Pair::established();
    pair.send(A, 8);
    pair.steps(4);
    assert_eq!(
        pair.session(B).inbox_len(),
        pair.config.inbox.messages,
        "b's inbox is full"
    );
    // Three idle timeouts pass while b's application does not read.
    for _ in 0..12 {
        pair.tick(pair.config.heartbeat_interval);
        pair.step();
        pair.send(A, 1);
    }
    assert_eq!(pair.take_errors(A), []);
    assert_eq!(pair.take_errors(B), []);
    assert!(pair.both_established());
    assert_eq!(pair.session(B).inbox_len(), 4);
    pair.assert_delivery(Mode::Strict);
}

#[test]
fn the_handshake_deadline_is_absolute() {
    let mut pair = Pair::new(test_config());
    pair.connect();
    let deadline = pair.now() + pair.config.handshake_timeout;
    assert!(pair.session(A).poll_timeout().unwrap() <= deadline);
    // b sends PINGs but never its SESSION: traffic does not extend the deadline.
    pair.transmit(A);
    for _ in 0..3 {
        pair.advance(Duration::from_secs(3));
        frame::encode(&Frame::Ping, pair.wire_mut(B));
        pair.deliver(A).unwrap();
        pair.fire_timers(A).unwrap();
    }
    pair.advance(deadline - pair.now() - MS);
    pair.fire_timers(A).unwrap();
    assert!(!pair.session(A).is_established());
    pair.advance(MS);
    let timeout = pair.config.handshake_timeout;
    assert_eq!(
        pair.fire_timers(A),
        Err(LinkError::HandshakeTimeout(timeout))
    );
    assert_eq!(pair.session(A).link_id(), None);
    pair.assert_delivery(Mode::Strict);
}

#[test]
fn close_with_shutdown_ends_the_session() {
    let mut pair = Pair::established();
    pair.send(A, 3);
    pair.steps(3);
    pair.read_all(B);
    pair.send(A, 2);
    pair.take_events(A);
    pair.shutdown(B);
    assert_eq!(
        pair.take_errors(A),
        [LinkError::ClosedByPeer {
            code: CloseCode::Shutdown,
            reason: "bye".into()
        }]
    );
    assert_eq!(
        losses(&pair.take_events(A)),
        [(0, vec![4, 5], LostReason::PeerShutdown)]
    );
    assert_eq!(pair.session(A).peer_incarnation(), 0);

    pair.restart(B);
    pair.connect();
    pair.step();
    let events = pair.take_events(A);
    assert_eq!(
        losses(&events),
        [],
        "already ended; the new incarnation is not a restart"
    );
    assert_eq!(established(&events), [false]);
    let summary = pair.assert_delivery(Mode::G2);
    assert_eq!((summary.handed_back, summary.in_doubt), (2, 0));
}

#[test]
fn close_with_another_code_keeps_the_session() {
    let mut pair = Pair::established();
    pair.send(A, 3);
    pair.half_step(A);
    let close = Frame::Close {
        code: CloseCode::Replaced,
        reason: String::new(),
    };
    frame::encode(&close, pair.wire_mut(B));
    assert!(matches!(
        pair.deliver(A),
        Err(LinkError::ClosedByPeer {
            code: CloseCode::Replaced,
            ..
        })
    ));
    assert_eq!(losses(&pair.take_events(A)), []);
    pair.take_events(B);
    pair.connect();
    pair.step();
    assert_eq!(established(&pair.take_events(A)), [true]);
    assert_eq!(established(&pair.take_events(B)), [true]);
    pair.assert_delivery(Mode::Strict);
}

/// (messages_before, messages in the generation) of each `Lost` event among `events`.
fn numbering(events: &[SessionEvent]) -> Vec<(u64, u64)> {
    lost(events)
        .map(|loss| (loss.messages_before, loss.acked + loss.unacked.len() as u64))
        .collect()
}

#[test]
fn messages_are_numbered_on_across_generations() {
    let mut pair = Pair::established();
    pair.send(A, 3);
    pair.steps(3);
    pair.cut();
    pair.send(A, 2);
    pair.tick(pair.config.session_expiry);
    assert_eq!(numbering(&pair.take_events(A)), [(0, 5)]);
    assert_eq!(pair.session(A).messages_before(), 5);

    pair.connect();
    pair.steps(2);
    assert_eq!(pair.send_one(A), Ok(1), "sequence numbers restart");
    pair.cut();
    pair.tick(pair.config.session_expiry);
    assert_eq!(numbering(&pair.take_events(A)), [(5, 1)]);
    assert_eq!(pair.session(A).messages_before(), 6);
}
