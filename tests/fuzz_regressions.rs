//! Every input kept under `fuzz/regressions/` (the seeds, and each crash or hang `make fuzz`
//! ever found, once fixed) replayed through its fuzz target's checks, on the stable toolchain.
use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&folder)
        .unwrap_or_else(|error| panic!("{}: {error}", folder.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no inputs in {}", folder.display());
    for input in inputs {
        let bytes = std::fs::read(&input).unwrap();
        let replayed = std::panic::catch_unwind(|| check(&bytes));
        assert!(replayed.is_ok(), "{} fails again", input.display());
    }
}

#[test]
fn openings() {
    replay("opening", wsecho::fuzzing::opening);
}

#[test]
fn upgrades() {
    replay("upgrade", wsecho::fuzzing::upgrade);
}

#[test]
fn page_paths() {
    replay("page_path", wsecho::fuzzing::page_path);
}

#[test]
fn frames() {
    replay("frames", wsecho::fuzzing::frames);
}

#[test]
fn inflated_frames() {
    replay("inflated_frames", wsecho::fuzzing::inflated_frames);
}
