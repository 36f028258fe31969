//! The node's one clock: tokio's, so that tests can pause and advance it. The protocol core
//! takes time as an argument; this is where the node reads it.

/// Now, as the `std` instant the protocol core takes.
pub(crate) fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}
