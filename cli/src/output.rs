//! Printing received messages on stdout, one line each: `PEER-ID<TAB>MESSAGE`.
//!
//! Lines are written by a dedicated thread so a slow stdout never blocks the runtime: a full
//! channel makes the readers wait, which leaves messages in the node's inbox and, once that is
//! full, closes the sending peer's window (flow control). Each batch is written to a locked, buffered stdout and
//! flushed once, so every line is complete and visible as soon as its batch is written.

use std::io::{BufWriter, Write};
use std::thread::JoinHandle;

use anyhow::Context;
use tokio::sync::mpsc;

/// Batches of lines, already formatted and newline-terminated, waiting to be written.
const QUEUED_BATCHES: usize = 16;

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
        text.push_str(peer);
        text.push('\t');
        escape_into(&mut text, message);
        text.push('\n');
    }
    text
}

/// A handle to the stdout writer thread. Clone it freely; the thread ends once every clone is
/// dropped and everything queued has been written.
#[derive(Debug, Clone)]
pub(crate) struct Printer {
    tx: mpsc::Sender<String>,
}

impl Printer {
    /// Starts the writer thread.
    pub(crate) fn start() -> anyhow::Result<(Printer, JoinHandle<std::io::Result<()>>)> {
        let (tx, mut rx) = mpsc::channel::<String>(QUEUED_BATCHES);
        let thread = std::thread::Builder::new()
            .name("stdout".into())
            .spawn(move || {
                let stdout = std::io::stdout();
                let mut out = BufWriter::with_capacity(64 * 1024, stdout.lock());
                while let Some(batch) = rx.blocking_recv() {
                    out.write_all(batch.as_bytes())?;
                    // Write whatever else is already queued, then flush once.
                    while let Ok(batch) = rx.try_recv() {
                        out.write_all(batch.as_bytes())?;
                    }
                    out.flush()?;
                }
                out.flush()
            })
            .context("could not start the stdout writer thread")?;
        Ok((Printer { tx }, thread))
    }

    /// Queues a batch of complete lines. Waits while the writer is behind. Returns `false` if
    /// the writer has stopped (stdout failed).
    pub(crate) async fn print(&self, lines: String) -> bool {
        if lines.is_empty() {
            return true;
        }
        self.tx.send(lines).await.is_ok()
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
