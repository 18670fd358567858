//! Fuzz target: see `wsecho::fuzzing::frames`.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| wsecho::fuzzing::frames(bytes));
