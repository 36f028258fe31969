//! Many sessions sharing one node-wide inbox budget (side B of every pair is the same node):
//! flooding peers never make the inboxes hold more than the budget, the application reading one
//! peer lets that peer go on, nobody is starved, and everything is delivered once read.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Mode, Pair, Side, test_config};
use crate::proto::InboxBudget;

const PEERS: usize = 8;
/// The node's budget: 4 KiB, half of it guaranteed (256 bytes a session), half shared.
const BUDGET: usize = 4096;

struct Node {
    pairs: Vec<Pair>,
    budget: Arc<InboxBudget>,
    /// Calls of the budget's `on_free`: each wakes one waiting pair, as the node's driver does.
    freed: Arc<AtomicUsize>,
    /// Where the search for a waiting pair to wake starts (round robin).
    next_wake: usize,
}

impl Node {
    fn new() -> Node {
        let freed = Arc::new(AtomicUsize::new(0));
        let count = freed.clone();
        let budget = InboxBudget::new(BUDGET, PEERS, move || {
            count.fetch_add(1, Ordering::SeqCst);
        });
        let mut config = test_config();
        config.window.messages = 1000;
        config.inbox.messages = 1000;
        // Each inbox alone could take the whole budget.
        config.inbox.bytes = BUDGET;
        let pairs = (0..PEERS)
            .map(|_| {
                let mut pair = Pair::new(config);
                pair.wire_limit = 1 << 20;
                pair.share_budget(Side::B, &budget);
                pair.connect();
                pair.steps(2);
                assert!(pair.both_established());
                pair
            })
            .collect();
        Node {
            pairs,
            budget,
            freed,
            next_wake: 0,
        }
    }

    fn inbox_bytes(&self) -> usize {
        self.pairs
            .iter()
            .map(|p| p.session(Side::B).inbox_bytes())
            .sum()
    }

    /// Runs as a driver would: a pair only when it has work, or when the budget's `on_free`
    /// woke it (one waiting pair per call); until nothing has work. Checks the budget after
    /// every step.
    fn run(&mut self) {
        for _ in 0..10_000 {
            let mut woken = [false; PEERS];
            for _ in 0..self.freed.swap(0, Ordering::SeqCst) {
                let waiting = (0..PEERS)
                    .map(|k| (self.next_wake + k) % PEERS)
                    .find(|&k| !woken[k] && self.pairs[k].session(Side::B).budget_waiting());
                if let Some(k) = waiting {
                    woken[k] = true;
                    self.next_wake = k + 1;
                }
            }
            let mut ran = false;
            for (i, woke) in woken.into_iter().enumerate() {
                if woke || self.pairs[i].has_work() {
                    self.pairs[i].step();
                    ran = true;
                    let held = self.inbox_bytes();
                    assert!(held <= BUDGET, "inboxes hold {held} bytes, budget {BUDGET}");
                }
            }
            if !ran {
                return;
            }
        }
        panic!("the pairs never went quiet");
    }

    /// Peer `i` queues as many messages as its window takes.
    fn flood(&mut self, i: usize) -> usize {
        self.pairs[i].send(Side::A, 1000)
    }
}

#[test]
fn flooding_peers_stay_within_the_node_budget_and_everything_arrives_once_read() {
    let mut node = Node::new();
    for i in 0..PEERS {
        assert!(node.flood(i) > 100);
    }
    node.run();
    // Every peer got something through, the last ones too: nobody is starved by the others.
    for (i, pair) in node.pairs.iter().enumerate() {
        assert!(
            pair.session(Side::B).inbox_len() > 0,
            "peer {i} got nothing through"
        );
    }
    assert!(node.inbox_bytes() <= BUDGET);
    // The application reads one peer: that peer goes on (the others still wait).
    let before = node.pairs[3].checker.ledger.summary();
    let read = node.pairs[3].read_all(Side::B).len();
    node.run();
    assert!(node.pairs[3].session(Side::B).inbox_len() > 0);
    assert!(node.pairs[3].checker.ledger.summary() != before && read > 0);
    // Once the application reads everyone, everything is delivered exactly once, in order.
    for _ in 0..10_000 {
        for pair in &mut node.pairs {
            pair.read_all(Side::B);
        }
        node.run();
        if node
            .pairs
            .iter()
            .all(|p| p.session(Side::A).unacked_len() == 0 && p.session(Side::B).inbox_len() == 0)
        {
            break;
        }
    }
    for pair in &mut node.pairs {
        pair.assert_delivery(Mode::Strict);
    }
    drop(node.pairs);
    assert_eq!(
        node.budget.shared_in_use(),
        0,
        "dropped sessions give everything back"
    );
}

#[test]
fn a_flood_nobody_reads_does_not_starve_a_peer_that_is_read() {
    let mut node = Node::new();
    // Peer 0 floods first and is never read: it takes what it may of the shared part.
    node.flood(0);
    node.run();
    // Peer 1 sends afterwards and is read as it arrives: all of it gets through.
    let sent = node.flood(1);
    let mut got = 0;
    for _ in 0..10_000 {
        node.run();
        got += node.pairs[1].read_all(Side::B).len();
        if got == sent {
            break;
        }
    }
    assert_eq!(got, sent, "the read peer was starved");
    assert!(node.pairs[0].session(Side::B).inbox_len() > 0);
    assert!(node.inbox_bytes() <= BUDGET);
}

#[test]
fn a_closed_connection_gives_its_unused_credit_back() {
    let mut node = Node::new();
    let held = node.budget.shared_in_use();
    assert!(held > 0, "idle established sessions hold granted credit");
    for pair in &mut node.pairs {
        pair.cut();
    }
    assert_eq!(node.budget.shared_in_use(), 0);
}

#[test]
fn bytes_freed_by_one_peer_wake_the_peers_waiting_for_them() {
    let mut node = Node::new();
    // Peer 0 floods alone and takes what it may; then the others find little left and wait.
    node.flood(0);
    node.run();
    for i in 1..PEERS {
        node.flood(i);
    }
    node.run();
    assert!(node.budget.waiting() > 0);
    let others = |node: &Node| -> usize {
        node.pairs[1..]
            .iter()
            .map(|p| p.session(Side::B).inbox_len())
            .sum()
    };
    let before = others(&node);
    // Reading peer 0 frees bytes beyond its share now that others wait: they go to the waiting
    // peers, whose connections had nothing to do and slept until the budget woke them.
    node.pairs[0].read_all(Side::B);
    node.run();
    assert!(
        others(&node) > before,
        "the waiting peers were not given the freed bytes"
    );
    // Each wake-up woke one waiting peer, which passed the turn on: no byte stays free while a
    // peer waits for it.
    assert!(
        node.budget.waiting() == 0 || node.budget.shared_in_use() == node.budget.shared(),
        "{} bytes free while {} peers wait",
        node.budget.shared() - node.budget.shared_in_use(),
        node.budget.waiting()
    );
    assert!(node.inbox_bytes() <= BUDGET);
}

#[test]
fn an_idle_peer_takes_only_the_initial_part_and_a_busy_one_grows() {
    // 64 KiB over 2 sessions: 16 KiB guaranteed each, 32 KiB shared.
    let budget = InboxBudget::new(64 << 10, 2, || {});
    let mut config = test_config();
    config.window.messages = 1000;
    config.window.bytes = 1 << 20;
    config.inbox.messages = 1000;
    config.inbox.bytes = 48 << 10;
    let mut pair = Pair::new(config);
    pair.wire_limit = 1 << 20;
    pair.share_budget(Side::B, &budget);
    pair.connect();
    pair.steps(2);
    assert!(pair.both_established());
    // The largest message (1 KiB) fits the guaranteed part: an idle peer takes nothing shared.
    assert_eq!(budget.shared_in_use(), 0);
    // A peer whose messages flow (the application reads them) asks for more, doubling.
    for _ in 0..20 {
        pair.send(Side::A, 1000);
        pair.steps(3);
        pair.read_all(Side::B);
    }
    assert!(budget.shared_in_use() > 0, "the busy peer never grew");
    pair.assert_delivery(Mode::Strict);
}
