//! Dialing: the first connection, then reconnection with capped exponential backoff and jitter
//! for as long as the node lives and no other connection serves the session; fresh connections
//! raced against a link the session suspects dead.
//!
//! The decisions (whom a dialer serves, the backoff, when to race) are the sans-IO core's
//! ([`crate::proto::redial`]); this file resolves, connects and runs connections.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::task::{JoinError, JoinSet};

use super::driver::{self, End, Origin, Outcome};
use super::peer::Peer;
use super::{NodeConfig, NodeShared, expiry};
use crate::error::{Error, Result};
use crate::proto::redial::{Answer, Redial};

/// Where [`Node::connect`](crate::Node::connect) dials: a `"host:port"` string, a host and a
/// port, or socket addresses. A host name is resolved again before every attempt, so a peer
/// that moves to another address is found there.
#[derive(Debug, Clone)]
pub struct DialAddr(Target);

#[derive(Debug, Clone)]
enum Target {
    /// `"host:port"`.
    Name(String),
    /// A host and a port.
    NamePort(String, u16),
    /// Addresses, tried in order.
    Addrs(Vec<SocketAddr>),
}

impl DialAddr {
    /// The addresses to try now.
    async fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        let addrs: Vec<SocketAddr> = match &self.0 {
            Target::Name(name) => tokio::net::lookup_host(name.as_str()).await?.collect(),
            Target::NamePort(host, port) => tokio::net::lookup_host((host.as_str(), *port))
                .await?
                .collect(),
            Target::Addrs(addrs) => addrs.clone(),
        };
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "address resolved to nothing",
            ));
        }
        Ok(addrs)
    }
}

impl From<&str> for DialAddr {
    fn from(s: &str) -> Self {
        DialAddr(Target::Name(s.to_owned()))
    }
}

impl From<String> for DialAddr {
    fn from(s: String) -> Self {
        DialAddr(Target::Name(s))
    }
}

impl From<&String> for DialAddr {
    fn from(s: &String) -> Self {
        DialAddr(Target::Name(s.clone()))
    }
}

impl From<(&str, u16)> for DialAddr {
    fn from((host, port): (&str, u16)) -> Self {
        DialAddr(Target::NamePort(host.to_owned(), port))
    }
}

impl From<(String, u16)> for DialAddr {
    fn from((host, port): (String, u16)) -> Self {
        DialAddr(Target::NamePort(host, port))
    }
}

impl From<SocketAddr> for DialAddr {
    fn from(addr: SocketAddr) -> Self {
        DialAddr(Target::Addrs(vec![addr]))
    }
}

impl From<SocketAddrV4> for DialAddr {
    fn from(addr: SocketAddrV4) -> Self {
        SocketAddr::V4(addr).into()
    }
}

impl From<SocketAddrV6> for DialAddr {
    fn from(addr: SocketAddrV6) -> Self {
        SocketAddr::V6(addr).into()
    }
}

impl From<(IpAddr, u16)> for DialAddr {
    fn from(addr: (IpAddr, u16)) -> Self {
        SocketAddr::from(addr).into()
    }
}

impl From<(Ipv4Addr, u16)> for DialAddr {
    fn from(addr: (Ipv4Addr, u16)) -> Self {
        SocketAddr::from(addr).into()
    }
}

impl From<(Ipv6Addr, u16)> for DialAddr {
    fn from(addr: (Ipv6Addr, u16)) -> Self {
        SocketAddr::from(addr).into()
    }
}

impl From<&[SocketAddr]> for DialAddr {
    fn from(addrs: &[SocketAddr]) -> Self {
        DialAddr(Target::Addrs(addrs.to_vec()))
    }
}

impl From<Vec<SocketAddr>> for DialAddr {
    fn from(addrs: Vec<SocketAddr>) -> Self {
        DialAddr(Target::Addrs(addrs))
    }
}

/// What a dialed connection's driver shares with its dialer: the check of the node that
/// answered, and the signal that the link is suspect.
#[derive(Debug)]
pub(crate) struct Dialing {
    redial: Mutex<Redial>,
    /// Notified by the driver while the session suspects the link.
    pub(crate) suspect: Notify,
}

impl Dialing {
    fn new(config: &NodeConfig, serves: Option<&str>) -> Self {
        let (initial, max) = (config.reconnect_initial, config.reconnect_max);
        let redial = match serves {
            Some(name) => Redial::serving(name, initial, max),
            None => Redial::new(initial, max),
        };
        Dialing {
            redial: Mutex::new(redial),
            suspect: Notify::new(),
        }
    }

    /// The node called `name` answered: attach it, or refuse it.
    pub(crate) fn answer(&self, name: &str) -> Answer {
        self.redial.lock().on_answer(name)
    }

    fn serves(&self) -> Option<String> {
        self.redial.lock().serves().map(str::to_owned)
    }
}

pub(crate) async fn connect(shared: Arc<NodeShared>, addr: DialAddr) -> Result<Peer> {
    if shared.closing.is_cancelled() {
        return Err(Error::NodeClosed);
    }
    let addrs = addr.resolve().await?;
    let permit = permit(&shared)?;
    let stream = dial_any(&shared, &addrs, shared.config.connect_timeout).await?;
    let (tx, rx) = oneshot::channel();
    let dialing = Arc::new(Dialing::new(&shared.config, None));
    shared.tasks.spawn(redial_loop(
        shared.clone(),
        Arc::new(addr),
        dialing,
        stream,
        permit,
        tx,
    ));
    rx.await.map_err(|_| Error::NodeClosed)?
}

fn permit(shared: &NodeShared) -> Result<OwnedSemaphorePermit> {
    shared
        .connections
        .clone()
        .try_acquire_owned()
        .map_err(|_| Error::ConnectionLimit {
            max: shared.config.max_connections,
        })
}

async fn dial_any(
    shared: &NodeShared,
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<TcpStream> {
    // A shutdown does not wait for a connect attempt to time out.
    tokio::select! {
        stream = connect_any(addrs, timeout) => stream,
        () = shared.closing.cancelled() => Err(Error::NodeClosed),
    }
}

/// A redial: one attempt given the full `connect_timeout`, and while it has not connected,
/// another every `failover.interval` (each given `failover.connect_timeout`, at most
/// `failover.max_in_flight` at once), the first to connect winning. On a link that dropped
/// everything for a while (longer than the idle timeout, so the old connection is gone), an
/// attempt whose SYN was lost would otherwise wait for TCP's SYN retransmission (1 s, then 3 s,
/// ...) after the link returns. An address that refuses fails at once, as one attempt would.
/// The first attempt holds `permit`; every further one needs a connection permit of its own
/// (see [`Attempts`]). The winner comes with the permit it held.
async fn dial_staggered(
    shared: &NodeShared,
    addrs: Vec<SocketAddr>,
    permit: OwnedSemaphorePermit,
) -> Result<(TcpStream, OwnedSemaphorePermit)> {
    let race = shared.config.failover;
    let addrs = Arc::new(addrs);
    let mut attempts = Attempts::new(shared.connections.clone());
    let connect = |timeout: Duration| {
        let addrs = addrs.clone();
        async move { connect_any(&addrs, timeout).await }
    };
    attempts.start(Some(permit), connect(shared.config.connect_timeout));
    let start = tokio::time::Instant::now();
    let mut tick = tokio::time::interval_at(start + race.interval, race.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            joined = attempts.join_next() => match joined {
                Some(Ok((Ok(stream), permit))) => return Ok((stream, permit)),
                Some(Ok((Err(e), _))) if attempts.is_empty() => return Err(e),
                Some(Err(e)) if attempts.is_empty() => {
                    return Err(Error::Io(io::Error::other(e.to_string())));
                }
                _ => {}
            },
            _ = tick.tick() => {
                if race.may_start(attempts.len()) {
                    // Without a permit, nothing starts: tried again at the next tick.
                    attempts.start(None, connect(race.connect_timeout));
                }
            }
            () = shared.closing.cancelled() => return Err(Error::NodeClosed),
        }
    }
}

/// Connect attempts in flight, each holding a connection permit from the moment it starts, so
/// that attempts count against `max_connections` as connections do: a node whose dialed peers
/// all fail over at once (a partition) opens no more sockets than the cap, not
/// `failover.max_in_flight` per peer. An attempt without a permit is not started; the racing
/// loops try again at their next interval.
struct Attempts<T> {
    connections: Arc<Semaphore>,
    set: JoinSet<(Result<T>, OwnedSemaphorePermit)>,
}

impl<T: Send + 'static> Attempts<T> {
    fn new(connections: Arc<Semaphore>) -> Self {
        Attempts {
            connections,
            set: JoinSet::new(),
        }
    }

    fn len(&self) -> usize {
        self.set.len()
    }

    fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Starts `connect` holding `permit`, or a permit of its own if none is given. Returns
    /// whether it started: not without a permit.
    fn start<F>(&mut self, permit: Option<OwnedSemaphorePermit>, connect: F) -> bool
    where
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let permit = match permit {
            Some(permit) => permit,
            None => match self.connections.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => return false,
            },
        };
        self.set.spawn(async move { (connect.await, permit) });
        true
    }

    /// The next attempt to finish, with the permit it held (dropping it gives it back).
    async fn join_next(
        &mut self,
    ) -> Option<std::result::Result<(Result<T>, OwnedSemaphorePermit), JoinError>> {
        self.set.join_next().await
    }
}

async fn connect_any(addrs: &[SocketAddr], timeout: Duration) -> Result<TcpStream> {
    let mut last = Error::Io(io::Error::new(
        io::ErrorKind::InvalidInput,
        "address resolved to nothing",
    ));
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = Error::Io(e),
            Err(_) => last = Error::Timeout("connecting"),
        }
    }
    Err(last)
}

/// [`redial_loop`] with its type spelled out: a dialer racing fresh connections starts dialers
/// of its own, and the compiler cannot see through that cycle.
fn redial_task(
    shared: Arc<NodeShared>,
    target: Arc<DialAddr>,
    dialing: Arc<Dialing>,
    first: TcpStream,
    first_permit: OwnedSemaphorePermit,
    ready: oneshot::Sender<Result<Peer>>,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(redial_loop(
        shared,
        target,
        dialing,
        first,
        first_permit,
        ready,
    ))
}

/// Runs the first connection, answers `ready`, then keeps the session connected: redials
/// (resolving the address again each time) after the connection ends, and races fresh
/// connections against it while it is suspect.
async fn redial_loop(
    shared: Arc<NodeShared>,
    target: Arc<DialAddr>,
    dialing: Arc<Dialing>,
    first: TcpStream,
    first_permit: OwnedSemaphorePermit,
    ready: oneshot::Sender<Result<Peer>>,
) {
    let mut ready = Some(ready);
    let mut next = Some((first, first_permit));
    let mut known_peer = None;
    loop {
        if let Some((stream, permit)) = next.take() {
            let outcome = run_watching(&shared, &target, &dialing, stream, &mut ready).await;
            drop(permit);
            if let Some(peer) = outcome.peer {
                known_peer = Some(peer);
            }
            if let Some(tx) = ready.take() {
                // The first connection never completed its handshake.
                let answer = match (&known_peer, outcome.end.superseded()) {
                    // Crossed with the peer's own connection to us: that one serves the session.
                    (Some(peer), true) => Ok(Peer::from_inner(peer.clone())),
                    _ => Err(outcome.end.into_error()),
                };
                let _ = tx.send(answer);
                return;
            }
            if outcome.established {
                dialing.redial.lock().on_established();
            }
            if outcome.end.superseded() || matches!(outcome.end, End::Shutdown | End::Aborted) {
                return; // another connection (and its dialer) serves the session now
            }
        }
        let Some(peer) = known_peer.as_ref() else {
            return;
        };
        let delay = dialing.redial.lock().next_delay(rand::random());
        let now = super::clock::now();
        // A delay too long to represent waits a year (and still ends at shutdown).
        let until = now
            .checked_add(delay)
            .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
            .unwrap_or(now);
        expiry::idle(&shared, peer, Some(until)).await;
        if shared.closing.is_cancelled() || peer.lock().session.link_id().is_some() {
            return; // shut down, or the peer reconnected to us meanwhile
        }
        let Ok(permit) = permit(&shared) else {
            continue;
        };
        let attempt = match target.resolve().await {
            Ok(addrs) => dial_staggered(&shared, addrs, permit).await,
            Err(e) => Err(Error::Io(e)),
        };
        match attempt {
            Ok(connected) => next = Some(connected),
            Err(e) => {
                tracing::debug!(node = %shared.name, peer = %peer.name, error = %e, "redial failed")
            }
        }
    }
}

/// Runs one dialed connection; whenever its session suspects the link, races fresh
/// connections against it until the suspicion ends or one of them takes the session over.
async fn run_watching(
    shared: &Arc<NodeShared>,
    target: &Arc<DialAddr>,
    dialing: &Arc<Dialing>,
    stream: TcpStream,
    ready: &mut Option<oneshot::Sender<Result<Peer>>>,
) -> Outcome {
    let run = driver::run(shared, stream, Origin::Dialed, ready, None, Some(dialing));
    tokio::pin!(run);
    loop {
        tokio::select! {
            outcome = &mut run => return outcome,
            () = dialing.suspect.notified() => {
                tokio::select! {
                    outcome = &mut run => return outcome,
                    () = race(shared, target, dialing) => {}
                }
            }
        }
    }
}

/// One attempt every `failover.interval` while the link stays suspect (at most
/// `failover.max_in_flight` connecting at once, each given `failover.connect_timeout` and
/// holding a connection permit: without one, none starts until the next interval). The
/// first that connects runs the handshake as a dialer of its own for the same peer: once it
/// establishes, attaching it replaced the suspect link (whose driver then ends, and its dialer
/// with it) and the session resumed on it. Returns when that happened or the link recovered.
async fn race(shared: &Arc<NodeShared>, target: &Arc<DialAddr>, dialing: &Dialing) {
    let Some(name) = dialing.serves() else {
        return;
    };
    let peer = {
        let peers = shared.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.get(&name).cloned()
    };
    let Some(peer) = peer else {
        return;
    };
    if !peer.lock().session.is_suspect() {
        return; // a stale notification: the link recovered, or is gone
    }
    let race = shared.config.failover;
    tracing::info!(
        node = %shared.name,
        peer = %name,
        "link suspect: dialing fresh connections alongside"
    );
    let mut attempts = Attempts::new(shared.connections.clone());
    let mut takeover: Option<oneshot::Receiver<Result<Peer>>> = None;
    let mut tick = tokio::time::interval(race.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if takeover.is_some() {
                    continue;
                }
                if !peer.lock().session.is_suspect() {
                    tracing::debug!(node = %shared.name, peer = %name, "link no longer suspect");
                    return;
                }
                if race.may_start(attempts.len()) {
                    let target = target.clone();
                    let timeout = race.connect_timeout;
                    let started = attempts.start(None, async move {
                        let addrs = target.resolve().await.map_err(Error::Io)?;
                        connect_any(&addrs, timeout).await
                    });
                    if !started {
                        tracing::debug!(node = %shared.name, peer = %name, "failover attempt waits for a connection permit");
                    }
                }
            }
            Some(joined) = attempts.join_next() => {
                let Ok((Ok(stream), permit)) = joined else {
                    continue;
                };
                if takeover.is_some() || shared.closing.is_cancelled() {
                    continue;
                }
                let (tx, rx) = oneshot::channel();
                let dialing = Arc::new(Dialing::new(&shared.config, Some(&name)));
                shared.tasks.spawn(redial_task(
                    shared.clone(),
                    target.clone(),
                    dialing,
                    stream,
                    permit,
                    tx,
                ));
                takeover = Some(rx);
            }
            answer = answered(&mut takeover) => {
                takeover = None;
                match answer {
                    Some(Ok(_)) => {
                        tracing::info!(node = %shared.name, peer = %name, "session moved to a fresh connection");
                        return;
                    }
                    Some(Err(e)) => {
                        tracing::debug!(node = %shared.name, peer = %name, error = %e, "fresh connection failed");
                    }
                    None => return, // the node is closing
                }
            }
        }
    }
}

/// The takeover's answer; never without one.
async fn answered(takeover: &mut Option<oneshot::Receiver<Result<Peer>>>) -> Option<Result<Peer>> {
    match takeover {
        Some(rx) => rx.await.ok(),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::redial::Race;

    /// An attempt that ends with what the test sends it.
    fn attempt(
        attempts: &mut Attempts<u32>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Option<oneshot::Sender<Result<u32>>> {
        let (tx, rx) = oneshot::channel();
        let started = attempts.start(
            permit,
            async move { rx.await.unwrap_or(Err(Error::NodeClosed)) },
        );
        started.then_some(tx)
    }

    #[tokio::test]
    async fn failover_attempts_in_flight_hold_connection_permits() {
        // max_connections 2, one of them held by the suspect link being raced against.
        let connections = Arc::new(Semaphore::new(2));
        let _link = connections.clone().try_acquire_owned().unwrap();
        let race = Race::default();
        assert!(race.max_in_flight >= 3);
        let mut attempts = Attempts::new(connections.clone());
        // Three intervals: the race would start one attempt at each.
        let mut pending = Vec::new();
        for _ in 0..3 {
            if race.may_start(attempts.len()) {
                pending.extend(attempt(&mut attempts, None));
            }
        }
        assert_eq!(pending.len(), 1, "only one attempt fits under the cap");
        assert_eq!(attempts.len(), 1);
        assert_eq!(connections.available_permits(), 0);

        // A failed attempt gives its permit back: the next interval starts another.
        let _ = pending
            .pop()
            .unwrap()
            .send(Err(Error::Timeout("connecting")));
        let (result, permit) = attempts.join_next().await.unwrap().unwrap();
        assert!(result.is_err());
        drop(permit);
        assert_eq!(connections.available_permits(), 1);
        let tx = attempt(&mut attempts, None).expect("a permit is free again");
        assert!(attempt(&mut attempts, None).is_none());

        // The winner carries its permit on to the connection it becomes.
        let _ = tx.send(Ok(7));
        let (result, permit) = attempts.join_next().await.unwrap().unwrap();
        assert_eq!(result.unwrap(), 7);
        assert_eq!(connections.available_permits(), 0);
        drop(permit);
        assert_eq!(connections.available_permits(), 1);
        assert!(attempts.is_empty());
    }

    #[tokio::test]
    async fn a_redial_attempt_given_a_permit_starts_without_another() {
        let connections = Arc::new(Semaphore::new(1));
        let permit = connections.clone().try_acquire_owned().unwrap();
        let mut attempts = Attempts::new(connections.clone());
        let tx = attempt(&mut attempts, Some(permit)).expect("it holds the redial's permit");
        assert!(
            attempt(&mut attempts, None).is_none(),
            "a staggered second attempt waits for a permit"
        );
        let _ = tx.send(Ok(1));
        let (result, _permit) = attempts.join_next().await.unwrap().unwrap();
        assert_eq!(result.unwrap(), 1);
        assert_eq!(connections.available_permits(), 0);
    }
}
