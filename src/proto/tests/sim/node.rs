//! One simulated node process: the glue that plays the tokio driver's part around the sans-IO
//! pieces. It moves bytes between the simulated network and each connection's [`Handshake`] or
//! [`Session`], and applies what they report; every decision about which connection owns which
//! session (admission, key binding, crossed connections, replacement, link ends, expiry) is the
//! [`Endpoint`]'s and [`PeerRecord`]'s, and the application's notifications coalesce by
//! [`coalesce`], as in the node.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use rand::Rng;

use super::World;
use super::app::decode;
use super::net::{Ms, Proc};
use crate::proto::coalesce::{Kind, Pending};
use crate::proto::endpoint::{
    self, AttachRefusal, Endpoint, EndpointConfig, LinkEnd, LinkState, NewLink, Origin, PeerRecord,
    Usage,
};
use crate::proto::frame::{self, CloseCode, Frame};
use crate::proto::session::{LinkId, LostReason};
use crate::proto::{Handshake, Session, SessionEvent};

pub(super) fn name(node: usize) -> String {
    format!("n{node}")
}

pub(super) fn node_of(name: &str) -> Option<usize> {
    name.strip_prefix('n')?.parse().ok()
}

/// A peer's entry: what the node keeps per peer beside the endpoint's table.
#[derive(Debug)]
pub(super) struct Peer {
    /// The peer's node.
    pub(super) node: usize,
    pub(super) session: Session,
    pub(super) record: PeerRecord<usize>,
    /// (seq, stream index) of the messages of the current generation not acknowledged yet.
    pub(super) unacked: VecDeque<(u64, u64)>,
    /// Stream indexes handed back, not yet taken by the application.
    pub(super) handed_back: Vec<u64>,
    pub(super) pending: Pending,
    /// The last connection event the application received.
    pub(super) app_link: Option<Kind>,
    /// Whether the application holds a handle to the peer: it keeps the one `connect` gave it
    /// for the peers it dials, and drops the others after use.
    pub(super) held: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Entry(pub(super) Rc<RefCell<Peer>>);

impl endpoint::Entry for Entry {
    fn usage(&self) -> Usage {
        let p = self.0.borrow();
        p.record
            .usage(&p.session, usize::from(p.held), p.handed_back.len())
    }
}

/// This node's end of one connection.
#[derive(Debug)]
pub(super) struct Link {
    pub(super) conn: usize,
    pub(super) end: usize,
    /// The node this link dialed.
    target: Option<usize>,
    hs: Handshake,
    rbuf: BytesMut,
    /// The peer and the link's id once attached.
    attached: Option<(String, LinkId)>,
    /// The CLOSE this node sends as it ends the link (refused, replaced, failed), as the
    /// driver does.
    close: Option<CloseCode>,
    /// Over: its end is reported at this time. A driver's connection task reports its end a
    /// little after the session detached it (it releases the peer's lock and takes it again),
    /// and another connection may attach in between.
    ends_at: Option<Ms>,
}

#[derive(Debug)]
pub(super) struct Node {
    pub(super) proc: Proc,
    pub(super) endpoint: Endpoint<Entry>,
    pub(super) links: Vec<Link>,
    /// Nodes this one dials, with when to dial next (`None`: a dial of ours is under way).
    dials: Vec<(usize, Option<Ms>)>,
    /// The application's notification queue: at most one marker per (peer, kind).
    pub(super) queue: VecDeque<(Rc<RefCell<Peer>>, Kind)>,
}

impl Node {
    pub(super) fn new(proc: Proc, targets: &[usize], now: Ms) -> Node {
        Node {
            proc,
            endpoint: Endpoint::new(EndpointConfig {
                local_name: name(proc.0),
                max_sessions: 64,
                reclaim_interval: Duration::from_secs(1),
                names_pinned: true,
            }),
            links: Vec::new(),
            dials: targets.iter().map(|&t| (t, Some(now))).collect(),
            queue: VecDeque::new(),
        }
    }

    pub(super) fn name(&self) -> String {
        name(self.proc.0)
    }

    pub(super) fn peer(&self, node: usize) -> Option<Rc<RefCell<Peer>>> {
        self.endpoint.get(&name(node)).map(|e| e.0.clone())
    }

    /// Every peer entry, by node (a fixed order keeps runs reproducible).
    pub(super) fn peers(&self) -> Vec<(usize, Rc<RefCell<Peer>>)> {
        let mut peers: Vec<_> = self
            .endpoint
            .entries()
            .map(|e| (e.0.borrow().node, e.0.clone()))
            .collect();
        peers.sort_by_key(|p| p.0);
        peers
    }

    pub(super) fn targets(&self) -> impl Iterator<Item = usize> + '_ {
        self.dials.iter().map(|d| d.0)
    }

    pub(super) fn queue_is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    // ---- the driver's part ------------------------------------------------------------------

    /// One step of every connection and timer of this node at `w.now`.
    pub(super) fn step(&mut self, w: &mut World) {
        self.dial(w);
        for conn in w.accepts_for(self.proc) {
            self.open_link(w, conn, 1, None);
        }
        let mut i = 0;
        while i < self.links.len() {
            if self.links[i].ends_at.is_none() && !self.step_link(w, i) {
                let delay = w.rng.random_range(0..8);
                self.links[i].ends_at = Some(w.now + delay);
            }
            if self.links[i].ends_at.is_some_and(|at| at <= w.now) {
                let link = self.links.swap_remove(i);
                self.finish_link(w, link);
            } else {
                i += 1;
            }
        }
        // Peers without a link: only the expiry can be due.
        for (_, peer) in self.peers() {
            let mut p = peer.borrow_mut();
            let p = &mut *p;
            p.record.watch(&mut p.session, w.instant());
            self.apply_events(w, &peer, p);
        }
    }

    fn dial(&mut self, w: &mut World) {
        for d in 0..self.dials.len() {
            let (target, next) = self.dials[d];
            if next.is_none_or(|at| at > w.now) {
                continue;
            }
            // Served by a connection the target dialed: look again later.
            if self
                .peer(target)
                .is_some_and(|p| p.borrow().record.state() != LinkState::Disconnected)
            {
                self.dials[d].1 = Some(w.now + 50);
                continue;
            }
            let to = w.up(target);
            match w.net.dial(self.proc, to, w.now, &mut w.rng) {
                Ok(conn) => {
                    if let Some(to) = to {
                        w.accepts.push((to, conn));
                    }
                    self.dials[d].1 = None;
                    self.open_link(w, conn, 0, Some(target));
                }
                Err(retry) => self.dials[d].1 = Some(retry + w.rng.random_range(5..50)),
            }
        }
    }

    fn open_link(&mut self, w: &mut World, conn: usize, end: usize, target: Option<usize>) {
        let hs = Handshake::new(w.instant(), &self.name(), self.proc.1, &w.config);
        let mut hello = BytesMut::new();
        hs.write_hello(&mut hello);
        w.net.write(conn, end, hello.freeze(), w.now);
        self.links.push(Link {
            conn,
            end,
            target,
            hs,
            rbuf: BytesMut::new(),
            attached: None,
            close: None,
            ends_at: None,
        });
    }

    /// Moves link `i` along; `false` once it is over.
    fn step_link(&mut self, w: &mut World, i: usize) -> bool {
        let now = w.instant();
        let link = &mut self.links[i];
        let mut input = Vec::new();
        w.net.read(link.conn, link.end, w.now, &mut input);
        link.rbuf.extend_from_slice(&input);
        let ended = w.net.ended(link.conn, link.end, w.now);
        if link.attached.is_none() {
            match link.hs.handle_input(now, &mut link.rbuf) {
                Ok(None) if !ended => return true,
                Ok(None) => return false,
                Err(e) => {
                    link.close = e.close_code();
                    return false;
                }
                Ok(Some(hello)) => {
                    if !self.attach(w, i, &hello) {
                        return false;
                    }
                }
            }
        }
        let link = &self.links[i];
        let Some((peer_name, id)) = link.attached.clone() else {
            return false;
        };
        let Some(peer) = self.endpoint.get(&peer_name).map(|e| e.0.clone()) else {
            return false;
        };
        let mut p = peer.borrow_mut();
        let p = &mut *p;
        if p.session.link_id() != Some(id) {
            self.links[i].close = Some(CloseCode::Replaced);
            return false;
        }
        let link = &mut self.links[i];
        let mut result = p.session.handle_input(now, &mut link.rbuf);
        if result.is_ok() && link.rbuf.is_empty() {
            p.session.input_drained();
        }
        if result.is_ok() && p.session.poll_timeout().is_some_and(|t| t <= now) {
            result = p.session.handle_timeout(now);
        }
        if let Err(e) = &result {
            link.close = e.close_code();
        }
        let alive = result.is_ok() && !ended;
        if alive {
            let mut out = BytesMut::new();
            p.session.poll_transmit(now, &mut out, 1 << 16);
            w.net.write(link.conn, link.end, out.freeze(), w.now);
        }
        self.apply_events(w, &peer, p);
        alive
    }

    /// The HELLO of link `i` named a peer: admission and attachment, by the endpoint.
    fn attach(&mut self, w: &mut World, i: usize, hello: &crate::proto::PeerHello) -> bool {
        let now = w.instant();
        let (local_inc, config) = (self.proc.1, w.config);
        let held = node_of(&hello.name).is_some_and(|n| self.targets().any(|t| t == n));
        let Ok(entry) = self.endpoint.admit(&hello.name, now, || {
            Entry(Rc::new(RefCell::new(Peer {
                node: node_of(&hello.name).unwrap_or(usize::MAX),
                session: Session::new(now, local_inc, config),
                record: PeerRecord::new(),
                unacked: VecDeque::new(),
                handed_back: Vec::new(),
                pending: Pending::default(),
                app_link: None,
                held,
            })))
        }) else {
            self.links[i].close = Some(CloseCode::Busy);
            return false;
        };
        let peer = entry.0.clone();
        let link = &self.links[i];
        let origin = if link.target.is_some() {
            Origin::Dialed
        } else {
            Origin::Accepted
        };
        let nonce = w.rng.random::<u64>() | 1;
        let mut guard = peer.borrow_mut();
        let p = &mut *guard;
        let new = NewLink {
            hello,
            // Each node keeps its key across restarts (a key file).
            key: node_of(&hello.name),
            origin,
            deadline: link.hs.deadline(),
            nonce,
        };
        let attached = self
            .endpoint
            .attach(&mut p.record, &mut p.session, new, now);
        w.trace(format_args!(
            "{}/{} attach conn {} from {}/{} ({origin:?}): {attached:?}",
            self.name(),
            self.proc.1,
            self.links[i].conn,
            hello.name,
            hello.incarnation
        ));
        self.apply_events(w, &peer, p);
        drop(guard);
        match attached {
            Ok(attached) => {
                // A link it replaced sees that at its next step and closes.
                self.links[i].attached = Some((hello.name.clone(), attached.link));
                true
            }
            Err(refusal) => {
                self.links[i].close = Some(match refusal {
                    AttachRefusal::Crossed => CloseCode::Replaced,
                    AttachRefusal::NameInUse { .. } => CloseCode::NameInUse,
                });
                if self.endpoint.forget_if_unused(&hello.name) {
                    w.stats.forgotten += 1;
                }
                false
            }
        }
    }

    /// A link is over: closed here, and its end reported to the record.
    fn finish_link(&mut self, w: &mut World, link: Link) {
        if let Some(code) = link.close {
            let mut out = BytesMut::new();
            let reason = format!("{code:?}");
            frame::encode(&Frame::Close { code, reason }, &mut out);
            w.net.write(link.conn, link.end, out.freeze(), w.now);
        }
        w.net.close(link.conn, link.end, w.now);
        if let Some(target) = link.target {
            if let Some(d) = self.dials.iter_mut().find(|d| d.0 == target) {
                d.1 = Some(w.now + w.rng.random_range(5..60));
            }
        }
        let Some((peer_name, id)) = link.attached else {
            return;
        };
        let Some(peer) = self.endpoint.get(&peer_name).map(|e| e.0.clone()) else {
            return;
        };
        let mut guard = peer.borrow_mut();
        let p = &mut *guard;
        let end = p.record.link_ended(&mut p.session, id, w.instant());
        w.trace(format_args!(
            "{}/{} conn {} to {peer_name} ends ({:?}): {end:?}",
            self.name(),
            self.proc.1,
            link.conn,
            link.close
        ));
        if let LinkEnd::Ended { established: true } = end {
            self.push(&peer, p, Kind::Disconnected);
        }
        self.apply_events(w, &peer, p);
        drop(guard);
        if self.endpoint.forget_if_unused(&peer_name) {
            w.stats.forgotten += 1;
        }
    }

    /// Applies what the session reported, as the node's `apply_events` does.
    fn apply_events(&mut self, w: &mut World, entry: &Rc<RefCell<Peer>>, p: &mut Peer) {
        let me = self.proc.0;
        while let Some(event) = p.session.poll_event() {
            let peer_name = name(p.node);
            w.trace(format_args!(
                "{}/{} <- {peer_name}: {event:?}",
                name(me),
                self.proc.1
            ));
            match event {
                SessionEvent::Established { .. } => {
                    p.record.established();
                    self.push(entry, p, Kind::Connected);
                }
                SessionEvent::Received => self.push(entry, p, Kind::Message),
                SessionEvent::Delivered { up_to } => {
                    while p.unacked.front().is_some_and(|&(seq, _)| seq <= up_to) {
                        if let Some((_, index)) = p.unacked.pop_front() {
                            w.checker.acked(&name(me), &peer_name, index);
                        }
                    }
                    self.push(entry, p, Kind::Delivered);
                }
                SessionEvent::Lost {
                    unacked, reason, ..
                } => {
                    let got: Vec<u64> = unacked
                        .iter()
                        .map(|m| decode(m).map_or(u64::MAX, |(_, _, index)| index))
                        .collect();
                    let expected: Vec<u64> = p.unacked.drain(..).map(|(_, i)| i).collect();
                    if got != expected {
                        w.checker.fail(format_args!(
                            "{} Lost({reason:?}) handed back {got:?}, unacknowledged were \
                             {expected:?}",
                            name(me)
                        ));
                    }
                    let expected = match reason {
                        LostReason::PeerRestarted => true,
                        LostReason::Expired => w.expiry,
                        // Also after a crash: a HELLO the dead process sent, arriving after its
                        // successor connected, ends the successor's session at the peer (the
                        // incarnations are random, so which is newer cannot be told), and the
                        // successor then finds that session forgotten. Seed 21772 shows it.
                        LostReason::PeerForgot => w.expiry || w.stats.crashes > 0,
                        _ => false,
                    };
                    if !expected {
                        w.checker.fail(format_args!(
                            "{} lost its session with {peer_name}: {reason:?}",
                            name(me)
                        ));
                    }
                    w.stats.sessions_lost += 1;
                    if reason != LostReason::PeerRestarted {
                        w.stats.expired += 1;
                    }
                    w.checker.session_lost(format_args!(
                        "{} lost its session with {peer_name}: {reason:?}",
                        name(me)
                    ));
                    p.handed_back.extend(got);
                    p.record.session_lost();
                    self.push(entry, p, Kind::SessionLost);
                }
            }
        }
    }

    /// Queues a notification unless one of its kind is waiting (the marker holds the entry,
    /// as the node's holds the peer).
    fn push(&mut self, entry: &Rc<RefCell<Peer>>, p: &mut Peer, kind: Kind) {
        if p.pending.push(kind) {
            self.queue.push_back((entry.clone(), kind));
        }
    }
}
