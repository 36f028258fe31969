//! `networkio bench`: networkio against a raw-TCP baseline measured in the same run.
//!
//! Every scenario runs the raw-TCP baseline and networkio (plaintext and TLS) back to back,
//! several times, and reports medians and the ratio networkio / raw TCP. Absolute numbers on a
//! shared machine drift between runs; ratios from one run are what to compare.

mod nio;
mod raw;

use std::time::Duration;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use nio::Mode;
use serde::Serialize;

/// Measure throughput and latency against raw TCP on loopback.
///
/// Scenarios: `throughput` (messages one way, every one acknowledged and read by the receiving
/// application), `latency` (send-to-Delivered of one message at a time, against a raw-TCP
/// ping-pong), `all`. Each runs `--runs` times; the table shows medians. With `--json`, one JSON
/// object per scenario and mode is printed on stdout (and nothing else).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to measure.
    #[arg(value_enum, default_value_t = Scenario::All)]
    scenario: Scenario,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Messages per throughput run (default: 1,000,000 for 64 B, scaled down for larger sizes).
    #[arg(long)]
    count: Option<u64>,
    /// Round trips per latency run.
    #[arg(long, default_value_t = 5_000)]
    samples: usize,
    /// Runs per measurement; medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Which networkio modes to measure.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Mode::Plaintext, Mode::Tls])]
    modes: Vec<Mode>,
    /// Print JSON objects, one per line, instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    Throughput,
    Latency,
    All,
}

#[derive(Debug, Serialize)]
struct Report {
    scenario: &'static str,
    mode: Mode,
    size: usize,
    runs: usize,
    /// networkio / raw TCP: throughput ratio, or latency ratio (p50).
    ratio: f64,
    networkio: Figures,
    raw_tcp: Figures,
}

#[derive(Debug, Default, Serialize)]
struct Figures {
    #[serde(skip_serializing_if = "Option::is_none")]
    msgs_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p50_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p99_us: Option<f64>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.runs == 0 || args.size == 0 || args.samples == 0 {
        bail!("--runs, --size and --samples must be positive");
    }
    let count = args
        .count
        .unwrap_or_else(|| (64_000_000 / args.size.max(64) as u64).clamp(10_000, 1_000_000));
    let scenarios: &[Scenario] = match args.scenario {
        Scenario::All => &[Scenario::Throughput, Scenario::Latency],
        Scenario::Throughput => &[Scenario::Throughput],
        Scenario::Latency => &[Scenario::Latency],
    };
    let steps = scenarios.len() * args.runs * (1 + args.modes.len());
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix("bench");
    let mut reports = Vec::new();
    for scenario in scenarios {
        match scenario {
            Scenario::Throughput => reports.extend(throughput(&args, count, &bar).await?),
            Scenario::Latency => reports.extend(latency(&args, &bar).await?),
            Scenario::All => {}
        }
    }
    bar.finish_and_clear();
    if args.json {
        for report in &reports {
            println!("{}", serde_json::to_string(report)?);
        }
    } else {
        print_table(&reports, count, &args);
    }
    Ok(())
}

async fn throughput(args: &Args, count: u64, bar: &ProgressBar) -> anyhow::Result<Vec<Report>> {
    let rate = |d: Duration| count as f64 / d.as_secs_f64();
    let mut raw = Vec::new();
    let mut by_mode: Vec<Vec<f64>> = vec![Vec::new(); args.modes.len()];
    // Interleaved, so drift on a shared machine hits every contender alike.
    for _ in 0..args.runs {
        bar.set_message(format!("throughput raw TCP, {count} x {} B", args.size));
        raw.push(rate(raw::throughput(count, args.size).await?));
        bar.inc(1);
        for (mode, results) in args.modes.iter().zip(&mut by_mode) {
            bar.set_message(format!(
                "throughput networkio {mode:?}, {count} x {} B",
                args.size
            ));
            results.push(rate(nio::throughput(*mode, count, args.size).await?));
            bar.inc(1);
        }
    }
    let raw = median(&mut raw);
    Ok(args
        .modes
        .iter()
        .zip(by_mode)
        .map(|(mode, mut results)| {
            let nio = median(&mut results);
            Report {
                scenario: "throughput",
                mode: *mode,
                size: args.size,
                runs: args.runs,
                ratio: nio / raw,
                networkio: Figures {
                    msgs_per_sec: Some(nio),
                    ..Figures::default()
                },
                raw_tcp: Figures {
                    msgs_per_sec: Some(raw),
                    ..Figures::default()
                },
            }
        })
        .collect())
}

async fn latency(args: &Args, bar: &ProgressBar) -> anyhow::Result<Vec<Report>> {
    let mut raw = (Vec::new(), Vec::new());
    let mut by_mode = vec![(Vec::new(), Vec::new()); args.modes.len()];
    for _ in 0..args.runs {
        bar.set_message(format!("latency raw TCP ping-pong, {} B", args.size));
        let (p50, p99) = percentiles(raw::round_trips(args.samples, args.size).await?);
        raw.0.push(p50);
        raw.1.push(p99);
        bar.inc(1);
        for (mode, results) in args.modes.iter().zip(&mut by_mode) {
            bar.set_message(format!("latency networkio {mode:?}, {} B", args.size));
            let (p50, p99) = percentiles(nio::latencies(*mode, args.samples, args.size).await?);
            results.0.push(p50);
            results.1.push(p99);
            bar.inc(1);
        }
    }
    let (raw50, raw99) = (median(&mut raw.0), median(&mut raw.1));
    Ok(args
        .modes
        .iter()
        .zip(by_mode)
        .map(|(mode, (mut p50, mut p99))| {
            let (p50, p99) = (median(&mut p50), median(&mut p99));
            Report {
                scenario: "latency",
                mode: *mode,
                size: args.size,
                runs: args.runs,
                ratio: p50 / raw50,
                networkio: Figures {
                    p50_us: Some(p50),
                    p99_us: Some(p99),
                    ..Figures::default()
                },
                raw_tcp: Figures {
                    p50_us: Some(raw50),
                    p99_us: Some(raw99),
                    ..Figures::default()
                },
            }
        })
        .collect())
}

/// p50 and p99 in microseconds.
fn percentiles(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    let at = |q: f64| {
        let index = ((times.len() as f64 - 1.0) * q).round() as usize;
        times.get(index).map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    (at(0.50), at(0.99))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn print_table(reports: &[Report], count: u64, args: &Args) {
    println!(
        "medians of {} runs, {} B payloads, loopback; ratio = networkio / raw TCP",
        args.runs, args.size
    );
    println!();
    for report in reports {
        match report.scenario {
            "throughput" => println!(
                "throughput {:<9} networkio {:>12.0} msg/s   raw TCP {:>12.0} msg/s   ratio {:.3}   ({count} messages, acknowledged)",
                format!("{:?}", report.mode).to_lowercase(),
                report.networkio.msgs_per_sec.unwrap_or(0.0),
                report.raw_tcp.msgs_per_sec.unwrap_or(0.0),
                report.ratio
            ),
            _ => println!(
                "latency    {:<9} networkio p50 {:>7.1} us p99 {:>7.1} us   raw TCP p50 {:>7.1} us p99 {:>7.1} us   ratio p50 {:.2} p99 {:.2}",
                format!("{:?}", report.mode).to_lowercase(),
                report.networkio.p50_us.unwrap_or(0.0),
                report.networkio.p99_us.unwrap_or(0.0),
                report.raw_tcp.p50_us.unwrap_or(0.0),
                report.raw_tcp.p99_us.unwrap_or(0.0),
                report.ratio,
                report.networkio.p99_us.unwrap_or(0.0) / report.raw_tcp.p99_us.unwrap_or(1.0),
            ),
        }
    }
}
