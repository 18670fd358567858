//! What both wsload tests share: running it and reading its `key=value` line.

use std::collections::HashMap;
use std::process::Command;

/// Run `wsload MODE URL --seconds 1 --pid (this process) ARGS...`; its figures by name. Fails
/// the test if wsload fails or reports another mode.
pub fn wsload(mode: &str, url: &str, extra: &[&str]) -> HashMap<String, f64> {
    let output = Command::new(env!("CARGO_BIN_EXE_wsload"))
        .args([
            mode,
            url,
            "--seconds",
            "1",
            "--pid",
            &std::process::id().to_string(),
        ])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{mode}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with(&format!("mode={mode} ")), "{stdout}");
    stdout
        .split_whitespace()
        .filter_map(|field| field.split_once('='))
        .filter_map(|(key, value)| Some((key.to_string(), value.parse().ok()?)))
        .collect()
}
