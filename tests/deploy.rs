//! The deployment files in `deploy/`: the systemd unit is valid (`systemd-analyze verify`),
//! hardened as docs/operating.md promises, and its command line is one wsecho accepts.
use std::process::Command;

const UNIT: &str = include_str!("../deploy/wsecho.service");
const INSTALLED: &str = "/usr/local/bin/wsecho";

fn setting<'a>(key: &str) -> Vec<&'a str> {
    UNIT.lines()
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    // verify checks that ExecStart's program exists: point it at the one just built.
    let folder = std::env::temp_dir().join(format!("wsecho-unit-{}", std::process::id()));
    std::fs::create_dir_all(&folder).unwrap();
    let unit = folder.join("wsecho.service");
    std::fs::write(&unit, UNIT.replace(INSTALLED, env!("CARGO_BIN_EXE_wsecho"))).unwrap();
    let verified = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze (Debian's systemd package; .ci/run installs it)");
    let _ = std::fs::remove_dir_all(&folder);
    let complaints = String::from_utf8_lossy(&verified.stderr);
    assert!(verified.status.success(), "{complaints}");
    assert!(complaints.trim().is_empty(), "warnings: {complaints}");
}

#[test]
fn the_unit_runs_wsecho_unprivileged_hardened_and_stops_it_with_sigterm() {
    for (key, value) in [
        ("DynamicUser", "yes"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("KillSignal", "SIGTERM"),
        // `systemctl reload`: the TLS certificate and key read again.
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
    ] {
        assert_eq!(setting(key), [value], "{key}");
    }
    let defaults = wsecho::Config::default();
    let files: usize = setting("LimitNOFILE")[0].parse().unwrap();
    assert!(files >= defaults.max_connections + defaults.max_page_connections + 64);
}

#[test]
fn the_units_command_line_is_one_wsecho_accepts() {
    let exec = setting("ExecStart")[0];
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some(INSTALLED));
    // The flags are checked in order; --version then prints and exits 0 without listening.
    let status = Command::new(env!("CARGO_BIN_EXE_wsecho"))
        .args(words)
        .arg("--version")
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
}
