//! Fuzz target: see `wsecho::fuzzing::upgrade`.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| wsecho::fuzzing::upgrade(bytes));
