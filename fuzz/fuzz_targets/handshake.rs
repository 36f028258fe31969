//! Fuzz target: see `networkio::proto::fuzzing::handshake` and docs/FUZZING.md.
#![no_main]

use std::sync::OnceLock;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;

/// Where the function's clock starts, read once per run: only durations from it matter, so any
/// instant does (the library itself reads no clock).
static BASE: OnceLock<Instant> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    networkio::proto::fuzzing::handshake(data, *BASE.get_or_init(Instant::now))
});
