//! The README's example pair (`examples/server.rs`, `examples/client.rs`) runs end to end, and the
//! README shows exactly their code, so neither can rot unnoticed.
//!
//! The examples are built with the cargo that runs this test, into the same target directory and
//! profile, and run as processes on a port the OS picks.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// Generous: a loaded CI machine; a working pair needs well under a second.
const TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn the_example_client_gets_every_answer_and_exits() {
    let bins = build_examples(&["server", "client"]);

    let mut server = Running::spawn(&bins[0], "127.0.0.1:0");
    let listening = server.line_where(|l| l.starts_with("listening on "));
    let addr = listening
        .trim_start_matches("listening on ")
        .split(' ')
        .next()
        .expect("the server prints its address")
        .to_owned();
    assert!(
        listening.ends_with(" as server-001"),
        "unexpected: {listening}"
    );

    let mut client = Running::spawn(&bins[1], &addr);
    let (status, lines) = client.finish();
    let answers: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("server-001 says "))
        .collect();
    let expected: Vec<String> = std::iter::once("Hello".to_owned())
        .chain((1..=5).map(|i| format!("message {i}")))
        .map(|text| format!("got {text:?}"))
        .collect();
    assert_eq!(answers, expected, "client printed:\n{}", lines.join("\n"));
    assert!(status.success(), "client exited with {status}");
    assert!(lines.contains(&"connected to server-001".to_owned()));

    // The server is still serving; it printed every message it answered.
    for text in ["Hello", "message 5"] {
        server.line_where(|l| l == format!("client-123: {text}"));
    }
}

#[test]
fn the_readme_shows_the_examples_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    for name in ["server", "client"] {
        let path = root.join("examples").join(format!("{name}.rs"));
        let source = std::fs::read_to_string(&path).expect("example source");
        // The module comment says how to run it; the README says that in prose.
        let code: String = source
            .lines()
            .skip_while(|l| l.starts_with("//!") || l.is_empty())
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(
            readme.contains(&code),
            "README.md must show examples/{name}.rs verbatim (after its module comment)"
        );
    }
}

/// Builds the named examples of this package with the cargo that runs the tests, in this test's
/// target directory and profile, and returns their paths.
fn build_examples(names: &[&str]) -> Vec<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let exe = std::env::current_exe().expect("test executable path");
    // <target-dir>/<profile-dir>/deps/<this test>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable in <profile>/deps");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => "dev",
    };
    let mut cmd = Command::new(cargo);
    // Cargo sets these for the test process; the outer cargo ran without them, and build scripts
    // that watch them (ring's does) would rebuild for this cargo, then again for the next `cargo
    // test`.
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let set_by_cargo = ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_CFG_"]
            .iter()
            .any(|prefix| key.starts_with(prefix))
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
                "OUT_DIR",
            ]
            .contains(&key);
        if set_by_cargo {
            cmd.env_remove(key);
        }
    }
    cmd.args(["build", "--locked", "--workspace", "--profile", profile])
        .args(["--message-format", "json-render-diagnostics"])
        .arg("--manifest-path")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
    // Only when the layout is the plain one (no `--target` triple directory in between).
    if let Some(target_dir) = profile_dir.parent() {
        if target_dir.join("CACHEDIR.TAG").exists() {
            cmd.arg("--target-dir").arg(target_dir);
        }
    }
    for name in names {
        cmd.args(["--example", name]);
    }
    let out = cmd.stderr(Stdio::inherit()).output().expect("run cargo");
    assert!(out.status.success(), "cargo build of the examples failed");

    let stdout = String::from_utf8(out.stdout).expect("cargo's messages are UTF-8");
    names
        .iter()
        .map(|name| {
            stdout
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|m| m["reason"] == "compiler-artifact")
                .filter(|m| m["target"]["name"] == *name)
                .filter(|m| m["target"]["kind"][0] == "example")
                .find_map(|m| m["executable"].as_str().map(PathBuf::from))
                .unwrap_or_else(|| panic!("cargo built no executable for example {name}"))
        })
        .collect()
}

/// A child process whose stdout lines arrive on a channel, killed when dropped.
struct Running {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn spawn(bin: &Path, arg: &str) -> Self {
        let mut child = Command::new(bin)
            .arg(arg)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for the first line (from now on) that satisfies `pred`.
    fn line_where(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(line) => self.seen.push(line),
                Err(e) => panic!("no such line ({e:?}); seen:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Waits for the process to close its stdout and exit; returns its status and every line.
    fn finish(&mut self) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "did not finish in {TIMEOUT:?}; printed:\n{}",
                        self.seen.join("\n")
                    )
                }
            }
        }
        // Stdout is closed; the exit follows at once.
        let status = self.child.wait().expect("wait for the process");
        (status, std::mem::take(&mut self.seen))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
