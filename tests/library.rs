//! wsecho as a library: what an application that depends on it builds.

use std::process::Command;

/// The crates `cargo tree` lists for wsecho's own (non-dev) dependencies, with or without
/// its default features.
fn crates(default_features: bool) -> Vec<String> {
    let mut tree = Command::new(env!("CARGO"));
    tree.args(["tree", "--offline", "-e", "normal", "--prefix", "none"])
        .args([
            "--manifest-path",
            concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
        ])
        .args(["-p", "wsecho"]);
    if !default_features {
        tree.arg("--no-default-features");
    }
    let output = tree.output().expect("cargo tree runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn a_library_user_builds_none_of_the_command_lines_crates() {
    let command_line = ["lexopt", "signal-hook"];
    let library = crates(false);
    assert!(
        library.iter().any(|name| name == "tungstenite"),
        "{library:?}"
    );
    for name in command_line {
        assert!(
            !library.iter().any(|crate_name| crate_name == name),
            "{name} in {library:?}"
        );
    }
    // The binary's build (default features) has them: the check sees them where they are.
    let binary = crates(true);
    for name in command_line {
        assert!(
            binary.iter().any(|crate_name| crate_name == name),
            "{name} not in {binary:?}"
        );
    }
}
