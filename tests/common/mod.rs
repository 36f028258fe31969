//! Shared test support: the one delivery checker, timeouts, node helpers.
#![allow(dead_code, clippy::unwrap_used)]

pub mod raw;

use std::future::Future;
use std::time::Duration;

use std::sync::{Arc, Mutex};

use networkio::{Event, Events, Node, Peer};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// Upper bound on any single wait in a test; generous so a loaded CI machine does not flake.
pub const WAIT: Duration = Duration::from_secs(30);

/// Awaits `f`, failing the test with `what` if it takes longer than [`WAIT`].
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// A test message: who sent it and its index in that sender's stream to one receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Msg {
    pub from: String,
    pub to: String,
    pub index: u64,
    pub body: String,
}

/// The shared delivery checker (`networkio-checker`) for [`Msg`]s: every (from -> to) stream
/// must arrive complete, once, in order, at the right receiver.
#[derive(Debug, Default)]
pub struct Checker(pub networkio_checker::Checker);

impl std::ops::Deref for Checker {
    type Target = networkio_checker::Checker;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Checker {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Checker {
    pub fn with_seed(seed: u64) -> Self {
        Checker(networkio_checker::Checker::with_seed(seed))
    }

    /// The next message of the `from -> to` stream, recorded as sent.
    pub fn next_message(&mut self, from: &str, to: &str, body_len: usize) -> Msg {
        Msg {
            from: from.into(),
            to: to.into(),
            index: self.0.send(from, to),
            body: "x".repeat(body_len),
        }
    }

    /// Records what the application read from the peer named `from`: each message must have
    /// been sent by that peer (else it is foreign).
    pub fn received_from(&mut self, from: &str, msgs: &[Msg]) {
        for m in msgs {
            self.0.read_from(from, &m.from, &m.to, m.index);
        }
    }

    /// Records what the application of `msg.to` read.
    pub fn received(&mut self, msg: &Msg) {
        self.0.read(&msg.from, &msg.to, msg.index);
    }

    /// Records the payloads one `SessionLost` handed back; they must be in their order of
    /// sending.
    pub fn handed_back(&mut self, payloads: &[bytes::Bytes]) {
        let mut previous: Option<Msg> = None;
        for payload in payloads {
            let m = match networkio::codec::decode::<Msg>(payload) {
                Ok(m) => m,
                Err(e) => {
                    self.0
                        .foreign(format_args!("handed back an undecodable payload: {e}"));
                    continue;
                }
            };
            if let Some(p) = previous.filter(|p| (&p.from, &p.to) == (&m.from, &m.to)) {
                if p.index >= m.index {
                    self.0.fail(format_args!(
                        "out of order: {}->{} #{} handed back after #{}",
                        m.from, m.to, m.index, p.index
                    ));
                }
            }
            self.0.handed_back(&m.from, &m.to, m.index);
            previous = Some(m);
        }
    }

    pub fn total_sent(&self) -> u64 {
        self.0.summary().sent
    }
}

/// A fresh path under the system's temporary directory (nothing is created): unique per test
/// process, call and `what`.
pub fn temp_path(what: &str) -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::env::temp_dir().join(format!(
        "networkio-test-{what}-{}-{nanos}",
        std::process::id()
    ))
}

/// Polls `f` once and asserts that it is still pending, so that it is already waiting (not
/// merely late) when whatever should release it happens.
pub async fn assert_waiting<F: Future + Unpin>(f: &mut F, what: &str) {
    assert!(
        tokio::time::timeout(Duration::ZERO, f).await.is_err(),
        "{what}"
    );
}

/// A node listening on an OS-picked loopback port.
pub async fn listening_node(name: &str) -> Node {
    Node::builder(name)
        .listen("127.0.0.1:0")
        .start()
        .await
        .unwrap()
}

/// A listening node named `server`, a node named `client` connected to it, and the client's
/// handle to the server.
pub async fn connected_pair(server: &str, client: &str) -> (Node, Node, Peer) {
    let server = listening_node(server).await;
    let client = Node::builder(client).start().await.unwrap();
    let peer = client.connect(server.local_addrs()[0]).await.unwrap();
    (server, client, peer)
}

/// Waits for an event matching `pred`, discarding others.
pub async fn wait_event(
    events: &mut Events,
    what: &str,
    mut pred: impl FnMut(&Event) -> bool,
) -> Event {
    within(what, async {
        loop {
            let ev = events.recv().await.expect("event queue ended");
            if pred(&ev) {
                return ev;
            }
        }
    })
    .await
}

/// Reads every message `node` is notified of into the checker (and counts sessions that end);
/// publishes how many messages were read so far.
pub fn spawn_reader(node: &Node, checker: Arc<Mutex<Checker>>) -> watch::Receiver<u64> {
    let (tx, rx) = watch::channel(0u64);
    let mut events = node.events();
    let name = node.name().to_owned();
    tokio::spawn(async move {
        let mut count = 0;
        while let Some(event) = events.recv().await {
            match event {
                Event::Message { peer } => {
                    let msgs: Vec<Msg> = peer.read_all().unwrap();
                    checker.lock().unwrap().received_from(peer.name(), &msgs);
                    count += msgs.len() as u64;
                    tx.send_replace(count);
                }
                // For G1 tests: both processes live, so no session may end. (A peer's final
                // shutdown ends one; checks run before that.)
                Event::SessionLost { peer, reason, .. } => checker.lock().unwrap().session_lost(
                    format_args!("{name} lost its session with {}: {reason:?}", peer.name()),
                ),
                _ => {}
            }
        }
    });
    rx
}

/// Sends `n` checker messages with `body` bytes of text from `from` to `peer`, then waits for
/// the last one's acknowledgement.
pub async fn send_stream(
    peer: Peer,
    from: String,
    n: u64,
    body: usize,
    checker: Arc<Mutex<Checker>>,
) {
    let mut last = None;
    for _ in 0..n {
        let msg = checker
            .lock()
            .unwrap()
            .next_message(&from, peer.name(), body);
        last = Some(peer.send(&msg).await.unwrap());
    }
    if let Some(receipt) = last {
        receipt.delivered().await.unwrap();
    }
}

/// Polls `cond` every few milliseconds until it holds, failing the test after [`WAIT`]. For
/// conditions no event announces (connection counts, queue depths); never a fixed sleep.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// Waits for the next `SessionLost` event; returns the handed-back payloads and the reason.
pub async fn wait_session_lost(
    events: &mut Events,
    what: &str,
) -> (Vec<bytes::Bytes>, networkio::LostReason) {
    match wait_event(events, what, |e| matches!(e, Event::SessionLost { .. })).await {
        Event::SessionLost {
            unacked, reason, ..
        } => (unacked, reason),
        _ => unreachable!("wait_event returned another event"),
    }
}
