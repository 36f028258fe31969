//! Refused handshakes, from both ends: `listen` reports each refusal on stderr (rate-limited, so
//! a flood cannot fill the log), and `send` explains why a listener refused it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use networkio::proto::CloseCode;
use networkio::{PublicKey, RefusalReason};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Most refusal lines printed per window; the rest are summarised once the window ends.
const LINES_PER_WINDOW: u32 = 10;
const WINDOW: Duration = Duration::from_secs(1);
/// Lines waiting for the printing task; beyond that they count as suppressed at once.
const BACKLOG: usize = 64;

/// What `listen` hands refusals to. Printing happens on a task of its own, so a burst never
/// holds up the event loop.
pub(crate) struct Reporter {
    lines: mpsc::Sender<String>,
    /// Refusals without a line of their own: counted by the node but not queued (see
    /// `Event::Refused::suppressed`), or finding the backlog full.
    suppressed: Arc<AtomicU64>,
}

impl Reporter {
    /// Starts the printing task (on stderr).
    pub(crate) fn start() -> Reporter {
        let (lines, rx) = mpsc::channel(BACKLOG);
        let suppressed = Arc::new(AtomicU64::new(0));
        tokio::spawn(print(rx, suppressed.clone()));
        Reporter { lines, suppressed }
    }

    /// Reports one `Event::Refused`.
    pub(crate) fn refused(
        &self,
        addr: SocketAddr,
        name: Option<&str>,
        key: Option<PublicKey>,
        reason: RefusalReason,
        suppressed: u64,
    ) {
        let line = describe(addr, name, key, reason);
        let dropped = u64::from(self.lines.try_send(line).is_err());
        let uncounted = suppressed.saturating_add(dropped);
        if uncounted > 0 {
            // Taken by the printing task before its next line or summary; the line just queued
            // (if any) wakes it.
            self.suppressed.fetch_add(uncounted, Ordering::Relaxed);
        }
    }
}

/// One refusal as a line: who, from where, why. The key is shown where it is the remedy (a
/// trust file needs it).
fn describe(
    addr: SocketAddr,
    name: Option<&str>,
    key: Option<PublicKey>,
    reason: RefusalReason,
) -> String {
    let who = match name {
        Some(name) => format!("refused {name} from {addr}"),
        None => format!("refused a connection from {addr}"),
    };
    match (reason, key) {
        (
            RefusalReason::NotAllowlisted
            | RefusalReason::KnownPeerMismatch
            | RefusalReason::KnownPeersUnwritable
            | RefusalReason::KnownPeersFull,
            Some(key),
        ) => format!("{who} with key {key}: {reason}"),
        _ => format!("{who}: {reason}"),
    }
}

async fn print(mut rx: mpsc::Receiver<String>, suppressed: Arc<AtomicU64>) {
    let mut limit = Limiter::new(LINES_PER_WINDOW, WINDOW);
    loop {
        let uncounted = suppressed.swap(0, Ordering::Relaxed);
        if uncounted > 0 {
            limit.suppress(Instant::now(), uncounted);
        }
        let flush_at = limit.flush_at();
        let report = tokio::select! {
            report = rx.recv() => report,
            () = sleep_until(flush_at) => {
                if let Some(n) = limit.flush(Instant::now()) {
                    eprintln!("{}", summary(n));
                }
                continue;
            }
        };
        let now = Instant::now();
        match report {
            None => {
                if let Some(n) = limit.take_suppressed() {
                    eprintln!("{}", summary(n));
                }
                return;
            }
            Some(line) => {
                if let Some(printed) = limit.offer(now) {
                    if let Some(n) = printed.summary {
                        eprintln!("{}", summary(n));
                    }
                    eprintln!("{line}");
                }
            }
        }
    }
}

fn summary(n: u64) -> String {
    let s = if n == 1 { "" } else { "s" };
    format!("{n} more refusal{s} suppressed")
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A line the limiter lets through, and the summary of what it suppressed before, if any.
#[derive(Debug, PartialEq, Eq)]
struct Printed {
    summary: Option<u64>,
}

/// At most `per_window` lines per fixed window; the rest are counted and summarised when the
/// window ends. Time is passed in.
#[derive(Debug)]
struct Limiter {
    per_window: u32,
    window: Duration,
    started: Option<Instant>,
    printed: u32,
    suppressed: u64,
}

impl Limiter {
    fn new(per_window: u32, window: Duration) -> Limiter {
        Limiter {
            per_window,
            window,
            started: None,
            printed: 0,
            suppressed: 0,
        }
    }

    fn roll(&mut self, now: Instant) {
        if self.started.is_none_or(|s| now >= s + self.window) {
            self.started = Some(now);
            self.printed = 0;
        }
    }

    /// Whether a line may be printed at `now`.
    fn offer(&mut self, now: Instant) -> Option<Printed> {
        self.roll(now);
        if self.printed < self.per_window {
            self.printed += 1;
            let summary = self.take_suppressed();
            Some(Printed { summary })
        } else {
            self.suppressed += 1;
            None
        }
    }

    /// Counts `n` refusals that have no line of their own.
    fn suppress(&mut self, now: Instant, n: u64) {
        self.roll(now);
        self.suppressed = self.suppressed.saturating_add(n);
    }

    /// When the suppressed count is due for its summary line.
    fn flush_at(&self) -> Option<Instant> {
        match (self.suppressed, self.started) {
            (0, _) | (_, None) => None,
            (_, Some(started)) => Some(started + self.window),
        }
    }

    /// The summary due at `now`, if any.
    fn flush(&mut self, now: Instant) -> Option<u64> {
        if self.flush_at().is_some_and(|at| now >= at) {
            self.started = None;
            self.take_suppressed()
        } else {
            None
        }
    }

    fn take_suppressed(&mut self) -> Option<u64> {
        (self.suppressed > 0).then(|| std::mem::take(&mut self.suppressed))
    }
}

/// What the refused side is told: the listener's own reason, and what to do about it. `None`
/// if the code names no refusal.
pub(crate) fn hint(code: CloseCode) -> Option<&'static str> {
    Some(match RefusalReason::from_close_code(code)? {
        RefusalReason::NotAllowlisted => {
            "its --trust file must list our --id with the public key of our --key"
        }
        RefusalReason::KnownPeerMismatch => {
            "its --known-peers file records another key for our --id: use the --key it knows, or \
             remove that line from its file"
        }
        RefusalReason::KnownPeersUnwritable => {
            "it cannot write its --known-peers file: its operator must fix that"
        }
        RefusalReason::KnownPeersFull => {
            "its --known-peers file is full, or pins as many names to our --key as it may: its \
             operator must raise --known-peers-max or --known-peers-per-key, or remove lines"
        }
        RefusalReason::NameInUse => {
            "another process with our --id is connected to it with another key; the name is \
             free once that connection ends, which for a process that died takes up to the \
             listener's idle timeout"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_prints_a_few_lines_per_window_and_summarises_the_rest() {
        let t0 = Instant::now();
        let mut limit = Limiter::new(3, WINDOW);
        for _ in 0..3 {
            assert_eq!(limit.offer(t0), Some(Printed { summary: None }));
        }
        for _ in 0..100 {
            assert_eq!(limit.offer(t0 + Duration::from_millis(10)), None);
        }
        limit.suppress(t0, 5);
        // The summary is due when the window ends, not before.
        assert_eq!(limit.flush_at(), Some(t0 + WINDOW));
        assert_eq!(limit.flush(t0 + Duration::from_millis(999)), None);
        assert_eq!(limit.flush(t0 + WINDOW), Some(105));
        assert_eq!(limit.flush_at(), None, "nothing left to summarise");
        // A new window prints again; a line after suppressions carries their summary.
        let t1 = t0 + WINDOW * 3;
        assert_eq!(limit.offer(t1), Some(Printed { summary: None }));
        limit.suppress(t1, 2);
        assert_eq!(limit.offer(t1), Some(Printed { summary: Some(2) }));
        assert_eq!(limit.take_suppressed(), None);
    }

    #[test]
    fn every_refusal_code_has_a_hint_and_others_none() {
        for code in [
            CloseCode::Unauthorized,
            CloseCode::NameInUse,
            CloseCode::KeyMismatch,
            CloseCode::TrustStoreFailed,
            CloseCode::TrustStoreFull,
        ] {
            assert!(hint(code).is_some(), "{code}");
        }
        assert_eq!(hint(CloseCode::Busy), None);
        assert_eq!(hint(CloseCode::Shutdown), None);
    }

    #[test]
    fn a_refusal_line_names_the_peer_the_address_and_the_reason() {
        let addr: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let line = describe(addr, Some("c1"), None, RefusalReason::NameInUse);
        assert_eq!(
            line,
            "refused c1 from 127.0.0.1:4000: the name is in use by another key"
        );
        let line = describe(addr, None, None, RefusalReason::ConnectionLimit);
        assert_eq!(
            line,
            "refused a connection from 127.0.0.1:4000: connection limit reached"
        );
    }
}
