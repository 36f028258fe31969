//! Helpers shared by the end-to-end tests: running `networkio listen` and `networkio send`
//! as child processes, with every wait bounded.

// Each test crate uses only some of these.
#![allow(dead_code)]

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;
use tokio::time::timeout;

pub const BIN: &str = env!("CARGO_BIN_EXE_networkio");
/// Bound of any single wait; generous for slow CI machines.
pub const WAIT: Duration = Duration::from_secs(30);

/// Kills the child process when dropped.
pub struct Proc {
    pub child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id().expect("child still running")
    }

    pub async fn wait(&mut self) -> ExitStatus {
        timeout(WAIT, self.child.wait())
            .await
            .expect("process did not exit in time")
            .expect("wait failed")
    }

    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }
}

pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// A running `networkio listen`.
pub struct Listener {
    pub proc: Proc,
    pub addr: String,
    pub stdout: Lines<BufReader<ChildStdout>>,
    /// The rest of stderr after the `listening on` line, once the process exits.
    pub stderr: JoinHandle<String>,
}

pub async fn listen(id: &str, extra: &[&str]) -> Listener {
    let mut args = vec!["listen", "--id", id, "--bind", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut child = command(&args).spawn().expect("spawn listen");
    let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let proc = Proc { child };
    let suffix = format!(" as {id}");
    let addr = timeout(WAIT, async {
        while let Some(line) = stderr.next_line().await.expect("read stderr") {
            if let Some(rest) = line.strip_prefix("listening on ") {
                let addr = rest.strip_suffix(&suffix).expect("line ends with the id");
                return addr.to_owned();
            }
        }
        panic!("listener exited without printing `listening on`");
    })
    .await
    .expect("no `listening on` line in time");
    assert!(!addr.ends_with(":0"), "printed the real port: {addr}");
    let stderr = tokio::spawn(async move {
        let mut rest = String::new();
        while let Ok(Some(line)) = stderr.next_line().await {
            rest.push_str(&line);
            rest.push('\n');
        }
        rest
    });
    Listener {
        proc,
        addr,
        stdout,
        stderr,
    }
}

impl Listener {
    pub async fn next_line(&mut self) -> String {
        timeout(WAIT, self.stdout.next_line())
            .await
            .expect("no output line in time")
            .expect("read stdout")
            .expect("listener stdout ended early")
    }

    /// Sends SIGTERM and checks the listener exits 0; returns the stdout lines not read yet and
    /// the rest of stderr.
    pub async fn terminate(self) -> (Vec<String>, String) {
        let Listener {
            mut proc,
            mut stdout,
            stderr,
            ..
        } = self;
        proc.terminate();
        // Read stdout while waiting: the listener prints what is left before it exits.
        let rest = tokio::spawn(async move {
            let mut rest = Vec::new();
            while let Some(line) = stdout.next_line().await.expect("read stdout") {
                rest.push(line);
            }
            rest
        });
        let status = proc.wait().await;
        assert_eq!(status.code(), Some(0), "listen exit status on SIGTERM");
        let rest = timeout(WAIT, rest)
            .await
            .expect("stdout ended")
            .expect("stdout task");
        let stderr = timeout(WAIT, stderr)
            .await
            .expect("stderr ended")
            .expect("stderr task");
        (rest, stderr)
    }
}

/// Runs `networkio send` to completion with the given stdin; returns status and stderr.
pub async fn send(args: &[&str], stdin: Option<Vec<u8>>) -> (ExitStatus, String) {
    let mut args_all = vec!["send"];
    args_all.extend_from_slice(args);
    let mut cmd = command(&args_all);
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut proc = Proc {
        child: cmd.spawn().expect("spawn send"),
    };
    let writer = stdin.map(|data| {
        let mut pipe = proc.child.stdin.take().expect("stdin");
        tokio::spawn(async move {
            // A sender that fails early closes its stdin: not this helper's error to report.
            let _ = pipe.write_all(&data).await;
            // Dropping the pipe closes stdin.
        })
    });
    let mut stderr = proc.child.stderr.take().expect("stderr");
    let read_stderr = tokio::spawn(async move {
        let mut text = String::new();
        stderr.read_to_string(&mut text).await.expect("read stderr");
        text
    });
    let mut stdout = proc.child.stdout.take().expect("stdout");
    let read_stdout = tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = stdout.read_to_end(&mut sink).await;
    });
    let status = proc.wait().await;
    if let Some(writer) = writer {
        writer.await.expect("stdin writer");
    }
    read_stdout.await.expect("stdout reader");
    let stderr = read_stderr.await.expect("stderr reader");
    (status, stderr)
}
