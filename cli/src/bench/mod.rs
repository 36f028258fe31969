//! `networkio bench`: networkio against a raw-TCP baseline measured in the same run.
//!
//! Every scenario runs the raw-TCP baseline and networkio (plaintext and TLS) back to back,
//! several times, and reports medians and the ratio networkio / raw TCP. Absolute numbers on a
//! shared machine drift between runs; ratios from one run are what to compare.
//!
//! The `connections` scenario measures memory per idle peer: the accepting side runs here, the
//! peers in a second process (`networkio bench-peers`, see [`peers`]).

mod burst;
pub mod conns;
mod cpu;
mod failover;
mod nio;
pub mod peers;
mod raw;
mod svg;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use nio::Mode;
use serde::Serialize;

/// Measure throughput, latency and memory per peer against raw TCP on loopback.
///
/// Scenarios: `throughput` (messages one way, every one acknowledged and read by the receiving
/// application; `--sizes` runs it for several payload sizes and `--svg` draws them),
/// `latency` (send-to-Delivered of one message at a time, against a raw-TCP ping-pong; with
/// `--burst N`, of bursts of N messages: from sending the first to the acknowledgement of the
/// last, against raw TCP writing the same frames at once and answering the last with one
/// byte), `connections` (resident memory per idle peer on the accepting side: `--peers` peers in a
/// second process connect, each sends one message and gets one reply; against as many plain TCP
/// connections held by a tokio accept loop), `all` (the three, with their defaults: 64 B
/// throughput, latency of one message and of bursts of 100 (or `--burst`), 10,000 peers). Throughput and latency run
/// `--runs` times and the table shows medians; `connections` runs once per contender.
/// With `--json`, one JSON object per scenario, size and mode is printed on stdout (and nothing
/// else).
///
/// `failover` (not part of `all`): a steady flow between two nodes, the link silent for each of
/// `--holes` seconds, then back; reports the time from the link's return to the first message
/// delivered after it and to the backlog's delivery. `--link netns` (Linux, root; the default
/// there) drops packets in network namespaces the bench creates and removes; `--link proxy`
/// silences the chaos proxy instead (see `bench/failover.rs` for what differs).
///
/// `connections` needs one open file per peer in each process: every `networkio` command raises
/// its open-files soft limit to the hard limit at start; raise the hard limit (`ulimit -Hn`,
/// /etc/security/limits.conf, systemd LimitNOFILE) for more peers than it allows.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to measure.
    #[arg(value_enum, default_value_t = Scenario::All)]
    scenario: Scenario,
    /// Payload bytes per message (latency, connections, and throughput without --sizes).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Throughput: payload sizes to measure, comma-separated (e.g. 16,64,256,1024,4096,16384);
    /// default: --size.
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<usize>,
    /// Throughput: write an SVG line chart of MB/s of payload against size to this file.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Connections: how many peers connect.
    #[arg(long, default_value_t = 10_000)]
    peers: usize,
    /// Messages per throughput run (default: 5,000,000 for 64 B, scaled down for larger sizes).
    #[arg(long)]
    count: Option<u64>,
    /// Round trips per latency run (bursts, with --burst).
    #[arg(long, default_value_t = 5_000)]
    samples: usize,
    /// Latency: time bursts of N messages, from sending the first to the acknowledgement of the
    /// last, instead of one message at a time (N: 100 if not given). `all` measures both.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "100")]
    burst: Option<usize>,
    /// Throughput: messages handed to networkio per call. 1 (the default) calls
    /// `Peer::send_bytes` once per message; more uses `Peer::send_bytes_many`.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Throughput: run each side (sender, receiver) on a thread of its own with a
    /// single-threaded runtime, as two single-connection processes would, instead of both as
    /// tasks of one multi-threaded runtime. Applies to both contenders.
    #[arg(long)]
    split: bool,
    /// Runs per measurement; medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Which networkio modes to measure [default: plaintext,tls; for connections: plaintext].
    #[arg(long, value_enum, value_delimiter = ',')]
    modes: Vec<Mode>,
    /// Print JSON objects, one per line, instead of a table.
    #[arg(long)]
    json: bool,
    /// Failover: the silent holes' lengths, in seconds, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [3.0, 10.0, 20.0])]
    holes: Vec<f64>,
    /// Failover: how the link is made silent.
    #[arg(long, value_enum, default_value_t = failover::Link::Auto)]
    link: failover::Link,
    /// Failover: never suspect a link (no fresh connections raced against it), to measure what
    /// TCP's retransmissions and the idle timeout give alone.
    #[arg(long)]
    no_failover: bool,
    /// Throughput: whether the nodes keep node-wide statistics and record them with a
    /// Prometheus recorder (`NodeBuilder::metrics`). `both` alternates on and off within each
    /// run, so that the two are measured under the same conditions, and reports each.
    #[arg(long, value_enum, default_value_t = Metrics::On)]
    metrics: Metrics,
}

/// `bench --metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Metrics {
    On,
    Off,
    Both,
}

impl Metrics {
    /// The settings to measure, in the order they alternate.
    fn settings(self) -> &'static [bool] {
        match self {
            Metrics::On => &[true],
            Metrics::Off => &[false],
            Metrics::Both => &[true, false],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    Throughput,
    Latency,
    Connections,
    All,
    Failover,
}

#[derive(Debug, Serialize)]
struct Report {
    scenario: &'static str,
    mode: Mode,
    size: usize,
    runs: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    peers: Option<usize>,
    /// Messages per send call (throughput).
    #[serde(skip_serializing_if = "Option::is_none")]
    batch: Option<usize>,
    /// Throughput: each side on its own single-threaded runtime (`--split`).
    #[serde(skip_serializing_if = "Option::is_none")]
    split: Option<bool>,
    /// Throughput: whether the nodes kept node-wide statistics (`--metrics`).
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics: Option<bool>,
    /// Burst latency: messages per burst.
    #[serde(skip_serializing_if = "Option::is_none")]
    burst: Option<usize>,
    /// networkio / raw TCP: throughput ratio, latency ratio (p50, also for bursts), or memory
    /// per peer ratio.
    ratio: f64,
    networkio: Figures,
    raw_tcp: Figures,
}

#[derive(Debug, Default, Serialize)]
struct Figures {
    #[serde(skip_serializing_if = "Option::is_none")]
    msgs_per_sec: Option<f64>,
    /// Payload megabytes (10^6 B) per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    mb_per_sec: Option<f64>,
    /// Throughput: CPU time of the whole process (every thread, user and system) per message,
    /// in nanoseconds: what a message costs regardless of how the work was spread over cores.
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_ns_per_msg: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p50_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p99_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peers: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rss_per_peer_bytes: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lost: Option<u64>,
}

/// Times `samples` runs of `round`, after a tenth as many more to warm up.
pub(crate) async fn time_rounds(
    samples: usize,
    mut round: impl AsyncFnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Duration>> {
    for _ in 0..samples / 10 {
        round().await?;
    }
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = std::time::Instant::now();
        round().await?;
        times.push(start.elapsed());
    }
    Ok(times)
}

/// Runs one side of a throughput measurement: with `split`, on a thread of its own in a
/// single-threaded runtime (as a separate single-connection process would), otherwise as a task
/// of the current runtime.
pub(crate) fn side<F, Fut, T>(split: bool, f: F) -> tokio::task::JoinHandle<anyhow::Result<T>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<T>> + 'static + Send,
    T: Send + 'static,
{
    if !split {
        return tokio::spawn(f());
    }
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(f())
    })
}

pub async fn run(mut args: Args) -> anyhow::Result<()> {
    if args.scenario == Scenario::Failover {
        if args
            .holes
            .iter()
            .any(|h| !h.is_finite() || *h <= 0.0 || *h > 3600.0)
        {
            bail!("--holes must be positive numbers of seconds, at most 3600");
        }
        let holes: Vec<Duration> = args
            .holes
            .iter()
            .map(|h| Duration::from_secs_f64(*h))
            .collect();
        let mode = args.modes.first().copied().unwrap_or(Mode::Plaintext);
        return failover::run(&holes, args.link, mode, !args.no_failover, args.json).await;
    }
    if args.runs == 0
        || args.size == 0
        || args.samples == 0
        || args.peers == 0
        || args.burst == Some(0)
    {
        bail!("--runs, --size, --samples, --peers and --burst must be positive");
    }
    if args.sizes.contains(&0) {
        bail!("--sizes must be positive");
    }
    if args.sizes.is_empty() {
        args.sizes.push(args.size);
    }
    let scenarios: &[Scenario] = match args.scenario {
        Scenario::All => {
            args.burst.get_or_insert(DEFAULT_BURST);
            &[
                Scenario::Throughput,
                Scenario::Latency,
                Scenario::Connections,
            ]
        }
        Scenario::Throughput => &[Scenario::Throughput],
        Scenario::Latency => &[Scenario::Latency],
        Scenario::Connections => &[Scenario::Connections],
        Scenario::Failover => &[],
    };
    let explicit_modes = !args.modes.is_empty();
    let connection_modes = if explicit_modes {
        args.modes.clone()
    } else {
        vec![Mode::Plaintext]
    };
    if !explicit_modes {
        args.modes = vec![Mode::Plaintext, Mode::Tls];
    }
    if scenarios.contains(&Scenario::Connections) {
        conns::check_limits(args.peers)?;
    }
    let steps: usize = scenarios
        .iter()
        .map(|scenario| match scenario {
            Scenario::Throughput => {
                args.sizes.len()
                    * args.runs
                    * (1 + args.modes.len() * args.metrics.settings().len())
            }
            Scenario::Latency => latency_kinds(&args).len() * args.runs * (1 + args.modes.len()),
            Scenario::Connections => 1 + connection_modes.len(),
            Scenario::All | Scenario::Failover => 0,
        })
        .sum();
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix("bench");
    if scenarios.contains(&Scenario::Throughput) && args.metrics != Metrics::Off {
        // What an operator's process has: a recorder that the nodes' statistics go to.
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .context("could not install the metrics recorder")?;
    }
    let mut reports = Vec::new();
    for scenario in scenarios {
        match scenario {
            Scenario::Throughput => {
                for &size in &args.sizes {
                    reports.extend(throughput(&args, size, &bar).await?);
                }
            }
            Scenario::Latency => {
                for burst in latency_kinds(&args) {
                    reports.extend(latency(&args, burst, &bar).await?);
                }
            }
            Scenario::Connections => {
                reports.extend(connections(&args, &connection_modes, &bar).await?);
            }
            Scenario::All | Scenario::Failover => {}
        }
    }
    bar.finish_and_clear();
    if let Some(path) = &args.svg {
        write_svg(path, &reports)?;
    }
    if args.json {
        for report in &reports {
            println!("{}", serde_json::to_string(report)?);
        }
    } else {
        print_table(&reports, &args);
    }
    Ok(())
}

/// Messages per burst when `all` runs without `--burst`.
const DEFAULT_BURST: usize = 100;

/// The latency measurements to make: one message at a time (`None`) unless only `--burst` was
/// asked for, and bursts of `--burst` messages.
fn latency_kinds(args: &Args) -> Vec<Option<usize>> {
    match (args.scenario, args.burst) {
        (Scenario::All, burst) => [None].into_iter().chain(burst.map(Some)).collect(),
        (_, burst) => vec![burst],
    }
}

/// Messages per throughput run: `--count`, or 5,000,000 for 64 B (320 MB of payload, about
/// half a second) scaled down for larger sizes.
fn message_count(args: &Args, size: usize) -> u64 {
    args.count
        .unwrap_or_else(|| (320_000_000 / size.max(64) as u64).clamp(10_000, 5_000_000))
}

async fn throughput(args: &Args, size: usize, bar: &ProgressBar) -> anyhow::Result<Vec<Report>> {
    let count = message_count(args, size);
    let rate = |d: Duration| count as f64 / d.as_secs_f64();
    let mb = |msgs_per_sec: f64| msgs_per_sec * size as f64 / 1e6;
    let per_msg = |cpu: Option<Duration>| cpu.map(|cpu| cpu.as_nanos() as f64 / count as f64);
    let (mut raw, mut raw_cpu) = (Vec::new(), Vec::new());
    let contenders: Vec<(Mode, bool)> = args
        .modes
        .iter()
        .flat_map(|mode| args.metrics.settings().iter().map(|m| (*mode, *m)))
        .collect();
    let mut by_mode: Vec<(Vec<f64>, Vec<f64>)> = vec![Default::default(); contenders.len()];
    // Interleaved, so drift on a shared machine hits every contender alike.
    for _ in 0..args.runs {
        bar.set_message(format!("throughput raw TCP, {count} x {size} B"));
        let cpu = cpu::Meter::start();
        raw.push(rate(raw::throughput(count, size, args.split).await?));
        raw_cpu.extend(per_msg(cpu.stop()));
        bar.inc(1);
        for ((mode, metrics), (results, cpus)) in contenders.iter().zip(&mut by_mode) {
            bar.set_message(format!(
                "throughput networkio {mode:?} (metrics {}), {count} x {size} B",
                if *metrics { "on" } else { "off" }
            ));
            let cpu = cpu::Meter::start();
            let run = nio::throughput(*mode, count, size, args.batch, args.split, *metrics);
            results.push(rate(run.await?));
            cpus.extend(per_msg(cpu.stop()));
            bar.inc(1);
        }
    }
    let raw = median(&mut raw);
    let raw_cpu = median_of_some(&mut raw_cpu);
    Ok(contenders
        .iter()
        .zip(by_mode)
        .map(|((mode, metrics), (mut results, mut cpus))| {
            let nio = median(&mut results);
            Report {
                scenario: "throughput",
                mode: *mode,
                size,
                runs: args.runs,
                peers: None,
                batch: Some(args.batch),
                split: Some(args.split),
                metrics: Some(*metrics),
                burst: None,
                ratio: nio / raw,
                networkio: Figures {
                    msgs_per_sec: Some(nio),
                    mb_per_sec: Some(mb(nio)),
                    cpu_ns_per_msg: median_of_some(&mut cpus),
                    ..Figures::default()
                },
                raw_tcp: Figures {
                    msgs_per_sec: Some(raw),
                    mb_per_sec: Some(mb(raw)),
                    cpu_ns_per_msg: raw_cpu,
                    ..Figures::default()
                },
            }
        })
        .collect())
}

/// Resident memory per idle peer, once per contender (each in a fresh process): raw TCP first,
/// then each mode.
async fn connections(
    args: &Args,
    modes: &[Mode],
    bar: &ProgressBar,
) -> anyhow::Result<Vec<Report>> {
    let raw = conns::measure(None, args.peers, args.size, bar).await?;
    bar.inc(1);
    let mut reports = Vec::new();
    for mode in modes {
        let nio = conns::measure(Some(*mode), args.peers, args.size, bar).await?;
        bar.inc(1);
        reports.push(Report {
            scenario: "connections",
            mode: *mode,
            size: args.size,
            runs: 1,
            peers: Some(args.peers),
            batch: None,
            split: None,
            metrics: None,
            burst: None,
            ratio: nio.rss_per_peer_bytes / raw.rss_per_peer_bytes.max(1.0),
            networkio: Figures {
                peers: Some(args.peers),
                rss_per_peer_bytes: Some(nio.rss_per_peer_bytes),
                lost: Some(nio.lost),
                ..Figures::default()
            },
            raw_tcp: Figures {
                peers: Some(args.peers),
                rss_per_peer_bytes: Some(raw.rss_per_peer_bytes),
                ..Figures::default()
            },
        });
    }
    Ok(reports)
}

/// The throughput reports as a chart of MB/s against payload size.
fn write_svg(path: &std::path::Path, reports: &[Report]) -> anyhow::Result<()> {
    let throughput: Vec<&Report> = reports
        .iter()
        .filter(|r| r.scenario == "throughput")
        .collect();
    if throughput.is_empty() {
        bail!("--svg draws the throughput scenario, which did not run");
    }
    let mut raw = svg::Series {
        label: "raw TCP".into(),
        points: Vec::new(),
    };
    let mut lines: Vec<(Mode, svg::Series)> = Vec::new();
    for report in throughput {
        let point = |f: &Figures| (report.size, f.mb_per_sec.unwrap_or(0.0));
        if !raw.points.iter().any(|p| p.0 == report.size) {
            raw.points.push(point(&report.raw_tcp));
        }
        let index = match lines.iter().position(|(mode, _)| *mode == report.mode) {
            Some(index) => index,
            None => {
                let label = match report.mode {
                    Mode::Plaintext => "networkio plaintext",
                    Mode::Tls => "networkio TLS",
                };
                lines.push((
                    report.mode,
                    svg::Series {
                        label: label.into(),
                        points: Vec::new(),
                    },
                ));
                lines.len() - 1
            }
        };
        lines[index].1.points.push(point(&report.networkio));
    }
    let mut series = vec![raw];
    series.extend(lines.into_iter().map(|(_, line)| line));
    let text = svg::chart(
        "networkio throughput vs raw TCP (loopback, medians)",
        &series,
    );
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Latency of one message at a time, or with `burst` of bursts of that many messages.
async fn latency(
    args: &Args,
    burst: Option<usize>,
    bar: &ProgressBar,
) -> anyhow::Result<Vec<Report>> {
    let (samples, size) = (args.samples, args.size);
    let what = match burst {
        Some(n) => format!("bursts of {n} x {size} B"),
        None => format!("{size} B"),
    };
    let mut raw = (Vec::new(), Vec::new());
    let mut by_mode = vec![(Vec::new(), Vec::new()); args.modes.len()];
    for _ in 0..args.runs {
        bar.set_message(format!("latency raw TCP, {what}"));
        let times = match burst {
            Some(n) => burst::raw(samples, size, n).await?,
            None => raw::round_trips(samples, size).await?,
        };
        let (p50, p99) = percentiles(times);
        raw.0.push(p50);
        raw.1.push(p99);
        bar.inc(1);
        for (mode, results) in args.modes.iter().zip(&mut by_mode) {
            bar.set_message(format!("latency networkio {mode:?}, {what}"));
            let times = match burst {
                Some(n) => burst::networkio(*mode, samples, size, n).await?,
                None => nio::latencies(*mode, samples, size).await?,
            };
            let (p50, p99) = percentiles(times);
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
                scenario: if burst.is_some() { "burst" } else { "latency" },
                mode: *mode,
                size: args.size,
                runs: args.runs,
                peers: None,
                batch: None,
                split: None,
                metrics: None,
                burst,
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

/// ", N ns CPU/msg" where measured.
fn cpu_column(figures: &Figures) -> String {
    figures
        .cpu_ns_per_msg
        .map(|ns| format!(" {ns:>6.0} ns CPU/msg"))
        .unwrap_or_default()
}

/// The median, or `None` for no values (CPU time is unavailable off Linux).
fn median_of_some(values: &mut [f64]) -> Option<f64> {
    (!values.is_empty()).then(|| median(values))
}

fn print_table(reports: &[Report], args: &Args) {
    println!(
        "medians of {} runs (connections: one run), loopback; ratio = networkio / raw TCP",
        args.runs
    );
    println!();
    for report in reports {
        let mode = format!("{:?}", report.mode).to_lowercase();
        match report.scenario {
            "throughput" => println!(
                "throughput {mode:<9} {:>6} B  networkio {:>11.0} msg/s {:>8.1} MB/s{}   raw TCP {:>11.0} msg/s {:>8.1} MB/s{}   ratio {:.3}   ({} messages, acknowledged{}{}{})",
                report.size,
                report.networkio.msgs_per_sec.unwrap_or(0.0),
                report.networkio.mb_per_sec.unwrap_or(0.0),
                cpu_column(&report.networkio),
                report.raw_tcp.msgs_per_sec.unwrap_or(0.0),
                report.raw_tcp.mb_per_sec.unwrap_or(0.0),
                cpu_column(&report.raw_tcp),
                report.ratio,
                message_count(args, report.size),
                match report.batch {
                    Some(n) if n > 1 => format!(", {n} per send call"),
                    _ => String::new(),
                },
                if report.split == Some(true) {
                    ", a runtime per side"
                } else {
                    ""
                },
                if report.metrics == Some(false) {
                    ", metrics off"
                } else {
                    ""
                },
            ),
            "connections" => println!(
                "connections {mode:<9} {} peers  networkio {:>8.0} B/peer (lost {})   raw TCP {:>8.0} B/connection   ratio {:.1}   (resident memory of the accepting process, idle)",
                report.peers.unwrap_or(0),
                report.networkio.rss_per_peer_bytes.unwrap_or(0.0),
                report.networkio.lost.unwrap_or(0),
                report.raw_tcp.rss_per_peer_bytes.unwrap_or(0.0),
                report.ratio,
            ),
            _ => println!(
                "{:<10} {mode:<9} {:>6} B  networkio p50 {:>7.1} us p99 {:>7.1} us   raw TCP p50 {:>7.1} us p99 {:>7.1} us   ratio p50 {:.2} p99 {:.2}{}",
                report.scenario,
                report.size,
                report.networkio.p50_us.unwrap_or(0.0),
                report.networkio.p99_us.unwrap_or(0.0),
                report.raw_tcp.p50_us.unwrap_or(0.0),
                report.raw_tcp.p99_us.unwrap_or(0.0),
                report.ratio,
                report.networkio.p99_us.unwrap_or(0.0) / report.raw_tcp.p99_us.unwrap_or(1.0),
                report
                    .burst
                    .map(|n| format!("   (bursts of {n}: first sent to last acknowledged)"))
                    .unwrap_or_default(),
            ),
        }
    }
}
