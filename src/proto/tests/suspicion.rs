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
