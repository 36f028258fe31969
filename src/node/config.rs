//! [`NodeConfig`]: every limit and timer of a node, and their validation.

use std::time::Duration;

use tokio::sync::Semaphore;

use super::export;
use crate::error::{Error, Result};
use crate::proto;

/// Every limit and timer of a node. All explicit; see [`NodeConfig::default`] for the values.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NodeConfig {
    /// Protocol limits and timers: message size, windows, inbox, heartbeat, idle timeout,
    /// handshake deadline, session expiry.
    pub protocol: proto::Config,
    /// Most simultaneous connections (accepted and dialed); more are refused. Default 16,384.
    pub max_connections: usize,
    /// Most accepted connections still in their handshake; when full, the oldest is dropped
    /// for the newest. Default 256.
    pub max_pending_handshakes: usize,
    /// Most sessions (peers) the node keeps; connections naming new peers beyond it are refused.
    /// Memory per session is bounded by its window and inbox limits. Default 16,384.
    pub max_sessions: usize,
    /// First reconnect delay. Default 50 ms.
    pub reconnect_initial: Duration,
    /// Largest reconnect delay (the backoff doubles up to it, with jitter). Default 5 s.
    pub reconnect_max: Duration,
    /// Timeout of one TCP connect attempt. Default 10 s.
    pub connect_timeout: Duration,
    /// How long [`Node::shutdown`](super::Node::shutdown) waits for unacknowledged messages to be acknowledged by
    /// connected peers before closing. Default 5 s.
    pub shutdown_linger: Duration,
    /// Whether the node keeps node-wide totals and records them with the `metrics` facade
    /// (see [`NodeBuilder::metrics`](super::NodeBuilder::metrics)). Default on.
    pub metrics: bool,
    /// How often the node records its statistics with the `metrics` facade. Default 1 s.
    pub metrics_interval: Duration,
    /// Most [`Event::Refused`](super::Event::Refused) waiting in the event queue; further refusals are only counted
    /// (in the last one's `suppressed`) until the application takes some. 0 reports none.
    /// Default 64.
    pub max_queued_refusals: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            protocol: proto::Config::default(),
            max_connections: 16 * 1024,
            max_pending_handshakes: 256,
            max_sessions: 16 * 1024,
            reconnect_initial: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            shutdown_linger: Duration::from_secs(5),
            metrics: true,
            metrics_interval: export::DEFAULT_INTERVAL,
            max_queued_refusals: 64,
        }
    }
}

impl NodeConfig {
    pub(crate) fn validate(&self) -> Result<()> {
        let p = &self.protocol;
        let check = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(Error::InvalidConfig(what.to_owned()))
            }
        };
        check(p.window.messages > 0, "window messages must be > 0")?;
        check(p.inbox.messages > 0, "inbox messages must be > 0")?;
        check(p.inbox.bytes > 0, "inbox bytes must be > 0")?;
        check(
            p.window.max_message <= u32::MAX as usize - 64,
            "max message size must fit a 32-bit frame length",
        )?;
        check(
            p.max_frame_len >= p.window.max_message + proto::frame::DATA_OVERHEAD - 4,
            "max frame length must hold the largest message",
        )?;
        check(
            p.handshake_frame_len >= 300,
            "handshake frame limit must be >= 300 bytes",
        )?;
        check(
            p.idle_timeout > p.heartbeat_interval,
            "idle timeout must exceed the heartbeat interval",
        )?;
        check(
            p.idle_timeout >= Duration::from_millis(100),
            "idle timeout must be at least 100 ms",
        )?;
        check(p.window.max_message > 0, "max message size must be > 0")?;
        check(
            p.inbox.bytes >= p.window.max_message,
            "inbox bytes must hold at least one message of the maximum size",
        )?;
        check(
            !p.handshake_timeout.is_zero(),
            "handshake timeout must be > 0",
        )?;
        check(self.max_connections > 0, "max connections must be > 0")?;
        check(
            self.max_connections <= Semaphore::MAX_PERMITS,
            "max connections is too large",
        )?;
        check(
            self.max_pending_handshakes > 0,
            "max pending handshakes must be > 0",
        )?;
        check(self.max_sessions > 0, "max sessions must be > 0")?;
        check(
            !self.metrics_interval.is_zero(),
            "metrics interval must be > 0",
        )?;
        check(
            self.reconnect_initial <= self.reconnect_max,
            "reconnect initial delay must not exceed the maximum",
        )
    }
}
