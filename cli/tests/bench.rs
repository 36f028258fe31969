//! `networkio bench` runs end to end with tiny parameters: the output is what scripts read.

mod common;

use common::{WAIT, command};
use tokio::time::timeout;

/// Runs `networkio bench ARGS --json` and returns its JSON objects, one per line.
async fn bench_json(args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.push("--json");
    let output = timeout(WAIT, command(&all).output())
        .await
        .expect("bench in time")
        .expect("run bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{all:?} failed: {stderr}");
    String::from_utf8(output.stdout)
        .expect("utf-8 output")
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_latency_of_bursts_reports_both_contenders() {
    let tiny = ["--samples", "10", "--runs", "1", "--modes", "plaintext"];
    let mut args = vec!["latency", "--burst", "20"];
    args.extend(tiny);
    let reports = bench_json(&args).await;
    assert_eq!(reports.len(), 1, "{reports:?}");
    let report = &reports[0];
    assert_eq!(report["scenario"], "burst");
    assert_eq!(report["burst"], 20);
    assert_eq!(report["mode"], "plaintext");
    for side in ["networkio", "raw_tcp"] {
        let p50 = report[side]["p50_us"].as_f64().expect("p50");
        let p99 = report[side]["p99_us"].as_f64().expect("p99");
        assert!(p50 > 0.0 && p99 >= p50, "{side}: {report}");
    }
    assert!(report["ratio"].as_f64().expect("ratio") > 0.0);

    // Without a number: bursts of 100.
    let mut args = vec!["latency", "--burst"];
    args.extend(tiny);
    let reports = bench_json(&args).await;
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0]["burst"], 100);

    // Without --burst: one message at a time, as before.
    let mut args = vec!["latency"];
    args.extend(tiny);
    let reports = bench_json(&args).await;
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0]["scenario"], "latency");
    assert!(reports[0].get("burst").is_none(), "{reports:?}");
}

#[tokio::test]
async fn bench_refuses_an_empty_burst() {
    let output = timeout(
        WAIT,
        command(&["bench", "latency", "--burst", "0"]).output(),
    )
    .await
    .expect("bench in time")
    .expect("run bench");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--burst"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_failover_reports_the_recovery_after_a_short_hole() {
    // The proxy link runs anywhere; the namespaces need root (run by hand, see `bench --help`).
    let reports = bench_json(&["failover", "--holes", "1.5", "--link", "proxy"]).await;
    assert_eq!(reports.len(), 1, "{reports:?}");
    let report = &reports[0];
    assert_eq!(report["scenario"], "failover");
    assert_eq!(report["link"], "proxy");
    assert_eq!(report["failover"], true);
    assert_eq!(report["hole_s"], 1.5);
    assert!(report["backlog"].as_u64().expect("backlog") > 0, "{report}");
    // The proxy's old connections never recover: only failing over brings the flow back, and
    // within the wait of a test only if it works at all (the figure itself is for the table).
    let first = report["first_message_s"].as_f64().expect("recovered");
    let backlog = report["backlog_s"].as_f64().expect("backlog delivered");
    assert!(first >= 0.0 && backlog >= first, "{report}");
}
