//! The raw-TCP baseline: what loopback TCP does with length-prefixed frames and batched writes,
//! no acknowledgements, no ordering guarantees beyond TCP's, no resumption. The limit networkio
//! is measured against, in the same run.

use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bytes per batched write.
const BATCH: usize = 64 * 1024;

/// Sends `count` frames of `size` bytes one way; returns the time until the receiver has parsed
/// them all.
pub async fn throughput(count: u64, size: usize, split: bool) -> anyhow::Result<Duration> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let receiver = super::side(split, move || async move {
        let listener = TcpListener::from_std(listener)?;
        let (mut stream, _) = listener.accept().await?;
        let mut buf = vec![0u8; 256 * 1024];
        let (mut filled, mut seen) = (0usize, 0u64);
        while seen < count {
            let n = stream.read(&mut buf[filled..]).await?;
            anyhow::ensure!(n > 0, "sender closed early");
            filled += n;
            let (at, frames) = complete_frames(&buf[..filled]);
            seen += frames as u64;
            buf.copy_within(at..filled, 0);
            filled -= at;
        }
        anyhow::Ok(Instant::now())
    });
    let sender = super::side(split, move || async move {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let frame_len = 4 + size;
        let per_batch = (BATCH / frame_len).max(1) as u64;
        let mut batch = Vec::with_capacity(per_batch as usize * frame_len);
        for _ in 0..per_batch {
            batch.extend_from_slice(&(size as u32).to_be_bytes());
            batch.extend(std::iter::repeat_n(0xabu8, size));
        }
        let start = Instant::now();
        let mut sent = 0;
        while sent < count {
            let frames = per_batch.min(count - sent);
            stream
                .write_all(&batch[..frames as usize * frame_len])
                .await?;
            sent += frames;
        }
        anyhow::Ok(start)
    });
    let start = sender.await.context("sender")??;
    let end = receiver.await.context("receiver")??;
    Ok(end - start)
}

/// Ping-pong of one `size`-byte frame; returns each round trip.
pub async fn round_trips(samples: usize, size: usize) -> anyhow::Result<Vec<Duration>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let echo = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let mut frame = vec![0u8; 4 + size];
        loop {
            if stream.read_exact(&mut frame).await.is_err() {
                return anyhow::Ok(());
            }
            stream.write_all(&frame).await?;
        }
    });
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut frame = vec![0xabu8; 4 + size];
    frame[..4].copy_from_slice(&(size as u32).to_be_bytes());
    let mut reply = vec![0u8; 4 + size];
    let times = super::time_rounds(samples, async || {
        stream.write_all(&frame).await?;
        stream.read_exact(&mut reply).await?;
        Ok(())
    })
    .await?;
    drop(stream);
    echo.await.context("echo task")??;
    Ok(times)
}

/// The complete length-prefixed frames at the start of `buf`: how many bytes they take, and how
/// many there are (the raw contenders' receivers parse what they read with it).
pub(crate) fn complete_frames(buf: &[u8]) -> (usize, usize) {
    let (mut at, mut frames) = (0, 0);
    while let Some(header) = buf.get(at..at + 4) {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if at + 4 + len > buf.len() {
            break;
        }
        at += 4 + len;
        frames += 1;
    }
    (at, frames)
}
