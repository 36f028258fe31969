//! End-to-end tests of refusals: a `send` restarted without `--key` is not locked out, the
//! listener reports every refusal on stderr, and a refused `send` learns the real reason.
//!
//! Every wait is on a line of output or a process exit, bounded by `common::WAIT`.

mod common;

use std::process::Stdio;

use common::{BIN, Proc, WAIT, send};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStderr, ChildStdout, Command};
use tokio::time::timeout;

/// A `networkio listen` whose stderr is read as it comes.
struct Listener {
    _proc: Proc,
    addr: String,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Lines<BufReader<ChildStderr>>,
}

/// Starts `networkio listen`; `rust_log` is its `RUST_LOG` (empty: the default level).
async fn listen(id: &str, extra: &[&str], rust_log: &str) -> Listener {
    let mut command = Command::new(BIN);
    if rust_log.is_empty() {
        command.env_remove("RUST_LOG");
    } else {
        command.env("RUST_LOG", rust_log);
    }
    let mut child = command
        .args(["listen", "--id", id, "--bind", "127.0.0.1:0"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn listen");
    let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut listener = Listener {
        _proc: Proc { child },
        addr: String::new(),
        stdout,
        stderr,
    };
    let line = listener.stderr_line("listening on ").await;
    let rest = line.split("listening on ").nth(1).expect("an address");
    listener.addr = rest.split(' ').next().expect("an address").to_owned();
    listener
}

impl Listener {
    /// Waits for a stderr line containing `needle` (at its start if `needle` ends with a
    /// space: `listen`'s own lines, not the library's log lines); returns it.
    async fn stderr_line(&mut self, needle: &str) -> String {
        timeout(WAIT, async {
            while let Some(line) = self.stderr.next_line().await.expect("read stderr") {
                let found = if needle.ends_with(' ') {
                    line.starts_with(needle)
                } else {
                    line.contains(needle)
                };
                if found {
                    return line;
                }
            }
            panic!("listen's stderr ended without {needle:?}");
        })
        .await
        .unwrap_or_else(|_| panic!("no stderr line with {needle:?} in time"))
    }

    async fn next_line(&mut self) -> String {
        timeout(WAIT, self.stdout.next_line())
            .await
            .expect("no output line in time")
            .expect("read stdout")
            .expect("listener stdout ended early")
    }
}

/// A `networkio send --id ID --to ADDR` reading stdin, connected once the listener printed its
/// first message.
async fn connected_sender(listener: &mut Listener, id: &str) -> Proc {
    let mut child = Command::new(BIN)
        .args(["send", "--id", id, "--to", &listener.addr])
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn send");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"first run\n").await.expect("write stdin");
    // Keep stdin open: the sender stays connected, waiting for more.
    std::mem::forget(stdin);
    assert_eq!(listener.next_line().await, format!("{id}\tfirst run"));
    Proc { child }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_send_without_a_key_runs_again_at_once() {
    // Each run without --key has a new random key. Killing one leaves its session at the
    // listener, without a connection: the next run must be accepted, not refused for an hour.
    // (At info level the listener logs disconnections: the test waits for that one.)
    let mut listener = listen("server", &[], "info").await;
    let mut first = connected_sender(&mut listener, "client-123").await;
    first.child.start_kill().expect("kill send");
    first.wait().await;
    listener.stderr_line("disconnected").await;

    let (status, stderr) = send(
        &[
            "--id",
            "client-123",
            "--to",
            &listener.addr,
            "--timeout",
            "20",
            "second run",
        ],
        None,
    )
    .await;
    assert!(status.success(), "the second run was refused: {stderr}");
    assert_eq!(listener.next_line().await, "client-123\tsecond run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_refused_for_a_name_in_use_gets_in_once_that_connection_ends() {
    // A rerun that starts before the listener has noticed the old process's end is refused
    // as NAME_IN_USE: it must keep trying, and get in once the old connection is gone.
    let mut listener = listen("server", &[], "").await;
    let mut first = connected_sender(&mut listener, "client-123").await;
    let addr = listener.addr.clone();
    let second = tokio::spawn(async move {
        send(
            &[
                "--id",
                "client-123",
                "--to",
                &addr,
                "--timeout",
                "20",
                "second run",
            ],
            None,
        )
        .await
    });
    // Refused at least once while the first is connected...
    listener.stderr_line("refused client-123 ").await;
    // ...then the first goes away, and the second gets in.
    first.child.start_kill().expect("kill send");
    first.wait().await;
    let (status, stderr) = timeout(WAIT, second)
        .await
        .expect("the second run in time")
        .expect("the second run's task");
    assert!(status.success(), "the second run gave up: {stderr}");
    assert_eq!(listener.next_line().await, "client-123\tsecond run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_in_use_is_refused_with_the_real_reason_and_reported_by_the_listener() {
    let mut listener = listen("server", &[], "").await;
    let _first = connected_sender(&mut listener, "client-123").await;
    // Another run under the same name while the first stays connected: retried (the name
    // frees itself when that connection ends), then reported with the reason at the timeout.
    let (status, stderr) = send(
        &[
            "--id",
            "client-123",
            "--to",
            &listener.addr,
            "--timeout",
            "1",
            "second run",
        ],
        None,
    )
    .await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("client-123 is in use by another key on a live connection"),
        "the peer's reason: {stderr}"
    );
    assert!(
        stderr.contains("another process with our --id is connected"),
        "the hint: {stderr}"
    );
    assert!(
        !stderr.contains("trust file"),
        "no misleading hint: {stderr}"
    );
    let line = listener.stderr_line("refused ").await;
    assert!(
        line.starts_with("refused client-123 from 127.0.0.1:")
            && line.ends_with(": the name is in use by another key"),
        "listen's refusal line: {line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowlist_refusal_is_explained_on_both_sides() {
    let dir = std::env::temp_dir().join(format!("networkio-cli-refusals-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let trust = dir.join("trust");
    let listed = networkio::Identity::generate().expect("key").public_key();
    std::fs::write(&trust, format!("teller {listed}\n")).expect("write trust file");
    let mut listener = listen(
        "vault",
        &["--trust", trust.to_str().expect("UTF-8 path")],
        "",
    )
    .await;
    let (status, stderr) = send(
        &["--id", "stranger", "--to", &listener.addr, "withdraw"],
        None,
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("stranger: not on the allowlist with this key"),
        "the peer's reason: {stderr}"
    );
    assert!(
        stderr.contains("its --trust file must list our --id"),
        "the hint: {stderr}"
    );
    let line = listener.stderr_line("refused ").await;
    assert!(
        line.starts_with("refused stranger from 127.0.0.1:")
            && line.contains(" with key ed25519:")
            && line.ends_with(": not on the allowlist with this key"),
        "listen's refusal line: {line}"
    );
}
