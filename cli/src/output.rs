//! Printing received messages on stdout, one line each: `PEER-ID<TAB>MESSAGE`.
//!
//! Lines are written by a dedicated thread so a slow stdout never blocks the runtime. What may
//! wait for it is bounded in bytes, not in batches: a reader claims room for a batch
//! ([`Printer::reserve`]) before it takes messages from the node, and the writer gives the room
//! back once the batch is written. While stdout is slow the readers wait for room, the messages
//! wait in the node's inbox, and once that is full flow control closes the senders' windows: a
//! slow stdout slows the senders instead of growing memory. Each run of queued batches is
//! written to a locked, buffered stdout and flushed once, so every line is complete and visible
//! as soon as its batch is written.

use std::io::{BufWriter, Write};
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use anyhow::Context;
use tokio::sync::{Notify, mpsc};

/// Most bytes of lines taken from the node and not yet written to stdout: the batches waiting
/// for the writer and the room claimed by readers filling theirs. A batch may exceed its claim
/// by less than one line, so the total stays under this plus one line per reader.
pub(crate) const QUEUED_BYTES: usize = 1 << 20;

/// The room a reader claims for one batch.
pub(crate) const BATCH_BYTES: usize = 64 << 10;

/// Appends `message` to `out`, escaping `\` as `\\`, newline as `\n` and tab as `\t`, so that
/// the message takes exactly one line and one field.
pub(crate) fn escape_into(out: &mut String, message: &str) {
    for c in message.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
}

/// Formats messages from `peer` as lines `PEER-ID<TAB>MESSAGE\n`.
pub(crate) fn format_lines<'a>(peer: &str, messages: impl IntoIterator<Item = &'a str>) -> String {
    let mut text = String::new();
    for message in messages {
        push_line(&mut text, peer, message);
    }
    text
}

/// Appends the line `PEER-ID<TAB>MESSAGE\n` to `out`.
pub(crate) fn push_line(out: &mut String, peer: &str, message: &str) {
    out.push_str(peer);
    out.push('\t');
    escape_into(out, message);
    out.push('\n');
}

/// A handle to the stdout writer thread. Clone it freely; the thread ends once every clone is
/// dropped and everything queued has been written.
#[derive(Debug, Clone)]
pub(crate) struct Printer {
    tx: mpsc::UnboundedSender<String>,
    room: Arc<Room>,
}

/// The bytes taken from the node and not yet written, bounded by `limit`.
#[derive(Debug)]
struct Room {
    limit: usize,
    state: Mutex<RoomState>,
    /// Wakes the readers waiting for room (when the writer frees some, or stops).
    freed: Notify,
}

#[derive(Debug, Default)]
struct RoomState {
    /// Bytes queued for the writer or claimed by readers.
    queued: usize,
    /// The most `queued` has been.
    peak: usize,
    /// The writer has stopped (stdout failed, or every printer is gone).
    closed: bool,
}

impl Room {
    fn lock(&self) -> MutexGuard<'_, RoomState> {
        // The state is a few counters, consistent after any panic.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replaces a claim of `claimed` bytes by `bytes` queued, in one step.
    fn exchange(&self, claimed: usize, bytes: usize) {
        {
            let mut state = self.lock();
            state.queued = state.queued.saturating_sub(claimed).saturating_add(bytes);
            state.peak = state.peak.max(state.queued);
        }
        if bytes < claimed {
            self.freed.notify_waiters();
        }
    }

    fn release(&self, bytes: usize) {
        {
            let mut state = self.lock();
            state.queued = state.queued.saturating_sub(bytes);
        }
        self.freed.notify_waiters();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.freed.notify_waiters();
    }
}

/// Room claimed by a reader for the batch it is filling; given back when dropped unless it was
/// printed.
#[derive(Debug)]
pub(crate) struct Slot {
    room: Arc<Room>,
    /// The bytes still claimed: [`BATCH_BYTES`] until printed.
    claimed: usize,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.claimed > 0 {
            self.room.release(self.claimed);
        }
    }
}

/// Marks the room closed when the writer thread ends, however it ends.
struct CloseOnExit(Arc<Room>);

impl Drop for CloseOnExit {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl Printer {
    /// Starts the writer thread on stdout.
    pub(crate) fn start() -> anyhow::Result<(Printer, JoinHandle<std::io::Result<()>>)> {
        Printer::start_with(|| std::io::stdout().lock(), QUEUED_BYTES)
    }

    /// Starts the writer thread on the writer `open` makes (on that thread), with at most
    /// `limit` bytes taken and not yet written.
    pub(crate) fn start_with<W: Write>(
        open: impl FnOnce() -> W + Send + 'static,
        limit: usize,
    ) -> anyhow::Result<(Printer, JoinHandle<std::io::Result<()>>)> {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let room = Arc::new(Room {
            limit,
            state: Mutex::new(RoomState::default()),
            freed: Notify::new(),
        });
        let writer_room = room.clone();
        let thread = std::thread::Builder::new()
            .name("stdout".into())
            .spawn(move || {
                let _close = CloseOnExit(writer_room.clone());
                let mut out = BufWriter::with_capacity(64 * 1024, open());
                while let Some(batch) = rx.blocking_recv() {
                    out.write_all(batch.as_bytes())?;
                    let mut written = batch.len();
                    // Write whatever else is already queued, then flush once.
                    while let Ok(batch) = rx.try_recv() {
                        out.write_all(batch.as_bytes())?;
                        written += batch.len();
                    }
                    out.flush()?;
                    writer_room.release(written);
                }
                out.flush()
            })
            .context("could not start the stdout writer thread")?;
        Ok((Printer { tx, room }, thread))
    }

    /// Waits until a batch of [`BATCH_BYTES`] fits under the limit and claims room for it.
    /// Returns `None` if the writer has stopped (stdout failed).
    pub(crate) async fn reserve(&self) -> Option<Slot> {
        loop {
            // Registered before the check, so room freed in between is not missed.
            let mut freed = pin!(self.room.freed.notified());
            freed.as_mut().enable();
            {
                let mut state = self.room.lock();
                if state.closed {
                    return None;
                }
                // An empty queue always admits a batch, whatever the limit.
                if state.queued == 0 || state.queued + BATCH_BYTES <= self.room.limit {
                    state.queued += BATCH_BYTES;
                    state.peak = state.peak.max(state.queued);
                    return Some(Slot {
                        room: self.room.clone(),
                        claimed: BATCH_BYTES,
                    });
                }
            }
            freed.await;
        }
    }

    /// Queues a batch of complete lines, filled under `slot` (its room is handed over to the
    /// lines). Returns `false` if the writer has stopped (stdout failed).
    pub(crate) fn print(&self, mut slot: Slot, lines: String) -> bool {
        if lines.is_empty() {
            return true;
        }
        let len = lines.len();
        self.room.exchange(std::mem::take(&mut slot.claimed), len);
        let sent = self.tx.send(lines).is_ok();
        if !sent {
            self.room.release(len);
        }
        sent
    }

    /// Reserves room and queues `lines`: for a caller that has its lines already.
    pub(crate) async fn print_now(&self, lines: String) -> bool {
        match self.reserve().await {
            Some(slot) => self.print(slot, lines),
            None => false,
        }
    }

    /// Bytes taken and not yet written, and the most there have been.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> (usize, usize) {
        let state = self.room.lock();
        (state.queued, state.peak)
    }
}

/// Waits for the writer thread to finish writing and reports its error, if any.
pub(crate) async fn finish(thread: JoinHandle<std::io::Result<()>>) -> anyhow::Result<()> {
    let result = tokio::task::spawn_blocking(move || thread.join())
        .await
        .context("stdout writer task failed")?;
    match result {
        Ok(io) => io.context("could not write to stdout"),
        Err(_) => anyhow::bail!("the stdout writer thread panicked"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_line_and_field_separators() {
        let mut s = String::new();
        escape_into(&mut s, "a\tb\nc\\d\\n");
        assert_eq!(s, "a\\tb\\nc\\\\d\\\\n");
        assert_eq!(format_lines("p", ["x", "y\n"]), "p\tx\np\ty\\n\n");
    }
}
