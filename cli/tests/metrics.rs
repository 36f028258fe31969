//! `listen --metrics`: a real HTTP client scrapes the Prometheus text and sees a transfer.

mod common;

use std::process::Stdio;

use common::{Proc, WAIT, command, send};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::timeout;

const N: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_serves_the_counters_of_a_transfer_to_a_prometheus_scrape() {
    let mut child = command(&[
        "listen",
        "--id",
        "sink",
        "--bind",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
    ])
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn listen");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let _proc = Proc { child };
    let (addr, metrics_url) = timeout(WAIT, async {
        let mut addr = None;
        while let Some(line) = stderr.next_line().await.expect("read stderr") {
            if let Some(rest) = line.strip_prefix("listening on ") {
                addr = rest.strip_suffix(" as sink").map(str::to_owned);
            }
            if let Some(url) = line.strip_prefix("metrics on ") {
                return (addr.expect("`listening on` first"), url.to_owned());
            }
        }
        panic!("listen exited without printing its addresses");
    })
    .await
    .expect("no `metrics on` line in time");
    assert!(!metrics_url.contains(":0/"), "the real port: {metrics_url}");
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });

    // Nothing yet: the node is known under its name, with no traffic.
    let before = scrape(&metrics_url).await;
    assert_eq!(
        value(&before, "networkio_messages_received_total"),
        Some(0.0)
    );

    let input: String = (0..N).map(|i| format!("msg-{i:06}\n")).collect();
    let (status, err) = send(
        &["--id", "source", "--to", &addr, "--timeout", "30"],
        Some(input.into_bytes()),
    )
    .await;
    assert!(status.success(), "send failed: {err}");
    // `send` exits once every message is acknowledged: all are in the listener's inbox, so
    // counted. Reading them all as well makes the inbox gauge exact.
    for _ in 0..N {
        timeout(WAIT, stdout.next_line())
            .await
            .expect("a line in time")
            .expect("read stdout")
            .expect("listen stdout open");
    }

    let text = scrape(&metrics_url).await;
    let n = N as f64;
    // Each line is a MessagePack string of 10 characters: 11 bytes.
    let expected = [
        ("networkio_messages_received_total", n),
        ("networkio_received_bytes_total", n * 11.0),
        ("networkio_duplicates_dropped_total", 0.0),
        ("networkio_connections_established_total", 1.0),
        ("networkio_peers", 1.0),
        ("networkio_inbox_messages", 0.0),
        ("networkio_messages_sent_total", 0.0),
    ];
    for (name, want) in expected {
        assert_eq!(value(&text, name), Some(want), "{name} in:\n{text}");
    }
    let read = value(&text, "networkio_read_bytes_total").expect("bytes read");
    assert!(read > n * 11.0, "frames carry the payloads: {read}");
    assert!(
        text.contains("# HELP networkio_messages_received_total"),
        "described:\n{text}"
    );

    let missing = tokio::task::spawn_blocking(move || {
        let url = metrics_url.replace("/metrics", "/nothing");
        match ureq::get(&url).call() {
            Err(ureq::Error::StatusCode(code)) => code,
            other => panic!("expected a 404, got {other:?}"),
        }
    });
    assert_eq!(missing.await.expect("client task"), 404);
}

/// One scrape with a real HTTP client.
async fn scrape(url: &str) -> String {
    let url = url.to_owned();
    let fetch = tokio::task::spawn_blocking(move || {
        let mut response = ureq::get(&url).call().expect("scrape");
        assert_eq!(response.status(), 200);
        response.body_mut().read_to_string().expect("body")
    });
    timeout(WAIT, fetch)
        .await
        .expect("scrape in time")
        .expect("client task")
}

/// The value of `name{node="sink"}`.
fn value(text: &str, name: &str) -> Option<f64> {
    let prefix = format!("{name}{{node=\"sink\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
}
