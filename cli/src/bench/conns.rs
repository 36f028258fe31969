//! The `connections` scenario: memory per idle peer on the accepting side.
//!
//! The accepting node (or, for the baseline, a plain tokio accept loop) runs in one process;
//! the peers run in a second process (`networkio bench-peers`, this same executable), so the
//! accepting process's resident memory grows only by what it keeps per connection.
//!
//! Each contender's accepting side runs in a fresh process of its own (`networkio bench-serve`,
//! started by `bench`): memory freed by an earlier contender (or by the throughput scenario)
//! stays resident in the allocator and would be reused, hiding the next contender's growth. (A
//! second plaintext run in the same process measured 0 B per peer.)

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use indicatif::ProgressBar;
use networkio::Event;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::watch;

use super::nio::{Mode, builder};

/// File descriptors a process needs beyond one per connection.
const FD_MARGIN: u64 = 256;
/// How long the server side may still take once the peers report done.
const SERVER_GRACE: Duration = Duration::from_secs(10);

/// Internal: the accepting side of one `bench connections` contender, in a fresh process.
///
/// Prints `connected K` lines while the peers connect, then `result RSS_PER_PEER LOST` (or
/// `error MESSAGE`).
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// networkio mode; absent: the raw-TCP baseline.
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    #[arg(long)]
    peers: usize,
    #[arg(long, default_value_t = 64)]
    size: usize,
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let last = std::cell::Cell::new(usize::MAX);
    let progress = |connected: usize| {
        if connected != last.get() {
            println!("connected {connected}");
            last.set(connected);
        }
    };
    let measured = match args.mode {
        Some(mode) => networkio(mode, args.peers, args.size, &progress).await,
        None => raw(args.peers, args.size, &progress).await,
    };
    match measured {
        Ok(m) => {
            println!("result {} {}", m.rss_per_peer_bytes, m.lost);
            Ok(())
        }
        Err(e) => {
            println!("error {}", format!("{e:#}").replace('\n', " "));
            Err(e)
        }
    }
}

/// Runs one contender (`mode`, or raw TCP for `None`) in a fresh `bench-serve` process, showing
/// its progress on `bar`.
pub async fn measure(
    mode: Option<Mode>,
    peers: usize,
    size: usize,
    bar: &ProgressBar,
) -> anyhow::Result<Measured> {
    let label = mode.map_or("raw TCP".to_owned(), |m| {
        format!("networkio {}", mode_name(m))
    });
    let mut extra = vec![
        "--peers".to_owned(),
        peers.to_string(),
        "--size".to_owned(),
        size.to_string(),
    ];
    if let Some(mode) = mode {
        extra.extend(["--mode".to_owned(), mode_name(mode).to_owned()]);
    }
    let mut process = Process::spawn("bench-serve", &extra)?;
    loop {
        let r = process.state.borrow().clone();
        bar.set_message(format!(
            "connections {label}: {}/{peers} peers connected",
            r.connected
        ));
        if let Some(error) = r.error {
            process.finish().await;
            bail!("{label}: {error}");
        }
        if let Some(measured) = r.result {
            process.finish().await;
            return Ok(measured);
        }
        if r.exited {
            process.finish().await;
            bail!("{label}: the measuring process exited without a result");
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), process.state.changed()).await;
    }
}

/// One contender's figures.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub rss_per_peer_bytes: f64,
    /// Messages not received, counting both directions (networkio only).
    pub lost: u64,
}

/// Fails with instructions if `peers` connections do not fit this process's open-files limit
/// (already raised to the hard limit by `main`) or the ephemeral port range.
pub fn check_limits(peers: usize) -> anyhow::Result<()> {
    let need = peers as u64 + FD_MARGIN;
    let (soft, hard) = rlimit::Resource::NOFILE
        .get()
        .context("could not read the open-files limit")?;
    if soft < need {
        bail!(
            "{peers} peers need about {need} open files in this process and in the peers' \
             process, but the limit is {soft} (hard limit {hard}). Raise the hard limit, e.g. \
             `ulimit -Hn {need}` as root in this shell (check with `ulimit -Hn`), a `nofile` line \
             in /etc/security/limits.conf for your user (then log in again), or LimitNOFILE={need} \
             in the systemd unit; or use fewer --peers"
        );
    }
    if let Ok(range) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") {
        let bounds: Vec<usize> = range
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect();
        if let [low, high] = bounds[..] {
            let ports = high.saturating_sub(low) + 1;
            if peers > ports {
                bail!(
                    "{peers} peers need {peers} ephemeral ports on loopback but \
                     net.ipv4.ip_local_port_range allows {ports}; widen it (sysctl) or use fewer \
                     --peers"
                );
            }
        }
    }
    Ok(())
}

/// Resident set size of this process, in bytes: resident pages (/proc/self/statm) times the
/// page size.
fn rss_bytes() -> anyhow::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").context("reading /proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("unexpected /proc/self/statm")?;
    Ok(pages * page_size())
}

/// The page size, from the auxiliary vector (AT_PAGESZ); 4 KiB if it cannot be read.
fn page_size() -> u64 {
    const AT_PAGESZ: u64 = 6;
    let Ok(auxv) = std::fs::read("/proc/self/auxv") else {
        return 4096;
    };
    auxv.chunks_exact(16)
        .map(|pair| {
            let word = |b: &[u8]| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8]));
            (word(&pair[..8]), word(&pair[8..]))
        })
        .find(|&(key, _)| key == AT_PAGESZ)
        .map_or(4096, |(_, value)| value)
}

/// A helper process (`bench-peers` or `bench-serve`) and what it has reported.
struct Process {
    child: Child,
    stdin: Option<ChildStdin>,
    state: watch::Receiver<Reported>,
}

#[derive(Debug, Clone, Default)]
struct Reported {
    connected: usize,
    /// `done N lost L`: L.
    done: Option<u64>,
    error: Option<String>,
    /// `result RSS_PER_PEER LOST`.
    result: Option<Measured>,
    exited: bool,
}

impl Process {
    fn spawn(subcommand: &str, extra: &[String]) -> anyhow::Result<Process> {
        let exe = std::env::current_exe().context("locating this executable")?;
        let mut child = Command::new(exe)
            .arg(subcommand)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting `networkio {subcommand}`"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("peers' stdout")?;
        let (tx, state) = watch::channel(Reported::default());
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let words: Vec<&str> = line.split_whitespace().collect();
                tx.send_modify(|r| match words[..] {
                    ["connected", n] => r.connected = n.parse().unwrap_or(r.connected),
                    ["done", _, "lost", lost] => r.done = Some(lost.parse().unwrap_or(u64::MAX)),
                    ["error", ..] => r.error = Some(line["error".len()..].trim().to_owned()),
                    ["result", rss, lost] => {
                        r.result = Some(Measured {
                            rss_per_peer_bytes: rss.parse().unwrap_or(f64::NAN),
                            lost: lost.parse().unwrap_or(u64::MAX),
                        });
                    }
                    _ => {}
                });
            }
            tx.send_modify(|r| r.exited = true);
        });
        Ok(Process {
            child,
            stdin,
            state,
        })
    }

    /// Waits until the peers report done and `ready` holds (or [`SERVER_GRACE`] passed since
    /// done), showing progress; returns what the peers lost.
    async fn settle(
        &mut self,
        progress: &impl Fn(usize),
        peers: usize,
        mut ready: impl FnMut() -> bool,
    ) -> anyhow::Result<u64> {
        let deadline =
            Instant::now() + Duration::from_secs(60) + Duration::from_millis(20) * peers as u32;
        let mut done_at = None;
        loop {
            let r = self.state.borrow().clone();
            progress(r.connected);
            if let Some(error) = r.error {
                bail!("the peers' process failed: {error}");
            }
            if let Some(lost) = r.done {
                let since = *done_at.get_or_insert_with(Instant::now);
                if ready() || since.elapsed() > SERVER_GRACE {
                    return Ok(lost);
                }
            } else if r.exited {
                bail!(
                    "the peers' process exited early ({} peers connected)",
                    r.connected
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out: {} of {peers} peers connected and exchanged their messages",
                    r.connected
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Closes the process's stdin, which ends `bench-peers`; waits for the exit, kills the
    /// process if it lingers.
    async fn finish(mut self) {
        drop(self.stdin.take());
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// networkio: an accepting node here, `peers` client nodes in the peers' process; each peer
/// sends one message and the node replies with one.
async fn networkio(
    mode: Mode,
    peers: usize,
    size: usize,
    progress: &impl Fn(usize),
) -> anyhow::Result<Measured> {
    let cap = (peers + FD_MARGIN as usize).max(16 * 1024);
    let server = builder("bench-server", mode)
        .listen("127.0.0.1:0")
        .max_connections(cap)
        .max_sessions(cap)
        .start()
        .await?;
    let addr = server.local_addrs()[0];
    let received = Arc::new(AtomicUsize::new(0));
    let replied = Arc::new(AtomicUsize::new(0));
    let mut events = server.events();
    let reader = {
        let (received, replied) = (received.clone(), replied.clone());
        let payload = Bytes::from(vec![0xa5u8; size]);
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let Event::Message { peer } = event {
                    let n = peer.read_all_bytes().len();
                    if n == 0 {
                        continue;
                    }
                    received.fetch_add(n, Ordering::Relaxed);
                    let (replied, payload) = (replied.clone(), payload.clone());
                    tokio::spawn(async move {
                        if let Ok(receipt) = peer.send_bytes(payload).await {
                            if receipt.delivered().await.is_ok() {
                                replied.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    });
                }
            }
        })
    };
    let before = rss_bytes()?;
    let mut args = peers_args(addr, peers, size);
    args.extend(["--mode".into(), mode_name(mode).into()]);
    let mut process = Process::spawn("bench-peers", &args)?;
    let result = process
        .settle(progress, peers, || {
            server.connection_count() == peers
                && received.load(Ordering::Relaxed) >= peers
                && replied.load(Ordering::Relaxed) >= peers
        })
        .await;
    let after = rss_bytes();
    process.finish().await;
    server.shutdown().await;
    reader.abort();
    let peers_lost = result?;
    let after = after?;
    let server_lost = peers.saturating_sub(received.load(Ordering::Relaxed)) as u64;
    Ok(Measured {
        rss_per_peer_bytes: after.saturating_sub(before) as f64 / peers as f64,
        lost: peers_lost.saturating_add(server_lost),
    })
}

/// The arguments of the peers' process common to every contender.
fn peers_args(addr: std::net::SocketAddr, peers: usize, size: usize) -> Vec<String> {
    vec![
        "--connect".into(),
        addr.to_string(),
        "--peers".into(),
        peers.to_string(),
        "--size".into(),
        size.to_string(),
    ]
}

/// Raw TCP: a tokio accept loop here holding each socket in a task that reads into a small
/// buffer; `peers` plain connections from the peers' process, each exchanging `size` bytes.
async fn raw(peers: usize, size: usize, progress: &impl Fn(usize)) -> anyhow::Result<Measured> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let open = Arc::new(AtomicUsize::new(0));
    let exchanged = Arc::new(AtomicUsize::new(0));
    let acceptor = {
        let (open, exchanged) = (open.clone(), exchanged.clone());
        let reply = Bytes::from(vec![0xa5u8; size]);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                open.fetch_add(1, Ordering::Relaxed);
                let (open, exchanged, reply) = (open.clone(), exchanged.clone(), reply.clone());
                tokio::spawn(async move {
                    let _ = hold(stream, &reply, &exchanged).await;
                    open.fetch_sub(1, Ordering::Relaxed);
                });
            }
        })
    };
    let before = rss_bytes()?;
    let mut args = peers_args(addr, peers, size);
    args.push("--raw".into());
    let mut process = Process::spawn("bench-peers", &args)?;
    let result = process
        .settle(progress, peers, || {
            open.load(Ordering::Relaxed) == peers && exchanged.load(Ordering::Relaxed) >= peers
        })
        .await;
    let after = rss_bytes();
    process.finish().await;
    acceptor.abort();
    result?;
    let after = after?;
    Ok(Measured {
        rss_per_peer_bytes: after.saturating_sub(before) as f64 / peers as f64,
        lost: peers.saturating_sub(exchanged.load(Ordering::Relaxed)) as u64,
    })
}

/// Reads the peer's `reply.len()` bytes, answers with as many, then reads until the peer closes.
async fn hold(mut stream: TcpStream, reply: &[u8], exchanged: &AtomicUsize) -> std::io::Result<()> {
    let mut buf = [0u8; 256];
    let mut got = 0;
    while got < reply.len() {
        match stream.read(&mut buf).await? {
            0 => return Ok(()),
            n => got += n,
        }
    }
    stream.write_all(reply).await?;
    exchanged.fetch_add(1, Ordering::Relaxed);
    while stream.read(&mut buf).await? > 0 {}
    Ok(())
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Plaintext => "plaintext",
        Mode::Tls => "tls",
    }
}
