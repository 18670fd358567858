//! Fuzz target: see `wsecho::fuzzing::page_path`.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| wsecho::fuzzing::page_path(bytes));
