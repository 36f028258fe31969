//! Fuzz target: see `networkio::proto::fuzzing::frame_decode` and docs/FUZZING.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| networkio::proto::fuzzing::frame_decode(data));
