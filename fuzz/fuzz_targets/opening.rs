//! Fuzz target: see `wsecho::fuzzing::opening`.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| wsecho::fuzzing::opening(bytes));
