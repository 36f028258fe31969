//! The options `listen` and `send` share for the size of a message and the liveness of a
//! connection.

use std::time::Duration;

use anyhow::bail;
use networkio::{NodeBuilder, NodeConfig};

use crate::args::UsageError;

/// Most bytes MessagePack adds to a string: the `str 32` header (a marker and a 4-byte length).
/// The CLI sends each message as a string, and its limit is on the string the user gives, so
/// the node's limit (on the encoded payload) is this much larger.
const STRING_OVERHEAD: usize = 5;

/// Message size and connection liveness.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Limits and timers")]
pub(crate) struct LimitArgs {
    /// Largest message, in bytes of UTF-8 text (a line of stdin without its line ending, or a
    /// MESSAGE argument): `65536`, `64KiB`, `1MiB`. Both sides must allow the messages they
    /// exchange: a peer drops a connection that carries a larger one.
    #[arg(long, value_name = "BYTES", default_value = "1MiB", value_parser = crate::args::bytes)]
    max_message: usize,

    /// Send a heartbeat after this long without sending anything: seconds (`0.5`) or a number
    /// with a unit (`500ms`, `5s`). Sooner if the peer's idle timeout asks for it: each side
    /// sends at least three heartbeats per idle timeout of the other. [default: 5s]
    #[arg(long, value_name = "DURATION", value_parser = crate::args::duration)]
    heartbeat: Option<Duration>,

    /// Drop a connection (and reconnect) after this long without receiving anything, not even
    /// a heartbeat: detects a dead peer or link. At least 100ms, and more than --heartbeat
    /// (else a usage error). [default: 20s]
    #[arg(long, value_name = "DURATION", value_parser = crate::args::duration)]
    idle_timeout: Option<Duration>,
}

impl LimitArgs {
    /// The largest message the user may give, in bytes.
    pub(crate) fn max_message(&self) -> usize {
        self.max_message
    }

    /// Configures `builder` with these limits. Contradicting options are a [`UsageError`].
    pub(crate) fn apply(&self, builder: NodeBuilder) -> anyhow::Result<NodeBuilder> {
        let defaults = NodeConfig::default().protocol;
        let heartbeat = self.heartbeat.unwrap_or(defaults.heartbeat_interval);
        let idle_timeout = self.idle_timeout.unwrap_or(defaults.idle_timeout);
        if idle_timeout <= heartbeat {
            bail!(UsageError(format!(
                "--idle-timeout ({}) must be more than --heartbeat ({})",
                humantime::format_duration(idle_timeout),
                humantime::format_duration(heartbeat),
            )));
        }
        if idle_timeout < Duration::from_millis(100) {
            bail!(UsageError(
                "--idle-timeout must be at least 100ms".to_owned()
            ));
        }
        let encoded = self.max_message.saturating_add(STRING_OVERHEAD);
        // The inbox must hold one message of the largest size.
        let inbox = defaults.inbox;
        Ok(builder
            .max_message_size(encoded)
            .inbox(inbox.messages, inbox.bytes.max(encoded))
            .heartbeat(heartbeat, idle_timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_overhead_covers_every_string_header() {
        for len in [0, 31, 32, 255, 256, 65_535, 65_536, 1 << 20] {
            let text = "x".repeat(len);
            let encoded = networkio::codec::encode(&text).expect("encode");
            assert!(
                encoded.len() <= len + STRING_OVERHEAD,
                "{len}: {}",
                encoded.len()
            );
        }
    }
}
