use super::*;
use crate::help;

fn parse(args: &[&str]) -> Result<Option<Config>, String> {
    parse_args(lexopt::Parser::from_args(args.iter().copied()))
}

/// The text after `flag` in the help, up to the next option.
fn entry(help: &str, flag: &str) -> String {
    let after = help
        .split(flag)
        .nth(1)
        .unwrap_or_else(|| panic!("{flag} missing"));
    after.split("\n  -").next().unwrap().to_string()
}

#[test]
fn help_shows_the_defaults_the_server_runs_with() {
    let help = help();
    let defaults = Config::default();
    for (flag, default) in [
        ("--http ADDR", defaults.http.unwrap().to_string()),
        ("--ws ADDR", defaults.ws.to_string()),
        (
            "--policy-port PORT",
            defaults.policy_port.unwrap().to_string(),
        ),
        ("--policy-domain DOMAIN", defaults.policy_domain.clone()),
        ("--www DIR", "built in".to_string()),
        (
            "--max-message-size BYTES",
            defaults.max_message_size.to_string(),
        ),
        ("--max-queue BYTES", defaults.max_queue.to_string()),
        ("--memory-budget BYTES", defaults.memory_budget.to_string()),
        ("--max-connections N", defaults.max_connections.to_string()),
        (
            "--max-page-connections N",
            defaults.max_page_connections.to_string(),
        ),
        ("--max-per-address N", defaults.max_per_address.to_string()),
        (
            "--handshake-timeout SECS",
            defaults.handshake_timeout.as_secs().to_string(),
        ),
        (
            "--ping-interval SECS",
            defaults.ping_interval.as_secs().to_string(),
        ),
        ("--allow-origin ORIGIN", "same host only".to_string()),
        ("--host NAME", "any".to_string()),
        ("--trusted-proxy ADDR", "none".to_string()),
    ] {
        let entry = entry(&help, flag);
        assert!(
            entry.contains(&format!("[default: {default}]")),
            "{flag}: {entry}"
        );
    }
}

#[test]
fn every_flag_sets_its_field() {
    let config = parse(&[
        "--http",
        "127.0.0.1:1",
        "--ws",
        "[::1]:2",
        "--policy-port",
        "0",
        "--policy-domain",
        "example.com",
        "--www",
        "/srv/www",
        "--max-message-size",
        "100",
        "--max-queue",
        "200",
        "--memory-budget",
        "300",
        "--max-connections",
        "3",
        "--max-page-connections",
        "4",
        "--handshake-timeout",
        "0.5",
        "--ping-interval",
        "7",
        "--allow-origin",
        "http://a.test",
        "--allow-origin",
        "*",
        "--max-per-address",
        "5",
        "--host",
        "chat.example",
        "--host",
        "localhost",
        "--trusted-proxy",
        "127.0.0.1",
        "--trusted-proxy",
        "::1",
        "--resume-window",
        "12",
    ])
    .unwrap()
    .unwrap();
    assert_eq!(config.http, Some("127.0.0.1:1".parse().unwrap()));
    assert_eq!(config.ws.to_string(), "[::1]:2");
    assert_eq!(config.policy_port, None);
    assert_eq!(config.policy_domain, "example.com");
    assert_eq!(config.www, Some(PathBuf::from("/srv/www")));
    assert_eq!(config.max_message_size, 100);
    assert_eq!(config.max_queue, 200);
    assert_eq!(config.memory_budget, 300);
    assert_eq!(config.max_connections, 3);
    assert_eq!(config.max_page_connections, 4);
    assert_eq!(config.max_per_address, 5);
    assert_eq!(config.handshake_timeout, Duration::from_millis(500));
    assert_eq!(config.ping_interval, Duration::from_secs(7));
    assert_eq!(config.resume_window, Duration::from_secs(12));
    assert_eq!(config.allowed_origins, ["http://a.test", "*"]);
    assert_eq!(config.allowed_hosts, ["chat.example", "localhost"]);
    let proxies: Vec<String> = config
        .trusted_proxies
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(proxies, ["127.0.0.1", "::1"]);
}

#[test]
fn the_page_port_can_be_turned_off() {
    let config = parse(&["--http", "off"]).unwrap().unwrap();
    assert_eq!(config.http, None);
}

#[test]
fn bad_values_name_the_flag() {
    for (args, says) in [
        (&["--max-queue", "0"][..], "--max-queue must be at least 1"),
        (&["--max-connections", "many"][..], "for --max-connections"),
        (
            &["--ping-interval", "0"][..],
            "--ping-interval takes seconds",
        ),
        (&["--bogus"][..], "--bogus"),
        (
            &["--http", "20080"][..],
            "--http ADDR: `20080` is a port alone: give HOST:PORT (127.0.0.1:20080",
        ),
        (&["--ws", "any"][..], "give HOST:PORT with an IP address"),
        (&["--ws", "unix:"][..], "`unix:` needs the socket's path"),
        (
            &["--memory-budget", "1000", "--max-message-size", "1001"][..],
            "--max-message-size (1001) is larger than --memory-budget (1000)",
        ),
    ] {
        let error = parse(args).unwrap_err();
        assert!(error.contains(says), "{args:?}: {error}");
    }
}

/// The table between the markers in docs/operating.md.
fn documented_table() -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operating.md"))
        .expect("docs/operating.md");
    let start = doc
        .find(TABLE_START)
        .expect("the flag table's start marker");
    let after = &doc[start + TABLE_START.len()..];
    let end = after.find(TABLE_END).expect("the flag table's end marker");
    after[..end].trim_start_matches('\n').to_string()
}

const TABLE_START: &str = "<!-- flags: made from src/bin/wsecho/flags.rs -->";
const TABLE_END: &str = "<!-- /flags -->";

#[test]
fn the_operators_flag_table_is_the_one_the_flags_make() {
    let made = markdown_table();
    assert!(
        made.contains("| `--max-message-size BYTES` | 16777216 |"),
        "{made}"
    );
    assert_eq!(
        documented_table(),
        made,
        "docs/operating.md's flag table is out of step with the flags: put this between its markers:\n{made}"
    );
}

#[test]
fn every_flag_is_in_the_help_once_and_names_a_real_field() {
    let help = help();
    for flag in FLAGS {
        assert_eq!(
            help.matches(&format!("  {}", flag.usage())).count(),
            1,
            "{}",
            flag.name
        );
        // The field it names is one the library's messages use (`with_flags` maps it back, to
        // the first flag that sets it: `programs` is --run, which --run-binary shares).
        let first = FLAGS
            .iter()
            .find(|other| other.field == flag.field)
            .unwrap();
        assert_eq!(
            with_flags(&format!("`{}`", flag.field)),
            format!("--{}", first.name)
        );
    }
    assert_eq!(
        with_flags("cannot listen on 127.0.0.1:1 (`ws`); lower `max_connections`"),
        "cannot listen on 127.0.0.1:1 (--ws); lower --max-connections"
    );
}

#[test]
fn seconds_are_read_to_the_nanosecond_without_floating_point() {
    use std::time::Duration;
    for (text, expected) in [
        ("30", Duration::from_secs(30)),
        ("0.5", Duration::from_millis(500)),
        (".25", Duration::from_millis(250)),
        ("2.", Duration::from_secs(2)),
        ("1.000000001", Duration::new(1, 1)),
    ] {
        assert_eq!(super::seconds(text), Ok(expected), "{text}");
    }
    for text in [
        "",
        ".",
        "1.2.3",
        "-1",
        "1e3",
        "0.1234567891",
        "ten",
        "99999999999999999999",
    ] {
        assert!(super::seconds(text).is_err(), "{text} was taken");
    }
}
