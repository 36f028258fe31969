//! End-to-end tests of how `listen` and `send` treat their options: usage errors, file checks
//! at startup, message size, replies, timers and wording. Over loopback, every wait bounded.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use common::{WAIT, command, listen, send};
use networkio::{Event, Node};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

/// Runs `networkio ARGS...` to completion (with `stdin`, if any).
async fn run(args: &[&str], stdin: Option<Vec<u8>>) -> Output {
    let mut cmd = command(args);
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("run networkio");
    if let Some(data) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        tokio::spawn(async move {
            // A command that fails early closes its stdin: not this helper's error.
            let _ = pipe.write_all(&data).await;
        });
    }
    timeout(WAIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{args:?} did not finish in time"))
        .expect("wait for networkio")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A fresh directory of one test under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("networkio-options-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the temp dir");
        TempDir(path)
    }

    fn file(&self, name: &str) -> String {
        self.0.join(name).to_str().expect("UTF-8 path").to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Defect 4: an address without its port is a usage error at once (it was retried for the
/// whole --timeout, then reported as a connection failure with status 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_without_a_port_is_a_usage_error_at_once() {
    let output = run(
        &[
            "send",
            "--id",
            "a",
            "--to",
            "127.0.0.1",
            "--timeout",
            "60",
            "hi",
        ],
        None,
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let text = stderr(&output);
    assert!(
        text.contains("--to") && text.contains("HOST:PORT"),
        "{text}"
    );

    let output = run(&["listen", "--id", "b", "--bind", "127.0.0.1"], None).await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(stderr(&output).contains("--bind"), "{output:?}");

    let metrics = ["--bind", "127.0.0.1:0", "--metrics", "127.0.0.1"];
    let output = run(&[&["listen", "--id", "b"][..], &metrics[..]].concat(), None).await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(stderr(&output).contains("--metrics"), "{output:?}");
}

/// Defect 7: an invalid --id is a usage error about the name, not a failure to listen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_id_is_a_usage_error_about_the_name() {
    for args in [
        &["listen", "--id", "", "--bind", "127.0.0.1:0"][..],
        &["send", "--id", "", "--to", "127.0.0.1:1", "hi"],
        &["send", "--id", "a b", "--to", "127.0.0.1:1", "hi"],
        &["keygen", "--out", "unused.key", "--id", ""],
    ] {
        let output = run(args, None).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        let text = stderr(&output);
        assert!(text.contains("--id") && text.contains("name"), "{text}");
        assert!(!text.contains("could not listen"), "{text}");
    }
}

/// Defect 5: a --known-peers file that cannot be created fails at startup with one error line
/// naming it (the listener used to start, then refuse every peer as "key not authorized");
/// one that can is created at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_peers_file_that_cannot_be_created_fails_at_startup() {
    let dir = TempDir::new("known-peers");
    let missing = dir.file("missing/peers.txt");
    let output = run(
        &[
            "listen",
            "--id",
            "tofu",
            "--bind",
            "127.0.0.1:0",
            "--known-peers",
            &missing,
        ],
        None,
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let text = stderr(&output);
    assert_eq!(text.lines().count(), 1, "one line: {text:?}");
    assert!(text.starts_with("error: "), "{text}");
    assert!(text.contains(&missing), "names the file: {text}");

    let fine = dir.file("peers.txt");
    let listener = listen("tofu", &["--known-peers", &fine]).await;
    assert!(
        std::fs::metadata(&fine).is_ok(),
        "created at startup: {fine}"
    );
    listener.terminate().await;
}

/// Defect 6: the limit is on the text the user gives: a line of exactly --max-message bytes
/// passes (it was refused, counted with its encoding); a longer one is named by its line or
/// argument number; both `send` and `listen` take --max-message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_message_limits_the_text_and_names_the_line() {
    const MIB: usize = 1 << 20;
    let mut listener = listen("big", &[]).await;
    let mut input = "x".repeat(MIB).into_bytes();
    input.push(b'\n');
    let (status, text) = send(&["--id", "full", "--to", &listener.addr], Some(input)).await;
    assert!(status.success(), "a line of exactly 1 MiB: {text}");
    let line = listener.next_line().await;
    assert_eq!(line.len(), "full\t".len() + MIB);

    let mut input = b"short\n".to_vec();
    input.extend("y".repeat(1025).into_bytes());
    input.push(b'\n');
    let (status, text) = send(
        &[
            "--id",
            "over",
            "--to",
            &listener.addr,
            "--max-message",
            "1KiB",
        ],
        Some(input),
    )
    .await;
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(
        text.contains("line 2 of stdin") && text.contains("1024"),
        "{text}"
    );

    let (status, text) = send(
        &[
            "--id",
            "over",
            "--to",
            &listener.addr,
            "--max-message",
            "4",
            "abcd",
            "abcde",
        ],
        None,
    )
    .await;
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains("message 2 is 5 bytes"), "{text}");
    listener.terminate().await;

    // Above the default, when both sides allow it.
    let mut listener = listen("bigger", &["--max-message", "2MiB"]).await;
    let mut input = "z".repeat(2 * MIB).into_bytes();
    input.push(b'\n');
    let (status, text) = send(
        &[
            "--id",
            "two",
            "--to",
            &listener.addr,
            "--max-message",
            "2MiB",
        ],
        Some(input),
    )
    .await;
    assert!(status.success(), "a line of exactly 2 MiB: {text}");
    let line = listener.next_line().await;
    assert_eq!(line.len(), "two\t".len() + 2 * MIB);
    listener.terminate().await;
}

/// Defect 8: with --print-replies, `send` waits for one reply per message (it used to exit as
/// soon as its messages were acknowledged, usually before the echoes came back), and fails
/// after --timeout if they do not come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn print_replies_waits_for_one_reply_per_message() {
    const N: usize = 1000;
    let listener = listen("echo", &["--echo"]).await;
    let input: String = (0..N).map(|i| format!("m{i}\n")).collect();
    let output = run(
        &[
            "send",
            "--id",
            "asker",
            "--to",
            &listener.addr,
            "--print-replies",
        ],
        Some(input.into_bytes()),
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 stdout");
    let expected: String = (0..N).map(|i| format!("echo\tm{i}\n")).collect();
    assert_eq!(stdout, expected);
    drop(listener);

    // A listener that does not echo: no replies within the timeout.
    let silent = listen("silent", &[]).await;
    let output = run(
        &[
            "send",
            "--id",
            "asker",
            "--to",
            &silent.addr,
            "--print-replies",
            "--timeout",
            "0.5",
            "a",
            "b",
        ],
        None,
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let text = stderr(&output);
    assert!(text.contains("0 of 2 replies"), "{text}");
}

/// Defect 9: a key file others can read is used, with a warning that names it and its mode
/// and says how to fix it; a private one gets none.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_file_others_can_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("key-mode");
    let key = dir.file("node.key");
    let output = run(&["keygen", "--out", &key], None).await;
    assert!(output.status.success(), "{output:?}");

    let output = run(&["keygen", "--show", &key], None).await;
    assert!(output.status.success(), "{output:?}");
    assert!(!stderr(&output).contains("warning"), "{output:?}");

    for mode in [0o644, 0o640] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let output = run(&["keygen", "--show", &key], None).await;
        assert!(output.status.success(), "{output:?}");
        let text = stderr(&output);
        assert!(text.starts_with("warning: "), "{text}");
        for word in [key.as_str(), &format!("{mode:04o}"), "chmod 600"] {
            assert!(text.contains(word), "lacks {word}: {text}");
        }
    }
}

/// Defect 11: --idle-timeout takes effect (a peer gone silent is dropped well before the
/// default 20 s), contradicting timers are a usage error, and --help documents the options.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_and_idle_timeout_are_options() {
    let listener = listen(
        "strict",
        &["--heartbeat", "100ms", "--idle-timeout", "500ms"],
    )
    .await;
    let relay = SilencingRelay::start(listener.addr.parse().expect("listener address")).await;
    let node = Node::builder("quiet").start().await.expect("start node");
    let mut events = node.events();
    let peer = timeout(WAIT, node.connect(relay.addr))
        .await
        .expect("connect in time")
        .expect("connect");
    // From now on the listener hears nothing from us, not even heartbeats; it must drop the
    // connection, which the relay passes on. Far below the default idle timeout of 20 s.
    relay.silence.cancel();
    let dropped = timeout(Duration::from_secs(10), async {
        loop {
            if let Some(Event::Disconnected { .. }) = events.recv().await {
                return;
            }
        }
    })
    .await;
    assert!(
        dropped.is_ok(),
        "not dropped for silence: {:?}",
        peer.stats()
    );
    node.abort().await;
    listener.terminate().await;

    for args in [
        &[
            "listen",
            "--id",
            "x",
            "--bind",
            "127.0.0.1:0",
            "--heartbeat",
            "5s",
            "--idle-timeout",
            "5s",
        ][..],
        &[
            "send",
            "--id",
            "x",
            "--to",
            "127.0.0.1:1",
            "--idle-timeout",
            "50ms",
            "--heartbeat",
            "10ms",
            "hi",
        ],
        &[
            "send",
            "--id",
            "x",
            "--to",
            "127.0.0.1:1",
            "--heartbeat",
            "soon",
            "hi",
        ],
    ] {
        let output = run(args, None).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
    }

    for subcommand in ["listen", "send"] {
        let output = run(&[subcommand, "--help"], None).await;
        let help = String::from_utf8_lossy(&output.stdout);
        for word in [
            "--heartbeat",
            "--idle-timeout",
            "--max-message",
            "500ms",
            "status 2",
        ] {
            assert!(
                help.contains(word),
                "{subcommand} help lacks {word}:\n{help}"
            );
        }
    }
}

/// Defect 12: one message is "1 message".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_is_singular() {
    let listener = listen("single", &[]).await;
    let (status, text) = send(&["--id", "one", "--to", &listener.addr, "hi"], None).await;
    assert!(status.success(), "{text}");
    assert!(text.contains("delivered 1 message to single\n"), "{text}");
    listener.terminate().await;
}

/// A relay of one TCP connection that forwards both ways until `silence` is cancelled, then
/// stops forwarding what the client sends (holding the connection open), and closes the
/// client's side once the server closes its own.
struct SilencingRelay {
    addr: SocketAddr,
    silence: CancellationToken,
}

impl SilencingRelay {
    async fn start(target: SocketAddr) -> SilencingRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay address");
        let silence = CancellationToken::new();
        let silenced = silence.clone();
        tokio::spawn(async move {
            let (client, _) = listener.accept().await.expect("accept");
            let server = TcpStream::connect(target).await.expect("connect to target");
            let (mut client_rx, mut client_tx) = client.into_split();
            let (mut server_rx, mut server_tx) = server.into_split();
            let up = tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::io::copy(&mut client_rx, &mut server_tx) => {}
                    () = silenced.cancelled() => {}
                }
                // Keep the server's side open, hearing nothing, until the task is dropped.
                std::future::pending::<()>().await;
                drop((client_rx, server_tx));
            });
            let _ = tokio::io::copy(&mut server_rx, &mut client_tx).await;
            let _ = client_tx.shutdown().await;
            up.abort();
        });
        SilencingRelay { addr, silence }
    }
}
