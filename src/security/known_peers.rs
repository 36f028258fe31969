//! The `known_peers` file of [`TrustPolicy::KnownPeers`](super::TrustPolicy::KnownPeers): trust
//! on first use, checked in memory, recorded once a session is established, written by a thread
//! of its own.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use tokio::sync::watch;

use super::PublicKey;
use super::trust::{Refused, read_trust_file};
use crate::error::{Error, Result};
use crate::proto::admission::RefusalReason;

/// How much a [`KnownPeers`] file may pin.
///
/// Every name a key establishes a session under stays pinned to that key, in the file, for
/// good. Without a bound, one key cycling through names (a client started with a fresh `--id`
/// each time, or a stranger) would grow the file and the table held in memory forever, and could
/// take every free name. A first-seen name beyond either limit is refused with
/// [`RefusalReason::KnownPeersFull`]; names already pinned keep working.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct KnownPeersLimits {
    /// Most entries the file may hold. Default 16,384 (the default session cap: as many peers
    /// as the node can hold sessions with).
    pub max_entries: usize,
    /// Most names one key may pin. Default 16: a key is one peer's, and a peer rarely needs
    /// more than a few names.
    pub max_names_per_key: usize,
}

impl Default for KnownPeersLimits {
    fn default() -> Self {
        KnownPeersLimits {
            max_entries: 16_384,
            max_names_per_key: 16,
        }
    }
}

/// The `known_peers` file of [`TrustPolicy::KnownPeers`](super::TrustPolicy::KnownPeers).
///
/// The file is read once, when the policy is built; from then on keys are checked against the
/// table in memory (edits to the file take effect at the next start). Checking a key (after the
/// peer's HELLO) records nothing: a name is pinned only once a session is established with it,
/// so a refused or failed handshake pins nothing. The new line is then appended by a thread of
/// the policy's own, never on an async worker; [`KnownPeers::flush`] waits for it, and
/// [`Node::shutdown`](crate::Node::shutdown) does.
///
/// Limits ([`KnownPeersLimits`]): at most `max_entries` entries, and at most
/// `max_names_per_key` names per key; a first-seen name beyond them is refused
/// ([`RefusalReason::KnownPeersFull`]). If an entry cannot be written, first-seen names are
/// refused ([`RefusalReason::KnownPeersUnwritable`]) until a write succeeds: the writer retries
/// at the next first-seen name, so the file catches up once it is writable again. Names pinned
/// in this run stay pinned in memory meanwhile.
///
/// Two handshakes racing for the same first-seen name with different keys: only the one that
/// establishes its session first is recorded (the session binding refuses the other while that
/// session lives); if a second one establishes anyway after the first session ended, it is not
/// recorded, logged, and refused from its next handshake on.
#[derive(Debug)]
pub struct KnownPeers {
    path: PathBuf,
    limits: KnownPeersLimits,
    table: Mutex<Table>,
    /// Lines for the writer thread. Unbounded, yet bounded: a line is queued only for a name
    /// newly entered in the table (at most `max_entries`), plus at most one retry.
    jobs: mpsc::Sender<Job>,
    /// Jobs queued so far, and jobs the writer has finished (written or failed).
    queued: AtomicU64,
    done: watch::Receiver<u64>,
    status: Arc<WriterStatus>,
}

/// What the writer thread tells the checks.
#[derive(Debug, Default)]
struct WriterStatus {
    /// The writer's last attempt failed: first-seen names are refused until one succeeds.
    unwritable: AtomicBool,
    /// A retry is queued, so refused names do not queue more.
    retry_queued: AtomicBool,
}

#[derive(Debug, Default)]
struct Table {
    names: HashMap<String, PublicKey>,
    per_key: HashMap<PublicKey, usize>,
}

#[derive(Debug)]
enum Job {
    Append(String),
    Retry,
}

impl KnownPeers {
    /// Loads the file (created empty if missing) and starts its writer thread. Fails if the
    /// file cannot be created or opened for writing, rather than refusing every new peer later.
    pub(super) fn open(path: PathBuf, limits: KnownPeersLimits) -> Result<KnownPeers> {
        if limits.max_entries == 0 || limits.max_names_per_key == 0 {
            return Err(Error::InvalidConfig(
                "known-peers limits must be at least 1".into(),
            ));
        }
        // Opening for append writes nothing, but proves a first-use key can be recorded.
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| {
                Error::InvalidConfig(format!(
                    "cannot create or write known-peers file {}: {e}",
                    path.display()
                ))
            })?;
        let names = read_trust_file(&path)?;
        let mut per_key = HashMap::new();
        for key in names.values() {
            *per_key.entry(*key).or_insert(0) += 1;
        }
        let (jobs, queue) = mpsc::channel();
        let (progress, done) = watch::channel(0);
        let known = KnownPeers {
            path: path.clone(),
            limits,
            table: Mutex::new(Table { names, per_key }),
            jobs,
            queued: AtomicU64::new(0),
            done,
            status: Arc::new(WriterStatus::default()),
        };
        let status = known.status.clone();
        std::thread::Builder::new()
            .name("networkio-known-peers".into())
            .spawn(move || write_lines(&path, &queue, &status, &progress))
            .map_err(|e| Error::InvalidConfig(format!("cannot start known-peers writer: {e}")))?;
        Ok(known)
    }

    /// The limits this file was opened with.
    pub fn limits(&self) -> KnownPeersLimits {
        self.limits
    }

    /// Entries pinned: read from the file, and recorded since.
    pub fn len(&self) -> usize {
        self.lock().names.len()
    }

    /// Whether no name is pinned.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until every entry recorded so far has been written to the file (or its write has
    /// failed, which refuses first-seen names until a later write succeeds).
    pub async fn flush(&self) {
        let target = self.queued.load(Ordering::SeqCst);
        let mut done = self.done.clone();
        // An error means the writer is gone: nothing more will be written.
        let _ = done.wait_for(|done| *done >= target).await;
    }

    /// Whether `key` may use `name`, against the table in memory. Records nothing.
    pub(super) fn check(&self, name: &str, key: &PublicKey) -> Result<(), Refused> {
        let table = self.lock();
        match table.names.get(name) {
            Some(known) if known == key => Ok(()),
            Some(known) => Err((
                RefusalReason::KnownPeerMismatch,
                format!(
                    "{name} presented {key}, but {} records {known}",
                    self.path.display()
                ),
            )),
            None if self.status.unwritable.load(Ordering::SeqCst) => {
                // Have the writer try again, so the file recovers once it is writable.
                if !self.status.retry_queued.swap(true, Ordering::SeqCst) {
                    self.queue(Job::Retry);
                }
                Err((
                    RefusalReason::KnownPeersUnwritable,
                    format!(
                        "cannot record {name}: {} is not writable",
                        self.path.display()
                    ),
                ))
            }
            None => self.room_for(&table, name, key),
        }
    }

    /// Pins `name` to `key` once a session is established with them, if it is not pinned yet
    /// and the limits allow; the line is written by the writer thread. Never blocks on I/O.
    pub(super) fn record(&self, name: &str, key: &PublicKey) {
        let mut table = self.lock();
        match table.names.get(name) {
            Some(known) if known == key => return,
            Some(known) => {
                tracing::warn!(peer = name, %key, pinned = %known, "a session was established by \
                    a key other than the one pinned meanwhile: not recorded");
                return;
            }
            None => {}
        }
        if let Err((_, detail)) = self.room_for(&table, name, key) {
            tracing::warn!(peer = name, %key, %detail, "not recorded");
            return;
        }
        table.names.insert(name.to_owned(), *key);
        *table.per_key.entry(*key).or_insert(0) += 1;
        tracing::info!(peer = name, %key, "trusting on first use");
        // Under the table's lock, so lines reach the file in the order names entered the table.
        self.queue(Job::Append(format!("{name} {key}")));
    }

    fn room_for(&self, table: &Table, name: &str, key: &PublicKey) -> Result<(), Refused> {
        let KnownPeersLimits {
            max_entries,
            max_names_per_key,
        } = self.limits;
        if table.names.len() >= max_entries {
            return Err((
                RefusalReason::KnownPeersFull,
                format!(
                    "cannot record {name}: {} holds {max_entries} entries, its limit",
                    self.path.display()
                ),
            ));
        }
        if table.per_key.get(key).copied().unwrap_or(0) >= max_names_per_key {
            return Err((
                RefusalReason::KnownPeersFull,
                format!(
                    "cannot record {name}: {key} already pins {max_names_per_key} names in {}, \
                     the most one key may",
                    self.path.display()
                ),
            ));
        }
        Ok(())
    }

    fn queue(&self, job: Job) {
        self.queued.fetch_add(1, Ordering::SeqCst);
        // The writer only stops once this sender is dropped.
        let _ = self.jobs.send(job);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The writer thread: appends the queued lines, batching what is queued together; keeps the
/// lines it could not write and tries them again with the next job. Ends when the policy is
/// dropped (after the jobs already queued).
fn write_lines(
    path: &Path,
    queue: &mpsc::Receiver<Job>,
    status: &WriterStatus,
    progress: &watch::Sender<u64>,
) {
    let mut unwritten: Vec<String> = Vec::new();
    while let Ok(first) = queue.recv() {
        let mut jobs = 0;
        for job in std::iter::once(first).chain(std::iter::from_fn(|| queue.try_recv().ok())) {
            jobs += 1;
            match job {
                Job::Append(line) => unwritten.push(line),
                Job::Retry => status.retry_queued.store(false, Ordering::SeqCst),
            }
        }
        match append(path, &unwritten) {
            Ok(()) => {
                unwritten.clear();
                status.unwritable.store(false, Ordering::SeqCst);
            }
            Err(e) => {
                tracing::warn!(
                    file = %path.display(),
                    unwritten = unwritten.len(),
                    error = %e,
                    "cannot write the known-peers file: first-seen peers are refused until it is \
                     writable"
                );
                status.unwritable.store(true, Ordering::SeqCst);
            }
        }
        // After the status, so whoever waited for this job sees its outcome.
        progress.send_modify(|done| *done += jobs);
    }
}

/// Appends `lines` (none: only checks the file can be opened for writing).
fn append(path: &Path, lines: &[String]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    if lines.is_empty() {
        return Ok(());
    }
    let mut text = String::new();
    if !ends_with_newline(&mut file)? {
        // A hand-edited file may lack its final newline: never glue two entries.
        text.push('\n');
    }
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    file.write_all(text.as_bytes())?;
    // A pin a crash could lose would let another key take the name after a reboot.
    file.sync_data()
}

/// Whether the file is empty or ends with a newline: reads its last byte only.
fn ends_with_newline(file: &mut File) -> io::Result<bool> {
    if file.metadata()?.len() == 0 {
        return Ok(true);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::Identity;

    fn key() -> PublicKey {
        Identity::generate().unwrap().public_key()
    }

    /// A fresh directory of its own for one test.
    fn temp_dir(what: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "networkio-known-{what}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn flush(known: &KnownPeers) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(known.flush());
    }

    fn limits(max_entries: usize, max_names_per_key: usize) -> KnownPeersLimits {
        KnownPeersLimits {
            max_entries,
            max_names_per_key,
        }
    }

    fn refusal(result: Result<(), Refused>) -> RefusalReason {
        result.expect_err("refusal expected").0
    }

    #[test]
    fn a_check_records_nothing_an_established_session_records_once() {
        let dir = temp_dir("record");
        let path = dir.join("known_peers");
        let (a, b) = (key(), key());
        let known = KnownPeers::open(path.clone(), KnownPeersLimits::default()).unwrap();
        assert!(known.check("peer", &a).is_ok(), "first use");
        // A handshake that stops here (refused, failed) pins nothing: another key may still
        // take the name.
        flush(&known);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        assert!(known.check("peer", &b).is_ok());
        assert!(known.is_empty());

        known.record("peer", &a);
        known.record("peer", &a);
        flush(&known);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("peer {a}\n")
        );
        assert!(known.check("peer", &a).is_ok());
        assert_eq!(
            refusal(known.check("peer", &b)),
            RefusalReason::KnownPeerMismatch
        );
        // A later session of another key (a race lost) does not overwrite the pin.
        known.record("peer", &b);
        flush(&known);
        assert_eq!(known.len(), 1);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("peer {a}\n")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn entries_persist_across_a_restart() {
        let dir = temp_dir("restart");
        let path = dir.join("known_peers");
        let (a, b) = (key(), key());
        // A hand-edited file without its final newline: the next entry goes on a line of its own.
        std::fs::write(&path, format!("# mine\nold {b}")).unwrap();
        let known = KnownPeers::open(path.clone(), KnownPeersLimits::default()).unwrap();
        known.record("peer", &a);
        flush(&known);
        drop(known);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("# mine\nold {b}\npeer {a}\n")
        );
        let again = KnownPeers::open(path.clone(), KnownPeersLimits::default()).unwrap();
        assert_eq!(again.len(), 2);
        assert!(again.check("peer", &a).is_ok());
        assert_eq!(
            refusal(again.check("peer", &b)),
            RefusalReason::KnownPeerMismatch
        );
        assert!(again.check("old", &b).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn one_key_cycling_through_names_stops_at_the_cap() {
        let dir = temp_dir("cap");
        let path = dir.join("per_key");
        let (a, b) = (key(), key());
        let known = KnownPeers::open(path.clone(), limits(100, 3)).unwrap();
        for i in 0..3 {
            let name = format!("name-{i}");
            assert!(known.check(&name, &a).is_ok(), "{name}");
            known.record(&name, &a);
        }
        assert_eq!(
            refusal(known.check("name-3", &a)),
            RefusalReason::KnownPeersFull
        );
        // Recording past the cap (handshakes that passed the check together) is dropped too.
        known.record("name-3", &a);
        assert_eq!(known.len(), 3);
        // The names already pinned keep working; other keys are not held back.
        assert!(known.check("name-0", &a).is_ok());
        assert!(known.check("name-3", &b).is_ok());
        flush(&known);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
        // The per-key count is rebuilt from the file at the next start.
        let again = KnownPeers::open(path.clone(), limits(100, 3)).unwrap();
        assert_eq!(
            refusal(again.check("name-9", &a)),
            RefusalReason::KnownPeersFull
        );

        // The whole file's cap.
        let path = dir.join("entries");
        let known = KnownPeers::open(path.clone(), limits(2, 16)).unwrap();
        known.record("one", &a);
        known.record("two", &b);
        let c = key();
        assert_eq!(
            refusal(known.check("three", &c)),
            RefusalReason::KnownPeersFull
        );
        known.record("three", &c);
        assert!(known.check("one", &a).is_ok());
        flush(&known);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
        assert!(KnownPeers::open(dir.join("zero"), limits(0, 1)).is_err());
        assert!(KnownPeers::open(dir.join("zero"), limits(1, 0)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Checks run on async workers: they must never wait for the file. A FIFO in the file's
    /// place blocks whoever opens it, so a check that touched the file would never return.
    #[cfg(unix)]
    #[test]
    fn a_check_never_touches_the_file() {
        let dir = temp_dir("fifo");
        let path = dir.join("known_peers");
        let a = key();
        let known = Arc::new(KnownPeers::open(path.clone(), KnownPeersLimits::default()).unwrap());
        known.record("peer", &a);
        flush(&known);
        std::fs::remove_file(&path).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        let (done, checked) = mpsc::channel();
        let checker = known.clone();
        std::thread::spawn(move || {
            let results: Vec<_> = (0..100)
                .map(|i| checker.check(&format!("new-{i}"), &key()).is_ok())
                .chain([checker.check("peer", &a).is_ok()])
                .collect();
            let _ = done.send(results);
        });
        let results = checked
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("a check waited for the file");
        assert!(results.iter().all(|ok| *ok));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unwritable_file_refuses_first_seen_names_until_it_is_writable_again() {
        let dir = temp_dir("unwritable");
        let home = dir.join("home");
        std::fs::create_dir(&home).unwrap();
        let path = home.join("known_peers");
        let (a, b) = (key(), key());
        let known = KnownPeers::open(path.clone(), KnownPeersLimits::default()).unwrap();
        // Its directory replaced by a file (root may write anywhere, so modes would not do).
        std::fs::remove_dir_all(&home).unwrap();
        std::fs::write(&home, "not a directory").unwrap();
        known.record("peer", &a);
        flush(&known);
        assert_eq!(
            refusal(known.check("other", &b)),
            RefusalReason::KnownPeersUnwritable
        );
        // Pinned in memory meanwhile.
        assert!(known.check("peer", &a).is_ok());
        assert_eq!(
            refusal(known.check("peer", &b)),
            RefusalReason::KnownPeerMismatch
        );
        // Writable again: the refused check queued a retry, which writes what was kept.
        std::fs::remove_file(&home).unwrap();
        std::fs::create_dir(&home).unwrap();
        assert_eq!(
            refusal(known.check("other", &b)),
            RefusalReason::KnownPeersUnwritable
        );
        flush(&known);
        assert!(known.check("other", &b).is_ok());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("peer {a}\n")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_that_cannot_be_written_fails_at_once() {
        let dir = temp_dir("missing");
        std::fs::remove_dir_all(&dir).unwrap();
        let error =
            KnownPeers::open(dir.join("peers.txt"), KnownPeersLimits::default()).unwrap_err();
        assert!(matches!(error, Error::InvalidConfig(_)), "{error}");
        assert!(error.to_string().contains("peers.txt"), "{error}");
    }
}
