//! The endpoint's rules, one by one: the session cap with its rate-limited reclaim, key
//! binding, crossed connections in both orders, replacement, the end of a stale link (defect 1
//! of issue #12), expiry and the handle count. A virtual clock; sessions are real, the wire is
//! not needed (the rules look at which link is attached, not at what it carries).

use std::cell::Cell;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::test_config;
use crate::proto::endpoint::{
    AttachRefusal, Attached, Endpoint, EndpointConfig, Entry, LinkEnd, LinkState, NewLink, Origin,
    PeerRecord, TableFull, Usage, Watch,
};
use crate::proto::session::LostReason;
use crate::proto::{PeerHello, Session, SessionEvent};

/// A table entry whose usage the test sets.
#[derive(Debug, Default)]
struct Held(Cell<Usage>);

impl Entry for Held {
    fn usage(&self) -> Usage {
        self.0.get()
    }
}

fn used() -> Held {
    Held(Cell::new(Usage {
        session: true,
        ..Usage::default()
    }))
}

fn config(local: &str, max_sessions: usize, names_pinned: bool) -> EndpointConfig {
    EndpointConfig {
        local_name: local.to_owned(),
        max_sessions,
        reclaim_interval: Duration::from_secs(1),
        names_pinned,
    }
}

fn hello(name: &str) -> PeerHello {
    PeerHello {
        name: name.to_owned(),
        incarnation: 7,
        version: 1,
        max_message: 1024,
        idle_timeout: Duration::from_secs(20),
    }
}

/// One peer as a driver keeps it: its session and its record, keys are small numbers.
struct PeerSide {
    session: Session,
    record: PeerRecord<u8>,
    hello: PeerHello,
    now: Instant,
    nonce: u64,
}

impl PeerSide {
    fn new(remote: &str) -> PeerSide {
        let now = Instant::now();
        PeerSide {
            session: Session::new(now, 1, test_config()),
            record: PeerRecord::new(),
            hello: hello(remote),
            now,
            nonce: 0,
        }
    }

    fn attach(
        &mut self,
        endpoint: &Endpoint<Held>,
        key: Option<u8>,
        origin: Origin,
    ) -> Result<Attached, AttachRefusal> {
        self.nonce += 1;
        let new = NewLink {
            hello: &self.hello,
            key,
            origin,
            deadline: self.now + Duration::from_secs(10),
            nonce: self.nonce,
        };
        endpoint.attach(&mut self.record, &mut self.session, new, self.now)
    }

    /// Attaches and establishes (as the session's `Established` event would).
    fn connect(&mut self, endpoint: &Endpoint<Held>, key: Option<u8>, origin: Origin) -> u64 {
        let attached = self.attach(endpoint, key, origin).unwrap();
        self.record.established();
        attached.link
    }

    fn events(&mut self) -> Vec<SessionEvent> {
        std::iter::from_fn(|| self.session.poll_event()).collect()
    }
}

#[test]
fn the_session_cap_refuses_new_names_and_admits_known_ones() {
    let now = Instant::now();
    let mut table = Endpoint::new(config("me", 2, true));
    table.admit("a", now, used).unwrap();
    table.admit("b", now, used).unwrap();
    assert_eq!(table.admit("c", now, used).err(), Some(TableFull));
    // A known name is not a new session.
    assert!(table.admit("a", now, used).is_ok());
    assert_eq!(table.len(), 2);
}

#[test]
fn a_full_table_reclaims_unused_entries_at_most_once_per_interval() {
    let t0 = Instant::now();
    let mut table = Endpoint::new(config("me", 2, true));
    table.admit("a", t0, used).unwrap();
    table.admit("b", t0, used).unwrap();
    // Full of used entries: the scan finds nothing, and the next one waits an interval.
    assert!(table.admit("c", t0, used).is_err());
    table.get("a").unwrap().0.set(Usage::default());
    assert!(
        table
            .admit("c", t0 + Duration::from_millis(999), used)
            .is_err(),
        "a second scan within the interval"
    );
    // An interval later, the unused entry makes room.
    table.admit("c", t0 + Duration::from_secs(1), used).unwrap();
    assert!(table.get("a").is_none());
    assert!(table.get("b").is_some() && table.get("c").is_some());
}

#[test]
fn reclaim_and_forget_keep_entries_with_handles_or_anything_held() {
    let now = Instant::now();
    let mut table = Endpoint::new(config("me", 8, true));
    let usages = [
        (
            "handle",
            Usage {
                handles: 1,
                ..Usage::default()
            },
        ),
        (
            "linked",
            Usage {
                linked: true,
                ..Usage::default()
            },
        ),
        (
            "unacked",
            Usage {
                unacked: 1,
                ..Usage::default()
            },
        ),
        (
            "inbox",
            Usage {
                inbox: 1,
                ..Usage::default()
            },
        ),
        (
            "handed_back",
            Usage {
                handed_back: 1,
                ..Usage::default()
            },
        ),
        ("empty", Usage::default()),
    ];
    for (name, usage) in usages {
        table.admit(name, now, || Held(Cell::new(usage))).unwrap();
    }
    for (name, _) in usages {
        assert_eq!(table.forget_if_unused(name), name == "empty", "{name}");
    }
    assert_eq!(table.len(), usages.len() - 1);
}

#[test]
fn binding_attaches_the_bound_key_and_refuses_another_on_a_live_link() {
    let table = Endpoint::new(config("me", 8, false));
    let mut peer = PeerSide::new("p");
    peer.connect(&table, Some(1), Origin::Accepted);
    assert_eq!(peer.record.bound_key(), Some(&1));
    // Another key while a connection serves the session: refused, whatever the policy.
    assert_eq!(
        peer.attach(&table, Some(2), Origin::Accepted),
        Err(AttachRefusal::NameInUse { live: true })
    );
    // A connection without a key never takes a bound session.
    assert_eq!(
        peer.attach(&table, None, Origin::Accepted),
        Err(AttachRefusal::NameInUse { live: true })
    );
    // The same key replaces the link.
    let old = peer.record.link().unwrap().id;
    let attached = peer.attach(&table, Some(1), Origin::Accepted).unwrap();
    assert_eq!(attached.replaced, Some(old));
    assert!(!attached.ended_session);
}

#[test]
fn pinned_names_keep_a_session_without_a_link_for_its_key() {
    let table = Endpoint::new(config("me", 8, true));
    let mut peer = PeerSide::new("p");
    let link = peer.connect(&table, Some(1), Origin::Accepted);
    let now = peer.now;
    peer.record.link_ended(&mut peer.session, link, now);
    assert_eq!(
        peer.attach(&table, Some(2), Origin::Accepted),
        Err(AttachRefusal::NameInUse { live: false })
    );
    assert_eq!(peer.record.state(), LinkState::Disconnected);
    assert!(peer.attach(&table, Some(1), Origin::Accepted).is_ok());
}

#[test]
fn the_open_policy_ends_a_linkless_session_for_a_new_key() {
    let table = Endpoint::new(config("me", 8, false));
    let mut peer = PeerSide::new("p");
    let link = peer.connect(&table, Some(1), Origin::Accepted);
    peer.session.send(Bytes::from_static(b"for key 1")).unwrap();
    let now = peer.now;
    peer.record.link_ended(&mut peer.session, link, now);
    peer.events();
    let attached = peer.attach(&table, Some(2), Origin::Accepted).unwrap();
    assert!(attached.ended_session);
    assert_eq!(attached.replaced, None);
    assert_eq!(peer.record.bound_key(), None, "bound at establishment");
    let lost = peer.events().into_iter().find_map(|e| match e {
        SessionEvent::Lost {
            reason, unacked, ..
        } => Some((reason, unacked)),
        _ => None,
    });
    assert_eq!(
        lost,
        Some((
            LostReason::KeyChanged,
            vec![Bytes::from_static(b"for key 1")]
        ))
    );
    peer.record.established();
    assert_eq!(peer.record.bound_key(), Some(&2));
}

/// Crossed connections: each side dialed the other. Both keep the one dialed by the smaller
/// name, whichever arrives second.
#[test]
fn crossed_connections_keep_the_one_dialed_by_the_smaller_name_in_both_orders() {
    for (local, remote) in [("a", "b"), ("b", "a")] {
        let table = Endpoint::new(config(local, 8, true));
        let kept = if local < remote {
            Origin::Dialed
        } else {
            Origin::Accepted
        };
        let other = if kept == Origin::Dialed {
            Origin::Accepted
        } else {
            Origin::Dialed
        };
        // The kept one first: the other is refused.
        let mut peer = PeerSide::new(remote);
        let first = peer.attach(&table, Some(1), kept).unwrap().link;
        assert_eq!(
            peer.attach(&table, Some(1), other),
            Err(AttachRefusal::Crossed),
            "{local} keeps {kept:?}"
        );
        assert!(peer.record.is_current(first));
        // The other first: the kept one replaces it.
        let mut peer = PeerSide::new(remote);
        let first = peer.attach(&table, Some(1), other).unwrap().link;
        let second = peer.attach(&table, Some(1), kept).unwrap();
        assert_eq!(second.replaced, Some(first));
        assert!(peer.record.is_current(second.link) && !peer.record.is_current(first));
    }
}

#[test]
fn a_dead_link_is_not_crossed_with_its_replacement() {
    let table = Endpoint::new(config("a", 8, true));
    let mut peer = PeerSide::new("b");
    let ours = peer.connect(&table, Some(1), Origin::Dialed);
    // Our link failed (the session detached it), its driver has not reported the end yet.
    let now = peer.now;
    peer.session.detach(now);
    let theirs = peer.attach(&table, Some(1), Origin::Accepted).unwrap();
    assert_eq!(theirs.replaced, Some(ours));
}

#[test]
fn a_newer_link_replaces_the_current_one_of_the_same_origin() {
    let table = Endpoint::new(config("me", 8, true));
    let mut peer = PeerSide::new("p");
    let first = peer.connect(&table, Some(1), Origin::Dialed);
    let second = peer.attach(&table, Some(1), Origin::Dialed).unwrap();
    assert_eq!(second.replaced, Some(first));
    assert_eq!(peer.session.link_id(), Some(second.link));
    assert_eq!(peer.record.state(), LinkState::Connecting);
}

/// Defect 1: the end of a replaced link, reported after the newer link attached (or even
/// established), must change nothing.
#[test]
fn the_end_of_a_replaced_link_leaves_the_newer_links_state() {
    let table = Endpoint::new(config("me", 8, true));
    let mut peer = PeerSide::new("p");
    let now = peer.now;
    let old = peer.connect(&table, Some(1), Origin::Accepted);
    // The old link fails: the session detaches it at once; its driver reports the end later.
    peer.session.detach(now);
    let new = peer.attach(&table, Some(1), Origin::Accepted).unwrap().link;
    assert_eq!(
        peer.record.link_ended(&mut peer.session, old, now),
        LinkEnd::Stale
    );
    assert_eq!(peer.record.state(), LinkState::Connecting);
    assert_eq!(
        peer.session.link_id(),
        Some(new),
        "the new link stays attached"
    );
    peer.record.established();
    assert_eq!(
        peer.record.link_ended(&mut peer.session, old, now),
        LinkEnd::Stale
    );
    assert_eq!(peer.record.state(), LinkState::Connected);
    // The current link's end does count, once.
    assert_eq!(
        peer.record.link_ended(&mut peer.session, new, now),
        LinkEnd::Ended { established: true }
    );
    assert_eq!(peer.record.state(), LinkState::Disconnected);
    assert_eq!(peer.session.link_id(), None);
    assert_eq!(
        peer.record.link_ended(&mut peer.session, new, now),
        LinkEnd::Stale
    );
}

#[test]
fn a_current_link_that_failed_or_never_established_ends_as_such() {
    let table = Endpoint::new(config("me", 8, true));
    let mut peer = PeerSide::new("p");
    let now = peer.now;
    let link = peer.attach(&table, Some(1), Origin::Dialed).unwrap().link;
    assert_eq!(
        peer.record.link_ended(&mut peer.session, link, now),
        LinkEnd::Ended { established: false }
    );
    // A link error detaches it in the session first; it was still the current link.
    let link = peer.connect(&table, Some(1), Origin::Dialed);
    peer.session.detach(now);
    assert_eq!(
        peer.record.link_ended(&mut peer.session, link, now),
        LinkEnd::Ended { established: true }
    );
}

#[test]
fn expiry_hands_back_when_due_and_then_nothing_is_due() {
    let mut peer = PeerSide::new("p");
    let start = peer.now;
    let expiry = test_config().session_expiry;
    peer.session.send(Bytes::from_static(b"queued")).unwrap();
    assert_eq!(
        peer.record.watch(&mut peer.session, start),
        Watch::Until(start + expiry)
    );
    assert!(peer.events().is_empty());
    assert_eq!(
        peer.record
            .watch(&mut peer.session, start + expiry - Duration::from_millis(1)),
        Watch::Until(start + expiry)
    );
    assert_eq!(
        peer.record.watch(&mut peer.session, start + expiry),
        Watch::NothingDue
    );
    let lost = peer.events();
    assert!(matches!(
        lost.as_slice(),
        [SessionEvent::Lost {
            reason: LostReason::Expired,
            unacked,
            ..
        }] if unacked.len() == 1
    ));
    // Until the application takes the handed-back message, the entry is in use.
    assert!(!peer.record.usage(&peer.session, 0, 1).unused());
    assert!(peer.record.usage(&peer.session, 0, 0).unused());
}

#[test]
fn the_watch_stops_for_a_link() {
    let table = Endpoint::new(config("me", 8, true));
    let mut peer = PeerSide::new("p");
    peer.attach(&table, None, Origin::Accepted).unwrap();
    let now = peer.now;
    assert_eq!(peer.record.watch(&mut peer.session, now), Watch::Linked);
}

#[test]
fn handles_keep_an_otherwise_empty_entry() {
    let peer = PeerSide::new("p");
    let with = peer.record.usage(&peer.session, 1, 0);
    assert!(!with.unused() && !with.holds_anything());
    assert!(peer.record.usage(&peer.session, 0, 0).unused());
    assert!(!peer.record.usage(&peer.session, 0, 1).unused());
}

/// One step of a random schedule of links (see the property below).
#[derive(Debug, Clone)]
enum Step {
    /// A new connection of the same key attaches (replacing the current one).
    Attach,
    /// The current link establishes the session (if its connection is alive).
    Establish,
    /// The current link's connection fails: the session detaches it at once.
    Break,
    /// The driver of the `n`-th link ever attached (modulo their number) reports its end.
    End(usize),
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        2 => Just(Step::Attach),
        2 => Just(Step::Establish),
        1 => Just(Step::Break),
        3 => any::<usize>().prop_map(Step::End),
    ]
}

proptest::proptest! {
    /// Whatever the order in which links attach, establish, fail and report their ends, the
    /// peer's state is that of the newest link until that link's own end, and each link's end
    /// counts at most once, only if it was current: defect 1 for every schedule.
    #[test]
    fn the_state_is_always_the_newest_links(steps in proptest::collection::vec(step(), 1..60)) {
        let table = Endpoint::new(config("me", 8, true));
        let mut peer = PeerSide::new("p");
        let now = peer.now;
        // Model: every link attached, the current one (index), whether it is alive and
        // established.
        let mut links: Vec<u64> = Vec::new();
        let mut current: Option<usize> = None;
        let (mut alive, mut established) = (false, false);
        for step in steps {
            match step {
                Step::Attach => {
                    let attached = peer.attach(&table, Some(1), Origin::Dialed).unwrap();
                    proptest::prop_assert_eq!(attached.replaced, current.map(|i| links[i]));
                    links.push(attached.link);
                    current = Some(links.len() - 1);
                    (alive, established) = (true, false);
                }
                Step::Establish if alive => {
                    peer.record.established();
                    established = true;
                }
                Step::Establish => {}
                Step::Break => {
                    peer.session.detach(now);
                    alive = false;
                }
                Step::End(n) if !links.is_empty() => {
                    let i = n % links.len();
                    let end = peer.record.link_ended(&mut peer.session, links[i], now);
                    if current == Some(i) {
                        proptest::prop_assert_eq!(end, LinkEnd::Ended { established });
                        current = None;
                        (alive, established) = (false, false);
                    } else {
                        proptest::prop_assert_eq!(end, LinkEnd::Stale);
                    }
                }
                Step::End(_) => {}
            }
            let state = match current {
                None => LinkState::Disconnected,
                Some(_) if established => LinkState::Connected,
                Some(_) => LinkState::Connecting,
            };
            proptest::prop_assert_eq!(peer.record.state(), state);
            let attached = current.filter(|_| alive).map(|i| links[i]);
            proptest::prop_assert_eq!(peer.session.link_id(), attached);
        }
    }
}
