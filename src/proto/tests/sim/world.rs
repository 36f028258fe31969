//! The scheduler: the virtual clock, the random schedule of application operations and faults,
//! and the checks at the end of a run.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::net::{Ms, Net, NetStats, Proc};
use super::node::{Node, name};
use crate::proto::coalesce::Kind;
use crate::proto::endpoint::LinkState;
use crate::proto::{Config, InboxLimits, WindowLimits};

/// How long the faults last; then the network heals and the run must settle within
/// [`SETTLE`].
const CHAOS: Ms = 3_000;
const SETTLE: Ms = 30_000;

/// What one run did, summed over runs for the report.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Stats {
    pub(crate) nodes: u64,
    pub(crate) sent: u64,
    pub(crate) reads: u64,
    pub(crate) crashes: u64,
    pub(crate) sessions_lost: u64,
    /// Sessions that ended as `Expired` or `PeerForgot`.
    pub(crate) expired: u64,
    /// Unused entries the endpoint dropped after a link's end.
    pub(crate) forgotten: u64,
    pub(crate) virtual_ms: u64,
    pub(crate) net: NetStats,
}

impl Stats {
    pub(crate) fn add(&mut self, o: &Stats) {
        self.nodes += o.nodes;
        self.sent += o.sent;
        self.reads += o.reads;
        self.crashes += o.crashes;
        self.sessions_lost += o.sessions_lost;
        self.expired += o.expired;
        self.forgotten += o.forgotten;
        self.virtual_ms += o.virtual_ms;
        let (n, m) = (&mut self.net, &o.net);
        n.connections += m.connections;
        n.refused_dials += m.refused_dials;
        n.cuts += m.cuts;
        n.silences += m.silences;
        n.partitions += m.partitions;
        n.bytes += m.bytes;
    }
}

/// The fault rates of a run (per virtual millisecond), drawn from its seed.
#[derive(Debug, Clone, Copy)]
struct Rates {
    send: f64,
    cut: f64,
    silence: f64,
    partition: f64,
    crash: f64,
}

/// Everything but the nodes' own state.
#[derive(Debug)]
pub(crate) struct World {
    pub(super) now: Ms,
    base: Instant,
    pub(super) rng: StdRng,
    pub(super) net: Net,
    /// Dialed connections the target process has not picked up yet.
    pub(super) accepts: Vec<(Proc, usize)>,
    pub(super) checker: networkio_checker::Checker,
    pub(super) config: Config,
    pub(super) stats: Stats,
    tracing: bool,
    /// Whether sessions may expire in this run.
    pub(super) expiry: bool,
    /// The process of each node while it is up.
    alive: Vec<Option<Proc>>,
}

impl World {
    pub(super) fn instant(&self) -> Instant {
        self.base + Duration::from_millis(self.now)
    }

    /// Prints what happens, with `NETWORKIO_SIM_TRACE` set (for replaying a seed).
    pub(super) fn trace(&self, what: std::fmt::Arguments<'_>) {
        if self.tracing {
            eprintln!("{:>6} ms {what}", self.now);
        }
    }

    pub(super) fn up(&self, node: usize) -> Option<Proc> {
        self.alive.get(node).copied().flatten()
    }

    pub(super) fn accepts_for(&mut self, proc: Proc) -> Vec<usize> {
        let mut mine = Vec::new();
        self.accepts.retain(|&(p, conn)| {
            if p == proc {
                mine.push(conn);
            }
            p != proc
        });
        mine
    }
}

/// Small windows and inbox, so that flow control, partial reads and replays happen within a
/// few messages; timers short enough that silent links and partitions reach them.
fn config() -> Config {
    let mut config = Config::default();
    config.set_max_message(256);
    config.window = WindowLimits {
        messages: 8,
        bytes: 4096,
        max_message: 256,
    };
    config.inbox = InboxLimits {
        messages: 6,
        bytes: 4096,
    };
    config.heartbeat_interval = Duration::from_millis(200);
    config.idle_timeout = Duration::from_millis(1000);
    config.handshake_timeout = Duration::from_millis(500);
    config.ack_delay = Duration::from_millis(5);
    // Longer than any run: a session ends only because a process died (unless a run shortens
    // it, see `run`).
    config.session_expiry = Duration::from_secs(600);
    config
}

/// Runs the simulation of `seed`; `Err` carries every failure, with the seed.
pub(crate) fn run(seed: u64) -> Result<Stats, String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = rng.random_range(2..=5usize);
    // Who dials whom: each pair at most once each way, sometimes both ways (crossed dials).
    let mut targets = vec![Vec::new(); n];
    for a in 0..n {
        for b in a + 1..n {
            match rng.random_range(0..10) {
                0..=3 => targets[a].push(b),
                4..=6 => targets[b].push(a),
                7 => {
                    targets[a].push(b);
                    targets[b].push(a);
                }
                _ => {}
            }
        }
    }
    let rates = Rates {
        send: rng.random_range(0.05..0.5),
        cut: rng.random_range(0.0..0.004),
        silence: rng.random_range(0.0..0.002),
        partition: rng.random_range(0.0..0.001),
        crash: rng.random_range(0.0..0.001),
    };
    // How often each node's application looks at its notifications (per ms): some are slow
    // readers, whose queued notifications coalesce and whose inboxes fill.
    let pace: Vec<f64> = (0..n)
        .map(|_| [0.5, 0.1, 0.01, 0.002][rng.random_range(0..4)])
        .collect();
    // A quarter of the runs let sessions expire: partitions and crashes outlast the expiry, and
    // the endpoint's expiry watch ends sessions (`Expired` here, `PeerForgot` at the peer).
    let mut config = config();
    let expiry = rng.random_bool(0.25);
    if expiry {
        config.session_expiry = Duration::from_millis(rng.random_range(300..2_000));
    }
    let mut w = World {
        now: 0,
        base: Instant::now(),
        rng,
        net: Net::default(),
        accepts: Vec::new(),
        checker: networkio_checker::Checker::with_seed(seed),
        config,
        tracing: std::env::var_os("NETWORKIO_SIM_TRACE").is_some(),
        expiry,
        stats: Stats {
            nodes: n as u64,
            ..Stats::default()
        },
        alive: (0..n).map(|i| Some((i, 1))).collect(),
    };
    let mut nodes: Vec<Option<Node>> = (0..n)
        .map(|i| Some(Node::new((i, 1), &targets[i], 0)))
        .collect();
    let mut incarnations = vec![1u64; n];
    let mut down_until: Vec<Ms> = vec![0; n];
    let mut settled = None;
    while w.now < CHAOS + SETTLE {
        let chaos = w.now < CHAOS;
        // Processes coming back (after the chaos, every one).
        for i in 0..n {
            if nodes[i].is_none() && (w.now >= down_until[i] || !chaos) {
                incarnations[i] += 1;
                let proc = (i, incarnations[i]);
                w.alive[i] = Some(proc);
                nodes[i] = Some(Node::new(proc, &targets[i], w.now));
            }
        }
        if chaos {
            inject(&mut w, &mut nodes, &mut down_until, rates);
        }
        for i in 0..n {
            if let Some(mut node) = nodes[i].take() {
                node.step(&mut w);
                // The application reacts at its own pace: notifications coalesce meanwhile.
                if w.rng.random_bool(pace[i]) {
                    let k = w.rng.random_range(1..4);
                    node.take_events(&mut w, k);
                }
                nodes[i] = Some(node);
            }
        }
        if !chaos && w.now % 10 == 0 && quiet(&nodes) {
            settled = Some(w.now);
            break;
        }
        w.now += 1;
    }
    w.stats.virtual_ms = w.now;
    w.stats.net = w.net.stats;
    w.stats.sent = w.checker.summary().sent;
    if settled.is_none() {
        w.checker.fail(format_args!(
            "did not settle within {SETTLE} ms after the faults: {}",
            describe(&nodes)
        ));
    }
    if settled.is_some() {
        // Every sender learned each message's fate: acknowledged or handed back.
        w.checker.check_settled();
    }
    // The application follows the events: it must end on the true state.
    for node in nodes.iter().flatten() {
        for (peer, entry) in node.peers() {
            let p = entry.borrow();
            let connected = p.record.state() == LinkState::Connected;
            let seen = p.app_link;
            if seen.is_some()
                && seen
                    != Some(if connected {
                        Kind::Connected
                    } else {
                        Kind::Disconnected
                    })
                || connected && seen.is_none()
            {
                w.checker.fail(format_args!(
                    "{}: {} is {:?} but the application's last event was {seen:?}",
                    node.name(),
                    name(peer),
                    p.record.state()
                ));
            }
        }
    }
    let summary = if w.stats.crashes == 0 && !w.expiry {
        w.checker.verdict().and_then(|s| {
            if s.handed_back == 0 && w.stats.sessions_lost == 0 {
                Ok(s)
            } else {
                Err(format!(
                    "seed {seed}: no process crashed and none expired, yet sessions ended: {s:?}"
                ))
            }
        })
    } else {
        w.checker.verdict()
    };
    summary.map(|_| w.stats)
}

/// One millisecond's worth of random operations and faults.
fn inject(w: &mut World, nodes: &mut [Option<Node>], down_until: &mut [Ms], r: Rates) {
    let n = nodes.len();
    if w.rng.random_bool(r.send) {
        let from = w.rng.random_range(0..n);
        let to = w.rng.random_range(0..n);
        if let Some(node) = nodes[from].as_mut().filter(|_| from != to) {
            let k = w.rng.random_range(1..6);
            node.send(w, to, k);
        }
    }
    let open: Vec<usize> = w.net.open().collect();
    if !open.is_empty() && w.rng.random_bool(r.cut) {
        let conn = open[w.rng.random_range(0..open.len())];
        let now = w.now;
        w.net.cut(conn, now, &mut w.rng);
    }
    if !open.is_empty() && w.rng.random_bool(r.silence) {
        let conn = open[w.rng.random_range(0..open.len())];
        let until = w.now + w.rng.random_range(20..2_000);
        w.net.silence(conn, until);
    }
    if w.rng.random_bool(r.partition) {
        let (a, b) = (w.rng.random_range(0..n), w.rng.random_range(0..n));
        let until = w.now + w.rng.random_range(50..2_500);
        if a != b {
            w.net.partition(a, b, w.now, until);
        }
    }
    if w.rng.random_bool(r.crash) {
        let i = w.rng.random_range(0..n);
        if let Some(node) = nodes[i].take() {
            w.stats.crashes += 1;
            w.trace(format_args!("n{i} crashes"));
            let proc = node.proc;
            node.crash(w);
            for conn in w.accepts_for(proc) {
                w.net.close(conn, 1, w.now);
            }
            w.alive[i] = None;
            down_until[i] = w.now + w.rng.random_range(0..400);
        }
    }
}

/// Every dial relation has an established session both ways, nothing is unacknowledged,
/// unread or waiting to be told.
fn quiet(nodes: &[Option<Node>]) -> bool {
    nodes.iter().all(|node| {
        let Some(node) = node else { return false };
        let linked = node.targets().all(|t| {
            let ours = node.peer(t);
            let theirs = nodes[t].as_ref().and_then(|n| n.peer(node.proc.0));
            [ours, theirs].iter().all(|p| {
                p.as_ref().is_some_and(|p| {
                    let p = p.borrow();
                    p.record.state() == LinkState::Connected && p.session.is_established()
                })
            })
        });
        linked
            && node.queue_is_empty()
            && node.peers().iter().all(|(_, p)| {
                let p = p.borrow();
                p.session.unacked_len() == 0 && p.session.inbox_len() == 0
            })
    })
}

fn describe(nodes: &[Option<Node>]) -> String {
    let mut out = String::new();
    for node in nodes.iter().flatten() {
        for (peer, p) in node.peers() {
            let p = p.borrow();
            out.push_str(&format!(
                "\n  {} -> {}: {:?}, established {}, unacked {}, inbox {}",
                node.name(),
                name(peer),
                p.record.state(),
                p.session.is_established(),
                p.session.unacked_len(),
                p.session.inbox_len()
            ));
        }
        out.push_str(&format!(
            "\n  {} queue empty: {}",
            node.name(),
            node.queue_is_empty()
        ));
    }
    out
}
