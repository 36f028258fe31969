//! The suspicion rule (`Session::is_suspect`): a link whose peer owes an answer and has sent
//! nothing for the bound is suspect, at exactly the right virtual time; an idle link whose
//! heartbeats are answered never is.

use std::time::Duration;

use super::{Mode, Pair, Side};
use crate::proto::frame::Frame;

const A: Side = Side::A;
const B: Side = Side::B;
const MS: Duration = Duration::from_millis(1);

/// The link goes silent from `side`'s point of view: whatever it wrote is lost.
fn drop_output(pair: &mut Pair, side: Side) {
    pair.transmit(side);
    pair.wire_mut(side).clear();
}

#[test]
fn unacknowledged_data_makes_the_link_suspect_after_the_floor() {
    let mut pair = Pair::established();
    let floor = pair.config.suspect_floor;
    assert_eq!(pair.session(A).rtt(), None, "no round trip timed yet");
    pair.send(A, 2);
    let sent_at = pair.now();
    drop_output(&mut pair, A);
    assert!(pair.session(A).in_flight() > 0);
    assert_eq!(
        pair.session(A).poll_timeout(),
        Some(sent_at + floor),
        "the suspicion timer is the first one due"
    );
    pair.advance(floor - MS);
    pair.fire_timers(A).unwrap();
    assert!(!pair.session(A).is_suspect());
    pair.advance(MS);
    pair.fire_timers(A).unwrap();
    assert!(pair.session(A).is_suspect());
    // Armed no more while suspect: the driver does not wake in a loop.
    assert!(pair.session(A).poll_timeout().unwrap() > pair.now());
    // The link comes back: anything from the peer clears the suspicion, and nothing was lost.
    pair.connect();
    pair.heal();
    assert!(!pair.session(A).is_suspect());
    pair.assert_delivery(Mode::Strict);
}

#[test]
fn the_bound_follows_the_smoothed_round_trip() {
    let mut pair = Pair::established();
    let rtt = Duration::from_millis(400);
    // Time one round trip of 400 ms.
    pair.send(A, 1);
    pair.transmit(A);
    pair.advance(rtt);
    pair.deliver(B).unwrap();
    pair.half_step(B);
    pair.read_all(B);
    assert_eq!(pair.session(A).rtt(), Some(rtt));
    let bound = rtt * pair.config.suspect_rtt_factor;
    assert!(bound > pair.config.suspect_floor);
    pair.send(A, 1);
    let sent_at = pair.now();
    drop_output(&mut pair, A);
    pair.advance(bound - MS);
    pair.fire_timers(A).unwrap();
    assert!(!pair.session(A).is_suspect(), "not before k x RTT");
    pair.advance(MS);
    pair.fire_timers(A).unwrap();
    assert!(pair.session(A).is_suspect());
    assert_eq!(pair.now(), sent_at + bound);
}

#[test]
fn the_receiving_side_of_a_flow_probes_then_suspects() {
    let mut pair = Pair::established();
    let floor = pair.config.suspect_floor;
    pair.send(A, 2);
    pair.half_step(A);
    pair.half_step(B);
    pair.read_all(B);
    let heard_at = pair.now();
    assert_eq!(
        pair.session(B).in_flight(),
        0,
        "b owes data, is owed nothing"
    );
    // a's side of the link goes silent.
    pair.advance(floor);
    pair.fire_timers(B).unwrap();
    assert!(
        pair.transmit(B).contains(&Frame::Ping),
        "a probe after the bound"
    );
    assert!(!pair.session(B).is_suspect());
    pair.wire_mut(B).clear();
    pair.advance(floor - MS);
    pair.fire_timers(B).unwrap();
    assert!(!pair.session(B).is_suspect());
    pair.advance(MS);
    pair.fire_timers(B).unwrap();
    assert!(pair.session(B).is_suspect());
    assert_eq!(pair.now(), heard_at + floor * 2);
}

#[test]
fn a_ping_is_answered_and_the_answer_clears_the_debt() {
    let mut pair = Pair::established();
    pair.take_frames(A);
    pair.take_frames(B);
    pair.tick(pair.config.heartbeat_interval);
    assert_eq!(pair.transmit(A), [Frame::Ping]);
    pair.deliver(B).unwrap();
    let answer = pair.transmit(B);
    assert!(
        matches!(answer[..], [Frame::Ack { .. }]),
        "answered with an ACK: {answer:?}"
    );
    pair.deliver(A).unwrap();
    assert_eq!(pair.transmit(A), [], "an ACK is not answered");
    pair.tick(pair.config.suspect_floor * 2);
    assert!(!pair.session(A).is_suspect());
}

#[test]
fn an_idle_healthy_link_is_never_suspect_and_adds_no_timer() {
    let mut pair = Pair::established();
    let heartbeat = pair.config.heartbeat_interval;
    // Ten minutes of idleness with both sides answering.
    for _ in 0..(600 / heartbeat.as_secs()) {
        for side in [A, B] {
            let at = pair.session(side).poll_timeout().unwrap();
            assert!(
                at >= pair.now() + heartbeat - pair.config.suspect_floor,
                "only the heartbeat wakes an idle link"
            );
        }
        pair.tick(heartbeat);
        pair.step();
        pair.step();
        assert!(!pair.session(A).is_suspect() && !pair.session(B).is_suspect());
    }
    assert!(pair.take_errors(A).is_empty() && pair.take_errors(B).is_empty());
    pair.assert_delivery(Mode::Strict);
}

#[test]
fn an_unanswered_heartbeat_makes_an_idle_link_suspect() {
    let mut pair = Pair::established();
    let heartbeat = pair.config.heartbeat_interval;
    pair.advance(heartbeat);
    pair.fire_timers(A).unwrap();
    let pinged_at = pair.now();
    drop_output(&mut pair, A);
    pair.advance(pair.config.suspect_floor);
    pair.fire_timers(A).unwrap();
    assert!(pair.session(A).is_suspect());
    assert_eq!(pair.now(), pinged_at + pair.config.suspect_floor);
}

/// A healthy link that is merely slow to carry one large message must not be suspect. The
/// receiver has nothing to acknowledge until the whole frame is in; without an answer the sender
/// would hear nothing for longer than the floor and suspect the link, its dialer would replace
/// the link with a fresh one, and that restarts the frame: a message taking longer than the
/// bound to cross would never be delivered. So a receiver that gets more of an incomplete frame
/// after half the floor of silence repeats its ACK (review of issue #12).
#[test]
fn a_slow_large_message_keeps_a_healthy_link_unsuspected() {
    let mut config = super::test_config();
    config.set_max_message(60_000);
    config.window.max_message = 60_000;
    let mut pair = Pair::new(config);
    pair.connect();
    pair.steps(2);
    assert!(pair.both_established());
    pair.wire_limit = usize::MAX;
    pair.session_mut(A)
        .send(bytes::Bytes::from(vec![7u8; 50_000]))
        .unwrap();
    pair.transmit(A);
    let total = pair.wire_len(A);
    assert!(total > 50_000);
    // The link carries 2,500 bytes every 100 ms (200 kbit/s): 2 s for the frame, twice the
    // suspicion floor.
    let floor = pair.config.suspect_floor;
    let mut in_transit = pair.wire_mut(A).split();
    let mut answers = 0u32;
    let mut crossing = Duration::ZERO;
    while !in_transit.is_empty() {
        pair.advance(100 * MS);
        crossing += 100 * MS;
        let chunk = in_transit.split_to(2_500.min(in_transit.len()));
        pair.wire_mut(A).extend_from_slice(&chunk);
        pair.deliver(B).unwrap();
        pair.fire_timers(B).unwrap();
        if in_transit.is_empty() {
            break;
        }
        let written = pair.transmit(B);
        assert!(
            written
                .iter()
                .all(|f| matches!(f, Frame::Ack { up_to: 0, .. })),
            "only repeated ACKs while the frame is incomplete: {written:?}"
        );
        answers += u32::try_from(written.len()).unwrap();
        pair.deliver(A).unwrap();
        pair.fire_timers(A).unwrap();
        assert!(
            !pair.session(A).is_suspect(),
            "a link carrying bytes steadily is suspect after {crossing:?}: the dialer would \
             replace it"
        );
    }
    // About one answer per half floor of silence, not one per read.
    assert!(crossing >= floor * 2);
    assert!(
        answers >= 1 && floor / 2 * answers <= crossing,
        "{answers} answers"
    );
    let messages = pair.session_mut(B).read(usize::MAX);
    assert_eq!(
        messages.len(),
        1,
        "the frame is delivered once it is all in"
    );
    assert_eq!(messages[0].len(), 50_000);
}
