//! The deployment files in `deploy/`: the systemd units are valid (`systemd-analyze verify`),
//! the service hardened as docs/operating.md promises, its command line one wsecho accepts,
//! and the socket unit's sockets the ones wsecho places by their addresses.
use std::process::Command;

const UNIT: &str = include_str!("../deploy/wsecho.service");
const SOCKETS: &str = include_str!("../deploy/wsecho.socket");
const INSTALLED: &str = "/usr/local/bin/wsecho";

fn setting<'a>(key: &str) -> Vec<&'a str> {
    UNIT.lines()
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

/// `systemd-analyze verify` of these units, written to a folder of their own; its complaints.
fn verify(units: &[(&str, &str)]) -> Result<(), String> {
    // verify checks that ExecStart's program exists: point it at the one just built.
    let folder = std::env::temp_dir().join(format!(
        "wsecho-unit-{}-{}",
        std::process::id(),
        units.len()
    ));
    std::fs::create_dir_all(&folder).unwrap();
    let mut paths = Vec::new();
    for (name, text) in units {
        let path = folder.join(name);
        std::fs::write(&path, text.replace(INSTALLED, env!("CARGO_BIN_EXE_wsecho"))).unwrap();
        paths.push(path);
    }
    let verified = Command::new("systemd-analyze")
        .arg("verify")
        .args(&paths)
        .output()
        .expect("systemd-analyze (Debian's systemd package; .ci/run installs it)");
    let _ = std::fs::remove_dir_all(&folder);
    let complaints = String::from_utf8_lossy(&verified.stderr).trim().to_string();
    match (verified.status.success(), complaints.is_empty()) {
        (true, true) => Ok(()),
        _ => Err(complaints),
    }
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    assert_eq!(verify(&[("wsecho.service", UNIT)]), Ok(()));
}

#[test]
fn the_socket_unit_passes_systemd_analyze_verify_with_its_service() {
    let units = [("wsecho.service", UNIT), ("wsecho.socket", SOCKETS)];
    assert_eq!(verify(&units), Ok(()));
}

#[test]
fn the_socket_units_sockets_are_the_services_ports_as_wsecho_places_them() {
    let listens: Vec<&str> = SOCKETS
        .lines()
        .filter_map(|line| line.strip_prefix("ListenStream="))
        .collect();
    let exec: Vec<&str> = setting("ExecStart")[0].split_whitespace().collect();
    let flag = |name: &str| {
        let at = exec.iter().position(|word| *word == name).unwrap();
        exec[at + 1]
    };
    let policy_port = wsecho::Config::default().policy_port.unwrap();
    assert_eq!(
        listens,
        [
            flag("--http").to_string(),
            flag("--ws").to_string(),
            format!("0.0.0.0:{policy_port}")
        ]
    );
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
