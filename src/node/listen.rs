//! Accepting: one loop per listener, a cap on simultaneous connections, backoff when the
//! process runs out of file descriptors instead of spinning.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::NodeShared;
use super::driver::{self, Origin};
use super::watch;

pub(crate) async fn accept_loop(shared: Arc<NodeShared>, listener: TcpListener) {
    let mut fd_backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            _ = shared.closing.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, addr) = match accepted {
            Ok(pair) => {
                fd_backoff = Duration::from_millis(5);
                pair
            }
            Err(e) if is_resource_exhaustion(&e) => {
                tracing::warn!(error = %e, "accept: out of resources; backing off {fd_backoff:?}");
                tokio::select! {
                    _ = shared.closing.cancelled() => return,
                    _ = tokio::time::sleep(fd_backoff) => {}
                }
                fd_backoff = (fd_backoff * 2).min(Duration::from_secs(1));
                continue;
            }
            Err(e) => {
                // Per-connection failures (e.g. reset before accept) do not stop the listener.
                tracing::debug!(error = %e, "accept failed");
                continue;
            }
        };
        let Ok(permit) = shared.connections.clone().try_acquire_owned() else {
            tracing::debug!(%addr, "connection limit reached; refusing");
            shared.refuse(
                addr,
                None,
                None,
                crate::proto::admission::RefusalReason::ConnectionLimit,
            );
            if !matches!(
                shared.security,
                crate::security::Security::InsecurePlaintext
            ) {
                continue; // under TLS there is no channel to say why on yet
            }
            // Say why, without waiting: a fresh socket takes a few bytes at once.
            let mut busy = bytes::BytesMut::new();
            crate::proto::frame::encode(
                &crate::proto::Frame::Close {
                    code: crate::proto::CloseCode::Busy,
                    reason: "connection limit reached".into(),
                },
                &mut busy,
            );
            let _ = stream.try_write(&busy);
            continue;
        };
        let shared2 = shared.clone();
        shared.tasks.spawn(async move {
            let slot = shared2.handshakes.admit();
            let outcome =
                driver::run(&shared2, stream, Origin::Accepted, &mut None, Some(slot)).await;
            drop(permit);
            // The accepting side keeps the session until it expires; something must fire that.
            // (`idle` returns at once if a connection serves the peer or a task already
            // watches it.)
            if let Some(peer) = outcome.peer {
                watch::idle(&shared2, &peer, None).await;
            }
        });
    }
}

/// Whether an accept failed for want of resources (descriptors, buffers, memory): a state of the
/// process or the system that passes, so the loop backs off instead of spinning. The errno
/// values differ between platforms; `libc` has each platform's.
fn is_resource_exhaustion(e: &io::Error) -> bool {
    if e.kind() == io::ErrorKind::OutOfMemory {
        return true;
    }
    #[cfg(unix)]
    {
        matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        )
    }
    #[cfg(not(unix))]
    {
        // Windows reports descriptor and buffer exhaustion as WSAEMFILE and WSAENOBUFS.
        matches!(e.raw_os_error(), Some(10024 | 10055))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn descriptor_and_memory_exhaustion_back_off_other_errors_do_not() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert!(is_resource_exhaustion(&io::Error::from_raw_os_error(errno)));
        }
        for errno in [libc::ECONNABORTED, libc::EINTR, libc::EPERM] {
            assert!(!is_resource_exhaustion(&io::Error::from_raw_os_error(
                errno
            )));
        }
    }
}
