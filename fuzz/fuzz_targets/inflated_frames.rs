//! Fuzz target: see `wsecho::fuzzing::inflated_frames`.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| wsecho::fuzzing::inflated_frames(bytes));
