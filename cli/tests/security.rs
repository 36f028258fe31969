//! End-to-end tests of the security options: `keygen`, `--key`, `--trust`, `--known-peers` and
//! `--insecure-plaintext`, over loopback.
//!
//! Key and trust files live in a fresh directory under the system temp dir, removed when the
//! test ends. Every wait is bounded (see `common`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{WAIT, command, listen, send};
use networkio::PublicKey;
use tokio::time::{Instant, timeout};

/// A directory of its own for one test, removed on drop.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new(test: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("networkio-cli-{test}-{}-{n}", std::process::id()));
        // A leftover from an earlier process with the same id.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the temp dir");
        TempDir { path }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn text(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

/// Runs `networkio ARGS...` to completion.
async fn run(args: &[&str]) -> Output {
    timeout(WAIT, command(args).output())
        .await
        .unwrap_or_else(|_| panic!("{args:?} did not finish in time"))
        .expect("run networkio")
}

/// `networkio keygen --out DIR/FILE --id ID`: returns the key file and its public key.
async fn keygen(dir: &TempDir, file: &str, id: &str) -> (PathBuf, PublicKey) {
    let path = dir.file(file);
    let output = run(&["keygen", "--out", text(&path), "--id", id]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "keygen failed: {stderr}");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 stdout");
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout:?}");
    let key: PublicKey = stdout.trim_end().parse().expect("a public key on stdout");
    assert!(
        stderr.contains(&format!("{id} {key}")),
        "keygen stderr gives the trust-file line: {stderr}"
    );
    (path, key)
}

/// Asserts a failed command's stderr: exit status 1, one `error: ` line, nothing like a panic.
fn assert_one_error_line(status: std::process::ExitStatus, stderr: &str) {
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("error: "), "stderr: {stderr:?}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_writes_a_private_key_that_listen_uses_and_never_overwrites_it() {
    let dir = TempDir::new("keygen");
    let (path, key) = keygen(&dir, "node.key", "node-1").await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path)
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");
    }
    let pem = std::fs::read(&path).expect("read key file");

    // --show prints the same public key, alone on stdout.
    let output = run(&["keygen", "--show", text(&path)]).await;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), format!("{key}\n"));

    // Without --id the hint has a placeholder name.
    let other = dir.file("other.key");
    let output = run(&["keygen", "--out", text(&other)]).await;
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("wrote private key to"), "{stderr}");
    assert!(stderr.contains("NAME ed25519:"), "{stderr}");

    // An existing file is never overwritten.
    let output = run(&["keygen", "--out", text(&path)]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_one_error_line(output.status, &stderr);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert!(output.stdout.is_empty(), "no key printed");
    assert_eq!(
        std::fs::read(&path).expect("key file"),
        pem,
        "key file changed"
    );

    // listen --key: the same public key, announced after the `listening on` line.
    let listener = listen("node-1", &["--key", text(&path)]).await;
    let (rest, stderr) = listener.terminate().await;
    assert!(rest.is_empty(), "unexpected output: {rest:?}");
    assert!(
        stderr.contains(&format!("public key: {key}\n")),
        "listen stderr: {stderr}"
    );
    assert!(
        stderr.contains("warning: open trust policy"),
        "open policy warning: {stderr}"
    );

    // A file that is not a key: one error line.
    let garbage = dir.file("garbage.key");
    std::fs::write(&garbage, "not a key\n").expect("write garbage");
    for bad in [garbage, dir.file("missing.key")] {
        let output = run(&[
            "listen",
            "--id",
            "node-1",
            "--bind",
            "127.0.0.1:0",
            "--key",
            text(&bad),
        ])
        .await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_one_error_line(output.status, &stderr);
        assert!(stderr.contains(text(&bad)), "names the file: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlist_admits_listed_keys_and_refuses_others_at_once() {
    let dir = TempDir::new("allowlist");
    let (vault_key, vault) = keygen(&dir, "vault.key", "vault").await;
    let (teller_key, teller) = keygen(&dir, "teller.key", "teller").await;
    let (stranger_key, _) = keygen(&dir, "stranger.key", "stranger").await;
    let listener_trust = dir.file("vault.trust");
    std::fs::write(
        &listener_trust,
        format!("# who may talk to the vault\nteller {teller}\n"),
    )
    .expect("write trust file");
    // The sender pins the listener too.
    let sender_trust = dir.file("teller.trust");
    std::fs::write(&sender_trust, format!("vault {vault}\n")).expect("write trust file");

    let mut listener = listen(
        "vault",
        &["--key", text(&vault_key), "--trust", text(&listener_trust)],
    )
    .await;

    let (status, stderr) = send(
        &[
            "--id",
            "teller",
            "--key",
            text(&teller_key),
            "--trust",
            text(&sender_trust),
            "--to",
            &listener.addr,
            "--timeout",
            "30",
            "deposit",
        ],
        None,
    )
    .await;
    assert!(status.success(), "send failed: {stderr}");
    assert!(stderr.contains("delivered 1 message to vault"), "{stderr}");
    assert_eq!(listener.next_line().await, "teller\tdeposit");

    // Refused by the listener: a listed name with another key, an unlisted name, a random key.
    let refused: [&[&str]; 3] = [
        &["--id", "teller", "--key", text(&stranger_key)],
        &["--id", "stranger", "--key", text(&stranger_key)],
        &["--id", "teller"],
    ];
    for who in refused {
        let mut args = who.to_vec();
        args.extend_from_slice(&["--to", &listener.addr, "--timeout", "20", "withdraw"]);
        let started = Instant::now();
        let (status, stderr) = send(&args, None).await;
        assert_one_error_line(status, &stderr);
        assert!(stderr.contains("unauthorized"), "{who:?}: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{who:?}: a refusal fails at once, not at the timeout: {:?}",
            started.elapsed()
        );
    }

    // Refused by the sender: it pins the vault under another key.
    let wrong_pin = dir.file("wrong.trust");
    std::fs::write(&wrong_pin, format!("vault {teller}\n")).expect("write trust file");
    let started = Instant::now();
    let (status, stderr) = send(
        &[
            "--id",
            "teller",
            "--key",
            text(&teller_key),
            "--trust",
            text(&wrong_pin),
            "--to",
            &listener.addr,
            "--timeout",
            "20",
            "withdraw",
        ],
        None,
    )
    .await;
    assert_one_error_line(status, &stderr);
    assert!(stderr.contains("unauthorized"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(15), "fails at once");

    let (rest, stderr) = listener.terminate().await;
    assert!(rest.is_empty(), "refused senders printed: {rest:?}");
    assert!(!stderr.contains("warning"), "listen stderr: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_peers_trusts_the_first_key_and_then_only_that_one() {
    let dir = TempDir::new("known-peers");
    let (key_a, public_a) = keygen(&dir, "a.key", "x").await;
    let (key_b, _) = keygen(&dir, "b.key", "x").await;
    let known = dir.file("known_peers");
    let send_as_x = |key: &Path, to: &str, message: &'static str| {
        let (key, to) = (text(key).to_owned(), to.to_owned());
        async move {
            send(
                &[
                    "--id",
                    "x",
                    "--key",
                    &key,
                    "--to",
                    &to,
                    "--timeout",
                    "20",
                    message,
                ],
                None,
            )
            .await
        }
    };

    let mut listener = listen("recorder", &["--known-peers", text(&known)]).await;
    let (status, stderr) = send_as_x(&key_a, &listener.addr, "first").await;
    assert!(status.success(), "send failed: {stderr}");
    assert_eq!(listener.next_line().await, "x\tfirst");
    let (rest, stderr) = listener.terminate().await;
    assert!(rest.is_empty(), "unexpected output: {rest:?}");
    assert!(!stderr.contains("warning"), "listen stderr: {stderr}");
    let recorded = std::fs::read_to_string(&known).expect("known_peers written");
    assert_eq!(recorded, format!("x {public_a}\n"));

    // A new process reads the file: x with another key is refused, x with its key accepted.
    let mut listener = listen("recorder", &["--known-peers", text(&known)]).await;
    let started = Instant::now();
    let (status, stderr) = send_as_x(&key_b, &listener.addr, "impostor").await;
    assert_one_error_line(status, &stderr);
    assert!(
        stderr.contains("known peers record another key for this name"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(15), "fails at once");
    let (status, stderr) = send_as_x(&key_a, &listener.addr, "second").await;
    assert!(status.success(), "send failed: {stderr}");
    assert_eq!(listener.next_line().await, "x\tsecond");
    let (rest, _) = listener.terminate().await;
    assert!(rest.is_empty(), "unexpected output: {rest:?}");
    assert_eq!(
        std::fs::read_to_string(&known).expect("known_peers"),
        recorded,
        "the file still pins the first key"
    );
}

/// One key may pin only `--known-peers-per-key` names: the next name is refused at once, with
/// what to do about it, and the file keeps only the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_peers_per_key_caps_the_names_one_key_pins() {
    let dir = TempDir::new("known-peers-cap");
    let (key, public) = keygen(&dir, "a.key", "x").await;
    let known = dir.file("known_peers");
    let mut listener = listen(
        "recorder",
        &["--known-peers", text(&known), "--known-peers-per-key", "1"],
    )
    .await;
    let addr = listener.addr.clone();
    let send_as = |id: &'static str| {
        let (key, addr) = (text(&key).to_owned(), addr.clone());
        async move {
            let args = [
                "--id",
                id,
                "--key",
                &key,
                "--to",
                &addr,
                "--timeout",
                "20",
                id,
            ];
            send(&args, None).await
        }
    };
    let (status, stderr) = send_as("x").await;
    assert!(status.success(), "send failed: {stderr}");
    assert_eq!(listener.next_line().await, "x\tx");
    let (status, stderr) = send_as("y").await;
    assert_one_error_line(status, &stderr);
    assert!(stderr.contains("--known-peers-per-key"), "{stderr}");
    let (rest, _) = listener.terminate().await;
    assert!(rest.is_empty(), "unexpected output: {rest:?}");
    assert_eq!(
        std::fs::read_to_string(&known).expect("known_peers"),
        format!("x {public}\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_plaintext_works_on_both_sides_and_fails_cleanly_on_one() {
    let mut listener = listen("plain", &["--insecure-plaintext"]).await;
    let (status, stderr) = send(
        &[
            "--id",
            "plain-sender",
            "--insecure-plaintext",
            "--to",
            &listener.addr,
            "--timeout",
            "30",
            "in the clear",
        ],
        None,
    )
    .await;
    assert!(status.success(), "send failed: {stderr}");
    assert_eq!(listener.next_line().await, "plain-sender\tin the clear");

    // A TLS sender cannot talk to a plaintext listener.
    let started = Instant::now();
    let (status, stderr) = send(
        &[
            "--id",
            "tls-sender",
            "--to",
            &listener.addr,
            "--timeout",
            "5",
            "hello",
        ],
        None,
    )
    .await;
    assert_one_error_line(status, &stderr);
    assert!(started.elapsed() < WAIT, "bounded by the timeout");
    let (rest, stderr) = listener.terminate().await;
    assert!(rest.is_empty(), "unexpected output: {rest:?}");
    assert!(stderr.contains("warning: --insecure-plaintext"), "{stderr}");
    assert!(!stderr.contains("public key"), "{stderr}");

    // Nor a plaintext sender to a TLS listener.
    let listener = listen("tls", &[]).await;
    let started = Instant::now();
    let (status, stderr) = send(
        &[
            "--id",
            "plain-sender",
            "--insecure-plaintext",
            "--to",
            &listener.addr,
            "--timeout",
            "5",
            "hello",
        ],
        None,
    )
    .await;
    assert_one_error_line(status, &stderr);
    assert!(started.elapsed() < WAIT, "bounded by the timeout");
    let (rest, _) = listener.terminate().await;
    assert!(rest.is_empty(), "unexpected output: {rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_options_are_documented_and_exclusive() {
    let top = run(&["--help"]).await;
    let top = String::from_utf8_lossy(&top.stdout);
    assert!(
        top.contains("keygen"),
        "top-level help lacks keygen:\n{top}"
    );
    for subcommand in ["listen", "send"] {
        let output = run(&[subcommand, "--help"]).await;
        let help = String::from_utf8_lossy(&output.stdout);
        for word in [
            "--key",
            "--trust",
            "--known-peers",
            "--insecure-plaintext",
            "NAME KEY",
            "restart",
        ] {
            assert!(
                help.contains(word),
                "{subcommand} help lacks {word}:\n{help}"
            );
        }
    }
    let keygen = run(&["keygen", "--help"]).await;
    let keygen = String::from_utf8_lossy(&keygen.stdout);
    for word in ["--out", "--show", "--id", "ed25519:"] {
        assert!(keygen.contains(word), "keygen help lacks {word}:\n{keygen}");
    }
    // Conflicting options are usage errors (status 2).
    for args in [
        &["--trust", "a", "--known-peers", "b"][..],
        &["--insecure-plaintext", "--key", "a"],
        &["--insecure-plaintext", "--trust", "a"],
        &["--insecure-plaintext", "--known-peers", "a"],
        &["--known-peers-per-key", "2"],
        &["--known-peers", "a", "--known-peers-max", "0"],
    ] {
        let mut all = vec!["send", "--id", "s", "--to", "127.0.0.1:1"];
        all.extend_from_slice(args);
        let output = run(&all).await;
        assert_eq!(output.status.code(), Some(2), "{all:?}: {output:?}");
    }
}
