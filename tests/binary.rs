//! The real `wsecho` binary: command line, exit codes, and graceful shutdown on signals.
mod common;

use common::*;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;

fn wsecho() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wsecho"));
    command.env("RUST_LOG", "info").stdin(Stdio::null());
    command
}

fn spawn_server() -> Running {
    spawn_binary(env!("CARGO_BIN_EXE_wsecho"))
}

fn signal(child: &Child, signal: libc::c_int) {
    // SAFETY: kill(2) with our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
}

fn shutdown_closes_every_connection_with_1001(sig: libc::c_int, count: usize) {
    let mut server = spawn_server();
    let mut clients: Vec<_> = (0..count)
        .map(|_| connect_to(server.ws, "/echo").expect("upgrade"))
        .collect();
    for (i, client) in clients.iter_mut().enumerate() {
        client.send(Message::text(format!("hello {i}"))).unwrap();
        assert_eq!(next_message(client), Message::text(format!("hello {i}")));
    }
    signal(&server.child, sig);
    for client in &mut clients {
        assert_eq!(expect_close(client), CloseCode::Away);
    }
    let status = wait_bounded(&mut server.child);
    assert!(status.success(), "exit status {status}");
    let summary: Vec<String> = server
        .rest_of_log()
        .into_iter()
        .filter(|l| l.contains("stopped:"))
        .collect();
    assert_eq!(summary.len(), 1, "one summary line");
    assert!(
        summary[0].contains(&format!("{count} closed with 1001")),
        "{}",
        summary[0]
    );
    assert!(summary[0].contains("0 left unfinished"), "{}", summary[0]);
}

#[test]
fn sigterm_closes_50_connections_with_1001_and_exits_0() {
    shutdown_closes_every_connection_with_1001(libc::SIGTERM, 50);
}

#[test]
fn sigint_closes_connections_with_1001_and_exits_0() {
    shutdown_closes_every_connection_with_1001(libc::SIGINT, 3);
}

#[test]
fn help_prints_the_options_and_exits_0() {
    // What each option says is checked beside the parser (src/bin/wsecho/main.rs); here, that it prints.
    let output = run(wsecho().arg("--help"));
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(help.starts_with("wsecho: "), "{help}");
    assert!(help.contains("--max-page-connections N"), "{help}");
}

#[test]
fn a_bad_flag_is_one_line_and_exit_2() {
    for args in [
        vec!["--bogus"],
        vec!["--max-connections", "many"],
        vec!["--ws", "nowhere"],
        vec!["--ping-interval", "0"],
        vec!["--run", "/count=no-such-program-anywhere"],
        vec!["--run", "count.py"],
        vec!["--run", "/count=python3 'unfinished"],
    ] {
        let output = run(wsecho().args(&args));
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains("wsecho --help"), "{stderr}");
    }
}

#[test]
fn a_port_in_use_names_the_address_and_exits_1() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = run(wsecho()
        .args(["--ws", "127.0.0.1:0", "--policy-port", "0", "--http", &addr])
        .args(["--www", &www().display().to_string()]));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(stderr.contains("--http"), "{stderr}");
}

#[test]
fn a_missing_page_folder_says_what_to_do_and_exits_2_as_any_bad_option() {
    let output = run(wsecho().args(["--www", "/nonexistent/wsecho-www", "--ws", "127.0.0.1:0"]));
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("/nonexistent/wsecho-www"), "{stderr}");
    assert!(stderr.contains("leave --www out"), "{stderr}");
}

#[test]
fn without_www_it_serves_its_built_in_page_from_any_folder() {
    let elsewhere = std::env::temp_dir();
    let mut command = Command::new(env!("CARGO_BIN_EXE_wsecho"));
    command.current_dir(&elsewhere);
    let server = spawn_command(command, &[]);
    for (path, file) in [("/", "index.html"), ("/style.css", "style.css")] {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        let answer = raw_exchange(server.http, request.as_bytes());
        assert_eq!(status_of(&answer), 200);
        let expected = std::fs::read(www().join(file)).unwrap();
        assert!(answer.ends_with(&expected), "{path} is not www/{file}");
    }
    let config = raw_exchange(
        server.http,
        b"GET /config.json HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    let config = String::from_utf8_lossy(&config);
    assert!(config.contains("\"flashFallback\":false"), "{config}");
    let mut client = connect_to(server.ws, "/echo").expect("upgrade");
    client.send(Message::text("built in")).unwrap();
    assert_eq!(next_message(&mut client), Message::text("built in"));
}

#[test]
fn connections_log_a_line_when_they_open_and_when_they_end() {
    use tungstenite::protocol::CloseFrame;
    let mut server = spawn_server();
    let mut client = connect_to(server.ws, "/echo").unwrap();
    client.send(Message::text("hello")).unwrap();
    assert_eq!(next_message(&mut client), Message::text("hello"));
    client
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }))
        .unwrap();
    while client.read().is_ok() {}
    drop(client);
    let lines = server.log_until("#1 closed");
    let open = lines
        .iter()
        .find(|l| l.contains("#1 open 127.0.0.1:"))
        .expect("an open line");
    assert!(open.contains("origin=- flash-bridge=no"), "{open}");
    let end = lines.last().unwrap();
    assert!(
        end.contains("#1 closed by client, code 1000 after "),
        "{end}"
    );
    assert!(end.contains("in 1 msgs/5 B, out 1 msgs/5 B"), "{end}");

    let answer = upgrade_answer(server.ws, upgrade_request("/nope", "").as_bytes());
    assert_eq!(status_of(answer.as_bytes()), 404);
    let refusal = server.log_until("refused 404").pop().unwrap();
    assert!(
        refusal.contains("WARN") && refusal.contains("#2 127.0.0.1:"),
        "{refusal}"
    );

    signal(&server.child, libc::SIGTERM);
    assert!(wait_bounded(&mut server.child).success());
    let all: Vec<String> = lines.into_iter().chain(server.rest_of_log()).collect();
    assert!(
        !all.iter().any(|l| l.contains("Flash policy:")),
        "--policy-port 0 runs no policy listener: {all:#?}"
    );
}

#[test]
fn a_page_request_declaring_a_huge_body_is_refused_and_the_process_lives() {
    let mut server = spawn_server();
    let mut client = connect_to(server.ws, "/echo").unwrap_or_else(|error| {
        let log: Vec<String> = server.log.try_iter().collect();
        panic!("upgrade failed: {error:?}; server log so far: {log:#?}")
    });
    let request = b"GET /favicon.svg HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999\r\n\r\n";
    assert_eq!(status_of(&raw_exchange(server.http, request)), 413);
    let refusal = server.log_until("page: refused").pop().unwrap();
    assert!(refusal.contains("413"), "{refusal}");
    // The WebSocket opened before the attack is still served, and the page still answers.
    client.send(Message::text("still here")).unwrap();
    assert_eq!(next_message(&mut client), Message::text("still here"));
    let page = raw_exchange(
        server.http,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&page), 200);
    assert!(server.child.try_wait().unwrap().is_none(), "wsecho exited");
}

#[test]
fn sighup_without_tls_is_logged_and_the_server_carries_on() {
    let server = spawn_server();
    let mut client = connect_to(server.ws, "/echo").expect("upgrade");
    signal(&server.child, libc::SIGHUP);
    server.log_until("SIGHUP: nothing to reload");
    client.send(Message::text("still here")).unwrap();
    assert_eq!(next_message(&mut client), Message::text("still here"));
}

#[cfg(not(feature = "tls"))]
#[test]
fn tls_flags_on_a_build_without_tls_say_how_to_get_it_and_exit_2() {
    let output =
        run(wsecho()
            .args(FREE_PORTS)
            .args(["--tls-cert", "cert.pem", "--tls-key", "key.pem"]));
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("built without TLS"), "{stderr}");
    assert!(stderr.contains("--features tls"), "{stderr}");
    // Whichever way it was built: with cargo build, or cargo install.
    assert!(
        stderr.contains("cargo install --path . --locked --features tls"),
        "{stderr}"
    );
}

#[test]
fn a_missing_program_is_named_with_its_flag() {
    let output = run(wsecho().args(["--run", "/count=no-such-program-anywhere"]));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains(
            "--run: /count runs \"no-such-program-anywhere\", which is not found in PATH"
        ),
        "{stderr}"
    );
}

#[test]
fn a_programs_stderr_lands_in_the_log_escaped_and_prefixed_with_its_connection() {
    let script = scratch("stderr").join("stderr.py");
    std::fs::write(
        &script,
        "import sys\nsys.stderr.write('bad \\x1b[31mred\\n')\nsys.stderr.flush()\nprint('done')\n",
    )
    .unwrap();
    let command = format!("/err=python3 {}", script.display());
    let server = spawn_binary_with(env!("CARGO_BIN_EXE_wsecho"), &["--run", &command]);
    let mut client = connect_to(server.ws, "/err").unwrap();
    assert_eq!(
        next_message(&mut client),
        tungstenite::Message::text("done")
    );
    let lines = server.log_until("program stderr");
    let line = lines.last().unwrap();
    assert!(
        line.contains("#1 program stderr: bad \\u{1b}[31mred"),
        "{line}"
    );
}

#[test]
fn a_running_programs_stderr_is_logged_while_its_stdout_is_busy_too() {
    // Each line in: a line on stderr, then one on stdout; the program stays alive.
    let command =
        "/both=sh -c 'while read line; do echo \"err $line\" >&2; echo \"out $line\"; done'";
    let server = spawn_binary_with(env!("CARGO_BIN_EXE_wsecho"), &["--run", command]);
    let mut client = connect_to(server.ws, "/both").unwrap();
    for n in 0..3 {
        client.send(Message::text(format!("m{n}"))).unwrap();
        assert_eq!(
            next_message(&mut client),
            Message::text(format!("out m{n}"))
        );
        // Logged while the program runs, not only once it has ended.
        server.log_until(&format!("program stderr: err m{n}"));
    }
}

/// What `/tunables` answers: `GLIBC_TUNABLES` as a program run per connection sees it (wsecho
/// passing it on with `--passenv`), or "unset".
fn tunables_a_program_sees(server: &Running) -> String {
    let mut client = connect_to(server.ws, "/tunables").unwrap();
    match next_message(&mut client) {
        Message::Text(text) => text.to_string(),
        other => panic!("expected the program's line, got {other:?}"),
    }
}

/// The environment the running process started with (/proc/PID/environ).
fn started_with(server: &Running) -> Vec<String> {
    let environ = std::fs::read(format!("/proc/{}/environ", server.child.id())).unwrap();
    environ
        .split(|&byte| byte == 0)
        .map(|entry| String::from_utf8_lossy(entry).into_owned())
        .collect()
}

/// The binary started with `GLIBC_TUNABLES` set to `tunables` (`None`: unset), serving
/// `/tunables`.
fn spawn_with_tunables(tunables: Option<&str>) -> Running {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wsecho"));
    match tunables {
        Some(tunables) => command.env("GLIBC_TUNABLES", tunables),
        None => command.env_remove("GLIBC_TUNABLES"),
    };
    spawn_command(command, &PRINT_TUNABLES)
}

const PRINT_TUNABLES: [&str; 4] = [
    "--run",
    "/tunables=sh -c 'echo \"${GLIBC_TUNABLES-unset}\"'",
    "--passenv",
    "GLIBC_TUNABLES",
];

#[test]
fn the_server_runs_with_a_small_malloc_cache_and_programs_get_the_environment_as_given() {
    let server = spawn_with_tunables(None);
    let environment = started_with(&server);
    assert!(
        environment.contains(&"GLIBC_TUNABLES=glibc.malloc.tcache_max=64".to_string()),
        "the server restarted itself with the small cache: {environment:?}"
    );
    assert_eq!(tunables_a_program_sees(&server), "unset");

    let server = spawn_with_tunables(Some("glibc.malloc.arena_max=4"));
    // glibc 2.36 rewrites a list of tunables in place as it reads them, so /proc shows the
    // first; the restart shows in the variable that carries the operator's setting across it.
    let environment = started_with(&server);
    assert!(
        environment.contains(&"WSECHO_GLIBC_TUNABLES_WAS==glibc.malloc.arena_max=4".into()),
        "restarted, remembering the operator's tunables: {environment:?}"
    );
    assert_eq!(tunables_a_program_sees(&server), "glibc.malloc.arena_max=4");
}

#[test]
fn an_operators_own_tunables_are_kept_and_all_set_means_no_restart() {
    // The operator sets the malloc cache: it is kept, and a program sees the list as given.
    let server = spawn_with_tunables(Some("glibc.malloc.tcache_count=2"));
    let environment = started_with(&server);
    assert!(
        environment.contains(&"GLIBC_TUNABLES=glibc.malloc.tcache_count=2".to_string()),
        "{environment:?}"
    );
    assert!(
        !environment
            .iter()
            .any(|entry| entry.contains("tcache_max=64")),
        "the operator's cache setting stays: {environment:?}"
    );
    assert_eq!(
        tunables_a_program_sees(&server),
        "glibc.malloc.tcache_count=2"
    );

    // The operator sets every tunable the server would: no restart.
    let all = if cfg!(target_arch = "x86_64") {
        "glibc.malloc.tcache_count=2:glibc.cpu.x86_rep_movsb_threshold=8192"
    } else {
        "glibc.malloc.tcache_count=2"
    };
    let server = spawn_with_tunables(Some(all));
    let environment = started_with(&server);
    assert!(
        !environment.iter().any(|entry| entry.starts_with("WSECHO_")),
        "no restart: {environment:?}"
    );
    assert_eq!(tunables_a_program_sees(&server), all);
}
