//! End-to-end tests of the `networkio` binary over loopback.
//!
//! Every wait is on an event (a line of output, a process exit) bounded by a timeout; child
//! processes are killed when their guard drops, even if a test fails.

mod common;

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use common::{WAIT, command, listen, send};
use networkio::{Event, Node};
use networkio_chaos::{ChaosConfig, ChaosProxy};
use tokio::time::{Instant, sleep_until, timeout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_100k_messages_arrive_exactly_once_in_order() {
    const N: usize = 100_000;
    let mut listener = listen("sink", &[]).await;
    let input = numbered_lines(N);
    let addr = listener.addr.clone();
    let sender = tokio::spawn(async move {
        send(
            &["--id", "source", "--to", &addr, "--timeout", "30"],
            Some(input),
        )
        .await
    });

    let mut lines = Vec::with_capacity(N);
    while lines.len() < N {
        lines.push(listener.next_line().await);
    }
    let (status, stderr) = sender.await.expect("sender task");
    assert!(status.success(), "send failed: {stderr}");
    assert!(
        stderr.contains("delivered 100000 messages to sink"),
        "send stderr: {stderr}"
    );
    let (rest, _) = listener.terminate().await;
    lines.extend(rest);

    assert_delivered(&lines, "source", N, None);
}

/// The input of `n` numbered messages, one per line: `msg-000000` to `msg-{n-1}`.
fn numbered_lines(n: usize) -> Vec<u8> {
    let mut input = String::with_capacity(n * 11);
    for i in 0..n {
        input.push_str(&format!("msg-{i:06}\n"));
    }
    input.into_bytes()
}

/// Checks the listener's output for `n` [`numbered_lines`] sent by `from` with the shared
/// delivery checker: each printed exactly once and in order, nothing else printed. Panics with
/// the details (and `seed`) otherwise.
fn assert_delivered(lines: &[String], from: &str, n: usize, seed: Option<u64>) {
    let mut checker = networkio_checker::Checker::default();
    if let Some(seed) = seed {
        checker.set_seed(seed);
    }
    for _ in 0..n {
        checker.send(from, "listener");
    }
    for line in lines {
        let message = line
            .split_once('\t')
            .and_then(|(sender, text)| Some((sender, text.strip_prefix("msg-")?.parse().ok()?)));
        match message {
            Some((sender, index)) => checker.read(sender, "listener", index),
            None => checker.foreign(format_args!("printed {line:?}")),
        }
    }
    checker.assert_exactly_once_in_order();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_arguments_are_escaped_one_per_line() {
    let mut listener = listen("printer", &[]).await;
    let (status, stderr) = send(
        &[
            "--id",
            "args",
            "--to",
            &listener.addr,
            "plain",
            "tab\there\nand newline",
            "back\\slash",
        ],
        None,
    )
    .await;
    assert!(status.success(), "send failed: {stderr}");
    assert!(
        stderr.contains("delivered 3 messages to printer"),
        "send stderr: {stderr}"
    );
    assert_eq!(listener.next_line().await, "args\tplain");
    assert_eq!(listener.next_line().await, "args\ttab\\there\\nand newline");
    assert_eq!(listener.next_line().await, "args\tback\\\\slash");
    let (rest, _) = listener.terminate().await;
    assert!(rest.is_empty(), "unexpected output: {rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_to_nobody_fails_with_one_error_line() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("pick a port")
        .port();
    let to = format!("127.0.0.1:{port}");
    let (status, stderr) = send(
        &["--id", "lonely", "--to", &to, "--timeout", "1", "hi"],
        None,
    )
    .await;
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("error: "), "stderr: {stderr:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_echo_sends_every_message_back_in_order() {
    // More than a window and an inbox (16,384 each): echoing must not deadlock.
    const N: usize = 100_000;
    let mut listener = listen("echoer", &["--echo"]).await;
    let node = Node::builder("client").start().await.expect("start node");
    let peer = timeout(WAIT, node.connect(listener.addr.as_str()))
        .await
        .expect("connect in time")
        .expect("connect");
    assert_eq!(peer.name(), "echoer");
    let mut events = node.events();
    let sending = {
        let peer = peer.clone();
        tokio::spawn(async move {
            for i in 0..N {
                peer.send(&format!("echo {i}\twith tab"))
                    .await
                    .expect("send");
            }
        })
    };
    let expected: Vec<String> = (0..N).map(|i| format!("echo {i}\twith tab")).collect();
    let mut echoes: Vec<String> = Vec::with_capacity(N);
    let receive_echoes = async {
        while echoes.len() < N {
            match events.recv().await.expect("node running") {
                Event::Message { peer } => {
                    echoes.extend(peer.read_all::<String>().expect("strings"))
                }
                Event::SessionLost { reason, .. } => panic!("session lost: {reason:?}"),
                _ => {}
            }
        }
    };
    // The listener prints them too, escaped; its stdout must be read meanwhile, or it blocks.
    let mut printed = 0;
    let read_output = async {
        for text in &expected {
            let line = listener.next_line().await;
            let message = text.replace('\t', "\\t");
            assert_eq!(line, format!("client\t{message}"));
            printed += 1;
        }
    };
    timeout(WAIT, async { tokio::join!(receive_echoes, read_output) })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "timed out: {} echoes, {printed} lines printed, client {:?}",
                echoes.len(),
                peer.stats()
            )
        });
    sending.await.expect("sending task");
    assert_eq!(echoes, expected);
    node.shutdown().await;
    let (rest, _) = listener.terminate().await;
    assert!(rest.is_empty(), "unexpected output: {rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_exits_0_on_sigterm_printing_only_messages() {
    // Idle listener: nothing at all on stdout.
    let idle = listen("idle", &[]).await;
    let (rest, _) = idle.terminate().await;
    assert!(rest.is_empty(), "unexpected output: {rest:?}");

    // After messages: exactly those lines.
    let mut listener = listen("busy", &[]).await;
    let (status, stderr) = send(&["--id", "one", "--to", &listener.addr, "a", "b"], None).await;
    assert!(status.success(), "send failed: {stderr}");
    assert_eq!(listener.next_line().await, "one\ta");
    assert_eq!(listener.next_line().await, "one\tb");
    let (rest, stderr) = listener.terminate().await;
    assert!(rest.is_empty(), "unexpected output: {rest:?}");
    assert!(!stderr.contains("error"), "listener stderr: {stderr}");
}

async fn help(args: &[&str]) -> String {
    let output = timeout(WAIT, command(args).output())
        .await
        .expect("help in time")
        .expect("run help");
    assert!(output.status.success(), "{args:?} failed");
    String::from_utf8(output.stdout).expect("utf-8 help")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_mentions_every_option() {
    let top = help(&["--help"]).await;
    for word in ["listen", "send", "RUST_LOG", "Exit status"] {
        assert!(top.contains(word), "top-level help lacks {word}:\n{top}");
    }
    let listen = help(&["listen", "--help"]).await;
    for word in [
        "--id",
        "--bind",
        "--echo",
        "listening on ADDR as ID",
        "PEER-ID<TAB>MESSAGE",
        "\\n",
        "\\t",
        "SIGTERM",
        "status 0",
    ] {
        assert!(listen.contains(word), "listen help lacks {word}:\n{listen}");
    }
    let send = help(&["send", "--help"]).await;
    for word in [
        "--id",
        "--to",
        "--timeout",
        "--print-replies",
        "MESSAGE",
        "stdin",
        "delivered N messages to PEER-ID",
        "restarts",
        "status 1",
    ] {
        assert!(send.contains(word), "send help lacks {word}:\n{send}");
    }
}

/// The chaos seed: env `NETWORKIO_SEED` to replay a run, otherwise random. Printed, so a
/// failing run can be replayed.
fn chaos_seed(test: &str) -> u64 {
    let seed = match std::env::var("NETWORKIO_SEED") {
        Ok(text) => text.trim().parse().expect("NETWORKIO_SEED is a u64"),
        Err(_) => RandomState::new().hash_one(std::time::SystemTime::now()),
    };
    eprintln!("{test}: NETWORKIO_SEED={seed}");
    seed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_survives_a_flaky_link() {
    const N: usize = 20_000;
    let seed = chaos_seed("send_survives_a_flaky_link");
    let mut listener = listen("flaky-sink", &[]).await;
    let target = listener.addr.parse().expect("listener address");
    let config = ChaosConfig {
        seed,
        cut_after_bytes: Some(2_000..60_000),
        reset: true,
        refuse_probability: 0.1,
        ..ChaosConfig::default()
    };
    let proxy = ChaosProxy::start(target, config)
        .await
        .expect("start the proxy");
    let to = proxy.local_addr().to_string();
    let input = numbered_lines(N);
    let sender = tokio::spawn(async move {
        send(
            &["--id", "flaky", "--to", &to, "--timeout", "60"],
            Some(input),
        )
        .await
    });
    tokio::pin!(sender);

    // Read the listener's output while the sender runs (or the listener blocks on stdout), but
    // stop at once if the sender fails.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lines = Vec::with_capacity(N);
    let mut sent: Option<String> = None;
    while lines.len() < N || sent.is_none() {
        tokio::select! {
            result = &mut sender, if sent.is_none() => {
                let (status, stderr) = result.expect("sender task");
                assert!(
                    status.success(),
                    "seed {seed}: send failed ({status}) after {} lines printed, proxy {:?}: \
                     {stderr}",
                    lines.len(),
                    proxy.stats(),
                );
                sent = Some(stderr);
            }
            line = listener.stdout.next_line(), if lines.len() < N => {
                match line.expect("read listener stdout") {
                    Some(line) => lines.push(line),
                    None => panic!(
                        "seed {seed}: listener stdout ended after {} lines",
                        lines.len()
                    ),
                }
            }
            () = sleep_until(deadline) => panic!(
                "seed {seed}: timed out with {} lines printed, send done: {}, proxy {:?}",
                lines.len(),
                sent.is_some(),
                proxy.stats(),
            ),
        }
    }
    let stderr = sent.unwrap_or_default();
    assert!(
        stderr.contains("delivered 20000 messages to flaky-sink"),
        "seed {seed}: send stderr: {stderr}"
    );
    let stats = proxy.stats();
    eprintln!("send_survives_a_flaky_link: seed {seed}, proxy {stats:?}");
    let (rest, _) = listener.terminate().await;
    lines.extend(rest);
    assert_delivered(&lines, "flaky", N, Some(seed));
    assert!(
        stats.cuts >= 5,
        "seed {seed}: too few cuts for the test to mean anything: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_retries_until_the_listener_is_reachable() {
    let mut listener = listen("late-sink", &[]).await;
    let target = listener.addr.parse().expect("listener address");
    // No chaos: only the partition below.
    let proxy = ChaosProxy::start(target, ChaosConfig::default())
        .await
        .expect("start the proxy");
    proxy.pause();
    let to = proxy.local_addr().to_string();
    let sender = tokio::spawn(async move {
        send(
            &[
                "--id",
                "patient",
                "--to",
                &to,
                "--timeout",
                "30",
                "hello",
                "world",
            ],
            None,
        )
        .await
    });

    // Polling a condition (not sleeping to synchronise): send has been refused twice.
    timeout(WAIT, async {
        while proxy.stats().refused < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("send was not refused twice in time: {:?}", proxy.stats()));
    assert_eq!(proxy.stats().accepted, 0, "connected while paused");
    proxy.resume();

    let (status, stderr) = sender.await.expect("sender task");
    assert!(status.success(), "send failed: {stderr}");
    assert!(
        stderr.contains("delivered 2 messages to late-sink"),
        "send stderr: {stderr}"
    );
    assert_eq!(listener.next_line().await, "patient\thello");
    assert_eq!(listener.next_line().await, "patient\tworld");
    let stats = proxy.stats();
    assert!(stats.accepted >= 1, "never connected: {stats:?}");
    let (rest, _) = listener.terminate().await;
    assert!(rest.is_empty(), "unexpected output: {rest:?}");
}
