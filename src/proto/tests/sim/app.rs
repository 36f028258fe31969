//! The application's part of a simulated node: it sends numbered messages, takes its
//! notifications at its own pace and acts on them (reads, hand-backs, connection state), and
//! records all of it in the shared checker. And what a crash destroys.

use bytes::{BufMut, Bytes, BytesMut};

use super::World;
use super::node::{Node, Peer, name};
use crate::proto::coalesce::Kind;

/// A test message: sender and receiver node, index in their stream, padding so frames differ
/// in length (cuts land at every kind of offset).
pub(super) fn payload(from: usize, to: usize, index: u64) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_u8(from as u8);
    buf.put_u8(to as u8);
    buf.put_u64(index);
    buf.put_bytes(0x5a, (index % 29) as usize);
    buf.freeze()
}

pub(super) fn decode(payload: &[u8]) -> Option<(usize, usize, u64)> {
    let index = u64::from_be_bytes(payload.get(2..10)?.try_into().ok()?);
    Some((
        usize::from(*payload.first()?),
        usize::from(payload[1]),
        index,
    ))
}

impl Node {
    // ---- the application's part -------------------------------------------------------------

    /// The application queues up to `n` messages to `to`; returns how many were accepted.
    pub(super) fn send(&mut self, w: &mut World, to: usize, n: usize) -> usize {
        let Some(peer) = self.peer(to) else { return 0 };
        let mut p = peer.borrow_mut();
        let (from, to_name) = (self.name(), name(to));
        let mut sent = 0;
        for _ in 0..n {
            let index = w.checker.sent(&from, &to_name);
            let Ok(seq) = p.session.send(payload(self.proc.0, to, index)) else {
                break;
            };
            w.checker.send(&from, &to_name);
            p.unacked.push_back((seq, index));
            sent += 1;
        }
        sent
    }

    /// The application takes up to `n` notifications and acts on them.
    pub(super) fn take_events(&mut self, w: &mut World, n: usize) {
        for _ in 0..n {
            let Some((peer, kind)) = self.queue.pop_front() else {
                return;
            };
            let mut p = peer.borrow_mut();
            let peer_name = name(p.node);
            let kind = p.pending.take(kind);
            match kind {
                Kind::Message => self.read(w, &peer_name, &mut p),
                Kind::Connected | Kind::Disconnected => p.app_link = Some(kind),
                Kind::SessionLost => {
                    for index in std::mem::take(&mut p.handed_back) {
                        w.checker.handed_back(&self.name(), &peer_name, index);
                    }
                }
                Kind::Delivered => {}
            }
        }
    }

    fn read(&self, w: &mut World, peer_name: &str, p: &mut Peer) {
        for m in p.session.read(usize::MAX) {
            match decode(&m) {
                Some((from, to, index)) if to == self.proc.0 => {
                    w.checker
                        .read_from(peer_name, &name(from), &name(to), index);
                    w.stats.reads += 1;
                }
                Some((from, to, index)) => w.checker.foreign(format_args!(
                    "{} read n{from}->n{to} #{index}, meant for another node",
                    self.name()
                )),
                None => w
                    .checker
                    .foreign(format_args!("{} read {m:?}", self.name())),
            }
        }
    }

    /// The process dies: what it held is gone (the checker excuses it), its connections reset.
    pub(super) fn crash(self, w: &mut World) {
        let me = self.name();
        for (_, entry) in self.peers() {
            let p = entry.borrow();
            for m in p.session.peek(usize::MAX) {
                if let Some((from, to, index)) = decode(m) {
                    w.checker.excuse(&name(from), &name(to), index);
                }
            }
        }
        w.checker.sender_crashed(&me);
        for link in &self.links {
            w.net.close(link.conn, link.end, w.now);
        }
    }
}
