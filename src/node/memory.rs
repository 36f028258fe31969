//! The node-wide memory bounds that span peers: the inbox budget the sessions' grants respect
//! (see [`InboxBudget`]), and the bytes handed back by lost sessions that wait for the
//! application, beyond which `send` waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

use super::NodeConfig;
use crate::proto::InboxBudget;

pub(crate) struct Memory {
    pub(crate) inbox: Arc<InboxBudget>,
    /// Woken (one waiter at a time, see `InboxBudget`) when inbox budget frees while sessions
    /// wait for it: the connection grants what it can now take and passes the turn on.
    pub(crate) inbox_freed: Arc<Notify>,
    handed_back_limit: usize,
    /// Payload bytes handed back by lost sessions and not yet taken by the application.
    handed_back: AtomicUsize,
    /// Woken (all waiters) when handed-back bytes fall back within their bound.
    pub(crate) handed_back_taken: Notify,
}

impl Memory {
    pub(crate) fn new(config: &NodeConfig) -> Arc<Memory> {
        let inbox_freed = Arc::new(Notify::new());
        let wake = inbox_freed.clone();
        let inbox = InboxBudget::new(config.inbox_budget, config.max_sessions, move || {
            wake.notify_one()
        });
        Arc::new(Memory {
            inbox,
            inbox_freed,
            handed_back_limit: config.max_handed_back_bytes,
            handed_back: AtomicUsize::new(0),
            handed_back_taken: Notify::new(),
        })
    }

    /// A lost session handed `bytes` back (they cannot be refused: they are the application's).
    pub(crate) fn handed_back(&self, bytes: usize) {
        self.handed_back.fetch_add(bytes, Ordering::SeqCst);
    }

    /// The application took `bytes` of handed-back messages.
    pub(crate) fn taken_back(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let before = self.handed_back.fetch_sub(bytes, Ordering::SeqCst);
        if before > self.handed_back_limit && before.saturating_sub(bytes) <= self.handed_back_limit
        {
            self.handed_back_taken.notify_waiters();
        }
    }

    /// Whether handed-back bytes exceed their bound: `send` waits (`try_send` fails with
    /// `Full`) until the application takes some.
    pub(crate) fn sending_paused(&self) -> bool {
        self.handed_back.load(Ordering::Relaxed) > self.handed_back_limit
    }

    /// Payload bytes handed back and not yet taken.
    pub(crate) fn handed_back_bytes(&self) -> usize {
        self.handed_back.load(Ordering::Relaxed)
    }
}
