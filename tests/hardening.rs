//! Attacks on a running listener: random garbage, absurd length prefixes, a thousand idle and
//! slow handshakes, and peers that flood without reading. Each attack must leave the listener
//! up (a legitimate client still connects and delivers) and its memory bounded.
//!
//! The tests share one process, so those that measure memory, time or file descriptors run one
//! at a time (see [`serial`]).
#![allow(clippy::unwrap_used)]

mod common;

use common::eventually;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::raw::RawPeer;
use common::{Checker, Msg, within};
use networkio::proto::frame::{self, CloseCode, Frame, SessionOffer};
use networkio::{Error, Node, NodeBuilder, Receipt};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

const MIB: u64 = 1 << 20;

/// Runs the tests of this file one at a time: they measure the process's memory and load it.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    install_panic_counter();
    SERIAL.lock().await
}

/// Panics raised outside the test files (in networkio or its dependencies, e.g. in a
/// connection task, where tokio would swallow them).
static LIBRARY_PANICS: AtomicUsize = AtomicUsize::new(0);

fn install_panic_counter() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_tests = info
                .location()
                .is_some_and(|l| l.file().starts_with("tests/") || l.file().contains("/tests/"));
            if !in_tests {
                LIBRARY_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            default(info);
        }));
    });
}

fn assert_no_library_panic() {
    assert_eq!(
        LIBRARY_PANICS.load(Ordering::SeqCst),
        0,
        "networkio (or a dependency) panicked; see the output above"
    );
}

fn seed() -> u64 {
    let seed = std::env::var("NETWORKIO_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("hardening seed: {seed} (rerun with NETWORKIO_SEED={seed})");
    seed
}

/// A field of `/proc/self/status`, in KiB (`VmRSS`: resident memory; `VmSize`: address space).
fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Resident set size in bytes, from `/proc/self/statm` (pages) scaled by the page size that
/// `/proc/self/status` implies.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // VmRSS is the same quantity in KiB; read both to derive the page size without libc.
    let kib = proc_status_kib("VmRSS");
    if pages == 0 {
        return kib * 1024;
    }
    let page = (kib * 1024 / pages).next_power_of_two().max(4096);
    pages * page
}

/// Memory before an attack, to compare with after.
struct Memory {
    rss: u64,
    vm: u64,
}

impl Memory {
    fn now() -> Memory {
        Memory {
            rss: rss_bytes(),
            vm: proc_status_kib("VmSize") * 1024,
        }
    }

    /// Asserts that resident memory grew by less than 64 MiB, and the address space by less than
    /// 2 GiB (a 4 GiB buffer would be reserved even if never touched, invisible in the RSS).
    fn assert_bounded_since(&self, what: &str) -> u64 {
        let now = Memory::now();
        let rss_growth = now.rss.saturating_sub(self.rss);
        let vm_growth = now.vm.saturating_sub(self.vm);
        eprintln!(
            "{what}: RSS {} -> {} MiB (growth {:.1} MiB), address space growth {} MiB",
            self.rss / MIB,
            now.rss / MIB,
            rss_growth as f64 / MIB as f64,
            vm_growth / MIB
        );
        assert!(
            rss_growth < 64 * MIB,
            "{what}: RSS grew by {rss_growth} bytes"
        );
        assert!(
            vm_growth < 2048 * MIB,
            "{what}: address space grew by {vm_growth} bytes"
        );
        rss_growth
    }
}

fn server_builder(plaintext: bool) -> NodeBuilder {
    let b = Node::builder("server").listen("127.0.0.1:0");
    if plaintext { b.insecure_plaintext() } else { b }
}

/// A legitimate client connects to `server`, sends a message and sees it delivered; the
/// server's application reads it. Returns the time from `connect()` to `delivered()`.
async fn legit_client_delivers(server: &Node, plaintext: bool, name: &str) -> Duration {
    let mut b = Node::builder(name);
    if plaintext {
        b = b.insecure_plaintext();
    }
    let client = b.start().await.unwrap();
    let started = Instant::now();
    let elapsed = within("a legitimate client to connect and deliver", async {
        let peer = client.connect(server.local_addrs()[0]).await.unwrap();
        let receipt = peer.send(&"legit").await.unwrap();
        receipt.delivered().await.unwrap();
        started.elapsed()
    })
    .await;
    let got: Vec<String> = server.peer(name).unwrap().read_all().unwrap();
    assert_eq!(got, ["legit"]);
    client.shutdown().await;
    elapsed
}

/// Reads until EOF or error; returns what was read and whether it ended in EOF (not reset).
async fn read_to_close(stream: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

/// The CLOSE code among the frames in `bytes`, if any.
fn close_code(bytes: &[u8]) -> Option<CloseCode> {
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(frame)) = frame::decode(&mut buf, 1 << 24) {
        if let Frame::Close { code, .. } = frame {
            return Some(code);
        }
    }
    None
}

fn hello(name: &str, incarnation: u64) -> Frame {
    common::raw::hello_frame(name, incarnation)
}

fn fresh_offer(nonce: u64) -> SessionOffer {
    SessionOffer {
        session_id: 0,
        nonce,
        next_expected: 1,
        window_messages: 1000,
        window_bytes: 1 << 20,
    }
}

/// One garbage connection's bytes. Plaintext: pure noise, or a valid HELLO (and SESSION and
/// confirmation ACK) followed by noise, so the frame decoder is reached in every state. TLS:
/// pure noise, or a TLS handshake record header followed by noise.
fn garbage(rng: &mut StdRng, plaintext: bool, i: usize) -> Vec<u8> {
    let mut out = BytesMut::new();
    match (plaintext, rng.random_range(0..3)) {
        (_, 0) => {}
        (true, stage) => {
            frame::encode(
                &hello(&format!("fuzz-{}", i % 4), rng.random_range(1..=u64::MAX)),
                &mut out,
            );
            if stage == 2 {
                frame::encode(
                    &Frame::Session(fresh_offer(rng.random_range(1..=u64::MAX))),
                    &mut out,
                );
                frame::encode(
                    &Frame::Ack {
                        up_to: 0,
                        window_messages: 1000,
                        window_bytes: 1 << 20,
                    },
                    &mut out,
                );
            }
        }
        (false, _) => {
            out.extend_from_slice(&[0x16, 0x03, 0x01]);
            out.extend_from_slice(&rng.random::<u16>().to_be_bytes());
        }
    }
    if rng.random_bool(0.5) {
        // Raw noise: mostly a length prefix over the limit.
        let noise = rng.random_range(0..4096);
        let start = out.len();
        out.resize(start + noise, 0);
        rng.fill_bytes(&mut out[start..]);
    } else {
        // Noise shaped as frames: small lengths, any type byte, random bodies, so the decoders
        // of the frame bodies are reached too.
        for _ in 0..rng.random_range(1..32) {
            let len: u32 = rng.random_range(0..64);
            out.extend_from_slice(&len.to_be_bytes());
            let start = out.len();
            out.resize(start + len as usize, 0);
            rng.fill_bytes(&mut out[start..]);
            if len > 0 {
                out[start] = rng.random_range(0..8);
            }
        }
    }
    out.to_vec()
}

async fn garbage_storm(plaintext: bool) {
    const CONNECTIONS: usize = 400;
    const CONCURRENT: usize = 50;
    let _serial = serial().await;
    let seed = seed();
    let server = server_builder(plaintext)
        .handshake_timeout(Duration::from_secs(2))
        .start()
        .await
        .unwrap();
    let addr = server.local_addrs()[0];
    let mut rng = StdRng::seed_from_u64(seed);
    let memory = Memory::now();
    let started = Instant::now();
    let (mut eofs, mut resets) = (0, 0);
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    let mut tasks = JoinSet::new();
    for i in 0..CONNECTIONS {
        let bytes = garbage(&mut rng, plaintext, i);
        tasks.spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            // The server may close (and reset) before it has taken everything.
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
            read_to_close(&mut stream).await
        });
        while tasks.len() >= CONCURRENT || (i + 1 == CONNECTIONS && !tasks.is_empty()) {
            let (answer, eof) = within(
                "the server to close a garbage connection",
                tasks.join_next(),
            )
            .await
            .unwrap()
            .unwrap();
            if eof {
                eofs += 1
            } else {
                resets += 1
            }
            if plaintext {
                let code = close_code(&answer).map_or("none".into(), |c| c.to_string());
                *codes.entry(code).or_default() += 1;
            }
        }
    }
    eprintln!(
        "{} garbage connections ({}) in {:?}: {eofs} closed, {resets} reset; CLOSE codes {codes:?}",
        CONNECTIONS,
        if plaintext { "plaintext" } else { "TLS" },
        started.elapsed()
    );
    eventually("every garbage connection to be gone", || {
        server.connection_count() == 0
    })
    .await;
    assert_eq!(server.pending_handshakes(), 0);
    let delay = legit_client_delivers(&server, plaintext, "legit").await;
    eprintln!("legitimate client after the storm: {delay:?}");
    memory.assert_bounded_since("garbage storm");
    server.shutdown().await;
    assert_no_library_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_garbage_does_not_take_down_a_tls_listener() {
    garbage_storm(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_garbage_does_not_take_down_a_plaintext_listener() {
    garbage_storm(true).await;
}

/// Sends `prefix` then some bytes of "body", and expects the server to close the connection
/// (with CLOSE FRAME_TOO_LARGE where a CLOSE can be read).
async fn expect_refused_frame(stream: &mut TcpStream, prefix: &[u8]) -> Option<CloseCode> {
    let _ = stream.write_all(prefix).await;
    // Some of the claimed body: a server that believed the length would keep reading.
    let _ = stream.write_all(&[0u8; 64 * 1024]).await;
    let (answer, _) = within("the server to close the connection", read_to_close(stream)).await;
    close_code(&answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4_gib_length_prefix_is_refused_without_allocating_it() {
    let _serial = serial().await;
    let server = server_builder(true).start().await.unwrap();
    let addr = server.local_addrs()[0];
    let memory = Memory::now();

    // As the very first frame (the handshake's limit applies)...
    let mut first = TcpStream::connect(addr).await.unwrap();
    let code = expect_refused_frame(&mut first, &[0xff, 0xff, 0xff, 0xff, 0x01]).await;
    eprintln!("4 GiB HELLO: {code:?}");
    assert!(
        matches!(code, Some(CloseCode::FrameTooLarge) | None),
        "{code:?}"
    );

    // ...and after a completed handshake (the session's limit applies).
    let mut raw = RawPeer::connect(addr).await;
    raw.handshake("big-talker", 7, fresh_offer(0x5eed)).await;
    raw.send(&Frame::Ack {
        up_to: 0,
        window_messages: 1000,
        window_bytes: 1 << 20,
    })
    .await;
    let _ = raw.send_raw(&[0xff, 0xff, 0xff, 0xff, 0x03]).await;
    let _ = raw.send_raw(&[0u8; 64 * 1024]).await;
    let code = last_words(&mut raw).await;
    eprintln!("4 GiB DATA: {code:?}");
    assert!(
        matches!(code, Some(CloseCode::FrameTooLarge) | None),
        "{code:?}"
    );

    memory.assert_bounded_since("4 GiB length prefixes");
    eventually("the connections to be gone", || {
        server.connection_count() == 0
    })
    .await;
    legit_client_delivers(&server, true, "legit").await;
    server.shutdown().await;

    // A TLS listener: a TLS record claiming far more than a record may hold.
    let server = server_builder(false).start().await.unwrap();
    let mut stream = TcpStream::connect(server.local_addrs()[0]).await.unwrap();
    expect_refused_frame(&mut stream, &[0x16, 0x03, 0x03, 0xff, 0xff]).await;
    legit_client_delivers(&server, false, "legit").await;
    server.shutdown().await;
    assert_no_library_panic();
}

/// Reads frames until the node closes the connection; returns its CLOSE code, if one arrived.
async fn last_words(raw: &mut RawPeer) -> Option<CloseCode> {
    within("the server to close the connection", async {
        let mut code = None;
        while let Some(frame) = raw.recv().await {
            if let Frame::Close { code: c, .. } = frame {
                code = Some(c);
            }
        }
        code
    })
    .await
}

/// The open-files soft limit of this process, from `/proc/self/limits`.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oldest_pending_handshake_is_evicted_for_the_newest() {
    const SLOTS: usize = 8;
    let _serial = serial().await;
    // A handshake deadline far beyond the test's waits: only eviction can close these.
    let server = server_builder(false)
        .max_pending_handshakes(SLOTS)
        .handshake_timeout(Duration::from_secs(120))
        .start()
        .await
        .unwrap();
    let addr = server.local_addrs()[0];
    let mut idle = Vec::new();
    for i in 1..=SLOTS {
        // One at a time, so the order of admission is the order of connection.
        idle.push(TcpStream::connect(addr).await.unwrap());
        eventually("the slot to be taken", || server.pending_handshakes() == i).await;
    }
    idle.push(TcpStream::connect(addr).await.unwrap());
    let (_, eof) = within("the oldest to be evicted", read_to_close(&mut idle[0])).await;
    assert!(eof, "closed, not reset");
    eventually("the newest to take its slot", || {
        server.connection_count() == SLOTS
    })
    .await;
    assert_eq!(server.pending_handshakes(), SLOTS);
    // The others are still open: nothing to read, no EOF.
    for stream in &idle[1..] {
        let mut buf = [0u8; 1];
        assert!(
            matches!(stream.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        );
    }
    // A real client evicts the next oldest and completes its handshake in time.
    legit_client_delivers(&server, false, "legit").await;
    let (_, eof) = within("the next oldest to be evicted", read_to_close(&mut idle[1])).await;
    assert!(eof);
    drop(idle);
    eventually("the rest to be gone", || server.connection_count() == 0).await;
    server.shutdown().await;
    assert_no_library_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_and_slow_handshakes_do_not_lock_out_a_real_client() {
    const SLOW: usize = 20;
    const HANDSHAKE: Duration = Duration::from_secs(2);
    const TRICKLE: Duration = Duration::from_millis(50);
    const TRICKLE_ROUNDS: usize = 200; // 10 s: far beyond the handshake deadline
    let _serial = serial().await;
    let mut idle_count = 1000;
    // Both ends of each connection live in this process, plus some slack.
    match open_files_limit() {
        Some(limit) if limit < 2200 => {
            idle_count = usize::try_from(limit.saturating_sub(200) / 2)
                .unwrap()
                .saturating_sub(SLOW);
            eprintln!(
                "open-files soft limit is {limit} (/proc/self/limits): using {idle_count} idle \
                 sockets instead of 1000"
            );
            if idle_count <= 256 {
                eprintln!("too few to exceed the 256 pending handshakes: skipping this test");
                return;
            }
        }
        limit => eprintln!("open-files soft limit: {limit:?}"),
    }
    let server = server_builder(false)
        .handshake_timeout(HANDSHAKE)
        .start()
        .await
        .unwrap();
    let addr = server.local_addrs()[0];
    let memory = Memory::now();
    let opened = Instant::now();
    let mut idle = Vec::with_capacity(idle_count);
    for _ in 0..idle_count {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    // Slow ones, opened last so eviction does not get them first: a TLS record header and then a
    // byte every 50 ms. Each reports how long the server let it live.
    let mut slow = JoinSet::new();
    for _ in 0..SLOW {
        let stream = TcpStream::connect(addr).await.unwrap();
        slow.spawn(async move {
            let started = Instant::now();
            let (mut rx, mut tx) = stream.into_split();
            let trickle = async {
                let header = [0x16u8, 0x03, 0x01, 0x02, 0x00];
                for round in 0..TRICKLE_ROUNDS {
                    let byte = header.get(round).copied().unwrap_or(0);
                    if tx.write_all(&[byte]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(TRICKLE).await;
                }
            };
            let mut buf = [0u8; 64];
            let closed = async {
                loop {
                    match rx.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            };
            tokio::select! {
                () = closed => Some(started.elapsed()),
                () = trickle => None, // still open after 10 s of trickling
            }
        });
    }
    eprintln!(
        "opened {idle_count} idle + {SLOW} slow connections in {:?}",
        opened.elapsed()
    );

    // While they are all open: the slots stay capped, and a real client gets through.
    let max_pending = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let server = server.clone();
        let max_pending = max_pending.clone();
        tokio::spawn(async move {
            loop {
                max_pending.fetch_max(server.pending_handshakes(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let delay = legit_client_delivers(&server, false, "legit").await;
    eprintln!(
        "legitimate client under {idle_count} idle + {SLOW} slow handshakes: connect() to \
         delivered() in {delay:?}"
    );
    let pending_now = server.pending_handshakes();
    eprintln!(
        "pending handshakes now {pending_now}, at most {} while sampled",
        max_pending.load(Ordering::SeqCst)
    );
    assert!(pending_now <= 256, "{pending_now} pending handshakes");

    // Every idle socket is closed by the server: evicted, or at the handshake deadline.
    let mut closers = JoinSet::new();
    for (i, mut stream) in idle.into_iter().enumerate() {
        closers.spawn(async move {
            read_to_close(&mut stream).await;
            (i, opened.elapsed())
        });
    }
    let mut closed_at = vec![Duration::ZERO; idle_count];
    within("the server to close every idle socket", async {
        while let Some(done) = closers.join_next().await {
            let (i, at) = done.unwrap();
            closed_at[i] = at;
        }
    })
    .await;
    let early = closed_at.iter().filter(|t| **t < HANDSHAKE).count();
    eprintln!(
        "idle sockets: all {idle_count} closed by the server, {early} before the {HANDSHAKE:?} \
         deadline (evicted), the last after {:?}",
        closed_at.iter().max().unwrap()
    );
    // Deadlines count from each accept, which came after `opened`: whatever closed sooner was
    // evicted for newer connections.
    assert!(early > 0, "no idle handshake was evicted");
    let mut lifetimes = Vec::new();
    within("the slow sockets to end", async {
        while let Some(done) = slow.join_next().await {
            lifetimes.push(done.unwrap());
        }
    })
    .await;
    eprintln!("slow sockets closed after {lifetimes:?}");
    assert!(
        lifetimes.iter().all(Option::is_some),
        "trickling one byte at a time kept a handshake open past its deadline: {lifetimes:?}"
    );
    sampler.abort();
    let max_pending = max_pending.load(Ordering::SeqCst);
    assert!(max_pending <= 256, "{max_pending} pending handshakes");
    eventually("no connection left", || server.connection_count() == 0).await;
    assert_eq!(server.pending_handshakes(), 0);
    memory.assert_bounded_since("1,000 handshakes");
    server.shutdown().await;
    assert_no_library_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooder_that_ignores_the_window_is_closed_with_bounded_memory() {
    const INBOX: usize = 64;
    const INBOX_BYTES: usize = 256 * 1024;
    const PAYLOAD: usize = 1024;
    const FLOOD_CAP: u64 = 4 << 30;
    let _serial = serial().await;
    let server = server_builder(true)
        .max_message_size(16 * 1024)
        .inbox(INBOX, INBOX_BYTES)
        .start()
        .await
        .unwrap();
    let addr = server.local_addrs()[0];
    let memory = Memory::now();
    let mut raw = RawPeer::connect(addr).await;
    let (_, offer) = raw.handshake("flooder", 9, fresh_offer(0xf100d)).await;
    eprintln!(
        "granted: {} messages, {} bytes",
        offer.window_messages, offer.window_bytes
    );
    raw.send(&Frame::Ack {
        up_to: 0,
        window_messages: 1000,
        window_bytes: 1 << 20,
    })
    .await;
    // Watch the server's inbox for the flooder while it floods.
    let most = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let watcher = {
        let (server, most) = (server.clone(), most.clone());
        tokio::spawn(async move {
            loop {
                if let Some(p) = server.peer("flooder") {
                    let s = p.stats();
                    most.0.fetch_max(s.inbox_len, Ordering::SeqCst);
                    most.1.fetch_max(s.inbox_bytes, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    // Write DATA as fast as the socket takes it, never reading.
    let payload = vec![0xabu8; PAYLOAD];
    let (mut seq, mut written) = (1u64, 0u64);
    let started = Instant::now();
    let ended = within("the server to stop the flood", async {
        loop {
            let mut chunk = BytesMut::with_capacity(64 * (PAYLOAD + 16));
            for _ in 0..64 {
                frame::encode_data(seq, &payload, &mut chunk);
                seq += 1;
            }
            if let Err(e) = raw.stream.write_all(&chunk).await {
                return Some(e);
            }
            written += chunk.len() as u64;
            if written >= FLOOD_CAP {
                return None;
            }
        }
    })
    .await;
    eprintln!(
        "flood: {} MiB ({} messages) written in {:?}, then {ended:?}",
        written / MIB,
        seq - 1,
        started.elapsed()
    );
    assert!(
        ended.is_some(),
        "the server never closed the flooding connection"
    );
    // What the server said before closing, if its CLOSE survived the reset.
    eprintln!("the server's last words: {:?}", last_words(&mut raw).await);
    watcher.abort();
    let (most_len, most_bytes) = (most.0.load(Ordering::SeqCst), most.1.load(Ordering::SeqCst));
    eprintln!("flooder's inbox at the server peaked at {most_len} messages, {most_bytes} bytes");
    assert!(most_len <= INBOX && most_bytes <= INBOX_BYTES);
    if let Some(p) = server.peer("flooder") {
        assert!(p.read_all_bytes().len() <= INBOX);
    }
    memory.assert_bounded_since("flood");
    eventually("the flooder's connection to be gone", || {
        server.connection_count() == 0
    })
    .await;
    legit_client_delivers(&server, true, "legit").await;
    server.shutdown().await;
    assert_no_library_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_never_reads_blocks_its_sender_and_bounds_its_inbox() {
    const INBOX: usize = 64;
    const INBOX_BYTES: usize = 64 * 1024;
    const WINDOW: usize = 32;
    const N: u64 = 2000;
    let _serial = serial().await;
    let receiver = server_builder(false)
        .max_message_size(16 * 1024)
        .inbox(INBOX, INBOX_BYTES)
        .start()
        .await
        .unwrap();
    let sender = Node::builder("sender")
        .window(WINDOW, 1 << 20)
        .start()
        .await
        .unwrap();
    let to_receiver = sender.connect(receiver.local_addrs()[0]).await.unwrap();
    let checker = Arc::new(std::sync::Mutex::new(Checker::default()));
    let sent = Arc::new(AtomicU64::new(0));
    let sending = {
        let (peer, checker, sent) = (to_receiver.clone(), checker.clone(), sent.clone());
        tokio::spawn(async move {
            let mut last = None;
            for _ in 0..N {
                let msg = checker
                    .lock()
                    .unwrap()
                    .next_message("sender", "server", 500);
                last = Some(peer.send(&msg).await.unwrap());
                sent.fetch_add(1, Ordering::SeqCst);
            }
            last.map(Receipt::into_owned).unwrap()
        })
    };
    // The receiver's application does not read: the sender stops at inbox + window.
    eventually("the sender to fill the inbox and its window", || {
        let s = to_receiver.stats();
        s.unacked_len == WINDOW && s.acked == INBOX as u64
    })
    .await;
    let at_receiver = receiver.peer("sender").unwrap();
    let blocked_at = sent.load(Ordering::SeqCst);
    assert_eq!(
        blocked_at,
        (INBOX + WINDOW) as u64,
        "sent inbox + window, no more"
    );
    // It stays blocked while nobody reads (observed for a moment; nothing may move).
    let observe = tokio::time::timeout(Duration::from_millis(300), async {
        loop {
            let s = at_receiver.stats();
            assert!(
                s.inbox_len <= INBOX && s.inbox_bytes <= INBOX_BYTES,
                "{s:?}"
            );
            if sending.is_finished() || sent.load(Ordering::SeqCst) != blocked_at {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(observe.is_err(), "the sender went on while nobody read");
    assert!(matches!(to_receiver.try_send(&"x"), Err(Error::Full)));
    let s = at_receiver.stats();
    eprintln!(
        "receiver inbox while blocked: {} messages, {} bytes",
        s.inbox_len, s.inbox_bytes
    );
    assert_eq!(s.inbox_len, INBOX);

    // Reading releases everything, exactly once, in order, with the inbox bounded throughout.
    within("every message to be read", async {
        loop {
            let s = at_receiver.stats();
            assert!(
                s.inbox_len <= INBOX && s.inbox_bytes <= INBOX_BYTES,
                "{s:?}"
            );
            for m in at_receiver.read_all::<Msg>().unwrap() {
                checker.lock().unwrap().received(&m);
            }
            if checker.lock().unwrap().reads() == N {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    let last = within("the sender", sending).await.unwrap();
    within("delivery", last.delivered()).await.unwrap();
    checker.lock().unwrap().assert_exactly_once_in_order();
    sender.shutdown().await;
    receiver.shutdown().await;
    assert_no_library_panic();
}
