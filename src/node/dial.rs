//! Dialing: the first connection, then reconnection with capped exponential backoff and jitter
//! for as long as the node lives and no other connection serves the session.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{OwnedSemaphorePermit, oneshot};

use super::NodeShared;
use super::driver::{self, End, Origin};
use super::peer::Peer;
use super::watch;
use crate::error::{Error, Result};

pub(crate) async fn connect(shared: Arc<NodeShared>, addr: impl ToSocketAddrs) -> Result<Peer> {
    if shared.closing.is_cancelled() {
        return Err(Error::NodeClosed);
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(addr).await?.collect();
    let permit = permit(&shared)?;
    let stream = dial_any(&shared, &addrs).await?;
    let (tx, rx) = oneshot::channel();
    shared
        .tasks
        .spawn(redial_loop(shared.clone(), addrs, stream, permit, tx));
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

async fn dial_any(shared: &NodeShared, addrs: &[SocketAddr]) -> Result<TcpStream> {
    let mut last = None;
    for addr in addrs {
        let attempt = tokio::time::timeout(shared.config.connect_timeout, TcpStream::connect(addr));
        // A shutdown does not wait for a connect attempt to time out.
        let attempt = tokio::select! {
            attempt = attempt => attempt,
            () = shared.closing.cancelled() => return Err(Error::NodeClosed),
        };
        match attempt {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = Some(Error::Io(e)),
            Err(_) => last = Some(Error::Timeout("connecting")),
        }
    }
    Err(last.unwrap_or_else(|| {
        Error::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "address resolved to nothing",
        ))
    }))
}

/// Runs the first connection, answers `ready`, then keeps the session connected.
async fn redial_loop(
    shared: Arc<NodeShared>,
    addrs: Vec<SocketAddr>,
    first: TcpStream,
    first_permit: OwnedSemaphorePermit,
    ready: oneshot::Sender<Result<Peer>>,
) {
    let mut ready = Some(ready);
    let mut next = Some((first, first_permit));
    let mut backoff = Backoff::new(shared.config.reconnect_initial, shared.config.reconnect_max);
    let mut known_peer = None;
    loop {
        if let Some((stream, permit)) = next.take() {
            let outcome = driver::run(&shared, stream, Origin::Dialed, &mut ready, None).await;
            drop(permit);
            if let Some(peer) = outcome.peer {
                if known_peer.is_none() {
                    peer.lock().dial_addr = addrs.first().copied();
                }
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
                backoff.reset();
            }
            if outcome.end.superseded() || matches!(outcome.end, End::Shutdown | End::Aborted) {
                return; // another connection (and its dialer) serves the session now
            }
        }
        let Some(peer) = known_peer.as_ref() else {
            return;
        };
        let delay = backoff.next_delay();
        let now = super::clock::now();
        // A delay too long to represent waits a year (and still ends at shutdown).
        let until = now
            .checked_add(delay)
            .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
            .unwrap_or(now);
        watch::idle(&shared, peer, Some(until)).await;
        if shared.closing.is_cancelled() || peer.lock().session.link_id().is_some() {
            return; // shut down, or the peer reconnected to us meanwhile
        }
        let Ok(permit) = permit(&shared) else {
            continue;
        };
        match dial_any(&shared, &addrs).await {
            Ok(stream) => next = Some((stream, permit)),
            Err(e) => {
                tracing::debug!(node = %shared.name, peer = %peer.name, error = %e, "redial failed")
            }
        }
    }
}

/// Capped exponential backoff with jitter: the first retry is quick, later ones spread out.
#[derive(Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            current: initial,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.current = self.initial;
    }

    /// A delay uniformly drawn from [current/2, current], then doubles `current` up to `max`.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let high = self.current;
        self.current = self.current.saturating_mul(2).min(self.max);
        let low = high / 2;
        if high <= low {
            return high;
        }
        rand::rng().random_range(low..=high)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        for _ in 0..20 {
            assert!(b.next_delay() <= Duration::from_secs(1));
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
