//! Fuzz target: see `networkio::proto::fuzzing::session_ops` and docs/FUZZING.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| networkio::proto::fuzzing::session_ops(data));
