//! Burst latency (`bench latency --burst N`): from sending the first message of a burst of N
//! to the acknowledgement of the last, against raw TCP in the same run.
//!
//! What it shows is the acknowledgement at the end of a burst: a receiver must acknowledge as
//! soon as it has no more input, not after the ack delay meant for streams.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::nio::{Mode, Pair, read_everything};

/// networkio: `burst` messages of `size` bytes sent one call each, then the wait for the
/// receipt of the last; the receiving application reads whatever arrives. One time per burst.
pub async fn networkio(
    mode: Mode,
    samples: usize,
    size: usize,
    burst: usize,
) -> anyhow::Result<Vec<Duration>> {
    let pair = Pair::start(mode).await?;
    let reader = read_everything(&pair.receiver);
    let payload = Bytes::from(vec![0xabu8; size]);
    let times = super::time_rounds(samples, async || {
        let mut last = None;
        for _ in 0..burst {
            last = Some(pair.peer.send_bytes(payload.clone()).await?);
        }
        if let Some(receipt) = last {
            receipt.delivered().await?;
        }
        Ok(())
    })
    .await?;
    pair.stop().await;
    reader.abort();
    Ok(times)
}

/// Raw TCP: the same burst as length-prefixed frames in one write; the receiver parses them
/// and answers the last with a one-byte acknowledgement. One time per burst.
pub async fn raw(samples: usize, size: usize, burst: usize) -> anyhow::Result<Vec<Duration>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let frame_len = 4 + size;
    let receiver = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let mut buf = vec![0u8; (64 * 1024).max(2 * frame_len)];
        let (mut filled, mut seen) = (0usize, 0usize);
        loop {
            let n = stream.read(&mut buf[filled..]).await?;
            if n == 0 {
                return anyhow::Ok(());
            }
            filled += n;
            let (at, frames) = super::raw::complete_frames(&buf[..filled]);
            seen += frames;
            while seen >= burst {
                seen -= burst;
                stream.write_all(&[1]).await?;
            }
            buf.copy_within(at..filled, 0);
            filled -= at;
        }
    });
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut frames = Vec::with_capacity(burst * frame_len);
    for _ in 0..burst {
        frames.extend_from_slice(&(size as u32).to_be_bytes());
        frames.extend(std::iter::repeat_n(0xabu8, size));
    }
    let mut ack = [0u8; 1];
    let times = super::time_rounds(samples, async || {
        stream.write_all(&frames).await?;
        stream.read_exact(&mut ack).await?;
        Ok(())
    })
    .await?;
    drop(stream);
    receiver.await.context("raw receiver task")??;
    Ok(times)
}
